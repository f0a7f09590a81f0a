"""What the board supplies to the core: the UART as a `Port`. C twin: `port/c/core/hal.h`.

A host adapts pyserial to it (`airfsm.host.serial`); tests use an in-memory pair; an MCU fills
`hal_t` with its UART driver.
"""

from __future__ import annotations

from typing import Protocol


class PortLost(Exception):
    """The port vanished while in use: an event for the machine, not a crash."""


class Port(Protocol):
    def read(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` bytes that are already there; `b""` at once when none. PortLost."""
        ...

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send every byte of `data`. PortLost."""
        ...

    def fileno(self) -> int | None:
        """A file descriptor `select()` can wait on for input, or None (poll instead)."""
        ...

    def close(self) -> None:
        """Release the port. Idempotent."""
        ...
