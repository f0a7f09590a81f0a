"""The host's main loop: sleep in select() on the port until data or the controller's deadline.

This is what an MCU's super-loop or RTOS task does with `tick()`; on Linux it costs no CPU while
nothing happens, because the process sleeps in the kernel until the port has bytes or the next
deadline is due.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Sequence

from airfsm.core.controller import Controller
from airfsm.core.timebase import ms_diff
from airfsm.host.clock import monotonic_ms

__all__ = ["MAX_SLEEP_MS", "monotonic_ms", "run"]

MAX_SLEEP_MS = 1_000  # also bounds how late a stop request or a signal flag is noticed


def run(
    controller: Controller,
    *,
    until: Callable[[], bool],
    deadline_ms: int | None = None,
    extra_fds: Sequence[int] | Callable[[], Sequence[int]] = (),
    on_wake: Callable[[int], None] | None = None,
    clock: Callable[[], int] = monotonic_ms,
    max_sleep_ms: int = MAX_SLEEP_MS,
) -> bool:
    """Tick `controller` until `until()` is true (returns True) or `deadline_ms` passes (False).

    `extra_fds` are watched too (a wake-up pipe, a signal fd), or a function returning them
    when they change (a socket that reconnects); `on_wake(now)` runs after every wake-up,
    before the deadline check, for work such as status files.
    """
    while True:
        now = clock()
        next_ms = controller.tick(now)
        if on_wake is not None:
            on_wake(now)
        if until():
            return True
        if deadline_ms is not None and ms_diff(now, deadline_ms) >= 0:
            return False
        sleep_ms = max(0, min(ms_diff(next_ms, now), max_sleep_ms))
        if deadline_ms is not None:
            sleep_ms = max(0, min(sleep_ms, ms_diff(deadline_ms, now)))
        fds = list(extra_fds() if callable(extra_fds) else extra_fds)
        port_fd = None if controller.port_lost else controller.port.fileno()
        if port_fd is not None:
            fds.append(port_fd)
        if not fds:
            time.sleep(sleep_ms / 1000)
            continue
        try:
            select.select(fds, [], [], sleep_ms / 1000)
        except (OSError, ValueError):
            # The port's fd went bad (USB unplugged): the next read returns PORT_LOST.
            time.sleep(min(sleep_ms, 100) / 1000)
        except InterruptedError:
            pass
