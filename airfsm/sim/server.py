"""Serve a `SimModule` over a real pty or a TCP socket, driven by the wall clock.

Host-only code (threads are fine here): one `select()` loop moves bytes between the transport and
the module and sleeps until the module's next deadline. `serve_forever()` runs it in the calling
thread (the CLI); `start()`/`stop()` run it in a daemon thread (tests). The loop holds `lock`
while it touches the module; the runtime controls (`send_downlink`, `drop_mqtt`, …) take the same
lock and wake the loop through a self-pipe, so they are safe from any thread.

A pty behaves like a UART with nobody listening when no client has it open: what the module says
then is buffered by the kernel up to its limit and dropped beyond (`tx_dropped`). TCP serves one
client at a time; a second connection is closed at once. The module keeps running between
clients, as a real module does when the cable is unplugged.

Pacing (`baud=N`, `airfsm sim --baud N`; off by default so tests run at pty speed): a pty moves
bytes as fast as the kernel copies them, a UART at N baud moves N/10 bytes a second (8N1: start
bit, 8 data bits, stop bit). With pacing on, both directions go through a `LinePacer`: what the
module says reaches the pty no sooner than its last bit would have crossed the wire, and what
the MCU writes reaches the module the same way, so throughput measured against the simulator is
what the real line allows. The schedule is the pacer's, computed from integer nanoseconds; the
loop only wakes when it says (at a line end, at most every `PACE_BATCH_NS` otherwise).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from airfsm.core.timebase import ms_diff, ms_reached
from airfsm.host.clock import monotonic_ms
from airfsm.sim.faults import Fault
from airfsm.sim.module import SimConfig, SimModule
from airfsm.sim.session import MqttSession

T = TypeVar("T")


def wall_clock_ms() -> int:
    """Unix time in ms: the simulated cloud's clock."""
    return time.time_ns() // 1_000_000

_READ_SIZE = 4096
BITS_PER_BYTE = 10  # 8N1: start bit, 8 data bits, stop bit
PACE_BATCH_NS = 1_000_000  # paced bytes between line ends are handed over at least this often
_NS_PER_S = 1_000_000_000


