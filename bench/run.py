"""`make bench`: every figure side by side, one table, bench/results.json and docs/performance.*.

    python -m bench.run [--smoke] [--only MODULE ...] [--no-write]

Each benchmark module runs in its own process (`python -m bench.<module> --json`), one after
the other, so no module's state (imports, caches, the logger's secrets, a tracemalloc session)
colours the next one. A module that fails does not stop the others: its row says what went
wrong and `make bench` exits non-zero at the end. Without `--no-write` the results go to
bench/results.json and docs/performance.md / .png are regenerated from them (bench.report).
`--smoke` runs every module at its tiny size; it and `--only` write nothing unless asked with
`--write` (the committed results are always a whole full-size run).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.figure import Figure, table_lines

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
MODULES = ("at_digest", "tick_throughput", "outbox_cost", "scale", "round_trip", "cli_startup",
           "publish_throughput", "idle_cpu", "c_twin")
MODULE_TIMEOUT_S = 1_800


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))}, {platform.system()} " \
                       f"{platform.release()}"
    except OSError:
        pass
    return platform.platform()


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "airfsm"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (head or "unknown") + (" with uncommitted changes in airfsm/" if dirty else "")


def machine_info() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": _os_name(),
        "sqlite": sqlite3.sqlite_version,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }


def run_module(name: str, smoke: bool) -> tuple[list[Figure], str | None, float]:
    """The module's figures, or an error line; and the seconds it took."""
    cmd = [sys.executable, "-m", f"bench.{name}", "--json"] + (["--smoke"] if smoke else [])
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=MODULE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return [], f"timed out after {MODULE_TIMEOUT_S} s", time.monotonic() - start
    took = time.monotonic() - start
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return [], f"exit {proc.returncode}: {last}", took
    try:
        rows = json.loads(proc.stdout.strip().splitlines()[-1])
        return [Figure.from_dict(row) for row in rows], None, took
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        return [], f"unreadable output: {exc}", took


def method_of(name: str) -> str:
    """How the module measures: its docstring (the one description, also in the doc)."""
    doc = importlib.import_module(f"bench.{name}").__doc__ or ""
    return doc.strip()


def collect(modules: tuple[str, ...], smoke: bool, echo: bool = True) -> dict[str, Any]:
    machine = machine_info()
    groups = []
    for name in modules:
        if echo:
            print(f"== bench.{name}{' --smoke' if smoke else ''}", flush=True)
        figures, error, took = run_module(name, smoke)
        if echo:
            print(f"   {len(figures)} figures in {took:.0f} s"
                  + (f"; FAILED: {error}" if error else ""), flush=True)
        groups.append({"module": name, "method": method_of(name), "seconds": round(took, 1),
                       "error": error, "figures": [f.as_dict() for f in figures]})
    machine["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return {"machine": machine, "smoke": smoke, "groups": groups}


def all_figures(results: dict[str, Any]) -> list[Figure]:
    return [Figure.from_dict(row) for group in results["groups"] for row in group["figures"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds in all)")
    parser.add_argument("--only", nargs="+", choices=MODULES, help="run only these modules")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--write", action="store_true", help="write even with --smoke")
    args = parser.parse_args(argv)
    results = collect(tuple(args.only or MODULES), args.smoke)
    print()
    print("\n".join(table_lines(all_figures(results))))
    failed = [g["module"] for g in results["groups"] if g["error"]]
    for group in results["groups"]:
        if group["error"]:
            print(f"FAILED bench.{group['module']}: {group['error']}")
    whole_run = not args.smoke and not args.only
    if (whole_run or args.write) and not args.no_write:
        RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        written = report.write(results, ROOT / "docs")
        print(f"\nwrote {RESULTS.relative_to(ROOT)}, "
              + ", ".join(str(p.relative_to(ROOT)) for p in written))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
