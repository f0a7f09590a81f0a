"""The proof of lockstep: the Python controller and its C twin fed the same bytes at the same
virtual times, every request's output compared line for line.

`CTwin` talks to `port/c/build/asan/controller-harness` (port/c/tests/controller_harness.c: the
C controller on an in-memory line, under ASan+UBSan). `LockstepSubject` is a
`tests.reliability.subject.Subject` that runs `airfsm.core.controller.Controller` exactly as
`PythonSubject` does and the C twin beside it: every byte the simulated module sends goes to
both, every tick, publish, unplug, replug and store failure happens to both, and what each did -
every write (with the state it was made in), state change, log event (codes and data), inbound
message, outbox call, and after a tick the deadline, state, step, command deadline and whether
input waits - is printed in the same line format by both (`PyRecorder` here, the harness in
C) and compared after every request. The first difference raises `LockstepError` with both
outputs and the recent history, so any schedule the reliability driver runs (the fault matrix,
the random schedules, the campaign) is a lockstep proof; the monitors watch the Python side,
whose every output the C one then equals.
"""

from __future__ import annotations

import re
import subprocess
import weakref
from collections import deque
from typing import Any

from airfsm.core import aliyun
from airfsm.core import outbox as core_outbox
from airfsm.core.codes import LogEvent, LogLevel, OutboxStatus, Reason, State, Trigger
from airfsm.core.controller import Controller
from airfsm.core.outbox import OutboxFullError
from airfsm.core.settings import Settings
from airfsm.host import log, reasons
from airfsm.host.serial import MemoryPort, memory_pair
from tests import cport, observe
from tests.reliability.subject import TapPort, WatchedOutbox

HARNESS = "controller-harness"
# The RAM outbox inside airfsm_t holds this many messages (port/c/core/airfsm_config.h).
RAM_SLOTS = int(re.search(r"#define AIRFSM_OUTBOX_SLOTS (\d+)",
                          (cport.PORT_C / "core" / "airfsm_config.h").read_text())[1])  # type: ignore[index]
HISTORY_LINES = 60  # how much of the conversation a LockstepError shows


class LockstepError(AssertionError):
    """The Python controller and the C twin did something different."""


def settings_lines(settings: Settings) -> list[str]:
    """The harness's `set`/`sub` requests for `settings` (None in Python: 0 or "" in C)."""
    ident = settings.identity
    if settings.jitter_seed == 0:
        raise ValueError("jitter_seed 0 is 'derived from the device name' in C: use None")
    text = {
        "product_key": ident.product_key, "device_name": ident.device_name,
        "device_secret": ident.device_secret, "region": ident.region,
        "client_id": ident.client_id or "", "apn": settings.apn,
        "product_secret": ident.product_secret, "instance_id": ident.instance_id or "",
        "mqtt_host": settings.mqtt_host or "",
    }
    numbers = {
        # the index in aliyun_sign_method_t (one past the end for one C does not know)
        "sign_method": (aliyun.SIGN_METHODS.index(settings.sign_method)
                        if settings.sign_method in aliyun.SIGN_METHODS
                        else len(aliyun.SIGN_METHODS)),
        "auth_mode": int(settings.auth_mode),
        "keepalive_s": settings.keepalive_s, "baud": settings.baud,
        "sub_qos": settings.sub_qos, "mqtt_port": settings.mqtt_port or 0,
        "body_window_ms": settings.body_window_ms, "liveness_ms": settings.liveness_ms,
        "silence_limit": settings.silence_limit,
        "publish_timeout_ms": settings.publish_timeout_ms,
        "puback_timeout_ms": settings.puback_timeout_ms,
        "publish_attempts": settings.publish_attempts,
        "publish_backoff_base_ms": settings.publish_backoff_base_ms,
        "publish_backoff_cap_ms": settings.publish_backoff_cap_ms,
        "auth_attempts": settings.auth_attempts or 0,
        "token_refresh_ms": settings.token_refresh_ms, "watchdog_ms": settings.watchdog_ms,
        "outbox_poll_ms": settings.outbox_poll_ms, "jitter_seed": settings.jitter_seed or 0,
    }
    lines = [f"set {name} {cport.hexfield(value)}" for name, value in text.items()]
    lines += [f"set {name} {value}" for name, value in numbers.items()]
    lines += [f"sub {cport.hexfield(topic)}" for topic in settings.subscriptions()]
    return lines


