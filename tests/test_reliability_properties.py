"""Property-based: random fault schedules on the virtual clock (tests/reliability/).

Safety is checked all along by the monitor (tests/reliability/monitor.py: one command in flight,
only the state's script, MCONFIG only with issued credentials, one QoS1 publish awaiting its
PUBACK, no secret in a log line at debug level, nothing deleted without its PUBACK, buffers
within capacity, no busy loop); liveness once the faults stop: ONLINE with the outbox drained
within the bound computed from the table (tests/reliability/bounds.py). A failing schedule
shrinks to a minimal one; those found are kept in tests/test_reliability_bugs.py (open bugs) or
in REGRESSIONS below (fixed ones), as JSON schedules any subject can replay.

`make test` runs a fixed, derandomized number of examples; `HYPOTHESIS_PROFILE=long make soak`
many more. Every subject in SUBJECTS (the C twin joins there) runs the same schedules.
"""

from __future__ import annotations

import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from tests.conftest import hypothesis_examples
from tests.reliability.campaign import run_schedule
from tests.reliability.driver import Schedule
from tests.reliability.schedules import HypothesisChoose, draw_schedule
from tests.reliability.subject import SUBJECTS

WRAP = 1 << 32

# Schedules that once broke a property, shrunk by hypothesis, replayed for ever.
REGRESSIONS: tuple[str, ...] = (
    # a PUBACK late and the session dropped while it was owed
    '{"events":[{"at_ms":0,"action":"fault","arg":"puback=late@1","count":1},'
    '{"at_ms":0,"action":"publish","arg":"a","count":1},'
    '{"at_ms":1,"action":"drop","arg":"","count":1}],"quiet_at_ms":5000}',
)


@pytest.mark.parametrize("subject", sorted(SUBJECTS))
@settings(max_examples=hypothesis_examples(300))
@given(data=st.data())
def test_random_fault_schedules_keep_safety_and_recover_once_they_stop(
        subject: str, data: st.DataObject) -> None:
    schedule = draw_schedule(HypothesisChoose(data))
    note(schedule.to_json())
    result = run_schedule(schedule, subject_factory=SUBJECTS[subject])
    event(f"faults fired: {min(result.faults_fired, 10)}{'+' if result.faults_fired > 9 else ''}")
    assert result.unexplained() == []


@pytest.mark.parametrize("subject", sorted(SUBJECTS))
@settings(max_examples=hypothesis_examples(100))
@given(data=st.data(), before_wrap=st.integers(0, 30 * 60_000))
def test_the_same_across_the_32_bit_clock_wrap(subject: str, data: st.DataObject,
                                               before_wrap: int) -> None:
    schedule = draw_schedule(HypothesisChoose(data))
    note(schedule.to_json())
    result = run_schedule(schedule, subject_factory=SUBJECTS[subject],
                          start_ms=WRAP - before_wrap)
    assert result.unexplained() == []


@pytest.mark.parametrize("schedule", REGRESSIONS)
@pytest.mark.parametrize("subject", sorted(SUBJECTS))
def test_regression_schedules(subject: str, schedule: str) -> None:
    result = run_schedule(Schedule.from_json(schedule), subject_factory=SUBJECTS[subject])
    assert result.problems() == []


def test_a_schedule_survives_json() -> None:
    from tests.reliability.schedules import RandomChoose

    schedule = draw_schedule(RandomChoose(7))
    assert Schedule.from_json(schedule.to_json()) == schedule
