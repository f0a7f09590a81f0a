"""Alibaba Cloud's Alink protocol, the device's side: thing-model topics and JSON, RRPC, NTP.

Host-only and pure (no I/O, no clock of its own): what `airfsm publish --property`, `airfsm
reply`, the gateway and the bridge share. Everything rides on ordinary MQTT messages through the
durable outbox and the inbox; this module only names the topics and builds or reads the JSON.

    /sys/{pk}/{dn}/thing/event/property/post          device -> cloud: property values
    /sys/{pk}/{dn}/thing/event/property/post_reply    cloud -> device: {"id","code","data"}
    /sys/{pk}/{dn}/thing/service/property/set         cloud -> device: set properties
    /sys/{pk}/{dn}/thing/service/{identifier}         cloud -> device: call a service
    <each request topic>_reply                        device -> cloud: {"id","code","data"}
    /sys/{pk}/{dn}/rrpc/request/{messageId}           cloud -> device: a synchronous call; the
    /sys/{pk}/{dn}/rrpc/response/{messageId}          server waits at most 8 s for the answer
    /ext/ntp/{pk}/{dn}/request                        device -> cloud: {"deviceSendTime": ms}
    /ext/ntp/{pk}/{dn}/response                       cloud -> device: + serverRecvTime,
                                                      serverSendTime (Unix ms)

A request's `id` is a decimal string (Alink: 0 .. 4294967295, unique per device for a while);
the device's own ids come from a counter the store keeps (`SqliteOutbox.enqueue_property_post`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

ALINK_VERSION = "1.0"
PROPERTY_POST_METHOD = "thing.event.property.post"
PROPERTY_SET_METHOD = "thing.service.property.set"
REPLY_SUFFIX = "_reply"
CODE_OK = 200
RRPC_TIMEOUT_MS = 8_000  # the longest the server waits for an RRPC response (its Timeout)
MAX_ALINK_ID = 4_294_967_295
# A thing-model identifier: letters, digits and underscores, at most 50 (the console's rule).
IDENTIFIER_RE = re.compile(r"[A-Za-z0-9_]{1,50}")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?")
_RRPC_ID_RE = re.compile(r"[0-9A-Za-z_-]{1,64}")
MAX_INT = 2**31 - 1  # the thing model's int32

# What `classify` calls an inbound message (None: not Alink).
KIND_POST_REPLY = "post_reply"  # the cloud's answer to a property (or event) post
KIND_PROPERTY_SET = "property_set"
KIND_SERVICE = "service"
KIND_RRPC_REQUEST = "rrpc_request"
KIND_NTP_RESPONSE = "ntp_response"
KINDS_NEEDING_A_REPLY = (KIND_PROPERTY_SET, KIND_SERVICE, KIND_RRPC_REQUEST)


# ---------------------------------------------------------------------- topics


def sys_prefix(pk: str, dn: str) -> str:
    return f"/sys/{pk}/{dn}"


def property_post_topic(pk: str, dn: str) -> str:
    return f"{sys_prefix(pk, dn)}/thing/event/property/post"


def rrpc_response_topic(pk: str, dn: str, message_id: str) -> str:
    return f"{sys_prefix(pk, dn)}/rrpc/response/{message_id}"


def rrpc_request_topic(pk: str, dn: str, message_id: str) -> str:
    return f"{sys_prefix(pk, dn)}/rrpc/request/{message_id}"


def ntp_request_topic(pk: str, dn: str) -> str:
    return f"/ext/ntp/{pk}/{dn}/request"


def ntp_response_topic(pk: str, dn: str) -> str:
    return f"/ext/ntp/{pk}/{dn}/response"


# Subscriptions each feature needs (placeholders as `subscribe` takes them). Services are
# `thing/service/<identifier>` and `thing/service/property/set`: one `#` covers both.
THING_MODEL_SUBSCRIPTIONS = ("/sys/{pk}/{dn}/thing/event/+/post_reply",
                             "/sys/{pk}/{dn}/thing/service/#")
RRPC_SUBSCRIPTIONS = ("/sys/{pk}/{dn}/rrpc/request/+",)
NTP_SUBSCRIPTIONS = ("/ext/ntp/{pk}/{dn}/response",)


@dataclass(frozen=True)
class Classified:
    """What an inbound message is, for Alink: `kind` (a KIND_*), the request `id` (the
    Alink id, or the RRPC messageId), the topic an answer goes to, the service identifier."""

    kind: str
    id: str | None = None
    reply_topic: str | None = None
    identifier: str | None = None


def device_of_topic(topic: str) -> tuple[str, str] | None:
    """(ProductKey, DeviceName) of a `/sys/{pk}/{dn}/...` or `/ext/ntp/{pk}/{dn}/...` topic."""
    parts = topic.split("/")
    if len(parts) > 4 and parts[1] == "sys" and parts[2] and parts[3]:
        return parts[2], parts[3]
    if len(parts) > 5 and parts[1:3] == ["ext", "ntp"] and parts[3] and parts[4]:
        return parts[3], parts[4]
    return None


def classify(topic: str, payload: bytes, pk: str | None = None,
             dn: str | None = None) -> Classified | None:
    """The Alink meaning of an inbound message on `topic`, None when it has none. Without
    `pk` and `dn` the device is the one the topic names."""
    if pk is None or dn is None:
        device = device_of_topic(topic)
        if device is None:
            return None
        pk, dn = device
    base = sys_prefix(pk, dn)
    if topic == ntp_response_topic(pk, dn):
        return Classified(KIND_NTP_RESPONSE)
    if topic.startswith(f"{base}/rrpc/request/"):
        message_id = topic[len(f"{base}/rrpc/request/"):]
        if not _RRPC_ID_RE.fullmatch(message_id):
            return None
        return Classified(KIND_RRPC_REQUEST, message_id, rrpc_response_topic(pk, dn, message_id))
    request = _json_object(payload)
    alink_id = _id_of(request)
    if topic.startswith(f"{base}/thing/event/") and topic.endswith("/post_reply"):
        return Classified(KIND_POST_REPLY, alink_id)
    if topic == f"{base}/thing/service/property/set":
        return Classified(KIND_PROPERTY_SET, alink_id, topic + REPLY_SUFFIX)
    service = topic[len(f"{base}/thing/service/"):] if topic.startswith(
        f"{base}/thing/service/") else ""
    if service and not service.endswith(REPLY_SUFFIX):  # a service, or property/get
        return Classified(KIND_SERVICE, alink_id, topic + REPLY_SUFFIX, service)
    return None


def request_id(payload: bytes) -> str | None:
    """The `id` of an Alink JSON message (a request or a reply), None when it has none."""
    return _id_of(_json_object(payload))


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _id_of(message: dict[str, Any] | None) -> str | None:
    if message is None:
        return None
    value = message.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)


# ---------------------------------------------------------------------- property post


def parse_property(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` as `--property` takes it: (name, typed value). ValueError, one line.

    The value's type is what it looks like: `21` an int, `21.5` (or `2e3`) a float, `true` /
    `false` a bool, anything else a string; a JSON string (`'"21"'`) is always a string, and a
    JSON object or array (`{"lat":30.2,"lon":120.1}`) is the thing model's struct or array.
    """
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep:
        raise ValueError(f"property {text!r}: expected NAME=VALUE")
    if not IDENTIFIER_RE.fullmatch(name):
        raise ValueError(f"property name {name!r}: expected a thing-model identifier (1-50 "
                         "letters, digits and '_')")
    return name, _typed(name, raw)


