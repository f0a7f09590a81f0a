"""Tests of the AT channel (airfsm/core/at.py): the digest, length-counted data, splits, faults."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from airfsm.core.at import (
    PAYLOAD_STALL_FLOOR_MS,
    AtChannel,
    AtResponse,
    is_final_code,
    msub_cache_slot,
    msub_topic,
    payload_stall_ms,
    response_prefix,
)
from airfsm.core.codes import AtResult, UrcKind
from airfsm.core.settings import DATA_CAPACITY, LINE_CAPACITY, MAX_INFO_LINES
from airfsm.core.table import URC_NONE, Urc, urc_id
from airfsm.core.timebase import Xorshift32, ms_add

NOW = 1000
TIMEOUT = 5000

# Events as the callbacks saw them. The response object is reused, so it is snapshotted.
Event = tuple[object, ...]


def rsp(
    command: bytes,
    result: AtResult = AtResult.OK,
    lines: tuple[bytes, ...] = (),
    data: bytes = b"",
    cme: int = -1,
) -> Event:
    return ("rsp", command, result, cme, lines, data)


def urc(line: bytes, data: bytes = b"") -> Event:
    return ("urc", line, data)


def frame(*lines: bytes) -> bytes:
    """What the module sends for these lines: each wrapped in CR LF."""
    return b"".join(b"\r\n" + line + b"\r\n" for line in lines)


class Harness:
    def __init__(self, **kwargs: object) -> None:
        self.written: list[bytes] = []
        self.events: list[Event] = []
        self.busy_in_callback: list[bool] = []
        self.truncated_flags: list[bool] = []  # AtResponse.truncated of every response
        self.truncations: list[tuple[bytes, int, int]] = []  # on_truncated calls
        self.urc_ids: list[int] = []  # the URC table rows of the on_urc calls
        kwargs.setdefault("on_truncated", lambda *t: self.truncations.append(t))
        self.ch = AtChannel(self._write, self._on_response, self._on_urc, **kwargs)  # type: ignore[arg-type]

    def _write(self, data: memoryview) -> None:
        self.written.append(bytes(data))  # a view of the sender's buffer: keep what it was

    def send(self, command: bytes, now: int, timeout: int, **kwargs: bool) -> None:
        """send() a command the way the controller does: from a buffer with room for its CR."""
        buf = bytearray(len(command) + 1)
        buf[:len(command)] = command
        self.ch.send(buf, len(command), now, timeout, **kwargs)

    def _on_response(self, r: AtResponse) -> None:
        self.busy_in_callback.append(self.ch.busy)
        self.truncated_flags.append(r.truncated)
        self.events.append(("rsp", bytes(r.command), r.result, r.cme_error, tuple(r.lines),
                            r.data))

    def _on_urc(self, urc: int, line: bytes, data: bytes) -> None:
        # The row of the URC table the channel says the line is: the one its prefix names.
        if urc == URC_NONE:
            assert self.ch._final_urc, line  # only a final code passed on after an OK
        else:
            assert line.startswith(self.ch._urcs[urc].prefix), (urc, line)
        self.urc_ids.append(urc)
        self.events.append(("urc", line, data))

    def feed(self, stream: bytes, cuts: list[int] | None = None, now: int = NOW) -> None:
        """Feed `stream`, split at the given offsets."""
        start = 0
        for cut in [*(cuts or []), len(stream)]:
            self.ch.feed(stream[start:cut], now)
            start = cut


def assert_clean(ch: AtChannel) -> None:
    assert (ch.lines_dropped, ch.stray_lines, ch.data_dropped, ch.info_lines_dropped) == (
        0,
        0,
        0,
        0,
    )


# --------------------------------------------------------------------------------------------
# Exchanges: the seed transcript (seed/000_71177f04b98064e0.txt) and PROTOCOL.md.

PK = b"b0FMK1Ga5cp"
DN = b"862991419835241"
AUTH_BODY = (
    b"productKey=b0FMK1Ga5cp&sign=1eb96463ad2345b6c261e2f7cc78a7a0"
    b"&clientId=862991419835241&deviceName=862991419835241"
)
AUTH_REPLY = (
    b'{"code":200,"data":{"iotId":"jlvFGfQ11FlGOEJ4RoZU001013ba00",'
    b'"iotToken":"613d9cb0946741df98db1c50255a9dd0"},"message":"success"}'
)
# Everything a naive line parser gets wrong, inside a length-counted body.
TRICKY = b'a,"b",c\r\nOK\r\nCLOSED\r\n+MSUB: "/t",3 byte,xyz\r\n+CME ERROR: 3\r\nERROR\n>\r\x00\xff'


@dataclass
class Exchange:
    name: str
    command: bytes | None  # None: the module talks while no command is in flight
    reply: bytes
    events: list[Event]
    body: bytes | None = None  # sent with send_data() after the PROMPT
    after: bytes = b""  # what the module sends after the body
    urcs: int = 0
    extra_written: list[bytes] = field(default_factory=list)


def _x(name: str, command: bytes | None, reply: bytes, *events: Event, **kw: object) -> Exchange:
    return Exchange(name, command, reply, list(events), **kw)  # type: ignore[arg-type]


MSUB_GET = b'+MSUB: "/b0FMK1Ga5cp/862991419835241/get",11 byte,'
SSLMIPSTART = b'AT+SSLMIPSTART="b0FMK1Ga5cp.iot-as-mqtt.cn-shanghai.aliyuncs.com",1883'
MCONFIG = (
    b'AT+MCONFIG="862991419835241","jlvFGfQ11FlGOEJ4RoZU001013ba00",'
    b'"613d9cb0946741df98db1c50255a9dd0"'
)
URL = b'AT+HTTPPARA="URL","https://iot-auth.cn-shanghai.aliyuncs.com/auth/devicename"'
HEADER = b'AT+HTTPPARA="USER_DEFINED","Content-Type: application/x-www-form-urlencoded"'
MSUB_CMD = b'AT+MSUB="/b0FMK1Ga5cp/862991419835241/get",0'
MPUB0 = b'AT+MPUB="/b0FMK1Ga5cp/862991419835241/update",0,0,"test0"'
MPUB1 = b'AT+MPUB="/b0FMK1Ga5cp/862991419835241/update",1,0,"test1"'

SEED = [
    _x("at", b"AT", frame(b"OK"), rsp(b"AT")),
    _x(
        "cgmr",
        b"AT+CGMR",
        frame(b"AirM2M_Air72xUy_V409_LTE_AT", b"OK"),
        rsp(b"AT+CGMR", lines=(b"AirM2M_Air72xUy_V409_LTE_AT",)),
    ),
    _x(
        "cgatt",
        b"AT+CGATT?",
        frame(b"+CGATT: 1", b"OK"),
        rsp(b"AT+CGATT?", lines=(b"+CGATT: 1",)),
    ),
    _x(
        "contype",
        b'AT+SAPBR=3,1,"CONTYPE","GPRS"',
        frame(b"OK"),
        rsp(b'AT+SAPBR=3,1,"CONTYPE","GPRS"'),
    ),
    _x("apn", b'AT+SAPBR=3,1,"APN","CMIOT"', frame(b"OK"), rsp(b'AT+SAPBR=3,1,"APN","CMIOT"')),
    _x("sapbr_open", b"AT+SAPBR=1,1", frame(b"OK"), rsp(b"AT+SAPBR=1,1")),
    _x("httpinit", b"AT+HTTPINIT", frame(b"OK"), rsp(b"AT+HTTPINIT")),
    _x("url", URL, frame(b"OK"), rsp(URL)),
    _x("user_defined", HEADER, frame(b"OK"), rsp(HEADER)),
    _x(
        "httpdata",
        b"AT+HTTPDATA=112,20000",
        frame(b"DOWNLOAD"),
        rsp(b"AT+HTTPDATA=112,20000", AtResult.PROMPT),
        rsp(b"AT+HTTPDATA=112,20000"),
        body=AUTH_BODY,
        after=frame(b"OK"),
    ),
    _x(
        "httpaction",
        b"AT+HTTPACTION=1",
        frame(b"OK", b"+HTTPACTION: 1,200,128"),
        rsp(b"AT+HTTPACTION=1"),
        urc(b"+HTTPACTION: 1,200,128"),
    ),
    _x(
        "httpread",
        b"AT+HTTPREAD",
        b"\r\n+HTTPREAD: 128\r\n" + AUTH_REPLY + b"\r\n" + frame(b"OK"),
        rsp(b"AT+HTTPREAD", lines=(b"+HTTPREAD: 128",), data=AUTH_REPLY),
    ),
    _x("httpterm", b"AT+HTTPTERM", frame(b"OK"), rsp(b"AT+HTTPTERM")),
    _x("mconfig", MCONFIG, frame(b"OK"), rsp(MCONFIG)),
    _x(
        "sslmipstart",
        SSLMIPSTART,
        frame(b"OK", b"CONNECT OK"),
        rsp(SSLMIPSTART),
        urc(b"CONNECT OK"),
    ),
    _x(
        "mconnect",
        b"AT+MCONNECT=1,300",
        frame(b"OK", b"CONNACK OK"),
        rsp(b"AT+MCONNECT=1,300"),
        urc(b"CONNACK OK"),
    ),
    _x("msub_cmd", MSUB_CMD, frame(b"OK", b"SUBACK"), rsp(MSUB_CMD), urc(b"SUBACK")),
    _x("msgset", b"AT+MQTTMSGSET=0", frame(b"OK"), rsp(b"AT+MQTTMSGSET=0")),
    _x("mpub0", MPUB0, frame(b"OK"), rsp(MPUB0)),
    _x("mpub1", MPUB1, frame(b"OK", b"PUBACK"), rsp(MPUB1), urc(b"PUBACK")),
    _x("msub_urc", None, b"\r\n" + MSUB_GET + b"server send\r\n", urc(MSUB_GET, b"server send")),
]

MORE = [
    _x(
        "cgmr_quoted",
        b"AT+CGMR",
        frame(b'+CGMR: "AirM2M_Air724UG_V409_LTE_AT"', b"OK"),
        rsp(b"AT+CGMR", lines=(b'+CGMR: "AirM2M_Air724UG_V409_LTE_AT"',)),
    ),
    _x(
        "cpin_own_prefix_beats_urc",
        b"AT+CPIN?",
        frame(b"+CPIN: READY", b"OK"),
        rsp(b"AT+CPIN?", lines=(b"+CPIN: READY",)),
    ),
    _x(
        "mqttstatu_space_before_colon",
        b"AT+MQTTSTATU",
        frame(b"+MQTTSTATU :1", b"OK"),
        rsp(b"AT+MQTTSTATU", lines=(b"+MQTTSTATU :1",)),
    ),
    _x(
        "cgatt_with_closed_urc_inside",
        b"AT+CGATT?",
        frame(b"+CGATT: 1", b"CLOSED", b"OK"),
        urc(b"CLOSED"),
        rsp(b"AT+CGATT?", lines=(b"+CGATT: 1",)),
    ),
    _x(
        "sapbr_query_with_deact",
        b"AT+SAPBR=2,1",
        frame(b'+SAPBR: 1,1,"010.089.004.012"', b"+SAPBR 1: DEACT", b"OK"),
        urc(b"+SAPBR 1: DEACT"),
        rsp(b"AT+SAPBR=2,1", lines=(b'+SAPBR: 1,1,"010.089.004.012"',)),
    ),
    _x(
        "cgatt_urc_during_other_command",
        b"AT+CSQ",
        frame(b"+CGATT: 0", b"+CSQ: 24,0", b"OK"),
        urc(b"+CGATT: 0"),
        rsp(b"AT+CSQ", lines=(b"+CSQ: 24,0",)),
    ),
    _x("cgatt_urc_idle", None, frame(b"+CGATT: 0"), urc(b"+CGATT: 0")),
    _x(
        "cme_767",
        b"AT+MCONNECT=1,300",
        frame(b"+CME ERROR: 767"),
        rsp(b"AT+MCONNECT=1,300", AtResult.CME_ERROR, cme=767),
    ),
    _x("error", b"AT+HTTPINIT", frame(b"ERROR"), rsp(b"AT+HTTPINIT", AtResult.ERROR)),
    _x(
        "cms_error",
        b"AT+CMGS=12",
        frame(b"+CMS ERROR: 500"),
        rsp(b"AT+CMGS=12", AtResult.CME_ERROR, cme=500),
    ),
    _x(
        "cme_then_httpaction_urc",
        b"AT+HTTPACTION=1",
        frame(b"+CME ERROR: 3", b"+HTTPACTION: 1,601,0"),
        rsp(b"AT+HTTPACTION=1", AtResult.CME_ERROR, cme=3),
        urc(b"+HTTPACTION: 1,601,0"),
    ),
    _x(
        "httpaction_urc_before_ok_no_space",
        b"AT+HTTPACTION=1",
        frame(b"+HTTPACTION:1,200,128", b"OK"),
        urc(b"+HTTPACTION:1,200,128"),
        rsp(b"AT+HTTPACTION=1"),
    ),
    _x(
        "httpread_tricky_crlf_after",
        b"AT+HTTPREAD",
        b"\r\n+HTTPREAD: %d\r\n" % len(TRICKY) + TRICKY + b"\r\n" + frame(b"OK"),
        rsp(b"AT+HTTPREAD", lines=(b"+HTTPREAD: %d" % len(TRICKY),), data=TRICKY),
    ),
    _x(
        "httpread_tricky_no_crlf_after",
        b"AT+HTTPREAD",
        b"\r\n+HTTPREAD: %d\r\n" % len(TRICKY) + TRICKY + b"OK\r\n",
        rsp(b"AT+HTTPREAD", lines=(b"+HTTPREAD: %d" % len(TRICKY),), data=TRICKY),
    ),
    _x(
        "httpread_body_starts_with_crlf",
        b"AT+HTTPREAD",
        b"\r\n+HTTPREAD: 4\r\n\r\nab" + frame(b"OK"),
        rsp(b"AT+HTTPREAD", lines=(b"+HTTPREAD: 4",), data=b"\r\nab"),
    ),
    _x(
        "httpread_empty",
        b"AT+HTTPREAD",
        frame(b"+HTTPREAD: 0", b"OK"),
        rsp(b"AT+HTTPREAD", lines=(b"+HTTPREAD: 0",)),
    ),
    _x(
        "msub_inside_response",
        b"AT+CSQ",
        b"\r\n+CSQ: 20,0\r\n\r\n+MSUB: /pk/dn/get,9 byte,x\r\nOK\r\n\r\n" + frame(b"OK"),
        urc(b"+MSUB: /pk/dn/get,9 byte,", b"x\r\nOK\r\n\r\n"),
        rsp(b"AT+CSQ", lines=(b"+CSQ: 20,0",)),
    ),
    _x(
        "msub_during_own_command",
        MSUB_CMD,
        frame(b"OK", b"SUBACK") + b"\r\n" + MSUB_GET + b"server send\r\n",
        rsp(MSUB_CMD),
        urc(b"SUBACK"),
        urc(MSUB_GET, b"server send"),
    ),
    _x(
        "download_prompt_with_urc_and_lines",
        b"AT+HTTPDATA=5,10000",
        frame(b"PUBACK", b"DOWNLOAD"),
        urc(b"PUBACK"),
        rsp(b"AT+HTTPDATA=5,10000", AtResult.PROMPT),
        rsp(b"AT+HTTPDATA=5,10000"),
        body=b"a\r\nOK",
        after=frame(b"OK"),
    ),
    _x(
        "gt_prompt_unterminated",
        b"AT+MPUBEX=3",
        b"\r\n> ",
        rsp(b"AT+MPUBEX=3", AtResult.PROMPT),
        rsp(b"AT+MPUBEX=3"),
        body=b"a,b",
        after=frame(b"OK"),
    ),
    _x(
        "gt_prompt_line",
        b"AT+MPUBEX=3",
        b"\r\n>\r\n",
        rsp(b"AT+MPUBEX=3", AtResult.PROMPT),
        rsp(b"AT+MPUBEX=3"),
        body=b"abc",
        after=frame(b"OK"),
    ),
]

ALL = SEED + MORE


def run(
    ex: Exchange, echo: bool, cuts: list[int] | None = None, after_cuts: list[int] | None = None
) -> Harness:
    h = Harness()
    if ex.command is None:
        h.feed(ex.reply, cuts)
        return h
    h.send(ex.command, NOW, TIMEOUT, expect_prompt=ex.body is not None)
    stream = (ex.command + b"\r" if echo else b"") + ex.reply
    h.feed(stream, cuts)
    if ex.body is not None:
        assert h.events and h.events[-1][2] == AtResult.PROMPT
        assert h.ch.busy
        h.ch.send_data(ex.body, len(ex.body), NOW, TIMEOUT)
        h.feed(ex.after, after_cuts)
    return h


def written_for(ex: Exchange) -> list[bytes]:
    if ex.command is None:
        return []
    return [ex.command + b"\r"] + ([ex.body] if ex.body is not None else [])


def stream_len(ex: Exchange, echo: bool) -> int:
    return len(ex.reply) + (len(ex.command) + 1 if echo and ex.command is not None else 0)


@pytest.mark.parametrize("echo", [False, True], ids=["echo_off", "echo_on"])
@pytest.mark.parametrize("ex", ALL, ids=[e.name for e in ALL])
def test_exchange(ex: Exchange, echo: bool) -> None:
    h = run(ex, echo)
    assert h.events == ex.events
    assert h.written == written_for(ex)
    assert not h.ch.busy
    assert h.ch.deadline is None
    assert_clean(h.ch)
    assert h.ch.urcs == sum(1 for e in ex.events if e[0] == "urc")
    # on_response runs with the channel already idle (so the controller may send next), except
    # for PROMPT, which leaves the command in flight for send_data()
    assert h.busy_in_callback == [e[2] == AtResult.PROMPT for e in ex.events if e[0] == "rsp"]


@pytest.mark.parametrize("echo", [False, True], ids=["echo_off", "echo_on"])
@pytest.mark.parametrize("ex", ALL, ids=[e.name for e in ALL])
def test_exchange_split_at_every_byte_boundary(ex: Exchange, echo: bool) -> None:
    for k in range(stream_len(ex, echo) + 1):
        h = run(ex, echo, cuts=[k])
        assert h.events == ex.events, f"split at {k}"
        assert_clean(h.ch)
    for k in range(len(ex.after) + 1):
        h = run(ex, echo, after_cuts=[k])
        assert h.events == ex.events, f"split after the body at {k}"


@pytest.mark.parametrize("echo", [False, True], ids=["echo_off", "echo_on"])
@pytest.mark.parametrize("ex", ALL, ids=[e.name for e in ALL])
def test_exchange_one_byte_at_a_time(ex: Exchange, echo: bool) -> None:
    h = run(
        ex,
        echo,
        cuts=list(range(stream_len(ex, echo))),
        after_cuts=list(range(len(ex.after))),
    )
    assert h.events == ex.events
    assert_clean(h.ch)


def test_exchanges_in_random_chunks() -> None:
    rng = Xorshift32(0xA1272)
    for _ in range(20):
        for ex in ALL:
            for echo in (False, True):
                n = stream_len(ex, echo)
                cuts = sorted({rng.next() % (n + 1) for _ in range(rng.next() % 6)})
                h = run(ex, echo, cuts=cuts)
                assert h.events == ex.events, (ex.name, echo, cuts)


def test_whole_seed_session_on_one_channel_echo_on() -> None:
    """The seed transcript end to end, one command after another, on one channel."""
    h = Harness()
    expected: list[Event] = []
    for ex in SEED:
        if ex.command is not None:
            h.send(ex.command, NOW, TIMEOUT, expect_prompt=ex.body is not None)
            h.feed(ex.command + b"\r" + ex.reply)
            if ex.body is not None:
                h.ch.send_data(ex.body, len(ex.body), NOW, TIMEOUT)
                h.feed(ex.after)
        else:
            h.feed(ex.reply)
        expected += ex.events
    assert h.events == expected
    assert h.written == [w for ex in SEED for w in written_for(ex)]
    assert_clean(h.ch)
    assert h.ch.urcs == 6  # HTTPACTION, CONNECT OK, CONNACK OK, SUBACK, PUBACK, MSUB
    # the HTTPDATA body is computed, not the transcript's hard-coded 112 typed by hand
    assert len(AUTH_BODY) == 112 and len(AUTH_REPLY) == 128


# --------------------------------------------------------------------------------------------
# The digest: echo, own prefix vs URC table, counters


def test_echo_is_dropped_only_while_its_command_is_in_flight() -> None:
    h = Harness()
    h.feed(b"AT+CSQ\r")  # no command in flight: a stray line, not an echo
    assert h.ch.stray_lines == 1
    h.send(b"AT+CSQ", NOW, TIMEOUT)
    h.feed(b"AT+CSQ\r\r\n+CSQ: 9,0\r\n\r\nAT+CSQX\r\n\r\nOK\r\n")
    assert h.events == [rsp(b"AT+CSQ", lines=(b"+CSQ: 9,0", b"AT+CSQX"))]


def echoed(command: bytes, *lines: bytes) -> bytes:
    """What a module with echo on sends for a command: the echo (the line and its CR), then
    the answer."""
    return command + b"\r" + frame(*lines)


@pytest.mark.parametrize("cuts", [[], [1], [3, 5]], ids=["whole", "split", "split_twice"])
def test_a_duplicated_final_code_before_the_echo_is_not_the_next_commands_answer(
        cuts: list[int]) -> None:
    h = Harness()
    h.send(b"AT+CSQ", NOW, TIMEOUT)
    h.feed(echoed(b"AT+CSQ", b"+CSQ: 9,0", b"OK"))
    h.send(b"AT+CGATT?", NOW, TIMEOUT)
    # The OK again, split from the first by the UART, then the command in flight's echo.
    h.feed(frame(b"OK") + echoed(b"AT+CGATT?", b"+CGATT: 1", b"OK"), cuts=cuts)
    assert h.events == [rsp(b"AT+CSQ", lines=(b"+CSQ: 9,0",)),
                        rsp(b"AT+CGATT?", lines=(b"+CGATT: 1",))]
    assert h.ch.stray_lines == 1 and h.ch.urcs == 0 and not h.ch.busy


def test_a_late_answer_after_a_timeout_is_not_the_next_commands_answer() -> None:
    h = Harness()
    h.send(b"AT+CSQ", NOW, 100)
    h.feed(b"AT+CSQ\r")
    h.ch.check_timeout(NOW + 100)
    h.send(b"AT+CPIN?", NOW + 100, TIMEOUT)
    h.feed(frame(b"ERROR") + echoed(b"AT+CPIN?", b"+CPIN: READY", b"OK"), now=NOW + 150)
    assert h.events == [rsp(b"AT+CSQ", AtResult.TIMEOUT),
                        rsp(b"AT+CPIN?", lines=(b"+CPIN: READY",))]
    assert h.ch.stray_lines == 1


@pytest.mark.parametrize("how", ["ate0", "timeout", "reset"])
def test_answers_without_an_echo_are_taken_again_once_the_echo_may_be_off(how: str) -> None:
    h = Harness()
    h.send(b"AT", NOW, TIMEOUT)
    h.feed(echoed(b"AT", b"OK"))  # the module echoes
    if how == "ate0":
        h.send(b"ATE0", NOW, TIMEOUT)
        h.feed(echoed(b"ATE0", b"OK"))  # echoed as it arrives, then echo is off
    elif how == "timeout":
        h.send(b"AT", NOW, 100)  # no echo, no answer: the module stopped echoing, maybe
        h.ch.check_timeout(NOW + 100)
    else:
        h.ch.reset()
    h.send(b"AT+CSQ", NOW + 100, TIMEOUT)
    h.feed(frame(b"+CSQ: 9,0", b"OK"), now=NOW + 100)
    assert h.events[-1] == rsp(b"AT+CSQ", lines=(b"+CSQ: 9,0",))
    assert h.ch.stray_lines == 0 and not h.ch.busy
    h.send(b"AT+CSQ", NOW + 100, TIMEOUT)  # and once an echo comes, it is awaited again
    h.feed(echoed(b"AT+CSQ", b"+CSQ: 8,0", b"OK") + frame(b"OK"), now=NOW + 100)
    h.send(b"AT", NOW + 100, TIMEOUT)
    h.feed(frame(b"OK"), now=NOW + 100)
    assert h.events[-1] == rsp(b"AT+CSQ", lines=(b"+CSQ: 8,0",)) and h.ch.busy


def test_an_echo_that_does_not_come_costs_one_timeout() -> None:
    # A garbled echo (bytes lost on the UART) while the module is known to echo: the answer is
    # not taken, the command times out, and the next one is answered without its echo.
    h = Harness()
    h.send(b"AT", NOW, TIMEOUT)
    h.feed(echoed(b"AT", b"OK"))
    h.send(b"AT+CSQ", NOW, 100)
    h.feed(echoed(b"AT+SQ", b"+CSQ: 9,0", b"OK"))
    h.ch.check_timeout(NOW + 100)
    assert h.events[-1] == rsp(b"AT+CSQ", AtResult.TIMEOUT)
    h.send(b"AT+CSQ", NOW + 100, TIMEOUT)
    h.feed(frame(b"+CSQ: 9,0", b"OK"), now=NOW + 100)
    assert h.events[-1] == rsp(b"AT+CSQ", lines=(b"+CSQ: 9,0",))


@pytest.mark.parametrize(
    ("command", "prefix"),
    [
        (b"AT+CGATT?", b"+CGATT"),
        (b"AT+SAPBR=2,1", b"+SAPBR"),
        (b"AT+MQTTSTATU", b"+MQTTSTATU"),
        (b"AT+CGMR", b"+CGMR"),
        (b"AT+HTTPREAD", b"+HTTPREAD"),
        (b'AT+MSUB="/a/b",0', b"+MSUB"),
        (b"at+csq", b"+csq"),
        (b"AT", b""),
        (b"ATE0", b""),
        (b"AT+", b""),
        (b"AT+=1", b""),
        (b"", b""),
        (b"+CGATT?", b""),
    ],
)
def test_response_prefix(command: bytes, prefix: bytes) -> None:
    assert response_prefix(command) == prefix


def test_own_prefix_needs_a_colon_right_after_it() -> None:
    h = Harness()
    h.send(b"AT+CGA", NOW, TIMEOUT)
    # `+CGATT: 1` starts with `+CGA` but its prefix is `+CGATT`: a URC, not this command's
    h.feed(frame(b"+CGATT: 1", b"+CGA : 2", b"+CGA: 3", b"+CGA 4: x", b"OK"))
    assert h.events == [
        urc(b"+CGATT: 1"),
        rsp(b"AT+CGA", lines=(b"+CGA : 2", b"+CGA: 3", b"+CGA 4: x")),
    ]


def test_own_prefix_line_during_another_command_or_idle_is_a_urc() -> None:
    h = Harness()
    h.feed(frame(b"+CPIN: NOT READY"))
    h.send(b"AT+CSQ", NOW, TIMEOUT)
    h.feed(frame(b"+CPIN: READY", b"OK"))
    assert h.events == [urc(b"+CPIN: NOT READY"), urc(b"+CPIN: READY"), rsp(b"AT+CSQ")]


REQUIRED_URCS = [
    b"+MSUB:",
    b"+HTTPACTION:",
    b"CONNECT OK",
    b"CONNECT FAIL",
    b"ALREADY CONNECT",
    b"CONNACK OK",
    b"SUBACK",
    b"UNSUBACK",
    b"PUBACK",
    b"CLOSED",
    b"RDY",
    b"+CFUN:",
    b"+CPIN:",
    b"SMS Ready",
    b"+CGATT:",
    b"+PDP DEACT",
    b"+CGEV:",
    b"+SAPBR 1: DEACT",
    b"+CGREG:",
    b"+CEREG:",
    b"STATE:",
]


@pytest.mark.parametrize("prefix", REQUIRED_URCS)
def test_required_urc_is_delivered_idle_and_during_a_command(prefix: bytes) -> None:
    assert urc_id(prefix) != URC_NONE
    line = prefix + (b" 1" if prefix.endswith(b":") else b"")
    h = Harness()
    h.feed(frame(line))
    h.send(b"AT", NOW, TIMEOUT)
    h.feed(frame(line, b"OK"))
    assert h.events == [urc(line), urc(line), rsp(b"AT")]
    assert h.urc_ids == [urc_id(prefix)] * 2  # the row the prefix names, idle or not
    assert h.ch.urcs == 2
    assert h.ch.stray_lines == 0


def test_stray_lines_are_counted_and_not_delivered() -> None:
    h = Harness()
    h.feed(frame(b"OK", b"ERROR", b"+CME ERROR: 3", b"DOWNLOAD", b"hello", b">"))
    assert h.events == []
    assert h.ch.stray_lines == 6
    assert h.ch.urcs == 0


def test_custom_urc_table() -> None:
    # an empty prefix must not match everything
    h = Harness(urcs=(Urc(b"+FOO:", UrcKind.NOTICE), Urc(b"", UrcKind.NOTICE)))
    h.feed(frame(b"+FOO: 1", b"CLOSED"))
    assert h.events == [urc(b"+FOO: 1")] and h.urc_ids == [0]
    assert h.ch.stray_lines == 1


def test_info_lines_beyond_the_maximum_are_dropped_and_counted() -> None:
    h = Harness()
    h.send(b"AT+LIST", NOW, TIMEOUT)
    lines = [b"line %d" % i for i in range(MAX_INFO_LINES + 3)]
    h.feed(frame(*lines, b"OK"))
    assert h.events == [rsp(b"AT+LIST", lines=tuple(lines[:MAX_INFO_LINES]))]
    assert h.ch.info_lines_dropped == 3


def test_empty_lines_and_lone_cr_or_lf_are_skipped() -> None:
    h = Harness()
    h.send(b"AT+CSQ", NOW, TIMEOUT)
    h.feed(b"\r\r\n\n\r+CSQ: 1,2\n\n\rOK\r")
    assert h.events == [rsp(b"AT+CSQ", lines=(b"+CSQ: 1,2",))]


# --------------------------------------------------------------------------------------------
# Final codes


@pytest.mark.parametrize(
    ("line", "result", "cme"),
    [
        (b"OK", AtResult.OK, -1),
        (b"ERROR", AtResult.ERROR, -1),
        (b"+CME ERROR: 767", AtResult.CME_ERROR, 767),
        (b"+CME ERROR:10", AtResult.CME_ERROR, 10),
        (b"+CME ERROR: 14 ", AtResult.CME_ERROR, 14),
        (b"+CMS ERROR: 500", AtResult.CME_ERROR, 500),
        (b"+CME ERROR: SIM busy", AtResult.CME_ERROR, -1),
        (b"+CME ERROR:", AtResult.CME_ERROR, -1),
        (b"+CME ERROR: 12345678901", AtResult.CME_ERROR, -1),
    ],
)
def test_final_codes(line: bytes, result: AtResult, cme: int) -> None:
    h = Harness()
    h.send(b"AT+X", NOW, TIMEOUT)
    h.feed(frame(b"info", line, b"OK"))
    assert h.events == [rsp(b"AT+X", result, lines=(b"info",), cme=cme)]
    assert h.ch.stray_lines == 1  # the OK after the final code belongs to no command


@pytest.mark.parametrize("line", [b"OK ", b" OK", b"OKAY", b"ERRORS", b"ok"])
def test_near_final_codes_are_info_lines(line: bytes) -> None:
    h = Harness()
    h.send(b"AT+X", NOW, TIMEOUT)
    h.feed(frame(line, b"OK"))
    assert h.events == [rsp(b"AT+X", lines=(line,))]


def test_response_is_reset_by_the_next_send() -> None:
    h = Harness()
    seen: list[AtResponse] = []
    h.ch = AtChannel(h._write, seen.append, h._on_urc)
    h.send(b"AT+CME", NOW, TIMEOUT)
    h.feed(frame(b"x", b"+CME ERROR: 4"))
    first_lines = seen[0].lines
    h.send(b"AT", NOW, TIMEOUT)
    h.feed(frame(b"OK"))
    assert seen[0] is seen[1]  # one object per channel (C: a struct)
    assert (seen[1].result, seen[1].cme_error, seen[1].lines, seen[1].command) == (
        AtResult.OK,
        -1,
        [],
        b"AT",
    )
    assert first_lines == [b"x"]  # a list kept by the controller is not cleared under it


# --------------------------------------------------------------------------------------------
# Prompts


def test_download_prompt_then_body_then_ok_writes_exact_bytes() -> None:
    h = Harness()
    cmd = b"AT+HTTPDATA=%d,20000" % len(AUTH_BODY)
    h.send(cmd, NOW, 3000, expect_prompt=True)
    assert h.ch.deadline == NOW + 3000
    h.feed(cmd + b"\r\r\nDOWNLOAD\r\n")
    assert h.events == [rsp(cmd, AtResult.PROMPT)]
    assert h.ch.busy  # still in flight, awaiting the body and then its final code
    h.ch.send_data(AUTH_BODY, len(AUTH_BODY), 50_000, 20_000)
    assert h.ch.deadline == 70_000  # a new deadline for the final code
    h.feed(frame(b"OK"), now=51_000)
    assert h.events == [rsp(cmd, AtResult.PROMPT), rsp(cmd)]
    assert h.written == [cmd + b"\r", AUTH_BODY]
    assert b"".join(h.written) == cmd + b"\r" + AUTH_BODY  # no CR after the body
    assert not h.ch.busy


def test_error_instead_of_prompt_completes_the_command() -> None:
    h = Harness()
    h.send(b"AT+HTTPDATA=5,1000", NOW, TIMEOUT, expect_prompt=True)
    h.feed(frame(b"ERROR"))
    assert h.events == [rsp(b"AT+HTTPDATA=5,1000", AtResult.ERROR)]
    h.ch.send_data(b"hello", 5, NOW, TIMEOUT)  # no prompt: must not reach the module
    assert h.written == [b"AT+HTTPDATA=5,1000\r"]
    assert h.ch.commands_refused == 1


def test_module_gives_up_waiting_for_the_body() -> None:
    h = Harness()
    h.send(b"AT+HTTPDATA=5,1000", NOW, TIMEOUT, expect_prompt=True)
    h.feed(frame(b"DOWNLOAD", b"ERROR"))
    assert h.events == [
        rsp(b"AT+HTTPDATA=5,1000", AtResult.PROMPT),
        rsp(b"AT+HTTPDATA=5,1000", AtResult.ERROR),
    ]
    assert not h.ch.busy


def test_prompt_without_body_times_out() -> None:
    h = Harness()
    h.send(b"AT+HTTPDATA=5,1000", NOW, 300, expect_prompt=True)
    h.feed(frame(b"DOWNLOAD"))
    h.ch.check_timeout(NOW + 299)
    assert len(h.events) == 1
    h.ch.check_timeout(NOW + 300)
    assert h.events[-1] == rsp(b"AT+HTTPDATA=5,1000", AtResult.TIMEOUT)
    assert not h.ch.busy


def test_prompts_when_none_expected_are_info_lines() -> None:
    h = Harness()
    h.send(b"AT+X", NOW, TIMEOUT)
    h.feed(b"\r\nDOWNLOAD\r\n\r\n> \r\n\r\nOK\r\n")
    assert h.events == [rsp(b"AT+X", lines=(b"DOWNLOAD", b"> "))]


def test_send_data_refused_when_idle_or_before_the_prompt() -> None:
    h = Harness()
    h.ch.send_data(b"AT+RESET\r", 9, NOW, TIMEOUT)
    h.send(b"AT+HTTPDATA=3,1000", NOW, TIMEOUT, expect_prompt=True)
    h.ch.send_data(b"abc", 3, NOW, TIMEOUT)  # prompt not seen yet
    assert h.written == [b"AT+HTTPDATA=3,1000\r"]
    assert h.ch.commands_refused == 2
    h.feed(frame(b"DOWNLOAD"))
    h.ch.send_data(b"abc", 3, NOW, TIMEOUT)
    h.ch.send_data(b"abc", 3, NOW, TIMEOUT)  # only once per prompt
    assert h.written == [b"AT+HTTPDATA=3,1000\r", b"abc"]
    # a second DOWNLOAD after the body is no prompt: an info line
    h.feed(frame(b"DOWNLOAD", b"OK"))
    assert h.events[-1] == rsp(b"AT+HTTPDATA=3,1000", lines=(b"DOWNLOAD",))


# --------------------------------------------------------------------------------------------
# +HTTPREAD: length-counted body


def httpread_stream(body: bytes, trailer: bytes) -> bytes:
    return b"\r\n+HTTPREAD: %d\r\n" % len(body) + body + trailer


@pytest.mark.parametrize("trailer", [b"\r\n\r\nOK\r\n", b"\r\nOK\r\n", b"OK\r\n"])
def test_httpread_body_read_by_length(trailer: bytes) -> None:
    body = b'{"a":"x,y","b":"\r\n"}\r\nOK\r\n,"' + bytes(range(256))
    h = Harness()
    h.send(b"AT+HTTPREAD", NOW, TIMEOUT)
    stream = httpread_stream(body, trailer)
    h.feed(stream, cuts=list(range(0, len(stream), 7)))
    assert h.events == [rsp(b"AT+HTTPREAD", lines=(b"+HTTPREAD: %d" % len(body),), data=body)]
    assert_clean(h.ch)


@pytest.mark.parametrize("terminator", [b"\r\n", b"\n", b"\r"])
def test_httpread_header_line_end_is_not_part_of_the_body(terminator: bytes) -> None:
    h = Harness()
    h.send(b"AT+HTTPREAD", NOW, TIMEOUT)
    h.feed(b"+HTTPREAD: 3" + terminator + b"a\nb" + terminator + b"OK" + terminator)
    assert h.events == [rsp(b"AT+HTTPREAD", lines=(b"+HTTPREAD: 3",), data=b"a\nb")]


def test_httpread_body_of_exactly_data_capacity_is_kept() -> None:
    body = bytes(i & 0xFF for i in range(DATA_CAPACITY))
    h = Harness()
    h.send(b"AT+HTTPREAD", NOW, TIMEOUT)
    h.feed(httpread_stream(body, b"\r\nOK\r\n"))
    assert h.events[0][5] == body
    assert h.ch.data_dropped == 0


def test_httpread_body_over_capacity_is_discarded_and_stream_stays_in_sync() -> None:
    body = (b"OK\r\nCLOSED\r\n" * 400)[: DATA_CAPACITY + 1]
    h = Harness()
    h.send(b"AT+HTTPREAD", NOW, TIMEOUT)
    h.feed(httpread_stream(body, b"\r\nOK\r\n") + frame(b"PUBACK"))
    assert h.events == [
        rsp(b"AT+HTTPREAD", lines=(b"+HTTPREAD: %d" % (DATA_CAPACITY + 1),)),
        urc(b"PUBACK"),
    ]
    assert h.ch.data_dropped == 1
    assert h.ch.stray_lines == 0


def test_timeout_in_the_middle_of_the_body_keeps_the_stream_in_sync() -> None:
    body = b"x" * 40 + b"\r\nOK\r\nCLOSED\r\n" + b"y" * 40
    stream = httpread_stream(body, b"\r\nOK\r\n")
    h = Harness()
    h.send(b"AT+HTTPREAD", NOW, 100)
    h.feed(stream[:30])
    h.ch.check_timeout(NOW + 100)
    assert h.events == [
        rsp(b"AT+HTTPREAD", AtResult.TIMEOUT, lines=(b"+HTTPREAD: %d" % len(body),))
    ]
    h.feed(stream[30:] + frame(b"SUBACK"))
    assert h.events[1:] == [urc(b"SUBACK")]  # not CLOSED from inside the body
    assert h.ch.stray_lines == 1  # the late OK
    assert h.ch.data_dropped == 1


def test_late_httpread_after_timeout_is_read_by_length_and_discarded() -> None:
    body = b"OK\r\nCLOSED\r\n"
    h = Harness()
    h.send(b"AT+HTTPREAD", NOW, 100)
    h.ch.check_timeout(NOW + 100)
    h.send(b"AT", NOW, TIMEOUT)
    h.feed(httpread_stream(body, b"\r\nOK\r\n"))  # the late answer of the first command
    assert h.events == [
        rsp(b"AT+HTTPREAD", AtResult.TIMEOUT),
        rsp(b"AT", lines=(b"+HTTPREAD: %d" % len(body),)),
    ]
    assert h.ch.data_dropped == 1
    # the OK completed AT (a known limit of a late answer: no id links an OK to its command)
    h.feed(frame(b"OK"))
    assert h.ch.stray_lines == 1


# --------------------------------------------------------------------------------------------
# +MSUB: length-counted payload inside the header line

MSUB_PAYLOAD = b'{"k":"a,b"},"q"\r\nOK\r\n+MSUB: x,1 byte,y\r\nCLOSED'


@pytest.mark.parametrize(
    ("header", "topic"),
    [
        (b'+MSUB: "/pk/dn/get",%d byte,', b"/pk/dn/get"),
        (b'+MSUB:"/pk/dn/get",%d byte,', b"/pk/dn/get"),
        (b"+MSUB: /pk/dn/get,%d byte,", b"/pk/dn/get"),
        (b"+MSUB:/pk/dn/get,%d byte,", b"/pk/dn/get"),
        (b'+MSUB: "/pk/dn/a,b",%d byte,', b"/pk/dn/a,b"),
        (b"+MSUB: /pk/dn/a,b,%d byte,", b"/pk/dn/a,b"),
        (b'+MSUB: "/a/5 byte,x",%d byte,', b"/a/5 byte,x"),
        (b'+MSUB: "/a,5 byte,x",%d byte,', b"/a,5 byte,x"),
        (b'+MSUB: "/pk/dn/get",%dbyte,', b"/pk/dn/get"),
        (b'+MSUB: "/pk/dn/get", %d  byte,', b"/pk/dn/get"),
    ],
)
def test_msub_payload_read_by_length(header: bytes, topic: bytes) -> None:
    head = header % len(MSUB_PAYLOAD)
    stream = b"\r\n" + head + MSUB_PAYLOAD + b"\r\n" + frame(b"PUBACK")
    expected = [urc(head, MSUB_PAYLOAD), urc(b"PUBACK")]
    for k in range(len(stream) + 1):
        h = Harness()
        h.feed(stream, cuts=[k])
        assert h.events == expected, f"split at {k}"
        assert_clean(h.ch)
    h = Harness()
    h.feed(stream, cuts=list(range(len(stream))))
    assert h.events == expected
    assert msub_topic(head) == topic


def test_msub_payload_without_trailing_crlf() -> None:
    h = Harness()
    h.feed(b"\r\n+MSUB: /t,3 byte,a\rbOK\r\n")
    assert h.events == [urc(b"+MSUB: /t,3 byte,", b"a\rb")]
    assert h.ch.stray_lines == 1  # the OK after it, no command in flight


def test_msub_empty_payload() -> None:
    h = Harness()
    h.feed(frame(b'+MSUB: "/t",0 byte,', b"CLOSED"))
    assert h.events == [urc(b'+MSUB: "/t",0 byte,'), urc(b"CLOSED")]


def test_msub_payload_over_capacity_is_discarded_and_stream_stays_in_sync() -> None:
    payload = (b"CLOSED\r\n" * 600)[: DATA_CAPACITY + 1]
    h = Harness()
    h.send(b"AT+CSQ", NOW, TIMEOUT)
    h.feed(b"\r\n+MSUB: /t,%d byte," % len(payload) + payload + frame(b"PUBACK", b"OK"))
    assert h.events == [urc(b"PUBACK"), rsp(b"AT+CSQ")]
    assert h.ch.data_dropped == 1
    assert h.ch.urcs == 1


def test_malformed_msub_lines_are_plain_urcs() -> None:
    h = Harness()
    lines = [b'+MSUB: "/t",x byte,', b'+MSUB: "/t" 3 byte,', b"+MSUB: 3 byte,", b'+MSUB: "/t",3']
    h.feed(frame(*lines))
    assert h.events == [urc(line) for line in lines]
    assert [msub_topic(line) for line in lines] == [b""] * 4


@pytest.mark.parametrize(
    ("line", "topic"),
    [
        (
            b'+MSUB: "/b0FMK1Ga5cp/862991419835241/get",11 byte,',
            b"/b0FMK1Ga5cp/862991419835241/get",
        ),
        (b"+MSUB:/x,0 byte,", b"/x"),
        (b'+MSUB: "",2 byte,', b""),
        (b"CLOSED", b""),
        (b"+MSUB:", b""),
        (b"", b""),
        (b'+MSUB: "/t,1234567890 byte,', b""),
    ],
)
def test_msub_topic(line: bytes, topic: bytes) -> None:
    assert msub_topic(line) == topic


# --------------------------------------------------------------------------------------------
# Overflow, timeouts, injection, reset


def test_overlong_line_is_dropped_and_the_response_still_completes() -> None:
    h = Harness()
    h.send(b"AT+CSQ", NOW, TIMEOUT)
    h.feed(b"\r\n" + b"A" * 5000 + b"\r\n+CSQ: 3,0\r\n" + frame(b"OK"), cuts=[1000, 2049, 4000])
    assert h.events == [rsp(b"AT+CSQ", lines=(b"+CSQ: 3,0",))]
    assert h.ch.lines_dropped == 1


def test_overlong_urc_like_line_is_not_delivered() -> None:
    h = Harness()
    h.feed(b"CLOSED" + b"x" * LINE_CAPACITY + b"\r\n" + frame(b"CLOSED"))
    assert h.events == [urc(b"CLOSED")]
    assert h.ch.lines_dropped == 1


def test_line_of_exactly_capacity_is_kept_one_more_byte_is_dropped() -> None:
    h = Harness()
    h.send(b"AT+X", NOW, TIMEOUT)
    h.feed(frame(b"B" * LINE_CAPACITY, b"C" * (LINE_CAPACITY + 1), b"OK"))
    assert h.events == [rsp(b"AT+X", lines=(b"B" * LINE_CAPACITY,))]
    assert h.ch.lines_dropped == 1


def test_timeout_across_the_32_bit_wrap_fires_once_and_late_ok_is_stray() -> None:
    h = Harness()
    start = 2**32 - 100
    h.send(b"AT+CGATT?", start, 500)
    assert h.ch.busy
    assert h.ch.deadline == 400 == ms_add(start, 500)
    for now in (start, 2**32 - 1, 0, 399):
        h.ch.check_timeout(now)
    assert h.events == []
    h.ch.check_timeout(400)
    assert h.events == [rsp(b"AT+CGATT?", AtResult.TIMEOUT)]
    assert not h.ch.busy and h.ch.deadline is None
    h.ch.check_timeout(401)
    h.ch.check_timeout(2**31)
    assert len(h.events) == 1  # once
    h.feed(frame(b"+CGATT: 1", b"OK"), now=450)
    assert h.events == [rsp(b"AT+CGATT?", AtResult.TIMEOUT), urc(b"+CGATT: 1")]
    assert h.ch.stray_lines == 1


def test_timeout_keeps_the_lines_received_so_far() -> None:
    h = Harness()
    h.send(b"AT+CSQ", NOW, 10)
    h.feed(frame(b"+CSQ: 5,0"))
    h.ch.check_timeout(NOW + 10_000)
    assert h.events == [rsp(b"AT+CSQ", AtResult.TIMEOUT, lines=(b"+CSQ: 5,0",))]


def test_final_code_fed_before_check_timeout_wins() -> None:
    h = Harness()
    h.send(b"AT", NOW, 10)
    h.feed(frame(b"OK"), now=NOW + 500)
    h.ch.check_timeout(NOW + 500)
    assert h.events == [rsp(b"AT")]


@pytest.mark.parametrize("timeout", [-5, 0, 2**40])
def test_odd_timeouts_are_clamped(timeout: int) -> None:
    h = Harness()
    h.send(b"AT", NOW, timeout)
    deadline = h.ch.deadline
    assert deadline is not None
    h.ch.check_timeout(NOW)
    assert (h.events == []) == (timeout > 0)  # a huge timeout must not wrap into the past


@pytest.mark.parametrize(
    "command", [b"AT+X\r\nAT+RESET", b"AT\rAT+RESET", b"AT\nAT+RESET", b"AT+X\x00", b"\r", b"\n"]
)
def test_injection_is_refused_and_reported_as_error(command: bytes) -> None:
    h = Harness()
    h.send(command, NOW, TIMEOUT)
    assert h.written == []
    assert h.events == [rsp(command, AtResult.ERROR)]
    assert not h.ch.busy and h.ch.deadline is None
    assert h.ch.commands_refused == 1
    h.send(b"AT", NOW, TIMEOUT)
    h.feed(frame(b"OK"))
    assert h.written == [b"AT\r"]
    assert h.events[-1] == rsp(b"AT")


def test_send_while_busy_is_ignored() -> None:
    h = Harness()
    h.send(b"AT+CSQ", NOW, TIMEOUT)
    h.send(b"AT+RESET", NOW + 1, 10)
    assert h.written == [b"AT+CSQ\r"]
    assert h.ch.deadline == NOW + TIMEOUT
    h.feed(frame(b"+CSQ: 1,1", b"OK"))
    assert h.events == [rsp(b"AT+CSQ", lines=(b"+CSQ: 1,1",))]
    assert h.ch.commands_refused == 1


def test_reset_forgets_command_partial_line_and_payload() -> None:
    h = Harness()
    h.send(b"AT+CGATT?", NOW, TIMEOUT)
    h.feed(b"\r\n+CGA")
    h.ch.reset()
    assert not h.ch.busy and h.ch.deadline is None
    h.feed(b"TT: 1\r\n")  # the rest of the forgotten partial line
    h.ch.check_timeout(NOW + 10 * TIMEOUT)
    assert h.events == []  # no callback for the forgotten command, ever
    assert h.ch.stray_lines == 1
    h.feed(b"\r\n+MSUB: /t,50 byte,abc")
    h.ch.reset()  # the module rebooted mid-payload
    h.feed(frame(b"RDY"))
    assert h.events == [urc(b"RDY")]


def test_reset_forgets_an_awaited_prompt() -> None:
    h = Harness()
    h.send(b"AT+MPUBEX=3", NOW, TIMEOUT, expect_prompt=True)
    h.ch.reset()
    h.send(b"AT+X", NOW, TIMEOUT)
    h.feed(b"\r\n> \r\n" + frame(b"OK"))
    assert h.events == [rsp(b"AT+X", lines=(b"> ",))]


# --------------------------------------------------------------------------------------------
# Garbage never raises


def test_all_256_byte_values_never_raise_and_are_just_lines() -> None:
    everything = bytes(range(256))
    h = Harness()
    h.feed(everything)
    h.feed(everything, cuts=list(range(256)))
    h.feed(b"\r\n")
    assert h.ch.stray_lines == 5  # 0..9 | 11..12 | 14..255 + 0..9 | 11..12 | 14..255
    h.send(b"AT", NOW, TIMEOUT)
    h.feed(everything + frame(b"OK"))
    assert h.events == [
        rsp(b"AT", lines=(bytes(range(10)), bytes([11, 12]), bytes(range(14, 256))))
    ]
    for value in range(256):
        h.feed(bytes([value]) * 3)
    h.ch.reset()
    h.send(b"AT", NOW, TIMEOUT)
    h.feed(frame(b"OK"))
    assert h.events[-1] == rsp(b"AT")


# Well-formed pieces, half-pieces and noise, so the fuzz reaches every receive state.
TOKENS = [
    b"\r\nOK\r\n",
    b"\r\nERROR\r\n",
    b"\r\n+CME ERROR: 3\r\n",
    b"\r\nDOWNLOAD\r\n",
    b"\r\n> ",
    b"\r\nCLOSED\r\n",
    b"\r\n+CGATT: 1\r\n",
    b"\r\n+MSUB: /t,",
    b"\r\n+MSUB: /t,3 byte,",
    b'\r\n+MSUB: "/a,b",',
    b"\r\n+HTTPREAD: ",
    b"\r\n+HTTPREAD: 5\r\n",
    b" byte,",
    b"\r",
    b"\n",
    b",",
    b'"',
    b"AT+HTTPREAD\r",
    b"\x00",
    b"\xff",
]
COMMANDS = [(b"AT+CGATT?", False), (b"AT+HTTPREAD", False), (b"AT+HTTPDATA=4,100", True)]


def fuzz(seed: int, tokens: list[bytes] = TOKENS,
         commands: list[tuple[bytes, bool]] = COMMANDS, max_step_ms: int = 50) -> Harness:
    """Random streams against random commands; checks the invariants, returns the harness."""
    rng = Xorshift32(seed)
    h = Harness()
    now = 2**32 - 5000  # cross the wrap on the way
    sends = 0
    prompts_answered = 0
    for _ in range(6000):
        if not h.ch.busy and rng.next() % 3 == 0:
            command, prompt = commands[rng.next() % len(commands)]
            h.send(command, now, 50 + rng.next() % 2000, expect_prompt=prompt)
            sends += 1
        prompts = sum(1 for e in h.events if e[0] == "rsp" and e[2] == AtResult.PROMPT)
        if h.ch.busy and prompts > prompts_answered:
            h.ch.send_data(b"body", 4, now, 500)
            prompts_answered = prompts
        chunk = bytearray()
        for _ in range(rng.next() % 6):
            r = rng.next()
            if r % 5 == 0:
                chunk += b"%d" % (r % 12 if r & 0x100 else r % 5000)
            elif r % 5 == 1:
                chunk.append((r >> 8) & 0xFF)
            else:
                chunk += tokens[(r >> 8) % len(tokens)]
        h.ch.feed(bytes(chunk), now)
        now = ms_add(now, rng.next() % max_step_ms)
        h.ch.check_timeout(now)
    rsps = [e for e in h.events if e[0] == "rsp"]
    urcs = [e for e in h.events if e[0] == "urc"]
    finals = [e for e in rsps if e[2] != AtResult.PROMPT]
    # every command gets exactly one final answer (a PROMPT is not one)
    assert len(finals) == sends - (1 if h.ch.busy else 0)
    assert h.ch.urcs == len(urcs)
    assert all(len(e[4]) <= MAX_INFO_LINES for e in rsps)  # type: ignore[arg-type]
    assert all(len(e[2]) <= DATA_CAPACITY for e in urcs)  # type: ignore[arg-type]
    assert h.ch.payloads_truncated == len(h.truncations)
    h.ch.reset()
    h.send(b"AT", now, TIMEOUT)
    h.feed(frame(b"OK"), now=now)
    assert h.events[-1] == rsp(b"AT")
    return h


def test_fuzz_random_token_streams_keep_the_one_answer_per_command_invariant() -> None:
    runs = [fuzz(seed) for seed in (0xC0FFEE, 0xA1272, 7919)]
    events = [e for h in runs for e in h.events]
    # the fuzz is only worth something if it reached every path
    assert {e[2] for e in events if e[0] == "rsp"} == set(AtResult)
    assert any(e[0] == "urc" and e[2] for e in events), "no +MSUB payload delivered"
    assert any(e[0] == "rsp" and e[5] for e in events), "no +HTTPREAD body delivered"
    assert all(h.ch.data_dropped > 0 and h.ch.stray_lines > 0 for h in runs)


# --------------------------------------------------------------------------------------------
# Resynchronisation: a length-counted payload that came short (bytes lost on the UART)

STALL = PAYLOAD_STALL_FLOOR_MS  # payload_stall_ms(115200): the floor decides at this rate


def test_stall_window_follows_the_line_rate_with_a_floor() -> None:
    assert payload_stall_ms(115200) == PAYLOAD_STALL_FLOOR_MS
    assert payload_stall_ms(300) > PAYLOAD_STALL_FLOOR_MS  # 32 characters at 300 baud: ~1.1 s
    assert Harness(baud=300).ch.stall_ms == payload_stall_ms(300)


def test_truncated_msub_does_not_swallow_the_next_commands_ok() -> None:
    h = Harness()
    h.send(b"AT+MQTTSTATU", NOW, TIMEOUT)
    header = b'+MSUB: "/t",100 byte,'
    # 40 of 100 payload bytes arrive, then the answer of the command in flight
    h.feed(b"\r\n" + header + b"x" * 40 + b"\r\n" + frame(b"+MQTTSTATU :1", b"OK"))
    assert h.events == []  # swallowed as payload bytes, for now
    assert h.ch.receive_deadline == NOW + STALL
    h.ch.check_timeout(NOW + STALL - 1)
    assert h.events == []
    h.ch.check_timeout(NOW + STALL)
    assert h.events == [rsp(b"AT+MQTTSTATU", lines=(b"+MQTTSTATU :1",))]  # not a timeout
    assert h.truncations == [(header, 100, 40 + 2 + len(frame(b"+MQTTSTATU :1", b"OK")))]
    assert h.ch.payloads_truncated == 1 and h.ch.urcs == 0  # the message is dropped
    assert h.ch.receive_deadline is None
    h.send(b"AT", NOW + STALL, TIMEOUT)
    h.feed(frame(b"OK"))
    assert h.events[-1] == rsp(b"AT")  # in sync again


def test_truncated_payload_in_a_busy_stream_is_closed_when_it_overruns() -> None:
    # The stream never pauses long enough to look stalled: the payload's own length is the
    # limit (twice its line time plus a slack), then what it swallowed is read as lines.
    h = Harness()
    header = b"+MSUB: /t,4000 byte,"
    h.feed(b"\r\n" + header + b"lost-bytes")
    now = NOW
    fed = 0
    while h.ch.payloads_truncated == 0:
        assert fed < 100, "never closed"
        now += STALL - 1
        h.feed(frame(b"PUBACK"), now=now)
        fed += 1
        h.ch.check_timeout(now)
    assert h.events == [urc(b"PUBACK")] * fed
    assert h.truncations == [(header, 4000, 10 + fed * len(frame(b"PUBACK")))]


def test_truncated_httpread_body_is_flagged_and_its_ok_still_completes_the_command() -> None:
    h = Harness()
    h.send(b"AT+HTTPREAD", NOW, TIMEOUT)
    h.feed(b"\r\n+HTTPREAD: 120\r\n" + AUTH_REPLY[:80] + frame(b"OK"))
    h.ch.check_timeout(NOW + STALL)
    assert h.events == [rsp(b"AT+HTTPREAD", lines=(b"+HTTPREAD: 120",))]  # no data
    assert h.truncated_flags == [True]
    assert h.truncations == [(b"+HTTPREAD: 120", 120, 86)]
    h.send(b"AT+HTTPREAD", NOW + STALL, TIMEOUT)  # the flag belongs to one command
    h.feed(httpread_stream(b"abc", b"\r\nOK\r\n"))
    assert h.events[-1] == rsp(b"AT+HTTPREAD", lines=(b"+HTTPREAD: 3",), data=b"abc")
    assert h.truncated_flags == [True, False]


def test_httpread_header_ending_in_a_bare_cr_then_a_stall_is_a_truncated_payload() -> None:
    # The wait for the LF after `+HTTPREAD: n\r` is part of the payload: it stalls alike, so
    # the OK that comes long after it is the command's answer, not 5 bytes of body.
    h = Harness()
    h.send(b"AT+HTTPREAD", NOW, TIMEOUT)
    h.feed(b"\r\n+HTTPREAD: 5\r")
    assert h.ch.receive_deadline == NOW + STALL
    h.ch.check_timeout(NOW + STALL - 1)
    assert h.truncations == []
    h.ch.check_timeout(NOW + 2000)
    assert h.truncations == [(b"+HTTPREAD: 5", 5, 0)]
    assert h.ch.receive_deadline is None and h.ch.payloads_truncated == 1
    h.feed(b"\r\nOK\r\n", now=NOW + 2000)
    assert h.events == [rsp(b"AT+HTTPREAD", lines=(b"+HTTPREAD: 5",))]  # no data
    assert h.truncated_flags == [True]


@pytest.mark.parametrize("boot", [frame(b"RDY", b"+CFUN: 1"), b"\r\n\xff\x00RDY\r\n+CFUN: 1\r\n"])
def test_module_reboot_in_the_middle_of_an_httpread_body_is_recognised(boot: bytes) -> None:
    h = Harness()
    h.send(b"AT+HTTPREAD", NOW, TIMEOUT)
    h.feed(b"\r\n+HTTPREAD: 300\r\n" + AUTH_REPLY[:50])
    h.feed(boot, now=NOW + 5)  # a fast boot: no pause long enough between the two
    h.ch.check_timeout(NOW + 5 + STALL)
    assert h.events == [urc(b"RDY"), urc(b"+CFUN: 1")]  # long before the command's deadline
    assert h.ch.busy and h.ch.payloads_truncated == 1


def test_whole_payload_with_its_line_end_late_is_delivered_when_nothing_follows() -> None:
    h = Harness()
    h.feed(b"\r\n+MSUB: /t,3 byte,abc")
    assert h.events == [] and h.ch.receive_deadline == NOW + STALL
    h.ch.check_timeout(NOW + STALL)
    assert h.events == [urc(b"+MSUB: /t,3 byte,", b"abc")]
    assert h.ch.payloads_truncated == 0


def test_a_payload_that_pauses_shorter_than_the_stall_window_is_whole() -> None:
    h = Harness()
    h.feed(b"\r\n+MSUB: /t,6 byte,ab")
    now = NOW
    for piece in (b"cd", b"ef\r\n"):  # in all longer than the window, each gap shorter
        now += STALL - 1
        h.ch.check_timeout(now)
        h.feed(piece, now=now)
    assert h.events == [urc(b"+MSUB: /t,6 byte,", b"abcdef")]


# --------------------------------------------------------------------------------------------
# Line noise before a line (a UART while the module boots)


@pytest.mark.parametrize("noise", [b"\xff\x00", b"\xf8", b"\x00\x00\xe0\xfe", b"\x1b"])
def test_rdy_after_line_noise_is_recognised(noise: bytes) -> None:
    h = Harness()
    h.feed(noise + b"RDY\r\n" + noise + b"+CFUN: 1\r\n")
    assert h.events == [urc(b"RDY"), urc(b"+CFUN: 1")]
    h.send(b"AT+MSUB=\"/t\",0", NOW, TIMEOUT)
    h.feed(noise + b"OK\r\n" + noise + b'+MSUB: "/t",2 byte,hi\r\n')
    assert h.events[2:] == [rsp(b'AT+MSUB="/t",0'), urc(b'+MSUB: "/t",2 byte,', b"hi")]


# --------------------------------------------------------------------------------------------
# Final codes with no command in flight, `ERROR: <n>`


def test_refused_mconnect_error_after_ok_is_its_outcome_as_a_urc() -> None:
    h = Harness()
    h.send(b"AT+MCONNECT=1,120", NOW, TIMEOUT, final_urc=True)
    h.feed(frame(b"OK"))
    h.feed(frame(b"ERROR"))
    assert h.events == [rsp(b"AT+MCONNECT=1,120"), urc(b"ERROR")]
    h.feed(frame(b"ERROR"))  # only the first one after the OK is the command's
    assert h.ch.stray_lines == 1
    h.send(b"AT+MCONNECT=1,120", NOW, TIMEOUT, final_urc=True)
    h.feed(frame(b"OK", b"CONNACK OK"))
    h.send(b"AT+MSUB=\"/t\",0", NOW, TIMEOUT)  # a new command closes the window ...
    h.ch.check_timeout(NOW + TIMEOUT)
    h.feed(frame(b"ERROR"))  # ... so a late ERROR after its timeout is stray again
    assert h.events[-2:] == [urc(b"CONNACK OK"), rsp(b'AT+MSUB="/t",0', AtResult.TIMEOUT)]
    assert h.ch.stray_lines == 2


def test_without_final_urc_an_unsolicited_error_stays_stray() -> None:
    h = Harness()
    h.send(b"AT+MIPCLOSE", NOW, TIMEOUT)
    h.feed(frame(b"OK", b"ERROR"))
    assert h.events == [rsp(b"AT+MIPCLOSE")]
    assert h.ch.stray_lines == 1
    h.send(b"AT+MCONNECT=1,120", NOW, TIMEOUT, final_urc=True)
    h.feed(frame(b"ERROR", b"ERROR"))  # refused at once: the final answer, no window
    assert h.events[1:] == [rsp(b"AT+MCONNECT=1,120", AtResult.ERROR)]
    assert h.ch.stray_lines == 2


@pytest.mark.parametrize(("line", "code"), [(b"ERROR: 3", 3), (b"ERROR:601", 601),
                                            (b"ERROR: x", -1)])
def test_http_error_with_a_number_is_a_final_answer(line: bytes, code: int) -> None:
    h = Harness()
    h.send(b"AT+HTTPACTION=1", NOW, TIMEOUT)
    h.feed(frame(line))
    assert h.events == [rsp(b"AT+HTTPACTION=1", AtResult.ERROR, cme=code)]
    assert is_final_code(line) and not is_final_code(b"ERRORS") and not is_final_code(b"OKAY")


# --------------------------------------------------------------------------------------------
# +MSUB: cache notices, hex payloads, topics that look like headers


def test_cache_mode_notice_is_not_a_message() -> None:
    assert [msub_cache_slot(x) for x in (b"+MSUB: 0", b"+MSUB:3", b"+MSUB: 2 ")] == [0, 3, 2]
    for line in (b'+MSUB: "/t",3 byte,', b"+MSUB: ", b"+MSUB: x", b"+CGATT: 1", b"+MSUB: 12"):
        assert msub_cache_slot(line) == -1
    assert msub_topic(b"+MSUB: 0") == b""


def hex_mode(h: Harness) -> None:
    h.send(b"AT+MQTTMODE=1", NOW, TIMEOUT)
    h.feed(frame(b"OK"))


@pytest.mark.parametrize("digits", [b"313233", b"0aFf00"])
def test_hex_mode_downlink_of_2n_digits_is_decoded(digits: bytes) -> None:
    stream = b'\r\n+MSUB: "/t",3 byte,' + digits + b"\r\n" + frame(b"PUBACK")
    expected = [urc(b'+MSUB: "/t",3 byte,', bytes.fromhex(digits.decode())), urc(b"PUBACK")]
    for k in range(len(stream) + 1):
        h = Harness()
        hex_mode(h)
        h.feed(stream, cuts=[k])
        assert h.events[1:] == expected, f"split at {k}"
        assert h.ch.hex_payloads_possible


def test_text_payload_of_hex_digits_stays_text_in_and_after_hex_mode() -> None:
    h = Harness()
    hex_mode(h)
    h.feed(b'\r\n+MSUB: "/t",6 byte,313233\r\n')  # the module had not switched yet
    h.send(b"AT+MQTTMODE=0", NOW, TIMEOUT)
    h.feed(b'\r\n+MSUB: "/t",3 byte,616263\r\n' + frame(b"OK"))  # sent before it switched
    h.feed(b'\r\n+MSUB: "/t",6 byte,313233\r\n')
    assert h.events[1:] == [urc(b'+MSUB: "/t",6 byte,', b"313233"),
                            urc(b'+MSUB: "/t",3 byte,', b"abc"),
                            rsp(b"AT+MQTTMODE=0"),
                            urc(b'+MSUB: "/t",6 byte,', b"313233")]
    assert not h.ch.hex_payloads_possible


def test_hex_payload_missing_digits_is_truncated_and_the_stream_resyncs() -> None:
    h = Harness()
    hex_mode(h)
    h.feed(b'\r\n+MSUB: "/t",3 byte,3132\r\n' + frame(b"PUBACK"))
    assert h.events[1:] == [urc(b"PUBACK")]
    assert h.truncations == [(b'+MSUB: "/t",3 byte,', 3, 4)]


def test_reset_forgets_hex_mode() -> None:
    h = Harness()
    hex_mode(h)
    h.ch.reset()  # the module rebooted: text mode
    assert not h.ch.hex_payloads_possible


@pytest.mark.parametrize(
    ("head", "topic"),
    [
        (b'+MSUB: "/a",1 byte,b",5 byte,', b'/a",1 byte,b'),
        (b'+MSUB: "/a",0 byte,",5 byte,', b'/a",0 byte,'),
        (b'+MSUB: "x",1 byte,y",2 byte,z",5 byte,', b'x",1 byte,y",2 byte,z'),
        (b"+MSUB: /a,1 byte,b,5 byte,", b"/a,1 byte,b"),
    ],
)
def test_topic_containing_a_header_lookalike_does_not_split_early(head: bytes,
                                                                  topic: bytes) -> None:
    stream = b"\r\n" + head + b"hello\r\n" + frame(b"PUBACK")
    for k in range(len(stream) + 1):
        h = Harness()
        h.feed(stream, cuts=[k])
        assert h.events == [urc(head, b"hello"), urc(b"PUBACK")], f"split at {k}"
        assert h.ch.msub_resplits >= 1 and h.ch.stray_lines == 0
    assert msub_topic(head) == topic


# The resync paths: hex mode, header lookalikes inside topics, truncation by stall and overrun.
RESYNC_TOKENS = [*TOKENS, b'\r\n+MSUB: "/a",1 byte,', b'",5 byte,', b"3132", b"ff", b"\xff\x00RDY",
                 b"\r\nERROR: 3\r\n", b"\r\n+MSUB: 2\r\n"]
RESYNC_COMMANDS = [*COMMANDS, (b"AT+MQTTMODE=1", False), (b"AT+MQTTMODE=0", False)]


def test_fuzz_the_resync_paths_keep_the_one_answer_per_command_invariant() -> None:
    # steps up to 150 ms: two quiet ones in a row stall a payload (the window is 200 ms)
    runs = [fuzz(seed, RESYNC_TOKENS, RESYNC_COMMANDS, 150) for seed in (0xBEEF, 31337, 4242)]
    assert all(h.ch.payloads_truncated > 0 for h in runs)
    assert any(h.ch.msub_resplits > 0 for h in runs)
    hex_seen = [e for h in runs for e in h.events if e[0] == "urc" and e[1].startswith(b"+MSUB")]
    assert hex_seen, "no +MSUB payload delivered"


# --------------------------------------------------------------------------------------------
# The caller's buffers (the controller hands its line buffer, data buffer and info arena over)


def owned_harness(line: int = LINE_CAPACITY, data: int = DATA_CAPACITY,
                  arena: int = 6144) -> tuple[Harness, bytearray, bytearray, bytearray]:
    bufs = bytearray(line), bytearray(data), bytearray(arena)
    h = Harness(line_buf=bufs[0], data_buf=bufs[1], info_arena=bufs[2])
    return (h, *bufs)


def test_the_channel_works_in_the_buffers_it_is_given() -> None:
    h, line_buf, data_buf, arena = owned_harness()
    h.send(b"AT+HTTPREAD", NOW, TIMEOUT)
    h.feed(b"\r\n+HTTPREAD: 128\r\n" + AUTH_REPLY + b"\r\n" + frame(b"OK"))
    h.feed(b"\r\n" + MSUB_GET + b"hello world\r\n")
    assert h.events == [rsp(b"AT+HTTPREAD", lines=(b"+HTTPREAD: 128",), data=AUTH_REPLY),
                        urc(MSUB_GET, b"hello world")]
    resp = h.ch._response
    # The info line and the body are spans of the arena, one after the other.
    assert resp.arena is arena and resp.line_count == 1
    assert arena[resp.line_start[0]:resp.line_end(0)] == b"+HTTPREAD: 128"
    assert resp.data_start == resp.line_end(0) and resp.data_length == len(AUTH_REPLY)
    assert arena[resp.data_start:resp.data_start + resp.data_length] == AUTH_REPLY
    # The message was assembled in the caller's line and data buffers; none was replaced.
    assert line_buf.startswith(MSUB_GET) and data_buf.startswith(b"hello world")
    assert (h.ch._line, h.ch._data) == (line_buf, data_buf)
    assert h.ch._line is line_buf and h.ch._data is data_buf
    assert (len(line_buf), len(data_buf), len(arena)) == (LINE_CAPACITY, DATA_CAPACITY, 6144)


def test_a_downlink_between_the_body_and_its_ok_leaves_the_body_alone() -> None:
    # The body sits in the arena, not in the data buffer the downlink's payload is read into.
    h = Harness()
    h.send(b"AT+HTTPREAD", NOW, TIMEOUT)
    h.feed(b"\r\n+HTTPREAD: 128\r\n" + AUTH_REPLY + b"\r\n" + b"\r\n" + MSUB_GET
           + b"hello world\r\n" + frame(b"OK"))
    assert h.events == [urc(MSUB_GET, b"hello world"),
                        rsp(b"AT+HTTPREAD", lines=(b"+HTTPREAD: 128",), data=AUTH_REPLY)]


def test_info_lines_that_do_not_fit_the_arena_are_dropped_and_counted() -> None:
    h, _line, _data, _arena = owned_harness(arena=16)
    h.send(b"AT+LIST", NOW, TIMEOUT)
    h.feed(frame(b"0123456789", b"abcdefghij", b"xyz", b"OK"))
    assert h.events == [rsp(b"AT+LIST", lines=(b"0123456789", b"xyz"))]
    assert h.ch.info_lines_dropped == 1


def test_a_command_buffer_without_room_for_the_cr_is_refused() -> None:
    h = Harness()
    buf = bytearray(b"AT+CSQ")
    h.ch.send(buf, len(buf), NOW, TIMEOUT)
    assert h.written == [] and h.ch.commands_refused == 1 and not h.ch.busy
    assert h.events == [rsp(b"AT+CSQ", AtResult.ERROR)]
    roomy = bytearray(b"AT+CSQ?")  # one byte more: the CR goes there
    h.ch.send(roomy, 6, NOW, TIMEOUT)
    assert h.written == [b"AT+CSQ\r"] and roomy == b"AT+CSQ\r"


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_runs_copied_in_one_slice_digest_like_single_bytes(chunk: int) -> None:
    """The line fast path (find the line end, copy the run) gives the events one byte at a
    time gives, for the seed exchanges and noise around them."""
    stream = b"".join(ex.reply for ex in SEED if ex.command is None)
    stream = b"\xff\x00" + stream + b"\r\r\n\n" + b"x" * (LINE_CAPACITY + 5) + b"\r\nPUBACK\r\n"
    whole = Harness()
    whole.feed(stream)
    pieces = Harness()
    pieces.feed(stream, cuts=list(range(chunk, len(stream), chunk)))
    assert pieces.events == whole.events and whole.events
    assert pieces.ch.lines_dropped == whole.ch.lines_dropped == 1


def test_lines_that_mean_nothing_are_passed_to_on_ignored_and_no_others() -> None:
    """The echo, a late final code, a stray line: what a log of both directions still needs
    to see. A URC, the answer's lines and its final code are not "ignored" (their own
    callbacks carry them); a +HTTPREAD body read after a timeout is no line at all."""
    ignored: list[bytes] = []
    h = Harness(on_ignored=lambda line: ignored.append(bytes(line)))
    h.send(b"AT+CSQ", NOW, 300)
    h.feed(b"AT+CSQ\r" + frame(b"+CEREG: 1", b"+CSQ: 24,99", b"OK"))
    assert ignored == [b"AT+CSQ"]
    assert h.events[-1][:3] == ("rsp", b"AT+CSQ", AtResult.OK)
    assert h.events[-1][4] == (b"+CSQ: 24,99",)
    h.feed(frame(b"OK", b"hello there") + b"\xff\x00junk\r\n")
    assert ignored == [b"AT+CSQ", b"OK", b"hello there", b"\xff\x00junk"]  # as received
    assert h.ch.stray_lines == 3
    h.send(b"AT+HTTPREAD", NOW, 300)
    h.ch.check_timeout(NOW + 301)  # timed out: its late body is read and discarded
    h.feed(frame(b"+HTTPREAD: 9") + b"OK\r\nOK\r\n" + b"\r\n")
    assert ignored[4:] == [b"+HTTPREAD: 9"] and h.ch.data_dropped == 1
