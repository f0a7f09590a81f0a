"""The C auth form and reply scan (port/c/core/aliyun.c) against their Python twins in
airfsm/core/aliyun.py: the seed vector, then thousands of generated identities, parameter sets
and auth replies, hostile ones included, each run through both and compared field by field. The
C side runs under ASan+UBSan, and every reply is handed to it in a buffer of exactly its length,
so a read past the end fails the test.

Where the two knowingly differ (both bounds the Python lacks, see aliyun.h): a JSON integer code
of more than 9 digits is "no integer code" in C; nesting deeper than AIRFSM_JSON_MAX_DEPTH is
"not JSON" in C. The generators stay inside the depth; the code case is mapped explicitly.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from typing import Any

import pytest

from airfsm.core import aliyun
from tests.cport import hexfield, make, require_host_compiler, run_harness, unhexfield
from tests.harness import SEED_DN, SEED_DS, SEED_PK

METHODS = list(aliyun.SIGN_METHODS)  # the C enum's order
JSON_MAX_DEPTH = 32  # port/c/core/airfsm_config.h


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    require_host_compiler()
    make("harnesses")


# --- the form ----------------------------------------------------------------------------------


@dataclass
class Identity:
    product_key: str
    device_name: str
    secret: str
    region: str | None
    client_id: str | None
    method: int  # index into METHODS; len(METHODS) is an unknown method
    timestamp: int | None
    spare: int = 1  # bytes of room beyond what the body needs (<= 0: too small)


def body_request(ident: Identity, cap: int) -> str:
    ts = "-" if ident.timestamp is None else str(ident.timestamp)
    fields = (ident.product_key, ident.device_name, ident.secret, ident.region, ident.client_id)
    return f"body {ident.method} {ts} {cap} " + " ".join(hexfield(f) for f in fields)


def python_body(ident: Identity) -> tuple[str, str, bytes] | tuple[str, str]:
    """("ok", sign, body) or ("error", STATUS) as the C harness would say it."""
    region = aliyun.DEFAULT_REGION if ident.region is None else ident.region
    identity = aliyun.DeviceIdentity(ident.product_key, ident.device_name, ident.secret, region,
                                     ident.client_id)
    method = METHODS[ident.method] if ident.method < len(METHODS) else "hmacsha512"
    try:
        params = aliyun.auth_params(identity, method, ident.timestamp)
        body = aliyun.auth_body(identity, method, ident.timestamp)
    except ValueError as exc:
        field = str(exc).split()[0]
        status = "BAD_METHOD" if field == "unknown" else "BAD_" + field.upper()
        return ("error", status)
    return ("ok", params["sign"], body)


def test_seed_vector() -> None:
    ident = Identity(SEED_PK, SEED_DN, SEED_DS, None, None, 0, None)
    [answer] = run_harness("aliyun-harness", [body_request(ident, 113)])
    ok, sign, body = answer.split(" ")
    assert (ok, sign, len(body)) == ("ok", "1eb96463ad2345b6c261e2f7cc78a7a0", 112)
    assert body.encode() == aliyun.auth_body(aliyun.DeviceIdentity(SEED_PK, SEED_DN, SEED_DS))


def test_body_needs_room_for_its_nul() -> None:
    ident = Identity(SEED_PK, SEED_DN, SEED_DS, None, None, 0, None)
    answers = run_harness("aliyun-harness", [body_request(ident, cap)
                                             for cap in (0, 1, 50, 111, 112, 113)])
    assert answers[:5] == ["error NO_ROOM"] * 5
    assert answers[5].startswith("ok ")


NAME_CHARS = string.ascii_letters + string.digits + "_.@:-"
HOSTILE_CHARS = ' "\'\\%&=+/?#\t\x7f\x01é中😀~'


def _text(rng: random.Random, chars: str, lo: int, hi: int, hostile: float) -> str:
    n = rng.randint(lo, hi)
    pool = chars + HOSTILE_CHARS if rng.random() < hostile else chars
    return "".join(rng.choice(pool) for _ in range(n))


def _identity(rng: random.Random) -> Identity:
    pk = _text(rng, string.ascii_letters + string.digits, 0, 66, 0.1)
    dn = _text(rng, NAME_CHARS, 2, 34, 0.1)
    secret = _text(rng, "".join(chr(c) for c in range(0x20, 0x7F)), 0, 80, 0.05)
    region = rng.choice([None, "cn-shanghai", "ap-southeast-1", "", "CN", "eu-central-1",
                         _text(rng, "abcdefgh-0123", 1, 70, 0.1)])
    client_id = rng.choice([None, None, "", _text(rng, NAME_CHARS, 0, 66, 0.1)])
    method = rng.choice([0, 0, 1, 2, 3])
    timestamp = rng.choice([None, 0, 1589511374876, rng.randrange(2**63)])
    return Identity(pk, dn, secret, region, client_id, method, timestamp)


def test_bodies_match_python_on_generated_identities() -> None:
    rng = random.Random(91)
    idents = [_identity(rng) for _ in range(2500)]
    expected = [python_body(i) for i in idents]
    requests = []
    for ident, exp in zip(idents, expected, strict=True):
        body_len = len(exp[2]) if exp[0] == "ok" else 0
        ident.spare = rng.choice([1, 1, 1, 5, 0, -3])
        requests.append(body_request(ident, max(0, body_len + ident.spare)))
    answers = run_harness("aliyun-harness", requests)
    valid = 0
    for ident, exp, answer in zip(idents, expected, answers, strict=True):
        if exp[0] == "ok":
            valid += 1
            if ident.spare <= 0:
                assert answer == "error NO_ROOM", (ident, answer)
            else:
                assert answer == f"ok {exp[1]} {exp[2].decode('ascii')}", ident
        else:
            assert answer == f"error {exp[1]}", ident
    assert 300 < valid < 2200  # both kinds are well represented


def test_sign_matches_python_on_arbitrary_parameter_sets() -> None:
    rng = random.Random(92)
    names = ["productKey", "deviceName", "clientId", "timestamp", "sign", "signmethod",
             "version", "resources", "a", "B", "z", "é", "Ω"]
    requests, expected = [], []
    for _ in range(1500):
        params: dict[str, str] = {}
        for _ in range(rng.randrange(0, 12)):
            name = rng.choice(names + [_text(rng, string.ascii_letters, 1, 8, 0.3)])
            params[name] = _text(rng, string.printable.strip(), 0, 40, 0.2)
        secret = _text(rng, string.ascii_letters + string.digits, 1, 100, 0.2)
        method = rng.randrange(len(METHODS))
        fields = " ".join(f"{hexfield(n)} {hexfield(v)}" for n, v in params.items())
        requests.append(f"sign {method} {hexfield(secret)} {fields}".rstrip())
        expected.append("ok " + aliyun.sign(params, secret, METHODS[method]))
    assert run_harness("aliyun-harness", requests) == expected


def test_sign_refuses_what_it_cannot_do() -> None:
    too_many = " ".join(f"{hexfield(f'p{i}')} {hexfield('v')}" for i in range(33))
    answers = run_harness("aliyun-harness", [f"sign 3 {hexfield('k')}",
                                             f"sign 0 {hexfield('k')} {too_many}"])
    assert answers == ["error BAD_METHOD", "error BAD_PARAMS"]


# --- the reply ---------------------------------------------------------------------------------

# The C reasons, from the Python's messages (aliyun.parse_auth_reply words each case its own way).
FIXED_MESSAGES = {
    "reply is not UTF-8 text": "NOT_UTF8",
    "reply is empty": "EMPTY",
    "reply is not a JSON object": "NOT_OBJECT",
    "reply has no integer code": "NO_CODE",
    "reply has code 200 but no data object": "NO_DATA",
    "reply has code 200 but no iotId": "NO_IOT_ID",
    "reply has code 200 but no iotToken": "NO_IOT_TOKEN",
}


def python_reply(body: bytes) -> str:
    """The harness's answer line, as the Python twin sees `body`."""
    try:
        reply = aliyun.parse_auth_reply(body)
    except UnicodeEncodeError:
        # A lone surrogate (\ud800) in iotId/iotToken: the Python raises here (a bug of the
        # Python twin, reported); the C calls such a credential unusable.
        return "PYTHON_RAISES"
    code, message = reply.code, reply.message
    if reply.ok:
        reason = "OK"
    elif isinstance(code, int) and abs(code) > 999_999_999:
        code, reason = -1, "NO_CODE"  # the bound the C adds: no integer code of 10+ digits
    elif message in FIXED_MESSAGES and code in (-1, 200):
        reason = FIXED_MESSAGES[message]
    elif code == -1 and message.startswith("reply is not valid JSON"):
        reason = "NOT_JSON"
    elif code == 200 and message.startswith("reply iotId is unusable"):
        reason = "BAD_IOT_ID"
    elif code == 200 and message.startswith("reply iotToken is unusable"):
        reason = "BAD_IOT_TOKEN"
    else:
        assert code != 200, message
        reason = "REFUSED"
    host = (reply.mqtt_host or "").encode() if reply.ok else b""
    port = (reply.mqtt_port or 0) if reply.ok else 0
    return (f"code={code} reason={reason} id={hexfield(reply.iot_id)} "
            f"token={hexfield(reply.iot_token)} host={hexfield(host)} port={port}")


