"""What may travel inside AT+MPUB: escaping, classification, topic checks, injection safety; and
the simulator's reading of it back (`airfsm.sim.mpub`)."""

from __future__ import annotations

import random
import re

import pytest

from airfsm.core.payload import (
    MAX_PAYLOAD_HEX_RAW,
    MAX_PAYLOAD_TEXT,
    MAX_TOPIC,
    check_message,
    check_qos,
    check_topic,
    classify_payload,
    encode_mpub_command,
    escape_mpub,
    escaped_length,
)
from airfsm.sim.mpub import decode_mpub_command, unescape_mpub

TOPIC = "/b0FMK1Ga5cp/862991419835241/update"
_COMMAND_RE = re.compile(rb'^AT\+MPUB="([^"]*)",([01]),0,"([^"]*)"$')
_ESCAPE_RE = re.compile(rb"\\([0-9A-F]{2})")


def independent_decode(command: bytes, hex_mode: bool) -> tuple[bytes, int, bytes]:
    """Parse a command the way the module does, written apart from the code under test."""
    m = _COMMAND_RE.match(command)
    assert m is not None, command
    topic, qos, msg = m.group(1), int(m.group(2)), m.group(3)
    if hex_mode:
        assert re.fullmatch(rb"(?:[0-9A-F]{2})*", msg), msg
        return topic, qos, bytes.fromhex(msg.decode())
    # every backslash must start one of the four escapes, and nothing else may need one
    assert msg.count(b"\\") == len(_ESCAPE_RE.findall(msg))
    payload = _ESCAPE_RE.sub(lambda e: bytes([int(e.group(1), 16)]), msg)
    return topic, qos, payload


def assert_safe(command: bytes) -> None:
    assert b"\r" not in command and b"\n" not in command and b"\0" not in command
    assert command.count(b'"') == 4  # the message itself never holds a quote
    assert all(0x20 <= b <= 0x7E for b in command), command  # printable ASCII only
    assert command.startswith(b'AT+MPUB="') and command.endswith(b'"')


def send(payload: bytes, qos: int = 1) -> tuple[bytes, bool]:
    """Encode `payload` in whichever mode classify_payload picks."""
    kind, reason = classify_payload(payload)
    assert kind in ("text", "hex"), reason
    hex_mode = kind == "hex"
    return encode_mpub_command(TOPIC, payload, qos, hex_mode), hex_mode


# --- escaping -------------------------------------------------------------------------------

def test_escape_mpub_writes_the_four_escapes() -> None:
    assert escape_mpub(b'a"b\rc\nd\\e') == b"a\\22b\\0Dc\\0Ad\\5Ce"


def test_escape_mpub_leaves_other_bytes_alone() -> None:
    text = bytes(range(0x20, 0x7F)).replace(b'"', b"").replace(b"\\", b"")
    assert escape_mpub(text) == text
    assert escape_mpub(b"") == b""


def test_a_literal_escape_sequence_in_the_payload_survives() -> None:
    # "\22" typed by a user must arrive as those three characters, not as a quote
    assert escape_mpub(b"\\22") == b"\\5C22"
    assert unescape_mpub(escape_mpub(b"\\22")) == b"\\22"


def test_escaped_length_matches_escape() -> None:
    rng = random.Random(7)
    for _ in range(300):
        payload = bytes(rng.choice(b'ab"\r\n\\ \x00\xff') for _ in range(rng.randrange(40)))
        assert escaped_length(payload) == len(escape_mpub(payload))


@pytest.mark.parametrize("broken", [b"\\", b"\\2", b"ab\\zz", b"\\2g"])
def test_unescape_rejects_broken_escapes(broken: bytes) -> None:
    with pytest.raises(ValueError):
        unescape_mpub(broken)


# --- classification -------------------------------------------------------------------------

def test_printable_ascii_with_crlf_is_text() -> None:
    assert classify_payload(b'{"temp": 21.5}\r\n') == ("text", None)
    assert classify_payload(b"") == ("text", None)


@pytest.mark.parametrize("payload", [
    b"a\tb",  # TAB: not in the module's escape list, so hex
    b"\x00", b"\x01", b"\x1b[2J", b"\x7f", "温度".encode(), b"\xff\xfe",
])
def test_non_text_bytes_need_hex(payload: bytes) -> None:
    assert classify_payload(payload) == ("hex", None)
    kind, reason = classify_payload(payload, hex_allowed=False)
    assert kind == "refuse" and reason and "\n" not in reason


