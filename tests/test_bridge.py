"""The local MQTT bridge end to end: `airfsm sim --pty --broker` plays the cloud on one
mosquitto, `airfsm run --bridge` bridges to a second, local one; applications are paho probes.
Up through the durable outbox, down from the inbox, a local broker that goes away and comes
back, retained messages not replayed to the cloud.

Synchronisation polls the probes and the status file until generous deadlines."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BrokerProbe, Mosquitto, start_mosquitto
from tests.harness import SEED_DN, SEED_DS, SEED_PK
from tests.test_gateway import DEADLINE_S, GatewayProcess, clean_env, wait_until

pytest.importorskip("paho.mqtt.client")

PREFIX = f"airfsm/{SEED_DN}"
UP = f"{PREFIX}/up/{SEED_PK}/{SEED_DN}/update"
CLOUD_UPDATE = f"/{SEED_PK}/{SEED_DN}/update"
CLOUD_GET = f"/{SEED_PK}/{SEED_DN}/get"
DOWN = f"{PREFIX}/down/{SEED_PK}/{SEED_DN}/get"
# an Alink topic on a second subscription: its downlinks reach the bridge too
PROPERTY_SET = f"/sys/{SEED_PK}/{SEED_DN}/thing/service/property/set"
DOWN_SET = f"{PREFIX}/down/sys/{SEED_PK}/{SEED_DN}/thing/service/property/set"


@pytest.fixture
def sim_pty(mosquitto: Mosquitto) -> Iterator[str]:
    """`airfsm sim --pty --broker <the cloud mosquitto>`: its pty path."""
    proc = subprocess.Popen([sys.executable, "-m", "airfsm", "sim", "--pty", "--profile", "fast",
                             "--broker", mosquitto.url], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=clean_env())
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        assert first.startswith("simulated"), first
        yield first.split()[-1]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _probe(broker: Mosquitto, name: str, *topics: str) -> BrokerProbe:
    probe = BrokerProbe.connect_to(broker, client_id=name)
    for topic in topics:
        probe.subscribe(topic, qos=1)
    return probe


def _payloads(probe: BrokerProbe, topic: str) -> Callable[[], list[bytes]]:
    return lambda: probe.payloads(topic)


def test_bridge_up_and_down_and_a_local_broker_that_comes_back(
        tmp_path: Path, mosquitto: Mosquitto, sim_pty: str,
        gateways: Callable[..., GatewayProcess]) -> None:
    (tmp_path / "local").mkdir()
    local = start_mosquitto(tmp_path / "local")
    cloud_app = _probe(mosquitto, "cloud-app", f"/{SEED_PK}/{SEED_DN}/#")
    probes: list[BrokerProbe] = [cloud_app]
    try:
        # retained before the bridge subscribes: the broker replays it at every subscription
        early = _probe(local, "early-app")
        early.publish(UP, b"stale, retained", qos=1, retain=True)
        early.close()
        data = tmp_path / "data"
        g = gateways(sim_pty, data, "--bridge", local.url, "--log-level", "info",
                     "--subscribe", "get,/sys/{pk}/{dn}/thing/service/property/set")
        g.wait_online()
        g.wait_status(lambda s: (s.get("bridge") or {}).get("connected") is True,
                      what="the bridge connected")
        app = _probe(local, "local-app", f"{PREFIX}/down/#", f"{PREFIX}/bridge/state")
        probes.append(app)
        assert app.wait_for(lambda: b"online" in app.payloads(f"{PREFIX}/bridge/state"),
                            DEADLINE_S)

        # --- up: the retained message is not replayed to the cloud, a live one goes through
        app.publish(UP, b"hello via the bridge", qos=1)
        assert cloud_app.wait_for(lambda: b"hello via the bridge" in
                                  cloud_app.payloads(CLOUD_UPDATE), DEADLINE_S), g.stderr()[-2000:]
        assert b"stale, retained" not in cloud_app.payloads(CLOUD_UPDATE)
        events = g.log_events()
        assert any(e.get("event") == "bridge_retained_ignored" for e in events)
        up = [e for e in events if e.get("event") == "bridge_up"]
        assert up and up[0]["topic"] == CLOUD_UPDATE
        message_id = up[0]["id"]  # the same id through queued -> sent -> acked
        for stage in ("message_queued", "publish_sent", "publish_acked"):
            wait_until(lambda stage=stage: any(
                e.get("event") == stage and e.get("id") == message_id for e in g.log_events()),
                DEADLINE_S, f"{stage} logged with id {message_id}")

        # --- down: a cloud downlink appears on the local broker
        cloud_app.publish(CLOUD_GET, b'{"method":"blink"}', qos=1)
        assert app.wait_for(lambda: b'{"method":"blink"}' in app.payloads(DOWN), DEADLINE_S)
        cloud_app.publish(PROPERTY_SET, b'{"params":{"LightSwitch":1}}', qos=1)
        assert app.wait_for(lambda: b'{"params":{"LightSwitch":1}}' in app.payloads(DOWN_SET),
                            DEADLINE_S)

        # --- the local broker goes away and comes back: the bridge reconnects by itself
        app.close()
        probes.remove(app)
        port = local.port
        local.stop()
        g.wait_status(lambda s: (s.get("bridge") or {}).get("connected") is False,
                      what="the bridge to notice")
        local = start_mosquitto(tmp_path / "local", port=port)
        status = g.wait_status(lambda s: (s.get("bridge") or {}).get("connected") is True,
                               what="the bridge back")
        assert status["bridge"]["connects"] >= 2
        assert status["state"] == "ONLINE"  # the cloud link never noticed
        again = _probe(local, "local-app-2")
        probes.append(again)
        again.publish(UP, b"after the broker came back", qos=1)
        assert cloud_app.wait_for(lambda: b"after the broker came back" in
                                  cloud_app.payloads(CLOUD_UPDATE), DEADLINE_S)
        assert g.stop() == 0
    finally:
        for probe in probes:
            probe.close()
        local.stop()


def test_bridge_refuses_what_cannot_travel_and_keeps_going(
        tmp_path: Path, mosquitto: Mosquitto, sim_pty: str,
        gateways: Callable[..., GatewayProcess]) -> None:
    (tmp_path / "local").mkdir()
    local = start_mosquitto(tmp_path / "local")
    cloud_app = _probe(mosquitto, "cloud-app", f"/{SEED_PK}/{SEED_DN}/#")
    app: Any = None
    try:
        g = gateways(sim_pty, tmp_path / "data", "--bridge", local.url)
        g.wait_status(lambda s: (s.get("bridge") or {}).get("connected") is True,
                      what="the bridge connected")
        app = _probe(local, "local-app")
        app.publish(f"{PREFIX}/up/{SEED_PK}/{SEED_DN}/" + "x" * 200, b"topic too long", qos=1)
        app.publish(UP, b"still flowing", qos=1)
        assert cloud_app.wait_for(lambda: b"still flowing" in cloud_app.payloads(CLOUD_UPDATE),
                                  DEADLINE_S)
        status = g.wait_status(lambda s: s["bridge"]["refused"] == 1, what="the refusal counted")
        assert status["bridge"]["forwarded_up"] == 1
        assert any(e.get("event") == "bridge_refused" for e in g.log_events())
        assert g.stop() == 0
    finally:
        if app is not None:
            app.close()
        cloud_app.close()
        local.stop()


def test_bridge_without_paho_is_a_clear_usage_error(tmp_path: Path) -> None:
    """The bridge's import stays lazy: `run` without --bridge never loads paho."""
    code = ("import sys; sys.modules['paho'] = None; sys.modules['paho.mqtt'] = None\n"
            "from airfsm.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", code, "run", "--port", "/dev/null",
                             "--product-key", SEED_PK, "--device-name", SEED_DN,
                             "--data-dir", str(tmp_path), "--bridge", "mqtt://127.0.0.1:1"],
                            capture_output=True, text=True, timeout=DEADLINE_S,
                            env=clean_env(AIRFSM_DEVICE_SECRET=SEED_DS))
    assert result.returncode == 2, result.stderr
    assert "paho-mqtt" in result.stderr and "Traceback" not in result.stderr


