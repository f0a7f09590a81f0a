"""Shared fixtures: a real mosquitto broker on a free loopback port, and a paho probe for tests.

`mosquitto` (function scope) starts `/usr/sbin/mosquitto` (or whatever `mosquitto` is on PATH)
with a temp config, waits until it accepts TCP connections (polling with a deadline, no fixed
sleep) and terminates it on teardown. `mosquitto_session` is the same, shared by a whole test
session. `BrokerProbe` is a single-threaded paho client living in the test process: subscribe,
publish, and `wait_for(predicate, timeout_s)` pumping `loop()` until a deadline.

If mosquitto is not installed the tests using it are skipped locally
(`apt-get install mosquitto`) and fail on CI (`CI=true`), where it must be present.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis profiles. "ci" (the default, what `make test` runs): a fixed number of examples,
# derandomized, so a run is reproducible and fits the CI budget. "long" (`make soak`): many
# more, random, for finding what the short run cannot. Pick one with HYPOTHESIS_PROFILE.
settings.register_profile("ci", derandomize=True, deadline=None, database=None,
                          print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", deadline=None, max_examples=2_000, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

_MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
_READY_TIMEOUT_S = 10.0


def find_mosquitto() -> str | None:
    """Path of the mosquitto broker binary, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in _MOSQUITTO_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (bind port 0, close). Never 1883."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port != 1883:
            return port


