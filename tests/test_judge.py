"""The per-check switch (airfsm/core/judge.py): codes out, nothing worded."""

from __future__ import annotations

import pytest

from airfsm.core.at import AtResponse
from airfsm.core.codes import AtResult, Outcome, Reason, State
from airfsm.core.judge import answer_reason, firmware_version, judge_answer
from airfsm.core.table import MACHINE, Step
from airfsm.host.serial import memory_pair
from tests.harness import seed_settings


def response(result: AtResult, *lines: bytes, cme: int = -1) -> AtResponse:
    resp = AtResponse(bytearray(256))
    resp.clear(b"AT+X")
    resp.result, resp.cme_error = result, cme
    at = 7  # spans anywhere in the arena
    for line in lines:
        resp.arena[at:at + len(line)] = line
        resp.line_start[resp.line_count] = at
        resp.line_length[resp.line_count] = len(line)
        resp.line_count += 1
        at += len(line) + 3
    return resp


@pytest.mark.parametrize(("line", "version"), [
    (b"AirM2M_Air72xUy_V409_LTE_AT", 409), (b'+CGMR: "AirM2M_Air72xUy_V838_LTE_AT"', 838),
    (b"x_V_y_V12", 12), (b"no version", -1), (b"_V1234567890", -1), (b"_V", -1),
])
def test_firmware_version_is_read_in_place(line: bytes, version: int) -> None:
    buf = b"##" + line + b"##"
    assert firmware_version(buf, 2, 2 + len(line)) == version


def test_answer_reason_picks_the_reason_of_the_answer() -> None:
    args = (Reason.MPUB_UNANSWERED, Reason.MPUB_ERROR, Reason.MPUB_CME_ERROR)
    assert answer_reason(response(AtResult.TIMEOUT), *args) == (Reason.MPUB_UNANSWERED, 0)
    assert answer_reason(response(AtResult.ERROR), *args) == (Reason.MPUB_ERROR, -1)
    assert answer_reason(response(AtResult.CME_ERROR, cme=3), *args) == (Reason.MPUB_CME_ERROR, 3)


def judge(step_name: str, resp: AtResponse) -> tuple[tuple[Outcome, Reason, int], object]:
    from airfsm.core.controller import Controller

    ctl = Controller(memory_pair()[0], seed_settings())
    step: Step = next(s for row in MACHINE for s in row.steps if s.name == step_name)
    return judge_answer(ctl, step, resp), ctl


def test_the_checks_return_codes_and_write_what_they_learn() -> None:
    (verdict, ctl) = judge("cgmr", response(AtResult.OK, b"AirM2M_Air72xUy_V300_LTE_AT"))
    assert verdict == (Outcome.FATAL, Reason.FIRMWARE_TOO_OLD, 300)
    assert ctl.fail_cause == Reason.FIRMWARE_TOO_OLD and ctl.firmware_version == 300  # type: ignore[attr-defined]
    (verdict, ctl) = judge("query", response(AtResult.OK, b'+SAPBR: 1,1,"10.1.2.3"'))
    assert verdict == (Outcome.PASS, Reason.NONE, 0) and ctl.ip == "10.1.2.3"  # type: ignore[attr-defined]
    (verdict, _) = judge("query", response(AtResult.OK, b"+SAPBR: 1,0"))
    assert verdict == (Outcome.NOT_YET, Reason.BEARER_CONNECTING, 0)
    (verdict, _) = judge("cpin", response(AtResult.CME_ERROR, cme=10))
    assert verdict == (Outcome.NOT_YET, Reason.SIM_NOT_READY, 10)
    (verdict, ctl) = judge("csq", response(AtResult.OK, b"+CSQ: 23,99"))
    assert verdict[0] == Outcome.PASS and ctl.rssi == 23  # type: ignore[attr-defined]
    (verdict, _) = judge("apn", response(AtResult.ERROR, cme=3))
    assert verdict == (Outcome.FAIL, Reason.ERROR, 3)
    (verdict, _) = judge("apn", response(AtResult.TIMEOUT))
    assert verdict == (Outcome.FAIL, Reason.NO_ANSWER, 0)
    (verdict, _) = judge("term", response(AtResult.TIMEOUT))  # clean-up: anything passes
    assert verdict[0] == Outcome.PASS


