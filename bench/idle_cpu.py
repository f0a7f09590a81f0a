"""Idle CPU of `airfsm run` in ONLINE, beside a naive 1 ms polling loop.

    python -m bench.idle_cpu [--seconds 30] [--profile fast|real] [--keep]   (a report by hand)

Starts `airfsm sim` on a pty and `airfsm run` on it (both as subprocesses, a temporary data
directory), waits until the gateway's status file says ONLINE, then measures the gateway's CPU
time over measuring windows (the sum over its threads of /proc/<pid>/task/*/schedstat, which
counts nanoseconds; /proc/<pid>/stat counts 10 ms ticks, too coarse for 0.1 %) and its
voluntary context switches (~ wake-ups). Beside it, in the same windows, runs a naive loop the
way many serial scripts poll: a non-blocking `read()` of a pty and `sleep(0.001)`, forever.
The simulator's own CPU is not the gateway's and is not counted. `make bench` takes three
10-second windows and reports the median.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from bench.figure import Figure, from_runs
from bench.rigs import SEED_DN, SEED_DS, SEED_PK

TARGET_PERCENT = 0.1


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid` so far, from schedstat (ns resolution)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return total / 1e9


def wakeups(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"idle_cpu: timed out waiting for {what}")
        time.sleep(0.05)


def naive_loop() -> None:
    """What the gateway is compared with: poll a port every millisecond."""
    _master, slave = os.openpty()
    os.set_blocking(slave, False)
    while True:
        with suppress(BlockingIOError):
            os.read(slave, 512)
        time.sleep(0.001)


@dataclass
class Window:
    seconds: float
    gateway_cpu: float
    gateway_wakes: int
    naive_cpu: float
    sim_cpu: float


@dataclass
class Processes:
    gateway: subprocess.Popen[bytes]
    sim: subprocess.Popen[bytes]
    naive: subprocess.Popen[bytes]
    work: Path

    def sample(self) -> tuple[float, float, int, float, float]:
        return (time.monotonic(), cpu_seconds(self.gateway.pid), wakeups(self.gateway.pid),
                cpu_seconds(self.naive.pid), cpu_seconds(self.sim.pid))

    def window(self, seconds: float) -> Window:
        t0, g0, w0, n0, s0 = self.sample()
        time.sleep(seconds)
        t1, g1, w1, n1, s1 = self.sample()
        return Window(t1 - t0, g1 - g0, w1 - w0, n1 - n0, s1 - s0)


@contextmanager
def idle_gateway(profile: str = "fast", keep: bool = False) -> Iterator[Processes]:
    """The simulator, `airfsm run` ONLINE on it, and the naive loop beside them."""
    python = sys.executable
    work = Path(tempfile.mkdtemp(prefix="airfsm-idle-"))
    data_dir = work / "data"
    procs: list[subprocess.Popen[bytes]] = []
    sim_out = open(work / "sim.out", "w+b")  # noqa: SIM115 - lives as long as the process
    try:
        sim = subprocess.Popen([python, "-m", "airfsm", "sim", "--profile", profile],
                               stdout=sim_out, stderr=subprocess.STDOUT)
        procs.append(sim)

        def pty_path() -> str | None:
            sim_out.seek(0)
            first = sim_out.readline().decode(errors="replace").strip()
            return first.rsplit(" ", 1)[-1] if first.startswith("simulated") else None

        wait_for(lambda: pty_path() is not None, 10, "the simulator")
        port = pty_path()
        assert port is not None
        env = dict(os.environ, AIRFSM_DEVICE_SECRET=SEED_DS)
        with open(work / "gateway.log", "wb") as log:
            gateway = subprocess.Popen(
                [python, "-m", "airfsm", "run", "--port", port, "--product-key", SEED_PK,
                 "--device-name", SEED_DN, "--data-dir", str(data_dir), "--log-level", "info"],
                env=env, stdout=subprocess.DEVNULL, stderr=log)
        procs.append(gateway)
        naive = subprocess.Popen([python, "-m", "bench.idle_cpu", "--naive-loop"],
                                 cwd=Path(__file__).resolve().parent.parent)
        procs.append(naive)

        def online() -> bool:
            try:
                status = json.loads((data_dir / "status.json").read_text())
            except (OSError, ValueError):
                return False
            return bool(status.get("state") == "ONLINE")

        wait_for(online, 60, "the gateway to get ONLINE")
        time.sleep(1.0)  # let the last status write and the first probe schedule settle
        yield Processes(gateway, sim, naive, work)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        sim_out.close()
        if keep:
            print(f"  data in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def measure(smoke: bool, window_s: float | None = None, windows: int = 3) -> list[Figure]:
    seconds = window_s if window_s is not None else (0.5 if smoke else 10.0)
    with idle_gateway() as procs:
        taken = [procs.window(seconds) for _ in range(windows)]
    gateway = [100 * w.gateway_cpu / w.seconds for w in taken]
    naive = [100 * w.naive_cpu / w.seconds for w in taken]
    wakes = [w.gateway_wakes / w.seconds for w in taken]
    fig = from_runs("idle_cpu.gateway_percent", "idle CPU of airfsm run, ONLINE", gateway,
                    "% core", f"< {TARGET_PERCENT}",
                    f"{len(taken)} windows of {seconds:g} s, empty outbox, fast simulator")
    if fig.passed is False:
        fig.notes += f"; missed: {sorted(wakes)[len(wakes) // 2]:.1f} wake-ups a second"
    return [
        fig,
        from_runs("idle_cpu.gateway_wakeups", "wake-ups of airfsm run, ONLINE", wakes, "/s",
                  notes="voluntary context switches"),
        from_runs("idle_cpu.naive_percent", "idle CPU of a naive 1 ms polling loop", naive,
                  "% core", notes="non-blocking read + sleep(0.001)"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="measuring window")
    ap.add_argument("--profile", choices=("fast", "real"), default="fast",
                    help="simulator latencies (only the time to ONLINE differs)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    ap.add_argument("--smoke", action="store_true", help="three half-second windows")
    ap.add_argument("--json", action="store_true", help="the figures as JSON (bench.run)")
    ap.add_argument("--naive-loop", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.naive_loop:
        naive_loop()
        return 0
    if args.smoke or args.json:
        figures = measure(args.smoke)
        if args.json:
            print(json.dumps([f.as_dict() for f in figures]))
        else:
            for f in figures:
                print(f"{f.title}: {f.value:.3f} {f.unit} ({f.notes})")
        return 0
    with idle_gateway(args.profile, args.keep) as procs:
        w = procs.window(args.seconds)
    print(f"airfsm run idle for {w.seconds:.1f} s (ONLINE, empty outbox, {args.profile} sim):")
    print(f"  gateway CPU   {w.gateway_cpu:.4f} s = {100 * w.gateway_cpu / w.seconds:.4f} % "
          "of one core")
    print(f"  gateway wakes {w.gateway_wakes} voluntary context switches = "
          f"{w.gateway_wakes / w.seconds:.1f} per second")
    print(f"  naive 1 ms loop CPU {w.naive_cpu:.3f} s = {100 * w.naive_cpu / w.seconds:.2f} %")
    print(f"  simulator CPU {w.sim_cpu:.3f} s (not the gateway's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