class Raw:
    """JSON text written as is (NaN, -0, 1e999, a number of 5000 digits ...)."""

    def __init__(self, text: str) -> None:
        self.text = text


class Obj:
    """A JSON object as a list of pairs: keys may repeat (the last one wins in Python)."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


SPACES = ["", "", "", " ", "\n", "\t", "\r\n  "]  # JSON's whitespace
PYTHON_SPACES = [chr(c) for c in range(0x110000) if chr(c).isspace()]  # what str.strip() strips


def _encode_str(rng: random.Random, text: str, escape: float) -> str:
    out = ['"']
    for ch in text:
        cp = ord(ch)
        if ch in '"\\' or cp < 0x20 or rng.random() < escape:
            if ch in '"\\/' and rng.random() < 0.5:
                out.append("\\" + ch)
            elif 0xD800 <= cp <= 0xDFFF or cp < 0x10000:
                out.append(f"\\u{cp:04x}" if rng.random() < 0.5 else f"\\u{cp:04X}")
            else:  # a surrogate pair
                v = cp - 0x10000
                out.append(f"\\u{0xD800 + (v >> 10):04x}\\u{0xDC00 + (v & 0x3FF):04x}")
        elif ch == "/" and rng.random() < 0.3:
            out.append("\\/")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def emit(rng: random.Random, value: Any, escape: float = 0.05) -> str:
    """JSON text for `value` with random whitespace and escapes (each still valid JSON)."""
    def ws() -> str:
        return rng.choice(SPACES)

    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Obj):
        if not value.pairs:
            return "{" + ws() + "}"
        items = [ws() + _encode_str(rng, k, escape) + ws() + ":" + ws() + emit(rng, v, escape)
                 + ws() for k, v in value.pairs]
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(ws() + emit(rng, v, escape) + ws() for v in value) + ws() + "]"
    if isinstance(value, str):
        return _encode_str(rng, value, escape)
    return json.dumps(value)


CREDENTIAL_CHARS = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\')
BAD_CREDENTIAL_CHARS = ['"', "\\", "\x7f", "é", "\n", "\x00", "中", "\x1f"]


def _credential(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.06:
        return rng.choice([None, 7, True, [], Obj([]), ""])
    length = rng.choice([1, 32, rng.randint(1, 120), 255, 256, 257, 300])
    text = "".join(rng.choice(CREDENTIAL_CHARS) for _ in range(length))
    if roll < 0.15:
        at = rng.randrange(len(text))
        text = text[:at] + rng.choice(BAD_CREDENTIAL_CHARS) + text[at + 1:]
    return text


def _code(rng: random.Random) -> Any:
    if rng.random() < 0.5:
        return 200
    return rng.choice([
        200, 401, 460, 500, 5001, 6200, -1, 0, 999_999_999, -999_999_999,
        "200", " 200 ", "\u3000200\n", "0200", "-0", "+200", "2 00", "200x", "", "1234567890",
        "\u0085401", "２００", 200.0, Raw("2e2"), Raw("-0"), Raw("200.5"), True, False, None,
        [200], Obj([("v", 200)]), Raw("NaN"), Raw("Infinity"), Raw("-Infinity"),
        10**12, -(10**10),
    ])


HOSTS = ["a1b2.iot-as-mqtt.cn-shanghai.aliyuncs.com", "x", "1.2.3.4", "a-b.c", "-bad.host",
         "bad-.host", "under_score.com", "", "a" * 253, "a" * 254, "quote\".host", "spa ce.com",
         "é.com", 5, None, "host\\.com", "a..b"]
PORTS = [1883, 8883, "1883", " 443 ", 0, 1, 65535, 65536, -1, True, 1883.0, "abc", None, 10**10,
         "065535", "\u20031883"]


def _data(rng: random.Random) -> Any:
    if rng.random() < 0.05:
        return rng.choice([None, "data", [1, 2], 5, Obj([])])
    pairs: list[tuple[str, Any]] = []
    if rng.random() < 0.95:
        pairs.append(("iotId", _credential(rng)))
    if rng.random() < 0.95:
        pairs.append(("iotToken", _credential(rng)))
    if rng.random() < 0.5:
        mqtt = Obj([("host", rng.choice(HOSTS)), ("port", rng.choice(PORTS))])
        if rng.random() < 0.2:
            mqtt.pairs.pop(rng.randrange(2))
        resources: Any = Obj([("mqtt", mqtt)])
        if rng.random() < 0.1:
            resources = rng.choice([[mqtt], "mqtt", Obj([("mqtt", [1])])])
        pairs.append(("resources", resources))
    if rng.random() < 0.2:
        pairs.append(("extra", _junk(rng, rng.randint(1, 28))))
    return Obj(pairs)


def _junk(rng: random.Random, depth: int) -> Any:
    """A random JSON value nested up to `depth` deep, with Python's number extensions."""
    if depth <= 1 or rng.random() < 0.3:
        return rng.choice([0, -1, 3.25, "s", "", None, True, Raw("NaN"), Raw("1e999"),
                           Raw("-Infinity"), Raw("1" * 4300), "\ud800", "\udc00x", "a\u2028b"])
    if rng.random() < 0.5:
        return [_junk(rng, depth - 1) for _ in range(rng.randint(0, 2))]
    return Obj([(rng.choice(["code", "data", "iotId", "k", ""]), _junk(rng, depth - 1))
                for _ in range(rng.randint(0, 2))])


