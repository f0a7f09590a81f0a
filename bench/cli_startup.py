"""CLI start-up: the wall time of `airfsm --help`, `airfsm publish --help` and a real `airfsm
publish` (one message queued, fsync'ed, into a store made for the run in a temporary directory).

Each command is run as a user runs it (the `airfsm` console script of the venv, a fresh process
each time, output to a pipe) 15 times, in turn; the figure is the median wall time from spawn to
exit (the publish's includes its SQLite commit, which waits for the disk). As a user runs it means
with the bytecode cache an install writes: the commands run without PYTHONDONTWRITEBYTECODE (a
test or CI environment may set it, and then every start compiles every module: ~40 ms more here),
after one warm-up run that writes it. Where the target is missed, the notes name the imports that
cost the most, from one `python -X importtime` run of the same command (cumulative time of the
heaviest other packages and of airfsm's own modules).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.figure import Figure, from_runs, main

TARGET_MS = 150
COMMANDS = {"help": ["--help"], "publish_help": ["publish", "--help"],
            "publish": ["publish", "--data-dir", "{data_dir}", "/pk/dn/update", '{"t":21.5}']}
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def airfsm_command() -> list[str]:
    """The console script beside this interpreter (what `make` installs), else `-m airfsm`."""
    script = Path(sys.executable).with_name("airfsm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "airfsm"]


def user_env() -> dict[str, str]:
    """This environment as a user's shell has it: bytecode caches read and written."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall_ms(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, timeout=60, env=user_env())
    elapsed = (time.perf_counter() - start) * 1e3
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}")
    return elapsed


def heaviest_imports(args: list[str], top: int = 3) -> str:
    """The imports that cost the most, from `-X importtime`: other packages (by top-level
    package) and airfsm's own modules, each by cumulative time."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "airfsm", *args],
                          capture_output=True, text=True, timeout=60, env=user_env())
    packages: dict[str, int] = {}
    own: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if not match:
            continue
        name, cumulative = match.group(4), int(match.group(2))
        package = name.split(".", 1)[0]
        if package == "airfsm":
            if name != "airfsm.cli":  # the parser module: it holds everything
                own[name] = max(own.get(name, 0), cumulative)
        else:
            packages[package] = max(packages.get(package, 0), cumulative)

    def ranked(found: dict[str, int]) -> str:
        best = sorted(found.items(), key=lambda kv: kv[1], reverse=True)[:top]
        return ", ".join(f"{name} {us / 1e3:.0f} ms" for name, us in best)

    return f"{ranked(packages)}; {ranked(own)} (cumulative: nested imports count in both)"


def measure(smoke: bool) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="airfsm-bench-") as data_dir:
        from airfsm.host.store import SqliteOutbox, db_path

        SqliteOutbox(db_path(data_dir)).close()  # the store a gateway would have made
        commands = {key: [arg.replace("{data_dir}", data_dir) for arg in args]
                    for key, args in COMMANDS.items()}
        return _measure(commands, smoke)


def _measure(commands: dict[str, list[str]], smoke: bool) -> list[Figure]:
    repeats = 3 if smoke else 15
    base = airfsm_command()
    times: dict[str, list[float]] = {key: [] for key in commands}
    for args in commands.values():
        wall_ms(base + args)  # warm the page cache and the .pyc files
    for _ in range(repeats):
        for key, args in commands.items():
            times[key].append(wall_ms(base + args))
    figures = []
    for key, args in commands.items():
        title = "airfsm publish TOPIC PAYLOAD" if key == "publish" else f"airfsm {' '.join(args)}"
        fig = from_runs(f"cli.{key}_ms", title, times[key], "ms",
                        f"<= {TARGET_MS}", f"median of {repeats} runs")
        if fig.passed is False:
            fig.notes += f"; missed: heaviest imports {heaviest_imports(args)}"
        figures.append(fig)
    baseline = from_runs("cli.python_ms", "python -c pass (the floor)",
                         [wall_ms([sys.executable, "-c", "pass"]) for _ in range(repeats)],
                         "ms", notes="interpreter start alone, same venv")
    figures.append(baseline)
    return figures


if __name__ == "__main__":
    sys.exit(main(measure, __doc__))
