"""The safety properties, checked while a run goes, from the module's side of the line.

`Monitor` is fed every write of the controller with the state it was in, what the simulator
observed (`SimEvent`s: a command received, its answer on the wire, a boot, a grant, a publish,
a PUBACK, a session up or down), and after every round what the outbox deleted as delivered
and the fill of the controller's buffers. It records a one-line violation for each broken rule:

* every write is one command ended by one CR (no CR, LF or NUL inside), or the body right
  after an AT+HTTPDATA prompt, exactly as long as announced;
* never a command outside its state's script (ONLINE: the table's `ONLINE_STEPS` - the probe,
  the keepalive, the cache read, the payload mode switches, the disconnect - and the outbox
  head's AT+MPUB, `MPUB_TEMPLATE`);
* never two commands in flight: the module receives a command only after its answer to the
  previous one went out, or after that command's deadline (the controller gave up), or after
  the module restarted or the port was replaced. (A line the module made of bytes it
  misread - say after a vanished port left it waiting for a body - is no command sent: the
  rule follows the commands the controller wrote.)
* a command's deadline is the table's timeout for it (each ONLINE step's, the publish timeout
  for AT+MPUB; for a prompt step, again from the body on);
* never AT+MCONFIG with credentials the auth server did not issue;
* never an AT+MPUB while a QoS1 publish awaits its PUBACK (until its PUBACK came, the PUBACK
  timeout passed since its OK, or the session ended);
* never a secret in a log line (`LogWatch`: the DeviceSecret, the sign, every iotToken);
* never a message deleted from the outbox as delivered without its PUBACK (QoS1) or the
  module's OK (QoS0);
* buffers never past their capacity.
"""

from __future__ import annotations

import io
import re
from collections import deque
from dataclasses import dataclass

from airfsm.core import aliyun
from airfsm.core.codes import State
from airfsm.core.settings import Settings
from airfsm.core.table import MACHINE, MPUB_TEMPLATE, ONLINE_STEPS, Step
from airfsm.core.timebase import ms_diff
from airfsm.sim import SimEvent
from airfsm.sim.module import split_args

MAX_VIOLATIONS = 50  # enough to see the pattern; a broken rule usually breaks again and again


def _pattern(template: str) -> re.Pattern[str]:
    """A step's command template as a regex: the literal text exactly, a {placeholder} as any
    text on one line."""
    parts = re.split(r"\{[a-z_]+\}", template)
    return re.compile("[^\r\n]*".join(re.escape(p) for p in parts) + r"\Z")


@dataclass(frozen=True)
class Allowed:
    pattern: re.Pattern[str]
    timeout_ms: int | None  # the deadline it must get (None: not in the table)
    prompt: bool


def allowed_commands(settings: Settings) -> dict[str, list[Allowed]]:
    """State name -> the commands its script may send."""
    def allowed(step: Step) -> Allowed:
        return Allowed(_pattern(step.command), step.timeout_ms, step.prompt)

    table: dict[str, list[Allowed]] = {
        row.state.name: [allowed(step) for step in row.steps] for row in MACHINE}
    online = table[State.ONLINE.name]
    online.extend(allowed(step) for step in ONLINE_STEPS)
    # the outbox head: its timeout is a setting, not the table's
    online.append(Allowed(_pattern(MPUB_TEMPLATE), settings.publish_timeout_ms, False))
    return table


