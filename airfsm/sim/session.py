"""The simulator's MQTT session: the seam between the simulated module and "the cloud".

The module decides everything Alibaba Cloud would decide (is the token valid, is the link up) and
then tells its session what the device did. The default `RecordingSession` only records; the
broker bridge (`--broker mqtt://…`, `airfsm.sim.broker.BrokerSession`) implements the same
protocol with a real MQTT client. The server loop feeds what `poll()` returns to
`SimModule.send_downlink`.

A networked session may also offer, and `SimServer` then uses: `fileno() -> int` (a socket the
loop's select() waits on, -1 for none), `max_sleep_s() -> float | None` (the longest the loop may
sleep before the next `poll()`) and `close()` (called when the server closes).
"""

from __future__ import annotations

from collections import deque
from typing import Protocol


class MqttSession(Protocol):
    def connect(
        self, client_id: str, username: str, password: str, clean: bool, keepalive_s: int
    ) -> None: ...

    def subscribe(self, topic: str, qos: int) -> None: ...

    def unsubscribe(self, topic: str) -> None: ...

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None: ...

    def disconnect(self) -> None: ...

    def poll(self) -> list[tuple[str, bytes]]:
        """Messages the cloud sent to the device since the last call (topic, payload)."""
        ...


class RecordingSession:
    """An in-process cloud: records what the device did; `inject` queues messages for `poll`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.connected = False
        self._inbound: deque[tuple[str, bytes]] = deque()

    def connect(
        self, client_id: str, username: str, password: str, clean: bool, keepalive_s: int
    ) -> None:
        self.connected = True
        # The password is the iotToken: record that a connect happened, never the secret itself.
        self.calls.append(("connect", (client_id, username, clean, keepalive_s)))

    def subscribe(self, topic: str, qos: int) -> None:
        self.calls.append(("subscribe", (topic, qos)))

    def unsubscribe(self, topic: str) -> None:
        self.calls.append(("unsubscribe", (topic,)))

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.calls.append(("publish", (topic, payload, qos, retain)))

    def disconnect(self) -> None:
        self.connected = False
        self.calls.append(("disconnect", ()))

    def inject(self, topic: str, payload: bytes) -> None:
        """Queue a message "from the cloud"; the server loop delivers it on its next turn."""
        self._inbound.append((topic, payload))

    def poll(self) -> list[tuple[str, bytes]]:
        messages = list(self._inbound)
        self._inbound.clear()
        return messages
