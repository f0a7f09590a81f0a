"""The C twin's tick and round trip, beside the Python figures.

The C port (port/c/) is not part of this harness; its build (`make -C port/c`) leaves an
executable `port/c/build/airfsm_bench` (port/c/posix/main_bench.c), which this module runs and
reports. The contract for that binary:

    airfsm_bench --tick                  -> prints {"idle_tick_ns": <mean ns of an idle ONLINE
                                            tick>, "one_line_tick_ns": <ns of a tick digesting
                                            one URC line>} (either key may be missing)
    airfsm_bench --round-trip PTY COUNT  -> prints {"round_trip_us": <mean µs of COUNT AT -> OK
                                            round trips over the pty at PTY>}

`--tick` brings the C controller ONLINE against an in-memory module that answers at once
(port/c/posix/canned_module.c) and times the tick alone, as bench/rigs.py does for the Python.
The round trip runs against the same responder as bench/round_trip.py. Without the binary the
rows say "not built": that is not a failure of anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.figure import Figure, main, not_measured
from bench.round_trip import responder

ROOT = Path(__file__).resolve().parent.parent
BENCH_BINARY = ROOT / "port" / "c" / "build" / "airfsm_bench"
ROWS = (
    ("c_twin.idle_tick_ns", "C twin: idle ONLINE tick", "ns", "idle_tick_ns"),
    ("c_twin.one_line_tick_ns", "C twin: tick digesting one URC line", "ns", "one_line_tick_ns"),
    ("c_twin.round_trip_us", "C twin: round trip over a pty", "µs", "round_trip_us"),
)


def _run(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([str(BENCH_BINARY), *args], capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: "
                           + (proc.stderr.strip().splitlines() or ["no output"])[-1])
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def measure(smoke: bool) -> list[Figure]:
    if not BENCH_BINARY.is_file():
        return [not_measured(name, title, unit, "not built (no port/c/build/airfsm_bench)")
                for name, title, unit, _ in ROWS]
    said: dict[str, Any] = {}
    problems = []
    try:
        said.update(_run(["--tick"]))
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        problems.append(f"--tick: {exc}")
    try:
        with responder() as path:
            said.update(_run(["--round-trip", path, "100" if smoke else "1000"]))
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        problems.append(f"--round-trip: {exc}")
    figures = []
    for name, title, unit, key in ROWS:
        value = said.get(key)
        if isinstance(value, (int, float)):
            figures.append(Figure(name, title, float(value), unit,
                                  notes="from port/c/build/airfsm_bench"))
        else:
            why = "; ".join(problems) or f"the bench binary did not report {key}"
            figures.append(not_measured(name, title, unit, why))
    return figures


if __name__ == "__main__":
    sys.exit(main(measure, __doc__))