def test_text_size_limit_counts_escapes() -> None:
    exactly = b"a" * (MAX_PAYLOAD_TEXT - 6) + b'""'  # 1018 + 2*3 = 1024 escaped
    assert escaped_length(exactly) == MAX_PAYLOAD_TEXT
    assert classify_payload(exactly) == ("text", None)
    over = b"a" + exactly  # 1025 escaped, 1021 raw: too big for hex too
    kind, reason = classify_payload(over)
    assert kind == "refuse" and reason is not None and "1025" in reason


def test_quote_heavy_text_falls_back_to_hex_when_that_fits() -> None:
    assert classify_payload(b'"' * 341) == ("text", None)  # 1023 escaped
    assert classify_payload(b'"' * 342) == ("hex", None)  # 1026 escaped, 684 hex digits
    assert classify_payload(b'"' * 342, hex_allowed=False)[0] == "refuse"
    assert classify_payload(b'"' * (MAX_PAYLOAD_HEX_RAW + 1))[0] == "refuse"


def test_hex_size_limit() -> None:
    assert MAX_PAYLOAD_HEX_RAW == MAX_PAYLOAD_TEXT // 2
    assert classify_payload(b"\x00" * MAX_PAYLOAD_HEX_RAW) == ("hex", None)
    kind, reason = classify_payload(b"\x00" * (MAX_PAYLOAD_HEX_RAW + 1))
    assert kind == "refuse" and reason is not None and str(MAX_PAYLOAD_HEX_RAW) in reason


def test_plain_text_limit() -> None:
    assert classify_payload(b"a" * MAX_PAYLOAD_TEXT) == ("text", None)
    assert classify_payload(b"a" * (MAX_PAYLOAD_TEXT + 1))[0] == "refuse"


# --- topics ---------------------------------------------------------------------------------

def test_good_topics_pass() -> None:
    assert check_topic(TOPIC) is None
    assert check_topic("/sys/pk/dn/thing/event/property/post") is None
    assert check_topic("/" + "a" * (MAX_TOPIC - 1)) is None


@pytest.mark.parametrize(("topic", "word"), [
    ("", "empty"),
    ("/a/" + "b" * MAX_TOPIC, "long"),
    ('/a/"b', '"'),
    ("/a/b\r", "CR"),
    ("/a/b\nAT+RESET", "LF"),
    ("/a/\x00", "NUL"),
    ("/a/\x07", "control"),
    ("/a/\x7f", "DEL"),
    ("/a/\t", "TAB"),
    ("/a/é", "non-ASCII"),
    ("/a/温度", "non-ASCII"),
    ("/a/+/b", "wildcard"),
    ("/a/#", "wildcard"),
    ("/a/\\22", "\\"),
])
def test_bad_topics_are_refused_with_a_reason(topic: str, word: str) -> None:
    reason = check_topic(topic)
    assert reason is not None and word in reason
    assert "\n" not in reason and "\r" not in reason
    with pytest.raises(ValueError, match="bad topic"):
        encode_mpub_command(topic, b"x", 0, hex_mode=False)


# --- the command ----------------------------------------------------------------------------

def test_exact_text_command() -> None:
    command = encode_mpub_command("/pk/dn/update", b'{"t":1}', 1, hex_mode=False)
    assert command == b'AT+MPUB="/pk/dn/update",1,0,"{\\22t\\22:1}"'


def test_exact_hex_command_is_uppercase() -> None:
    command = encode_mpub_command("/pk/dn/update", b"\x00\xab\n", 0, hex_mode=True)
    assert command == b'AT+MPUB="/pk/dn/update",0,0,"00AB0A"'


def test_hex_mode_sends_text_payloads_as_hex_too() -> None:
    command = encode_mpub_command("/t", b'hi"', 1, hex_mode=True)
    assert command.endswith(b',"686922"')


@pytest.mark.parametrize("qos", [2, -1, True, "1", None])
def test_bad_qos_is_refused(qos: object) -> None:
    assert check_qos(qos) is not None
    with pytest.raises(ValueError, match="qos"):
        encode_mpub_command("/t", b"x", qos, hex_mode=False)  # type: ignore[arg-type]


