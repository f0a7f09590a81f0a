"""What the board supplies to the core: the UART as a `Port`. C twin: `port/c/core/hal.h`.

A host adapts pyserial to it (`airfsm.host.serial`); tests use an in-memory pair; an MCU fills
`hal_t` with its UART driver. A port that vanished (USB unplugged, the other end closed) is a
return value, PORT_LOST, not an exception: the controller turns it into a machine event.
"""

from __future__ import annotations

from typing import Protocol

PORT_LOST = -1  # read() / write(): the port is gone (a host keeps why, for its log)


class Port(Protocol):
    def read(self, buf: bytearray, max_bytes: int) -> int:
        """Copy up to `max_bytes` bytes that are already there into buf[0:n] and return n;
        0 at once when none; PORT_LOST when the port is gone. C: hal_uart_read()."""
        ...

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Send every byte of `data`: len(data), or PORT_LOST. C: hal_uart_write()."""
        ...

    def fileno(self) -> int | None:
        """A file descriptor `select()` can wait on for input, or None (poll instead)."""
        ...

    def close(self) -> None:
        """Release the port. Idempotent."""
        ...
