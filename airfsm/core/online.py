"""ONLINE: publishing the outbox, matching PUBACKs, the liveness probe, the keepalive of old
firmware, dead letters. C twin: `port/c/core/online.c`.

Functions over the controller struct (`ctl`) and its `Session` sub-struct (`ctl.session`),
called by the controller's tick: `advance` when the channel is idle in ONLINE, the `on_*`
handlers when an answer or a URC for them came, `settle_outbox` every tick, `watch_deadline`
and `send_deadline` for the controller's `next_deadline`. Nothing here blocks, builds text or
raises.

Publishing. One message is in flight at a time, the outbox head. An attempt is one try to get
it out: the mode switch it may need (AT+MQTTMODE, hex for a payload a quoted AT string cannot
carry), then AT+MPUB, then (QoS1) its PUBACK. Each attempt is counted in the store before
anything is sent, so a crash cannot hide a send from the message's budget; a failed attempt
backs off (exponentially, with jitter), and a message whose budget is spent becomes a dead
letter - kept for an operator, never deleted - while the rest of the queue flows on. AT+MPUB
carries no packet id: a PUBACK is matched conservatively (any one proves the head arrived; the
PUBACKs its other sends still owe are waited for before the next message goes).

The store. A write the outbox refused (OutboxStatus.UNAVAILABLE: locked, disk full, read-only)
is owed, retried after a backoff, and blocks the queue meanwhile: an acknowledged message is never
sent again because its DELETE failed, and a store that keeps failing costs neither a send storm
nor a busy loop.

Upkeep. AT+MQTTSTATU every liveness_ms (and after any failure); silence_limit unanswered
commands in a row mean the module is gone. Firmware before V838 sends no PINGREQ and reports no
CLOSED: the session is kept alive by re-subscribing (SESSION_KEEPALIVE) when the server has
acknowledged nothing for 3/4 of the keepalive. A cache-mode notice (`+MSUB: <slot>`) is read
with AT+MQTTMSGGET. After each probe the signal is read again (AT+CSQ), so the status shows a
fresh one.
"""

from __future__ import annotations

from typing import Protocol

from airfsm.core import payload
from airfsm.core.at import AtChannel, AtResponse
from airfsm.core.codes import (
    AtResult,
    KeepalivePhase,
    LogEvent,
    LogLevel,
    OutboxCall,
    OutboxStatus,
    PubPhase,
    Purpose,
    Reason,
    State,
    Trigger,
)
from airfsm.core.counters import Counters
from airfsm.core.judge import answer_reason, mqtt_status, signal_of
from airfsm.core.messages import OutboundMessage
from airfsm.core.outbox import Outbox
from airfsm.core.settings import Settings
from airfsm.core.table import (
    CACHE_READ,
    DISCONNECT,
    FIRMWARE_HEARTBEAT,
    HEX_MODE,
    KEEPALIVE_FRACTION,
    LIVENESS_PROBE,
    SESSION_KEEPALIVE,
    SIGNAL_REFRESH,
    TEXT_MODE,
    Step,
)
from airfsm.core.timebase import Xorshift32, backoff_ms, ms_add, ms_diff, ms_earliest, ms_reached

# The outbox refused a call (locked, disk full, read-only): touch it again after this backoff.
STORE_BACKOFF_MS = (250, 30_000)
NO_ID = 0  # message ids start at 1: "no message" (C: 0 too)


