"""Byte transport: a real pty, a real TCP socket, and the in-memory pair."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
import tty
from collections.abc import Iterator
from typing import cast

import pytest
import serial

from airfsm.host.serial import (
    PORT_LOST,
    MemoryPort,
    Port,
    PortError,
    SerialPort,
    memory_pair,
    open_port,
)

DEADLINE_S = 5.0


def read(port: Port, max_bytes: int) -> bytes | int:
    """What one read() gives: the bytes, or PORT_LOST."""
    buf = bytearray(max(max_bytes, 1))
    n = port.read(buf, max_bytes)
    return n if n == PORT_LOST else bytes(buf[:n])


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    """(master fd, slave path); the slave is raw so nothing is echoed or cooked."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    try:
        yield master, path
    finally:
        os.close(slave)
        with contextlib.suppress(OSError):  # some tests close it themselves
            os.close(master)


def read_fd_until(fd: int, want: int, deadline_s: float = DEADLINE_S) -> bytes:
    """Read from a raw fd until `want` bytes came, waiting in select() against a deadline."""
    got = b""
    end = time.monotonic() + deadline_s
    while len(got) < want:
        left = end - time.monotonic()
        assert left > 0, f"timed out with {got!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            got += os.read(fd, want - len(got))
    return got


def read_port_until(port: SerialPort, want: int, deadline_s: float = DEADLINE_S) -> bytes:
    """Read from a port until `want` bytes came, sleeping in select() on its fileno()."""
    fd = port.fileno()
    assert fd is not None
    got = b""
    end = time.monotonic() + deadline_s
    while len(got) < want:
        left = end - time.monotonic()
        assert left > 0, f"timed out with {got!r}"
        select.select([fd], [], [], left)
        data = read(port, want - len(got))
        assert isinstance(data, bytes), port.lost_reason
        got += data
    return got


def expect_lost(action: str, port: SerialPort, deadline_s: float = DEADLINE_S) -> str:
    """Repeat `action` (read/write) until it returns PORT_LOST, bounded by a deadline; the
    port's one-line reason."""
    fd = port.fileno()
    assert fd is not None
    end = time.monotonic() + deadline_s
    while True:
        left = end - time.monotonic()
        assert left > 0, f"{action} never returned PORT_LOST"
        if action == "read":
            select.select([fd], [], [], min(left, 0.05))
            if read(port, 64) == PORT_LOST:
                return port.lost_reason
        else:
            if port.write(b"AT\r") == PORT_LOST:
                return port.lost_reason
            select.select([], [], [], 0.01)  # let the kernel notice between attempts


# --- pty ------------------------------------------------------------------------------------