@dataclass
class Mosquitto:
    """A running broker: connect to `host`:`port` or `url` (mqtt://127.0.0.1:<port>)."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    config_path: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def log(self) -> str:
        """What the broker wrote to stderr so far (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _wait_listening(broker: Mosquitto, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if broker.process.poll() is not None:
            raise RuntimeError(
                f"mosquitto exited with {broker.process.returncode}:\n{broker.log()}"
            )
        try:
            with socket.create_connection((broker.host, broker.port), timeout=0.2):
                return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            broker.stop()
            raise RuntimeError(f"mosquitto not listening after {timeout_s} s:\n{broker.log()}")
        time.sleep(0.005)  # poll interval, not synchronisation: the deadline decides


def start_mosquitto(workdir: Path, port: int | None = None) -> Mosquitto:
    """Start a broker on a free loopback port (or on `port`: a broker that comes back);
    return once it accepts connections."""
    binary = find_mosquitto()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto not installed: apt-get install mosquitto")
        pytest.skip("mosquitto not installed: apt-get install mosquitto")
    host = "127.0.0.1"
    last_error: Exception | None = None
    wanted = port
    for _ in range(3):  # the free port can be taken between the probe and the bind
        port = wanted if wanted is not None else free_port(host)
        config_path = workdir / f"mosquitto-{port}.conf"
        log_path = workdir / f"mosquitto-{port}.log"
        config_path.write_text(
            f"listener {port} {host}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
            "log_type notice\n"
            "log_type information\n"
        )
        # Readable by the `mosquitto` user it drops to when started as root.
        config_path.chmod(0o644)
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [binary, "-c", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        broker = Mosquitto(host, port, process, config_path, log_path)
        try:
            _wait_listening(broker, _READY_TIMEOUT_S)
        except RuntimeError as exc:
            last_error = exc
            broker.stop()
            continue
        return broker
    raise RuntimeError(f"could not start mosquitto: {last_error}")


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A fresh mosquitto for one test: `.host`, `.port`, `.url`."""
    broker = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mosquitto_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One mosquitto shared by the whole test session (use unique topics per test)."""
    broker = start_mosquitto(tmp_path_factory.mktemp("mosquitto-session"))
    try:
        yield broker
    finally:
        broker.stop()


# --- a paho client in the test process ----------------------------------------------------------


@dataclass
class ProbeMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class BrokerProbe:
    """A single-threaded paho client for tests: `subscribe`, `publish`, `wait_for`.

    Every received message is appended to `messages`. Nothing runs in the background: the
    client only makes progress inside `wait_for`/`pump`/`subscribe`/`publish`.
    """

    host: str
    port: int
    client_id: str = ""
    messages: list[ProbeMessage] = field(default_factory=list)
    _client: Any = field(default=None, repr=False)
    _acked_mids: set[int] = field(default_factory=set, repr=False)
    _connected: bool = field(default=False, repr=False)

    @classmethod
    def connect_to(
        cls, broker: Mosquitto, client_id: str = "", timeout_s: float = 5.0
    ) -> BrokerProbe:
        probe = cls(broker.host, broker.port, client_id)
        probe.connect(timeout_s)
        return probe

    def connect(self, timeout_s: float = 5.0) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id or f"probe-{os.getpid()}-{id(self):x}",
            clean_session=True,
        )
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_ack
        client.on_publish = self._on_publish
        self._client = client
        client.connect(self.host, self.port, keepalive=30)
        if not self.wait_for(lambda: self._connected, timeout_s):
            raise TimeoutError(f"probe could not connect to {self.host}:{self.port}")

    # paho callbacks (VERSION2 signatures)
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected = not reason.is_failure

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.messages.append(ProbeMessage(msg.topic, bytes(msg.payload), msg.qos, msg.retain))

    def _on_ack(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._acked_mids.add(mid)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._acked_mids.add(mid)

    def pump(self) -> None:
        """One non-blocking turn of the client."""
        if self._client is not None:
            self._client.loop(timeout=0)

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
        """Pump the client until `predicate()` or the deadline; return the predicate's value."""
        deadline = time.monotonic() + timeout_s
        while True:
            if predicate():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bool(predicate())
            if self._client is not None:
                self._client.loop(timeout=min(0.02, remaining))

    def subscribe(self, topic: str, qos: int = 1, timeout_s: float = 5.0) -> None:
        """Subscribe and wait for the SUBACK, so a publish right after it is not missed."""
        result, mid = self._client.subscribe(topic, qos)
        if result != 0:
            raise RuntimeError(f"subscribe {topic!r} failed: {result}")
        if not self.wait_for(lambda: mid in self._acked_mids, timeout_s):
            raise TimeoutError(f"no SUBACK for {topic!r}")

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False,
        timeout_s: float = 5.0,
    ) -> None:
        """Publish and, for QoS > 0, wait until the broker acknowledged it."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != 0:
            raise RuntimeError(f"publish to {topic!r} failed: {info.rc}")
        if not self.wait_for(lambda: info.is_published(), timeout_s):
            raise TimeoutError(f"publish to {topic!r} not acknowledged")

    def payloads(self, topic: str | None = None) -> list[bytes]:
        return [m.payload for m in self.messages if topic is None or m.topic == topic]

    def wait_for_message(
        self, topic: str | None = None, timeout_s: float = 5.0
    ) -> ProbeMessage | None:
        """The first message on `topic` (any topic if None), waiting up to `timeout_s`."""
        def first() -> ProbeMessage | None:
            return next((m for m in self.messages if topic is None or m.topic == topic), None)

        self.wait_for(lambda: first() is not None, timeout_s)
        return first()

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.disconnect()
                self._client.loop(timeout=0)
            self._client = None


@pytest.fixture
def broker_probe(mosquitto: Mosquitto) -> Iterator[BrokerProbe]:
    """A connected `BrokerProbe` on the per-test `mosquitto`."""
    probe = BrokerProbe.connect_to(mosquitto)
    try:
        yield probe
    finally:
        probe.close()


def hypothesis_examples(ci: int) -> int:
    """How many examples a property test runs: `ci` in `make test`, the profile's (many more)
    under HYPOTHESIS_PROFILE=long."""
    return ci if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else settings().max_examples


# The gateway-as-a-process fixtures of tests/test_gateway.py, for the other gateway test files.
from tests.test_gateway import gateways, sims  # noqa: E402, F401
