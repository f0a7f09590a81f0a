"""Run random fault schedules: safety all along, liveness once the faults stop.

`run_schedule` is what a property test calls for one schedule; `run_campaign` runs the seeded,
deterministic series whose figures docs/reliability.md shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airfsm.core.settings import Settings
from airfsm.sim import SimConfig
from tests.harness import seed_settings
from tests.reliability.bounds import quiet_bound
from tests.reliability.driver import Run, Schedule, logs_into
from tests.reliability.known_bugs import RunFacts, explaining, unexplained
from tests.reliability.monitor import LogWatch
from tests.reliability.schedules import RandomChoose, draw_schedule
from tests.reliability.subject import PythonSubject, SubjectFactory


@dataclass
class ScheduleResult:
    schedule: Schedule
    violations: list[str]
    settled: bool  # ONLINE with the outbox empty, within the bound after the faults stopped
    recovery_ms: int | None  # faults stopped -> settled
    bound_ms: int
    faults_fired: int
    messages: int
    lost: int
    dead: int
    duplicates: int
    commands: int
    log_lines: int
    facts: RunFacts

    def problems(self) -> list[str]:
        """Everything that broke a property, one line each (empty: the schedule passed)."""
        out = list(self.violations)
        if not self.settled:
            out.append(f"not ONLINE with the outbox drained within {self.bound_ms} ms of the "
                       f"faults stopping (ended in {self.facts.final_state})")
        if self.lost:
            out.append(f"{self.lost} accepted message(s) lost")
        return out

    def unexplained(self) -> list[str]:
        """The problems no known bug (tests.reliability.known_bugs) accounts for."""
        return unexplained(self.facts, self.problems())


def run_schedule(schedule: Schedule, settings: Settings | None = None,
                 subject_factory: SubjectFactory = PythonSubject, start_ms: int = 0,
                 config: SimConfig | None = None) -> ScheduleResult:
    settings = settings or seed_settings()
    bound = quiet_bound(settings).total_ms
    logs = LogWatch()
    with logs_into(logs):
        run = Run(config or SimConfig(), settings, subject_factory, start_ms, logs=logs)
        run.load(schedule)
        last_event = max((e.at_ms for e in schedule.events), default=0)
        run.run_until(lambda: run.quiet, schedule.quiet_at_ms + 1)
        quiet = run.elapsed
        settled = run.run_until(lambda: run.elapsed >= last_event and run.settled(), bound)
        return ScheduleResult(
            schedule=schedule, violations=run.violations(), settled=settled,
            recovery_ms=run.elapsed - quiet if settled else None, bound_ms=bound,
            faults_fired=len(run.fault_times), messages=len(run.enqueued), lost=len(run.lost()),
            dead=len(run.subject.dead()), duplicates=run.duplicates(),
            commands=run.monitor.commands, log_lines=logs.lines, facts=run.facts())


@dataclass
class Campaign:
    seeds: range
    results: list[ScheduleResult] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(int(getattr(r, name)) for r in self.results)

    @property
    def worst_recovery_ms(self) -> int:
        return max((r.recovery_ms or 0) for r in self.results)

    @property
    def failures(self) -> list[tuple[int, list[str]]]:
        """(seed, problems) of every schedule that broke a property unexplained by a known
        bug."""
        return [(seed, r.unexplained()) for seed, r in zip(self.seeds, self.results,
                                                             strict=True) if r.unexplained()]

    def known_bugs(self) -> dict[str, int]:
        """Known bug -> schedules it showed in."""
        counts: dict[str, int] = {}
        for r in self.results:
            for key in explaining(r.facts, r.problems()):
                counts[key] = counts.get(key, 0) + 1
        return counts


CAMPAIGN_SEEDS = range(1, 121)  # the schedules behind docs/reliability.md's figures


def run_campaign(seeds: range = CAMPAIGN_SEEDS, settings: Settings | None = None,
                 subject_factory: SubjectFactory = PythonSubject) -> Campaign:
    campaign = Campaign(seeds)
    for seed in seeds:
        schedule = draw_schedule(RandomChoose(seed))
        campaign.results.append(run_schedule(schedule, settings, subject_factory))
    return campaign
