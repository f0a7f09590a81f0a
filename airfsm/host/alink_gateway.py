"""What the gateway keeps track of for Alink: post replies, cloud requests, RRPC, NTP.

Host-only. The gateway hands this object what goes by (`on_sending` for every message about to be
sent, `on_acked` for every message the cloud took, `on_inbound` for every downlink) and asks
it when to measure the time (`ntp_request_due`); `status()` is its part of the status file.
Nothing here touches the store or the port, and nothing raises: a malformed reply is counted,
not fatal.

The thing model: a property post, once sent, awaits its `post_reply`; the reply says 200
(accepted) or the cloud's error code, matched by the Alink id. Requests from the cloud
(property set, service calls, RRPC) are counted by kind; RRPC requests are remembered with
their arrival time, so an answer (from the bridge, or `airfsm reply`) can be given the
server's deadline.

NTP (`ntp = true`): on every ONLINE, then every `ntp_interval_s`, a request goes to
`/ext/ntp/{pk}/{dn}/request` through the outbox (QoS 0, as the service requires). Its
`deviceSendTime` is written when the controller takes it for sending (`on_sending`), not when it
was queued, so time spent waiting in the outbox does not count as network delay. The response gives
the server's time and so the skew of the local clock; `wall_clock_ms()` is the corrected clock.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from airfsm.core.messages import OutboundMessage
from airfsm.host import alink
from airfsm.host.store import iso_utc

AWAITING_MAX = 1_000  # posts remembered while their reply has not come
RRPC_REMEMBERED = 256  # RRPC requests remembered for their deadline
NTP_STAMPS_KEPT = 8  # deviceSendTimes a response may echo (older ones: not ours any more)
NTP_RETRY_S = 60.0  # a request that got no response is asked again after this


def late_reason(topic: str, attempts: int, deadline_at: float) -> str:
    """Why a priority message whose deadline passed is a dead letter (RRPC answers)."""
    what = "RRPC answer" if "/rrpc/response/" in topic else "priority message"
    how = ("before it could be sent" if attempts == 0 else
           f"after {attempts} send{'s' if attempts != 1 else ''} without a PUBACK")
    return (f"{what} too late: its deadline {iso_utc(deadline_at)} passed {how}; the server "
            "had stopped waiting for it, so it is not sent")


def unix_ms() -> int:
    """The host's wall clock, Unix milliseconds."""
    return time.time_ns() // 1_000_000