def test_a_message_the_outbox_cannot_take_is_not_acknowledged_and_comes_again(
        mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    """Back-pressure: the outbox is full, so the bridge does not acknowledge, leaves the
    broker and comes back; the broker (persistent session) delivers the message again."""
    import time

    from airfsm.host import bridge as bridge_module
    from airfsm.host import log
    from airfsm.host.bridge import MqttBridge
    from airfsm.host.store import OutboxFull

    monkeypatch.setattr(bridge_module, "RETRY_S", (0.05, 0.1))
    offered: list[bytes] = []

    def enqueue(topic: str, payload: bytes, qos: int) -> int:
        offered.append(payload)
        if len(offered) == 1:
            raise OutboxFull("outbox full: 1 messages waiting (capacity 1)")
        return len(offered)

    bridge = MqttBridge(mosquitto.host, mosquitto.port, PREFIX, "bridge-under-test",
                        enqueue=enqueue, logger=log.get_logger("test"))
    bridge.start()
    app = _probe(mosquitto, "pressing-app")
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not bridge.connected and time.monotonic() < deadline:
            bridge.service()
            time.sleep(0.01)  # poll interval of this hand-driven loop; the deadline decides
        app.publish(UP, b"keep me", qos=1)
        while len(offered) < 2 and time.monotonic() < deadline:
            bridge.service()
            app.pump()
            time.sleep(0.01)
        assert offered == [b"keep me", b"keep me"]  # refused once, delivered again
        assert bridge.counters["deferred"] == 1 and bridge.counters["forwarded_up"] == 1
    finally:
        app.close()
        bridge.close()
