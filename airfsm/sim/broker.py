"""The simulator's `--broker mqtt://HOST:PORT` bridge: its MQTT session as a real broker client.

`BrokerSession` implements `MqttSession` with paho-mqtt (the `broker` extra), so what the
simulated device publishes reaches the broker (`mosquitto_sub` sees it) and what is published to
a topic the device subscribed to comes back through `poll()`, which the server loop turns into a
`+MSUB:` URC.

The module has already played Alibaba Cloud by the time it calls `connect()`: it checked the
iotId/iotToken and answered CONNACK. The bridge therefore connects anonymously — the token is a
secret and the test broker has no business seeing it — as `airfsm-sim-<clientId>`, clean session
or not as the device asked. Broker trouble is the cloud's inside, invisible to the device: a lost
broker link is re-established in `poll()` with a backoff (counted in `reconnects`), subscriptions
are renewed, and publishes made meanwhile are held (up to `MAX_PENDING`) and sent on reconnect.

Single-threaded by design: every call, paho's network I/O included, happens in the caller's
thread (the server loop, under its lock). `fileno()` lets the loop sleep in `select()` on the
broker socket; `max_sleep_s()` bounds that sleep so keepalives, reconnects and unsent bytes are
serviced without busy-waiting.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

DEFAULT_PORT = 1883
CLIENT_ID_PREFIX = "airfsm-sim-"
CONNECT_TIMEOUT_S = 2.0  # loopback or LAN: a broker that is there answers in milliseconds
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0
KEEPALIVE_SERVICE_S = 1.0  # the loop wakes at least this often while connected (PINGREQ)
MAX_PENDING = 1000  # publishes held while the broker link is down
_MAX_READS_PER_POLL = 64

log = logging.getLogger("airfsm.sim.broker")


def parse_broker_url(url: str) -> tuple[str, int]:
    """`mqtt://HOST[:PORT]` → (host, port). ValueError with a one-line reason."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad broker URL {url!r}: {exc}") from None
    if parts.scheme != "mqtt":
        shown = f"{parts.scheme}://" if parts.scheme else "no scheme"
        raise ValueError(f"bad broker URL {url!r}: only mqtt:// is supported, not {shown}")
    if not parts.hostname:
        raise ValueError(f"bad broker URL {url!r}: no host (expected mqtt://HOST:PORT)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"bad broker URL {url!r}: expected just mqtt://HOST:PORT")
    if port == 0:
        raise ValueError(f"bad broker URL {url!r}: port 0")
    return parts.hostname, port if port is not None else DEFAULT_PORT


class BrokerSession:
    """`MqttSession` backed by a real MQTT broker (paho-mqtt 2.x, driven single-threaded)."""

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        product_key: str = "",
        device_name: str = "",
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.product_key = product_key
        self.device_name = device_name
        self.connect_timeout_s = connect_timeout_s
        self._clock = clock
        self._client: Any = None  # paho.mqtt.client.Client while the device is connected
        self._wanted = False  # the device believes it is connected
        self._broker_up = False  # CONNACK received on the current broker connection
        self._subscriptions: dict[str, int] = {}
        self._suback_wait: dict[int, str] = {}  # SUBSCRIBE message id -> topic
        self.acknowledged: set[str] = set()  # topics the broker has SUBACKed on this link
        self._pending: deque[tuple[str, bytes, int, bool]] = deque()
        self._inbound: deque[tuple[str, bytes]] = deque()
        self._retry_at: float | None = None
        self._backoff_s = RETRY_MIN_S
        self._keepalive_s = 60
        self.client_id = ""
        # what happened, for status lines and tests
        self.connects = 0  # broker connections established (CONNACK accepted)
        self.reconnects = 0  # attempts to re-establish a lost or failed broker link
        self.connection_losses = 0  # broker links that ended without the device asking
        self.published = 0
        self.received = 0
        self.dropped = 0  # publishes lost: held queue full
        self.last_error = ""

    @classmethod
    def from_url(cls, url: str, *, product_key: str = "", device_name: str = "") -> BrokerSession:
        """A session for `mqtt://HOST[:PORT]` (port 1883 by default). ValueError on a bad URL."""
        host, port = parse_broker_url(url)
        return cls(host, port, product_key=product_key, device_name=device_name)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        """The bridge has a live, acknowledged broker connection."""
        return self._broker_up

    # --- MqttSession ----------------------------------------------------------------------------

    def connect(
        self, client_id: str, username: str, password: str, clean: bool, keepalive_s: int
    ) -> None:
        # username/password are the iotId/iotToken the module already checked: not forwarded.
        self._teardown()
        self._wanted = True
        self._subscriptions.clear()
        self._pending.clear()
        self._inbound.clear()
        self.client_id = CLIENT_ID_PREFIX + client_id
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=clean,
            protocol=mqtt.MQTTv311,
        )
        client.connect_timeout = self.connect_timeout_s
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        self._keepalive_s = max(5, keepalive_s)
        self._backoff_s = RETRY_MIN_S
        self._open(first=True)

    def subscribe(self, topic: str, qos: int) -> None:
        self._subscriptions[topic] = qos
        if self._broker_up:
            self._subscribe(topic, qos)

    def unsubscribe(self, topic: str) -> None:
        self._subscriptions.pop(topic, None)
        self.acknowledged.discard(topic)
        if self._broker_up:
            self._client.unsubscribe(topic)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if not self._wanted:
            return
        if self._broker_up:
            self._send(topic, payload, qos, retain)
            return
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append((topic, payload, qos, retain))

    def disconnect(self) -> None:
        self._wanted = False
        self._subscriptions.clear()
        self._pending.clear()
        self._teardown()

    def poll(self) -> list[tuple[str, bytes]]:
        """Service the broker connection (read, write, keepalive, reconnect) and return what
        arrived for the device since the last call."""
        client = self._client
        if client is not None:
            if self._broker_up or client.socket() is not None:
                self._service(client)
            if (self._wanted and not self._broker_up and self._retry_at is not None
                    and self._clock() >= self._retry_at):
                self.reconnects += 1
                self._open(first=False)
        messages = list(self._inbound)
        self._inbound.clear()
        return messages

    # --- for the server loop --------------------------------------------------------------------

    def fileno(self) -> int:
        """The broker socket's fd (for select), or -1 when there is none."""
        if self._client is None:
            return -1
        sock = self._client.socket()
        if sock is None:
            return -1
        try:
            return int(sock.fileno())
        except (OSError, ValueError):
            return -1

    def max_sleep_s(self) -> float | None:
        """How long the server loop may sleep before calling `poll()` again (None: no limit)."""
        if self._client is None:
            return None
        if self._client.want_write():
            return 0.01
        if self._wanted and not self._broker_up:
            if self._client.socket() is not None:
                return 0.05  # CONNACK pending: it arrives on the socket, this is a backstop
            if self._retry_at is not None:
                return max(0.0, min(KEEPALIVE_SERVICE_S, self._retry_at - self._clock()))
        return KEEPALIVE_SERVICE_S

    def close(self) -> None:
        """The simulator is shutting down: leave the broker cleanly."""
        self.disconnect()

    def describe(self) -> str:
        state = ("connected" if self._broker_up else "reconnecting" if self._wanted
                 else "idle")
        return (f"broker {self.url}: {state}, {self.published} published, "
                f"{self.received} received, {self.reconnects} reconnects")

    # --- inside ---------------------------------------------------------------------------------

    def _open(self, *, first: bool) -> None:
        """(Re)connect and wait briefly for the CONNACK; on failure schedule a retry."""
        client = self._client
        self._broker_up = False
        try:
            if first:
                client.connect(self.host, self.port, keepalive=self._keepalive_s)
            else:
                client.reconnect()
        except (OSError, ValueError) as exc:
            self._failed(f"cannot connect to {self.url}: {exc}")
            return
        deadline = self._clock() + self.connect_timeout_s
        while not self._broker_up and client.socket() is not None:
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            client.loop(timeout=min(0.05, remaining))
        if not self._broker_up:
            if client.socket() is not None:
                # No CONNACK in time: drop this attempt so the retry starts clean.
                client.disconnect()
                client.loop(timeout=0)
            self._failed(self.last_error or f"no CONNACK from {self.url}")

    def _failed(self, why: str) -> None:
        self.last_error = why
        if self._retry_at is None or self._backoff_s <= RETRY_MIN_S:
            log.warning("MQTT broker bridge: %s; retrying", why)
        self._retry_at = self._clock() + self._backoff_s
        self._backoff_s = min(RETRY_MAX_S, self._backoff_s * 2)

    def _service(self, client: Any) -> None:
        for _ in range(_MAX_READS_PER_POLL):
            rc = client.loop(timeout=0)
            sock = client.socket()
            if rc != mqtt.MQTT_ERR_SUCCESS or sock is None or not _readable(sock):
                break

    def _subscribe(self, topic: str, qos: int) -> None:
        result, mid = self._client.subscribe(topic, qos)
        if result == mqtt.MQTT_ERR_SUCCESS and mid is not None:
            self._suback_wait[mid] = topic

    def _send(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self.published += 1
        else:  # the link died under us: hold it for the reconnect
            self._pending.append((topic, payload, qos, retain))

    def _teardown(self) -> None:
        client = self._client
        self._client = None
        self._broker_up = False
        self._retry_at = None
        self._suback_wait.clear()
        self.acknowledged.clear()
        if client is None:
            return
        try:
            if client.socket() is not None:
                client.disconnect()
                client.loop(timeout=0)
        except (OSError, ValueError):
            pass
        finally:
            client.on_connect = client.on_disconnect = client.on_message = None
            client.on_subscribe = None

    # paho callbacks (VERSION2 signatures); they run inside our own loop() calls

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if client is not self._client:
            return
        if reason.is_failure:
            self.last_error = f"broker {self.url} refused the connection: {reason}"
            return
        self._broker_up = True
        self._retry_at = None
        self._backoff_s = RETRY_MIN_S
        self.connects += 1
        self.last_error = ""
        if self.connects > 1:
            log.warning("MQTT broker bridge: connected again to %s", self.url)
        for topic, qos in self._subscriptions.items():
            self._subscribe(topic, qos)
        while self._pending and self._broker_up:
            self._send(*self._pending.popleft())

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        if client is not self._client:
            return
        was_up = self._broker_up
        self._broker_up = False
        self._suback_wait.clear()
        self.acknowledged.clear()
        if self._wanted and was_up:
            self.connection_losses += 1
            self._failed(f"lost the connection to {self.url} ({reason})")

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        topic = self._suback_wait.pop(mid, None)
        if client is not self._client or topic is None:
            return
        if any(getattr(r, "is_failure", False) for r in reasons or ()):
            log.warning("MQTT broker bridge: %s refused the subscription to %s", self.url, topic)
            return
        if topic in self._subscriptions:
            self.acknowledged.add(topic)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if client is not self._client or not self._wanted:
            return
        self.received += 1
        self._inbound.append((message.topic, bytes(message.payload)))


def _readable(sock: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(readable)
