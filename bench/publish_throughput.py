"""Publish throughput against the simulator paced at 115200 baud over a real pty.

`airfsm sim --profile line --baud 115200` runs as its own process: both directions of its pty
are paced at the line rate (10 bits a byte, 11,520 bytes/s each way) and it answers a command
the moment its CR has crossed the line (the `line` profile), so the UART is the only thing that
takes time on the module's side. A controller in this process (the library's in-memory outbox,
airfsm's select loop `airfsm.host.loop.run`, pyserial on the pty) gets ONLINE, then queues a burst
of messages and runs until all are acknowledged; the figure is messages / wall time of the burst.

The bound is computed from the bytes that crossed the pty during the burst, counted on the
controller's side in both directions (AT+MPUB out; the module's echo, `OK` and for QoS1 the
`PUBACK` URC back): one command is in flight at a time, so a message takes at least
(bytes out + bytes back) / 11,520 s. QoS0 is reported as a fraction of that bound (target 90 %).
QoS1 also waits for the PUBACK, which the simulator sends `puback_ms` (5 ms) after the OK: the
latency runs while the echo and the OK are still crossing, so a message takes at least
out + max(back without the PUBACK line, PUBACK latency) + the PUBACK line; reported, no target.
(On a real network the PUBACK takes ~300 ms, PROTOCOL.md: QoS1 then tops out near 3 messages a
second whatever the controller does.) Three bursts of each, medians.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from airfsm.core.aliyun import DeviceIdentity
from airfsm.core.controller import Controller
from airfsm.core.settings import Settings
from airfsm.core.timebase import ms_add
from airfsm.host import reasons
from airfsm.host.loop import monotonic_ms, run
from airfsm.host.serial import Port, open_port
from airfsm.sim import PROFILES
from bench.figure import Figure, from_runs, main, runs_for
from bench.rigs import SEED_DN, SEED_DS, SEED_PK

BAUD = 115200
BYTES_PER_S = BAUD / 10
PROFILE = "line"
QOS0_TARGET = ">= 90"
PUBACK_LINE = len(b"\r\nPUBACK\r\n")


class CountingPort:
    """A Port that counts the bytes crossing it (what was on the wire), and the controller's
    turnaround: from the read that brought the last bytes in to the next write (the time the
    controller, not the line, takes between one command's answer and the next command)."""

    def __init__(self, port: Port) -> None:
        self.port = port
        self.sent = 0
        self.received = 0
        self.turnaround_s = 0.0
        self._read_at: float | None = None

    def read(self, buf: bytearray, max_bytes: int) -> int:
        n = self.port.read(buf, max_bytes)
        if n > 0:
            self.received += n
            self._read_at = time.perf_counter()
        return n

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._read_at is not None:
            self.turnaround_s += time.perf_counter() - self._read_at
            self._read_at = None
        n = self.port.write(data)
        self.sent += max(n, 0)
        return n

    def fileno(self) -> int | None:
        return self.port.fileno()

    def close(self) -> None:
        self.port.close()


def start_simulator() -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([sys.executable, "-m", "airfsm", "sim", "--profile", PROFILE,
                             "--baud", str(BAUD)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.readline().decode(errors="replace").strip()
    if not first.startswith("simulated"):
        proc.kill()
        raise RuntimeError(f"the simulator did not start: {first!r}")
    return proc, first.rsplit(" ", 1)[-1]


def burst(controller: Controller, port: CountingPort, qos: int, count: int,
          first: int) -> tuple[float, float, float, float]:
    """Publish `count` messages; return (messages per second, bytes out and bytes back per
    message, the controller's turnaround per message in ms)."""
    acked = controller.counters.publish_acked
    for i in range(first, first + count):
        controller.publish("update", b'{"seq":%d,"temperature":21.5}' % i, qos=qos)
    sent, received = port.sent, port.received
    port.turnaround_s = 0.0
    start = time.perf_counter()
    done = run(controller, until=lambda: controller.counters.publish_acked >= acked + count,
               deadline_ms=ms_add(monotonic_ms(), 120_000))
    elapsed = time.perf_counter() - start
    if not done:
        raise RuntimeError(f"burst not acknowledged in time: {reasons.status(controller)}")
    return (count / elapsed, (port.sent - sent) / count, (port.received - received) / count,
            port.turnaround_s / count * 1e3)


def message_floor_s(out: float, back: float, qos: int, puback_ms: int) -> float:
    """The least time a message can take on the line (see the module docstring)."""
    if qos == 0:
        return (out + back) / BYTES_PER_S
    answer = (back - PUBACK_LINE) / BYTES_PER_S
    return out / BYTES_PER_S + max(answer, puback_ms / 1000) + PUBACK_LINE / BYTES_PER_S


def measure(smoke: bool) -> list[Figure]:
    runs = runs_for(smoke)
    qos0_count, qos1_count = (10, 5) if smoke else (200, 100)
    puback_ms = PROFILES[PROFILE].puback_ms
    sim, path = start_simulator()
    port = CountingPort(open_port(path, BAUD))
    try:
        settings = Settings(identity=DeviceIdentity(SEED_PK, SEED_DN, SEED_DS))
        controller = Controller(port, settings, now_ms=monotonic_ms())
        if not run(controller, until=lambda: controller.online,
                   deadline_ms=ms_add(monotonic_ms(), 60_000)):
            raise RuntimeError(f"not ONLINE over the paced pty: {reasons.status(controller)}")
        results: dict[int, list[tuple[float, float, float, float]]] = {0: [], 1: []}
        first = 0
        burst(controller, port, 0, 5, first)  # warm up
        for _ in range(runs):
            for qos, count in ((0, qos0_count), (1, qos1_count)):
                first += count
                results[qos].append(burst(controller, port, qos, count, first))
    finally:
        port.close()
        sim.terminate()
        sim.wait(timeout=10)

    figures = []
    for qos in (0, 1):
        rates = [rate for rate, _, _, _ in results[qos]]
        wire = [out + back for _, out, back, _ in results[qos]]
        bounds = [1 / message_floor_s(out, back, qos, puback_ms)
                  for _, out, back, _ in results[qos]]
        turnaround = statistics.median(t for _, _, _, t in results[qos])
        bytes_note = f"{sorted(wire)[len(wire) // 2]:.0f} bytes a message on the wire"
        figures.append(from_runs(f"publish.qos{qos}_msgs_per_s",
                                 f"QoS{qos} publish, paced 115200 baud", rates, "msg/s",
                                 notes=bytes_note))
        figures.append(from_runs(
            f"publish.qos{qos}_bound_msgs_per_s", f"QoS{qos} bound from the wire"
            + (f" and a {puback_ms} ms PUBACK" if qos else ""), bounds, "msg/s",
            notes="11,520 B/s each way, one command in flight"
            + (", PUBACK latency overlapping the answer" if qos else "")))
        fraction = from_runs(f"publish.qos{qos}_fraction", f"QoS{qos} publish / its bound",
                             [100 * r / b for r, b in zip(rates, bounds, strict=True)], "%",
                             QOS0_TARGET if qos == 0 else None)
        if fraction.passed is False:
            lost_ms = [1e3 / r - 1e3 / b for r, b in zip(rates, bounds, strict=True)]
            fraction.notes = (f"missed: {sorted(lost_ms)[len(lost_ms) // 2]:.2f} ms a message "
                              f"beyond the wire time, of which the controller's turnaround "
                              f"is {turnaround:.2f} ms; the rest is the paced simulator's "
                              "own timing (it writes in bursts a few characters long, late "
                              "when its process is not scheduled) and pty wake-ups")
        figures.append(fraction)
        figures.append(from_runs(
            f"publish.qos{qos}_turnaround_ms", f"QoS{qos} controller turnaround a message",
            [t for _, _, _, t in results[qos]], "ms",
            notes="from the read that brought the answer's last bytes to the next write"))
    return figures


if __name__ == "__main__":
    sys.exit(main(measure, __doc__))
