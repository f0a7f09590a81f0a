"""Thirty simulated days at realistic fault rates, the clock started just before 2**32 ms.

The link drops every few hours (the server closes the session, or the network detaches), the
module reboots once a day for the first fortnight; then only the MQTT session drops, so only
the controller's own refresh keeps the iotToken alive (the simulated cloud accepts a token for 7
days at connect, as Alibaba Cloud does; the controller refreshes after 6). A message is
published every ten minutes. The monitor checks every safety property all along; once a day a
sample of what must stay bounded is taken: the controller's memory, its counters, the outbox,
the process-wide secret set, and `status()`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from airfsm.core.settings import Settings
from airfsm.sim import SimConfig
from tests import observe
from tests.harness import seed_settings
from tests.reliability.driver import Event, Run, Schedule, logs_into
from tests.reliability.monitor import LogWatch
from tests.reliability.subject import PythonSubject, SubjectFactory

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
DAYS = 30
REBOOT_DAYS = 15  # a reboot a day until then
DROP_EVERY_MS = (2 * HOUR_MS, 6 * HOUR_MS)  # a link loss every 2-6 hours
PUBLISH_EVERY_MS = 10 * 60_000
TOKEN_LIFETIME_MS = 7 * DAY_MS
START_MS = (1 << 32) - 10 * 60_000  # the 32-bit clock wraps ten minutes in
SEED = 30


def soak_schedule(days: int = DAYS, seed: int = SEED) -> Schedule:
    rng = random.Random(seed)
    events: list[Event] = []
    t = 0
    while True:
        t += rng.randint(*DROP_EVERY_MS)
        if t >= days * DAY_MS:
            break
        # A detach costs a new auth (the bearer goes): after the fortnight of reboots only the
        # session drops, so the token ages and the controller must refresh it itself.
        kinds = ("drop", "drop", "detach", "drop-silently") if t < REBOOT_DAYS * DAY_MS \
            else ("drop", "drop-silently")
        events.append(Event(t, rng.choice(kinds)))
    for day in range(1, min(days, REBOOT_DAYS) + 1):
        events.append(Event(day * DAY_MS - rng.randint(0, 8 * HOUR_MS), "reboot"))
    for n, t in enumerate(range(PUBLISH_EVERY_MS, days * DAY_MS, PUBLISH_EVERY_MS)):
        events.append(Event(t, "publish", f'{{"soak":{n}}}'))
    events.sort(key=lambda e: e.at_ms)
    return Schedule(tuple(events), quiet_at_ms=days * DAY_MS)


@dataclass
class DaySample:
    day: int
    state: str
    since_ms: int
    footprint: int
    queued: int
    secrets_added: int  # to the process-wide secret set since the soak began
    reconnect_kinds: int


@dataclass
class Soak:
    days: int
    samples: list[DaySample] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    messages: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    drops: int = 0
    reboots: int = 0
    auths: int = 0
    refreshed_tokens: int = 0  # MQTT_CONNECT asked for a fresh token on its own
    refused_connects: int = 0
    wrapped: bool = False  # the 32-bit clock went through 0
    final_state: str = ""
    reconnects: dict[str, int] = field(default_factory=dict)
    log_lines: int = 0
    commands: int = 0


def run_soak(days: int = DAYS, settings: Settings | None = None,
             subject_factory: SubjectFactory = PythonSubject) -> Soak:
    settings = settings or seed_settings()
    schedule = soak_schedule(days)
    soak = Soak(days)
    logs = LogWatch()
    with logs_into(logs):
        # A seed of its own: the tokens it is issued are new to the secret set whatever ran
        # before in this process, so what the set gains is the soak's doing.
        run = Run(SimConfig(token_lifetime_ms=TOKEN_LIFETIME_MS, seed=SEED), settings,
                  subject_factory, start_ms=START_MS, logs=logs)
        secrets_before = len(observe.registered_secrets())
        run.load(schedule)
        for day in range(1, days + 1):
            run.run_until(lambda d=day: run.elapsed >= d * DAY_MS, DAY_MS)
            soak.wrapped |= run.now < START_MS
            status = run.subject.status()
            controller = getattr(run.subject, "controller", None)
            soak.samples.append(DaySample(
                day, status["state"], status["since_ms"],
                observe.footprint(controller) if controller is not None else 0,
                len(run.subject.queued()), len(observe.registered_secrets()) - secrets_before,
                len(status["counters"]["reconnects"])))
        run.run_until(run.settled, 30 * 60_000)  # the last message of the month goes out
        status = run.subject.status()
    soak.violations = run.violations()
    soak.messages = len(run.enqueued)
    soak.delivered = len(set(run.enqueued) & run.monitor.pubacked)
    soak.lost = len(run.lost())
    soak.duplicates = run.duplicates()
    soak.drops = sum(1 for e in schedule.events if e.action.startswith("drop")
                     or e.action == "detach")
    soak.reboots = run.module.boots - 1
    soak.auths = run.module.auth_requests
    soak.reconnects = dict(status["counters"]["reconnects"])
    soak.refreshed_tokens = soak.reconnects.get("token_rejected", 0)
    connects = sum(1 for c in run.module.commands if c.startswith("AT+MCONNECT"))
    soak.refused_connects = connects - run.monitor.connacks
    soak.final_state = status["state"]
    soak.log_lines = logs.lines
    soak.commands = run.monitor.commands
    return soak