def _duplicate_somewhere(rng: random.Random, doc: Obj) -> None:
    """Repeat a key of the top object or of data with another value: the later one counts."""
    target = doc
    data = [v for k, v in doc.pairs if k == "data" and isinstance(v, Obj)]
    if data and rng.random() < 0.5:
        target = data[-1]
    if not target.pairs:
        return
    key, _ = rng.choice(target.pairs)
    replacement = {"code": _code, "data": _data}.get(key, _credential)(rng)
    if rng.random() < 0.3:
        replacement = rng.choice([None, 7, [], Obj([]), "", False])
    target.pairs.insert(rng.randint(0, len(target.pairs)), (key, replacement))


def _reply_text(rng: random.Random) -> str:
    pairs: list[tuple[str, Any]] = [("code", _code(rng)), ("data", _data(rng)),
                                    ("message", rng.choice(["success", "", "auth failed", 3]))]
    if rng.random() < 0.1:
        pairs.pop(rng.randrange(len(pairs)))
    rng.shuffle(pairs)
    doc = Obj(pairs)
    if rng.random() < 0.3:
        _duplicate_somewhere(rng, doc)
    text = emit(rng, doc, escape=rng.choice([0.0, 0.0, 0.05, 0.5]))
    if rng.random() < 0.03:
        text = emit(rng, rng.choice([[doc], "text", 200, None]))
    pad = ["", "", "", "", " ", "\n", "\x00", "\x00 \x00", " \x00\n", rng.choice(PYTHON_SPACES),
           rng.choice(PYTHON_SPACES) + "\x00" + rng.choice(PYTHON_SPACES)]
    if rng.random() < 0.02:
        pad = ["\ufeff", "x", "\x00x"]  # a BOM or a stray byte: not JSON to Python either
    return rng.choice(pad) + text + rng.choice(pad)


