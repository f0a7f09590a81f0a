"""The fault matrix, the seeded campaign and the 30-day soak (tests/reliability/), computed once
for the whole module, then asserted property by property - and docs/reliability.md, which shows
their figures, must be exactly what they give today."""

from __future__ import annotations

from pathlib import Path

import pytest

from airfsm.core.codes import State
from tests.reliability.bounds import STATES
from tests.reliability.known_bugs import KNOWN_BUGS
from tests.reliability.matrix import FAULTS
from tests.reliability.report import Figures, compute, render
from tests.reliability.soak import DAYS

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
COMMAND_FAULTS = ("silence", "ERROR", "+CME ERROR", "garbage", "over-long line",
                  "split at every boundary", "duplicated final", "URC inside a response",
                  "RDY (reboot)", "RDY after line noise", "+CGATT: 0", "+CGEV: ME DETACH",
                  "CLOSED", "port vanishes")


@pytest.fixture(scope="module")
def figures() -> Figures:
    return compute()


def test_every_cell_recovers_within_its_bound_and_loses_nothing(figures: Figures) -> None:
    problems = [f"{c.fault} in {c.state.name}: {p}" for c in figures.cells
                for p in c.unexplained()]
    assert problems == []
    for cell in figures.cells:
        assert cell.recovered == len(cell.fired), (cell.fault, cell.state.name)
        assert all(t.lost == 0 for t in cell.trials)


def test_every_fault_hits_every_state_it_can_happen_in(figures: Figures) -> None:
    by_key = {(c.fault, c.state): c for c in figures.cells}
    for fault in FAULTS:
        assert any(by_key[fault.name, s].fired for s in STATES), fault.name
    for name in COMMAND_FAULTS:  # these can hit any command: every state, every step
        for state in STATES:
            cell = by_key[name, state]
            assert cell.trials and len(cell.fired) == len(cell.trials), (name, state.name)
    assert State.FAILED not in STATES


def test_the_known_bugs_the_matrix_shows_are_registered(figures: Figures) -> None:
    shown = {k for c in figures.cells for k in c.known_bugs()}
    assert shown <= {b.key for b in KNOWN_BUGS}


def test_the_seeded_campaign_keeps_every_property(figures: Figures) -> None:
    campaign = figures.campaign
    assert campaign.failures == []
    assert campaign.total("lost") == 0
    assert campaign.total("faults_fired") > 2 * len(campaign.results)  # it is not idle


def test_thirty_days_across_the_clock_wrap_stay_bounded_and_deliver_everything(
        figures: Figures) -> None:
    soak = figures.soak
    assert soak.violations == []
    assert soak.wrapped and len(soak.samples) == DAYS
    assert soak.messages == soak.delivered > 4000 and soak.lost == 0
    assert soak.final_state == "ONLINE"
    assert soak.reboots >= 14 and soak.drops >= 100
    assert soak.refreshed_tokens >= 1 and soak.refused_connects == 0  # refreshed in time
    first = soak.samples[0]
    for sample in soak.samples:
        assert sample.queued <= 1  # the outbox drains between messages
        assert sample.footprint <= first.footprint * 1.05  # memory stays flat
        assert sample.reconnect_kinds <= len(soak.reconnects) <= 5  # counters by cause
        assert 0 <= sample.since_ms < 2**31  # status() sane across the wrap


def test_docs_reliability_md_is_what_the_proofs_give_today(figures: Figures) -> None:
    page = render(figures)
    assert DOC.read_text(encoding="utf-8") == page, (
        "docs/reliability.md is stale: python -m bench.reliability --out docs/reliability.md")
