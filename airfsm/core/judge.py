"""What an answer means for the step that asked. C twin: `port/c/core/judge.c`.

Each judgement is three small numbers: an Outcome (what the controller does next), a Reason and
a bounded detail (what an operator is told, rendered into words at the edge by
`airfsm.host.reasons`). Nothing here builds text. What a step learns on the way (the firmware,
the IMEI and ICCID, the signal, the operator and registration, the IP address, the HTTP
status, the credentials) is written into the controller, as the C twin writes into its struct.
The informational checks (INFORMATIONAL) record what an answer says and always pass: a module
without the command, or a SIM that hides its ICCID, must not keep the link down.

Answers are read where the AT channel left them: info lines are spans of the response's arena,
numbers and fields are read in place by `airfsm.core.textparse`. Which line and which field each
check reads is data, `ANSWERS` (the generated C table exports it as `airfsm_check_answers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from airfsm.core import aliyun
from airfsm.core.at import HTTPREAD_HEADER, AtResponse
from airfsm.core.codes import AtResult, Check, FailReason, Outcome, Reason, Trigger, UrcKind
from airfsm.core.settings import INFO_TEXT_MAX
from airfsm.core.table import MIN_FIRMWARE, URCS, Step
from airfsm.core.textparse import field_span, field_uint, is_digit, parse_uint


class Learner(Protocol):
    """What the judge writes into the controller: what the steps learn, why FAILED, the
    credentials, a secret for the log hook (C: these fields and functions of airfsm_t; the
    Controller is one, and the judge needs no more of it)."""

    firmware: str
    firmware_version: int
    imei: str
    iccid: str
    operator: str
    access_technology: int
    registration: int
    ip: str
    http_status: int
    auth_code: int

    def take_signal(self, rssi: int) -> None: ...

    def set_failure(self, reason: FailReason, cause: Reason, detail: int) -> None: ...

    def take_credentials(self, reply: aliyun.AuthReply) -> None: ...

    def take_device_secret(self, secret: str) -> None: ...

    def emit_secret(self, secret: bytes, *, lasting: bool = False) -> None: ...


Judgement = tuple[Outcome, Reason, int]
PASSED: Judgement = (Outcome.PASS, Reason.NONE, 0)

_QUOTE = 0x22
_SP = 0x20


@dataclass(frozen=True)
class CheckAnswer:
    """Which line of an answer a check reads, and what in it. C: airfsm_check_answer_t."""

    prefix: bytes = b""  # the line judged (b"": none, or any line)
    field: int = -1  # its comma-separated field read as a number (textparse.field_uint), or -1
    pass_value: int = -1  # the number that passes (-1: any number answered passes)
    token: bytes = b""  # SIM_READY: the line must contain it; VERSION: the number follows it
    text_field: int = -1  # a field kept as text (BEARER_QUERY: the IP address), or -1
    in_urc: bool = False  # the line is the step's URC, not an info line of the response


ANSWERS: dict[Check, CheckAnswer] = {
    Check.OK: CheckAnswer(),
    Check.ANY: CheckAnswer(),
    Check.VERSION: CheckAnswer(token=b"_V"),  # AirM2M_Air72xUy_V409_LTE_AT
    Check.SIM_READY: CheckAnswer(b"+CPIN:", token=b"READY"),
    Check.SIGNAL: CheckAnswer(b"+CSQ:", field=0),  # +CSQ: <rssi>,<ber>
    Check.ATTACHED: CheckAnswer(b"+CGATT", field=0, pass_value=1),  # +CGATT: 1
    Check.BEARER_OPEN: CheckAnswer(),
    # +SAPBR: 1,<status>,"<ip>": status 1 is open, 0 still connecting (NOT_YET)
    Check.BEARER_QUERY: CheckAnswer(b"+SAPBR", field=1, pass_value=1, text_field=2),
    # +HTTPACTION: 1,<status>,<length>, a URC after the OK
    Check.HTTP_STATUS: CheckAnswer(b"+HTTPACTION:", field=1, pass_value=200, in_urc=True),
    Check.AUTH_REPLY: CheckAnswer(HTTPREAD_HEADER),  # its data: the reply (aliyun's scan)
    Check.REGISTER_REPLY: CheckAnswer(HTTPREAD_HEADER),  # its data: the register reply
    Check.MQTT_STATUS: CheckAnswer(b"+MQTTSTATU", field=0, pass_value=1),  # +MQTTSTATU :1
    # The first info line, its text after a `+NAME:` head if it has one (field_span): a bare
    # `862991419835241`, `+CGSN: 862991419835241`, `+ICCID: 89860...` alike.
    Check.IMEI: CheckAnswer(text_field=0),
    Check.ICCID: CheckAnswer(text_field=0),
    # +COPS: 0,0,"CHINA MOBILE",7 (the operator, the access technology); +COPS: 0 unregistered
    Check.OPERATOR: CheckAnswer(b"+COPS", field=3, text_field=2),
    Check.REGISTRATION: CheckAnswer(b"+CEREG", field=1),  # +CEREG: <n>,<stat>
}
INFORMATIONAL = frozenset({Check.IMEI, Check.ICCID, Check.OPERATOR, Check.REGISTRATION})


def answer_reason(resp: AtResponse, unanswered: Reason, error: Reason,
                  cme_error: Reason) -> tuple[Reason, int]:
    """The reason for a command that did not answer OK, chosen from the three given (what
    failed: a step, AT+MPUB, a mode switch), and the number in the answer (-1: none).

    C: judge_answer_reason()."""
    if resp.result == AtResult.TIMEOUT:
        return unanswered, 0
    if resp.result == AtResult.CME_ERROR:
        return cme_error, resp.cme_error
    return error, resp.cme_error


def judge_answer(ctl: Learner, step: Step, resp: AtResponse) -> Judgement:
    """The `switch (step->check)` of the C twin: what this final answer means for this step.

    C: judge_answer()."""
    check = step.check
    if check == Check.ANY:
        return PASSED  # clean-up: whatever came, even nothing
    if check in INFORMATIONAL:
        if resp.result == AtResult.OK:
            _learn(ctl, check, resp)
        return PASSED
    if resp.result == AtResult.TIMEOUT:
        return Outcome.FAIL, Reason.NO_ANSWER, 0
    if check == Check.BEARER_OPEN:
        # ERROR / +CME ERROR: 3 usually means "already open": the query step decides.
        return PASSED
    if resp.result != AtResult.OK:
        if check == Check.SIM_READY and resp.result == AtResult.CME_ERROR:
            return Outcome.NOT_YET, Reason.SIM_NOT_READY, resp.cme_error
        reason, detail = answer_reason(resp, Reason.NO_ANSWER, Reason.ERROR, Reason.CME_ERROR)
        return Outcome.FAIL, reason, detail
    if check == Check.OK:
        return PASSED
    if check == Check.VERSION:
        return _judge_version(ctl, resp)
    if check == Check.SIM_READY:
        answer = ANSWERS[check]
        i = resp.find_line(answer.prefix)
        if i >= 0 and resp.arena.find(answer.token, resp.line_start[i], resp.line_end(i)) >= 0:
            return PASSED
        return Outcome.NOT_YET, Reason.SIM_NOT_READY, -1
    if check == Check.SIGNAL:
        ctl.take_signal(signal_of(resp))
        return PASSED
    if check == Check.ATTACHED:
        if _answer_uint(resp, check) == ANSWERS[check].pass_value:
            return PASSED
        return Outcome.NOT_YET, Reason.NOT_ATTACHED, 0
    if check == Check.BEARER_QUERY:
        return _judge_bearer(ctl, resp)
    if check == Check.HTTP_STATUS:
        return PASSED  # the status comes in the +HTTPACTION URC
    if check == Check.AUTH_REPLY:
        if resp.truncated:
            return Outcome.FAIL, Reason.AUTH_REPLY_TRUNCATED, 0
        return _judge_auth(ctl, resp)
    if check == Check.REGISTER_REPLY:
        if resp.truncated:
            return Outcome.FAIL, Reason.AUTH_REPLY_TRUNCATED, 0
        return _judge_register(ctl, resp)
    if check == Check.MQTT_STATUS:
        status = mqtt_status(resp)
        if status == ANSWERS[check].pass_value:
            return PASSED
        return Outcome.FAIL, Reason.MQTT_STATUS, status
    return Outcome.FAIL, Reason.UNKNOWN_CHECK, int(check)


def judge_urc(ctl: Learner, step: Step, urc: int, line: bytes) -> Judgement:
    """A URC the step waits for (or fails on) came. C: judge_urc()."""
    if urc in step.urc_fail_ids:
        # A bare final code after the OK is the server's no (AT+MCONNECT: the CONNECT was
        # refused): the credentials' fault, where the step says what fetches new ones.
        refused = URCS[urc].kind == UrcKind.FINAL and step.on_fail == Trigger.TOKEN_REJECTED
        return (Outcome.REJECTED if refused else Outcome.FAIL), Reason.FAILING_URC, urc
    if step.check == Check.HTTP_STATUS:
        # +HTTPACTION: 1,<status>,<len>   (also without the space)
        answer = ANSWERS[Check.HTTP_STATUS]
        ctl.http_status = max(field_uint(line, answer.field), 0)
        if ctl.http_status == answer.pass_value:
            return PASSED
        return Outcome.FAIL, Reason.HTTP_STATUS, ctl.http_status
    return PASSED


def signal_of(resp: AtResponse) -> int:
    """The rssi of an AT+CSQ answer (ATTACH's step and ONLINE's refresh): 0-31, 99 unknown
    (also when the answer holds none). C: judge_signal()."""
    value = _answer_uint(resp, Check.SIGNAL)
    return value if value >= 0 else 99


def mqtt_status(resp: AtResponse) -> int:
    """`+MQTTSTATU :<s>` of an AT+MQTTSTATU answer (the step and the probe): 1 is connected;
    -1 when the answer holds no status. C: judge_mqtt_status()."""
    return _answer_uint(resp, Check.MQTT_STATUS)


def firmware_version(buf: bytes | bytearray, start: int, end: int) -> int:
    """The number after `_V` in `AirM2M_Air72xUy_V409_LTE_AT` (bare or `+CGMR: "..."`) in
    buf[start:end]; -1 when there is none. C: judge_firmware_version()."""
    token = ANSWERS[Check.VERSION].token
    at = buf.find(token, start, end)
    while at >= 0:
        digits = at + len(token)
        stop = digits
        while stop < end and is_digit(buf[stop]):
            stop += 1
        version = parse_uint(buf, digits, stop)  # -1 for no digits, or too many
        if version >= 0:
            return version
        at = buf.find(token, at + len(token), end)
    return -1


def _answer_uint(resp: AtResponse, check: Check) -> int:
    """The number the check reads: its field of the first info line with its prefix (-1:
    none). C: judge_answer_uint()."""
    answer = ANSWERS[check]
    i = resp.find_line(answer.prefix)
    if i < 0:
        return -1
    return field_uint(resp.arena, answer.field, resp.line_start[i], resp.line_end(i))


def _learn(ctl: Learner, check: Check, resp: AtResponse) -> None:
    """What an informational answer says, into the controller. C: judge_learn()."""
    answer = ANSWERS[check]
    i = resp.find_line(answer.prefix)
    if check == Check.REGISTRATION:
        ctl.registration = -1 if i < 0 else field_uint(
            resp.arena, answer.field, resp.line_start[i], resp.line_end(i))
        return
    text = "" if i < 0 else info_text(resp.arena, answer.text_field, resp.line_start[i],
                                      resp.line_end(i))
    if check == Check.IMEI:
        ctl.imei = text if _alphanumeric(text) else ""
    elif check == Check.ICCID:
        ctl.iccid = text if _alphanumeric(text) else ""
    else:  # OPERATOR: `+COPS: 0` alone says the module is on no network now
        ctl.operator = text
        ctl.access_technology = -1 if i < 0 else field_uint(
            resp.arena, answer.field, resp.line_start[i], resp.line_end(i))


def info_text(buf: bytes | bytearray, index: int, start: int, end: int) -> str:
    """Field `index` of buf[start:end] as text, without its quotes, at most INFO_TEXT_MAX
    characters; "" when absent or not printable ASCII. C: judge_info_text()."""
    first, stop = field_span(buf, index, start, end)
    while first < stop and buf[first] == _QUOTE:
        first += 1
    while stop > first and buf[stop - 1] == _QUOTE:
        stop -= 1
    stop = min(stop, first + INFO_TEXT_MAX)
    for k in range(first, stop):
        if not _SP <= buf[k] < 0x7F:
            return ""
    return bytes(buf[first:stop]).decode("ascii")


def _alphanumeric(text: str) -> bool:
    """An IMEI or ICCID: digits (an ICCID may end in hex letters). C: judge_alphanumeric()."""
    return text.isascii() and text.isalnum()


def _judge_version(ctl: Learner, resp: AtResponse) -> Judgement:
    """C: judge_version()."""
    arena = resp.arena
    for i in range(resp.line_count):
        start, end = resp.line_start[i], resp.line_end(i)
        version = firmware_version(arena, start, end)
        if version < 0:
            continue
        # What status shows: the line without `+CGMR:` and the quotes around it.
        if arena.startswith(b"+CGMR:", start, end):
            start += len(b"+CGMR:")
            while start < end and arena[start] in (_SP, _QUOTE):
                start += 1
            while end > start and arena[end - 1] in (_SP, _QUOTE):
                end -= 1
        ctl.firmware = arena[start:end].decode("latin-1")
        ctl.firmware_version = version
        if version < MIN_FIRMWARE:
            ctl.set_failure(FailReason.FIRMWARE, Reason.FIRMWARE_TOO_OLD, version)
            return Outcome.FATAL, Reason.FIRMWARE_TOO_OLD, version
        return PASSED
    return Outcome.FAIL, Reason.NO_VERSION, 0


def _judge_bearer(ctl: Learner, resp: AtResponse) -> Judgement:
    """C: judge_bearer()."""
    answer = ANSWERS[Check.BEARER_QUERY]
    i = resp.find_line(answer.prefix)
    if i < 0:
        return Outcome.FAIL, Reason.BEARER_STATUS, -1
    arena, start, end = resp.arena, resp.line_start[i], resp.line_end(i)
    status = field_uint(arena, answer.field, start, end)
    if status == answer.pass_value:
        ip_start, ip_end = field_span(arena, answer.text_field, start, end)
        while ip_start < ip_end and arena[ip_start] == _QUOTE:
            ip_start += 1
        while ip_end > ip_start and arena[ip_end - 1] == _QUOTE:
            ip_end -= 1
        ctl.ip = arena[ip_start:ip_end].decode("latin-1")
        return PASSED
    if status == 0:
        return Outcome.NOT_YET, Reason.BEARER_CONNECTING, 0
    return Outcome.FAIL, Reason.BEARER_STATUS, status


def _judge_auth(ctl: Learner, resp: AtResponse) -> Judgement:
    """C: judge_auth()."""
    arena = resp.arena
    reply = aliyun.parse_auth_reply(
        bytes(arena[resp.data_start:resp.data_start + resp.data_length]))
    ctl.auth_code = reply.code
    if reply.iot_token:
        ctl.emit_secret(reply.iot_token.encode("ascii", "replace"))
    if not reply.ok:
        # A reply we could not parse is a transport problem, a code is the server's verdict.
        if reply.code in (aliyun.AUTH_UNPARSEABLE, aliyun.AUTH_OK):
            return Outcome.FAIL, Reason.AUTH_REPLY_UNUSABLE, reply.code
        return Outcome.REJECTED, Reason.AUTH_REJECTED, reply.code
    ctl.take_credentials(reply)
    return PASSED


def _judge_register(ctl: Learner, resp: AtResponse) -> Judgement:
    """The /auth/register/device reply: the DeviceSecret (a secret before anything else is
    done with it), or the server's refusal. C: judge_register()."""
    arena = resp.arena
    reply = aliyun.parse_register_reply(
        bytes(arena[resp.data_start:resp.data_start + resp.data_length]))
    ctl.auth_code = reply.code
    if reply.device_secret:
        ctl.emit_secret(reply.device_secret.encode("ascii", "replace"), lasting=True)
    if not reply.ok:
        if reply.code in (aliyun.AUTH_UNPARSEABLE, aliyun.AUTH_OK):
            return Outcome.FAIL, Reason.REGISTER_REPLY_UNUSABLE, reply.code
        return Outcome.REJECTED, Reason.REGISTER_REJECTED, reply.code
    ctl.take_device_secret(reply.device_secret)
    return PASSED