def test_text_mode_refuses_payloads_that_need_hex() -> None:
    with pytest.raises(ValueError, match="NUL"):
        encode_mpub_command("/t", b"a\x00b", 1, hex_mode=False)
    with pytest.raises(ValueError, match="too large"):
        encode_mpub_command("/t", b"a" * (MAX_PAYLOAD_TEXT + 1), 1, hex_mode=False)
    with pytest.raises(ValueError, match="too large"):
        encode_mpub_command("/t", b"a" * (MAX_PAYLOAD_HEX_RAW + 1), 1, hex_mode=True)


def test_injection_attempt_stays_inside_the_message() -> None:
    evil = b'x"\r\nAT+RESET\r\nAT+MPUB="/other",0,0,"y'
    command, hex_mode = send(evil)
    assert not hex_mode
    assert_safe(command)
    topic, qos, payload = independent_decode(command, hex_mode)
    assert (topic, qos, payload) == (TOPIC.encode(), 1, evil)


# --- properties -----------------------------------------------------------------------------

@pytest.mark.parametrize("byte", range(256))
def test_every_byte_value_round_trips_safely(byte: int) -> None:
    for payload in (bytes([byte]), b"a" + bytes([byte]) * 3 + b"z"):
        for qos in (0, 1):
            command, hex_mode = send(payload, qos)
            assert_safe(command)
            assert independent_decode(command, hex_mode) == (TOPIC.encode(), qos, payload)
            assert decode_mpub_command(command, hex_mode) == (TOPIC, qos, 0, payload)
        # hex mode carries every byte value
        command = encode_mpub_command(TOPIC, payload, 1, hex_mode=True)
        assert_safe(command)
        assert independent_decode(command, True)[2] == payload


def _random_payload(rng: random.Random) -> bytes:
    length = rng.choice([rng.randrange(0, 16), rng.randrange(0, 600), rng.randrange(300, 1100)])
    alphabet = rng.choice([
        bytes(range(256)),
        bytes(range(0x20, 0x7F)) + b"\r\n",
        b'"\\\r\n',
        b'ab"\\\r\n{}:,',
    ])
    return bytes(rng.choice(alphabet) for _ in range(length))


@pytest.mark.parametrize("seed", range(8))
def test_random_payloads_round_trip_or_are_refused(seed: int) -> None:
    rng = random.Random(seed)
    seen = {"text": 0, "hex": 0, "refuse": 0}
    for _ in range(250):
        payload = _random_payload(rng)
        kind, reason = classify_payload(payload)
        seen[kind] += 1
        if kind == "refuse":
            assert reason and "\n" not in reason
            with pytest.raises(ValueError):
                encode_mpub_command(TOPIC, payload, 1, hex_mode=False)
            with pytest.raises(ValueError):
                encode_mpub_command(TOPIC, payload, 1, hex_mode=True)
            continue
        assert reason is None
        hex_mode = kind == "hex"
        command = encode_mpub_command(TOPIC, payload, 1, hex_mode)
        assert_safe(command)
        msg = command.split(b",", 3)[3][1:-1]
        assert len(msg) <= MAX_PAYLOAD_TEXT
        assert independent_decode(command, hex_mode) == (TOPIC.encode(), 1, payload)
        assert decode_mpub_command(command + b"\r", hex_mode)[3] == payload
        if not hex_mode:
            assert unescape_mpub(escape_mpub(payload)) == payload
    assert seen["text"] and seen["hex"] and seen["refuse"]  # the generator covers all three


def test_decode_rejects_non_mpub_lines() -> None:
    for line in (b"AT+MSUB=\"/t\",0", b'AT+MPUB="/t",1,0,"a"b"', b"AT+MPUB=/t,1,0,x"):
        with pytest.raises(ValueError):
            decode_mpub_command(line, hex_mode=False)


def test_check_message_is_the_one_enqueue_rule() -> None:
    assert check_message("/pk/dn/update", b"ok", 1) is None
    assert check_message("/pk/dn/update", b"\x00bin", 0) is None  # hex mode carries it
    assert check_message("/pk/dn/update", b"\x00bin", 0, hex_allowed=False) is not None
    assert "qos" in (check_message("/pk/dn/update", b"x", 2) or "")
    assert check_message('/pk/"dn', b"x", 1) is not None
    assert "string" in (check_message(b"/pk", b"x", 1) or "")
    assert "bytes" in (check_message("/pk", "text", 1) or "")
    assert "too large" in (check_message("/pk", b"x" * (MAX_PAYLOAD_TEXT + 1), 1) or "")
