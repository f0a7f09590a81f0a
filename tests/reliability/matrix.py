"""The fault matrix: every state x every fault the simulator (or the host) can inject, once.

A cell (state S, fault F) is run once per command S sends (`TARGETS`) and per variant of F:
the fault is armed the moment the controller, in S at that step, writes that command - so it
hits exactly that command's answer (or, for a network fault, the protocol event it causes) -
and the run goes on until the controller is ONLINE with its outbox empty and has stayed so for
as long as ONLINE needs to notice trouble (`bounds.online_ms`). Recovery is the time from the
fault firing to the last change that settled it (the last entry into ONLINE, the last message
deleted as delivered). It must be within `bounds.fault_bound(S)`; no message may be lost and
the monitors must see no violation.

Steps a clean run never sends (the AT+RESET of AUTOBAUD, ATTACH's radio cycle) are reached
with a prelude: faults that make ATTACH retry, or run out of retries, first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from airfsm.core.codes import State
from airfsm.core.settings import Settings
from airfsm.core.table import MACHINE
from airfsm.sim import SimConfig, parse_fault
from tests.harness import seed_settings
from tests.reliability.bounds import STATES, Bound, fault_bound, online_ms
from tests.reliability.driver import Event, Run, logs_into
from tests.reliability.known_bugs import RunFacts, explaining, unexplained
from tests.reliability.monitor import LogWatch
from tests.reliability.subject import PythonSubject, SubjectFactory

REACH_MS = 15 * 60_000  # a target not written within this is not reached (it never is)


@dataclass(frozen=True)
class Target:
    """A command the controller sends in `state`: `step` of its script (for ONLINE, what the
    command is for), recognised by the start of the line it writes."""

    state: State
    step: str
    prefix: bytes
    prelude: tuple[str, ...] = ()  # simulator faults armed at the start, to reach the step


def _targets() -> tuple[Target, ...]:
    preludes = {
        # ATTACH fails once (retry: the radio cycle runs) / twice (exhausted: AT+RESET first)
        ("ATTACH", "radio_off"): ("error:AT+CSQ@1",),
        ("ATTACH", "radio_on"): ("error:AT+CSQ@1",),
        ("AUTOBAUD", "reset"): ("error:AT+CSQ@2",),
    }
    out = []
    for row in MACHINE:
        for step in row.steps:
            prefix = step.command.split("{")[0].encode()
            out.append(Target(row.state, step.name, prefix,
                              preludes.get((row.state.name, step.name), ())))
    out += [Target(State.ONLINE, "publish", b"AT+MPUB="),
            Target(State.ONLINE, "mode switch", b"AT+MQTTMODE=1"),
            Target(State.ONLINE, "probe", b"AT+MQTTSTATU"),
            Target(State.ONLINE, "keepalive", b"AT+MSUB="),
            Target(State.ONLINE, "signal", b"AT+CSQ")]
    return tuple(out)


TARGETS = _targets()
EVERY_COMMAND: Callable[[Target], bool] = lambda t: True  # noqa: E731


def _at(state: State, *steps: str) -> Callable[[Target], bool]:
    return lambda t: t.state == state and t.step in steps


Inject = Callable[[Run, str, str], None]  # (the run, the variant, the command's line)


def _sim(*specs: str) -> Inject:
    """Arm simulator faults: `{line}` in a spec is the target command's line, `{}` the
    variant."""
    def inject(run: Run, variant: str, line: str) -> None:
        for spec in specs:
            run.module.add_fault(parse_fault(spec.replace("{line}", line).replace("{}",
                                                                                 variant)))
    return inject


def _unplug(run: Run, variant: str, line: str) -> None:
    run.apply(Event(0, "unplug"))
    if variant == "module rebooted":  # USB power went with the data lines
        run.apply(Event(0, "reboot"))


def _store(run: Run, variant: str, line: str) -> None:
    run.apply(Event(0, "store", variant))


def _expire(run: Run, variant: str, line: str) -> None:
    run.apply(Event(0, "expire-token"))


def _downlink_fault(spec: str) -> Inject:
    def inject(run: Run, variant: str, line: str) -> None:
        run.module.add_fault(parse_fault(spec))
        run.apply(Event(0, "downlink", '{"downlink":"the one the fault hits"}'))
    return inject


@dataclass(frozen=True)
class Fault:
    """A row of the matrix: a fault as the issue names it, how it is made, where it applies."""

    name: str
    how: str
    inject: Inject
    applies: Callable[[Target], bool] = EVERY_COMMAND
    variants: tuple[str, ...] = ("",)


ONLINE_PUBLISH = _at(State.ONLINE, "publish")
FAULTS: tuple[Fault, ...] = (
    Fault("silence", "`silence` on the command", _sim("silence:{line}@1")),
    Fault("ERROR", "`error`", _sim("error:{line}@1")),
    Fault("+CME ERROR", "`cme=N` (N: 3, 50, 767)", _sim("cme={}:{line}@1"),
          variants=("3", "50", "767")),
    Fault("garbage", "`garbage`: a line of random bytes first", _sim("garbage:{line}@1")),
    Fault("over-long line", "`overlong`: 4200 bytes of noise first", _sim("overlong:{line}@1")),
    Fault("split at every boundary", "`split=1`: the answer one byte a write",
          _sim("split=1:{line}@1")),
    Fault("split in random pieces", "`split`: 1-3 bytes a write", _sim("split:{line}@1")),
    Fault("duplicated final", "`dup-final`", _sim("dup-final:{line}@1")),
    Fault("URC inside a response", "`urc-inside`: +CEREG: 1 before the final code",
          _sim("urc-inside:{line}@1")),
    Fault("RDY (reboot)", "`reboot` instead of the answer", _sim("reboot:{line}@1")),
    Fault("RDY after line noise", "`reboot` + `noisy-rdy`",
          _sim("reboot:{line}@1", "noisy-rdy@1")),
    Fault("reboot mid-answer", "`brownout=8`: 8 bytes of the answer, then RDY",
          _sim("brownout=8:{line}@1")),
    Fault("+CGATT: 0", "`cgatt-detach`: detached, said only as +CGATT: 0",
          _sim("cgatt-detach:{line}@1")),
    Fault("+CGEV: ME DETACH", "`me-detach`", _sim("me-detach:{line}@1")),
    Fault("network detach", "`detach`: +PDP DEACT, +SAPBR 1: DEACT, CLOSED",
          _sim("detach:{line}@1")),
    Fault("CLOSED", "`closed` after the answer", _sim("closed:{line}@1")),
    Fault("HTTP 6xx", "`http=6xx` on the auth request (600-606)", _sim("http={}@1"),
          _at(State.HTTP_AUTH, "action"), tuple(str(s) for s in range(600, 607))),
    Fault("auth 401", "`auth=401`: signature mismatch", _sim("auth=401@1"),
          _at(State.HTTP_AUTH, "action")),
    Fault("auth 5001", "`auth=5001`: device not found", _sim("auth=5001@1"),
          _at(State.HTTP_AUTH, "action")),
    Fault("CONNECT FAIL", "`connect-fail`", _sim("connect-fail@1"),
          _at(State.MQTT_CONNECT, "tcp")),
    Fault("refused MCONNECT", "`connack=refused` (OK, then a bare ERROR)",
          _sim("connack=refused@1"), _at(State.MQTT_CONNECT, "connect")),
    Fault("token expired", "the cloud revokes the iotToken: MCONNECT ERROR, CLOSED", _expire,
          _at(State.MQTT_CONNECT, "close_stale", "config", "connect")),
    Fault("truncated auth reply", "`lose=20`: +HTTPREAD's body comes 20 bytes short",
          _sim("lose=20:{line}@1"), _at(State.HTTP_AUTH, "read")),
    Fault("truncated downlink", "`lose-downlink=5` on the next +MSUB",
          _downlink_fault("lose-downlink=5@1"), ONLINE_PUBLISH),
    Fault("cache notice", "`cache-notice`: +MSUB: <slot>, read with AT+MQTTMSGGET",
          _downlink_fault("cache-notice@1"), ONLINE_PUBLISH),
    Fault("PUBACK lost", "`puback=lost`", _sim("puback=lost@1"), ONLINE_PUBLISH),
    Fault("PUBACK late", "`puback=late` (5x)", _sim("puback=late@1"), ONLINE_PUBLISH),
    Fault("refused MPUB", "`error` / `cme=767` on AT+MPUB", _sim("{}:{line}@1"),
          ONLINE_PUBLISH, ("error", "cme=767")),
    Fault("port vanishes", "the port is closed under it, reopened after the gateway's "
          "first reopen backoff (module kept, or rebooted with the USB power)", _unplug,
          variants=("module kept", "module rebooted")),
    Fault("store write error", "the outbox refuses its next ack / mark_attempt (disk full)",
          _store, _at(State.ONLINE, "publish", "mode switch"), ("ack", "mark_attempt")),
)


@dataclass
class Trial:
    """One run of a cell: where the fault was armed and what came of it."""

    fault: str
    target: Target
    variant: str
    fired: bool = False
    recovery_ms: int | None = None  # None: did not recover (with `fired`)
    lost: int = 0
    duplicates: int = 0
    violations: list[str] = field(default_factory=list)
    commands: int = 0
    facts: RunFacts | None = None

    def problems(self, bound_ms: int) -> list[str]:
        """Every broken property of this trial, one line each."""
        if not self.fired:
            return []
        out = list(self.violations)
        if self.recovery_ms is None:
            out.append("not ONLINE with the outbox drained at the end")
        elif self.recovery_ms > bound_ms:
            out.append(f"recovered in {self.recovery_ms} ms, over the bound of {bound_ms}")
        if self.lost:
            out.append(f"{self.lost} message(s) lost")
        return out

    def known_bugs(self, bound_ms: int) -> list[str]:
        assert self.facts is not None or not self.fired
        return explaining(self.facts, self.problems(bound_ms)) if self.facts else []

    def unexplained(self, bound_ms: int) -> list[str]:
        return unexplained(self.facts, self.problems(bound_ms)) if self.facts else []


@dataclass
class Cell:
    state: State
    fault: str
    bound: Bound
    trials: list[Trial] = field(default_factory=list)

    @property
    def fired(self) -> list[Trial]:
        return [t for t in self.trials if t.fired]

    @property
    def worst_ms(self) -> int | None:
        times = [t.recovery_ms for t in self.fired if t.recovery_ms is not None]
        return max(times) if times else None

    @property
    def recovered(self) -> int:
        """Trials that recovered within the bound, losing nothing (a known bug's symptom,
        e.g. a busy loop on the way, still counts as a recovery: it is flagged apart)."""
        return sum(1 for t in self.fired if t.recovery_ms is not None
                   and t.recovery_ms <= self.bound.total_ms and not t.lost)

    def known_bugs(self) -> list[str]:
        return sorted({k for t in self.trials for k in t.known_bugs(self.bound.total_ms)})

    def unexplained(self) -> list[str]:
        return [f"{t.target.step}{' ' + t.variant if t.variant else ''}: {p}"
                for t in self.trials for p in t.unexplained(self.bound.total_ms)]


def run_trial(fault: Fault, target: Target, variant: str, settings: Settings,
              subject_factory: SubjectFactory = PythonSubject) -> Trial:
    trial = Trial(fault.name, target, variant)
    logs = LogWatch()
    with logs_into(logs):
        # A device that registers (PROVISION) meets a cloud with registration on.
        product_secret = settings.identity.product_secret or None
        run = Run(SimConfig(faults=[parse_fault(p) for p in target.prelude],
                            product_secret=product_secret), settings, subject_factory, logs=logs)
        run.publish(b"queued before the start")
        armed_at: list[int] = []

        def before_command(r: Run, writes: list[tuple[str, bytes]]) -> None:
            state, data = writes[-1]
            if armed_at or state != target.state.name or not data.startswith(target.prefix):
                return
            if target.state != State.ONLINE and r.subject.step() != target.step:
                return
            armed_at.append(r.elapsed)
            fault.inject(r, variant, data.split(b"\r")[0].decode("latin-1"))

        run.before_command = before_command
        online_traffic = _OnlineTraffic(run)
        run.run_until(lambda: online_traffic() or bool(armed_at), REACH_MS)
        if not armed_at:
            return trial  # never written: the target is not reached in this run

        def fired() -> list[int]:
            return [t for t in run.fault_times if t >= armed_at[0]]

        bound = fault_bound(target.state, settings)
        run.run_until(lambda: online_traffic() or bool(fired()) and run.settled(),
                      bound.total_ms)
        run.run_for(online_ms(settings))  # settled for as long as ONLINE needs to tell
        trial.fired = bool(fired())
        trial.violations = run.violations()
        trial.lost = len(run.lost())
        trial.duplicates = run.duplicates()
        trial.commands = run.monitor.commands
        trial.facts = run.facts()
        if trial.fired and run.settled():
            first = fired()[0]
            trial.recovery_ms = max(t - first for t in [first, *run.online_entries, *run.acks])
    return trial


class _OnlineTraffic:
    """Once ONLINE: a text message, a binary one (it needs the mode switch), a downlink.
    Called as a `run_until` condition; always False."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.sent = False

    def __call__(self) -> bool:
        if not self.sent and self.run.online:
            self.sent = True
            self.run.publish(b'{"online":"text, with \\"quotes\\""}')
            self.run.publish(b"\x00binary\xff")
            self.run.apply(Event(0, "downlink", '{"downlink":1}'))
        return False


REGISTER_PRODUCT_SECRET = "Pr0ductS3cretForTheWholeProduct1"


def registering(settings: Settings) -> Settings:
    """`settings` for the same device with only the ProductSecret: it registers first."""
    identity = replace(settings.identity, device_secret="",
                       product_secret=REGISTER_PRODUCT_SECRET)
    return replace(settings, identity=identity)


def settings_for(state: State, settings: Settings) -> Settings:
    """The settings a cell of `state` runs with: PROVISION runs only for a device that has its
    ProductSecret and no DeviceSecret."""
    return registering(settings) if state == State.PROVISION else settings


def run_matrix(settings: Settings | None = None,
               subject_factory: SubjectFactory = PythonSubject) -> list[Cell]:
    settings = settings or seed_settings()
    cells = []
    for fault in FAULTS:
        for state in STATES:
            cell_settings = settings_for(state, settings)
            cell = Cell(state, fault.name, fault_bound(state, cell_settings))
            for target in TARGETS:
                if target.state != state or not fault.applies(target):
                    continue
                for variant in fault.variants:
                    cell.trials.append(run_trial(fault, target, variant, cell_settings,
                                                 subject_factory))
            cells.append(cell)
    return cells
