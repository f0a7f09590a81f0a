"""Where the core's codes become words: one table of texts for status files, CLI messages, logs
and dead letters.

The tick path records why something failed as a `Reason` and one bounded number (the `detail`);
this module is the only place that turns them into text, so an operator reads the same words in
`airfsm status`, in a log line, in a dead letter and in `airfsm connect`'s error. An MCU port has
no need of it: its log hook prints the codes, or the generated name tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airfsm.core import aliyun, payload
from airfsm.core.codes import (
    AtResult,
    FailReason,
    LogEvent,
    OutboxCall,
    Outcome,
    Reason,
    State,
    Trigger,
)

# The store imports this module for the words of a dead letter, and so does `airfsm publish`,
# which must start fast: the AT channel and the machine table (core.at, core.table, a third of
# its start-up) are imported only by the functions that read them, which the store never calls.
if TYPE_CHECKING:
    # Only read here, never imported for it: the words of a dead letter must not load the
    # controller.
    from airfsm.core.controller import Controller
    from airfsm.core.table import StateSpec

# A step failure as the controller keeps it (`Controller.last_error`, a StepError): the state,
# the step's index in its script, the Reason and its detail.
StepFailure = tuple[State, int, Reason, int]

# The +CME ERROR codes this dialect uses (PROTOCOL.md), for messages an operator can act on.
CME_ERRORS = {3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
              14: "SIM busy", 30: "no network service", 50: "execution failed",
              53: "invalid parameters", 767: "operation failed"}

# 3GPP TS 27.007 +CEREG <stat> and +COPS <AcT>, in the words ModemManager uses (`mmcli -m 0`).
REGISTRATION_STATES = {0: "idle", 1: "home", 2: "searching", 3: "denied", 4: "unknown",
                       5: "roaming", 6: "home-sms-only", 7: "roaming-sms-only",
                       8: "emergency-only", 9: "home-csfb-not-preferred",
                       10: "roaming-csfb-not-preferred"}
ACCESS_TECHNOLOGIES = {0: "gsm", 1: "gsm-compact", 2: "umts", 3: "edge", 4: "hsdpa", 5: "hsupa",
                       6: "hspa", 7: "lte", 8: "hspa-plus", 9: "lte-nb-iot"}

# Reasons whose text does not depend on the detail, or only appends it.
_PLAIN: dict[Reason, str] = {
    Reason.NONE: "",
    Reason.NO_ANSWER: "no answer",
    Reason.NO_VERSION: "no version in the AT+CGMR answer",
    Reason.NOT_ATTACHED: "not attached yet (+CGATT: 0)",
    Reason.BEARER_CONNECTING: "bearer connecting",
    Reason.BEARER_STATUS: "bearer status {}",
    Reason.HTTP_STATUS: "HTTP status {}",
    Reason.AUTH_REPLY_TRUNCATED: "auth reply truncated (bytes lost on the UART)",
    Reason.MQTT_STATUS: "mqtt status {}",
    Reason.UNKNOWN_CHECK: "unknown check {}",
    Reason.INTERNAL_ERROR: "internal error (a bug: the log has the details)",
    Reason.NO_PUBACK: "no PUBACK within {} ms",
    Reason.SESSION_ENDED: "the MQTT session ended before its PUBACK",
    Reason.BAD_QOS: "qos must be 0 or 1, got {}",
}
# The commands of the publish reasons, each with its three answers (no answer, ERROR, +CME).
_PUBLISH_COMMANDS: dict[Reason, str] = {
    Reason.MPUB_UNANSWERED: "AT+MPUB", Reason.MPUB_ERROR: "AT+MPUB",
    Reason.MPUB_CME_ERROR: "AT+MPUB",
    Reason.HEX_MODE_UNANSWERED: "AT+MQTTMODE=1", Reason.HEX_MODE_ERROR: "AT+MQTTMODE=1",
    Reason.HEX_MODE_CME_ERROR: "AT+MQTTMODE=1",
    Reason.TEXT_MODE_UNANSWERED: "AT+MQTTMODE=0", Reason.TEXT_MODE_ERROR: "AT+MQTTMODE=0",
    Reason.TEXT_MODE_CME_ERROR: "AT+MQTTMODE=0",
}
_UNANSWERED = {Reason.MPUB_UNANSWERED, Reason.HEX_MODE_UNANSWERED, Reason.TEXT_MODE_UNANSWERED}
_CME = {Reason.MPUB_CME_ERROR, Reason.HEX_MODE_CME_ERROR, Reason.TEXT_MODE_CME_ERROR}
# A message that can never be sent: its dead letter says why, not how many attempts it had.
UNSENDABLE = frozenset({Reason.BAD_TOPIC, Reason.BAD_QOS, Reason.PAYLOAD_UNSENDABLE})


def cme_text(code: int) -> str:
    """`+CME ERROR: 10 (SIM not inserted)`."""
    if code < 0:
        return "+CME ERROR"
    meaning = CME_ERRORS.get(code)
    return f"+CME ERROR: {code}" + (f" ({meaning})" if meaning else "")


def error_text(code: int) -> str:
    """`ERROR`, or `ERROR: 3` (how the HTTP commands refuse)."""
    return "ERROR" if code < 0 else f"ERROR: {code}"


def answer_text(result: int, code: int) -> str:
    """An AT answer that was not OK, as the module said it (`unanswered` for none)."""
    if result == AtResult.TIMEOUT:
        return "unanswered"
    if result == AtResult.CME_ERROR:
        return cme_text(code)
    if result == AtResult.ERROR:
        return error_text(code)
    return AtResult(result).name if 0 <= result < len(AtResult) else str(result)


def final_line(result: int, code: int) -> str:
    """A final code (or the prompt) as the module sent it: `OK`, `ERROR: 3`, `+CME ERROR: 10`."""
    if result == AtResult.OK:
        return "OK"
    if result == AtResult.PROMPT:
        from airfsm.core.at import PROMPT_LINES

        return PROMPT_LINES[0].decode("ascii")
    if result == AtResult.CME_ERROR:
        return "+CME ERROR" if code < 0 else f"+CME ERROR: {code}"
    return error_text(code)


def describe(reason: Reason, detail: int) -> str:
    """The words for a (reason, detail) pair."""
    if reason in _PLAIN:
        return _PLAIN[reason].format(detail)
    if reason == Reason.ERROR:
        return error_text(detail)
    if reason == Reason.CME_ERROR:
        return cme_text(detail)
    if reason == Reason.URC_TIMEOUT:
        return "wanted URC did not come" + (f" within {detail} ms" if detail > 0 else "")
    if reason == Reason.FAILING_URC:
        from airfsm.core.table import URCS

        return URCS[detail].prefix.decode("latin-1") if 0 <= detail < len(URCS) else "a URC"
    if reason == Reason.FIRMWARE_TOO_OLD:
        from airfsm.core.table import MIN_FIRMWARE

        return (f"firmware V{detail} is older than V{MIN_FIRMWARE}: it cannot connect to "
                "Alibaba Cloud")
    if reason == Reason.SIM_NOT_READY:
        return "SIM not ready" + (f" ({cme_text(detail)})" if detail >= 0 else "")
    if reason == Reason.AUTH_REPLY_UNUSABLE:
        what = ("code 200 without a usable iotId and iotToken" if detail == aliyun.AUTH_OK
                else "not the JSON reply expected")
        return f"auth reply unusable: {what}"
    if reason == Reason.AUTH_REJECTED:
        return f"auth code {detail} ({aliyun.describe_auth_code(detail)})"
    if reason == Reason.CREDENTIALS_REJECTED:
        return (f"auth server rejected the device: code {detail} "
                f"({aliyun.describe_auth_code(detail)})")
    if reason == Reason.REGISTER_REPLY_UNUSABLE:
        what = ("code 200 without a usable deviceSecret" if detail == aliyun.AUTH_OK
                else "not the JSON reply expected")
        return f"register reply unusable: {what}"
    if reason == Reason.REGISTER_REJECTED:
        return f"register code {detail} ({aliyun.describe_auth_code(detail)})"
    if reason == Reason.REGISTRATION_REFUSED:
        return (f"register server refused the device: code {detail} "
                f"({aliyun.describe_auth_code(detail)}); a device registers only once: if it "
                "did before, its stored DeviceSecret is gone - reset the device in the console "
                "(ResetThing) or configure its device_secret")
    if reason == Reason.SIGN_REFUSED:
        return (f"the broker refused the direct MQTT sign {detail} times (wrong DeviceSecret, "
                "or a timestamp outside the server's window: check the clock)")
    if reason == Reason.MODULE_MUTE:
        return "the module does not answer AT" + (
            f" (not even after {detail} RESET-pin pulses)" if detail else "")
    if reason in _PUBLISH_COMMANDS:
        command = _PUBLISH_COMMANDS[reason]
        if reason in _UNANSWERED:
            return f"{command} unanswered"
        return f"{command} {cme_text(detail) if reason in _CME else error_text(detail)}"
    if reason == Reason.BAD_TOPIC:
        return (f"bad topic: {detail} characters, or a character AT+MPUB cannot carry (printable "
                f"ASCII without quotes, backslashes or wildcards, at most {payload.MAX_TOPIC})")
    if reason == Reason.PAYLOAD_UNSENDABLE:
        return (f"payload of {detail} bytes cannot be sent (at most {payload.MAX_PAYLOAD_TEXT} "
                f"escaped bytes as text, {payload.MAX_PAYLOAD_HEX_RAW} in hex mode)")
    return f"{reason.name.lower()} {detail}"


def step_why(error: StepFailure, table: tuple[StateSpec, ...]) -> str:
    """Why the step failed: `SIM not ready (+CME ERROR: 10 (SIM not inserted))`."""
    state, index, reason, detail = error
    steps = table[state].steps if 0 <= state < len(table) else ()
    text = describe(reason, detail)
    if reason == Reason.NO_ANSWER and 0 <= index < len(steps):
        # the command the module left unanswered
        return f"{steps[index].command.split('=')[0]}: {text}"
    return text


def step_error_text(error: StepFailure, table: tuple[StateSpec, ...]) -> str:
    """`ATTACH cpin: SIM not ready (+CME ERROR: 10 (SIM not inserted))`."""
    state, index = error[0], error[1]
    steps = table[state].steps if 0 <= state < len(table) else ()
    name = steps[index].name if 0 <= index < len(steps) else "?"
    return f"{State(state).name} {name}: {step_why(error, table)}"


def last_error_text(controller: Controller) -> str | None:
    """The controller's latest step failure in words; None when there was none."""
    error = controller.last_error
    return None if error is None else step_error_text(error, controller.table)


