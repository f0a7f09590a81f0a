"""The controller: one `tick(now_ms)` that runs the machine of `airfsm.core.table`.

A tick reads what the port has, feeds the AT channel, lets the channel's callbacks record what
happened (a step's answer, a wanted URC, a link-loss URC), turns that into at most one machine
event, starts the next command if the channel is idle, and returns the next deadline. Nothing in
here blocks, sleeps, starts a thread or lets an exception escape `tick()`.

Reading order for a newcomer: `tick` -> `_process` (apply what callbacks recorded) -> `_advance`
(send what is due) -> `_on_response` / `_on_urc` (the callbacks) -> `airfsm.core.judge` (the
per-check `switch`) -> `_on_enter` (what entering a state resets) -> the ONLINE publish/probe loop.

The C twin is `airfsm.c`: the same functions, `State`/`Trigger`/`Check` as enums and the
controller's fields as one struct.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from airfsm.core import aliyun, payload
from airfsm.core.at import (
    AtChannel,
    AtResponse,
    is_msub_message,
    msub_cache_slot,
    msub_topic,
)
from airfsm.core.codes import (
    AtResult,
    Cond,
    FailReason,
    KeepalivePhase,
    Outcome,
    Phase,
    Placeholder,
    PubPhase,
    Purpose,
    Reason,
    State,
    Trigger,
    UrcKind,
)
from airfsm.core.hal import PORT_LOST, Port
from airfsm.core.judge import answer_reason, judge_answer, judge_urc, mqtt_status
from airfsm.core.messages import OutboundMessage
from airfsm.core.outbox import MemoryOutbox, Outbox, OutboxUnavailable
from airfsm.core.settings import (
    CMD_CAPACITY,
    DATA_CAPACITY,
    INFO_ARENA,
    LINE_CAPACITY,
    READ_CHUNK,
)
from airfsm.core.table import (
    CACHE_READ,
    CONTENT_TYPE,
    DISCONNECT,
    ESCALATION_BACKOFF_MS,
    EXPAND_FAILED,
    FIRMWARE_HEARTBEAT,
    HEX_MODE,
    KEEPALIVE_FRACTION,
    LIVENESS_PROBE,
    MACHINE,
    SESSION_KEEPALIVE,
    TEXT_MODE,
    URC_NONE,
    URCS,
    Edge,
    StateSpec,
    Step,
    build_machine,
    edge_table,
    expand,
    link_priority,
)
from airfsm.core.timebase import (
    Xorshift32,
    backoff_ms,
    ms_add,
    ms_diff,
    ms_earliest,
    ms_reached,
    seed_from_text,
)
from airfsm.host import log, reasons

# MQTT keepalive: the vendor advises 2 minutes and at most 4 (carrier NATs and base stations
# drop links idle longer; openLuat FAQ "socket问题" #4); 30 s is the lower bound kept from before.
MIN_KEEPALIVE_S = 30
DEFAULT_KEEPALIVE_S = 120
MAX_KEEPALIVE_S = 240
BODY_WINDOW_MS = (1_000, 120_000)  # AT+HTTPDATA=<size>,<time>: time 1000-120000 ms
MAX_READ_PER_TICK = 8 * READ_CHUNK  # bound the work of one tick; the rest waits for the next
IDLE_RECHECK_MS = 60_000  # longest sleep a tick asks for: latches (token age, watchdog) need it
# The outbox refused a call (locked, disk full, read-only): touch it again after this backoff.
STORE_BACKOFF_MS = (250, 30_000)


@dataclass
class Settings:
    """Everything the controller needs to know; validated once, before the first tick."""

    identity: aliyun.DeviceIdentity
    apn: str = "CMIOT"  # "" is legal: the network's default APN
    sign_method: str = aliyun.DEFAULT_SIGN_METHOD
    keepalive_s: int = DEFAULT_KEEPALIVE_S
    baud: int = 115200  # the UART's rate: how long a length-counted payload may pause
    sub_topic: str | None = None  # default /{pk}/{dn}/get
    sub_qos: int = 0
    mqtt_host: str | None = None  # default: the reply's resources, else <pk>.iot-as-mqtt.<region>
    mqtt_port: int | None = None
    body_window_ms: int = 20_000  # the HTTPDATA window the module waits for the body (1-120 s)
    liveness_ms: int = 60_000  # probe AT+MQTTSTATU this often in ONLINE
    silence_limit: int = 3  # consecutive unanswered commands in ONLINE -> MQTT_LOST
    publish_timeout_ms: int = 10_000  # AT+MPUB final code
    puback_timeout_ms: int = 10_000  # QoS1 PUBACK after OK
    # Attempts a message gets (each refused, unanswered, without PUBACK or ended by a session
    # drop) before it moves to the dead letters; between them the publisher backs off.
    publish_attempts: int = 5
    publish_backoff_base_ms: int = 2_000  # after failure n: base*2**(n-1), capped, equal jitter
    publish_backoff_cap_ms: int = 60_000
    auth_attempts: int | None = None  # rejected auths before FAILED (None: the table's retries+1)
    token_refresh_ms: int = 6 * 24 * 3600 * 1000  # tokens live 7 days: refresh a day early
    watchdog_ms: int = 0  # not ONLINE this long -> AT+RESET and AUTOBAUD (0: off)
    outbox_poll_ms: int = 0  # ONLINE and idle: look at the outbox this often (0: only on tick)
    jitter_seed: int | None = None  # default: derived from the device name, so fleets spread

    def validate(self) -> None:
        """ValueError with a one-line message naming the setting (never a secret's value)."""
        self.identity.validate()
        if self.sign_method not in aliyun.SIGN_METHODS:
            raise ValueError(f"sign method must be one of {', '.join(aliyun.SIGN_METHODS)}")
        if not _quotable(self.apn) or len(self.apn) > 64:
            raise ValueError("apn must be 0-64 printable ASCII characters without quotes")
        if not MIN_KEEPALIVE_S <= self.keepalive_s <= MAX_KEEPALIVE_S:
            raise ValueError(f"keepalive must be {MIN_KEEPALIVE_S}-{MAX_KEEPALIVE_S} seconds: "
                             f"the vendor advises {DEFAULT_KEEPALIVE_S} s and at most "
                             f"{MAX_KEEPALIVE_S} s, as carrier NATs drop links idle longer")
        if self.baud <= 0:
            raise ValueError("baud must be a positive line rate")
        if self.sub_qos not in (0, 1):
            raise ValueError("subscribe qos must be 0 or 1")
        if self.sub_topic is not None and (reason := _topic_problem(self.sub_topic)):
            raise ValueError(f"subscribe topic: {reason}")
        if self.mqtt_host is not None and (not self.mqtt_host or not _quotable(self.mqtt_host)):
            raise ValueError("mqtt host must be printable ASCII without quotes")
        if self.mqtt_port is not None and not 1 <= self.mqtt_port <= 65535:
            raise ValueError("mqtt port must be 1-65535")
        for name in ("liveness_ms", "publish_timeout_ms", "puback_timeout_ms",
                     "token_refresh_ms"):
            value = getattr(self, name)
            if not 1_000 <= value < 2**31:
                raise ValueError(f"{name} must be between 1000 and 2**31-1 ms")
        if not BODY_WINDOW_MS[0] <= self.body_window_ms <= BODY_WINDOW_MS[1]:
            raise ValueError(f"body_window_ms must be {BODY_WINDOW_MS[0]}-{BODY_WINDOW_MS[1]} ms "
                             "(what AT+HTTPDATA accepts)")
        if self.auth_attempts is not None and not 1 <= self.auth_attempts <= 100:
            raise ValueError("auth attempts must be 1-100")
        if not 1 <= self.publish_attempts <= 100:
            raise ValueError("publish_attempts must be 1-100")
        if not 100 <= self.publish_backoff_base_ms <= self.publish_backoff_cap_ms < 2**31:
            raise ValueError("publish backoff must be 100 ms <= base <= cap < 2**31 ms")
        if not 0 <= self.watchdog_ms < 2**31 or not 0 <= self.outbox_poll_ms < 2**31:
            raise ValueError("watchdog_ms and outbox_poll_ms must be 0 to 2**31-1 ms")


def _quotable(text: str) -> bool:
    """Fits inside a quoted AT argument: printable ASCII, no quote, no backslash."""
    return all(0x20 <= ord(c) < 0x7F and c not in '"\\' for c in text)


def _topic_problem(topic: str) -> str | None:
    if not topic or len(topic) > payload.MAX_TOPIC or not _quotable(topic):
        return f"must be 1-{payload.MAX_TOPIC} printable ASCII characters without quotes"
    return None


@dataclass
class Counters:
    """What an operator wants to see in the status file. Plain ints: a C struct."""

    transitions: int = 0
    reconnects: dict[str, int] = field(default_factory=dict)  # by trigger name
    timeouts: int = 0
    publish_sent: int = 0
    publish_acked: int = 0
    publish_retried: int = 0  # sends of a message that had been attempted before
    publish_dead: int = 0  # messages moved to the dead letters
    store_unavailable: int = 0  # outbox calls refused (locked, disk full): retried later
    pubacks_ignored: int = 0
    inbound: int = 0
    downlinks_truncated: int = 0  # +MSUB payloads that came short: dropped
    downlinks_cached: int = 0  # cache-mode notices (`+MSUB: <slot>`), read with AT+MQTTMSGGET
    keepalives: int = 0  # AT+MSUB sent to keep an old firmware's session alive
    probes: int = 0
    internal_errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class StepError(NamedTuple):
    """The latest step failure: codes only (C: a struct); `airfsm.host.reasons` words it."""

    state: State
    step: int  # index in the state's steps
    reason: Reason
    detail: int


InboundCallback = Callable[[str, bytes], None]
StateCallback = Callable[[State, State, str], None]


class _Model:
    """The object `transitions` drives; it only forwards the change to the controller."""

    fsm_state: str
    trigger: Callable[[str], bool]  # added by transitions

    def __init__(self) -> None:
        self.fsm_state = State.AUTOBAUD.name


class Controller:
    def __init__(
        self,
        port: Port,
        settings: Settings,
        *,
        now_ms: int = 0,
        outbox: Outbox | None = None,
        on_message: InboundCallback | None = None,
        on_state: StateCallback | None = None,
        hardware_reset: Callable[[], None] | None = None,
        table: tuple[StateSpec, ...] = MACHINE,
    ) -> None:
        settings.validate()
        self.settings = settings
        self.port = port
        self.outbox: Outbox = outbox if outbox is not None else MemoryOutbox()
        self.on_message = on_message
        self.on_state = on_state
        # Pulses the module's RESET pin (hold low >= 150 ms); None: the board has no reset pin.
        # Called from tick(): it must be quick (an MCU toggles a GPIO; a host runs a command).
        self.hardware_reset = hardware_reset
        self.table = table
        self.log = log.get_logger("airfsm.core.controller")
        log.register_secret(settings.identity.device_secret)

        # The buffers of the tick, allocated once (C: arrays in the controller struct).
        self._line_buf = bytearray(LINE_CAPACITY)
        self._data_buf = bytearray(DATA_CAPACITY)
        self._info_arena = bytearray(INFO_ARENA)
        self._read_buf = bytearray(READ_CHUNK)
        self._cmd_buf = bytearray(CMD_CAPACITY)
        self.channel = AtChannel(self._write, self._on_response, self._on_urc,
                                 on_truncated=self._on_truncated, baud=settings.baud,
                                 line_buf=self._line_buf, data_buf=self._data_buf,
                                 info_arena=self._info_arena)
        self._edges = edge_table(table)
        self._model = _Model()
        self.machine = build_machine(self._model, self._on_transition, table)

        ident = settings.identity
        seed = settings.jitter_seed
        self._rng = Xorshift32(seed if seed is not None else seed_from_text(ident.device_name))
        self._now = now_ms & 0xFFFFFFFF
        self.started_at = self._now

        # the machine
        self.state = table[0].state
        self.entered_at = self._now
        self.attempt = 1
        self.fail_reason = FailReason.NONE
        self.fail_cause = Reason.NONE  # why, with a detail: rendered at the edge
        self.fail_cause_detail = 0
        self.last_trigger = "start"
        # The latest step failure, for operators (airfsm.host.reasons renders it: "ATTACH cpin:
        # SIM not ready").
        self.last_error: StepError | None = None
        self.counters = Counters()
        self._pending_trigger: Trigger | None = None  # set by _fire for the transition log
        self._pending_edge: Edge | None = None
        self._escalations = 0  # link losses and escalations since ONLINE was last stable
        self._hardware_resets = 0  # RESET-pin pulses since the module last answered
        self._reset_requested = False
        self._offline_since = self._now

        # the current step
        self.step_index = 0
        self.phase = Phase.IDLE
        self._purpose = Purpose.NONE
        self._resume_at = self._now
        self._urc_deadline = self._now
        self._polls = 0
        self._urc_seen = URC_NONE  # a wanted/failing URC that came before the final code ...
        self._urc_seen_line = b""  # ... and its line (the +HTTPACTION status is in it)
        self._body_due = False
        self._outcome: Outcome | None = None  # recorded by callbacks, applied by _process
        self._link_event: Trigger | None = None

        # what the steps learned
        self.firmware = ""
        self.firmware_version = 0
        self.rssi = 99
        self.ip = ""
        self.http_status = 0
        self.auth_code = 0
        self._auth_body = b""
        self._iot_id = ""
        self._iot_token = ""
        self._token_at = self._now
        self._token_stale = True  # no token yet
        self._reply_host: str | None = None
        self._reply_port: int | None = None
        # The value of each template placeholder (C: a table of pointers and lengths).
        self._values: list[bytes | int] = [b""] * len(Placeholder)
        self._init_values()

        # ONLINE: publishing the outbox head. An attempt is one try to get it out: the mode
        # switch it may need, then AT+MPUB, then (QoS1) its PUBACK.
        self.pub_phase = PubPhase.NONE
        self._pub_message: OutboundMessage | None = None
        self._pub_deadline = self._now
        self._pub_sends = 0  # OK'd QoS1 sends of the head message not yet matched to a PUBACK
        self._attempt_of: int | None = None  # the message whose attempt is under way
        self._attempt_no = 0  # ... and which attempt of it this is (1 = the first)
        self._pub_failures = 0  # failed attempts and mode switches in a row: the backoff exponent
        self._pub_hold_until: int | None = None  # publish backoff: start nothing before this
        # Why the latest attempt failed (kept with a dead letter).
        self._last_failure = Reason.NONE
        self._last_failure_detail = 0
        self._stale_pubacks = 0  # PUBACKs still owed to messages already acknowledged
        self._stale_until = self._now  # ... expected no later than this; then they are lost
        self._module_hex = False  # AT+MQTTMODE of the module
        self._cache_pending = False  # a `+MSUB: <slot>` notice came: AT+MQTTMSGGET is due
        self._session_proof_at = self._now  # the server last acknowledged a packet of ours
        self.keepalive_phase = KeepalivePhase.NONE
        self._keepalive_deadline = self._now
        self._keepalive_acked = False  # the SUBACK overtook the OK
        self._next_probe_at = self._now
        self._probe_due = False
        self._silence = 0

        # The outbox's store. A write it refused is owed, retried after a backoff, and blocks
        # the queue meanwhile: an acknowledged message is never sent again because its DELETE
        # failed, and a store that keeps failing costs neither a send storm nor a busy loop.
        self._ack_owed: int | None = None  # acknowledged, not yet deleted
        self._dead_owed: int | None = None  # given up on, not yet moved ...
        self._dead_reason = Reason.NONE  # ... for this reason
        self._dead_detail = 0
        self._store_failures = 0  # refused calls in a row: the backoff exponent
        self._store_hold_until: int | None = None  # store backoff: no call before this

        self.port_lost = False
        self._stopping = False
        self.stopped = False  # request_stop() has finished: the port may be closed

    # ------------------------------------------------------------------ the tick

    def tick(self, now_ms: int) -> int:
        """Do everything that is due at `now_ms`; return the next time a tick is needed."""
        self._now = now_ms & 0xFFFFFFFF
        try:
            self._read_port()
            self.channel.check_timeout(self._now)
            self._check_deadlines()
            self._process()
            self._settle_outbox()
            self._advance()
            self._process()  # a refused command answers at once: apply that too
            self._advance()
            return self.next_deadline()
        except Exception as exc:  # the C twin has no exceptions; a Python bug must not kill us
            self.counters.internal_errors += 1
            self.log.error("internal_error", error=f"{type(exc).__name__}: {exc}",
                           state=self.state.name)
            with contextlib.suppress(Exception):
                self._fail(FailReason.INTERNAL, Reason.INTERNAL_ERROR, 0)
            return ms_add(self._now, 1_000)

    def next_deadline(self) -> int:
        now = self._now
        if self.state == State.FAILED:
            return ms_add(now, IDLE_RECHECK_MS)
        if self.port_lost:
            return ms_add(now, 1_000)
        deadline: int | None = ms_earliest(self.channel.deadline, self.channel.receive_deadline)
        if self._ack_owed is not None or self._dead_owed is not None:
            hold = self._store_hold_until
            deadline = ms_earliest(deadline, now if hold is None else hold)
        if self.state == State.ONLINE:
            deadline = ms_earliest(deadline, self._store_hold_until)
        if self.state == State.ONLINE and not self.channel.busy:
            # ONLINE starts nothing while a command is in flight: its answer or its deadline
            # wakes the tick. Asking for a tick at a probe or PUBACK time already passed would
            # only spin until then.
            deadline = ms_earliest(deadline, self._next_probe_at)
            deadline = ms_earliest(deadline, self._session_deadline())
            deadline = ms_earliest(deadline, self._pub_hold_until)
            if self.pub_phase == PubPhase.WAIT_PUBACK:
                deadline = ms_earliest(deadline, self._pub_deadline)
            if self._stale_pubacks:
                deadline = ms_earliest(deadline, self._stale_until)
            if self.settings.outbox_poll_ms:
                deadline = ms_earliest(deadline, ms_add(now, self.settings.outbox_poll_ms))
        elif self.phase == Phase.WAIT_URC:
            deadline = ms_earliest(deadline, self._urc_deadline)
        elif self.phase == Phase.WAIT_UNTIL:
            deadline = ms_earliest(deadline, self._resume_at)
        if self.settings.watchdog_ms and self.state != State.ONLINE:
            deadline = ms_earliest(
                deadline, ms_add(self._offline_since, self.settings.watchdog_ms))
        deadline = ms_earliest(deadline, ms_add(now, IDLE_RECHECK_MS))
        assert deadline is not None
        return now if ms_diff(deadline, now) < 0 else deadline

    # ------------------------------------------------------------------ public API

    def publish(self, topic: str, data: bytes, qos: int = 1) -> int:
        """Queue a message for ONLINE. The outbox refuses (ValueError) what can never be sent."""
        ident = self.settings.identity
        topic = aliyun.resolve_topic(ident.product_key, ident.device_name, topic)
        enqueue = getattr(self.outbox, "enqueue", None)
        if enqueue is None:
            raise TypeError("this controller's outbox is not writable from here")
        message_id: int = enqueue(topic, data, qos)
        return message_id

    def request_stop(self) -> None:
        """Shut down cleanly: take no new message, let the one in flight finish (PUBACK
        included), then AT+MDISCONNECT. `stopped` turns true when done; the caller bounds the
        wait with its own grace period."""
        self._stopping = True
        if self.state != State.ONLINE and not self.channel.busy:
            self.stopped = True

    def replace_port(self, port: Port, now_ms: int) -> None:
        """The gateway reopened a lost port: start over from AUTOBAUD on it."""
        with contextlib.suppress(Exception):
            self.port.close()
        self.port = port
        self.port_lost = False
        self._now = now_ms & 0xFFFFFFFF
        self.channel.reset()
        self._purpose = Purpose.NONE
        self._fire(Trigger.PORT_LOST)

    @property
    def online(self) -> bool:
        return self.state == State.ONLINE

    @property
    def failed(self) -> bool:
        return self.state == State.FAILED

    @property
    def now_ms(self) -> int:
        """The time of the latest tick (32-bit ms)."""
        return self._now

    def step_name(self) -> str | None:
        """The name of the current step (None in ONLINE and FAILED)."""
        step = self._step()
        return step.name if step is not None else None

    # ------------------------------------------------------------------ port I/O

    def _read_port(self) -> None:
        """Feed the channel what the port has, a chunk at a time, at most MAX_READ_PER_TICK."""
        if self.port_lost:
            return
        buf = self._read_buf
        total = 0
        while total < MAX_READ_PER_TICK:
            n = self.port.read(buf, len(buf))
            if n == PORT_LOST:
                self._lose_port()
                return
            if n == 0:
                return
            total += n
            self.channel.feed(buf, self._now, n)

    def _write(self, data: memoryview) -> None:
        if self.port_lost:
            return
        if self.port.write(data) == PORT_LOST:
            self._lose_port()

    def _lose_port(self) -> None:
        self.port_lost = True
        self.log.warning("port_lost", reason=getattr(self.port, "lost_reason", None) or None,
                         state=self.state.name)

    # ------------------------------------------------------------------ applying events

    def _check_deadlines(self) -> None:
        now = self._now
        if self.phase == Phase.WAIT_URC and ms_reached(now, self._urc_deadline):
            self.counters.timeouts += 1
            step = self._step()
            self._record(Outcome.FAIL, Reason.URC_TIMEOUT,
                         step.urc_timeout_ms if step is not None else 0)
        if self.state == State.ONLINE:
            self._check_keepalive()
        if (self.settings.watchdog_ms and self.state not in (State.ONLINE, State.FAILED)
                and ms_reached(now, ms_add(self._offline_since, self.settings.watchdog_ms))):
            self._offline_since = now
            self._raise_link(Trigger.WATCHDOG)
        # Latch token age every tick so a months-long ONLINE never wraps the 32-bit difference.
        if not self._token_stale and ms_diff(now, self._token_at) >= self.settings.token_refresh_ms:
            self._token_stale = True
        # Backoffs end here, every tick, for the same reason.
        if self._pub_hold_until is not None and ms_reached(now, self._pub_hold_until):
            self._pub_hold_until = None
        if self._store_hold_until is not None and ms_reached(now, self._store_hold_until):
            self._store_hold_until = None

    def _process(self) -> None:
        """Apply what the callbacks recorded: a link event beats the step's own outcome."""
        if self._link_event is not None:
            trigger, self._link_event = self._link_event, None
            self._outcome = None
            self._fire(trigger)
            return
        if self._body_due:
            self._body_due = False
            step = self._step()
            if step is not None:
                self.channel.send_data(self._auth_body, len(self._auth_body), self._now,
                                       step.timeout_ms)
        if self._outcome is None:
            return
        outcome, self._outcome = self._outcome, None
        step = self._step()
        if step is None:
            return
        if outcome == Outcome.PASS:
            if self.state == State.AUTOBAUD:
                self._hardware_resets = 0  # the module answers again
            self.step_index += 1
            self._polls = 0
            self.phase = Phase.IDLE
            if step.settle_ms:
                self._wait(step.settle_ms)
        elif outcome == Outcome.NOT_YET:
            self._polls += 1
            if self._polls > step.poll_limit:
                self._fail_state(step, rejected=False)
            else:
                self._wait(step.poll_ms)
        elif outcome == Outcome.FATAL:
            self._fire(Trigger.FATAL)
        else:
            self._fail_state(step, rejected=outcome == Outcome.REJECTED)

    def _fail_state(self, step: Step, *, rejected: bool) -> None:
        """A step failed for good: retry the state after backoff, or escalate."""
        if step.on_fail is not None:
            self._fire(step.on_fail)
            return
        row = self.table[self.state]
        policy = row.policy
        if policy is None:
            return
        retries = policy.retries
        if rejected and self.settings.auth_attempts is not None:
            retries = self.settings.auth_attempts - 1
        if self.attempt <= retries:
            delay = backoff_ms(self.attempt, policy.backoff_base_ms, policy.backoff_cap_ms,
                               self._rng)
            self._resume_at = ms_add(self._now, delay)
            self._fire(Trigger.RETRY)
        elif rejected and (self.state, Trigger.FATAL) in self._edges:
            self._fail(FailReason.CREDENTIALS, Reason.CREDENTIALS_REJECTED, self.auth_code)
        elif self.hardware_reset is not None and self._hardware_resets < policy.hardware_resets:
            self._hardware_resets += 1
            self.log.warning("hardware_reset", state=self.state.name,
                             reset=self._hardware_resets, of=policy.hardware_resets)
            try:
                self.hardware_reset()
            except Exception as exc:
                self.log.error("hardware_reset_failed", error=f"{type(exc).__name__}: {exc}")
            self._fire(Trigger.HARDWARE_RESET)
        else:
            if policy.on_exhausted == State.FAILED and self.state == State.AUTOBAUD:
                self.set_failure(FailReason.NO_RESPONSE, Reason.MODULE_MUTE,
                                 self._hardware_resets)
            self._fire(Trigger.EXHAUSTED)

    def set_failure(self, reason: FailReason, cause: Reason, detail: int) -> None:
        """Why FAILED, should the machine get there (the judge, the retry policy)."""
        self.fail_reason = reason
        self.fail_cause = cause
        self.fail_cause_detail = detail

    def _fail(self, reason: FailReason, cause: Reason, detail: int) -> None:
        self.set_failure(reason, cause, detail)
        if (self.state, Trigger.FATAL) in self._edges:
            self._fire(Trigger.FATAL)
        else:  # e.g. an internal error in a state with no FATAL edge: go there directly
            self._model.fsm_state = State.FAILED.name
            self._enter(self.state, State.FAILED, Trigger.FATAL, None)

    def _fire(self, trigger: Trigger) -> bool:
        edge = self._edges.get((self.state, trigger))
        if edge is None:
            return False
        self._pending_trigger = trigger
        self._pending_edge = edge
        self._model.trigger(edge.trigger_name)
        return True

    def _on_transition(self, event: Any) -> None:
        """transitions' after_state_change: every change, reflexive RETRY included."""
        source = State[event.transition.source]
        dest = State[self._model.fsm_state]
        trigger = self._pending_trigger if self._pending_trigger is not None else Trigger.DONE
        self._enter(source, dest, trigger, self._pending_edge)
        self._pending_trigger = None
        self._pending_edge = None

    def _enter(self, source: State, dest: State, trigger: Trigger, edge: Edge | None) -> None:
        now = self._now
        attempt = self.attempt + 1 if trigger == Trigger.RETRY else 1
        details: dict[str, Any] = {}
        if trigger != Trigger.DONE and self.step_name():
            details["step"] = self.step_name()  # where the state was when it was left
        if dest == State.FAILED:
            details["reason"] = reasons.fail_text(self) or ""
        self.log.info("state", **{"from": source.name}, to=dest.name,
                      trigger=trigger.name.lower(), attempt=attempt,
                      elapsed_ms=ms_diff(now, self.entered_at), **details)
        self.counters.transitions += 1
        if trigger not in (Trigger.DONE, Trigger.RETRY):
            name = trigger.name.lower()
            self.counters.reconnects[name] = self.counters.reconnects.get(name, 0) + 1
        self.last_trigger = trigger.name.lower()
        self.state = dest
        self.attempt = attempt
        self.entered_at = now
        self.step_index = 0
        self._polls = 0
        self._urc_seen = URC_NONE
        self._body_due = False
        self._outcome = None
        if edge is not None and edge.reset_module:
            self._reset_requested = True
        if dest == State.AUTOBAUD and trigger != Trigger.RETRY:
            # The module restarted (or is about to): it forgot the command in flight and may
            # have stopped inside a length-counted payload. Start the byte stream afresh.
            self.channel.reset()
            self._purpose = Purpose.NONE
        elif self.channel.busy:
            self._purpose = Purpose.DISCARD  # its answer still comes: let it land harmlessly
        if trigger == Trigger.RETRY:
            self.phase = Phase.WAIT_UNTIL  # _fail_state set _resume_at to the backoff
        elif trigger == Trigger.DONE or dest == State.FAILED:
            self.phase = Phase.IDLE
        else:
            # Escalations and link losses back off too, or a flapping link would hammer the
            # network in a tight loop: the first is immediate, the next ones wait longer.
            self._escalations += 1
            delay = 0
            if self._escalations > 1:
                delay = backoff_ms(self._escalations - 1, ESCALATION_BACKOFF_MS[0],
                                   ESCALATION_BACKOFF_MS[1], self._rng)
            self._wait(delay)
        if source == State.ONLINE or dest == State.ONLINE:
            self._reset_online()
        if dest == State.ONLINE:
            self._next_probe_at = ms_add(now, self.settings.liveness_ms)
        else:
            if source == State.ONLINE:
                self._offline_since = now
        if dest in (State.AUTOBAUD, State.VERSION_CHECK):
            self._module_hex = False  # a module that restarted is back in text mode
            self._cache_pending = False  # ... and its message cache is empty
        if self.on_state is not None:
            try:
                self.on_state(source, dest, trigger.name.lower())
            except Exception as exc:
                self.log.error("on_state_failed", error=str(exc))

    def _reset_online(self) -> None:
        """The MQTT session started or ended: PUBACKs of the old one will never come."""
        if self._attempt_of is not None:
            # Counted against the message's budget like any failed attempt, so a message that
            # makes the broker drop the session cannot cause endless reconnects.
            self._publish_failed(Reason.SESSION_ENDED, 0)
        self.pub_phase = PubPhase.NONE
        self._pub_message = None
        self._pub_sends = 0
        self._stale_pubacks = 0
        self._probe_due = False
        self._silence = 0
        self._reset_session()

    def _wait(self, delay_ms: int) -> None:
        self.phase = Phase.WAIT_UNTIL
        self._resume_at = ms_add(self._now, delay_ms)

    def _record(self, outcome: Outcome, reason: Reason = Reason.NONE, detail: int = 0) -> None:
        """A step's verdict, applied by `_process` once the bytes of this tick are digested."""
        self._outcome = outcome
        self.phase = Phase.IDLE
        if outcome != Outcome.PASS and reason != Reason.NONE:
            self.last_error = StepError(self.state, self.step_index, reason, detail)
            self.log.info("step", state=self.state.name, step=self.step_name(),
                          outcome=outcome.name.lower(),
                          why=reasons.step_why(self.last_error, self.table))

    def _raise_link(self, trigger: Trigger) -> None:
        if (self.state, trigger) not in self._edges:
            return
        current = self._link_event
        if current is None or link_priority(trigger) > link_priority(current):
            self._link_event = trigger

    # ------------------------------------------------------------------ sending

    def _advance(self) -> None:
        if self.state == State.FAILED or self.port_lost or self.channel.busy or self.stopped:
            return
        if self._stopping and self.state != State.ONLINE:
            self.stopped = True  # nothing in flight that matters: no session to close
            return
        if self._link_event is not None or self._outcome is not None:
            return
        if self.state == State.ONLINE:
            self._advance_online()
            return
        if self.phase == Phase.WAIT_UNTIL:
            if not ms_reached(self._now, self._resume_at):
                return
            self.phase = Phase.IDLE
        if self.phase != Phase.IDLE:
            return
        if self.state == State.MQTT_CONNECT and self.step_index == 0 and self._token_stale:
            self._fire(Trigger.TOKEN_REJECTED)  # no token, or one about to expire
            return
        if self.state == State.HTTP_AUTH and self.step_index == 0:
            self._prepare_auth()
        row = self.table[self.state]
        while self.step_index < len(row.steps):
            step = row.steps[self.step_index]
            if not self._step_applies(step.when):
                self.step_index += 1
                continue
            if step.when == Cond.RESET_REQUESTED:
                self._reset_requested = False
            self._send_step(step)
            return
        if self._fire(Trigger.DONE):
            self._advance()  # start the new state's first step in this same tick

    def _step_applies(self, when: Cond) -> bool:
        if when == Cond.RESET_REQUESTED:
            return self._reset_requested
        if when == Cond.RETRYING:
            return self.attempt > 1
        return True

    def _send_step(self, step: Step, purpose: Purpose = Purpose.STEP) -> None:
        """Expand the step's command into the command buffer and send it."""
        if purpose == Purpose.STEP:
            self._urc_seen = URC_NONE
            self.phase = Phase.WAIT_FINAL
        # A step that waits for a bare final code as its URC (AT+MCONNECT: OK, then ERROR when
        # refused) asks the channel to pass that code on rather than count it stray.
        self._send(expand(step.pieces, self._values, self._cmd_buf), step.timeout_ms, purpose,
                   prompt=step.prompt, final_urc=step.final_urc)

    def _send(self, length: int, timeout_ms: int, purpose: Purpose, *,
              prompt: bool = False, final_urc: bool = False) -> None:
        """Send the command in cmd_buf[:length]. A command that did not fit (EXPAND_FAILED) is
        handed over at the buffer's full length: the channel refuses it whole, answering ERROR
        as a module answers a bad command."""
        if length < 0:
            length = len(self._cmd_buf)
        self._purpose = purpose
        self.log.debug("at_tx", command=log.redact(self._cmd_buf[:length].decode("latin-1")),
                       state=self.state.name)
        self.channel.send(self._cmd_buf, length, self._now, timeout_ms, expect_prompt=prompt,
                          final_urc=final_urc)

    def _send_literal(self, command: bytes, timeout_ms: int, purpose: Purpose) -> None:
        """Send a command built elsewhere (AT+MPUB): copied into the command buffer."""
        n = len(command)
        if n >= len(self._cmd_buf):
            self._send(EXPAND_FAILED, timeout_ms, purpose)
            return
        self._cmd_buf[:n] = command  # C: memcpy
        self._send(n, timeout_ms, purpose)

    def _init_values(self) -> None:
        """The values of the template placeholders that come from the settings (the rest are
        set as the steps learn them: the body length, the credentials, the reply's host)."""
        s = self.settings
        ident = s.identity
        v = self._values
        v[Placeholder.APN] = s.apn.encode("ascii")
        v[Placeholder.AUTH_URL] = aliyun.auth_url(ident.region).encode("ascii")
        v[Placeholder.CONTENT_TYPE] = CONTENT_TYPE.encode("ascii")
        v[Placeholder.BODY_LEN] = 0
        v[Placeholder.BODY_WINDOW_MS] = s.body_window_ms
        v[Placeholder.CLIENT_ID] = ident.effective_client_id.encode("ascii")
        v[Placeholder.IOT_ID] = b""
        v[Placeholder.IOT_TOKEN] = b""
        v[Placeholder.KEEPALIVE_S] = s.keepalive_s
        sub_topic = s.sub_topic or aliyun.topic_get(ident.product_key, ident.device_name)
        v[Placeholder.SUB_TOPIC] = sub_topic.encode("ascii")
        v[Placeholder.SUB_QOS] = s.sub_qos
        self._set_mqtt_endpoint()

    def _set_mqtt_endpoint(self) -> None:
        """The broker: the settings', else the auth reply's, else the region's default."""
        s = self.settings
        host, port = aliyun.mqtt_endpoint(s.identity)
        self._values[Placeholder.MQTT_HOST] = (
            s.mqtt_host or self._reply_host or host).encode("ascii")
        self._values[Placeholder.MQTT_PORT] = s.mqtt_port or self._reply_port or port

    def _prepare_auth(self) -> None:
        """A fresh auth body per HTTP_AUTH entry; its sign is a secret."""
        s = self.settings
        body = aliyun.auth_body(s.identity, s.sign_method)
        # The sign is read back out of the body: computing it again would be a second HMAC.
        start = body.find(b"&sign=") + len(b"&sign=")
        end = body.find(b"&", start)
        self.emit_secret(body[start:end if end >= 0 else len(body)])
        self._auth_body = body
        self._iot_id = ""
        self._iot_token = ""
        self._values[Placeholder.BODY_LEN] = len(body)
        self._values[Placeholder.IOT_ID] = b""
        self._values[Placeholder.IOT_TOKEN] = b""

    # ------------------------------------------------------------------ callbacks from AtChannel

    def _on_response(self, resp: AtResponse) -> None:
        purpose = self._purpose
        if resp.result != AtResult.PROMPT:
            self._purpose = Purpose.NONE
        if resp.result == AtResult.TIMEOUT:
            self.counters.timeouts += 1
            self.log.info("at_timeout", command=bytes(resp.command).decode("latin-1"),
                          state=self.state.name)
        elif self.state == State.ONLINE:
            self._silence = 0
        if purpose == Purpose.STEP:
            self._on_step_response(resp)
        elif purpose == Purpose.PUBLISH:
            self._on_publish_response(resp)
        elif purpose == Purpose.PROBE:
            self._on_probe_response(resp)
        elif purpose == Purpose.STOP:
            self.stopped = True
        elif purpose == Purpose.KEEPALIVE:
            self._on_keepalive_response(resp)
        elif purpose == Purpose.CACHE_READ:
            self._on_cache_read_response(resp)
        elif purpose == Purpose.MODE:
            self._on_mode_response(resp)

    def _on_step_response(self, resp: AtResponse) -> None:
        step = self._step()
        if step is None or self.phase != Phase.WAIT_FINAL:
            return
        if resp.result == AtResult.PROMPT:
            self._body_due = True
            return
        outcome, reason, detail = judge_answer(self, step, resp)
        if outcome != Outcome.PASS or not (step.urc_ok or step.urc_fail):
            self._record(outcome, reason, detail)
            return
        if self._urc_seen != URC_NONE:  # the URC overtook the final code
            self._record(*judge_urc(self, step, self._urc_seen, self._urc_seen_line))
            return
        self.phase = Phase.WAIT_URC
        self._urc_deadline = ms_add(self._now, step.urc_timeout_ms)

    def _on_urc(self, urc: int, line: bytes, data: bytes) -> None:
        """What a URC means, by its row of the URC table: a message, a step's awaited URC, a
        PUBACK, a keepalive's SUBACK, a link loss - in that order."""
        row = URCS[urc] if urc != URC_NONE else None
        if row is not None and row.kind == UrcKind.MSUB:
            slot = msub_cache_slot(line)
            if slot >= 0:
                # AT+MQTTMSGSET=1 after all: the module keeps the message; fetch it.
                self.counters.downlinks_cached += 1
                self.log.info("downlink_cached", slot=slot, state=self.state.name)
                self._cache_pending = True
                return
            if not is_msub_message(line):
                # Neither a message nor a cache notice (the manual's table abbreviates the
                # header as `<topic>,<len>,<message>`; every example shows ` byte,`): never a
                # message with an empty topic.
                self.log.warning("msub_unparsed", urc=log.redact(line.decode("latin-1")))
                return
            self._deliver(line, data)
            return
        step = self._step()
        if (step is not None and self.phase in (Phase.WAIT_FINAL, Phase.WAIT_URC)
                and (urc in step.urc_ok_ids or urc in step.urc_fail_ids)):
            if self.phase == Phase.WAIT_URC:
                self._record(*judge_urc(self, step, urc, line))
            else:
                self._urc_seen = urc
                self._urc_seen_line = bytes(line)
            return
        if row is None:
            self.log.debug("urc", urc=log.redact(line.decode("latin-1")), state=self.state.name)
            return
        if row.kind == UrcKind.PUBACK:
            self._session_proof_at = self._now
            self._on_puback()
            return
        if urc in SESSION_KEEPALIVE.urc_ok_ids and self.keepalive_phase != KeepalivePhase.NONE:
            self._on_keepalive_suback()
            return
        if row.trigger is not None:
            if row.trigger == Trigger.REBOOTED and self.state == State.AUTOBAUD:
                return  # boot URCs are what AUTOBAUD expects
            self.log.info("link_urc", urc=log.redact(line.decode("latin-1")),
                          state=self.state.name)
            self._raise_link(row.trigger)
            return
        self.log.debug("urc", urc=log.redact(line.decode("latin-1")), state=self.state.name)

    def _on_truncated(self, header: bytes, declared: int, received: int) -> None:
        """The channel dropped a length-counted payload that came short (bytes lost on the UART;
        the vendor's changelog (V401857) names fast downlinks)."""
        what = "downlink" if header.startswith(b"+MSUB") else "http body"
        if what == "downlink":
            self.counters.downlinks_truncated += 1
        self.log.warning("payload_truncated", what=what,
                         topic=msub_topic(header).decode("utf-8", "replace") or None,
                         declared=declared, received=received, state=self.state.name)

    def _deliver(self, line: bytes, data: bytes) -> None:
        topic = msub_topic(line).decode("utf-8", "replace")
        self.counters.inbound += 1
        self.log.info("inbound", topic=topic, bytes=len(data))
        if self.on_message is None:
            return
        try:
            self.on_message(topic, bytes(data))
        except Exception as exc:
            self.log.error("on_message_failed", error=f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ what the judge learns

    def take_credentials(self, reply: aliyun.AuthReply) -> None:
        """The auth passed: the credentials and broker for MQTT_CONNECT."""
        self._iot_id = reply.iot_id
        self._iot_token = reply.iot_token
        self._values[Placeholder.IOT_ID] = reply.iot_id.encode("ascii")
        self._values[Placeholder.IOT_TOKEN] = reply.iot_token.encode("ascii")
        self._reply_host = reply.mqtt_host
        self._reply_port = reply.mqtt_port
        self._set_mqtt_endpoint()
        self._token_at = self._now
        self._token_stale = False

    def emit_secret(self, secret: bytes) -> None:
        """A value that must never be printed (the sign, an iotToken)."""
        log.register_secret(secret)

    # ------------------------------------------------------------------ ONLINE

    def _advance_online(self) -> None:
        now = self._now
        if self._escalations and ms_diff(now, self.entered_at) >= self.settings.liveness_ms:
            self._escalations = 0  # ONLINE has held for a while: the link is good again
        if self.pub_phase == PubPhase.WAIT_PUBACK and ms_reached(now, self._pub_deadline):
            # The PUBACK may still come late; _on_puback copes with that.
            self.counters.timeouts += 1
            self.pub_phase = PubPhase.NONE
            self._publish_failed(Reason.NO_PUBACK, self.settings.puback_timeout_ms)
            self._probe_due = True
        if self._probe_due or ms_reached(now, self._next_probe_at):
            self._probe_due = False
            self._next_probe_at = ms_add(now, self.settings.liveness_ms)
            self.counters.probes += 1
            self._send_step(LIVENESS_PROBE, Purpose.PROBE)
            return
        if self._advance_session():
            return
        if self.pub_phase != PubPhase.NONE:
            return
        if self._stale_pubacks:
            # A PUBACK owed to the previous message may still come. Sending now would let it be
            # taken for this message's: wait until it comes or can no longer come.
            if not ms_reached(now, self._stale_until):
                return
            self._stale_pubacks = 0
        if self._stopping:
            self._send_step(DISCONNECT, Purpose.STOP)
            return
        if self._pub_hold_until is not None or self._store_hold_until is not None:
            return  # backing off: after a failed attempt, or from a store that refused
        if not self._settle_outbox():
            return  # a write is still owed to the store
        self._publish_head()

    def _publish_head(self) -> None:
        """Start or continue an attempt at the outbox head: the mode switch, then AT+MPUB."""
        try:
            message = self.outbox.peek()
        except OutboxUnavailable as exc:
            self._store_unavailable("peek", exc)
            return
        if message is not None and self._attempt_of != message.id and (
                not self._start_attempt(message)):
            return
        want_hex = message is not None and (
            payload.classify_payload(message.payload)[0] == payload.HEX)
        if want_hex != self._module_hex:
            self._send_step(HEX_MODE if want_hex else TEXT_MODE, Purpose.MODE)
            return
        if message is None:
            return
        try:
            command = payload.encode_mpub_command(message.topic, message.payload, message.qos,
                                                  self._module_hex)
        except ValueError:  # refused at enqueue time normally: keep it, let others pass
            self._dead_letter(message, *_unsendable(message))
            return
        if self._pub_message is None or self._pub_message.id != message.id:
            self._pub_message = message
            self._pub_sends = 0
        if self._attempt_no > 1:
            self.counters.publish_retried += 1
        self.pub_phase = PubPhase.WAIT_OK
        self.counters.publish_sent += 1
        self._send_literal(command, self.settings.publish_timeout_ms, Purpose.PUBLISH)

    def _start_attempt(self, message: OutboundMessage) -> bool:
        """Count a new attempt of `message` in the store before anything is sent for it, so a
        crash cannot hide a send from its budget; False when it must not be sent now."""
        if message.attempts >= self.settings.publish_attempts:
            self._dead_letter(message, self._last_failure, self._last_failure_detail)
            return False
        try:
            attempts = self.outbox.mark_attempt(message.id)
        except OutboxUnavailable as exc:
            self._store_unavailable("mark_attempt", exc)
            return False
        self._store_worked()
        if attempts == 0:
            return False  # gone meanwhile (an operator's doing): look at the new head next time
        self._attempt_of = message.id
        self._attempt_no = attempts
        return True

    def _on_publish_response(self, resp: AtResponse) -> None:
        message = self._pub_message
        if self.state != State.ONLINE or message is None:
            return
        if resp.result != AtResult.OK:
            # Almost always the link, not the message: back off and probe; never delete it.
            self.pub_phase = PubPhase.NONE
            self._publish_failed(*answer_reason(resp, Reason.MPUB_UNANSWERED, Reason.MPUB_ERROR,
                                                Reason.MPUB_CME_ERROR))
            self._on_online_timeout_or_error(resp)
            return
        if message.qos == 0:
            self._acked(message)
            return
        self._pub_sends += 1
        self.pub_phase = PubPhase.WAIT_PUBACK
        self._pub_deadline = ms_add(self._now, self.settings.puback_timeout_ms)

    def _on_mode_response(self, resp: AtResponse) -> None:
        if resp.result == AtResult.OK:
            self._module_hex = not self._module_hex
            return
        command = "AT+MQTTMODE=0" if self._module_hex else "AT+MQTTMODE=1"
        self.log.warning("mqtt_mode_refused", command=command,
                         answer=reasons.answer_text(resp.result, resp.cme_error),
                         id=self._attempt_of, failures=self._pub_failures + 1)
        if self._module_hex:
            self._publish_failed(*answer_reason(resp, Reason.TEXT_MODE_UNANSWERED,
                                                Reason.TEXT_MODE_ERROR, Reason.TEXT_MODE_CME_ERROR))
        else:
            self._publish_failed(*answer_reason(resp, Reason.HEX_MODE_UNANSWERED,
                                                Reason.HEX_MODE_ERROR, Reason.HEX_MODE_CME_ERROR))
        self._on_online_timeout_or_error(resp)

    def _on_puback(self) -> None:
        """Match a PUBACK to a send. AT+MPUB carries no packet id, so be conservative."""
        if self._stale_pubacks > 0:
            # Owed to a message already acknowledged, which had been sent more than once.
            self._stale_pubacks -= 1
            self.counters.pubacks_ignored += 1
            return
        message = self._pub_message
        if message is None or message.qos != 1 or self._pub_sends == 0:
            self.counters.pubacks_ignored += 1
            return
        # Any one PUBACK proves the message arrived. The other sends may still be acknowledged:
        # hold the next message back until those PUBACKs come or their deadline passes.
        self._stale_pubacks = self._pub_sends - 1
        self._stale_until = ms_add(self._now, self.settings.puback_timeout_ms)
        self._acked(message)

    def _publish_failed(self, why: Reason, detail: int) -> None:
        """What was sent for the head failed (refused, unanswered, no PUBACK, session gone):
        the attempt ends, and nothing is started for a backoff that grows with each failure.
        Once the budget is spent there is no wait: the next look dead-letters the message."""
        self._pub_failures += 1
        budget_left = True
        if self._attempt_of is not None:
            self.log.info("publish_failed", id=self._attempt_of, attempt=self._attempt_no,
                          of=self.settings.publish_attempts,
                          reason=reasons.describe(why, detail))
            budget_left = self._attempt_no < self.settings.publish_attempts
            self._attempt_of = None
            self._last_failure = why
            self._last_failure_detail = detail
        if budget_left:
            s = self.settings
            delay = backoff_ms(self._pub_failures, s.publish_backoff_base_ms,
                               s.publish_backoff_cap_ms, self._rng)
            self._pub_hold_until = ms_add(self._now, delay)

    def _acked(self, message: OutboundMessage) -> None:
        """Delivered. The store deletes it in `_settle_outbox`; until then nothing is sent."""
        self.counters.publish_acked += 1
        self._ack_owed = message.id
        self._finish_head()

    def _dead_letter(self, message: OutboundMessage, why: Reason, detail: int) -> None:
        """Give up on `message`: it moves to the dead letters (kept for an operator, who can
        re-queue it) and the rest of the queue flows on. Never a deletion."""
        self.log.warning("publish_dead", id=message.id, topic=message.topic,
                         attempts=message.attempts,
                         reason=reasons.dead_letter_text(message.attempts, why, detail))
        self.counters.publish_dead += 1
        self._dead_owed = message.id
        self._dead_reason = why
        self._dead_detail = detail
        if self._pub_message is not None and self._pub_message.id == message.id and (
                self._pub_sends):
            # Its OK'd sends may still be acknowledged late: keep that PUBACK from the next one.
            self._stale_pubacks = self._pub_sends
            self._stale_until = ms_add(self._now, self.settings.puback_timeout_ms)
        self._finish_head()
        self._settle_outbox()

    def _finish_head(self) -> None:
        """The head is done with (acknowledged or dead): the next message starts afresh."""
        self.pub_phase = PubPhase.NONE
        self._pub_message = None
        self._pub_sends = 0
        self._attempt_of = None
        self._pub_failures = 0
        self._pub_hold_until = None
        self._last_failure = Reason.NONE
        self._last_failure_detail = 0

    def _settle_outbox(self) -> bool:
        """Do the store writes owed (a delete after PUBACK, a move to the dead letters), unless
        the store is backing off. True when nothing is owed any more."""
        if self._ack_owed is None and self._dead_owed is None:
            return True
        if self._store_hold_until is not None:
            return False
        if self._ack_owed is not None:
            try:
                self.outbox.ack(self._ack_owed)
            except OutboxUnavailable as exc:
                self._store_unavailable("ack", exc)
                return False
            self._ack_owed = None
            self._store_worked()
        if self._dead_owed is not None:
            try:
                self.outbox.dead_letter(self._dead_owed, self._dead_reason, self._dead_detail)
            except OutboxUnavailable as exc:
                self._store_unavailable("dead_letter", exc)
                return False
            self._dead_owed = None
            self._store_worked()
        return True

    def _store_unavailable(self, operation: str, exc: Exception) -> None:
        """The outbox refused a call (locked by another process, disk full, read-only): leave
        it alone for a backoff that grows while it keeps refusing. Nothing was changed."""
        self._store_failures += 1
        self.counters.store_unavailable += 1
        delay = backoff_ms(self._store_failures, STORE_BACKOFF_MS[0], STORE_BACKOFF_MS[1],
                           self._rng)
        self._store_hold_until = ms_add(self._now, delay)
        report = self.log.warning if self._store_failures == 1 else self.log.debug
        report("outbox_unavailable", operation=operation, error=str(exc),
               failures=self._store_failures, retry_in_ms=delay)

    def _store_worked(self) -> None:
        """A store write went through: its backoff starts from the beginning again. (A read
        does not count: with the disk full, reads work and writes do not.)"""
        if self._store_failures:
            self.log.info("outbox_available", after_failures=self._store_failures)
            self._store_failures = 0

    def _on_probe_response(self, resp: AtResponse) -> None:
        if self.state != State.ONLINE:
            return
        if resp.result == AtResult.TIMEOUT:
            self._on_online_timeout_or_error(resp)
            return
        status = mqtt_status(resp)
        if status != 1:
            self.log.info("probe", mqtt_status=status)
            self._raise_link(Trigger.MQTT_LOST)

    def _on_online_timeout_or_error(self, resp: AtResponse) -> None:
        """An unanswered or refused command in ONLINE: probe; too much silence: reconnect."""
        if resp.result == AtResult.TIMEOUT:
            self._silence += 1
            if self._silence >= self.settings.silence_limit:
                self.log.warning("module_silent", unanswered=self._silence)
                self._raise_link(Trigger.MQTT_LOST)
                return
        self._probe_due = True

    # ------------------------------------------------------------------ ONLINE: session upkeep

    def _advance_session(self) -> bool:
        """What the module does not do by itself in ONLINE: read a message it cached, and keep
        an old firmware's MQTT session alive. True when a command went out."""
        if self._stopping:
            return False
        if self._cache_pending:
            self._cache_pending = False
            self._send_step(CACHE_READ, Purpose.CACHE_READ)
            return True
        if not self._keepalive_needed() or self.keepalive_phase != KeepalivePhase.NONE:
            return False
        if ms_diff(self._now, self._session_proof_at) < self._keepalive_interval_ms():
            return False
        self.counters.keepalives += 1
        self.keepalive_phase = KeepalivePhase.WAIT_OK
        self._keepalive_acked = False
        self._send_step(SESSION_KEEPALIVE, Purpose.KEEPALIVE)
        return True

    def _keepalive_needed(self) -> bool:
        """Firmware before V838 sends no PINGREQ and reports no CLOSED (docs/FIRMWARE.md)."""
        return self.firmware_version < FIRMWARE_HEARTBEAT

    def _keepalive_interval_ms(self) -> int:
        num, den = KEEPALIVE_FRACTION
        return self.settings.keepalive_s * 1000 * num // den

    def _session_deadline(self) -> int | None:
        """When ONLINE upkeep next needs a tick (None: nothing to wait for)."""
        if self.keepalive_phase == KeepalivePhase.WAIT_SUBACK:
            return self._keepalive_deadline
        # A keepalive due while the channel is busy goes out when its answer wakes the tick:
        # asking for a tick now would only spin until then.
        if (self._keepalive_needed() and self.keepalive_phase == KeepalivePhase.NONE
                and not self.channel.busy and not self._stopping):
            return ms_add(self._session_proof_at, self._keepalive_interval_ms())
        return None

    def _on_keepalive_response(self, resp: AtResponse) -> None:
        if self.state != State.ONLINE or self.keepalive_phase != KeepalivePhase.WAIT_OK:
            return
        if resp.result == AtResult.OK:
            if self._keepalive_acked:
                self._on_keepalive_suback()
                return
            self.keepalive_phase = KeepalivePhase.WAIT_SUBACK
            self._keepalive_deadline = ms_add(self._now, SESSION_KEEPALIVE.urc_timeout_ms)
            return
        self.keepalive_phase = KeepalivePhase.NONE
        if resp.result == AtResult.TIMEOUT:
            self._on_online_timeout_or_error(resp)
            return
        # The module will not even send SUBSCRIBE: there is no session to keep.
        self.log.warning("keepalive_refused",
                         answer=reasons.answer_text(resp.result, resp.cme_error))
        self._raise_link(Trigger.MQTT_LOST)

    def _on_keepalive_suback(self) -> None:
        if self.keepalive_phase == KeepalivePhase.WAIT_OK:
            self._keepalive_acked = True  # the SUBACK overtook the OK
            return
        self.keepalive_phase = KeepalivePhase.NONE
        self._session_proof_at = self._now

    def _check_keepalive(self) -> None:
        if (self.keepalive_phase == KeepalivePhase.WAIT_SUBACK
                and ms_reached(self._now, self._keepalive_deadline)):
            # The firmware would not tell us (no CLOSED before V838): the server has gone.
            self.counters.timeouts += 1
            self.keepalive_phase = KeepalivePhase.NONE
            self.log.warning("keepalive_unanswered", firmware=self.firmware or None,
                             after_ms=SESSION_KEEPALIVE.urc_timeout_ms)
            self._raise_link(Trigger.MQTT_LOST)

    def _reset_session(self) -> None:
        """A session starts (its CONNACK is the server's latest answer) or ends."""
        self._session_proof_at = self._now
        self.keepalive_phase = KeepalivePhase.NONE
        self._keepalive_acked = False

    def _on_cache_read_response(self, resp: AtResponse) -> None:
        # The cached messages came as +MSUB lines (delivered as URCs) before this final code.
        if self.state == State.ONLINE and resp.result != AtResult.OK:
            self.log.warning("cache_read_failed",
                             answer=reasons.answer_text(resp.result, resp.cme_error))
            self._on_online_timeout_or_error(resp)

    # ------------------------------------------------------------------ helpers

    def _step(self) -> Step | None:
        if self.state == State.ONLINE:
            return None
        steps = self.table[self.state].steps
        return steps[self.step_index] if self.step_index < len(steps) else None

    def _step_name(self) -> str | None:
        step = self._step()
        return step.name if step is not None else None


def _unsendable(message: OutboundMessage) -> tuple[Reason, int]:
    """Why AT+MPUB cannot carry a message at all (the outbox let it in after all)."""
    if payload.check_topic(message.topic) is not None:
        return Reason.BAD_TOPIC, len(message.topic)
    if payload.check_qos(message.qos) is not None:
        return Reason.BAD_QOS, message.qos
    return Reason.PAYLOAD_UNSENDABLE, len(message.payload)
