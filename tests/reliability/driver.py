"""Run a fault schedule against a controller in virtual time, with the monitors watching.

A `Schedule` is data (JSON-able, so a failing one can be kept, replayed and fed to the C twin):
timed `Event`s - a simulator fault armed, the server dropping the link, a reboot, a vanished
port, a store that refuses writes, a message published, a downlink - and the time the faults
stop. `Run` joins a `SimModule` and a `Subject` (`tests.reliability.subject`) on a virtual
clock: time only moves when both sides are idle, straight to the earliest deadline (the
simulator's, the controller's, the next event's). Every round it hands the module's output to
the controller, the controller's writes to the module, and what both did to the `Monitor`.

`before_command`, when set, is called with the writes of a round before the module reads
them: the fault matrix arms its fault there, so it hits exactly the command it targets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from airfsm.core.settings import Settings
from airfsm.core.timebase import ms_add, ms_diff
from airfsm.host import log
from airfsm.sim import SimConfig, SimEvent, SimModule, parse_fault
from tests.reliability.bounds import REOPEN_MS
from tests.reliability.known_bugs import RunFacts
from tests.reliability.monitor import LogWatch, Monitor
from tests.reliability.subject import PythonSubject, Subject, SubjectFactory

ACTIONS = {
    "fault": "arm a simulator fault (arg: its spec, e.g. silence:AT+CGATT?@2)",
    "drop": "the server drops the MQTT link (CLOSED)",
    "drop-silently": "the server closes the session and the module does not notice",
    "detach": "the network detaches (+PDP DEACT, +SAPBR 1: DEACT, CLOSED)",
    "reboot": "the module power-cycles",
    "expire-token": "the cloud revokes the iotToken it issued",
    "unplug": "the serial port vanishes; the gateway reopens it after REOPEN_MS",
    "store": "the next `count` outbox calls of arg (peek, mark_attempt, ack, dead_letter, "
             "write) fail",
    "publish": "the application queues arg (QoS1)",
    "downlink": "the cloud sends arg to the device's subscription",
}
FAULT_ACTIONS = frozenset(ACTIONS) - {"publish", "downlink"}
SPIN_ROUNDS = 5  # idle rounds in a row at one time that make a busy loop


@dataclass(frozen=True)
class Event:
    at_ms: int  # after the schedule's start, virtual ms
    action: str  # a key of ACTIONS
    arg: str = ""
    count: int = 1


@dataclass(frozen=True)
class Schedule:
    """What happens when. Faults stop at `quiet_at_ms`: armed ones are cleared, the store
    heals, and from then on only `publish`/`downlink` events apply."""

    events: tuple[Event, ...]
    quiet_at_ms: int

    def to_json(self) -> str:
        return json.dumps({"events": [asdict(e) for e in self.events],
                           "quiet_at_ms": self.quiet_at_ms}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        raw = json.loads(text)
        return cls(tuple(Event(**e) for e in raw["events"]), int(raw["quiet_at_ms"]))


@contextmanager
def logs_into(watch: LogWatch, level: str = "debug") -> Iterator[LogWatch]:
    """Every log line of the run, rendered as in production (redaction included), into
    `watch`."""
    log.configure(level, json=True, stream=watch)
    try:
        yield watch
    finally:
        log.configure("warning")


@dataclass
class Run:
    config: SimConfig
    settings: Settings
    subject_factory: SubjectFactory = PythonSubject
    start_ms: int = 0
    logs: LogWatch = field(default_factory=LogWatch)
    before_command: Callable[[Run, list[tuple[str, bytes]]], None] | None = None

    def __post_init__(self) -> None:
        self.now = self.start_ms & 0xFFFFFFFF  # the 32-bit clock both sides see
        self.elapsed = 0  # ms since the start, unbounded: what the schedule's times count
        self.module = SimModule(self.config, now_ms=self.now)
        self.subject: Subject = self.subject_factory(self.settings, self.now)
        self.monitor = Monitor(self.settings, self.logs)
        self.module.observer = self._on_sim_event
        self.events: list[tuple[int, Event]] = []  # (elapsed ms, event), in time order
        self.quiet_at: int | None = None  # elapsed ms
        self.quiet = False  # faults have stopped
        self._horizon: int | None = None  # run_until's end (elapsed): time never jumps past it
        self.spins = 0  # rounds the controller asked to run again at once with nothing to do
        self._idle_rounds = 0
        # What happened when, in elapsed ms.
        self.fault_times: list[int] = []  # every fault that fired, simulator's or the driver's
        self.fired_faults: list[str] = []  # the simulator's, by spec
        self.online_entries: list[int] = []
        self.departures: list[tuple[int, str]] = []  # left ONLINE: (when, for which state)
        self.acks: list[int] = []  # when the outbox deleted a message as delivered
        self.enqueued: list[bytes] = []
        self.refused: list[bytes] = []  # publish() said ValueError: never accepted
        self.published: list[bytes] = []  # every AT+MPUB payload the module accepted
        self.inbound: list[tuple[str, bytes]] = []
        self.rounds = 0
        self._replug_at: int | None = None  # elapsed ms
        self._state = self.subject.state
        self._sub_topic = self.settings.subscriptions()[0]

    # -- the schedule -------------------------------------------------------------------------

    def load(self, schedule: Schedule) -> None:
        """Events relative to now."""
        for event in schedule.events:
            self.events.append((self.elapsed + event.at_ms, event))
        self.events.sort(key=lambda item: item[0])
        self.quiet_at = self.elapsed + schedule.quiet_at_ms

    def apply(self, event: Event) -> None:
        """Do what `event` says, now."""
        now, action = self.now, event.action
        if action in FAULT_ACTIONS and action != "fault":
            self.fault_times.append(self.elapsed)
        if action == "fault":
            self.module.add_fault(parse_fault(event.arg))
        elif action == "drop":
            self.module.drop_mqtt(now)
        elif action == "drop-silently":
            self.module.drop_mqtt_silently(now)
        elif action == "detach":
            self.module.detach(now)
        elif action == "reboot":
            self.module.reboot(now)
        elif action == "expire-token":
            self.module.expire_token()
        elif action == "unplug":
            if self._replug_at is None:
                self.subject.unplug()
                self._replug_at = self.elapsed + REOPEN_MS
        elif action == "store":
            self.subject.fail_store(event.arg, event.count)
        elif action == "publish":
            self.publish(event.arg.encode("utf-8", "surrogateescape"))
        elif action == "downlink":
            self.module.send_downlink(self._sub_topic, event.arg.encode(), now)
        else:
            raise ValueError(f"unknown schedule action {action!r}")

    def publish(self, payload: bytes, qos: int = 1, topic: str = "update") -> bool:
        try:
            self.subject.publish(topic, payload, qos)
        except ValueError:
            self.refused.append(payload)
            return False
        self.enqueued.append(payload)
        return True

    def _due(self) -> None:
        while self.events and self.elapsed >= self.events[0][0]:
            _at, event = self.events.pop(0)
            if self.quiet and event.action in FAULT_ACTIONS:
                continue
            self.apply(event)
        if not self.quiet and self.quiet_at is not None and self.elapsed >= self.quiet_at:
            self.quiet = True
            self.module.clear_faults()
            self.subject.heal_store()
        if self._replug_at is not None and self.elapsed >= self._replug_at:
            self._replug_at = None
            self.subject.replug(self.now)
            self.monitor.port_replaced()

    # -- the clock ----------------------------------------------------------------------------

    def step(self) -> None:
        """One round: due events, module output -> controller tick -> module input, then jump
        to the earliest deadline."""
        self.rounds += 1
        self._due()
        out = self.module.output(self.now)
        if out:
            self.subject.receive(out)
        next_tick = self.subject.tick(self.now)
        self._note_state()
        writes = self.subject.transmitted()
        self.monitor.wrote(self.now, writes)
        if writes:
            if self.before_command is not None:
                self.before_command(self, writes)
            self.module.receive(b"".join(data for _state, data in writes), self.now)
            self.monitor.deadline_now(self.subject.command_deadline())
            self._after_round()
            return  # the module may answer at once: run again without moving time
        self.monitor.deadline_now(self.subject.command_deadline())
        self._after_round()
        if self.subject.input_pending():
            self._idle_rounds = 0
            return  # a tick reads a bounded amount: the host's select() wakes again at once
        if out or ms_diff(next_tick, self.now) > 0:
            self._idle_rounds = 0
        else:
            next_tick = self._spun(next_tick)
        # Deadlines on the 32-bit clock are near (< 2**31 ms); the schedule's are elapsed ms.
        waits = [ms_diff(t, self.now) for t in (next_tick, self.module.next_deadline())
                 if t is not None]
        marks = [self._replug_at, self._horizon, None if self.quiet else self.quiet_at,
                 self.events[0][0] if self.events else None]
        waits += [t - self.elapsed for t in marks if t is not None]
        wait = min(waits, default=0)
        if wait > 0:
            self.now = ms_add(self.now, wait)
            self.elapsed += wait

    def _spun(self, next_tick: int) -> int | None:
        """The controller read nothing, wrote nothing and asks to run again at once. Once is
        a state change finishing; again and again is a busy loop (the host's select() would
        spin at 100 % CPU): a violation. Time then goes on to the other deadlines."""
        self._idle_rounds += 1
        if self._idle_rounds < SPIN_ROUNDS:
            return next_tick
        self.spins += 1
        if self.spins == 1:
            self.monitor.violate(
                f"{self.now}: busy loop: tick() asks for a tick at once with nothing to do, "
                f"in {self.subject.state} step {self.subject.step()}")
        return self.subject.command_deadline()

    def _after_round(self) -> None:
        deleted = self.subject.delivered()
        if deleted:
            self.monitor.delivered(self.now, deleted)
            self.acks.extend(self.elapsed for _ in deleted)
        self.monitor.buffers(self.now, self.subject.buffer_levels())
        self.inbound.extend(self.subject.inbound())

    def _note_state(self) -> None:
        state = self.subject.state
        if state == self._state:
            return
        if state == "ONLINE":
            self.online_entries.append(self.elapsed)
        elif self._state == "ONLINE":
            self.departures.append((self.elapsed, state))
        self._state = state

    def _on_sim_event(self, event: SimEvent) -> None:
        self.monitor.on_event(event)
        if event.kind == "fault":
            self.fault_times.append(self.elapsed + ms_diff(event.at_ms, self.now))
            self.fired_faults.append(event.text)
        elif event.kind == "published":
            self.published.append(event.data)

    def run_until(self, done: Callable[[], bool], max_ms: int,
                  max_rounds: int = 5_000_000) -> bool:
        """Step until `done()`; False when `max_ms` passed first."""
        end = self.elapsed + max_ms
        self._horizon = end
        try:
            for _ in range(max_rounds):
                if done():
                    return True
                if self.elapsed >= end:
                    return bool(done())
                self.step()
        finally:
            self._horizon = None
        raise AssertionError(f"no progress in {max_rounds} rounds (livelock?)")

    def run_for(self, ms: int) -> None:
        self.run_until(lambda: False, ms)

    # -- what it came to ----------------------------------------------------------------------

    @property
    def online(self) -> bool:
        return self.subject.state == "ONLINE"

    def settled(self) -> bool:
        """ONLINE with nothing left to deliver."""
        return self.online and not self.subject.queued()

    def lost(self) -> list[bytes]:
        """Accepted and gone without a PUBACK, outside the dead letters. (Still queued is not
        lost: that is the outbox's promise.)"""
        kept = set(self.subject.queued()) | set(self.subject.dead())
        return [p for p in self.enqueued if p not in self.monitor.pubacked and p not in kept]

    def duplicates(self) -> int:
        return len(self.published) - len(set(self.published))

    def facts(self) -> RunFacts:
        status = self.subject.status()
        return RunFacts(tuple(self.fired_faults), status["state"], status["fail_reason"])

    def violations(self) -> list[str]:
        problems = list(self.monitor.violations) + list(self.logs.leaks)
        errors = self.subject.status()["counters"]["internal_errors"]
        if errors:
            problems.append(f"{errors} exception(s) escaped into tick()'s guard")
        return problems