def fail_text(controller: Controller) -> str | None:
    """Why the controller is in FAILED, in words; None when it is not (or has no cause)."""
    if controller.fail_reason == FailReason.NONE or controller.fail_cause == Reason.NONE:
        return None
    return describe(controller.fail_cause, controller.fail_cause_detail)


def dead_letter_text(attempts: int, reason: Reason, detail: int) -> str:
    """Why a message was given up: what made it unsendable, or its attempts and the last
    failure (`5 attempts without PUBACK (last: no PUBACK within 10000 ms)`)."""
    if reason in UNSENDABLE:
        return describe(reason, detail)
    last = f" (last: {describe(reason, detail)})" if reason != Reason.NONE else ""
    return f"{attempts} attempts without PUBACK{last}"


def _code_word(words: dict[int, str], code: int) -> str | None:
    """The word for a 27.007 code; None for -1 (not known), the number for one not listed."""
    if code < 0:
        return None
    return words.get(code, str(code))


def status(controller: Controller) -> dict[str, Any]:
    """A snapshot of the controller for status files and summaries (no secret is in here).

    What the module says of itself and its network is null until read: `imei`, `iccid`
    (VERSION_CHECK, ATTACH), `operator`, `registration`, `access_technology` (ATTACH, once
    attached), `rssi` (ATTACH, then after each liveness probe in ONLINE) with `signal_age_ms`,
    how long ago it was read (saturating at ~24.8 days)."""
    channel = controller.channel
    signal_age = controller.signal_age_ms()
    return {
        "state": controller.state.name,
        "since_ms": controller.state_age_ms(),  # saturates at ~24.8 days
        "attempt": controller.attempt,
        "step": controller.step_name(),
        "step_index": controller.runner.index,
        "phase": controller.runner.phase.name,
        "polls": controller.runner.polls,
        "resume_at_ms": controller.runner.resume_at,
        "last_trigger": controller.last_trigger,
        "last_error": last_error_text(controller),
        "fail_reason": controller.fail_reason.name if controller.fail_reason else None,
        "fail_detail": fail_text(controller),
        "firmware": controller.firmware or None,
        "imei": controller.imei or None,
        "iccid": controller.iccid or None,
        "operator": controller.operator or None,
        "registration": _code_word(REGISTRATION_STATES, controller.registration),
        "access_technology": _code_word(ACCESS_TECHNOLOGIES, controller.access_technology),
        "rssi": controller.rssi,
        "signal_age_ms": signal_age if signal_age >= 0 else None,
        "ip": controller.ip or None,
        "port_lost": controller.port_lost,
        "counters": controller.counters.as_dict(),
        "at": {"lines_dropped": channel.lines_dropped, "stray_lines": channel.stray_lines,
               "urcs": channel.urcs, "data_dropped": channel.data_dropped,
               "payloads_truncated": channel.payloads_truncated},
    }


