"""Alibaba Cloud's Alink endpoints, as the simulated cloud plays them.

The IoT platform itself answers some of what a device publishes, whoever else listens: a
property post gets a `post_reply`, an NTP request an NTP response. And it sends requests of its
own that the device must answer: property set, service calls, RRPC (the server waits a bounded
time for that answer). `AlinkCloud` is that part of the cloud: `on_publish` is called with every
message the device published and returns what the cloud sends back; `property_set`,
`service_call` and `rrpc_request` make a request and remember it, so a test can ask what the
device answered and, for RRPC, whether the answer came in time.

An independent implementation of the cloud's side (it shares no code with `airfsm.host.alink`,
the device's side), pure: the caller gives the module clock (for RRPC deadlines) and the
cloud's wall clock (Unix ms, for NTP).

Simulator choices: every post the cloud refuses is answered with code 460 (Alink's "request
parameter error") and a message saying why; with `properties` (name -> "int", "float", "bool"
or "text") a post naming another property, or a value of another type, is refused; without it
any well-formed post is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airfsm.core.timebase import ms_diff

CODE_OK = 200
CODE_BAD_REQUEST = 460
RRPC_TIMEOUT_MS = 8_000
_TYPE_CHECKS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool) or v in (0, 1),
    "text": lambda v: isinstance(v, str),
}


@dataclass(frozen=True)
class RrpcAnswer:
    """What the device answered to an RRPC request, and when (module ms after the request)."""

    message_id: str
    payload: bytes
    after_ms: int
    on_time: bool


class AlinkCloud:
    """The Alink part of the simulated cloud for one device."""

    def __init__(self, product_key: str, device_name: str, *,
                 properties: Mapping[str, str] | None = None,
                 rrpc_timeout_ms: int = RRPC_TIMEOUT_MS) -> None:
        self.pk = product_key
        self.dn = device_name
        self.properties = dict(properties) if properties is not None else None
        self.rrpc_timeout_ms = rrpc_timeout_ms
        self._sys = f"/sys/{product_key}/{device_name}"
        self._next_request = 1000
        self._rrpc_sent: dict[str, int] = {}  # messageId -> module ms it was sent
        # What a test may look at.
        self.property_posts: list[tuple[str, int, dict[str, Any]]] = []  # (id, code, params)
        self.replies: dict[str, dict[str, Any]] = {}  # request id -> the device's _reply
        self.rrpc_answers: list[RrpcAnswer] = []
        self.ntp_requests = 0

    # ------------------------------------------------------------------ the device published

    def on_publish(self, topic: str, payload: bytes, now_ms: int,
                   wall_ms: int) -> list[tuple[str, bytes]]:
        """The cloud's answers to a device publish (topic, payload), to be sent down."""
        if topic == f"{self._sys}/thing/event/property/post":
            return [self._property_post(topic, payload)]
        if topic == f"/ext/ntp/{self.pk}/{self.dn}/request":
            return self._ntp(payload, wall_ms)
        if topic.startswith(f"{self._sys}/thing/service/") and topic.endswith("_reply"):
            message = _object(payload)
            if message is not None and "id" in message:
                self.replies[str(message["id"])] = message
            return []
        rrpc = f"{self._sys}/rrpc/response/"
        if topic.startswith(rrpc):
            message_id = topic[len(rrpc):]
            sent = self._rrpc_sent.pop(message_id, None)
            if sent is not None:
                after = ms_diff(now_ms, sent)
                self.rrpc_answers.append(RrpcAnswer(message_id, payload, after,
                                                    after <= self.rrpc_timeout_ms))
        return []

    def _property_post(self, topic: str, payload: bytes) -> tuple[str, bytes]:
        message = _object(payload)
        request_id = str(message.get("id", "")) if message is not None else ""
        code, why = self._check_post(message)
        params = message.get("params") if message is not None else None
        self.property_posts.append((request_id, code, params if isinstance(params, dict) else {}))
        reply: dict[str, Any] = {"id": request_id, "code": code, "data": {},
                                 "method": "thing.event.property.post", "version": "1.0"}
        if why:
            reply["message"] = why
        return topic + "_reply", _dump(reply)

    def _check_post(self, message: dict[str, Any] | None) -> tuple[int, str]:
        if message is None:
            return CODE_BAD_REQUEST, "request is not a JSON object"
        request_id = message.get("id")
        if not isinstance(request_id, str) or not request_id.isdigit():
            return CODE_BAD_REQUEST, "id must be a string of digits"
        if message.get("method") != "thing.event.property.post":
            return CODE_BAD_REQUEST, "method must be thing.event.property.post"
        params = message.get("params")
        if not isinstance(params, dict) or not params:
            return CODE_BAD_REQUEST, "params must be a non-empty object"
        if self.properties is None:
            return CODE_OK, ""
        for name, value in params.items():
            kind = self.properties.get(name)
            if kind is None:
                return CODE_BAD_REQUEST, f"property {name} is not defined in the thing model"
            if not _TYPE_CHECKS[kind](value):
                return CODE_BAD_REQUEST, f"property {name} must be {kind}"
        return CODE_OK, ""

    def _ntp(self, payload: bytes, wall_ms: int) -> list[tuple[str, bytes]]:
        self.ntp_requests += 1
        message = _object(payload)
        if message is None or "deviceSendTime" not in message:
            return []  # the service says nothing to what it cannot read
        response = {"deviceSendTime": message["deviceSendTime"], "serverRecvTime": wall_ms,
                    "serverSendTime": wall_ms}
        return [(f"/ext/ntp/{self.pk}/{self.dn}/response", _dump(response))]

    # ------------------------------------------------------------------ the cloud asks

    def _request(self, method: str, params: dict[str, Any]) -> tuple[str, bytes]:
        request_id = str(self._next_request)
        self._next_request += 1
        return request_id, _dump({"id": request_id, "version": "1.0", "params": params,
                                  "method": method})

    def property_set(self, params: dict[str, Any]) -> tuple[str, bytes, str]:
        """(topic, payload, id) of a property set request."""
        request_id, payload = self._request("thing.service.property.set", params)
        return f"{self._sys}/thing/service/property/set", payload, request_id

    def service_call(self, identifier: str, params: dict[str, Any]) -> tuple[str, bytes, str]:
        """(topic, payload, id) of a call of service `identifier`."""
        request_id, payload = self._request(f"thing.service.{identifier}", params)
        return f"{self._sys}/thing/service/{identifier}", payload, request_id

    def rrpc_request(self, payload: bytes, now_ms: int,
                     message_id: str | None = None) -> tuple[str, str]:
        """(topic, messageId) of an RRPC request sent at module time `now_ms`."""
        if message_id is None:
            message_id = str(10**18 + self._next_request)
            self._next_request += 1
        self._rrpc_sent[message_id] = now_ms
        return f"{self._sys}/rrpc/request/{message_id}", message_id


def _object(payload: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("ascii")


__all__ = ["CODE_BAD_REQUEST", "CODE_OK", "AlinkCloud", "RrpcAnswer"]
