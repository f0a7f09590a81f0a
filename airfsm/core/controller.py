"""The controller: one `tick(now_ms)` that runs the machine of `airfsm.core.table`.

C twin: `port/c/core/airfsm.c` (with `airfsm_t` in `airfsm.h`, the struct `Controller` is).

A tick reads what the port has, feeds the AT channel, lets the channel's callbacks record what
happened (a step's answer, a wanted URC, a link-loss URC), turns that into at most one machine
event, starts the next command if the channel is idle, and returns the next deadline. Nothing in
here blocks, sleeps, starts a thread, builds text or lets an exception escape `tick()`.

Reading order for a newcomer: `tick` -> `_process` (apply what callbacks recorded) -> `_advance`
(send what is due) -> `_on_response` / `_on_urc` (the callbacks) -> `airfsm.core.judge` (the
per-check `switch`) -> `_enter` (what entering a state resets) -> `airfsm.core.online` (the
ONLINE publish / probe / keepalive loop).

One struct: the controller's fields are fixed (`__slots__`), its sub-structs too - the AT
channel (`channel`), the step runner (`runner`), the credentials (`auth`), the ONLINE session
(`session`) - and every buffer is allocated in `__init__`. The `transitions` Machine is shared
by all controllers of a table; each has its own small model. Logging goes through a hook whose
events are codes (`airfsm.core.hal.LogHook`): with none, nothing is logged and nothing is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

from airfsm.core import aliyun, online
from airfsm.core.at import AtChannel, AtResponse, is_msub_message, msub_cache_slot, msub_topic
from airfsm.core.codes import (
    AtResult,
    AuthMode,
    Cond,
    FailReason,
    LogEvent,
    LogLevel,
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
from airfsm.core.counters import Counters
from airfsm.core.hal import LOG_OFF, PORT_LOST, LogHook, Port
from airfsm.core.judge import judge_answer, judge_urc
from airfsm.core.outbox import MemoryOutbox, Outbox
from airfsm.core.settings import (
    BODY_CAPACITY,
    CMD_CAPACITY,
    DATA_CAPACITY,
    INFO_ARENA,
    LINE_CAPACITY,
    READ_CHUNK,
    U31_MAX,
    Settings,
)
from airfsm.core.table import (
    CONTENT_TYPE,
    ESCALATING_TRIGGERS,
    ESCALATION_BACKOFF_MS,
    ESCALATIONS_WITHOUT_BACKOFF,
    MACHINE,
    SESSION_KEEPALIVE,
    URC_NONE,
    URCS,
    Edge,
    StateSpec,
    Step,
    branch_for,
    expand,
    link_priority,
    shared_edges,
    shared_machine,
)
from airfsm.core.timebase import (
    MS_MASK,
    Xorshift32,
    backoff_ms,
    ms_add,
    ms_diff,
    ms_earliest,
    ms_reached,
    seed_from_text,
)

MAX_READ_PER_TICK = 8 * READ_CHUNK  # bound the work of one tick; the rest waits for the next
IDLE_RECHECK_MS = 60_000  # longest sleep a tick asks for: latches (token age, watchdog) need it
LOST_PORT_RECHECK_MS = 1_000  # a lost port: the host reopens it; look again this soon
# An age (how long a state has been held, how old a reading is) is the unsigned 32-bit
# difference from its start, latched every tick once it reaches this (about 24.8 days), so it
# saturates instead of wrapping: ticks come at least every IDLE_RECHECK_MS, long before the
# difference could pass 2**32.
AGE_MAX_MS = U31_MAX


def age_ms(now_ms: int, since_ms: int, saturated: bool) -> int:
    """`now - since` on the 32-bit clock, at most AGE_MAX_MS (and that once `saturated`).

    C: airfsm_age_ms()."""
    if saturated:
        return AGE_MAX_MS
    return min((now_ms - since_ms) & MS_MASK, AGE_MAX_MS)


class StepError(NamedTuple):
    """The latest step failure: codes only (C: a struct); `airfsm.host.reasons` words it."""

    state: State
    step: int  # index in the state's steps
    reason: Reason
    detail: int


class StepRunner:
    """Where the current state's script is (C: a sub-struct)."""

    __slots__ = ("index", "topic", "phase", "resume_at", "urc_deadline", "polls", "urc_seen",
                 "urc_seen_line", "body_due", "body_timeout_ms", "outcome")

    def __init__(self, now_ms: int) -> None:
        """C: part of airfsm_init()."""
        self.index = 0  # the step of the state's script
        self.topic = 0  # a per_topic step: the subscription it is sent for
        self.phase = Phase.IDLE
        self.resume_at = now_ms  # WAIT_UNTIL: a backoff or poll interval ends
        self.urc_deadline = now_ms  # WAIT_URC: the wanted URC is due by then
        self.polls = 0  # NOT_YET answers of this step so far
        self.urc_seen = URC_NONE  # a wanted/failing URC that came before the final code ...
        self.urc_seen_line = b""  # ... and its line (the +HTTPACTION status is in it)
        self.body_due = False  # the prompt came: the auth body goes out next
        self.body_timeout_ms = 0  # ... and the OK after it is due this long after it
        self.outcome: Outcome | None = None  # recorded by callbacks, applied by _process


class Credentials:
    """What HTTP_AUTH (or PROVISION) produces for MQTT_CONNECT (C: a sub-struct)."""

    __slots__ = ("body", "body_len", "iot_id", "iot_token", "token_at", "token_stale",
                 "reply_host", "reply_port", "rejections", "device_secret")

    def __init__(self, now_ms: int, device_secret: str) -> None:
        """C: part of airfsm_init()."""
        # The DeviceSecret every sign is made with: the configured one, or the one PROVISION
        # earned ("" until then). A secret (C: a fixed char array).
        self.device_secret = device_secret
        self.body = bytearray(BODY_CAPACITY)  # the form of this HTTP_AUTH / PROVISION entry
        self.body_len = 0
        self.iot_id = ""
        self.iot_token = ""  # the MQTT password: a secret
        self.token_at = now_ms
        self.token_stale = True  # no token yet
        self.reply_host: str | None = None  # the broker the reply named
        self.reply_port: int | None = None
        # Auths the server rejected (a code, not a transport failure) since one last passed:
        # Settings.auth_attempts of them end in FAILED, whatever failed in between.
        self.rejections = 0