PASSED = (Outcome.PASS, Reason.NONE, 0)


@pytest.mark.parametrize(("step", "lines", "field", "value"), [
    ("imei", (b"862991419835241",), "imei", "862991419835241"),  # the vendor manual's form
    ("imei", (b'+CGSN: "862991419835241"',), "imei", "862991419835241"),
    ("imei", (b"+CGSN: 86299,1419835241",), "imei", "86299"),  # the first field only
    ("imei", (b"not an IMEI!",), "imei", ""),
    ("iccid", (b"89860117831003134201",), "iccid", "89860117831003134201"),  # AT+CCID
    ("iccid", (b"+CCID: 89860117831003134201",), "iccid", "89860117831003134201"),
    ("iccid", (b"+ICCID: 898604981022C0254186",), "iccid", "898604981022C0254186"),  # AT+ICCID
    ("operator", (b'+COPS: 0,0,"CHN-UNICOM",7',), "operator", "CHN-UNICOM"),
    ("operator", (b'+COPS: 0,0,"CHN-UNICOM",7',), "access_technology", 7),
    ("operator", (b'+COPS: 0,2,"46001"',), "access_technology", -1),
    ("operator", (b"+COPS: 0",), "operator", ""),  # registered nowhere
    ("operator", (b'+COPS: 0,0,"' + b"x" * 40 + b'",7',), "operator", "x" * 32),  # cut
    ("operator", (b'+COPS: 0,0,"\xff\x00",7',), "operator", ""),  # not text: not kept
    ("registration", (b"+CEREG: 0,5",), "registration", 5),
    ("registration", (b'+CEREG: 2,1,"1A2B","01A2B3C",7',), "registration", 1),
    ("registration", (b"+CEREG: 0",), "registration", -1),
])
def test_the_informational_checks_read_every_form_of_their_answer(
        step: str, lines: tuple[bytes, ...], field: str, value: object) -> None:
    verdict, ctl = judge(step, response(AtResult.OK, *lines))
    assert verdict == PASSED
    assert getattr(ctl, field) == value


@pytest.mark.parametrize("step", ["imei", "iccid", "operator", "registration"])
@pytest.mark.parametrize("result", [AtResult.ERROR, AtResult.CME_ERROR, AtResult.TIMEOUT])
def test_an_informational_check_never_fails_and_keeps_what_it_knew(
        step: str, result: AtResult) -> None:
    from airfsm.core.controller import Controller

    ctl = Controller(memory_pair()[0], seed_settings())
    ctl.imei, ctl.iccid, ctl.operator, ctl.registration = "1", "2", "op", 1
    check: Step = next(s for row in MACHINE for s in row.steps if s.name == step)
    assert judge_answer(ctl, check, response(result, cme=10)) == PASSED
    assert (ctl.imei, ctl.iccid, ctl.operator, ctl.registration) == ("1", "2", "op", 1)


def test_a_signal_reading_is_stamped_with_the_controllers_clock() -> None:
    from airfsm.core.controller import Controller

    ctl = Controller(memory_pair()[0], seed_settings(), now_ms=1_000)
    assert ctl.signal_age_ms() == -1  # never read
    ctl.now_ms = 5_000
    assert judge_answer(ctl, next(s for s in MACHINE[State.ATTACH].steps
                                 if s.name == "csq"),
                        response(AtResult.OK, b"+CSQ: 17,99")) == PASSED
    ctl.now_ms = 7_500
    assert (ctl.rssi, ctl.signal_at, ctl.signal_age_ms()) == (17, 5_000, 2_500)
