"""The host's millisecond clock: what `millis()` is on an MCU (C twin: `hal.millis`)."""

from __future__ import annotations

import time

from airfsm.core.timebase import MS_MASK


def monotonic_ms() -> int:
    """The host's monotonic clock as 32-bit milliseconds, wrapping like an MCU's counter."""
    return (time.monotonic_ns() // 1_000_000) & MS_MASK
