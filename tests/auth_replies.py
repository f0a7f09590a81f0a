"""Auth replies for the tests of the reply scan: generators of valid, hostile and mutated bodies,
and the scan's specification written with Python's `json` module.

`airfsm.core.aliyun.parse_auth_reply` (no `json`) and its C twin `aliyun_parse_auth_reply` are
both hand-written scans; `reference_line` is what they must find, read the obvious way (`json`,
`re`), with the two bounds the scans add: nesting deeper than JSON_MAX_DEPTH is not JSON, and a
code of more than 9 digits is no integer code. Each result is written as the C harness's answer
line, so the three can be compared as strings.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from airfsm.core.aliyun import AuthReply
from tests.cport import hexfield

JSON_MAX_DEPTH = 32  # port/c/core/airfsm_config.h, aliyun.JSON_MAX_DEPTH


def reply_line(reply: AuthReply) -> str:
    """An AuthReply as the C harness writes its answer."""
    host = (reply.mqtt_host or "").encode() if reply.ok else b""
    port = (reply.mqtt_port or 0) if reply.ok else 0
    return (f"code={reply.code} reason={reply.reason.name} id={hexfield(reply.iot_id)} "
            f"token={hexfield(reply.iot_token)} host={hexfield(host)} port={port}")


def _line(code: int, reason: str, iot_id: str = "", token: str = "", host: str | None = None,
          port: int | None = None) -> str:
    return (f"code={code} reason={reason} id={hexfield(iot_id)} token={hexfield(token)} "
            f"host={hexfield((host or '').encode())} port={port or 0}")


_INT_TEXT = re.compile(r"-?[0-9]{1,9}")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?")
_CREDENTIAL = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]+")


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) <= 999_999_999 else None
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _found_credential(data: dict[str, Any], name: str) -> str | None:
    """data[name] if usable; "" if present but unusable; None if absent."""
    value = data.get(name)
    if not isinstance(value, str) or not value:
        return None
    if not _CREDENTIAL.fullmatch(value) or len(value) > 256:
        return ""
    return value


def reference_line(body: bytes) -> str:
    """What the scans must find in `body`, as a harness answer line."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _line(-1, "NOT_UTF8")
    text = text.strip().strip("\x00").strip()
    if not text:
        return _line(-1, "EMPTY")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return _line(-1, "NOT_JSON")
    if _depth(doc) > JSON_MAX_DEPTH:
        return _line(-1, "NOT_JSON")
    if not isinstance(doc, dict):
        return _line(-1, "NOT_OBJECT")
    code = _as_int(doc.get("code"))
    if code is None:
        return _line(-1, "NO_CODE")
    if code != 200:
        return _line(code, "REFUSED")
    data = doc.get("data")
    if not isinstance(data, dict):
        return _line(code, "NO_DATA")
    iot_id, token = _found_credential(data, "iotId"), _found_credential(data, "iotToken")
    if not iot_id:
        return _line(code, "NO_IOT_ID" if iot_id is None else "BAD_IOT_ID")
    if not token:
        return _line(code, "NO_IOT_TOKEN" if token is None else "BAD_IOT_TOKEN")
    resources = data.get("resources")
    mqtt = resources.get("mqtt") if isinstance(resources, dict) else None
    host = mqtt.get("host") if isinstance(mqtt, dict) else None
    if not (isinstance(host, str) and len(host) <= 253 and _HOSTNAME.fullmatch(host)):
        return _line(code, "OK", iot_id, token)  # a port without its host means nothing
    assert isinstance(mqtt, dict)
    port = _as_int(mqtt.get("port"))
    return _line(code, "OK", iot_id, token, host, port if port and 0 < port < 65536 else None)


# --- generators ----------------------------------------------------------------------------------


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


def generated_bodies(seed: int, count: int) -> list[bytes]:
    """`count` replies: mostly well-formed with random shapes, every fifth one mutated."""
    rng = random.Random(seed)
    bodies = []
    for i in range(count):
        body = _reply_text(rng).encode("utf-8", "surrogatepass")
        if i % 5 == 0:
            body = _mutate(rng, body)
        bodies.append(body)
    return bodies
