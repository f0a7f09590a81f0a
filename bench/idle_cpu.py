"""Idle CPU of `airfsm run`: the gateway ONLINE against the simulator over a pty, nothing to send.

    python bench/idle_cpu.py [--seconds 30] [--profile fast|real] [--keep]

Starts `airfsm sim` on a pty and `airfsm run` on it (both as subprocesses, a temporary data
directory), waits until the gateway's status file says ONLINE, then samples the gateway's
utime+stime from /proc/<pid>/stat and its voluntary context switches (≈ wake-ups) from
/proc/<pid>/status over the measuring window, and prints both. The simulator's own CPU is
printed separately: it is not part of the gateway's cost. Nothing is asserted: this is a
measurement, run by hand or by `make bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEED_PK = "b0FMK1Ga5cp"
SEED_DN = "862991419835241"
SEED_DS = "y7MTCG6Gk33Ux26bbWSpANl4OaI0bg5Q"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wakeups(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


def wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"idle_cpu: timed out waiting for {what}")
        time.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="measuring window")
    ap.add_argument("--profile", choices=("fast", "real"), default="fast",
                    help="simulator latencies (only the time to ONLINE differs)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = ap.parse_args()

    python = sys.executable
    work = Path(tempfile.mkdtemp(prefix="airfsm-idle-"))
    data_dir = work / "data"
    sim_out = open(work / "sim.out", "w+b")  # noqa: SIM115 - lives as long as the process
    sim = subprocess.Popen([python, "-m", "airfsm", "sim", "--profile", args.profile],
                           stdout=sim_out, stderr=subprocess.STDOUT)
    gateway: subprocess.Popen[bytes] | None = None
    try:
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

        def online() -> bool:
            try:
                status = json.loads((data_dir / "status.json").read_text())
            except (OSError, ValueError):
                return False
            return bool(status.get("state") == "ONLINE")

        wait_for(online, 60, "the gateway to get ONLINE")
        time.sleep(1.0)  # let the last status write and the first probe schedule settle
        g0, s0, w0, t0 = cpu_seconds(gateway.pid), cpu_seconds(sim.pid), wakeups(gateway.pid), \
            time.monotonic()
        time.sleep(args.seconds)
        g1, s1, w1, t1 = cpu_seconds(gateway.pid), cpu_seconds(sim.pid), wakeups(gateway.pid), \
            time.monotonic()
        window = t1 - t0
        print(f"airfsm run idle for {window:.1f} s (ONLINE, empty outbox, {args.profile} sim):")
        print(f"  gateway CPU   {g1 - g0:.3f} s = {100 * (g1 - g0) / window:.3f} % of one core")
        print(f"  gateway wakes {w1 - w0} voluntary context switches = "
              f"{(w1 - w0) / window:.1f} per second")
        print(f"  simulator CPU {s1 - s0:.3f} s (not the gateway's)")
        print(f"  (CPU resolution: 1/{CLK_TCK} s; use --seconds 120 for a finer figure)")
    finally:
        for proc in (gateway, sim):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        sim_out.close()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"  data in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