def _mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 3)):
        if not data:
            break
        at = rng.randrange(len(data))
        kind = rng.randrange(5)
        if kind == 0:
            del data[at:]
        elif kind == 1:
            data[at] = rng.randrange(256)
        elif kind == 2:
            data.insert(at, rng.choice(b'{}[]",:\\ \x00\x80\xc0\xed\xf5u0'))
        elif kind == 3:
            del data[at]
        else:
            data[at:at] = data[at:at + rng.randint(1, 20)]
    return bytes(data)


RAW_HOSTILE = [
    b"", b" ", b"\x00\x00", b"{}", b"[]", b"null", b"200", b'"x"', b"{", b"}", b'{"code"}',
    b'{"code":200,}', b'{"code":200 "data":{}}', b"{'code':200}", b'{"code":01}', b'{"code":-}',
    b'{"code":1.}', b'{"code":.5}', b'{"code":1e}', b'{"code":+1}', b'{"code":tru}',
    b'{"code":200}x', b'{"code":200}{}', b'\xef\xbb\xbf{"code":200}', b'{"code":"\xc0\x80"}',
    b'{"code":"\xed\xa0\x80"}', b'{"code":"\xf4\x90\x80\x80"}', b'{"code":"\xe2\x82"}',
    b'{"code":"\xe0\x80\xaf"}', b'{"code":"\xf0\x82\x82\xac"}', b'{"code":"\xc2\xa0"}',
    b'{"code":"\xf4\x8f\xbf\xbf"}', b'{"code":"\xbf"}', b'{"code":"\xe1\x80"}',
    b'{"code":"a\tb"}', b'{"code":"\\x"}', b'{"code":"\\u12"}', b'{"code":"\\u12g4"}',
    b'{"code":"\\ud800\\u"}', b'{"c\\u006fde":200,"data":{"iotId":"a","iotToken":"b"}}',
    b'{"code":200,"data":{"iotId":"a","iotToken":"b"},"code":401}',
    b'{"code":200,"data":{"iotId":"a","iotToken":"b"},"data":7}',
    b'{"code":200,"data":{"iotId":"a","iotToken":"b","iotId":""}}',
    b'{"code":200,"data":{"iotId":"a","iotToken":"b","iotId":null}}',
    b'{"code":200,"data":{"iotToken":"b","iotId":"a","iotToken":[]}}',
    b'{"code":200,"code":{},"data":{"iotId":"a","iotToken":"b"}}',
    b'{"code":"200","data":{"iotId":"a","iotToken":"b","resources":{"mqtt":{"host":"h",'
    b'"port":1}},"resources":null}}',
    b'{"code":200,"data":{"iotId":"a","iotToken":"b","resources":{"mqtt":{"host":"h",'
    b'"port":1},"mqtt":{"port":2}}}}',
    b'{"code":200,"data":{"iotId":"a","iotToken":"b","resources":{"mqtt":{"host":"h",'
    b'"port":1,"host":7}}}}',
    b'{"code":200,"data":{"iotId":"a","iotToken":"b","resources":{"mqtt":{"host":"h",'
    b'"port":65535}}}}',
    b'{"code":200,"data":{"iotId":"a","iotToken":"b","resources":{"mqtt":{"host":"h",'
    b'"port":" 65536"}}}}',
    b'{"code":"\\u3000\\u0085200\\u2028"}', b'{"code":"2\\u300000"}', b'{"code":"20\\u00300"}',
    b'\xe3\x80\x80{"code":401}\xc2\x85', b'\x1c{"code":401}\x1f', b'{"code":-' + b"1" * 4300 + b"}",
    b'{"code":200,"data":{"iotId":"\\ud83d\\ude00","iotToken":"b"}}',
    b'{"code":200,"data":{"iotId":"a","iotToken":"b","resources":{"mqtt":{"host":"a_b"}}}}',
    b'{"code":200,"d\\u0061ta":{"i\\u006ftId":"a","iotToken":"b","resources":{"m\\u0071tt":'
    b'{"h\\u006fst":"h\\u002ecom"}}}}',
    b'{"code":200,"data":{"iotId":"\\u0061\\/","iotToken":"\\ud83d\\ude00"}}',
    b'{"code":200,"data":{"iotId":"a","iotToken":"b","resources":{"mqtt":{"host":"h",'
    b'"port":"1883"}},"resources":{"mqtt":{"port":1}}}}',
    b'\x00 {"code":200,"data":{"iotId":"a","iotToken":"b"}} \x00',
    b'\x00 {"code":200} \x00 \x00', b'{"code":' + b"1" * 4300 + b"}",
    b'{"code":' + b"1" * 4301 + b"}", b'{"code":0.' + b"1" * 5000 + b"}",
    b"[" * JSON_MAX_DEPTH + b"]" * JSON_MAX_DEPTH, b'{"code":401,"data":' + b"[" * 31 + b"]" * 31
    + b"}",
]