class Session:
    """What ONLINE keeps between ticks (C: a sub-struct of the controller)."""

    __slots__ = (
        "pub_phase", "pub_message", "pub_deadline", "pub_sends", "attempt_of", "attempt_no",
        "pub_failures", "pub_holding", "pub_hold_until", "last_failure", "last_failure_detail",
        "stale_pubacks", "stale_until", "module_hex", "cache_pending", "proof_at",
        "keepalive_phase", "keepalive_deadline", "keepalive_acked", "keepalive_topic",
        "next_probe_at",
        "probe_due", "signal_due", "silence", "ack_owed", "dead_owed", "dead_reason", "dead_detail",
        "store_failures", "store_holding", "store_hold_until",
    )

    def __init__(self, now_ms: int) -> None:
        # the head of the outbox and the attempt under way
        """C: part of airfsm_init()."""
        self.pub_phase = PubPhase.NONE
        self.pub_message: OutboundMessage | None = None  # the head whose sends are counted
        self.pub_deadline = now_ms  # WAIT_PUBACK: its PUBACK is due by then
        self.pub_sends = 0  # OK'd QoS1 sends of the head not yet matched to a PUBACK
        self.attempt_of = NO_ID  # the message whose attempt is under way
        self.attempt_no = 0  # ... and which attempt of it this is (1 = the first)
        self.pub_failures = 0  # failed attempts and mode switches in a row: the backoff exponent
        self.pub_holding = False  # publish backoff: start nothing before pub_hold_until
        self.pub_hold_until = now_ms
        self.last_failure = Reason.NONE  # why the latest attempt failed (kept with a dead
        self.last_failure_detail = 0  # letter)
        self.stale_pubacks = 0  # PUBACKs still owed to messages already acknowledged
        self.stale_until = now_ms  # ... expected no later than this; then they are lost
        # the module
        self.module_hex = False  # its AT+MQTTMODE
        self.cache_pending = False  # a `+MSUB: <slot>` notice came: AT+MQTTMSGGET is due
        # upkeep
        self.proof_at = now_ms  # the server last acknowledged a packet of ours
        self.keepalive_phase = KeepalivePhase.NONE
        self.keepalive_deadline = now_ms
        self.keepalive_acked = False  # the SUBACK overtook the OK
        self.keepalive_topic = 0  # the subscription the next keepalive re-subscribes
        self.next_probe_at = now_ms
        self.probe_due = False
        self.signal_due = False  # a probe went out: read the signal once the channel is free
        self.silence = 0  # commands unanswered in a row
        # the store
        self.ack_owed = NO_ID  # acknowledged, not yet deleted
        self.dead_owed = NO_ID  # given up on, not yet moved ...
        self.dead_reason = Reason.NONE  # ... for this reason
        self.dead_detail = 0
        self.store_failures = 0  # refused calls in a row: the backoff exponent
        self.store_holding = False  # store backoff: no call before store_hold_until
        self.store_hold_until = now_ms


class Online(Protocol):
    """What ONLINE reads and writes of the controller, and the controller functions it calls
    (C: these fields and functions of airfsm_t; the Controller is one, and ONLINE needs no more
    of it)."""

    settings: Settings
    session: Session
    counters: Counters
    channel: AtChannel
    outbox: Outbox
    rng: Xorshift32
    cmd_buf: bytearray
    subscriptions: tuple[bytes, ...]
    state: State
    now_ms: int
    escalations: int
    firmware_version: int
    stopping: bool

    def state_age_ms(self) -> int: ...

    def log(self, level: LogLevel, event: LogEvent, a: int = 0, b: int = 0, c: int = 0,
            data: bytes | bytearray | memoryview = b"") -> None: ...

    def wants(self, level: LogLevel) -> bool: ...

    def raise_link(self, trigger: Trigger) -> None: ...

    def send_step(self, step: Step, purpose: Purpose = Purpose.STEP,
                  topic: int = 0) -> None: ...

    def send_command(self, length: int, timeout_ms: int, purpose: Purpose) -> None: ...

    def take_signal(self, rssi: int) -> None: ...


# ---------------------------------------------------------------------- the tick's entries


def advance(ctl: Online) -> None:
    """ONLINE with the channel idle: send what is due. C: online_advance()."""
    s = ctl.session
    now = ctl.now_ms
    if ctl.escalations and ctl.state_age_ms() >= ctl.settings.liveness_ms:
        ctl.escalations = 0  # ONLINE has held for a while: the link is good again
    if s.pub_phase == PubPhase.WAIT_PUBACK and ms_reached(now, s.pub_deadline):
        # The PUBACK may still come late; on_puback copes with that.
        ctl.counters.timeouts += 1
        s.pub_phase = PubPhase.NONE
        publish_failed(ctl, Reason.NO_PUBACK, ctl.settings.puback_timeout_ms)
        s.probe_due = True
    if s.probe_due or ms_reached(now, s.next_probe_at):
        s.probe_due = False
        s.next_probe_at = ms_add(now, ctl.settings.liveness_ms)
        ctl.counters.probes += 1
        s.signal_due = True
        ctl.send_step(LIVENESS_PROBE, Purpose.PROBE)
        return
    if _advance_upkeep(ctl):
        return
    if s.signal_due and not ctl.stopping:
        s.signal_due = False
        ctl.send_step(SIGNAL_REFRESH, Purpose.SIGNAL)
        return
    if s.pub_phase != PubPhase.NONE:
        return
    if s.stale_pubacks:
        # A PUBACK owed to the previous message may still come. Sending now would let it be
        # taken for this message's: wait until it comes or can no longer come.
        if not ms_reached(now, s.stale_until):
            return
        s.stale_pubacks = 0
    if ctl.stopping:
        ctl.send_step(DISCONNECT, Purpose.STOP)
        return
    if s.pub_holding or s.store_holding:
        return  # backing off: after a failed attempt, or from a store that refused
    if not settle_outbox(ctl):
        return  # a write is still owed to the store
    _publish_head(ctl)


