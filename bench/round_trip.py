"""Round trip of 1,000 `AT` -> `OK` over a real pty: airfsm beside a hand-written loop and peers.

A pty pair is opened (the slave in raw mode, as a UART); a minimal responder process holds the
master and answers every CR with `\\r\\nOK\\r\\n` (no echo), so the module side costs the same for
every client. Each client is its own process, opens the slave path, does 50 warm-up round trips
and then 1,000 timed ones, and reports the mean. The clients, run one after another, run after
run (9 runs, medians; the client's CPU time per round trip is reported beside its wall time):

* hand-written select loop: a raw fd, `write(b"AT\\r")`, `select()` + `read()` until `OK\\r\\n`;
* airfsm: `AtChannel` over airfsm's pyserial port, reading as the controller does (select on
  the fd, then 512-byte reads until the port is empty, each fed to the channel);
* airfsm's `AtChannel` alone, on the hand-written loop's raw fd and reads (no pyserial): what
  the channel adds, apart from the port layer (reported, no target);
* pyserial `LineReader` (`serial.threaded.ReaderThread`, a reader thread and an event);
* python-gsmmodem-new (`GsmModem.write("AT")` on its serial layer, without its initialisation
  sequence), from PyPI into a bench-only venv (`bench/.venv-peers`, created by `make bench`).
  Where that venv could not be created or installed, the row says so and has no value.

The target compares airfsm with the hand-written loop (within 1.3x), run by run; the peers are
reported. On a virtual machine much of a round trip is the time a halted vCPU takes to wake
(each hand-off crosses processes and the kernel's tty worker), and runs made while the machine
was otherwise busy come out several times faster: hence 9 runs and medians, and beside the wall
time the client's own CPU time per round trip (`time.process_time`, all its threads), which
wake-up latency does not move; its ratio is reported too.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tty
from collections.abc import Iterator
from pathlib import Path

from bench.figure import QUICK_RUNS, Figure, from_runs, main, not_measured, ratio_runs, runs_for

HERE = Path(__file__).resolve().parent
CLIENT_SCRIPT = HERE / "rt_clients.py"
PEERS_VENV = HERE / ".venv-peers"
PEERS_READY = PEERS_VENV / ".installed"  # written by `make bench` once the peers installed
PEERS_LOG = PEERS_VENV / "install.log"
RATIO_TARGET = "<= 1.3"
TITLES = {
    "select": "round trip, hand-written select loop",
    "airfsm": "round trip, airfsm AtChannel + SerialPort",
    "channel": "round trip, AtChannel alone on the raw fd",
    "linereader": "round trip, pyserial LineReader",
    "gsmmodem": "round trip, python-gsmmodem-new",
}


@contextlib.contextmanager
def responder() -> Iterator[str]:
    """A pty whose far end answers OK to every CR; yields the path a client opens."""
    master, slave = os.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen([sys.executable, str(CLIENT_SCRIPT), "responder", str(master)],
                            pass_fds=(master,))
    os.close(master)
    try:
        yield os.ttyname(slave)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        os.close(slave)


def peer_python() -> tuple[str | None, str]:
    """The bench venv's interpreter, or (None, why there is none)."""
    python = PEERS_VENV / "bin" / "python"
    if PEERS_READY.exists() and python.exists():
        return str(python), ""
    if PEERS_LOG.exists():
        lines = [line for line in PEERS_LOG.read_text(errors="replace").splitlines()
                 if line.strip()]
        last = lines[-1].strip() if lines else "no output"
        return None, f"not installed: the bench venv's pip install failed ({last[:160]})"
    return None, "not installed: no bench venv (make bench creates bench/.venv-peers)"


def client_us(python: str, kind: str, path: str, count: int) -> tuple[float, float]:
    """(wall µs, client CPU µs) per round trip, from one client process."""
    proc = subprocess.run([python, str(CLIENT_SCRIPT), kind, path, str(count)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} client failed: "
                           + (proc.stderr.strip().splitlines() or ["no output"])[-1])
    said = json.loads(proc.stdout)
    return float(said["us"]), float(said["cpu_us"])


def measure(smoke: bool) -> list[Figure]:
    count = 100 if smoke else 1_000
    runs = runs_for(smoke, QUICK_RUNS)
    peer, why_no_peer = peer_python()
    pythons = {"select": sys.executable, "airfsm": sys.executable, "channel": sys.executable,
               "linereader": sys.executable, "gsmmodem": peer}
    wall: dict[str, list[float]] = {kind: [] for kind in TITLES}
    cpu: dict[str, list[float]] = {kind: [] for kind in TITLES}
    with responder() as path:
        for _ in range(runs):
            for kind, python in pythons.items():
                if python is not None:
                    us, cpu_time = client_us(python, kind, path, count)
                    wall[kind].append(us)
                    cpu[kind].append(cpu_time)

    def cpu_us(kind: str) -> float:
        return statistics.median(cpu[kind])

    figures = []
    for kind, title in TITLES.items():
        if wall[kind]:
            figures.append(from_runs(f"round_trip.{kind}_us", title, wall[kind], "µs",
                                     notes=f"mean of {count} per run; client CPU "
                                           f"{cpu_us(kind):.0f} µs per round trip"))
        else:
            figures.append(not_measured(f"round_trip.{kind}_us", title, "µs", why_no_peer))
    ratio = from_runs("round_trip.airfsm_ratio", "round trip, airfsm / select loop",
                      ratio_runs(wall["airfsm"], wall["select"]), "x", RATIO_TARGET,
                      "run by run, the two clients one after the other")
    channel_ratio = from_runs("round_trip.channel_ratio",
                              "round trip, AtChannel alone / select loop",
                              ratio_runs(wall["channel"], wall["select"]), "x",
                              notes="the channel on the select loop's fd and reads, run by run")
    if ratio.passed is False:
        ratio.notes += (f"; missed: the airfsm client spends {cpu_us('airfsm'):.0f} µs of CPU "
                        f"per round trip against {cpu_us('select'):.0f} µs for the select loop "
                        f"and {cpu_us('channel'):.0f} µs for the channel alone on the raw fd "
                        f"({channel_ratio.value:.2f}x the loop's wall time): the rest is the "
                        "port layer, pyserial's write() (a select after every write) and read() "
                        "(its own select before each read, a copy), and a second read that finds "
                        "the port empty (the controller's read-until-empty loop)")
    figures.append(ratio)
    figures.append(channel_ratio)
    figures.append(from_runs("round_trip.airfsm_cpu_ratio",
                             "round trip CPU, airfsm / select loop",
                             ratio_runs(cpu["airfsm"], cpu["select"]), "x",
                             notes="the clients' own CPU time per round trip, run by run"))
    return figures


if __name__ == "__main__":
    sys.exit(main(measure, __doc__))