class LogWatch(io.StringIO):
    """A log stream that counts lines and looks for every known secret in each of them."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self.lines = 0
        self.leaks: list[str] = []

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        for secret in self.secrets:
            if secret in text and len(self.leaks) < MAX_VIOLATIONS:
                self.leaks.append(f"secret {secret[:3]}... in a log line: {text[:160]!r}")
        return len(text)


@dataclass
class _InFlight:
    command: str
    sent_at: int
    deadline: int | None = None
    answered: bool = False
    prompt: bool = False


class Monitor:
    def __init__(self, settings: Settings, logs: LogWatch) -> None:
        self.settings = settings
        self.logs = logs
        self.allowed = allowed_commands(settings)
        self.violations: list[str] = []
        ident = settings.identity
        if ident.registered:
            logs.secrets.add(ident.device_secret)
            logs.secrets.add(aliyun.auth_params(ident, settings.sign_method)["sign"])
        if ident.product_secret:
            logs.secrets.add(ident.product_secret)
        self.grants: set[tuple[str, str, str]] = set()
        self.pubacked: set[bytes] = set()
        self.published: set[bytes] = set()
        self.commands = 0
        self.connacks = 0
        self._in_flight: _InFlight | None = None
        # commands written, not yet seen by the module: (line, state, timeouts the table gives)
        self._sent: deque[tuple[str, set[int | None], bool]] = deque()
        self._expected_timeouts: set[int | None] = set()
        self._body_due = 0  # AT+HTTPDATA=<n> written: a body of n bytes may follow
        self._last_written = ""
        # a QoS1 publish accepted by the module, until its PUBACK: (command, OK's time)
        self._awaiting: tuple[str, int | None] | None = None

    def violate(self, text: str) -> None:
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(text)

    # -- what the driver tells ----------------------------------------------------------------

    def wrote(self, at_ms: int, writes: list[tuple[str, bytes]]) -> None:
        """The controller's writes of this round, before the module reads them."""
        for state, data in writes:
            if not data.endswith(b"\r"):
                if len(data) != self._body_due:
                    self.violate(f"{at_ms}: {data[:40]!r} written outside a command "
                                 f"({self._body_due} body bytes were due)")
                self._body_due = 0
                continue
            self._body_due = 0
            command = data[:-1]
            if any(b in command for b in b"\r\n\x00"):
                self.violate(f"{at_ms}: {command[:80]!r}: a CR, LF or NUL inside a command")
            line = command.decode("latin-1")
            self._last_written = line
            matches = [a for a in self.allowed.get(state, []) if a.pattern.match(line)]
            if not matches:
                self.violate(f"{at_ms}: {line[:80]!r} is not in the script of {state}")
            if line.startswith("AT+HTTPDATA="):
                self._body_due = int(line[len("AT+HTTPDATA="):].split(",")[0] or 0)
            self._sent.append((line, {a.timeout_ms for a in matches} or {None},
                               any(a.prompt for a in matches)))

    def deadline_now(self, deadline: int | None) -> None:
        """The controller's deadline for the command in flight, after this round's writes
        (AT+HTTPDATA gets a new one when the body goes)."""
        flight = self._in_flight
        if (flight is None or flight.answered or deadline is None
                or self._last_written != flight.command):
            return  # it is another command's deadline (one the module took for body bytes)
        if flight.deadline is None:
            flight.deadline = deadline
            self._check_timeout(flight)
        elif flight.prompt and deadline != flight.deadline:
            flight.deadline = deadline

    def port_replaced(self) -> None:
        self._in_flight = None  # what the old port carried is gone with it

    def delivered(self, at_ms: int, deleted: list[tuple[bytes, int]]) -> None:
        for payload, qos in deleted:
            proof = self.pubacked if qos == 1 else self.published
            if payload not in proof:
                self.violate(f"{at_ms}: {payload[:40]!r} deleted from the outbox without "
                             + ("its PUBACK" if qos == 1 else "the module's OK"))

    def buffers(self, at_ms: int, levels: list[tuple[str, int, int]]) -> None:
        for name, fill, capacity in levels:
            if fill > capacity:
                self.violate(f"{at_ms}: {name} holds {fill}, capacity {capacity}")

    # -- what the module saw ------------------------------------------------------------------

    def on_event(self, event: SimEvent) -> None:
        kind = event.kind
        if kind == "command":
            self._on_command(event.at_ms, event.text)
        elif kind == "answered":
            flight = self._in_flight
            if flight is not None and flight.command == event.text:
                flight.answered = True
            if self._awaiting is not None and self._awaiting == (event.text, None):
                self._awaiting = (event.text, event.at_ms)
        elif kind == "boot":
            self._in_flight = None  # a restarted module forgot the command it was given
            self._awaiting = None
        elif kind in ("link_down", "connack"):
            self._awaiting = None  # that session's PUBACK will never come
            self.connacks += kind == "connack"
        elif kind == "grant":
            client_id, iot_id, token = event.text.split("\t")
            self.grants.add((client_id, iot_id, token))
            self.logs.secrets.add(token)
        elif kind == "registered":  # the DeviceSecret a registration issued
            self.logs.secrets.add(event.text)
        elif kind == "published":
            self.published.add(event.data)
            if event.number == 1 and self._in_flight is not None:
                self._awaiting = (self._in_flight.command, None)
        elif kind == "puback":
            self.pubacked.add(event.data)
            self._awaiting = None

    def _on_command(self, at_ms: int, line: str) -> None:
        """The module took `line` as a command: one the controller wrote, or bytes it misread
        (then no rule applies to it)."""
        while self._sent and self._sent[0][0] != line:
            self._sent.popleft()  # lost on the way (a module booting ignores its input)
        if not self._sent:
            return
        command, timeouts, prompt = self._sent.popleft()
        self.commands += 1
        flight = self._in_flight
        if flight is not None and not flight.answered and (
                flight.deadline is None or ms_diff(at_ms, flight.deadline) < 0):
            self.violate(f"{at_ms}: {command[:60]!r} sent while {flight.command[:60]!r} "
                         f"(sent at {flight.sent_at}) was unanswered and before its deadline")
        self._in_flight = _InFlight(command, at_ms, prompt=prompt)
        self._expected_timeouts = timeouts
        if command.startswith("AT+MCONFIG="):
            triple = split_args(command[len("AT+MCONFIG="):])
            if tuple(triple) not in self.grants:
                self.violate(f"{at_ms}: AT+MCONFIG with credentials no auth issued")
        if command.startswith("AT+MPUB=") and self._awaiting is not None:
            _awaited, ok_at = self._awaiting
            if ok_at is None or ms_diff(at_ms, ok_at) < self.settings.puback_timeout_ms:
                self.violate(f"{at_ms}: AT+MPUB while a QoS1 publish awaits its PUBACK")

    def _check_timeout(self, flight: _InFlight) -> None:
        expected = self._expected_timeouts
        assert flight.deadline is not None
        given = ms_diff(flight.deadline, flight.sent_at)
        if None not in expected and given not in expected:
            self.violate(f"{flight.sent_at}: {flight.command[:60]!r} got a {given} ms deadline, "
                         f"the table says {sorted(t for t in expected if t is not None)}")