class AlinkTracker:
    """The gateway's Alink bookkeeping for one device (see the module docstring)."""

    def __init__(self, product_key: str, device_name: str, *, ntp: bool = False,
                 ntp_interval_s: float = 86_400, rrpc_timeout_ms: int = alink.RRPC_TIMEOUT_MS,
                 logger: Any, wall_ms: Callable[[], int] = unix_ms,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.pk = product_key
        self.dn = device_name
        self.ntp_enabled = ntp
        self.ntp_interval_s = ntp_interval_s
        self.rrpc_timeout_ms = rrpc_timeout_ms
        self._log = logger
        self._wall_ms = wall_ms
        self._monotonic = monotonic
        self.post_topic = alink.property_post_topic(product_key, device_name)
        self.ntp_topic = alink.ntp_request_topic(product_key, device_name)
        # thing model
        self._awaiting: OrderedDict[str, tuple[int, float]] = OrderedDict()  # id -> (msg, at)
        self.counters = {"posts_acked": 0, "accepted": 0, "rejected": 0,
                         "replies_unmatched": 0, "property_set": 0, "service": 0,
                         "rrpc_request": 0, "malformed": 0}
        self.last_reply: dict[str, Any] | None = None
        self.last_rejected: dict[str, Any] | None = None
        # RRPC: messageId -> arrival (Unix seconds)
        self._rrpc_arrivals: OrderedDict[str, float] = OrderedDict()
        # NTP
        self._ntp_stamps: deque[int] = deque(maxlen=NTP_STAMPS_KEPT)
        self._ntp_next_at: float | None = None  # monotonic; None: not before the next ONLINE
        self.ntp_requests = 0
        self.ntp_responses = 0
        self.ntp_queued = False  # the latest request still waits in the outbox
        self.skew_ms: int | None = None
        self.round_trip_ms: int | None = None
        self.measured_at: float | None = None  # Unix seconds (local clock) of the measurement

    # ------------------------------------------------------------------ what goes by

    def on_online(self) -> None:
        """A new MQTT session: measure the time now."""
        if self.ntp_enabled:
            self._ntp_next_at = self._monotonic()

    def on_offline(self) -> None:
        self._ntp_next_at = None

    def on_sending(self, message: OutboundMessage) -> OutboundMessage:
        """The controller takes `message` to send it (perhaps again): return it as it must go
        out now. A property post from now on awaits its reply (which may come before the
        PUBACK); an NTP request gets the current time."""
        if message.topic == self.post_topic:
            request_id = alink.request_id(message.payload)
            if request_id is not None and request_id not in self._awaiting:
                self._awaiting[request_id] = (message.id, time.time())
                while len(self._awaiting) > AWAITING_MAX:
                    self._awaiting.popitem(last=False)
            return message
        if message.topic != self.ntp_topic:
            return message
        now = self._wall_ms()
        if not self._ntp_stamps or self._ntp_stamps[-1] != now:
            self._ntp_stamps.append(now)
        return replace(message, payload=alink.ntp_request_payload(now))

    def on_acked(self, message: OutboundMessage | None) -> None:
        """The cloud took `message` (PUBACK, or OK for QoS 0)."""
        if message is None:
            return
        if message.topic == self.post_topic:
            self.counters["posts_acked"] += 1
        elif message.topic == self.ntp_topic:
            self.ntp_queued = False

    def on_inbound(self, topic: str, payload: bytes, received_at: float) -> None:
        """A downlink (before it is stored): replies, requests and NTP responses."""
        found = alink.classify(topic, payload, self.pk, self.dn)
        if found is None:
            return
        if found.kind == alink.KIND_POST_REPLY:
            self._on_post_reply(payload, received_at)
        elif found.kind == alink.KIND_NTP_RESPONSE:
            self._on_ntp_response(payload, received_at)
        else:
            self.counters[found.kind] += 1
            if found.kind == alink.KIND_RRPC_REQUEST and found.id is not None:
                self._rrpc_arrivals[found.id] = received_at
                while len(self._rrpc_arrivals) > RRPC_REMEMBERED:
                    self._rrpc_arrivals.popitem(last=False)

    def _on_post_reply(self, payload: bytes, received_at: float) -> None:
        reply = alink.parse_reply(payload)
        if reply is None:
            self.counters["malformed"] += 1
            self._log.warning("alink_reply_malformed", bytes=len(payload))
            return
        sent = self._awaiting.pop(reply.id, None)
        if sent is None:
            self.counters["replies_unmatched"] += 1
        record = {"id": reply.id, "code": reply.code, "accepted": reply.accepted,
                  "message": reply.message or None, "message_id": sent[0] if sent else None,
                  "at": iso_utc(received_at)}
        self.last_reply = record
        if reply.accepted:
            self.counters["accepted"] += 1
            self._log.info("alink_post_accepted", id=reply.id, message_id=record["message_id"])
        else:
            self.counters["rejected"] += 1
            self.last_rejected = record
            self._log.warning("alink_post_rejected", id=reply.id, code=reply.code,
                              message_id=record["message_id"], detail=reply.message)

    # ------------------------------------------------------------------ RRPC

    def rrpc_deadline(self, message_id: str) -> float:
        """Until when (Unix seconds) the server waits for the answer to RRPC request
        `message_id`: `rrpc_timeout_ms` after it came, or from now for one this gateway did
        not see come (it came before a restart: the inbox has it, this memory not)."""
        arrived = self._rrpc_arrivals.get(message_id, time.time())
        return arrived + self.rrpc_timeout_ms / 1000

    # ------------------------------------------------------------------ NTP

    def ntp_request_due(self, online: bool) -> bool:
        """Should a request be queued now? If so, the next one is scheduled (a retry after
        NTP_RETRY_S until the response comes, then `ntp_interval_s`). Never while the last one
        is still queued."""
        if not self.ntp_enabled or not online or self._ntp_next_at is None or self.ntp_queued:
            return False
        now = self._monotonic()
        if now < self._ntp_next_at:
            return False
        self._ntp_next_at = now + min(NTP_RETRY_S, self.ntp_interval_s)
        self.ntp_requests += 1
        self.ntp_queued = True
        return True

    def ntp_request(self) -> tuple[str, bytes, int]:
        """(topic, payload, qos) to queue; the payload's time is rewritten by `on_sending`."""
        return self.ntp_topic, alink.ntp_request_payload(self._wall_ms()), 0

    def _on_ntp_response(self, payload: bytes, received_at: float) -> None:
        result = alink.ntp_result(payload, int(received_at * 1000))
        echoed = alink.ntp_send_time(payload)
        if result is None or echoed not in self._ntp_stamps:
            self.counters["malformed"] += 1
            self._log.warning("ntp_response_ignored", reason="not a response to our request"
                              if result is not None else "malformed")
            return
        self.ntp_responses += 1
        self.skew_ms = result.skew_ms
        self.round_trip_ms = result.round_trip_ms
        self.measured_at = received_at
        if self._ntp_next_at is not None:
            self._ntp_next_at = self._monotonic() + self.ntp_interval_s
        self._log.info("ntp_measured", skew_ms=result.skew_ms, round_trip_ms=result.round_trip_ms)

    def wall_clock_ms(self) -> int:
        """The local wall clock corrected by the latest NTP skew (Unix ms): what a timestamp
        the cloud checks (the auth sign's) should use. Uncorrected before the first response."""
        return self._wall_ms() + (self.skew_ms or 0)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        return {
            "thing_model": {**self.counters, "awaiting_reply": len(self._awaiting),
                            "last_reply": self.last_reply, "last_rejected": self.last_rejected},
            "rrpc_timeout_ms": self.rrpc_timeout_ms,
            "ntp": {"enabled": self.ntp_enabled, "skew_ms": self.skew_ms,
                    "round_trip_ms": self.round_trip_ms,
                    "measured_at": None if self.measured_at is None else iso_utc(
                        self.measured_at),
                    "requests": self.ntp_requests, "responses": self.ntp_responses},
        }


__all__ = ["AlinkTracker", "late_reason", "unix_ms"]