def _compare(bodies: list[bytes]) -> dict[str, int]:
    answers = run_harness("aliyun-harness", [f"reply {hexfield(b)}" for b in bodies])
    seen: dict[str, int] = {}
    for body, answer in zip(bodies, answers, strict=True):
        expected = python_reply(body)
        if expected == "PYTHON_RAISES":
            assert "reason=BAD_IOT_" in answer, (body, answer)
        else:
            assert answer == expected, body
        reason = answer.split()[1]
        seen[reason] = seen.get(reason, 0) + 1
    return seen


def test_hand_written_hostile_replies_match_python() -> None:
    seen = _compare(RAW_HOSTILE)
    assert seen["reason=NOT_JSON"] > 20


def test_generated_replies_match_python() -> None:
    rng = random.Random(93)
    bodies = []
    for i in range(4000):
        body = _reply_text(rng).encode("utf-8", "surrogatepass")
        if i % 5 == 0:
            body = _mutate(rng, body)
        bodies.append(body)
    seen = _compare(bodies)
    # Every verdict is reached many times, so each rule is compared, not just the common path.
    for reason in ("OK", "NOT_UTF8", "NOT_JSON", "NOT_OBJECT", "NO_CODE", "REFUSED", "NO_DATA",
                   "NO_IOT_ID", "BAD_IOT_ID", "NO_IOT_TOKEN", "BAD_IOT_TOKEN"):
        assert seen.get(f"reason={reason}", 0) >= 10, (reason, seen)