def check_deadlines(ctl: Online) -> None:
    """Every tick: backoffs end, an unanswered keepalive ends the session. C:
    online_check_deadlines()."""
    s = ctl.session
    now = ctl.now_ms
    # Backoffs end here, every tick, so a long quiet spell never wraps the 32-bit difference.
    if s.pub_holding and ms_reached(now, s.pub_hold_until):
        s.pub_holding = False
    if s.store_holding and ms_reached(now, s.store_hold_until):
        s.store_holding = False
    if (ctl.state == State.ONLINE and s.keepalive_phase == KeepalivePhase.WAIT_SUBACK
            and ms_reached(now, s.keepalive_deadline)):
        # The firmware would not tell us (no CLOSED before V838): the server has gone.
        ctl.counters.timeouts += 1
        s.keepalive_phase = KeepalivePhase.NONE
        ctl.log(LogLevel.WARNING, LogEvent.KEEPALIVE_UNANSWERED, SESSION_KEEPALIVE.urc_timeout_ms)
        ctl.raise_link(Trigger.MQTT_LOST)


def watch_deadline(ctl: Online, deadline: int | None) -> int | None:
    """The earliest of `deadline` and what acts whatever the channel does: a store write owed
    (any state), the keepalive's SUBACK. C: online_watch_deadline()."""
    s = ctl.session
    if s.ack_owed != NO_ID or s.dead_owed != NO_ID:
        deadline = ms_earliest(deadline, s.store_hold_until if s.store_holding else ctl.now_ms)
    if ctl.state == State.ONLINE and s.keepalive_phase == KeepalivePhase.WAIT_SUBACK:
        deadline = ms_earliest(deadline, s.keepalive_deadline)
    return deadline


def send_deadline(ctl: Online, deadline: int | None) -> int | None:
    """The earliest of `deadline` and when ONLINE is next due to send something (asked only
    while the channel is idle: the controller's one rule, see its `next_deadline`).
    C: online_send_deadline()."""
    s = ctl.session
    if s.store_holding:
        deadline = ms_earliest(deadline, s.store_hold_until)
    deadline = ms_earliest(deadline, s.next_probe_at)
    deadline = ms_earliest(deadline, _upkeep_deadline(ctl))
    if s.pub_holding:
        deadline = ms_earliest(deadline, s.pub_hold_until)
    if s.pub_phase == PubPhase.WAIT_PUBACK:
        deadline = ms_earliest(deadline, s.pub_deadline)
    if s.stale_pubacks:
        deadline = ms_earliest(deadline, s.stale_until)
    if ctl.settings.outbox_poll_ms:
        deadline = ms_earliest(deadline, ms_add(ctl.now_ms, ctl.settings.outbox_poll_ms))
    return deadline


def reset(ctl: Online) -> None:
    """The MQTT session started or ended: PUBACKs of the old one will never come. C:
    online_reset()."""
    s = ctl.session
    if s.attempt_of != NO_ID:
        # Counted against the message's budget like any failed attempt, so a message that
        # makes the broker drop the session cannot cause endless reconnects.
        publish_failed(ctl, Reason.SESSION_ENDED, 0)
    s.pub_phase = PubPhase.NONE
    s.pub_message = None
    s.pub_sends = 0
    s.stale_pubacks = 0
    s.probe_due = False
    s.signal_due = False
    s.silence = 0
    s.proof_at = ctl.now_ms  # a session starts (its CONNACK is the latest answer) or ends
    s.keepalive_phase = KeepalivePhase.NONE
    s.keepalive_acked = False