def _typed(name: str, raw: str) -> Any:
    if raw in ("true", "false"):
        return raw == "true"
    if _INT_RE.fullmatch(raw):
        value = int(raw)
        if abs(value) > MAX_INT:
            raise ValueError(f"property {name}: {raw} does not fit the thing model's int32 "
                             "(give it as 2.0e10 for a double, or quote it for a string)")
        return value
    if _FLOAT_RE.fullmatch(raw):
        number = float(raw)
        if not math.isfinite(number):
            raise ValueError(f"property {name}: {raw} is not a finite number")
        return number
    if raw[:1] in ('"', "{", "["):
        what = "string" if raw.startswith('"') else "object" if raw.startswith("{") else "array"
        try:
            value = json.loads(raw, parse_constant=_no_constant)
        except ValueError:
            raise ValueError(f"property {name}: {raw} is not a valid JSON {what}") from None
        return value
    return raw


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_properties(items: list[str]) -> dict[str, Any]:
    """Every `--property`, in order; ValueError for a bad one or a name given twice."""
    params: dict[str, Any] = {}
    for item in items:
        name, value = parse_property(item)
        if name in params:
            raise ValueError(f"property {name} given twice")
        params[name] = value
    if not params:
        raise ValueError("no property given")
    return params


def request_payload(alink_id: int, method: str, params: dict[str, Any]) -> bytes:
    """`{"id","version","params","method"}`, compact ASCII JSON."""
    return _compact({"id": str(alink_id), "version": ALINK_VERSION, "params": params,
                     "method": method})


def property_post_payload(alink_id: int, params: dict[str, Any]) -> bytes:
    return request_payload(alink_id, PROPERTY_POST_METHOD, params)


def _compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"),
                      allow_nan=False).encode("ascii")


@dataclass(frozen=True)
class Reply:
    """The cloud's `{"id","code","data","message"}` answer to one of the device's requests."""

    id: str
    code: int
    message: str = ""

    @property
    def accepted(self) -> bool:
        return self.code == CODE_OK


def parse_reply(payload: bytes) -> Reply | None:
    """A `_reply` payload, None when it is not one (no id, or no integer code)."""
    message = _json_object(payload)
    alink_id = _id_of(message)
    if message is None or alink_id is None:
        return None
    code = message.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        return None
    text = message.get("message")
    return Reply(alink_id, code, text if isinstance(text, str) else "")


