"""The C AT+MPUB writer (port/c/core/payload.c) against its Python twin (airfsm/core/payload.py):
put_mpub over thousands of random topics, payloads, QoS values, modes and buffer sizes (injection
attempts included), the topic check, the payload's form and its escaping, under ASan+UBSan with
every buffer exactly as long as it says."""

from __future__ import annotations

import random

import pytest

from airfsm.core import payload
from tests.cport import hexfield, make, require_host_compiler, run_harness

INJECTIONS = [b'"\r\nAT+RESET\r\n', b'",1,0,"x', b"\\22", b"\\5C22", b"\r", b"\n", b'"', b"\\",
              b"\x00", b"\tTAB", b"AT+MPUB=\"/x\",0,0,\"y\"\r"]


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    require_host_compiler()
    make("harnesses")


def python_topic(topic: bytes) -> str:
    """The str a Python caller would pass for these bytes (UTF-8 where it is, else Latin-1:
    either way the first non-ASCII byte is the first non-ASCII character, at the same offset)."""
    try:
        return topic.decode("utf-8")
    except UnicodeDecodeError:
        return topic.decode("latin-1")


def random_topic(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.5:
        return b"/" + bytes(rng.choice(b"abcXYZ019_-/.") for _ in range(rng.randrange(60)))
    if r < 0.6:
        return b"/t" * rng.choice([63, 64, 65])  # around the 128-character limit
    if r < 0.8:
        topic = bytearray(b"/pk/dn/update")
        topic.insert(rng.randrange(len(topic) + 1), rng.choice(b'"\\+#\x00\x7f\x1f\r\n'))
        return bytes(topic)
    if r < 0.9:
        return "/é/日本".encode() if rng.random() < 0.5 else b"/\xff\xfe"
    return bytes(rng.getrandbits(8) for _ in range(rng.randrange(8)))


def random_payload(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.3:
        return bytes(rng.randrange(0x20, 0x7F) for _ in range(rng.randrange(200)))
    if r < 0.45:
        return b"".join(rng.choice(INJECTIONS) for _ in range(rng.randrange(1, 8)))
    if r < 0.6:
        size = rng.choice([payload.MAX_PAYLOAD_HEX_RAW, payload.MAX_PAYLOAD_HEX_RAW + 1,
                           payload.MAX_PAYLOAD_TEXT, payload.MAX_PAYLOAD_TEXT + 1, 341, 342])
        return bytes(rng.choice(b'a"\r') for _ in range(size))
    if r < 0.75:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(600)))
    if r < 0.85:
        return b""
    return b'{"temp":21.5,"note":"a\\b"}\r\n'


def test_put_mpub_agrees_with_python() -> None:
    rng = random.Random(0x4D505542)
    requests, expected = [], []
    for _ in range(4000):
        topic, body = random_topic(rng), random_payload(rng)
        qos = rng.choice([0, 1, 0, 1, 2, -1, 7])
        hex_mode = rng.random() < 0.4
        cap = rng.choice([payload.MPUB_MAX + 1, payload.MPUB_MAX + 1, 1280, 0, 1, 20,
                          rng.randrange(300)])
        out = bytearray(cap)
        n = payload.put_mpub(out, python_topic(topic), body, qos, hex_mode)
        requests.append(f"mpub {cap} {qos} {int(hex_mode)} {hexfield(topic)} {hexfield(body)}")
        expected.append(f"mpub {n} {hexfield(bytes(out[:n]))}" if n >= 0 else f"mpub {n}")
    answers = run_harness("payload-harness", requests)
    assert answers == expected
    written = [a for a in answers if not a.startswith("mpub -")]
    # Every kind of answer came up, and every command written is one safe line.
    codes = {int(a.split(" ")[1]) for a in answers} & {-1, -2, -3, -4}
    assert codes == {-1, -2, -3, -4} and len(written) > 500
    for answer in written:
        command = bytes.fromhex(answer.split(" ")[2][1:])
        assert b"\r" not in command and b"\n" not in command and b"\0" not in command
        assert command.count(b'"') == 4


def test_put_mpub_writes_at_the_limits_into_a_buffer_of_exactly_the_size() -> None:
    topic = b"/" + b"t" * (payload.MAX_TOPIC - 1)
    body = b"a" * payload.MAX_PAYLOAD_TEXT
    requests = [f"mpub {cap} 1 0 {hexfield(topic)} {hexfield(body)}"
                for cap in (payload.MPUB_MAX, payload.MPUB_MAX + 1)]
    requests += [f"mpub {payload.MPUB_MAX + 1} 0 1 {hexfield(topic)} "
                 f"{hexfield(bytes(range(256)) * 2)}"]
    answers = run_harness("payload-harness", requests)
    assert answers[0] == f"mpub {payload.MPUB_NO_ROOM}"  # no byte left for the CR
    assert answers[1].startswith(f"mpub {payload.MPUB_MAX} ")
    assert answers[2].startswith(f"mpub {9 + 128 + 2 + 1 + 4 + 1024 + 1} ")


def test_topic_form_and_escaping_agree_with_python() -> None:
    rng = random.Random(77)
    requests, expected = [], []
    for _ in range(3000):
        topic = random_topic(rng)
        fault, pos = payload.topic_fault(python_topic(topic))
        requests.append(f"topic {hexfield(topic)}")
        expected.append(f"topic {fault} {pos}")
        body = random_payload(rng)
        for hex_allowed in (0, 1):
            requests.append(f"form {hex_allowed} {hexfield(body)}")
            expected.append(f"form {payload.payload_form(body, hex_allowed=bool(hex_allowed))}")
        requests.append(f"escape {hexfield(body)}")
        expected.append(f"escape {payload.escaped_length(body)} "
                        f"{hexfield(payload.escape_mpub(body))}")
        requests.append(f"nontext {hexfield(body)}")
        expected.append(f"nontext {payload._first_non_text(body)}")
    assert run_harness("payload-harness", requests) == expected
