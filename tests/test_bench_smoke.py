"""The benchmarks keep working: each bench module at its `--smoke` size gives well-formed rows.

Nothing here asserts a speed (speed belongs in `make bench`): only that every module still
runs against today's code and says what it measured, with a value or a reason for none, a target
that parses and a pass/miss that agrees with it. Peers that need the bench-only venv report
"not installed" rows when it is absent, which is well-formed too.
"""

from __future__ import annotations

import importlib
import json
import math
import statistics
from pathlib import Path

import pytest

from bench import report, run
from bench.figure import Figure, from_runs, parse_target, ratio_runs, table_lines

SMOKE_RESULTS: dict[str, list[Figure]] = {}


def smoke(module: str) -> list[Figure]:
    if module not in SMOKE_RESULTS:
        SMOKE_RESULTS[module] = importlib.import_module(f"bench.{module}").measure(True)
    return SMOKE_RESULTS[module]


def assert_well_formed(figures: list[Figure], module: str) -> None:
    assert figures, f"bench.{module} produced no figure"
    names = [f.name for f in figures]
    assert len(set(names)) == len(names), f"duplicate figure names: {names}"
    for f in figures:
        assert f.name and f.title and f.unit, f
        if f.value is None:
            assert f.notes, f"{f.name} has no value and does not say why"
            assert f.passed is None
        else:
            assert isinstance(f.value, float) and math.isfinite(f.value), f
        if f.target is None:
            assert f.passed is None
        else:
            parse_target(f.target)
            assert f.passed in (True, False) or f.value is None
        if f.runs:
            assert len(f.runs) >= 3, f"{f.name}: a median of fewer than 3 runs"
            assert f.value == pytest.approx(statistics.median(f.runs)), f
    json.loads(json.dumps([f.as_dict() for f in figures]))  # what results.json holds


@pytest.mark.parametrize("module", run.MODULES)
def test_every_benchmark_runs_at_smoke_size(module: str) -> None:
    assert_well_formed(smoke(module), module)


def test_the_c_twin_row_says_not_built_without_a_binary() -> None:
    from bench import c_twin

    if c_twin.BENCH_BINARY.exists():
        pytest.skip("a C bench binary is built here")
    assert all(f.value is None and "not built" in f.notes for f in smoke("c_twin"))


def test_report_writes_the_table_machine_and_methods(tmp_path: Path) -> None:
    results = run.collect(("at_digest",), smoke=True, echo=False)
    assert results["groups"][0]["error"] is None
    written = report.write(results, tmp_path)
    text = (tmp_path / report.DOC_NAME).read_text()
    for needle in ("## Machine", "| CPU |", "| Python |", "| date |", "## Figures",
                   "AT channel digest, mixed output, 512 B chunks", "## How each figure",
                   "512-byte chunks"):
        assert needle in text, needle
    if tmp_path / report.PLOT_NAME in written:
        assert (tmp_path / report.PLOT_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "matplotlib" in text


def test_a_missed_target_is_listed_with_its_reason(tmp_path: Path) -> None:
    row = Figure("x.y", "some figure", 2.0, "x", "<= 1.2", "missed: because of z").as_dict()
    results = {"machine": run.machine_info() | {"load_after": [0.0, 0.0, 0.0]}, "smoke": True,
               "groups": [{"module": "x", "method": "how", "seconds": 1.0, "error": None,
                           "figures": [row]}]}
    text = report.render_markdown(results, plot_written=False)
    missed = text.split("## Targets missed", 1)[1].split("##", 1)[0]
    assert "some figure" in missed and "because of z" in missed


def test_figure_pass_spread_and_targets() -> None:
    f = from_runs("a.b", "t", [3.0, 1.0, 2.0], "ms", "<= 2")
    assert f.value == 2.0 and f.passed is True and f.spread == pytest.approx(1.0)
    assert from_runs("a.c", "t", [3.0, 3.5, 4.0], "ms", "<= 2").passed is False
    assert from_runs("a.d", "t", [1.0, 1.0, 1.0], "ms").passed is None
    assert ratio_runs([2.0, 4.0], [1.0, 2.0]) == [2.0, 2.0]
    with pytest.raises(ValueError):
        Figure("a.e", "t", 1.0, "ms", "about 2")
    lines = table_lines([f])
    assert "pass" in lines[-1] and "<= 2" in lines[-1]
