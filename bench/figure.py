"""One result row of a benchmark, and the few helpers every benchmark module shares.

A `Figure` is what `bench/results.json` holds for one measurement: its name, value and unit,
the target from the performance issue (or None: reported beside the others, nothing to pass),
whether the value meets it, and notes (what was measured, and where a target is missed, the
measured reason). `runs` are the individual runs; the value is their median and `spread` is
(max - min) / median, so a reader can tell a real difference from noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

RUNS = 5  # runs of a figure at full size (the issue asks for medians of >= 3)
QUICK_RUNS = 9  # for benchmarks whose run takes well under a second
SMOKE_RUNS = 3

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda v, t: v >= t,
    "<=": lambda v, t: v <= t,
    ">": lambda v, t: v > t,
    "<": lambda v, t: v < t,
    "==": lambda v, t: v == t,
}


def parse_target(target: str) -> tuple[str, float]:
    """`">= 9.2"` -> (">=", 9.2). ValueError for anything else."""
    op, _, number = target.strip().partition(" ")
    if op not in _OPS:
        raise ValueError(f"target {target!r}: expected one of {', '.join(_OPS)} then a number")
    return op, float(number)


@dataclass
class Figure:
    name: str  # stable id: "<module>.<what>", e.g. "at_digest.mb_per_s"
    title: str  # what a reader sees in the table
    value: float | None  # None: not measured (say why in notes)
    unit: str
    target: str | None = None  # ">= 9.2", "<= 1.2" ... None: reported, no target
    notes: str = ""
    runs: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.target is not None:
            parse_target(self.target)  # a typo in a target is a bug, not a silent "pass"

    @property
    def passed(self) -> bool | None:
        """True / False against the target; None when there is no target or no value."""
        if self.target is None or self.value is None:
            return None
        op, limit = parse_target(self.target)
        return _OPS[op](self.value, limit)

    @property
    def spread(self) -> float | None:
        """(max - min) / median of the runs; None for fewer than 2 runs or a zero median."""
        if len(self.runs) < 2:
            return None
        mid = statistics.median(self.runs)
        return (max(self.runs) - min(self.runs)) / abs(mid) if mid else None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "value": self.value, "unit": self.unit,
                "target": self.target, "pass": self.passed, "notes": self.notes,
                "runs": self.runs, "spread": self.spread}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Figure:
        return cls(name=data["name"], title=data["title"], value=data["value"],
                   unit=data["unit"], target=data["target"], notes=data.get("notes", ""),
                   runs=list(data.get("runs", [])))


def from_runs(name: str, title: str, runs: Sequence[float], unit: str,
              target: str | None = None, notes: str = "") -> Figure:
    """A figure whose value is the median of `runs`."""
    values = [float(r) for r in runs]
    return Figure(name, title, statistics.median(values) if values else None, unit, target,
                  notes, values)


def not_measured(name: str, title: str, unit: str, why: str,
                 target: str | None = None) -> Figure:
    """A row that could not be measured here, saying why (never a made-up value)."""
    return Figure(name, title, None, unit, target, why)


def ratio_runs(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Run-by-run ratios (runs i of both sides were taken side by side)."""
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def runs_for(smoke: bool, full: int = RUNS) -> int:
    """Runs at this size: `full` (at least 3) normally, SMOKE_RUNS at --smoke size. Quick
    benchmarks ask for more runs: their median then shrugs off a neighbour's burst of work on
    a shared machine."""
    return SMOKE_RUNS if smoke else max(3, full)


def fmt_value(value: float | None) -> str:
    """A number as a table shows it: 3 significant digits, no exponent for everyday sizes."""
    if value is None:
        return "—"
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude >= 0.01:
        return f"{value:.3f}"
    return f"{value:.2g}"


def fmt_pass(passed: bool | None) -> str:
    return {True: "pass", False: "MISS", None: "—"}[passed]


def table_lines(figures: Sequence[Figure]) -> list[str]:
    """A plain-text table for a terminal."""
    rows = [("figure", "value", "unit", "target", "", "spread")]
    for f in figures:
        spread = f"{f.spread * 100:.0f} %" if f.spread is not None else ""
        rows.append((f.title, fmt_value(f.value), f.unit, f.target or "", fmt_pass(f.passed),
                     spread))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1])]
        cells += [c.ljust(w) for c, w in zip(row[2:], widths[2:], strict=True)]
        out.append("  ".join(cells).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def main(measure: Callable[[bool], list[Figure]], doc: str | None,
         argv: Sequence[str] | None = None) -> int:
    """The command line every benchmark module shares: `[--smoke] [--json]`."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="a seconds-long run at a tiny size (make test runs these)")
    parser.add_argument("--json", action="store_true",
                        help="print the figures as JSON (what bench.run reads)")
    args = parser.parse_args(argv)
    figures = measure(args.smoke)
    if args.json:
        json.dump([f.as_dict() for f in figures], sys.stdout)
        sys.stdout.write("\n")
    else:
        print("\n".join(table_lines(figures)))
        for f in figures:
            if f.notes:
                print(f"  {f.title}: {f.notes}")
    return 0
