"""The local MQTT bridge: `airfsm run --bridge mqtt://127.0.0.1:1883`.

Applications talk MQTT to a broker on the gateway's own machine (mosquitto) instead of running
`airfsm publish`, the way zigbee2mqtt serves its users:

    <prefix>/up/<cloud topic without its leading />     an application publishes: the gateway
                                                        queues it in the durable outbox, then
                                                        the module sends it to the cloud
    <prefix>/down/<cloud topic without its leading />   the gateway publishes every downlink
    <prefix>/bridge/state                               "online" / "offline" (retained; the
                                                        broker says "offline" if we vanish)

An up message on `<prefix>/up/sys/{pk}/{dn}/rrpc/response/<id>` is an RRPC answer: the gateway's
`enqueue` puts it in the outbox's priority lane, with the deadline of the request it answers.

`prefix` is `bridge_prefix` (default `airfsm/{dn}`). So `airfsm/gw1/up/a1B2c3D4e5F/gw1/update`
goes to `/a1B2c3D4e5F/gw1/update`, and `/sys/a1B2c3D4e5F/gw1/rrpc/request/7` arrives on
`airfsm/gw1/down/sys/a1B2c3D4e5F/gw1/rrpc/request/7`.

Delivery: an up message published with QoS 1 is acknowledged to the local broker only after it
is in the outbox (fsync'ed): from there the gateway's delivery contract takes over. When the
outbox refuses it (full, or the store failing) it is not acknowledged; the bridge leaves the
broker and comes back after a backoff, and the broker (persistent session) sends it again.
A message that could never be published (bad topic or payload) is acknowledged and dropped,
logged and counted. Retained messages on the up topics are ignored: they would be sent to the
cloud again on every reconnect. QoS 0 stays QoS 0.

Single-threaded: paho's `loop(timeout=0)` runs from the gateway's select loop, and the broker
socket is in its select set. The broker going away is a backoff (1 s doubling to 30 s) and a
reconnect, never a stop of the gateway; downlinks that arrive meanwhile are held (up to
`MAX_HELD`, all of them are in the inbox anyway) and published on reconnect.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from airfsm.host.store import OutboxFull, StoreError

CONNECT_TIMEOUT_S = 2.0  # a broker on this machine answers in milliseconds
KEEPALIVE_S = 60
RETRY_S = (1.0, 30.0)  # the broker went away: reconnect after 1 s, doubling up to 30 s
MAX_HELD = 1000  # downlinks held while the local broker is away (they are in the inbox too)
MAX_READS_PER_SERVICE = 64  # packets handled per wake-up before the serial port gets a turn
UP_QOS = 1  # the subscription to <prefix>/up/#: at least once, acknowledged after the fsync

Enqueue = Callable[[str, bytes, int], int]


class MqttBridge:
    """One connection to the local broker, driven from the gateway's loop.

    `enqueue(topic, payload, qos) -> id` puts an up message in the outbox (it raises
    ValueError for an unpublishable message, `OutboxFull` or `StoreError` when the
    outbox cannot take it now). Call `service()` after every wake-up of the loop and sleep in
    `select()` on `fileno()` too; `forward_down(topic, payload)` for every downlink.
    """

    def __init__(self, host: str, port: int, prefix: str, client_id: str, *,
                 enqueue: Enqueue, logger: Any, clock: Callable[[], float] = time.monotonic,
                 on_up: Callable[[], None] | None = None) -> None:
        self.host = host
        self.port = port
        self.prefix = prefix
        self.client_id = client_id
        self._enqueue = enqueue
        self._log = logger
        self._clock = clock
        self._on_up = on_up  # a message was queued: the gateway wakes its controller
        self._up_prefix = f"{prefix}/up/"
        self._state_topic = f"{prefix}/bridge/state"
        self._held: deque[tuple[str, bytes]] = deque()
        self._connected = False
        self._retry_at: float | None = None
        self._backoff_s = RETRY_S[0]
        self._client = self._new_client()
        # for the status file
        self.counters = {"connects": 0, "disconnects": 0, "forwarded_up": 0,
                         "forwarded_down": 0, "refused": 0, "deferred": 0, "retained_ignored": 0,
                         "held_dropped": 0}
        self.last_error = ""

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._connected

    def _new_client(self) -> Any:
        # clean_session=False: the broker keeps our subscription and what was published to it
        # while we were away (QoS 1), and sends again what we did not acknowledge.
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.will_set(self._state_topic, b"offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # ------------------------------------------------------------------ the gateway's calls

    def start(self) -> None:
        """First connection attempt; a broker that is not there yet is retried later."""
        self._open()

    def fileno(self) -> int | None:
        sock = self._client.socket()
        if sock is None:
            return None
        try:
            return int(sock.fileno())
        except (OSError, ValueError):
            return None

    def service(self) -> None:
        """Read what the broker sent, write what is waiting, keep the connection alive, and
        reconnect when the backoff is over. Never raises, never blocks for long."""
        client = self._client
        if client.socket() is not None:
            for _ in range(MAX_READS_PER_SERVICE):
                rc = client.loop(timeout=0)
                sock = client.socket()
                if rc != mqtt.MQTT_ERR_SUCCESS or sock is None or not _readable(sock):
                    break
            if client.socket() is not None and client.want_write():
                client.loop_write()
        if not self._connected and self._retry_at is not None and (
                self._clock() >= self._retry_at):
            self._open()

    def forward_down(self, topic: str, payload: bytes) -> None:
        """A downlink from the cloud: to `<prefix>/down/<topic>` now, or when the broker is
        back."""
        if len(self._held) >= MAX_HELD:
            self._held.popleft()
            self.counters["held_dropped"] += 1
        self._held.append((topic, payload))
        if self._connected:
            self._flush()

    def close(self) -> None:
        """Leave the broker cleanly (retained "offline" on the state topic)."""
        client = self._client
        if client.socket() is None:
            return
        try:
            if self._connected:
                client.publish(self._state_topic, b"offline", qos=1, retain=True)
            client.disconnect()
            client.loop(timeout=0)
        except (OSError, ValueError):
            pass
        self._connected = False

    def status(self) -> dict[str, Any]:
        return {"url": self.url, "prefix": self.prefix, "connected": self._connected,
                "held": len(self._held), "last_error": self.last_error or None,
                **self.counters}

    # ------------------------------------------------------------------ inside

    def _open(self) -> None:
        self._retry_at = None
        try:
            self._client.connect(self.host, self.port, keepalive=KEEPALIVE_S)
        except (OSError, ValueError) as exc:
            self._failed(f"cannot connect to {self.url}: {exc}")
        # the CONNACK arrives on the socket: service() handles it

    def _failed(self, why: str) -> None:
        first = not self.last_error
        self.last_error = why
        self._connected = False
        self._retry_at = self._clock() + self._backoff_s
        report = self._log.warning if first else self._log.debug
        report("bridge_unavailable", url=self.url, error=why, retry_in_s=self._backoff_s)
        self._backoff_s = min(RETRY_S[1], self._backoff_s * 2)

    def _leave_for_redelivery(self, why: str) -> None:
        """The outbox cannot take a message now: do not acknowledge it, leave the broker, and
        come back after a backoff; the broker then sends it again."""
        self.counters["deferred"] += 1
        with contextlib.suppress(OSError, ValueError):
            self._client.disconnect()
        self._failed(why)

    def _flush(self) -> None:
        while self._held and self._connected:
            topic, payload = self._held[0]
            local = f"{self.prefix}/down/{topic.lstrip('/')}"
            info = self._client.publish(local, payload, qos=1, retain=False)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # the link went: kept for the reconnect
            self._held.popleft()
            self.counters["forwarded_down"] += 1

    # paho callbacks (VERSION2): they run inside our own loop() calls

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self._failed(f"{self.url} refused the connection: {reason}")
            return
        self._connected = True
        self._backoff_s = RETRY_S[0]
        self.counters["connects"] += 1
        if self.last_error or self.counters["connects"] == 1:
            self._log.info("bridge_connected", url=self.url, prefix=self.prefix,
                           again=self.counters["connects"] > 1)
        self.last_error = ""
        client.subscribe(self._up_prefix + "#", UP_QOS)
        client.publish(self._state_topic, b"online", qos=1, retain=True)
        self._flush()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        was = self._connected
        self._connected = False
        if was:
            self.counters["disconnects"] += 1
            if self._retry_at is None:
                self._failed(f"lost the connection to {self.url} ({reason})")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        local = str(message.topic)
        qos = 1 if message.qos >= 1 else 0
        if message.retain:
            # A retained message is replayed at every subscription: forwarding it would send
            # it to the cloud again after each reconnect.
            self.counters["retained_ignored"] += 1
            self._log.warning("bridge_retained_ignored", topic=local)
            self._ack(message)
            return
        rest = local[len(self._up_prefix):] if local.startswith(self._up_prefix) else ""
        if not rest:
            self._refuse(message, local, "not under the bridge's up prefix")
            return
        topic = "/" + rest
        try:
            message_id = self._enqueue(topic, bytes(message.payload), qos)
        except ValueError as exc:
            self._refuse(message, local, str(exc))
            return
        except (OutboxFull, StoreError) as exc:
            self._log.warning("bridge_deferred", topic=local, error=str(exc))
            self._leave_for_redelivery(f"outbox cannot take messages now: {exc}")
            return
        self._ack(message)
        self.counters["forwarded_up"] += 1
        self._log.info("bridge_up", id=message_id, local_topic=local, topic=topic, qos=qos)
        if self._on_up is not None:
            self._on_up()

    def _refuse(self, message: Any, local: str, why: str) -> None:
        """Never publishable: acknowledged (so it is not sent again) and dropped, logged."""
        self.counters["refused"] += 1
        self._log.warning("bridge_refused", topic=local, reason=why)
        self._ack(message)

    def _ack(self, message: Any) -> None:
        if message.qos >= 1:
            self._client.ack(message.mid, message.qos)


def _readable(sock: Any) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(readable)


__all__ = ["MqttBridge"]