# ---------------------------------------------------------------------- log events


def _text(data: bytes | bytearray | memoryview) -> str:
    return bytes(data).decode("latin-1")


def _step_left(controller: Controller, source: int) -> str | None:
    """The step a state was in when it was left (the runner is still there)."""
    if source == State.ONLINE:
        return None
    steps = controller.table[source].steps
    index = controller.runner.index
    return steps[index].name if index < len(steps) else None


def event_fields(controller: Controller, event: LogEvent, a: int, b: int, c: int,
                 data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The keys of the structlog event a core LogEvent becomes (the words of its codes)."""
    state = controller.state.name
    s = controller.session
    if event == LogEvent.STATE:
        source, trigger = State(a), Trigger(b)
        fields: dict[str, Any] = {"from": source.name, "to": state,
                                  "trigger": trigger.name.lower(),
                                  "attempt": controller.attempt, "elapsed_ms": c}
        left = _step_left(controller, source) if trigger != Trigger.DONE else None
        if left:
            fields["step"] = left  # where the state was when it was left
        if controller.state == State.FAILED:
            fields["reason"] = fail_text(controller) or ""
        return fields
    if event == LogEvent.STEP:
        error = (controller.state, controller.runner.index, Reason(b), c)
        return {"state": state, "step": controller.step_name(),
                "outcome": Outcome(a).name.lower(), "why": step_why(error, controller.table)}
    if event in (LogEvent.AT_TX, LogEvent.AT_TIMEOUT):
        return {"command": _text(data), "state": state}
    if event == LogEvent.AT_RX:
        return {"line": _text(data) if len(data) else final_line(a, b), "state": state}
    if event in (LogEvent.URC, LogEvent.LINK_URC):
        return {"urc": _text(data), "state": state}
    if event == LogEvent.MSUB_UNPARSED:
        return {"urc": _text(data)}
    if event == LogEvent.DOWNLINK_CACHED:
        return {"slot": a, "state": state}
    if event == LogEvent.PAYLOAD_TRUNCATED:
        from airfsm.core.at import msub_topic

        header = bytes(data)
        downlink = header.startswith(b"+MSUB")
        return {"what": "downlink" if downlink else "http body",
                "topic": msub_topic(header).decode("utf-8", "replace") or None,
                "declared": a, "received": b, "state": state}
    if event == LogEvent.INBOUND:
        return {"topic": bytes(data).decode("utf-8", "replace"), "bytes": a}
    if event == LogEvent.PROBE:
        return {"mqtt_status": a}
    if event == LogEvent.MODULE_SILENT:
        return {"unanswered": a}
    if event in (LogEvent.KEEPALIVE_REFUSED, LogEvent.CACHE_READ_FAILED):
        return {"answer": answer_text(a, b)}
    if event == LogEvent.KEEPALIVE_UNANSWERED:
        return {"firmware": controller.firmware or None, "after_ms": a}
    if event == LogEvent.PUBLISH_FAILED:
        return {"id": a, "attempt": b, "of": c,
                "reason": describe(s.last_failure, s.last_failure_detail)}
    if event == LogEvent.PUBLISH_SENT:
        message = s.pub_message
        return {"id": a, "attempt": b, "of": c, "topic": bytes(data).decode("utf-8", "replace"),
                "qos": message.qos if message is not None and message.id == a else None}
    if event == LogEvent.PUBLISH_ACKED:
        return {"id": a, "qos": b, "by": "PUBACK" if b else "OK"}
    if event == LogEvent.PUBLISH_DEAD:
        return {"id": a, "topic": bytes(data).decode("utf-8", "replace"), "attempts": b,
                "reason": dead_letter_text(b, s.dead_reason, s.dead_detail)}
    if event == LogEvent.MQTT_MODE_REFUSED:
        return {"command": "AT+MQTTMODE=0" if s.module_hex else "AT+MQTTMODE=1",
                "answer": answer_text(a, b), "id": s.attempt_of or None, "failures": c}
    if event == LogEvent.OUTBOX_UNAVAILABLE:
        # The core has no words for why (C: a code); a host store keeps them in `last_error`.
        return {"operation": OutboxCall(a).name.lower(),
                "error": getattr(controller.outbox, "last_error", "") or None, "failures": b,
                "retry_in_ms": c}
    if event == LogEvent.OUTBOX_AVAILABLE:
        return {"after_failures": a}
    if event == LogEvent.PORT_LOST:
        return {"reason": getattr(controller.port, "lost_reason", "") or None, "state": state}
    if event == LogEvent.HARDWARE_RESET:
        return {"state": state, "reset": a, "of": b}
    if event == LogEvent.INTERNAL_ERROR:
        return {"error": bytes(data).decode("utf-8", "replace"), "state": state}
    if event == LogEvent.REGISTERED:  # never the secret: only whether the host kept it
        fields = {"product_key": controller.settings.identity.product_key,
                  "device_name": controller.settings.identity.device_name, "stored": bool(a)}
        if not a:
            fields["error"] = bytes(data).decode("utf-8", "replace")
        return fields
    # HARDWARE_RESET_FAILED, ON_STATE_FAILED, ON_MESSAGE_FAILED: what the callback raised
    return {"error": bytes(data).decode("utf-8", "replace")}