def module_restarted(ctl: Online) -> None:
    """A module that restarted is back in text mode, and its message cache is empty.

    C: online_module_restarted()."""
    ctl.session.module_hex = False
    ctl.session.cache_pending = False


# ---------------------------------------------------------------------- publishing


def _publish_head(ctl: Online) -> None:
    """Start or continue an attempt at the outbox head: the mode switch, then AT+MPUB.

    C: online_publish_head()."""
    s = ctl.session
    status, message = ctl.outbox.peek()
    if status == OutboxStatus.UNAVAILABLE:
        _store_unavailable(ctl, OutboxCall.PEEK)
        return
    if message is not None and s.attempt_of != message.id and not _start_attempt(ctl, message):
        return
    want_hex = message is not None and payload.payload_form(message.payload) == payload.FORM_HEX
    if want_hex != s.module_hex:
        ctl.send_step(HEX_MODE if want_hex else TEXT_MODE, Purpose.MODE)
        return
    if message is None:
        return
    n = payload.put_mpub(ctl.cmd_buf, message.topic, message.payload, message.qos, s.module_hex)
    if n < 0:  # refused at enqueue time normally: keep it, let others pass
        dead_letter(ctl, message, *_unsendable(message, n))
        return
    if s.pub_message is None or s.pub_message.id != message.id:
        s.pub_message = message
        s.pub_sends = 0
    if s.attempt_no > 1:
        ctl.counters.publish_retried += 1
    s.pub_phase = PubPhase.WAIT_OK
    ctl.counters.publish_sent += 1
    if ctl.wants(LogLevel.INFO):
        ctl.log(LogLevel.INFO, LogEvent.PUBLISH_SENT, message.id, s.attempt_no,
                ctl.settings.publish_attempts, message.topic.encode("ascii", "replace"))
    ctl.send_command(n, ctl.settings.publish_timeout_ms, Purpose.PUBLISH)


def _start_attempt(ctl: Online, message: OutboundMessage) -> bool:
    """Count a new attempt of `message` in the store before anything is sent for it; False
    when it must not be sent now. C: online_start_attempt()."""
    s = ctl.session
    if message.attempts >= ctl.settings.publish_attempts:
        dead_letter(ctl, message, s.last_failure, s.last_failure_detail)
        return False
    status, attempts = ctl.outbox.mark_attempt(message.id)
    if status != OutboxStatus.OK:
        _store_unavailable(ctl, OutboxCall.MARK_ATTEMPT)
        return False
    _store_worked(ctl)
    if attempts == 0:
        return False  # gone meanwhile (an operator's doing): look at the new head next time
    s.attempt_of = message.id
    s.attempt_no = attempts
    return True


def on_publish_response(ctl: Online, resp: AtResponse) -> None:
    """The answer to AT+MPUB. C: online_on_publish_response()."""
    s = ctl.session
    message = s.pub_message
    if ctl.state != State.ONLINE or message is None:
        return
    if resp.result != AtResult.OK:
        # Almost always the link, not the message: back off and probe; never delete it.
        s.pub_phase = PubPhase.NONE
        publish_failed(ctl, *answer_reason(resp, Reason.MPUB_UNANSWERED, Reason.MPUB_ERROR,
                                           Reason.MPUB_CME_ERROR))
        _on_timeout_or_error(ctl, resp)
        return
    if message.qos == 0:
        _acked(ctl, message)
        return
    s.pub_sends += 1
    s.pub_phase = PubPhase.WAIT_PUBACK
    s.pub_deadline = ms_add(ctl.now_ms, ctl.settings.puback_timeout_ms)


def on_mode_response(ctl: Online, resp: AtResponse) -> None:
    """The answer to AT+MQTTMODE. C: online_on_mode_response()."""
    s = ctl.session
    if resp.result == AtResult.OK:
        s.module_hex = not s.module_hex
        return
    ctl.log(LogLevel.WARNING, LogEvent.MQTT_MODE_REFUSED, resp.result, resp.cme_error,
            s.pub_failures + 1)
    if s.module_hex:
        publish_failed(ctl, *answer_reason(resp, Reason.TEXT_MODE_UNANSWERED,
                                           Reason.TEXT_MODE_ERROR, Reason.TEXT_MODE_CME_ERROR))
    else:
        publish_failed(ctl, *answer_reason(resp, Reason.HEX_MODE_UNANSWERED,
                                           Reason.HEX_MODE_ERROR, Reason.HEX_MODE_CME_ERROR))
    _on_timeout_or_error(ctl, resp)


