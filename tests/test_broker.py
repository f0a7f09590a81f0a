"""The simulator's `--broker` bridge against a real mosquitto: device publishes reach the broker,
broker publishes reach the device as `+MSUB:` URCs, in-process and through `airfsm sim`."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from airfsm.core import aliyun
from airfsm.core.controller import Controller
from airfsm.core.settings import Settings
from airfsm.core.timebase import ms_add
from airfsm.host import reasons
from airfsm.host.loop import monotonic_ms, run
from airfsm.host.serial import open_port
from airfsm.sim import SimConfig, SimServer
from tests.conftest import BrokerProbe, Mosquitto
from tests.harness import SEED_DN, SEED_DS, SEED_PK

pytest.importorskip("paho.mqtt.client")

from airfsm.sim.broker import (  # noqa: E402  (needs the `broker` extra)
    CLIENT_ID_PREFIX,
    BrokerSession,
    parse_broker_url,
)

ROOT = Path(__file__).resolve().parent.parent
TOPIC_UPDATE = aliyun.topic_update(SEED_PK, SEED_DN)
TOPIC_GET = aliyun.topic_get(SEED_PK, SEED_DN)
ONLINE_S = 20.0
STEP_S = 10.0
# Everything a naive parser trips on: commas, quotes, CR LF, a fake URC, non-ASCII bytes.
AWKWARD = b'{"msg":"a,b \\"q\\"",\r\n"n":1}\r\n+MSUB: "x",3 byte,abc\r\n\x00\xff'


def _deadline(seconds: float) -> int:
    return ms_add(monotonic_ms(), int(seconds * 1000))


@dataclass
class Device:
    """A Controller on the simulator's port, run in the test thread."""

    controller: Controller
    inbound: list[tuple[str, bytes]] = field(default_factory=list)

    def run_until(self, done: Callable[[], bool], seconds: float = STEP_S) -> bool:
        return run(self.controller, until=done, deadline_ms=_deadline(seconds))

    def go_online(self) -> None:
        c = self.controller
        ok = self.run_until(lambda: c.online or c.failed, ONLINE_S)
        assert ok and c.online, f"not ONLINE: {c.state.name} {reasons.fail_text(c)}"


def connect_device(endpoint: str) -> tuple[Device, Callable[[], None]]:
    port = open_port(endpoint)
    identity = aliyun.DeviceIdentity(SEED_PK, SEED_DN, SEED_DS)
    inbound: list[tuple[str, bytes]] = []
    controller = Controller(port, Settings(identity=identity), now_ms=monotonic_ms(),
                            on_message=lambda t, p: inbound.append((t, p)))
    return Device(controller, inbound), port.close


@dataclass
class Rig:
    server: SimServer
    session: BrokerSession
    device: Device

    def session_view(self, what: Callable[[BrokerSession], object]) -> object:
        """Read the session under the server loop's lock (it lives in the loop's thread)."""
        return self.server.call(lambda _m, _now: what(self.session))

    def wait_subscribed(self, topic: str, probe: BrokerProbe, seconds: float = STEP_S) -> None:
        """The broker has SUBACKed the bridge's subscription: a publish now cannot miss it."""
        ok = probe.wait_for(
            lambda: bool(self.session_view(lambda s: topic in s.acknowledged)), seconds)
        assert ok, f"the bridge's subscription to {topic} was not acknowledged"


@pytest.fixture
def rig(mosquitto: Mosquitto) -> Iterator[Rig]:
    session = BrokerSession.from_url(mosquitto.url, product_key=SEED_PK, device_name=SEED_DN)
    server = SimServer(SimConfig(profile="fast"), transport="pty", session=session)
    server.start()
    device, close_port = connect_device(server.endpoint)
    try:
        yield Rig(server, session, device)
    finally:
        close_port()
        server.stop()


# --- in-process: SimServer on a pty, Controller through pyserial ------------------------------