def test_ok_replies_carry_the_credentials_and_endpoint() -> None:
    body = (b'{"code":200,"data":{"iotId":"id1","iotToken":"^1^1589511374876^27f6f5a03b709fc",'
            b'"resources":{"mqtt":{"host":"pk.iot-as-mqtt.cn-shanghai.aliyuncs.com",'
            b'"port":1883}}},"message":"success"}')
    [answer] = run_harness("aliyun-harness", [f"reply {hexfield(body)}"])
    fields = dict(part.split("=", 1) for part in answer.split())
    assert fields["reason"] == "OK"
    assert unhexfield(fields["token"]) == b"^1^1589511374876^27f6f5a03b709fc"
    assert unhexfield(fields["host"]) == b"pk.iot-as-mqtt.cn-shanghai.aliyuncs.com"
    assert fields["port"] == "1883"


def test_lone_surrogate_credentials_are_unusable_in_c() -> None:
    body = b'{"code":200,"data":{"iotId":"\\ud800","iotToken":"t"}}'
    [answer] = run_harness("aliyun-harness", [f"reply {hexfield(body)}"])
    assert "reason=BAD_IOT_ID" in answer


def test_the_bounds_the_c_adds() -> None:
    too_deep = b'{"code":200,"x":' + b"[" * JSON_MAX_DEPTH + b"]" * JSON_MAX_DEPTH + b"}"
    depth = JSON_MAX_DEPTH - 1  # with the top object: exactly the bound
    deep_enough = b'{"code":401,"x":' + b"[" * depth + b"]" * depth + b"}"
    big_code = b'{"code":1000000000}'
    answers = run_harness("aliyun-harness", [f"reply {hexfield(b)}"
                                             for b in (too_deep, deep_enough, big_code)])
    assert "reason=NOT_JSON" in answers[0]
    assert aliyun.parse_auth_reply(too_deep).code == 200  # Python reads it (no bound)
    assert answers[1].startswith("code=401 reason=REFUSED")
    assert answers[2].startswith("code=-1 reason=NO_CODE")