# ---------------------------------------------------------------------- answering requests


def parse_data(text: str | None) -> Any:
    """`--data JSON` (default `{}`); ValueError, one line, when it is not JSON."""
    if text is None:
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--data is not JSON: {exc}") from None


def reply_payload(request_id: str, code: int, data: Any) -> bytes:
    """The device's `_reply` to a cloud request: `{"id","code","data"}`."""
    return _compact({"id": request_id, "code": code, "data": data})


def answer_for(found: Classified, request: bytes, code: int, data: Any,
               raw: bytes | None = None) -> tuple[str, bytes]:
    """(topic, payload) answering the inbound request `found`. For RRPC, `raw` (when given)
    is sent as is: an RRPC answer's format is the application's; otherwise an Alink request
    inside RRPC gets an Alink reply with its id. ValueError when there is nothing to answer."""
    if found.kind not in KINDS_NEEDING_A_REPLY or found.reply_topic is None:
        raise ValueError("this message is not a request that takes a reply (property set, "
                         "service call or RRPC request)")
    if raw is not None:
        if found.kind != KIND_RRPC_REQUEST:
            raise ValueError("--payload is for RRPC answers; an Alink reply is built from "
                             "--code and --data")
        return found.reply_topic, raw
    request_id = found.id if found.kind != KIND_RRPC_REQUEST else _id_of(_json_object(request))
    if request_id is None:
        if found.kind == KIND_RRPC_REQUEST:
            raise ValueError("the RRPC request is not Alink JSON with an id: give the answer "
                             "with --payload")
        raise ValueError("the request has no Alink id to answer")
    return found.reply_topic, reply_payload(request_id, code, data)


def describe(topic: str, payload: bytes) -> dict[str, Any] | None:
    """What `airfsm inbox` adds to a message's line under "alink" (None: not Alink): the kind,
    the request id, the topic an answer goes to; for a post_reply the cloud's code and whether
    it accepted the post."""
    found = classify(topic, payload)
    if found is None:
        return None
    out: dict[str, Any] = {"kind": found.kind}
    if found.kind == KIND_POST_REPLY:
        reply = parse_reply(payload)
        if reply is not None:
            out.update(id=reply.id, code=reply.code, accepted=reply.accepted)
            if reply.message:
                out["message"] = reply.message
            return out
    if found.id is not None:
        out["id"] = found.id
    if found.identifier is not None:
        out["service"] = found.identifier
    if found.reply_topic is not None:
        out["reply_topic"] = found.reply_topic
    return out


# ---------------------------------------------------------------------- NTP


def ntp_request_payload(device_send_ms: int) -> bytes:
    return _compact({"deviceSendTime": str(device_send_ms)})


@dataclass(frozen=True)
class NtpResult:
    """One NTP exchange: the server's time when the response arrived and the local clock's
    error (`skew_ms` = server time - local time: positive when the local clock is behind)."""

    server_ms: int
    skew_ms: int
    round_trip_ms: int


def _ms(value: Any) -> int | None:
    """A timestamp the way Alink writes them: a number or a decimal string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def ntp_send_time(payload: bytes) -> int | None:
    """The `deviceSendTime` a request carries, or a response echoes."""
    return _ms((_json_object(payload) or {}).get("deviceSendTime"))


def ntp_result(payload: bytes, device_recv_ms: int) -> NtpResult | None:
    """The server time from an NTP response received at local `device_recv_ms` (Unix ms):
    `(serverRecvTime + serverSendTime + deviceRecvTime - deviceSendTime) / 2`, Alibaba's
    formula (the server's send time plus half the round trip outside the server). None when
    the payload is not a response."""
    message = _json_object(payload) or {}
    sent = _ms(message.get("deviceSendTime"))
    server_recv = _ms(message.get("serverRecvTime"))
    server_send = _ms(message.get("serverSendTime"))
    if sent is None or server_recv is None or server_send is None:
        return None
    server_now = (server_recv + server_send + device_recv_ms - sent) // 2
    round_trip = max(0, (device_recv_ms - sent) - (server_send - server_recv))
    return NtpResult(server_now, server_now - device_recv_ms, round_trip)


__all__ = [
    "CODE_OK", "KINDS_NEEDING_A_REPLY", "NTP_SUBSCRIPTIONS", "RRPC_SUBSCRIPTIONS",
    "RRPC_TIMEOUT_MS", "THING_MODEL_SUBSCRIPTIONS", "Classified", "NtpResult", "Reply",
    "answer_for", "classify", "describe", "device_of_topic", "ntp_request_payload",
    "ntp_request_topic", "ntp_response_topic", "ntp_result", "ntp_send_time", "parse_data",
    "parse_properties", "parse_property", "parse_reply", "property_post_payload",
    "property_post_topic", "reply_payload", "request_id", "rrpc_request_topic",
    "rrpc_response_topic",
]