def on_puback(ctl: Online) -> None:
    """Match a PUBACK to a send. AT+MPUB carries no packet id, so be conservative. C:
    online_on_puback()."""
    s = ctl.session
    s.proof_at = ctl.now_ms
    if s.stale_pubacks > 0:
        # Owed to a message already acknowledged, which had been sent more than once.
        s.stale_pubacks -= 1
        ctl.counters.pubacks_ignored += 1
        return
    message = s.pub_message
    if message is None or message.qos != 1 or s.pub_sends == 0:
        ctl.counters.pubacks_ignored += 1
        return
    # Any one PUBACK proves the message arrived. The other sends may still be acknowledged:
    # hold the next message back until those PUBACKs come or their deadline passes.
    s.stale_pubacks = s.pub_sends - 1
    s.stale_until = ms_add(ctl.now_ms, ctl.settings.puback_timeout_ms)
    _acked(ctl, message)


def publish_failed(ctl: Online, why: Reason, detail: int) -> None:
    """What was sent for the head failed (refused, unanswered, no PUBACK, session gone): the
    attempt ends, and nothing is started for a backoff that grows with each failure. Once the
    budget is spent there is no wait: the next look dead-letters the message. C:
    online_publish_failed()."""
    s = ctl.session
    settings = ctl.settings
    s.pub_failures += 1
    budget_left = True
    if s.attempt_of != NO_ID:
        s.last_failure = why
        s.last_failure_detail = detail
        ctl.log(LogLevel.INFO, LogEvent.PUBLISH_FAILED, s.attempt_of, s.attempt_no,
                settings.publish_attempts)
        budget_left = s.attempt_no < settings.publish_attempts
        s.attempt_of = NO_ID
    if budget_left:
        delay = backoff_ms(s.pub_failures, settings.publish_backoff_base_ms,
                           settings.publish_backoff_cap_ms, ctl.rng)
        s.pub_holding = True
        s.pub_hold_until = ms_add(ctl.now_ms, delay)


def _acked(ctl: Online, message: OutboundMessage) -> None:
    """Delivered. The store deletes it in settle_outbox; until then nothing is sent.

    C: online_acked()."""
    ctl.counters.publish_acked += 1
    ctl.log(LogLevel.INFO, LogEvent.PUBLISH_ACKED, message.id, message.qos)
    ctl.session.ack_owed = message.id
    _finish_head(ctl)


def dead_letter(ctl: Online, message: OutboundMessage, why: Reason, detail: int) -> None:
    """Give up on `message`: it moves to the dead letters (kept for an operator, who can
    re-queue it) and the rest of the queue flows on. Never a deletion. C:
    online_dead_letter()."""
    s = ctl.session
    s.dead_owed = message.id
    s.dead_reason = why
    s.dead_detail = detail
    ctl.log(LogLevel.WARNING, LogEvent.PUBLISH_DEAD, message.id, message.attempts,
            data=message.topic.encode("ascii", "replace"))
    ctl.counters.publish_dead += 1
    if s.pub_message is not None and s.pub_message.id == message.id and s.pub_sends:
        # Its OK'd sends may still be acknowledged late: keep that PUBACK from the next one.
        s.stale_pubacks = s.pub_sends
        s.stale_until = ms_add(ctl.now_ms, ctl.settings.puback_timeout_ms)
    _finish_head(ctl)
    settle_outbox(ctl)


def _finish_head(ctl: Online) -> None:
    """The head is done with (acknowledged or dead): the next message starts afresh.

    C: online_finish_head()."""
    s = ctl.session
    s.pub_phase = PubPhase.NONE
    s.pub_message = None
    s.pub_sends = 0
    s.attempt_of = NO_ID
    s.pub_failures = 0
    s.pub_holding = False
    s.last_failure = Reason.NONE
    s.last_failure_detail = 0


def _unsendable(message: OutboundMessage, refusal: int) -> tuple[Reason, int]:
    """Why AT+MPUB cannot carry a message at all (the outbox let it in after all), from
    put_mpub's refusal. C: online_unsendable()."""
    if refusal == payload.MPUB_BAD_TOPIC:
        return Reason.BAD_TOPIC, len(message.topic)
    if refusal == payload.MPUB_BAD_QOS:
        return Reason.BAD_QOS, message.qos
    return Reason.PAYLOAD_UNSENDABLE, len(message.payload)