def test_device_publish_reaches_the_broker(rig: Rig, broker_probe: BrokerProbe) -> None:
    broker_probe.subscribe(TOPIC_UPDATE, qos=1)
    rig.device.go_online()
    assert rig.session_view(lambda s: s.connected) is True
    client_id = str(rig.session_view(lambda s: s.client_id))
    assert client_id.startswith(CLIENT_ID_PREFIX + SEED_DN)

    c = rig.device.controller
    c.publish(TOPIC_UPDATE, b'{"temperature":21.5,"note":"qos1, a,b"}', qos=1)
    c.publish(TOPIC_UPDATE, b"qos0 too", qos=0)
    assert rig.device.run_until(lambda: c.counters.publish_acked >= 2)
    assert broker_probe.wait_for(lambda: len(broker_probe.payloads(TOPIC_UPDATE)) >= 2,
                                 STEP_S), broker_probe.messages
    assert broker_probe.payloads(TOPIC_UPDATE) == [
        b'{"temperature":21.5,"note":"qos1, a,b"}', b"qos0 too"]
    assert [m.qos for m in broker_probe.messages] == [1, 0]


def test_broker_publish_reaches_the_device(rig: Rig, broker_probe: BrokerProbe) -> None:
    rig.device.go_online()
    rig.wait_subscribed(TOPIC_GET, broker_probe)

    broker_probe.publish(TOPIC_GET, AWKWARD, qos=1)
    inbound = rig.device.inbound
    assert rig.device.run_until(lambda: bool(inbound)), "no +MSUB downlink"
    assert inbound == [(TOPIC_GET, AWKWARD)]
    # A topic the device did not subscribe to never reaches it.
    broker_probe.publish(f"/{SEED_PK}/{SEED_DN}/other", b"nope", qos=1)
    broker_probe.publish(TOPIC_GET, b"second", qos=0)
    assert rig.device.run_until(lambda: len(inbound) >= 2)
    assert inbound[1] == (TOPIC_GET, b"second")
    assert len(inbound) == 2


def test_the_token_is_not_given_to_the_broker(rig: Rig, mosquitto: Mosquitto) -> None:
    rig.device.go_online()
    token = rig.device.controller.auth.iot_token
    assert token
    log = mosquitto.log()
    assert CLIENT_ID_PREFIX in log  # mosquitto logged the bridge's connection ...
    assert token not in log  # ... which carried no credentials
    assert " u'" not in log


def test_the_bridge_reconnects_when_the_broker_drops_it(
    rig: Rig, mosquitto: Mosquitto, broker_probe: BrokerProbe
) -> None:
    rig.device.go_online()
    rig.wait_subscribed(TOPIC_GET, broker_probe)
    client_id = str(rig.session_view(lambda s: s.client_id))

    # A second client with the bridge's client id: mosquitto kicks the bridge off.
    intruder = BrokerProbe.connect_to(mosquitto, client_id=client_id)
    try:
        assert broker_probe.wait_for(
            lambda: bool(rig.session_view(lambda s: s.connection_losses >= 1)), STEP_S)
    finally:
        intruder.close()
    # The bridge comes back by itself, renews the subscription, and the device never noticed.
    rig.wait_subscribed(TOPIC_GET, broker_probe)
    assert int(str(rig.session_view(lambda s: s.reconnects))) >= 1
    broker_probe.publish(TOPIC_GET, b"after the reconnect", qos=1)
    assert rig.device.run_until(lambda: bool(rig.device.inbound))
    assert rig.device.inbound == [(TOPIC_GET, b"after the reconnect")]
    assert rig.device.controller.online


def test_stopping_the_simulator_leaves_the_broker(rig: Rig) -> None:
    rig.device.go_online()
    rig.server.stop()
    assert not rig.session.connected
    assert rig.session.fileno() == -1


# --- the session alone ------------------------------------------------------------------------


def test_session_held_publishes_go_out_on_connect(
    mosquitto: Mosquitto, broker_probe: BrokerProbe
) -> None:
    broker_probe.subscribe("held/#", qos=1)
    session = BrokerSession.from_url(mosquitto.url, product_key=SEED_PK, device_name=SEED_DN)
    session.connect("dev1", "iotId", "iotToken", True, 60)
    try:
        assert session.connected and session.fileno() >= 0
        session.publish("held/a", b"1", 1, False)
        assert broker_probe.wait_for(lambda: broker_probe.payloads("held/a") == [b"1"], STEP_S)
        session.disconnect()
        assert not session.connected and session.fileno() == -1
        session.publish("held/a", b"dropped: not connected", 1, False)
        assert session.poll() == []
    finally:
        session.close()


