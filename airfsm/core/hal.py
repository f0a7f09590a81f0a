"""What the board supplies to the core: the UART as a `Port`, and a log hook. C twin:
`port/c/core/hal.h`.

A host adapts pyserial to the Port (`airfsm.host.serial`); tests use an in-memory pair; an MCU
fills `hal_t` with its UART driver. A port that vanished (USB unplugged, the other end closed)
is a return value, PORT_LOST, not an exception: the controller turns it into a machine event.

The log hook takes events as codes - a LogLevel, a LogEvent, three small ints and a short byte
slice - with the controller, for whatever else the host wants to say (its state, its attempt).
The host decides the words (`airfsm.host.log` renders structlog events); an MCU may print the
codes. The controller asks the hook's `level` once per tick and builds nothing for an event
below it.
"""

from __future__ import annotations

from typing import Any, Protocol

from airfsm.core.codes import LogEvent, LogLevel

PORT_LOST = -1  # read() / write(): the port is gone (a host keeps why, for its log)


LOG_OFF = 100  # a log level above every LogLevel: nothing is logged


class Port(Protocol):
    def read(self, buf: bytearray, max_bytes: int) -> int:
        """Copy up to `max_bytes` bytes that are already there into buf[0:n] and return n;
        0 at once when none; PORT_LOST when the port is gone. C: hal_uart_read()."""
        ...

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Send every byte of `data`: len(data), or PORT_LOST. C: hal_uart_write()."""
        ...

    def fileno(self) -> int | None:
        """A file descriptor `select()` can wait on for input, or None (poll instead).

        Python only (no C twin)."""
        ...

    def close(self) -> None:
        """Release the port. Idempotent. Python only (no C twin)."""
        ...


class LogHook(Protocol):
    """C: void (*log)(const airfsm_t *ctl, level, event, int32_t a, b, c, const uint8_t *data,
    size_t len), beside the lowest level it wants."""

    @property
    def level(self) -> int:
        """The lowest LogLevel the hook wants (LOG_OFF: none).

        C: the level field beside hal_log()."""
        ...

    def __call__(self, ctl: Any, level: LogLevel, event: LogEvent, a: int, b: int, c: int,
                 data: bytes | bytearray | memoryview) -> None:
        """One event; `data` is valid only during the call (a view of the controller's
        buffers: copy what you keep). LogEvent.SECRET comes whatever the level. C: hal_log()."""
        ...