class _Model:
    """The object the shared `transitions` Machine drives for one controller."""

    fsm_state: str  # set by transitions, as is `trigger` (the model has a __dict__ for them)

    def trigger(self, name: str) -> bool:
        """Replaced by transitions' when the model is added (model_override binds only what
        the model declares: this). Python only (no C twin)."""
        raise NotImplementedError


InboundCallback = Callable[[str, bytes], None]
StateCallback = Callable[[State, State, str], None]
# The host's wall clock, for the timestamp a sign carries: Unix time in ms (skew-corrected where
# the host knows the server's time), or None while unknown (no timestamp is sent then).
WallClock = Callable[[], int | None]
# PROVISION passed: the DeviceSecret the register server issued, for the host to keep (it must
# survive a restart: the server registers a device once). Its error is logged, no more.
RegisteredCallback = Callable[[str], None]


class Controller:
    """One device's connection: the machine, its AT channel, its ONLINE session.

    C: airfsm_t, set up by airfsm_init() and driven by airfsm_tick().
    """

    __slots__ = (
        # given
        "settings", "port", "outbox", "on_message", "on_state", "hardware_reset", "table",
        "log_hook", "log_level", "wall_clock_ms", "on_registered",
        # the buffers, and what works in them
        "read_buf", "cmd_buf", "line_buf", "data_buf", "info_arena", "values", "subscriptions",
        "channel",
        # the machine
        "edges", "model", "machine", "rng", "now_ms", "started_at", "state", "entered_at",
        "state_age_saturated",
        "attempt", "fail_reason", "fail_cause", "fail_cause_detail", "last_trigger",
        "last_error", "counters", "escalations", "hardware_resets", "reset_requested",
        "offline_since", "link_event", "purpose", "runner",
        # what the steps learned
        "firmware", "firmware_version", "imei", "iccid", "operator", "access_technology",
        "registration", "rssi", "signal_at", "signal_read", "signal_age_saturated", "ip",
        "http_status", "auth_code", "auth",
        # ONLINE and shutting down
        "session", "port_lost", "stopping", "stopped",
    )

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
        log_hook: LogHook | None = None,
        wall_clock_ms: WallClock | None = None,
        on_registered: RegisteredCallback | None = None,
    ) -> None:
        """C: airfsm_init().

        `wall_clock_ms`: the host's wall-clock hook (Unix ms, or None while unknown; C: the
        optional `hal_t.wall_clock_ms`, 0 = unknown). With it, the HTTPS auth form and the
        direct MQTT sign carry a signed timestamp, so a captured sign cannot be replayed once
        the server's window has passed. It is the place for a clock corrected by the skew the
        host learned from the server (the NTP exchange over MQTT). Without it nothing is
        timestamped (the seed's form).
        `on_registered`: where the DeviceSecret of a dynamic registration goes (PROVISION; C:
        `airfsm_hooks_t.on_registered`, which returns false where this one raises).
        """
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
        # The log hook and the lowest level it wants (asked once per tick: a host may change
        # it while running). No hook: nothing is logged, and nothing is built to be.
        self.log_hook = log_hook
        self.log_level = log_hook.level if log_hook is not None else LOG_OFF
        self.wall_clock_ms = wall_clock_ms
        self.on_registered = on_registered

        # The buffers of the tick, allocated once (C: arrays in the struct).
        self.read_buf = bytearray(READ_CHUNK)
        self.cmd_buf = bytearray(CMD_CAPACITY)
        self.line_buf = bytearray(LINE_CAPACITY)
        self.data_buf = bytearray(DATA_CAPACITY)
        self.info_arena = bytearray(INFO_ARENA)
        # The value of each template placeholder (C: a table of pointers and lengths).
        self.values: list[bytes | int] = [b""] * len(Placeholder)
        # The topics a per_topic step subscribes to, each in turn (C: pointers into settings).
        self.subscriptions = tuple(t.encode("ascii") for t in settings.subscriptions())
        self.channel = AtChannel(self._write, self._on_response, self._on_urc,
                                 on_truncated=self._on_truncated,
                                 on_ignored=self._on_ignored_line, baud=settings.baud,
                                 line_buf=self.line_buf, data_buf=self.data_buf,
                                 info_arena=self.info_arena)

        self.edges = shared_edges(table)
        self.model = _Model()
        self.machine = shared_machine(table)
        self.machine.add_model(self.model)

        ident = settings.identity
        seed = settings.jitter_seed
        self.rng = Xorshift32(seed if seed is not None else seed_from_text(ident.device_name))
        self.now_ms = now_ms & MS_MASK
        self.started_at = self.now_ms

        # the machine
        self.state = table[0].state
        self.entered_at = self.now_ms
        self.state_age_saturated = False  # held for AGE_MAX_MS or more
        self.attempt = 1
        self.fail_reason = FailReason.NONE
        self.fail_cause = Reason.NONE  # why, with a detail: worded at the edge
        self.fail_cause_detail = 0
        self.last_trigger = "start"
        # The latest step failure, for operators (airfsm.host.reasons words it: "ATTACH cpin:
        # SIM not ready").
        self.last_error: StepError | None = None
        self.counters = Counters()
        self.escalations = 0  # link losses and escalations since ONLINE was last stable
        self.hardware_resets = 0  # RESET-pin pulses since the module last answered
        self.reset_requested = False
        self.offline_since = self.now_ms
        self.link_event: Trigger | None = None  # raised by a callback, fired by _process
        self.purpose = Purpose.NONE  # what the command in flight is for
        self.runner = StepRunner(self.now_ms)

        # what the steps learned
        self.firmware = ""
        self.firmware_version = 0
        self.imei = ""
        self.iccid = ""
        self.operator = ""  # the network registered on ("": none, or not read yet)
        self.access_technology = -1  # 27.007 <AcT> of +COPS (7: E-UTRAN); -1: unknown
        self.registration = -1  # 27.007 <stat> of +CEREG (1: home, 5: roaming); -1: unknown
        self.rssi = 99  # 0-31, 99: unknown
        self.signal_at = self.now_ms  # when rssi was read ...
        self.signal_read = False  # ... if ever
        self.signal_age_saturated = False
        self.ip = ""
        self.http_status = 0
        self.auth_code = 0
        self.auth = Credentials(self.now_ms, ident.device_secret)

        self.session = online.Session(self.now_ms)
        self.port_lost = False
        self.stopping = False
        self.stopped = False  # request_stop() has finished: the port may be closed

        self._init_values()
        self.emit_secret(ident.device_secret.encode("utf-8"), lasting=True)
        if ident.product_secret:
            self.emit_secret(ident.product_secret.encode("utf-8"), lasting=True)

    # ------------------------------------------------------------------ the tick

    def tick(self, now_ms: int) -> int:
        """Do everything that is due at `now_ms`; return the next time a tick is needed.

        C: airfsm_tick()."""
        self.now_ms = now_ms & MS_MASK
        if self.log_hook is not None:
            self.log_level = self.log_hook.level
        try:
            self._read_port()
            self.channel.check_timeout(self.now_ms)
            self._check_deadlines()
            self._process()
            online.settle_outbox(self)
            self._advance()
            self._process()  # a refused command answers at once: apply that too
            self._advance()
            return self.next_deadline()
        except Exception as exc:  # the C twin has no exceptions; a Python bug must not kill us
            # The last-resort guard, not control flow: nothing in the tick raises on purpose.
            self.counters.internal_errors += 1
            if self.wants(LogLevel.ERROR):
                self.log(LogLevel.ERROR, LogEvent.INTERNAL_ERROR,
                         data=f"{type(exc).__name__}: {exc}".encode("utf-8", "replace"))
            try:
                self._fail(FailReason.INTERNAL, Reason.INTERNAL_ERROR, 0)
            except Exception:  # failing to fail must not escape either: the next tick tries
                self.counters.internal_errors += 1
            return ms_add(self.now_ms, 1_000)

    def next_deadline(self) -> int:
        """When the next tick is needed (32-bit ms; never earlier than now). C:
        airfsm_next_deadline().

        Two kinds of deadline. Some act whatever the channel does: the command in flight ends
        (its answer or its timeout), a wanted URC is overdue, the watchdog, a store write owed,
        the keepalive's SUBACK. The others are when something is due to be *sent*: a backoff
        or poll interval ends, ONLINE's probe, publish or keepalive. One rule for every state:
        nothing can be sent while a command is in flight, so those count only while the
        channel is idle - until then its answer or its deadline wakes the tick, and asking for
        one at a send time already passed would only spin."""
        now = self.now_ms
        if self.state == State.FAILED:
            return ms_add(now, IDLE_RECHECK_MS)
        if self.port_lost:
            return ms_add(now, LOST_PORT_RECHECK_MS)
        channel = self.channel
        deadline: int | None = ms_earliest(channel.deadline, channel.receive_deadline)
        deadline = online.watch_deadline(self, deadline)
        if self.state != State.ONLINE:
            if self.runner.phase == Phase.WAIT_URC:
                deadline = ms_earliest(deadline, self.runner.urc_deadline)
            if self.settings.watchdog_ms:
                deadline = ms_earliest(
                    deadline, ms_add(self.offline_since, self.settings.watchdog_ms))
        if not channel.busy:
            if self.state == State.ONLINE:
                deadline = online.send_deadline(self, deadline)
            elif self.runner.phase == Phase.WAIT_UNTIL:
                deadline = ms_earliest(deadline, self.runner.resume_at)
        deadline = ms_earliest(deadline, ms_add(now, IDLE_RECHECK_MS))
        assert deadline is not None
        return now if ms_diff(deadline, now) < 0 else deadline

    # ------------------------------------------------------------------ public API

    def publish(self, topic: str, data: bytes, qos: int = 1) -> int:
        """Queue a message for ONLINE. The outbox refuses (ValueError) what can never be sent.

        C: airfsm_publish() (into the RAM ring)."""
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
        wait with its own grace period. C: airfsm_request_stop()."""
        self.stopping = True
        if self.state != State.ONLINE and not self.channel.busy:
            self.stopped = True

    def replace_port(self, port: Port, now_ms: int) -> None:
        """The gateway reopened a lost port: start over from AUTOBAUD on it.

        C: airfsm_replace_port()."""
        try:  # noqa: SIM105 (no contextlib in the core)
            self.port.close()
        except Exception:  # a vanished device may fail to close: it is gone anyway
            pass
        self.port = port
        self.port_lost = False
        self.now_ms = now_ms & MS_MASK
        self.channel.reset()
        self.purpose = Purpose.NONE
        self._fire(Trigger.PORT_LOST)

    def close(self) -> None:
        """The controller is done with: its model leaves the shared Machine. Idempotent.

        Python only (no C twin)."""
        if self.model in self.machine.models:
            self.machine.remove_model(self.model)

    @property
    def online(self) -> bool:
        """C: airfsm_online()."""
        return self.state == State.ONLINE

    @property
    def failed(self) -> bool:
        """C: airfsm_failed()."""
        return self.state == State.FAILED

    @property
    def pub_phase(self) -> PubPhase:
        """Where the publish of the outbox head is. C: airfsm_pub_phase()."""
        return self.session.pub_phase

    def state_age_ms(self) -> int:
        """How long the current state has been held, saturating at AGE_MAX_MS (~24.8 days).

        C: airfsm_state_age_ms()."""
        return age_ms(self.now_ms, self.entered_at, self.state_age_saturated)

    def signal_age_ms(self) -> int:
        """How old the signal reading is (saturating like a state's age); -1: never read.

        C: airfsm_signal_age_ms()."""
        if not self.signal_read:
            return -1
        return age_ms(self.now_ms, self.signal_at, self.signal_age_saturated)

    def take_signal(self, rssi: int) -> None:
        """An AT+CSQ answer (ATTACH's step, ONLINE's refresh). C: airfsm_take_signal()."""
        self.rssi = rssi
        self.signal_at = self.now_ms
        self.signal_read = True
        self.signal_age_saturated = False

    def step(self) -> Step | None:
        """The current step (None in ONLINE and FAILED, and past the last step).

        C: airfsm_step()."""
        if self.state == State.ONLINE:
            return None
        steps = self.table[self.state].steps
        index = self.runner.index
        return steps[index] if index < len(steps) else None

    def step_name(self) -> str | None:
        """C: airfsm_step_name()."""
        step = self.step()
        return step.name if step is not None else None

    # ------------------------------------------------------------------ logging

    def wants(self, level: LogLevel) -> bool:
        """The hook would take an event of this level (build nothing for one it would not).

        C: airfsm_wants()."""
        return level >= self.log_level

    def log(self, level: LogLevel, event: LogEvent, a: int = 0, b: int = 0, c: int = 0,
            data: bytes | bytearray | memoryview = b"") -> None:
        """Hand an event to the log hook, if it wants its level. C: airfsm_log()."""
        if level >= self.log_level and self.log_hook is not None:
            self.log_hook(self, level, event, a, b, c, data)

    def emit_secret(self, secret: bytes, *, lasting: bool = False) -> None:
        """A value that must never be printed: the host's log hook keeps it from every line it
        prints, whatever its level. `lasting` (a = 1): the DeviceSecret, for the life of the
        process; otherwise (a = 0) a session secret of this device (a sign, an iotToken), of
        which the host keeps only the newest few.

        C: airfsm_emit_secret()."""
        if self.log_hook is not None:
            self.log_hook(self, LogLevel.ERROR, LogEvent.SECRET, int(lasting), 0, 0, secret)

    # ------------------------------------------------------------------ port I/O

    def _read_port(self) -> None:
        """Feed the channel what the port has, a chunk at a time, at most MAX_READ_PER_TICK.

        C: airfsm_read_port()."""
        if self.port_lost:
            return
        buf = self.read_buf
        total = 0
        while total < MAX_READ_PER_TICK:
            n = self.port.read(buf, len(buf))
            if n == PORT_LOST:
                self._lose_port()
                return
            if n == 0:
                return
            total += n
            self.channel.feed(buf, self.now_ms, n)

    def _write(self, data: memoryview) -> None:
        """C: airfsm_write()."""
        if self.port_lost:
            return
        if self.port.write(data) == PORT_LOST:
            self._lose_port()

    def _lose_port(self) -> None:
        """C: airfsm_lose_port()."""
        self.port_lost = True
        self.log(LogLevel.WARNING, LogEvent.PORT_LOST)

    # ------------------------------------------------------------------ applying events

    def _check_deadlines(self) -> None:
        """C: airfsm_check_deadlines()."""
        now = self.now_ms
        runner = self.runner
        if runner.phase == Phase.WAIT_URC and ms_reached(now, runner.urc_deadline):
            self.counters.timeouts += 1
            step = self.step()
            self._record(Outcome.FAIL, Reason.URC_TIMEOUT,
                         step.urc_timeout_ms if step is not None else 0)
        online.check_deadlines(self)
        if (self.settings.watchdog_ms and self.state not in (State.ONLINE, State.FAILED)
                and ms_reached(now, ms_add(self.offline_since, self.settings.watchdog_ms))):
            self.offline_since = now
            self.raise_link(Trigger.WATCHDOG)
        # Latch the ages every tick so a months-long ONLINE never wraps a 32-bit difference.
        if age_ms(now, self.entered_at, self.state_age_saturated) >= AGE_MAX_MS:
            self.state_age_saturated = True
        if age_ms(now, self.signal_at, self.signal_age_saturated) >= AGE_MAX_MS:
            self.signal_age_saturated = True
        auth = self.auth
        if not auth.token_stale and (
                ms_diff(now, auth.token_at) >= self.settings.token_refresh_ms):
            auth.token_stale = True

    def _process(self) -> None:
        """Apply what the callbacks recorded: a link event beats the step's own outcome.

        C: airfsm_process()."""
        runner = self.runner
        if runner.body_due:
            # First of all, link events included: the module is in data mode and takes every
            # byte for the body until it has them all. Whatever state the controller is in by
            # now (a link loss may have ended HTTP_AUTH meanwhile), the body goes out, or the
            # module would eat the commands that follow until its window ends.
            runner.body_due = False
            self.channel.send_data(self.auth.body, self.auth.body_len, self.now_ms,
                                   runner.body_timeout_ms)
        if self.link_event is not None:
            trigger, self.link_event = self.link_event, None
            runner.outcome = None
            self._fire(trigger)
            return
        if runner.outcome is None:
            return
        outcome, runner.outcome = runner.outcome, None
        step = self.step()
        if step is None:
            return
        if outcome == Outcome.PASS:
            if self.state == State.AUTOBAUD:
                self.hardware_resets = 0  # the module answers again
            runner.polls = 0
            runner.phase = Phase.IDLE
            if step.per_topic and runner.topic + 1 < len(self.subscriptions):
                runner.topic += 1  # the same step again, for the next subscription
            else:
                runner.index += 1
                runner.topic = 0
            if step.settle_ms:
                self._wait(step.settle_ms)
        elif outcome == Outcome.NOT_YET:
            runner.polls += 1
            if runner.polls > step.poll_limit:
                self._fail_state(step, rejected=False)
            else:
                self._wait(step.poll_ms)
        elif outcome == Outcome.FATAL:
            self._fire(Trigger.FATAL)
        else:
            self._fail_state(step, rejected=outcome == Outcome.REJECTED)

    def _fail_state(self, step: Step, *, rejected: bool) -> None:
        """A step failed for good: retry the state after backoff, or escalate.

        C: airfsm_fail_state()."""
        # A direct-sign CONNECT that failed has no token to fetch again (TOKEN_REJECTED): the
        # state retries with a fresh sign, and a refusal counts towards giving up like an auth
        # rejection.
        if step.on_fail is not None and not (
                step.on_fail == Trigger.TOKEN_REJECTED and self.signs_directly):
            self._fire(step.on_fail)
            return
        policy = self.table[self.state].policy
        if policy is None:
            return
        retries = policy.retries
        if rejected:
            # Only rejections count towards giving up on the credentials: transient failures
            # (HTTP 601, an ERROR) between them neither count nor forgive one.
            self.auth.rejections += 1
            limit = self.settings.auth_attempts or policy.retries + 1
            if self.auth.rejections >= limit and (self.state, Trigger.FATAL) in self.edges:
                if self.state == State.PROVISION:
                    self._fail(FailReason.REGISTRATION, Reason.REGISTRATION_REFUSED,
                               self.auth_code)
                elif self.state == State.MQTT_CONNECT:
                    self._fail(FailReason.CREDENTIALS, Reason.SIGN_REFUSED, self.auth.rejections)
                else:
                    self._fail(FailReason.CREDENTIALS, Reason.CREDENTIALS_REJECTED,
                               self.auth_code)
                return
            retries = limit - 1  # a rejection may retry the state until the limit
        if self.attempt <= retries:
            delay = backoff_ms(self.attempt, policy.backoff_base_ms, policy.backoff_cap_ms,
                               self.rng)
            self.runner.resume_at = ms_add(self.now_ms, delay)
            self._fire(Trigger.RETRY)
        elif self.hardware_reset is not None and self.hardware_resets < policy.hardware_resets:
            self.hardware_resets += 1
            self.log(LogLevel.WARNING, LogEvent.HARDWARE_RESET, self.hardware_resets,
                     policy.hardware_resets)
            try:
                self.hardware_reset()
            except Exception as exc:  # the host's callback: its failure is logged, no more
                self._log_error(LogEvent.HARDWARE_RESET_FAILED, exc)
            self._fire(Trigger.HARDWARE_RESET)
        else:
            if policy.on_exhausted == State.FAILED and self.state == State.AUTOBAUD:
                self.set_failure(FailReason.NO_RESPONSE, Reason.MODULE_MUTE,
                                 self.hardware_resets)
            self._fire(Trigger.EXHAUSTED)

    def set_failure(self, reason: FailReason, cause: Reason, detail: int) -> None:
        """Why FAILED, should the machine get there (the judge, the retry policy).

        C: airfsm_set_failure()."""
        self.fail_reason = reason
        self.fail_cause = cause
        self.fail_cause_detail = detail

    def _fail(self, reason: FailReason, cause: Reason, detail: int) -> None:
        """C: airfsm_fail()."""
        self.set_failure(reason, cause, detail)
        if (self.state, Trigger.FATAL) in self.edges:
            self._fire(Trigger.FATAL)
        else:  # e.g. an internal error in a state with no FATAL edge: go there directly
            self.model.fsm_state = State.FAILED.name
            self._enter(self.state, State.FAILED, Trigger.FATAL, None)

    def _fire(self, trigger: Trigger) -> bool:
        """Take the edge (state, trigger) if the table has it: the shared Machine moves this
        controller's model, then `_enter` does what entering the new state means.

        C: airfsm_fire()."""
        taken = branch_for(self.table[self.state], trigger, self._step_applies)
        edge = self.edges.get((self.state, taken))
        if edge is None:
            return False
        source = self.state
        self.model.trigger(edge.trigger_name)
        # What happened (DONE, EXHAUSTED, ...) decides the bookkeeping; the edge taken (a
        # branch's own trigger) is what the log and the status name.
        self._enter(source, State[self.model.fsm_state], trigger, edge)
        return True

    def _enter(self, source: State, dest: State, trigger: Trigger, edge: Edge | None) -> None:
        """C: airfsm_enter()."""
        now = self.now_ms
        runner = self.runner
        elapsed = self.state_age_ms()
        taken = edge.trigger if edge is not None else trigger
        self.counters.transitions += 1
        if trigger in ESCALATING_TRIGGERS:
            self.counters.reconnects[trigger] += 1
        self.last_trigger = taken.name.lower()
        self.state = dest
        self.attempt = self.attempt + 1 if trigger == Trigger.RETRY else 1
        # Logged with the runner still where the source state was left (its step is named).
        self.log(LogLevel.INFO, LogEvent.STATE, source, taken, elapsed)
        self.entered_at = now
        self.state_age_saturated = False
        runner.index = 0
        runner.topic = 0
        runner.polls = 0
        runner.urc_seen = URC_NONE
        runner.body_due = False
        runner.outcome = None
        if edge is not None and edge.reset_module:
            self.reset_requested = True
        if dest == State.AUTOBAUD and trigger != Trigger.RETRY:
            # The module restarted (or is about to): it forgot the command in flight and may
            # have stopped inside a length-counted payload. Start the byte stream afresh.
            self.channel.reset()
            self.purpose = Purpose.NONE
        elif self.channel.busy:
            self.purpose = Purpose.DISCARD  # its answer still comes: let it land harmlessly
        if trigger in ESCALATING_TRIGGERS and dest != State.FAILED:
            # Escalations and link losses back off too, or a flapping link would hammer the
            # network in a tight loop: the first is immediate, the next ones wait longer.
            self.escalations += 1
            delay = 0
            free = ESCALATIONS_WITHOUT_BACKOFF
            if self.escalations > free:
                delay = backoff_ms(self.escalations - free, ESCALATION_BACKOFF_MS[0],
                                   ESCALATION_BACKOFF_MS[1], self.rng)
            self._wait(delay)
        elif trigger == Trigger.RETRY:
            runner.phase = Phase.WAIT_UNTIL  # _fail_state set resume_at to the backoff
        else:  # DONE, or FAILED
            runner.phase = Phase.IDLE
        if source == State.ONLINE or dest == State.ONLINE:
            online.reset(self)
        if dest == State.ONLINE:
            self.session.next_probe_at = ms_add(now, self.settings.liveness_ms)
        elif source == State.ONLINE:
            self.offline_since = now
        if dest in (State.AUTOBAUD, State.VERSION_CHECK):
            online.module_restarted(self)
        if self.on_state is not None:
            try:
                self.on_state(source, dest, taken.name.lower())
            except Exception as exc:  # the application's callback: logged, no more
                self._log_error(LogEvent.ON_STATE_FAILED, exc, with_type=False)

    def _wait(self, delay_ms: int) -> None:
        """C: airfsm_wait()."""
        self.runner.phase = Phase.WAIT_UNTIL
        self.runner.resume_at = ms_add(self.now_ms, delay_ms)

    def _record(self, outcome: Outcome, reason: Reason = Reason.NONE, detail: int = 0) -> None:
        """A step's verdict, applied by `_process` once the bytes of this tick are digested.

        C: airfsm_record()."""
        self.runner.outcome = outcome
        self.runner.phase = Phase.IDLE
        if outcome != Outcome.PASS and reason != Reason.NONE:
            self.last_error = StepError(self.state, self.runner.index, reason, detail)
            self.log(LogLevel.INFO, LogEvent.STEP, outcome, reason, detail)

    def raise_link(self, trigger: Trigger) -> None:
        """A link event for _process, unless a bigger one is already raised this tick.

        C: airfsm_raise_link()."""
        if (self.state, trigger) not in self.edges:
            return
        current = self.link_event
        if current is None or link_priority(trigger) > link_priority(current):
            self.link_event = trigger

    def _log_error(self, event: LogEvent, exc: Exception, *, with_type: bool = True) -> None:
        """A host or application callback raised: say what, if the hook wants errors.

        Python only (no C twin)."""
        if self.wants(LogLevel.ERROR):
            text = f"{type(exc).__name__}: {exc}" if with_type else str(exc)
            self.log(LogLevel.ERROR, event, data=text.encode("utf-8", "replace"))

    # ------------------------------------------------------------------ sending

    def _advance(self) -> None:
        """C: airfsm_advance()."""
        if self.state == State.FAILED or self.port_lost or self.channel.busy or self.stopped:
            return
        if self.stopping and self.state != State.ONLINE:
            self.stopped = True  # nothing in flight that matters: no session to close
            return
        runner = self.runner
        if self.link_event is not None or runner.outcome is not None:
            return
        if self.state == State.ONLINE:
            online.advance(self)
            return
        if runner.phase == Phase.WAIT_UNTIL:
            if not ms_reached(self.now_ms, runner.resume_at):
                return
            runner.phase = Phase.IDLE
        if runner.phase != Phase.IDLE:
            return
        if self.state == State.MQTT_CONNECT and runner.index == 0:
            if self.signs_directly:
                self._prepare_direct_sign()  # a fresh timestamp for every connect
            elif self.auth.token_stale:
                self._fire(Trigger.TOKEN_REJECTED)  # no token, or one about to expire
                return
        if self.state == State.HTTP_AUTH and runner.index == 0:
            self._prepare_auth()
        if self.state == State.PROVISION and runner.index == 0:
            self._prepare_register()
        steps = self.table[self.state].steps
        while runner.index < len(steps):
            step = steps[runner.index]
            if not self._step_applies(step.when):
                runner.index += 1
                continue
            if step.when == Cond.RESET_REQUESTED:
                self.reset_requested = False
            self.send_step(step, topic=runner.topic)
            return
        if self._fire(Trigger.DONE):
            self._advance()  # start the new state's first step in this same tick

    def _step_applies(self, when: Cond) -> bool:
        """Whether a step's or a branch's condition holds now. C: airfsm_step_applies()."""
        if when == Cond.RESET_REQUESTED:
            return self.reset_requested
        if when == Cond.RETRYING:
            return self.attempt > 1
        if when == Cond.UNREGISTERED:
            return not self.auth.device_secret
        if when == Cond.DIRECT_SIGN:
            return self.signs_directly
        return True

    @property
    def signs_directly(self) -> bool:
        """The direct MQTT sign, not the HTTPS pre-auth. C: airfsm_signs_directly()."""
        return self.settings.auth_mode == AuthMode.MQTT_SIGN

    def send_step(self, step: Step, purpose: Purpose = Purpose.STEP, topic: int = 0) -> None:
        """Expand the step's command into the command buffer and send it; a per_topic step for
        subscription `topic`. C: airfsm_send_step()."""
        if step.per_topic:
            self.values[Placeholder.SUB_TOPIC] = self.subscriptions[topic]
        if purpose == Purpose.STEP:
            self.runner.urc_seen = URC_NONE
            self.runner.phase = Phase.WAIT_FINAL
        if step.prompt:
            self.runner.body_timeout_ms = step.timeout_ms
        # A step that waits for a bare final code as its URC (AT+MCONNECT: OK, then ERROR when
        # refused) asks the channel to pass that code on rather than count it stray.
        self._send(expand(step.pieces, self.values, self.cmd_buf), step.timeout_ms, purpose,
                   prompt=step.prompt, final_urc=step.final_urc)

    def send_command(self, length: int, timeout_ms: int, purpose: Purpose) -> None:
        """Send the command written into the command buffer elsewhere (AT+MPUB, by
        payload.put_mpub). C: airfsm_send_command()."""
        self._send(length, timeout_ms, purpose)

    def _send(self, length: int, timeout_ms: int, purpose: Purpose, *,
              prompt: bool = False, final_urc: bool = False) -> None:
        """Send the command in cmd_buf[:length]. A command that did not fit (EXPAND_FAILED) is
        handed over at the buffer's full length: the channel refuses it whole, answering ERROR
        as a module answers a bad command. C: airfsm_send()."""
        if length < 0:
            length = len(self.cmd_buf)
        self.purpose = purpose
        if self.wants(LogLevel.DEBUG):
            self.log(LogLevel.DEBUG, LogEvent.AT_TX, data=memoryview(self.cmd_buf)[:length])
        self.channel.send(self.cmd_buf, length, self.now_ms, timeout_ms, expect_prompt=prompt,
                          final_urc=final_urc)

    def _init_values(self) -> None:
        """The values of the template placeholders that come from the settings (the rest are
        set as the steps learn them: the body length, the credentials, the reply's host).

        C: airfsm_init_values()."""
        s = self.settings
        ident = s.identity
        v = self.values
        v[Placeholder.APN] = s.apn.encode("ascii")
        v[Placeholder.AUTH_URL] = aliyun.auth_url(ident.region, ident.instance_id).encode("ascii")
        v[Placeholder.REGISTER_URL] = aliyun.register_url(ident.region).encode("ascii")
        v[Placeholder.CONTENT_TYPE] = CONTENT_TYPE.encode("ascii")
        v[Placeholder.BODY_LEN] = 0
        v[Placeholder.BODY_WINDOW_MS] = s.body_window_ms
        v[Placeholder.CLIENT_ID] = ident.effective_client_id.encode("ascii")
        v[Placeholder.IOT_ID] = b""
        v[Placeholder.IOT_TOKEN] = b""
        v[Placeholder.KEEPALIVE_S] = s.keepalive_s
        v[Placeholder.SUB_TOPIC] = self.subscriptions[0]  # per_topic steps set it as they go
        v[Placeholder.SUB_QOS] = s.sub_qos
        self._set_mqtt_endpoint()

    def _set_mqtt_endpoint(self) -> None:
        """The broker: the settings', else the auth reply's, else the region's default.

        C: airfsm_set_mqtt_endpoint()."""
        s = self.settings
        host, port = aliyun.mqtt_endpoint(s.identity)
        self.values[Placeholder.MQTT_HOST] = (
            s.mqtt_host or self.auth.reply_host or host).encode("ascii")
        self.values[Placeholder.MQTT_PORT] = s.mqtt_port or self.auth.reply_port or port

    def wall_clock(self) -> int | None:
        """The host's wall clock (Unix ms) for a sign's timestamp; None without the hook, when
        it knows no time yet (or answers nonsense), or when it raises. C: airfsm_wall_clock()."""
        if self.wall_clock_ms is None:
            return None
        try:
            now = self.wall_clock_ms()
        except Exception as exc:  # the host's callback: no timestamp this time, no more
            self._log_error(LogEvent.INTERNAL_ERROR, exc)
            return None
        if isinstance(now, bool) or not isinstance(now, int) or not (
                0 < now <= aliyun.MAX_TIMESTAMP_MS):
            return None
        return now

    def _identity(self) -> aliyun.DeviceIdentity:
        """The identity with the DeviceSecret signs are made with now (the one PROVISION earned,
        if it did). C: the identity struct and the secret buffer beside it."""
        ident = self.settings.identity
        if ident.device_secret == self.auth.device_secret:
            return ident
        return replace(ident, device_secret=self.auth.device_secret)

    def _load_body(self, body: bytes) -> None:
        """The form the next AT+HTTPDATA sends. C: memcpy into auth.body."""
        auth = self.auth
        n = min(len(body), len(auth.body))  # BODY_CAPACITY holds the longest form
        auth.body[:n] = body[:n]
        auth.body_len = n
        self.values[Placeholder.BODY_LEN] = n

    def _prepare_auth(self) -> None:
        """A fresh auth body per HTTP_AUTH entry, timestamped when the host knows the time, and
        asking for `resources=mqtt` (the broker the reply names is the one to use); its sign is
        a secret. C: airfsm_prepare_auth()."""
        s = self.settings
        auth = self.auth
        form = aliyun.auth_form(self._identity(), s.sign_method, self.wall_clock(),
                                resources=True)  # one HMAC per auth
        self.emit_secret(form.sign.encode("ascii"))
        self._load_body(form.body)
        auth.iot_id = ""
        auth.iot_token = ""
        self.values[Placeholder.IOT_ID] = b""
        self.values[Placeholder.IOT_TOKEN] = b""

    def _prepare_register(self) -> None:
        """The register form of this PROVISION entry: a fresh nonce (the jitter generator, the
        clock and the wall clock mixed: the server wants it random, not secret), signed with
        the ProductSecret; the sign is a secret. C: airfsm_prepare_register()."""
        s = self.settings
        nonce = (self.rng.next() << 32 | (self.rng.next() ^ self.now_ms)) ^ (self.wall_clock() or 0)
        form = aliyun.register_form(s.identity, nonce & aliyun.MAX_NONCE, s.sign_method)
        self.emit_secret(form.sign.encode("ascii"))
        self._load_body(form.body)

    def _prepare_direct_sign(self) -> None:
        """The AT+MCONFIG triple of a direct-sign connect, timestamped when the host knows the
        time; the password is a secret. C: airfsm_prepare_direct_sign()."""
        auth = self.auth
        signed = aliyun.mqtt_sign(self._identity(), self.settings.sign_method, self.wall_clock())
        self.emit_secret(signed.password.encode("ascii"))
        auth.iot_id = signed.username
        auth.iot_token = signed.password
        v = self.values
        v[Placeholder.CLIENT_ID] = signed.client_id.encode("ascii")
        v[Placeholder.IOT_ID] = signed.username.encode("ascii")
        v[Placeholder.IOT_TOKEN] = signed.password.encode("ascii")

    def take_device_secret(self, secret: str) -> None:
        """PROVISION passed (the judge says so): sign with this DeviceSecret from now on, and
        hand it to the host to keep. Its failure to keep it is logged (REGISTERED, a = 0): the
        device still connects now, but a restart would find no secret and the server will not
        register it twice. C: airfsm_take_device_secret()."""
        self.auth.device_secret = secret
        self.auth.rejections = 0
        if self.on_registered is None:
            self.log(LogLevel.WARNING, LogEvent.REGISTERED, 0,
                     data=b"no on_registered hook: the DeviceSecret is kept in memory only")
            return
        try:
            self.on_registered(secret)
        except Exception as exc:  # the host's callback: logged (never with the secret)
            if self.wants(LogLevel.ERROR):
                self.log(LogLevel.ERROR, LogEvent.REGISTERED, 0,
                         data=f"{type(exc).__name__}: {exc}".encode("utf-8", "replace"))
            return
        self.log(LogLevel.INFO, LogEvent.REGISTERED, 1)

    def take_credentials(self, reply: aliyun.AuthReply) -> None:
        """The auth passed (the judge says so): the credentials and broker for MQTT_CONNECT.

        C: airfsm_take_credentials()."""
        auth = self.auth
        auth.iot_id = reply.iot_id
        auth.iot_token = reply.iot_token
        self.values[Placeholder.IOT_ID] = reply.iot_id.encode("ascii")
        self.values[Placeholder.IOT_TOKEN] = reply.iot_token.encode("ascii")
        auth.reply_host = reply.mqtt_host
        auth.reply_port = reply.mqtt_port
        self._set_mqtt_endpoint()
        auth.token_at = self.now_ms
        auth.token_stale = False
        auth.rejections = 0

    # ------------------------------------------------------------------ callbacks from AtChannel

    def _on_response(self, resp: AtResponse) -> None:
        """C: airfsm_on_response()."""
        if resp.result != AtResult.TIMEOUT and self.wants(LogLevel.DEBUG):
            self._log_received(resp)
        if resp.result == AtResult.PROMPT:
            # Whatever the command is for by now (DISCARD: its state was left before the
            # prompt came), the module waits for the body: `_process` sends it first.
            self.runner.body_due = True
            return
        purpose = self.purpose
        self.purpose = Purpose.NONE
        if resp.result == AtResult.TIMEOUT:
            self.counters.timeouts += 1
            if self.wants(LogLevel.INFO):
                self.log(LogLevel.INFO, LogEvent.AT_TIMEOUT, data=resp.command)
        elif self.state == State.ONLINE:
            online.on_answered(self)
        if purpose == Purpose.STEP:
            self._on_step_response(resp)
        elif purpose == Purpose.PUBLISH:
            online.on_publish_response(self, resp)
        elif purpose == Purpose.PROBE:
            online.on_probe_response(self, resp)
        elif purpose == Purpose.STOP:
            self.stopped = True
        elif purpose == Purpose.KEEPALIVE:
            online.on_keepalive_response(self, resp)
        elif purpose == Purpose.CACHE_READ:
            online.on_cache_read_response(self, resp)
        elif purpose == Purpose.MODE:
            online.on_mode_response(self, resp)
        elif purpose == Purpose.SIGNAL:
            online.on_signal_response(self, resp)

    def _log_received(self, resp: AtResponse) -> None:
        """at_rx for what the module answered: each info line as it came, then the final code
        (or the prompt) as codes - the channel keeps no copy of that line. Its +HTTPREAD body
        is not a line and is never logged (it holds the iotToken). C: airfsm_log_received()."""
        arena = memoryview(resp.arena)
        for i in range(resp.line_count):
            start = resp.line_start[i]
            self.log(LogLevel.DEBUG, LogEvent.AT_RX, data=arena[start:start + resp.line_length[i]])
        self.log(LogLevel.DEBUG, LogEvent.AT_RX, resp.result, resp.cme_error)

    def _on_ignored_line(self, line: memoryview) -> None:
        """at_rx for a line that means nothing: the echo of a command, a late final code, a
        stray line. C: airfsm_on_ignored_line()."""
        self.log(LogLevel.DEBUG, LogEvent.AT_RX, data=line)

    def _on_step_response(self, resp: AtResponse) -> None:
        """C: airfsm_on_step_response()."""
        step = self.step()
        runner = self.runner
        if step is None or runner.phase != Phase.WAIT_FINAL:
            return
        outcome, reason, detail = judge_answer(self, step, resp)
        if outcome != Outcome.PASS or not (step.urc_ok or step.urc_fail):
            self._record(outcome, reason, detail)
            return
        if runner.urc_seen != URC_NONE:  # the URC overtook the final code
            self._record(*judge_urc(self, step, runner.urc_seen, runner.urc_seen_line))
            return
        runner.phase = Phase.WAIT_URC
        runner.urc_deadline = ms_add(self.now_ms, step.urc_timeout_ms)

    def _on_urc(self, urc: int, line: bytes, data: bytes) -> None:
        """What a URC means, by its row of the URC table: a message, a step's awaited URC, a
        PUBACK, a keepalive's SUBACK, a link loss - in that order. C: airfsm_on_urc()."""
        self.log(LogLevel.DEBUG, LogEvent.AT_RX, data=line)
        row = URCS[urc] if urc != URC_NONE else None
        if row is not None and row.kind == UrcKind.MSUB:
            slot = msub_cache_slot(line)
            if slot >= 0:
                online.cache_notice(self, slot)
                return
            if not is_msub_message(line):
                # Neither a message nor a cache notice (the manual's table abbreviates the
                # header as `<topic>,<len>,<message>`; every example shows ` byte,`): never a
                # message with an empty topic.
                self.log(LogLevel.WARNING, LogEvent.MSUB_UNPARSED, data=line)
                return
            self._deliver(line, data)
            return
        step = self.step()
        runner = self.runner
        if (step is not None and runner.phase in (Phase.WAIT_FINAL, Phase.WAIT_URC)
                and (urc in step.urc_ok_ids or urc in step.urc_fail_ids)):
            if runner.phase == Phase.WAIT_URC:
                self._record(*judge_urc(self, step, urc, line))
            else:
                runner.urc_seen = urc
                runner.urc_seen_line = line
            return
        if row is None:
            self.log(LogLevel.DEBUG, LogEvent.URC, data=line)
            return
        if row.kind == UrcKind.PUBACK:
            online.on_puback(self)
            return
        if urc in SESSION_KEEPALIVE.urc_ok_ids and online.suback_awaited(self):
            online.on_suback(self)
            return
        if row.trigger is not None:
            if row.trigger == Trigger.REBOOTED and self.state == State.AUTOBAUD:
                return  # boot URCs are what AUTOBAUD expects
            self.log(LogLevel.INFO, LogEvent.LINK_URC, urc, data=line)
            self.raise_link(row.trigger)
            return
        self.log(LogLevel.DEBUG, LogEvent.URC, data=line)

    def _on_truncated(self, header: bytes, declared: int, received: int) -> None:
        """The channel dropped a length-counted payload that came short (bytes lost on the UART;
        the vendor's changelog (V401857) names fast downlinks). C: airfsm_on_truncated()."""
        if header.startswith(b"+MSUB"):
            self.counters.downlinks_truncated += 1
        self.log(LogLevel.WARNING, LogEvent.PAYLOAD_TRUNCATED, declared, received, data=header)

    def _deliver(self, line: bytes, data: bytes) -> None:
        """C: airfsm_deliver()."""
        topic = msub_topic(line)
        self.counters.inbound += 1
        self.log(LogLevel.INFO, LogEvent.INBOUND, len(data), data=topic)
        if self.on_message is None:
            return
        try:
            self.on_message(topic.decode("utf-8", "replace"), data)
        except Exception as exc:  # the application's callback: logged, no more
            self._log_error(LogEvent.ON_MESSAGE_FAILED, exc)