# ---------------------------------------------------------------------- the store


def settle_outbox(ctl: Online) -> bool:
    """Do the store writes owed (a delete after PUBACK, a move to the dead letters), unless the
    store is backing off. True when nothing is owed any more. C: online_settle_outbox()."""
    s = ctl.session
    if s.ack_owed == NO_ID and s.dead_owed == NO_ID:
        return True
    if s.store_holding:
        return False
    if s.ack_owed != NO_ID:
        if ctl.outbox.ack(s.ack_owed) != OutboxStatus.OK:
            _store_unavailable(ctl, OutboxCall.ACK)
            return False
        s.ack_owed = NO_ID
        _store_worked(ctl)
    if s.dead_owed != NO_ID:
        if ctl.outbox.dead_letter(s.dead_owed, s.dead_reason, s.dead_detail) != OutboxStatus.OK:
            _store_unavailable(ctl, OutboxCall.DEAD_LETTER)
            return False
        s.dead_owed = NO_ID
        _store_worked(ctl)
    return True


def _store_unavailable(ctl: Online, call: OutboxCall) -> None:
    """The outbox refused a call (locked by another process, disk full, read-only): leave it
    alone for a backoff that grows while it keeps refusing. Nothing was changed. (Why is the
    store's to say: the host's log asks it, see `Outbox`.)

    C: online_store_unavailable()."""
    s = ctl.session
    s.store_failures += 1
    ctl.counters.store_unavailable += 1
    delay = backoff_ms(s.store_failures, STORE_BACKOFF_MS[0], STORE_BACKOFF_MS[1], ctl.rng)
    s.store_holding = True
    s.store_hold_until = ms_add(ctl.now_ms, delay)
    level = LogLevel.WARNING if s.store_failures == 1 else LogLevel.DEBUG
    ctl.log(level, LogEvent.OUTBOX_UNAVAILABLE, call, s.store_failures, delay)


def _store_worked(ctl: Online) -> None:
    """A store write went through: its backoff starts from the beginning again. (A read does
    not count: with the disk full, reads work and writes do not.) C: online_store_worked()."""
    s = ctl.session
    if s.store_failures:
        ctl.log(LogLevel.INFO, LogEvent.OUTBOX_AVAILABLE, s.store_failures)
        s.store_failures = 0


# ---------------------------------------------------------------------- upkeep


def on_probe_response(ctl: Online, resp: AtResponse) -> None:
    """The answer to AT+MQTTSTATU. C: online_on_probe_response()."""
    if ctl.state != State.ONLINE:
        return
    if resp.result == AtResult.TIMEOUT:
        _on_timeout_or_error(ctl, resp)
        return
    status = mqtt_status(resp)
    if status != 1:
        ctl.log(LogLevel.INFO, LogEvent.PROBE, status)
        ctl.raise_link(Trigger.MQTT_LOST)


def on_signal_response(ctl: Online, resp: AtResponse) -> None:
    """The answer to ONLINE's AT+CSQ: a fresh reading. Informational: a refusal says nothing
    about the session, silence counts like any. C: online_on_signal_response()."""
    if ctl.state != State.ONLINE:
        return
    if resp.result == AtResult.OK:
        ctl.take_signal(signal_of(resp))
    elif resp.result == AtResult.TIMEOUT:
        _on_timeout_or_error(ctl, resp)


def on_answered(ctl: Online) -> None:
    """Any command of ONLINE was answered: the module is not silent. C: online_on_answered()."""
    ctl.session.silence = 0


def _on_timeout_or_error(ctl: Online, resp: AtResponse) -> None:
    """An unanswered or refused command in ONLINE: probe; too much silence: reconnect.

    C: online_on_timeout_or_error()."""
    s = ctl.session
    if resp.result == AtResult.TIMEOUT:
        s.silence += 1
        if s.silence >= ctl.settings.silence_limit:
            ctl.log(LogLevel.WARNING, LogEvent.MODULE_SILENT, s.silence)
            ctl.raise_link(Trigger.MQTT_LOST)
            return
    s.probe_due = True


