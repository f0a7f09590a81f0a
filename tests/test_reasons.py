"""The words for the core's codes (airfsm/host/reasons.py): one table, every code covered."""

from __future__ import annotations

import pytest

from airfsm.core.codes import AtResult, Reason, State
from airfsm.core.controller import StepError
from airfsm.core.table import MACHINE, urc_id
from airfsm.host import reasons


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_has_its_own_words(reason: Reason) -> None:
    text = reasons.describe(reason, 3)
    fallback = f"{reason.name.lower()} 3"
    assert text != fallback, f"{reason.name} has no text in airfsm.host.reasons"
    assert (text == "") == (reason == Reason.NONE)


@pytest.mark.parametrize(("reason", "detail", "text"), [
    # What the f-strings of the tick path said before the codes replaced them.
    (Reason.ERROR, -1, "ERROR"),
    (Reason.ERROR, 3, "ERROR: 3"),
    (Reason.CME_ERROR, 10, "+CME ERROR: 10 (SIM not inserted)"),
    (Reason.CME_ERROR, 99, "+CME ERROR: 99"),
    (Reason.SIM_NOT_READY, -1, "SIM not ready"),
    (Reason.SIM_NOT_READY, 14, "SIM not ready (+CME ERROR: 14 (SIM busy))"),
    (Reason.NOT_ATTACHED, 0, "not attached yet (+CGATT: 0)"),
    (Reason.HTTP_STATUS, 601, "HTTP status 601"),
    (Reason.MQTT_STATUS, 0, "mqtt status 0"),
    (Reason.BEARER_STATUS, -1, "bearer status -1"),
    (Reason.FAILING_URC, urc_id(b"CONNECT FAIL"), "CONNECT FAIL"),
    (Reason.FAILING_URC, urc_id(b"ERROR"), "ERROR"),
    (Reason.AUTH_REJECTED, 401, "auth code 401 (signature mismatch)"),
    (Reason.CREDENTIALS_REJECTED, 401,
     "auth server rejected the device: code 401 (signature mismatch)"),
    (Reason.MODULE_MUTE, 0, "the module does not answer AT"),
    (Reason.MODULE_MUTE, 3, "the module does not answer AT (not even after 3 RESET-pin pulses)"),
    (Reason.FIRMWARE_TOO_OLD, 300,
     "firmware V300 is older than V409: it cannot connect to Alibaba Cloud"),
    (Reason.MPUB_UNANSWERED, 0, "AT+MPUB unanswered"),
    (Reason.MPUB_CME_ERROR, 3, "AT+MPUB +CME ERROR: 3 (operation not allowed)"),
    (Reason.HEX_MODE_ERROR, -1, "AT+MQTTMODE=1 ERROR"),
    (Reason.TEXT_MODE_UNANSWERED, 0, "AT+MQTTMODE=0 unanswered"),
    (Reason.NO_PUBACK, 10_000, "no PUBACK within 10000 ms"),
    (Reason.SESSION_ENDED, 0, "the MQTT session ended before its PUBACK"),
])
def test_the_words_read_as_before(reason: Reason, detail: int, text: str) -> None:
    assert reasons.describe(reason, detail) == text


def test_a_step_error_names_its_state_its_step_and_for_silence_the_command() -> None:
    cpin = next(i for i, s in enumerate(MACHINE[State.ATTACH].steps) if s.name == "cpin")
    assert reasons.step_error_text(StepError(State.ATTACH, cpin, Reason.SIM_NOT_READY, 10),
                                   MACHINE) == (
        "ATTACH cpin: SIM not ready (+CME ERROR: 10 (SIM not inserted))")
    assert reasons.step_error_text(StepError(State.ATTACH, cpin, Reason.NO_ANSWER, 0),
                                   MACHINE) == "ATTACH cpin: AT+CPIN?: no answer"
    assert reasons.step_error_text(StepError(State.ATTACH, 99, Reason.ERROR, -1),
                                   MACHINE) == "ATTACH ?: ERROR"  # never raises


def test_a_dead_letter_says_its_attempts_and_the_last_failure_or_why_it_cannot_go() -> None:
    assert reasons.dead_letter_text(5, Reason.NO_PUBACK, 10_000) == (
        "5 attempts without PUBACK (last: no PUBACK within 10000 ms)")
    assert reasons.dead_letter_text(2, Reason.NONE, 0) == "2 attempts without PUBACK"
    assert reasons.dead_letter_text(0, Reason.BAD_TOPIC, 200).startswith("bad topic: 200 ")
    assert "qos" in reasons.dead_letter_text(0, Reason.BAD_QOS, 2)


@pytest.mark.parametrize(("result", "code", "text"), [
    (AtResult.TIMEOUT, -1, "unanswered"), (AtResult.ERROR, -1, "ERROR"),
    (AtResult.ERROR, 7, "ERROR: 7"),
    (AtResult.CME_ERROR, 767, "+CME ERROR: 767 (operation failed)"),
])
def test_answers_in_logs(result: AtResult, code: int, text: str) -> None:
    assert reasons.answer_text(result, code) == text