def test_pty_bytes_flow_both_ways(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    port = open_port(path)
    try:
        assert isinstance(port.fileno(), int)
        assert port.write(b"AT+CGMR\r") == 8
        assert read_fd_until(master, 8) == b"AT+CGMR\r"

        os.write(master, b"\r\nAirM2M_Air72xUy_V409_LTE_AT\r\n\r\nOK\r\n")
        want = len(b"\r\nAirM2M_Air72xUy_V409_LTE_AT\r\n\r\nOK\r\n")
        assert read_port_until(port, want) == b"\r\nAirM2M_Air72xUy_V409_LTE_AT\r\n\r\nOK\r\n"
    finally:
        port.close()


def test_pty_binary_bytes_pass_untouched(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    port = open_port(path)
    try:
        payload = bytes(range(256))
        port.write(payload)
        assert read_fd_until(master, 256) == payload
        os.write(master, payload)
        assert read_port_until(port, 256) == payload
    finally:
        port.close()


class ShortWriter:
    """A stand-in for a pyserial port that takes at most `chunk` bytes a call."""

    def __init__(self, chunk: int, fail: BaseException | None = None) -> None:
        self.chunk = chunk
        self.fail = fail
        self.calls = 0
        self.taken = bytearray()

    def write(self, data: bytes) -> int:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        n = min(self.chunk, len(data))
        self.taken.extend(bytes(data[:n]))
        return n

    def close(self) -> None:
        pass


def short_port(writer: ShortWriter) -> SerialPort:
    return SerialPort(cast(serial.SerialBase, writer), "fake://short")


def test_write_loops_over_partial_writes() -> None:
    writer = ShortWriter(chunk=3)
    assert short_port(writer).write(b"AT+HTTPDATA=112,20000\r") == 22
    assert bytes(writer.taken) == b"AT+HTTPDATA=112,20000\r"
    assert writer.calls == 8


def test_write_without_progress_is_port_lost() -> None:
    writer = ShortWriter(chunk=0)
    port = short_port(writer)
    assert port.write(b"AT\r") == PORT_LOST
    assert port.lost_reason == "fake://short: write made no progress"
    assert writer.calls == 1  # no spinning


@pytest.mark.parametrize(
    "error",
    [
        serial.SerialTimeoutException("Write timeout"),
        serial.SerialException("write failed: [Errno 5] Input/output error"),
        OSError(5, "Input/output error"),
    ],
)
def test_write_errors_become_port_lost(error: BaseException) -> None:
    port = short_port(ShortWriter(chunk=1, fail=error))
    assert port.write(b"AT\r") == PORT_LOST  # a value, never the exception
    assert "fake://short" in port.lost_reason and "\n" not in port.lost_reason


def test_pty_large_write_is_complete(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    port = open_port(path)
    try:
        # Several kernel reads' worth (but within the pty buffer: this test has one thread).
        payload = bytes(i & 0xFF for i in range(3000))
        port.write(payload)
        assert read_fd_until(master, len(payload)) == payload
    finally:
        port.close()


def test_pty_read_returns_empty_at_once(pty_pair: tuple[int, str]) -> None:
    _master, path = pty_pair
    port = open_port(path)
    try:
        start = time.monotonic()
        assert read(port, 256) == b""
        assert read(port, 0) == b""
        assert time.monotonic() - start < 0.5
    finally:
        port.close()


def test_pty_read_respects_max_bytes(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    port = open_port(path)
    try:
        os.write(master, b"0123456789")
        fd = port.fileno()
        assert fd is not None
        select.select([fd], [], [], DEADLINE_S)
        first = read(port, 4)
        assert isinstance(first, bytes) and 1 <= len(first) <= 4
        rest = read_port_until(port, 10 - len(first))
        assert first + rest == b"0123456789"
    finally:
        port.close()


def test_pty_master_closed_read_is_port_lost(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    port = open_port(path)
    try:
        os.close(master)
        text = expect_lost("read", port)
        assert path in text and "read failed" in text and "\n" not in text
    finally:
        port.close()


def test_pty_master_closed_write_is_port_lost(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    port = open_port(path)
    try:
        os.close(master)
        text = expect_lost("write", port)
        assert path in text and "\n" not in text
    finally:
        port.close()


def test_close_is_idempotent_and_closed_port_is_lost(pty_pair: tuple[int, str]) -> None:
    _master, path = pty_pair
    port = open_port(path)
    port.close()
    port.close()
    assert port.fileno() is None
    assert read(port, 1) == PORT_LOST and port.lost_reason.endswith("port is closed")
    assert port.write(b"x") == PORT_LOST


# --- open errors ------------------------------------------------------------------------------


def test_open_missing_path_is_one_line_port_error() -> None:
    with pytest.raises(PortError) as info:
        open_port("/dev/ttyUSB_airfsm_missing9")
    text = str(info.value)
    assert text == "cannot open /dev/ttyUSB_airfsm_missing9: No such file or directory"
    assert "\n" not in text and "Traceback" not in text


def test_open_not_a_tty_is_port_error(tmp_path: os.PathLike[str]) -> None:
    plain = os.path.join(os.fspath(tmp_path), "plain-file")
    with open(plain, "wb"):
        pass
    with pytest.raises(PortError) as info:
        open_port(plain)
    assert plain in str(info.value) and "\n" not in str(info.value)


def test_open_unknown_url_scheme_is_port_error() -> None:
    with pytest.raises(PortError) as info:
        open_port("nosuchproto://x")
    assert str(info.value).startswith("cannot open nosuchproto://x: ")


def test_open_refused_socket_is_port_error() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(PortError) as info:
        open_port(f"socket://127.0.0.1:{free}")
    text = str(info.value)
    assert text.startswith(f"cannot open socket://127.0.0.1:{free}: ") and "\n" not in text


def test_open_empty_url_is_port_error() -> None:
    with pytest.raises(PortError):
        open_port("")


def test_a_port_in_use_by_another_program_is_refused_in_one_line() -> None:
    """Two programs on one module interleave their AT commands: the second open must fail."""
    from airfsm.sim import SimConfig, SimServer

    with SimServer(SimConfig(profile="fast")) as server:
        server.start()
        first = open_port(server.endpoint)
        try:
            with pytest.raises(PortError) as refused:
                open_port(server.endpoint)
            message = str(refused.value)
            assert "in use by another program" in message and server.endpoint in message
            assert "\n" not in message
        finally:
            first.close()
        open_port(server.endpoint).close()  # free again once the first let go


# --- TCP --------------------------------------------------------------------------------------


def test_socket_url_round_trip_and_peer_close() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        host, tcp_port = listener.getsockname()
        port = open_port(f"socket://{host}:{tcp_port}")
        try:
            listener.settimeout(DEADLINE_S)
            peer, _ = listener.accept()
            with peer:
                peer.settimeout(DEADLINE_S)
                assert isinstance(port.fileno(), int)
                assert read(port, 16) == b""

                assert port.write(b"AT\r") == 3
                got = b""
                while len(got) < 3:
                    got += peer.recv(16)
                assert got == b"AT\r"

                peer.sendall(b"\r\nOK\r\n")
                assert read_port_until(port, 6) == b"\r\nOK\r\n"

            # The peer is gone: reading sees EOF and reports it as a lost port.
            text = expect_lost("read", port)
            assert "\n" not in text
        finally:
            port.close()


def test_a_network_url_in_use_on_this_host_is_refused() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(2)  # a server that would take both: the lock is ours to keep
        host, tcp_port = listener.getsockname()
        url = f"socket://{host}:{tcp_port}"
        first = open_port(url)
        try:
            with pytest.raises(PortError, match="in use by another program"):
                open_port(url)
        finally:
            first.close()
        open_port(url).close()


def test_loop_url_has_no_fileno_but_works() -> None:
    port = open_port("loop://")
    try:
        assert port.fileno() is None
        port.write(b"hello")
        got = b""
        end = time.monotonic() + DEADLINE_S
        while len(got) < 5 and time.monotonic() < end:
            data = read(port, 5 - len(got))
            assert isinstance(data, bytes)
            got += data
        assert got == b"hello"
    finally:
        port.close()


# --- memory -----------------------------------------------------------------------------------


def test_memory_pair_round_trip() -> None:
    a, b = memory_pair()
    assert a.fileno() is None and b.fileno() is None
    assert read(a, 10) == b""
    assert a.write(b"AT\r") == 3
    assert a.write(b"") == 0
    assert b.pending == 3
    assert read(b, 2) == b"AT"
    assert read(b, 10) == b"\r"
    assert read(b, 10) == b""
    b.write(b"\r\nOK\r\n")
    assert read(a, 100) == b"\r\nOK\r\n"
    assert read(a, 0) == b""
    b.write(b"all at once")
    assert a.drain() == b"all at once" and a.drain() == b""
    small = bytearray(2)
    b.write(b"xyz")
    assert a.read(small, 10) == 2 and small == b"xy"  # never more than the buffer holds


def test_memory_close_makes_peer_lost() -> None:
    a, b = memory_pair()
    a.write(b"last words")
    a.close()
    a.close()  # idempotent
    assert a.closed
    # What was delivered before the close can still be read, then the loss shows.
    assert read(b, 100) == b"last words"
    assert read(b, 1) == PORT_LOST and b.lost_reason == "b: other end closed"
    assert b.write(b"x") == PORT_LOST
    assert read(a, 1) == PORT_LOST and a.lost_reason == "a: port is closed"
    assert a.write(b"x") == PORT_LOST


def test_memory_close_of_reader_makes_writer_lost() -> None:
    a, b = memory_pair()
    b.close()
    assert a.write(b"AT\r") == PORT_LOST
    assert read(a, 1) == PORT_LOST


def test_memory_port_alone_is_lost() -> None:
    lonely = MemoryPort("lonely")
    assert lonely.write(b"x") == PORT_LOST


def test_both_implementations_satisfy_the_protocol(pty_pair: tuple[int, str]) -> None:
    _master, path = pty_pair
    ports: list[Port] = [open_port(path), *memory_pair()]  # mypy checks the structural type
    for port in ports:
        assert read(port, 1) == b""
    for port in ports:
        port.close()
