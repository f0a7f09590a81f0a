"""Byte transport: the C twin is `hal_uart_*`.

Everything above this layer sees four calls (`airfsm.core.hal.Port`): a non-blocking `read()`
into the caller's buffer, a `write()` that sends all bytes, a `fileno()` to sleep on in
`select()`, and `close()`. Two failures exist and they are distinct on purpose:

- `PortError`: the port cannot be opened (bad path, permissions, nothing listening). Raised only
  by `open_port`, before any tick runs; its message is one line fit for a user.
- PORT_LOST: the port vanished while in use (USB unplugged, the pty's other end closed, the TCP
  peer went away). `read()` and `write()` return it, and `lost_reason` says why in one line; the
  controller turns it into an event, never a crash.

`SerialPort` wraps pyserial's `serial_for_url`, so a `/dev/tty…` device, a pty slave path,
`socket://host:port`, `rfc2217://…` and `loop://` all work. It never touches modem lines: on a
pty they raise ENOTTY, and the AT dialect does not need them.

A port is opened exclusively: two programs writing AT commands to one module interleave them
and both fail. A device or pty is `flock`ed (pyserial's `exclusive=True`); a network URL has no
device to lock, so a lock file per URL in the temporary directory stands in for it (that covers
programs on this host; the server on the other end decides about the rest).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import tempfile
from pathlib import Path

import serial

from airfsm.core.hal import PORT_LOST, Port

__all__ = [
    "PORT_LOST",
    "MemoryPort",
    "Port",
    "PortError",
    "SerialPort",
    "memory_pair",
    "open_port",
]

WRITE_TIMEOUT_S = 2.0  # a UART that cannot take a few hundred bytes in 2 s is gone
_NETWORK_SCHEMES = ("socket://", "rfc2217://")  # no device to flock: a lock file per URL


class PortError(Exception):
    """The port cannot be opened. `str(e)` is one line, e.g. `cannot open /dev/x: No such …`."""


def _one_line(text: str) -> str:
    """Collapse whitespace so a message never spans lines."""
    return " ".join(text.split())


_ERRNO = re.compile(r"\[Errno (\d+)\]|\((\d+), '")


def _reason(exc: BaseException) -> str:
    """A short, one-line reason for an OS or pyserial error, without pyserial's decorations.

    pyserial wraps OS errors as text ("could not open port X: [Errno 2] No such file or
    directory: 'X'", "read failed: [Errno 5] Input/output error"): recover the errno when present.
    """
    err = getattr(exc, "errno", None)
    if isinstance(err, int) and err > 0:
        return os.strerror(err)
    text = _one_line(str(exc))
    match = _ERRNO.search(text)
    if match:
        return os.strerror(int(match.group(1) or match.group(2)))
    if text.lower().startswith("could not open port ") and ": " in text:
        text = text.split(": ", 1)[1]
    return text or type(exc).__name__


class SerialPort:
    """A pyserial port (device, pty, socket://, rfc2217://, loop://) behind the `Port` calls."""

    def __init__(self, ser: serial.SerialBase, url: str, lock_fd: int | None = None) -> None:
        self._serial: serial.SerialBase | None = ser
        self.url = url
        self._lock_fd = lock_fd  # held for a network URL while it is open
        self.lost_reason = ""  # why read() or write() last returned PORT_LOST (one line)

    def __repr__(self) -> str:
        state = "open" if self._serial is not None else "closed"
        return f"SerialPort({self.url!r}, {state})"

    def _lost(self, why: str) -> int:
        self.lost_reason = f"{self.url}: {why}"
        return PORT_LOST

    def read(self, buf: bytearray, max_bytes: int) -> int:
        ser = self._serial
        if ser is None:
            return self._lost("port is closed")
        max_bytes = min(max_bytes, len(buf))
        if max_bytes <= 0:
            return 0
        try:
            # timeout=0: pyserial does one select(…, 0) and at most one os.read / recv.
            # No in_waiting: it is an ioctl that raises OSError on a vanished device anyway, and
            # a hung-up pty reads as "ready, but no data", which pyserial reports as an error.
            data = ser.read(max_bytes)
        except (serial.SerialException, OSError) as exc:
            return self._lost(f"read failed: {_reason(exc)}")
        n = len(data)
        buf[:n] = data
        return n

    def write(self, data: bytes | bytearray | memoryview) -> int:
        ser = self._serial
        if ser is None:
            return self._lost("port is closed")
        view = memoryview(data)
        total = len(view)
        while view:
            try:
                sent = ser.write(view)
            except serial.SerialTimeoutException:
                return self._lost("write timed out")
            except (serial.SerialException, OSError) as exc:
                return self._lost(f"write failed: {_reason(exc)}")
            if sent is None:  # some pyserial back ends do not report a count: all was taken
                return total
            if sent <= 0:
                # With write_timeout set pyserial either sends everything, raises, or returns
                # short only when the write was cancelled: never spin on a port taking nothing.
                return self._lost("write made no progress")
            view = view[sent:]
        return total

    def fileno(self) -> int | None:
        ser = self._serial
        if ser is None:
            return None
        # posix Serial (device, pty, spy://) and socket:// have a real descriptor. rfc2217://
        # reads on a thread into a queue, and loop:// has no fd: both raise, so poll them.
        fileno = getattr(ser, "fileno", None)
        if fileno is None:
            return None
        try:
            fd = fileno()
        except (OSError, ValueError, AttributeError):
            return None
        return fd if isinstance(fd, int) and fd >= 0 else None

    def close(self) -> None:
        ser, self._serial = self._serial, None
        if ser is None:
            return
        # A vanished device may fail to close: it is released either way.
        with contextlib.suppress(serial.SerialException, OSError):
            ser.close()
        _unlock(self._lock_fd)
        self._lock_fd = None


_IN_USE = "in use by another program (it holds the port's exclusive lock)"


def open_port(url: str, baud: int = 115200) -> SerialPort:
    """Open a device path or pyserial URL, exclusively, for non-blocking use. Raises PortError
    (one line), also when another program has the port open exclusively."""
    if not url:
        raise PortError("cannot open port: no path or URL given")
    lock_fd = _lock_url(url)
    try:
        ser = serial.serial_for_url(
            url, baudrate=baud, timeout=0, write_timeout=WRITE_TIMEOUT_S, exclusive=True
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        _unlock(lock_fd)
        locked = getattr(exc, "errno", None) in (errno.EAGAIN, errno.EWOULDBLOCK) and (
            "lock" in str(exc))
        raise PortError(_one_line(f"cannot open {url}: "
                                  f"{_IN_USE if locked else _reason(exc)}")) from None
    return SerialPort(ser, url, lock_fd)


def _lock_url(url: str) -> int | None:
    """For a network URL, the fd of its lock file, held (`flock`); None for anything else."""
    if not url.lower().startswith(_NETWORK_SCHEMES):
        return None
    digest = hashlib.sha256(url.encode("utf-8", "replace")).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"airfsm-port-{digest}.lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)  # flock needs no write access
    except OSError as exc:
        raise PortError(_one_line(f"cannot open {url}: cannot create its lock file {path}: "
                                  f"{exc.strerror}")) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise PortError(f"cannot open {url}: {_IN_USE}, lock file {path}") from None
    return fd


def _unlock(lock_fd: int | None) -> None:
    if lock_fd is not None:
        with contextlib.suppress(OSError):
            os.close(lock_fd)  # releases the flock


class MemoryPort:
    """One end of an in-memory byte pipe (tests, the simulator in-process). No fd: poll it.

    Bytes written here are read from the peer. After either end closes, the other end may still
    read what was already delivered; then read and write return PORT_LOST, as a socket would.
    """

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self._rx = bytearray()
        self._peer: MemoryPort | None = None
        self._closed = False
        self.lost_reason = ""

    def __repr__(self) -> str:
        return f"MemoryPort({self.name!r}, pending={len(self._rx)}, closed={self._closed})"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Bytes waiting to be read on this end."""
        return len(self._rx)

    def _peer_gone(self) -> bool:
        return self._peer is None or self._peer._closed

    def _lost(self, why: str) -> int:
        self.lost_reason = f"{self.name}: {why}"
        return PORT_LOST

    def read(self, buf: bytearray, max_bytes: int) -> int:
        if self._closed:
            return self._lost("port is closed")
        n = min(max_bytes, len(buf), len(self._rx))
        if n > 0:
            buf[:n] = self._rx[:n]
            del self._rx[:n]
            return n
        if max_bytes > 0 and self._peer_gone():
            return self._lost("other end closed")
        return 0

    def drain(self) -> bytes:
        """Everything waiting on this end, at once (b"" when nothing or lost): for the side a
        test or simulator plays, which has no tick buffer."""
        data = bytes(self._rx)
        self._rx.clear()
        return data

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            return self._lost("port is closed")
        peer = self._peer
        if peer is None or peer._closed:
            return self._lost("other end closed")
        peer._rx.extend(data)
        return len(data)

    def fileno(self) -> int | None:
        return None

    def close(self) -> None:
        self._closed = True


def memory_pair(names: tuple[str, str] = ("a", "b")) -> tuple[MemoryPort, MemoryPort]:
    """Two connected in-memory ports: what one writes, the other reads."""
    a, b = MemoryPort(names[0]), MemoryPort(names[1])
    a._peer, b._peer = b, a
    return a, b