class LinePacer:
    """The schedule of a UART line at `baud`: when each byte handed to it has crossed.

    `push(n, now_ns)` hands n bytes to the line. They start when the line is free (at `now_ns`,
    or when the bytes before them have crossed: an idle line banks no time) and the k-th of them
    has crossed `k * 10 / baud` seconds after their start (rounded up to the nanosecond, so never
    early). `due(now_ns)` is how many handed-over bytes have crossed by `now_ns` and not been
    taken; `take(n)` takes them; `ready_at(k)` is when k more will have crossed.
    """

    def __init__(self, baud: int) -> None:
        if baud <= 0:
            raise ValueError(f"baud must be positive, got {baud}")
        self.baud = baud
        # Bursts handed over: [start_ns, bytes, bytes taken]; back to back while the line is busy.
        self._bursts: deque[list[int]] = deque()

    def _crossed(self, burst: list[int], now_ns: int) -> int:
        """Bytes of `burst` (taken ones included) that have crossed by `now_ns`."""
        start, size, _ = burst
        if now_ns <= start:
            return 0
        return min(size, (now_ns - start) * self.baud // (BITS_PER_BYTE * _NS_PER_S))

    def _crossing_time(self, burst: list[int], count: int) -> int:
        """When the first `count` bytes of `burst` have crossed (ns, rounded up)."""
        bits = count * BITS_PER_BYTE * _NS_PER_S
        return burst[0] + -(-bits // self.baud)

    @property
    def pending(self) -> int:
        """Bytes handed over and not yet taken."""
        return sum(size - taken for _, size, taken in self._bursts)

    def busy_until(self) -> int | None:
        """When the last handed-over byte will have crossed; None when nothing is pending."""
        if not self._bursts:
            return None
        last = self._bursts[-1]
        return self._crossing_time(last, last[1])

    def push(self, count: int, now_ns: int) -> None:
        if count <= 0:
            return
        free_at = self.busy_until()
        start = now_ns if free_at is None or free_at < now_ns else free_at
        self._bursts.append([start, count, 0])

    def due(self, now_ns: int) -> int:
        total = 0
        for burst in self._bursts:
            crossed = self._crossed(burst, now_ns)
            total += crossed - burst[2]
            if crossed < burst[1]:
                break  # later bursts start after this one has crossed
        return total

    def take(self, count: int) -> None:
        while count > 0 and self._bursts:
            burst = self._bursts[0]
            step = min(count, burst[1] - burst[2])
            burst[2] += step
            count -= step
            if burst[2] == burst[1]:
                self._bursts.popleft()

    def ready_at(self, count: int) -> int | None:
        """When `count` more bytes (counting from the first not taken) will have crossed; None
        if fewer than that are pending."""
        for burst in self._bursts:
            left = burst[1] - burst[2]
            if count <= left:
                return self._crossing_time(burst, burst[2] + count)
            count -= left
        return None


class _PacedDirection:
    """One direction of a paced line: the bytes on the wire and their schedule."""

    def __init__(self, baud: int, line_end: int) -> None:
        self.pacer = LinePacer(baud)
        self.backlog = bytearray()
        self._line_end = line_end  # the byte the far end acts on: worth waking for exactly

    def push(self, data: bytes, now_ns: int) -> None:
        self.backlog += data
        self.pacer.push(len(data), now_ns)

    def pop_due(self, now_ns: int) -> bytes:
        count = self.pacer.due(now_ns)
        if count == 0:
            return b""
        data = bytes(self.backlog[:count])
        del self.backlog[:count]
        self.pacer.take(count)
        return data

    def wake_at(self, now_ns: int) -> int | None:
        """When the loop should next hand bytes over: when the next line end has crossed (the
        far end acts on it), but no later than PACE_BATCH_NS from now, and never before the
        next byte has crossed."""
        if not self.backlog:
            return None
        end = self.backlog.find(self._line_end)
        count = end + 1 if end >= 0 else len(self.backlog)
        line_done = self.pacer.ready_at(count)
        next_byte = self.pacer.ready_at(1)
        assert line_done is not None and next_byte is not None
        return max(next_byte, min(line_done, now_ns + PACE_BATCH_NS))


class SimServer:
    """A simulated module on a pty (`port_path`) or on TCP 127.0.0.1 (`port_url`)."""

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        transport: str = "pty",
        host: str = "127.0.0.1",
        port: int = 0,
        session: MqttSession | None = None,
        baud: int | None = None,
    ) -> None:
        """`baud`: pace both directions at this line rate (None: as fast as the pty goes)."""
        if transport not in ("pty", "tcp"):
            raise ValueError(f"unknown transport {transport!r}: expected 'pty' or 'tcp'")
        if baud is not None and baud <= 0:
            raise ValueError(f"baud must be positive, got {baud}")
        self.transport = transport
        self.baud = baud
        # Module -> MCU (the MCU acts on LF) and MCU -> module (the module acts on CR).
        self._tx_line = _PacedDirection(baud, 0x0A) if baud else None
        self._rx_line = _PacedDirection(baud, 0x0D) if baud else None
        self.lock = threading.RLock()
        self.port_path: str | None = None
        self.port_url: str | None = None
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.tx_writes = 0
        self.tx_dropped = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

        if transport == "pty":
            self._master, self._slave = os.openpty()
            # Raw at once: otherwise the line discipline echoes and cooks what the module writes
            # before a client opens the port, and flushes it on open.
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)
            # Keeping the slave open ourselves means the master never sees EIO between clients.
            self.port_path = os.ttyname(self._slave)
        else:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(1)
            self._listener.setblocking(False)
            bound_host, bound_port = self._listener.getsockname()[:2]
            self.port_url = f"socket://{bound_host}:{bound_port}"

        # The cloud's clock is the wall clock: a timestamp the device signs is checked against
        # it; NTP answers by the host's wall clock plus the config's offset.
        self.module = SimModule(config or SimConfig(), monotonic_ms(), session,
                                cloud_clock_ms=wall_clock_ms,
                                wall_clock_ms=lambda: time.time_ns() // 1_000_000)

    @property
    def endpoint(self) -> str:
        """What a client opens: the pty path or the socket:// URL."""
        return self.port_path or self.port_url or ""

    # --- running --------------------------------------------------------------------------------

    def start(self) -> SimServer:
        """Run the loop in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.serve_forever, name="airfsm-sim", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop (from any thread) and release the pty/sockets."""
        self._stopping = True
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None
        self.close()

    def close(self) -> None:
        closer = getattr(self.module.session, "close", None)
        if callable(closer):
            with self.lock, contextlib.suppress(Exception):
                closer()  # leave the broker cleanly (`--broker`)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        self._wake_r = self._wake_w = -1
        for sock in (self._client, self._listener):
            if sock is not None:
                sock.close()
        self._client = self._listener = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """The select() loop; returns after `stop()`."""
        while not self._stopping:
            self._pump_input()
            timeout_s = self._pump_output()
            readers = [self._wake_r]
            if self._master is not None:
                readers.append(self._master)
            if self._listener is not None:
                readers.append(self._listener.fileno())
            if self._client is not None:
                readers.append(self._client.fileno())
            session_fd, session_sleep_s = self._session_wait()
            if session_fd >= 0:
                readers.append(session_fd)
            if session_sleep_s is not None:
                timeout_s = session_sleep_s if timeout_s is None else min(timeout_s,
                                                                          session_sleep_s)
            try:
                readable, _, _ = select.select(readers, [], [], timeout_s)
            except (InterruptedError, ValueError, OSError):
                if self._stopping:
                    break
                continue
            if self._wake_r in readable:
                with contextlib.suppress(OSError):
                    while os.read(self._wake_r, 512):
                        pass
            if self._listener is not None and self._listener.fileno() in readable:
                self._accept()
            data = self._read_link(readable)
            if data:
                with self.lock:
                    self.rx_bytes += len(data)
                    if self._rx_line is None:
                        self.module.receive(data, monotonic_ms())
                    else:
                        self._rx_line.push(data, time.monotonic_ns())

    def _pump_input(self) -> None:
        """Paced: hand the module the bytes from the MCU that have crossed the line by now."""
        if self._rx_line is None:
            return
        with self.lock:
            data = self._rx_line.pop_due(time.monotonic_ns())
            if data:
                self.module.receive(data, monotonic_ms())

    def _session_wait(self) -> tuple[int, float | None]:
        """What a networked session (the `--broker` bridge) needs from select(): its socket's fd
        (-1: none) and the longest sleep before its next `poll()` (keepalives, reconnects)."""
        session = self.module.session
        fileno = getattr(session, "fileno", None)
        max_sleep = getattr(session, "max_sleep_s", None)
        with self.lock:
            fd = fileno() if callable(fileno) else -1
            sleep_s = max_sleep() if callable(max_sleep) else None
        return (fd if isinstance(fd, int) else -1,
                sleep_s if isinstance(sleep_s, (int, float)) else None)

    def _pump_output(self) -> float | None:
        """Write everything the module has due, one write per `output()` result (so split
        pieces are separate writes), or when paced, queue it on the line and write what has
        crossed; return how long select() may sleep."""
        with self.lock:
            now = monotonic_ms()
            for topic, payload in self.module.session.poll():
                self.module.send_downlink(topic, payload, now)
            while True:
                data = self.module.output(now)
                if not data:
                    break
                if self._tx_line is None:
                    self._write(data)
                else:
                    self._tx_line.push(data, time.monotonic_ns())
                deadline = self.module.next_deadline()
                if deadline is None or not ms_reached(now, deadline):
                    break
            deadline = self.module.next_deadline()
            pace_wake = self._pace_wake()
        sleep_s = None if deadline is None else max(0, ms_diff(deadline, monotonic_ms())) / 1000.0
        if pace_wake is not None:
            pace_s = max(0, pace_wake - time.monotonic_ns()) / _NS_PER_S
            sleep_s = pace_s if sleep_s is None else min(sleep_s, pace_s)
        return sleep_s

    def _pace_wake(self) -> int | None:
        """Paced: write what has crossed the line by now; return when to wake next (ns)."""
        wake: int | None = None
        now_ns = time.monotonic_ns()
        if self._tx_line is not None:
            data = self._tx_line.pop_due(now_ns)
            if data:
                self._write(data)
            wake = self._tx_line.wake_at(now_ns)
        if self._rx_line is not None:
            rx_wake = self._rx_line.wake_at(now_ns)
            if rx_wake is not None:
                wake = rx_wake if wake is None else min(wake, rx_wake)
        return wake

    # --- transport ------------------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self._client is not None:
            conn.close()  # one MCU per UART
            return
        conn.setblocking(False)
        # Small writes must leave as they were made, or split faults would be re-glued by Nagle.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = conn

    def _read_link(self, readable: list[int]) -> bytes:
        if self._master is not None and self._master in readable:
            try:
                return os.read(self._master, _READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return b""
            except OSError:
                return b""  # EIO: no slave open (cannot happen while we hold one)
        if self._client is not None and self._client.fileno() in readable:
            try:
                data = self._client.recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return b""
            except OSError:
                data = b""
            if not data:
                self._client.close()
                self._client = None
            return data
        return b""

    def _write(self, data: bytes) -> None:
        """One write of `data` (a UART drops what nobody takes)."""
        self.tx_writes += 1
        try:
            if self._master is not None:
                written = os.write(self._master, data)
            elif self._client is not None:
                written = self._client.send(data)
            else:
                written = 0
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:
            written = 0
            if self._client is not None:
                self._client.close()
                self._client = None
        self.tx_bytes += written
        self.tx_dropped += len(data) - written

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    # --- runtime control (any thread) -----------------------------------------------------------

    def call(self, action: Callable[[SimModule, int], T]) -> T:
        """Run `action(module, now_ms)` under the loop's lock, then let the loop act on it."""
        with self.lock:
            result = action(self.module, monotonic_ms())
        self._wake()
        return result

    def send_downlink(self, topic: str, payload: bytes) -> bool:
        return self.call(lambda m, now: m.send_downlink(topic, payload, now))

    def property_set(self, params: dict[str, object]) -> str:
        """The cloud sets properties; the request id (answers in `module.cloud.replies`)."""
        return self.call(lambda m, now: m.property_set(params, now))

    def service_call(self, identifier: str, params: dict[str, object]) -> str:
        return self.call(lambda m, now: m.service_call(identifier, params, now))

    def rrpc_request(self, payload: bytes, message_id: str | None = None) -> str:
        """An RRPC call; its messageId (answers in `module.cloud.rrpc_answers`)."""
        return self.call(lambda m, now: m.rrpc_request(payload, now, message_id))

    def drop_mqtt(self) -> None:
        self.call(lambda m, now: m.drop_mqtt(now))

    def detach(self) -> None:
        self.call(lambda m, now: m.detach(now))

    def reboot(self) -> None:
        self.call(lambda m, now: m.reboot(now))

    def add_fault(self, fault: Fault) -> None:
        self.call(lambda m, now: m.add_fault(fault))

    def status_line(self) -> str:
        """One line for the CLI: where to connect and what the module is doing."""
        with self.lock:
            m = self.module
            state = ("booting" if m.booting else "waiting for AT" if not m.trained
                     else "attached" if m.attached else "not attached")
            return (
                f"Air72x simulator on {self.endpoint} ({m.config.profile} profile): {state}, "
                f"bearer {'open' if m.bearer_open else 'closed'}, MQTT {m.mqtt_state}, "
                f"{len(m.subscribed)} subscribed, {len(m.published)} published, "
                f"{m.auth_requests} auth, {m.boots} boot{'s' if m.boots != 1 else ''}"
            )