def test_session_to_a_missing_broker_retries(mosquitto: Mosquitto) -> None:
    from tests.conftest import free_port

    session = BrokerSession("127.0.0.1", free_port(), connect_timeout_s=0.5)
    session.connect("dev2", "iotId", "iotToken", True, 60)
    try:
        assert not session.connected
        assert "cannot connect" in session.last_error
        session.publish("held/b", b"kept", 1, False)  # held for the reconnect
        sleep_s = session.max_sleep_s()
        assert sleep_s is not None and 0 < sleep_s <= 1.0
        deadline = time.monotonic() + STEP_S
        while session.reconnects < 1 and time.monotonic() < deadline:
            time.sleep(min(0.05, session.max_sleep_s() or 0.05))
            session.poll()
        assert session.reconnects >= 1 and not session.connected
    finally:
        session.close()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:1883", "only mqtt://"),
        ("mqtts://127.0.0.1:8883", "only mqtt://"),
        ("127.0.0.1:1883", "only mqtt://"),
        ("", "only mqtt://"),
        ("mqtt://", "no host"),
        ("mqtt://:1883", "no host"),
        ("mqtt://127.0.0.1:port", "bad broker URL"),
        ("mqtt://127.0.0.1:70000", "bad broker URL"),
        ("mqtt://127.0.0.1:0", "port 0"),
        ("mqtt://127.0.0.1:1883/topic", "just mqtt://HOST:PORT"),
        ("mqtt://user:pw@127.0.0.1:1883", "just mqtt://HOST:PORT"),
    ],
)
def test_from_url_rejects(url: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        BrokerSession.from_url(url, product_key=SEED_PK, device_name=SEED_DN)
    message = str(info.value)
    assert reason in message and "\n" not in message


def test_from_url_accepts() -> None:
    assert parse_broker_url("mqtt://127.0.0.1:18830") == ("127.0.0.1", 18830)
    assert parse_broker_url("mqtt://localhost") == ("localhost", 1883)
    assert parse_broker_url("mqtt://[::1]:1884/") == ("::1", 1884)
    session = BrokerSession.from_url("mqtt://broker.local:1884", product_key=SEED_PK,
                                     device_name=SEED_DN)
    assert (session.host, session.port, session.url) == (
        "broker.local", 1884, "mqtt://broker.local:1884")
    assert (session.product_key, session.device_name) == (SEED_PK, SEED_DN)
    assert session.poll() == [] and session.fileno() == -1 and session.max_sleep_s() is None


# --- through the CLI: airfsm sim --tcp 0 --broker ... -------------------------------------------


def _read_line(proc: subprocess.Popen[bytes], seconds: float) -> bytes:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    got = b""
    deadline = time.monotonic() + seconds
    while b"\n" not in got:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 1)
            if not chunk:
                break
            got += chunk
    return got


def test_cli_sim_with_broker(mosquitto: Mosquitto, broker_probe: BrokerProbe) -> None:
    broker_probe.subscribe(TOPIC_UPDATE, qos=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "airfsm", "sim", "--tcp", "0", "--profile", "fast",
         "--broker", mosquitto.url],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        line = _read_line(proc, STEP_S).decode()
        assert " on socket://127.0.0.1:" in line, (line, proc.poll())
        endpoint = line.split(" on ", 1)[1].strip()
        device, close_port = connect_device(endpoint)
        try:
            device.go_online()
            device.controller.publish(TOPIC_UPDATE, b"from the CLI simulator", qos=1)
            assert device.run_until(lambda: device.controller.counters.publish_acked >= 1)
            assert broker_probe.wait_for(
                lambda: broker_probe.payloads(TOPIC_UPDATE) == [b"from the CLI simulator"],
                STEP_S), broker_probe.messages
            # And back: the broker reaches the device as a +MSUB URC.
            deadline = time.monotonic() + STEP_S
            while not device.inbound and time.monotonic() < deadline:
                broker_probe.publish(TOPIC_GET, b"to the CLI simulator", qos=1)
                device.run_until(lambda: bool(device.inbound), 0.5)
            assert device.inbound and device.inbound[0] == (TOPIC_GET, b"to the CLI simulator")
        finally:
            close_port()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0, proc.returncode


def test_cli_sim_rejects_a_bad_broker_url() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airfsm", "sim", "--tcp", "0", "--broker", "http://x:1"],
        cwd=ROOT, capture_output=True, timeout=30,
    )
    assert result.returncode != 0
    assert b"only mqtt://" in result.stderr