class CTwin:
    """The C controller in its harness: one request a line, its output lines back."""

    def __init__(self, settings: Settings, now_ms: int, *, reset_pin: int = 0,
                 capacity: int = 1000, registered: int = 0, wall_base: int = 0) -> None:
        """reset_pin: 0 none, 1 the hardware_reset hook, 2 the HAL's reset_pin. registered: 0
        no on_registered hook, 1 one that keeps the secret, 2 one that fails to. wall_base: 0
        no wall clock, else the HAL's wall_clock_ms answers wall_base + now."""
        cport.require_host_compiler()
        cport.make("harnesses")
        self.trace: list[str] = []  # every request: `controller-harness < trace` replays it
        self.proc = subprocess.Popen([str(cport.BUILD / "asan" / HARNESS)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        for line in settings_lines(settings):
            self.request(line)
        self.init_lines = self.request(
            f"init {now_ms} {reset_pin} {capacity} {registered} {wall_base}")

    def request(self, line: str) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.trace.append(line)
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise LockstepError(f"the C twin died before {line!r}: {self._stderr()}") from None
        out: list[str] = []
        while True:
            answer = self.proc.stdout.readline()
            if answer == "":
                raise LockstepError(f"the C twin died at {line!r}: {self._stderr()}")
            answer = answer.rstrip("\n")
            if answer == ".":
                return out
            out.append(answer)

    def _stderr(self) -> str:
        self.proc.kill()
        _out, err = self.proc.communicate(timeout=30)
        return err[-4000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


class PyRecorder:
    """What the Python controller does, in the harness's line format."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.reset_pin = False
        self.transitions: list[tuple[str, str, str]] = []  # (source, dest, TRIGGER) names

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines

    # the log hook: every event at DEBUG recorded; passed on to the host's hook as it wants
    level = LogLevel.DEBUG

    def __call__(self, ctl: Any, level: LogLevel, event: LogEvent, a: int, b: int, c: int,
                 data: bytes | bytearray | memoryview) -> None:
        # The events whose data is the host's own words: the refusing store's error text and
        # the failing on_registered hook's (the C ones return a code and nothing to say), so
        # their data is not compared.
        hosts_words = event == LogEvent.OUTBOX_UNAVAILABLE or (
            event == LogEvent.REGISTERED and level == LogLevel.ERROR)
        shown = b"" if hosts_words else bytes(data)
        self.lines.append(f"log {int(level)} {int(event)} {int(a)} {int(b)} {int(c)} "
                          f"x{shown.hex()}")
        if event == LogEvent.SECRET or level >= log.CORE_LOG.level:
            log.CORE_LOG(ctl, level, event, a, b, c, data)

    def on_state(self, source: State, dest: State, trigger: str) -> None:
        self.lines.append(f"state {int(source)} {int(dest)} {int(Trigger[trigger.upper()])}")
        self.transitions.append((source.name, dest.name, trigger.upper()))

    def hardware_reset(self) -> None:
        self.lines.append("reset")

    registered_keeps = True  # the on_registered hook stores the secret (else it raises)

    def on_registered(self, secret: str) -> None:
        self.lines.append(f"registered x{secret.encode('ascii').hex()}")
        if not self.registered_keeps:
            raise OSError("the secret file cannot be written")


class RecordingTap(TapPort):
    """TapPort, each write that reached the line also recorded as `tx <state> <bytes>`."""

    def __init__(self, port: MemoryPort, controller: Any, recorder: PyRecorder) -> None:
        super().__init__(port, lambda: controller().state.name)
        self._controller = controller
        self._recorder = recorder

    def write(self, data: bytes | bytearray | memoryview) -> int:
        written = super().write(data)
        if written >= 0:
            state = int(self._controller().state)
            self._recorder.lines.append(f"tx {state} x{bytes(data).hex()}")
        return written


# The Outbox protocol's calls raised OutboxUnavailable before they answered OutboxStatus codes
# (issue 8): RecordingOutbox records either, so the lockstep holds across that change.
_RAISED = getattr(core_outbox, "OutboxUnavailable", ())


class RecordingOutbox(WatchedOutbox):
    """WatchedOutbox, each call of the controller's recorded as the C harness prints it."""

    def __init__(self, recorder: PyRecorder, capacity: int = 1000) -> None:
        super().__init__(capacity)
        self._recorder = recorder

    def _note(self, line: str) -> None:
        self._recorder.lines.append(line)

    def peek(self) -> Any:
        try:
            result = super().peek()
        except _RAISED:
            self._note("outbox peek unavailable")
            raise
        status, message = result if isinstance(result, tuple) else (OutboxStatus.OK, result)
        if status == OutboxStatus.UNAVAILABLE:
            self._note("outbox peek unavailable")
        else:
            self._note(f"outbox peek {message.id if message is not None else '-'}")
        return result

    def mark_attempt(self, message_id: int) -> Any:
        try:
            result = super().mark_attempt(message_id)
        except _RAISED:
            self._note(f"outbox mark {message_id} unavailable")
            raise
        status, attempts = result if isinstance(result, tuple) else (OutboxStatus.OK, result)
        if status == OutboxStatus.UNAVAILABLE:
            self._note(f"outbox mark {message_id} unavailable")
        else:
            self._note(f"outbox mark {message_id} {attempts}")
        return result

    def ack(self, message_id: int) -> Any:
        try:
            status = super().ack(message_id)
        except _RAISED:
            self._note(f"outbox ack {message_id} unavailable")
            raise
        refused = status == OutboxStatus.UNAVAILABLE
        self._note(f"outbox ack {message_id}{' unavailable' if refused else ''}")
        return status

    def dead_letter(self, message_id: int, reason: Reason, detail: int) -> Any:
        line = f"outbox dead {message_id} {int(reason)} {detail}"
        try:
            status = super().dead_letter(message_id, reason, detail)
        except _RAISED:
            self._note(f"{line} unavailable")
            raise
        self._note(f"{line}{' unavailable' if status == OutboxStatus.UNAVAILABLE else ''}")
        return status


class LockstepSubject:
    """The Python controller (as PythonSubject runs it) and the C twin, compared request by
    request. The driver's questions are answered by the Python side; after every tick the C
    side's answers to them are part of what is compared."""

    name = "lockstep"

    def __init__(self, settings: Settings, now_ms: int, outbox_capacity: int = 1000, *,
                 reset_pin: int = 0, ram: bool = False, registered: int = 1,
                 wall_base: int = 0) -> None:
        """reset_pin: 0 none, 1 (the C's hardware_reset hook) or 2 (the C's HAL reset_pin): the
        Python's hardware_reset callback. ram: the C twin publishes into the RAM ring inside
        airfsm_t (airfsm_publish()), the Python into a MemoryOutbox as small. registered: 0 no
        on_registered hook, 1 one that keeps the DeviceSecret, 2 one that fails to. wall_base:
        0 no wall clock, else both clocks answer wall_base + the controller's now (Unix ms)."""
        if ram:
            outbox_capacity = RAM_SLOTS
        self.recorder = PyRecorder()
        self.history: deque[str] = deque(maxlen=HISTORY_LINES)
        self.outbox = RecordingOutbox(self.recorder, outbox_capacity)
        self._inbound: list[tuple[str, bytes]] = []
        self._tap, self._far = self._new_line()
        self.recorder.registered_keeps = registered == 1
        self.controller = Controller(
            self._tap, settings, now_ms=now_ms, outbox=self.outbox,
            on_message=self._on_message, on_state=self.recorder.on_state,
            hardware_reset=self.recorder.hardware_reset if reset_pin else None,
            log_hook=self.recorder,
            wall_clock_ms=(lambda: wall_base + self.controller.now_ms) if wall_base else None,
            on_registered=self.recorder.on_registered if registered else None)
        self.c = CTwin(settings, now_ms, reset_pin=reset_pin,
                       capacity=0 if ram else outbox_capacity, registered=registered,
                       wall_base=wall_base)
        weakref.finalize(self, self.c.close)  # the driver never closes a subject
        self._compare("init", [*self.recorder.take(), "init -1"], self.c.init_lines)
        self.requests = 0

    def _new_line(self) -> tuple[TapPort, MemoryPort]:
        near, far = memory_pair(("controller", "module"))
        return RecordingTap(near, lambda: self.controller, self.recorder), far

    def _on_message(self, topic: str, payload: bytes) -> None:
        self.recorder.lines.append(f"msg x{topic.encode('utf-8').hex()} x{payload.hex()}")
        self._inbound.append((topic, payload))

    def _compare(self, request: str, python: list[str], c: list[str]) -> None:
        self.history.append(f">>> {request}")
        if python != c:
            shown = "\n".join(self.history)
            raise LockstepError(
                f"the C twin differs from the Python controller at {request!r}\n"
                f"python:\n  " + "\n  ".join(python) + "\nc:\n  " + "\n  ".join(c) +
                f"\nbefore that:\n{shown}\n(the whole conversation: {len(self.c.trace)} requests "
                f"in LockstepSubject.c.trace; `controller-harness < file` replays them)")
        self.history.extend(python)

    def _both(self, request: str) -> list[str]:
        python = self.recorder.take()
        self._compare(request, python, self.c.request(request))
        return python

    # -- the Subject protocol ------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if not self._far.closed:
            self._far.write(data)
            self._both(f"rx x{data.hex()}")

    def tick(self, now_ms: int) -> int:
        deadline = self.controller.tick(now_ms)
        command = observe.command_deadline(self.controller)
        self.recorder.lines.append(
            f"next {deadline} {int(self.controller.state)} {self.controller.step_name() or '-'} "
            f"{'-' if command is None else command} {int(self._tap.port.pending > 0)}")
        self._both(f"tick {now_ms}")
        return deadline

    def transmitted(self) -> list[tuple[str, bytes]]:
        writes, self._tap.writes = self._tap.writes, []
        if not self._far.closed:
            self._far.drain()
        return writes

    def input_pending(self) -> bool:
        return self._tap.port.pending > 0

    def command_deadline(self) -> int | None:
        return observe.command_deadline(self.controller)

    @property
    def state(self) -> str:
        return self.controller.state.name

    def step(self) -> str | None:
        return self.controller.step_name()

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        refused: ValueError | None = None
        try:
            message_id = self.controller.publish(topic, payload, qos)
            self.recorder.lines.append(f"published {message_id}")
        except ValueError as exc:
            refused = exc
            self.recorder.lines.append("refused")
        except OutboxFullError as exc:  # the application keeps it (and says why)
            refused = ValueError(str(exc))
            self.recorder.lines.append("refused")
        self._both(f"publish x{topic.encode('utf-8', 'surrogateescape').hex()} {qos} "
                   f"x{payload.hex()}")
        if refused is not None:
            raise refused

    def request_stop(self) -> None:
        self.controller.request_stop()
        self._both("stop")

    def queued(self) -> list[bytes]:
        return [m.payload for m in self.outbox.queued(0, 1 << 30)]

    def dead(self) -> list[bytes]:
        return [d.payload for d in self.outbox.dead_letters(0, 1 << 30)]

    def delivered(self) -> list[tuple[bytes, int]]:
        deleted, self.outbox.deleted = self.outbox.deleted, []
        return deleted

    def inbound(self) -> list[tuple[str, bytes]]:
        inbound, self._inbound = self._inbound, []
        return inbound

    def unplug(self) -> None:
        self._far.close()
        self._both("unplug")

    def replug(self, now_ms: int) -> None:
        self._tap, self._far = self._new_line()
        self.controller.replace_port(self._tap, now_ms)
        self._both(f"replug {now_ms}")

    def fail_store(self, operation: str, count: int) -> None:
        self.outbox.fail(operation, count)
        self._both(f"fail {operation} {count}")

    def heal_store(self) -> None:
        self.outbox.heal()
        self._both("heal")

    def buffer_levels(self) -> list[tuple[str, int, int]]:
        return observe.buffer_levels(self.controller)

    def status(self) -> dict[str, Any]:
        return reasons.status(self.controller)

    def close(self) -> None:
        self.c.close()
        self.controller.close()


def record(seed: int, start_ms: int = 0) -> list[str]:
    """The conversation with the C twin of one seeded campaign schedule run in lockstep: a
    trace `controller-harness < file` replays on its own (the same lines come out)."""
    from tests.reliability.campaign import run_schedule
    from tests.reliability.schedules import RandomChoose, draw_schedule

    subjects: list[LockstepSubject] = []

    def factory(settings: Settings, now_ms: int) -> LockstepSubject:
        subjects.append(LockstepSubject(settings, now_ms))
        return subjects[-1]

    run_schedule(draw_schedule(RandomChoose(seed)), subject_factory=factory, start_ms=start_ms)
    return subjects[0].c.trace


if __name__ == "__main__":
    import sys

    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m tests.ctwin SEED [START_MS] > trace  (then: "
                 "port/c/build/asan/controller-harness < trace)")
    try:
        print("\n".join(record(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) == 3 else 0)))
    except ValueError as exc:
        sys.exit(f"python -m tests.ctwin: {exc}")