def cache_notice(ctl: Online, slot: int) -> None:
    """`+MSUB: <slot>`: the module kept a message after all (AT+MQTTMSGSET=1); fetch it.

    C: online_cache_notice()."""
    ctl.counters.downlinks_cached += 1
    ctl.log(LogLevel.INFO, LogEvent.DOWNLINK_CACHED, slot)
    ctl.session.cache_pending = True


def _advance_upkeep(ctl: Online) -> bool:
    """What the module does not do by itself in ONLINE: read a message it cached, and keep an
    old firmware's MQTT session alive. True when a command went out. C: online_advance_upkeep()."""
    s = ctl.session
    if ctl.stopping:
        return False
    if s.cache_pending:
        s.cache_pending = False
        ctl.send_step(CACHE_READ, Purpose.CACHE_READ)
        return True
    if not _keepalive_needed(ctl) or s.keepalive_phase != KeepalivePhase.NONE:
        return False
    if ms_diff(ctl.now_ms, s.proof_at) < _keepalive_interval_ms(ctl):
        return False
    ctl.counters.keepalives += 1
    s.keepalive_phase = KeepalivePhase.WAIT_OK
    s.keepalive_acked = False
    ctl.send_step(SESSION_KEEPALIVE, Purpose.KEEPALIVE, s.keepalive_topic)
    s.keepalive_topic = (s.keepalive_topic + 1) % len(ctl.subscriptions)
    return True


def _keepalive_needed(ctl: Online) -> bool:
    """Firmware before V838 sends no PINGREQ and reports no CLOSED (docs/FIRMWARE.md).

    C: online_keepalive_needed()."""
    return ctl.firmware_version < FIRMWARE_HEARTBEAT


def _keepalive_interval_ms(ctl: Online) -> int:
    """C: online_keepalive_interval_ms()."""
    num, den = KEEPALIVE_FRACTION
    return ctl.settings.keepalive_s * 1000 * num // den


def _upkeep_deadline(ctl: Online) -> int | None:
    """When the keepalive of an old firmware is next due (None: not needed, or under way).

    C: online_upkeep_deadline()."""
    s = ctl.session
    if (_keepalive_needed(ctl) and s.keepalive_phase == KeepalivePhase.NONE
            and not ctl.stopping):
        return ms_add(s.proof_at, _keepalive_interval_ms(ctl))
    return None


def on_keepalive_response(ctl: Online, resp: AtResponse) -> None:
    """The answer to the keepalive's AT+MSUB. C: online_on_keepalive_response()."""
    s = ctl.session
    if ctl.state != State.ONLINE or s.keepalive_phase != KeepalivePhase.WAIT_OK:
        return
    if resp.result == AtResult.OK:
        if s.keepalive_acked:
            on_suback(ctl)
            return
        s.keepalive_phase = KeepalivePhase.WAIT_SUBACK
        s.keepalive_deadline = ms_add(ctl.now_ms, SESSION_KEEPALIVE.urc_timeout_ms)
        return
    s.keepalive_phase = KeepalivePhase.NONE
    if resp.result == AtResult.TIMEOUT:
        _on_timeout_or_error(ctl, resp)
        return
    # The module will not even send SUBSCRIBE: there is no session to keep.
    ctl.log(LogLevel.WARNING, LogEvent.KEEPALIVE_REFUSED, resp.result, resp.cme_error)
    ctl.raise_link(Trigger.MQTT_LOST)


def suback_awaited(ctl: Online) -> bool:
    """A keepalive is in flight: a SUBACK is its answer. C: online_suback_awaited()."""
    return ctl.session.keepalive_phase != KeepalivePhase.NONE


def on_suback(ctl: Online) -> None:
    """The keepalive's SUBACK. C: online_on_suback()."""
    s = ctl.session
    if s.keepalive_phase == KeepalivePhase.WAIT_OK:
        s.keepalive_acked = True  # the SUBACK overtook the OK
        return
    s.keepalive_phase = KeepalivePhase.NONE
    s.proof_at = ctl.now_ms


def on_cache_read_response(ctl: Online, resp: AtResponse) -> None:
    """The cached messages came as +MSUB lines (delivered as URCs) before this final code. C:
    online_on_cache_read_response()."""
    if ctl.state == State.ONLINE and resp.result != AtResult.OK:
        ctl.log(LogLevel.WARNING, LogEvent.CACHE_READ_FAILED, resp.result, resp.cme_error)
        _on_timeout_or_error(ctl, resp)
