"""The C text parsing and time base (port/c/core/textparse.c, timebase.h/.c) against their Python
twins (airfsm/core/textparse.py, timebase.py), over the unit tests' cases and thousands of
generated ones, under ASan+UBSan (every buffer exactly as long as its bytes)."""

from __future__ import annotations

import random

import pytest

from airfsm.core.textparse import field_span, field_uint, hex_value, parse_uint, put_uint
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
from tests.cport import hexfield, make, require_host_compiler, run_harness


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    require_host_compiler()
    make("harnesses")


def text_bytes(rng: random.Random) -> bytes:
    alphabet = b"0123456789 ,:+-\"xAF\x00\xff"
    kind = rng.random()
    if kind < 0.5:
        return bytes(rng.choice(alphabet) for _ in range(rng.randrange(16)))
    if kind < 0.8:
        fields = [str(rng.choice([0, 1, 99, 200, 999_999_999, 1_000_000_000,
                                  rng.getrandbits(32)])).encode() for _ in range(rng.randrange(4))]
        return rng.choice([b"+CSQ: ", b"+X:", b"", b"+Y :"]) + b", ".join(fields)
    return bytes(rng.getrandbits(8) for _ in range(rng.randrange(20)))


def bounds(rng: random.Random, n: int) -> tuple[int, int]:
    a, b = rng.randint(0, n), rng.randint(0, n)
    return min(a, b), max(a, b)


def test_textparse_agrees_with_python() -> None:
    rng = random.Random(0x7E57)
    cases = [b"0", b" 42 ", b"999999999", b"1000000000", b"", b"  ", b"-1", b"1 2", b"+5",
             b"\xd9\xa3", b"+CGATT: 1", b"+CGATT:0", b"+MQTTSTATU :1", b'+SAPBR: 1,1,"10.0.0.2"',
             b"+HTTPACTION: 1,200,112", b"+CSQ: 18", b"12,34", b'+SAPBR: 1, 1 , "10.0.0.2"',
             b'OK\x00+SAPBR: 1,1,"10.0.0.2"\x00+CSQ: 9,9']
    requests: list[str] = []
    expected: list[str] = []
    for text in cases + [text_bytes(rng) for _ in range(3000)]:
        for start, end in [(0, len(text)), *(bounds(rng, len(text)) for _ in range(3))]:
            requests.append(f"uint {start} {end} {hexfield(text)}")
            expected.append(f"uint {parse_uint(text, start, end)}")
            for index in range(4):
                first, stop = field_span(text, index, start, end)
                requests.append(f"field {index} {start} {end} {hexfield(text)}")
                expected.append(f"field {first} {stop}")
                requests.append(f"fielduint {index} {start} {end} {hexfield(text)}")
                expected.append(f"fielduint {field_uint(text, index, start, end)}")
    requests.append("fielduint 0 0 0 -")  # Python's None
    expected.append(f"fielduint {field_uint(None, 0)}")
    for b in range(256):
        requests.append(f"hex {b}")
        expected.append(f"hex {hex_value(b)}")
    for _ in range(3000):
        cap = rng.randrange(14)
        at = rng.randrange(cap + 2)
        value = rng.choice([0, 7, 9, 10, 99, 100, 120000, MS_MASK, rng.getrandbits(32),
                            rng.randrange(1000)])
        limit = rng.choice([cap, rng.randrange(20), 100])
        out = bytearray(b"." * cap)
        end = put_uint(out, at, value, limit)
        requests.append(f"put {cap} {at} {value} {limit}")
        expected.append(f"put {end} {hexfield(bytes(out))}")
    assert run_harness("textparse-harness", requests) == expected


def test_xorshift_sequences_agree_with_python() -> None:
    rng = random.Random(5)
    seeds = [0, 1, 7, 0x2545F491, MS_MASK, 0x80000000, seed_from_text("862991419835241")]
    seeds += [rng.getrandbits(32) for _ in range(200)]
    requests, expected = [], []
    for seed in seeds:
        gen = Xorshift32(seed)
        state = gen.state
        values = [gen.next() for _ in range(1000)]
        requests.append(f"rng {seed} 1000")
        expected.append("rng " + " ".join(str(v) for v in [state, *values]))
    assert run_harness("timebase-harness", requests) == expected


def test_seed_from_text_agrees_with_python_on_ascii_names() -> None:
    rng = random.Random(6)
    names = ["862991419835241", "dev", "", "x" * 1000, "a_b.c@d:e-f"]
    names += ["".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(rng.randrange(40)))
              for _ in range(500)]
    requests = [f"seed {hexfield(name.encode('ascii'))}" for name in names]
    assert run_harness("timebase-harness", requests) == [f"seed {seed_from_text(n)}" for n in names]


def test_backoff_agrees_with_python() -> None:
    rng = random.Random(8)
    requests, expected = [], []
    for _ in range(2000):
        seed = rng.getrandbits(32)
        base = rng.choice([0, 1, 100, 200, 1000, 2000, 4096, 60_000, 1 << 30, 2**31 - 1,
                           rng.getrandbits(32)])
        cap = rng.choice([base, base + 1, 200, 60_000, 120_000, 2**31 - 1, MS_MASK,
                          rng.getrandbits(32)])
        attempts = [rng.choice([0, 1, 2, 3, 12, 20, 21, 22, 40, 1000, MS_MASK])
                    for _ in range(rng.randrange(1, 60))]
        gen = Xorshift32(seed)
        delays = [backoff_ms(a, base, cap, gen) for a in attempts]
        requests.append(f"backoff {seed} {base} {cap} " + " ".join(map(str, attempts)))
        expected.append("backoff " + " ".join(str(d) for d in [*delays, gen.state]))
    assert run_harness("timebase-harness", requests) == expected


def test_wrap_safe_time_agrees_with_python() -> None:
    rng = random.Random(9)
    edges = [0, 1, 2**31 - 1, 2**31, 2**31 + 1, MS_MASK - 1, MS_MASK]
    pairs = [(a, b) for a in edges for b in edges]
    pairs += [(rng.getrandbits(32), rng.getrandbits(32)) for _ in range(2000)]
    requests, expected = [], []
    for a, b in pairs:
        requests.append(f"time {a} {b}")
        expected.append(f"time {ms_add(a, b)} {ms_diff(a, b)} {int(ms_reached(a, b))}")
        for has_a in (0, 1):
            for has_b in (0, 1):
                earliest = ms_earliest(a if has_a else None, b if has_b else None)
                requests.append(f"earliest {has_a} {a} {has_b} {b}")
                expected.append(f"earliest {'-' if earliest is None else earliest}")
    assert run_harness("timebase-harness", requests) == expected
