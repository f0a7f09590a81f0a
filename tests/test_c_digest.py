"""The C hashes and HMACs (port/c/core/digest.c): the published vectors, then hashlib/hmac as the
oracle over thousands of random inputs, all under ASan+UBSan."""

from __future__ import annotations

import hashlib
import hmac
import random
import re

import pytest

from tests.cport import PORT_C, hexfield, make, require_host_compiler, run_harness

DIGESTS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256}


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    require_host_compiler()
    make("harnesses")


def test_known_answers_pass_under_the_sanitizers() -> None:
    out = make("check")
    assert "all vectors pass" in out
    assert "FAIL" not in out
    # Every vector of the table ran: the RFC 1321 suite, FIPS 180 incl. the million 'a', the HMACs.
    for name in ("md5 digits x8", "sha1 million a", "sha256 896 bits", "hmac-md5 rfc2202 7",
                 "hmac-sha1 rfc2202 6", "hmac-sha256 rfc4231 7", "seed sign"):
        assert f"ok   {name}" in out


def test_the_vector_table_agrees_with_hashlib() -> None:
    """The expected values in test_vectors.c are the published ones; hashlib confirms each, so a
    typo in the table cannot hide behind a matching typo in the code."""
    source = (PORT_C / "tests" / "test_vectors.c").read_text()
    checked = 0
    plain = r'TEXT\(""\),\s*TEXT\("([^"]*)"\),\s*1,\s*"([0-9a-f]+)"'  # unkeyed, not repeated
    for text, expected in re.findall(plain, source):
        name = {32: "md5", 40: "sha1", 64: "sha256"}[len(expected)]
        assert DIGESTS[name](text.encode()).hexdigest() == expected
        checked += 1
    assert checked >= 12
    assert hashlib.sha1(b"a" * 1_000_000).hexdigest() in source
    assert hashlib.sha256(b"a" * 1_000_000).hexdigest() in source
    key = bytes([0xAA] * 131)
    msg = b"Test Using Larger Than Block-Size Key - Hash Key First"
    assert hmac.new(key, msg, hashlib.sha256).hexdigest() in source
    assert hmac.new(bytes(range(1, 26)), b"\xcd" * 50, hashlib.md5).hexdigest() in source


def _random_bytes(rng: random.Random, max_len: int) -> bytes:
    # Lengths cluster around the block edges (55/56/63/64/65 ...), where padding bugs live.
    edge = rng.choice([0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129])
    length = rng.choice([edge, rng.randrange(max_len + 1)])
    return rng.randbytes(length)


def test_hashes_and_hmacs_match_hashlib_on_random_inputs() -> None:
    rng = random.Random(9)
    requests: list[str] = []
    expected: list[str] = []
    for i in range(3000):
        name = rng.choice(list(DIGESTS))
        data = _random_bytes(rng, 600 if i % 10 else 5000)
        chunk = rng.choice([0, 0, 1, 3, 63, 64, 65, rng.randrange(1, 200)])
        if rng.random() < 0.5:
            key = _random_bytes(rng, 200)  # keys longer than a block are hashed first
            requests.append(f"hmac-{name} {hexfield(key)} {hexfield(data)} {chunk}")
            expected.append(hmac.new(key, data, DIGESTS[name]).hexdigest())
        else:
            requests.append(f"{name} - {hexfield(data)} {chunk}")
            expected.append(DIGESTS[name](data).hexdigest())
    answers = run_harness("digest-harness", requests)
    mismatches = [(r[:80], a, e) for r, a, e in zip(requests, answers, expected, strict=True)
                  if a != e]
    assert not mismatches, f"{len(mismatches)} of {len(requests)} differ, e.g. {mismatches[:3]}"
