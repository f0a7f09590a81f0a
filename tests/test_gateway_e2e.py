"""End to end: mosquitto + the simulator bridged to it + `airfsm run` as a real process on a pty.

The big one: 200 QoS1 messages are queued while the gateway is down (a few through the real
`airfsm publish`), then delivered while the simulator drops the MQTT session twice, reboots once
and loses one PUBACK, with the gateway `kill -9`ed and restarted in the middle. A subscriber on
the broker must see every payload at least once, first occurrences in queue order, and the
outbox must end empty. Downlinks published to the broker must reach the inbox.

mosquitto comes from the `mosquitto` fixture (tests/conftest.py): these tests fail on CI
(`CI=true`) when it is missing and skip elsewhere. Synchronisation polls observable state (the
broker subscriber, the status file, the store) until generous deadlines; nothing asserts time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airfsm.host.store import SqliteInbox, SqliteOutbox, db_path
from airfsm.sim import SimConfig, SimServer, parse_fault
from tests.conftest import BrokerProbe, Mosquitto
from tests.harness import SEED_DN, SEED_DS, SEED_PK, first_occurrences
from tests.test_gateway import GatewayProcess, clean_env, wait_until

UPDATE = f"/{SEED_PK}/{SEED_DN}/update"
GET = f"/{SEED_PK}/{SEED_DN}/get"
TOTAL = 200
VIA_CLI = 5
KILL_AFTER = 100  # distinct payloads seen by the broker before the kill -9
DEADLINE_S = 120.0


def _broker_session_class() -> Any:
    try:
        from airfsm.sim.broker import BrokerSession
    except ImportError as exc:  # paho-mqtt is the `broker` extra
        if os.environ.get("CI") == "true":
            pytest.fail(f"paho-mqtt missing on CI: {exc}")
        pytest.skip(f"paho-mqtt not installed (pip install 'airfsm[broker]'): {exc}")
    return BrokerSession


def payload(i: int) -> bytes:
    """Mostly plain text; some need escaping, some need the module's hex mode."""
    head = f"e2e-{i:03d}".encode()
    if i % 25 == 13:
        return head + b" \x00\xff binary"
    if i % 10 == 7:
        return head + b' "quoted", comma\r\nline two \\22'
    return head + b" {\"seq\":" + str(i).encode() + b"}"


def mpub_prefix(i: int) -> str:
    """The start of the AT+MPUB line that carries payload(i): a fault MATCH."""
    return f'AT+MPUB="{UPDATE}",1,0,"e2e-{i:03d}'


def start_gateway(port: str, data_dir: Path, n: int, *extra: str) -> GatewayProcess:
    out = data_dir.parent / f"gateway-{n}.out"
    err = data_dir.parent / f"gateway-{n}.err"
    args = [sys.executable, "-m", "airfsm", "run", "--port", port, "--data-dir", str(data_dir),
            "--product-key", SEED_PK, "--device-name", SEED_DN, "--liveness-s", "5",
            "--log-level", "info", "--puback-timeout-s", "3", *extra]
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(args, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                                env=clean_env(AIRFSM_DEVICE_SECRET=SEED_DS))
    return GatewayProcess(proc, data_dir, out, err)


@pytest.fixture
def probe(mosquitto: Mosquitto) -> Iterator[BrokerProbe]:
    p = BrokerProbe.connect_to(mosquitto, client_id="e2e-subscriber")
    p.subscribe(f"/{SEED_PK}/{SEED_DN}/#", qos=1)
    yield p
    p.close()


def test_200_qos1_messages_survive_drops_reboot_lost_puback_and_kill_9(
        tmp_path: Path, mosquitto: Mosquitto, probe: BrokerProbe) -> None:
    broker_session = _broker_session_class()
    faults = [parse_fault(f"closed:{mpub_prefix(30)}@1"),   # MQTT session dropped: 1st
              parse_fault(f"reboot:{mpub_prefix(80)}@1"),   # module reboots instead of OK
              parse_fault(f"closed:{mpub_prefix(150)}@1")]  # MQTT session dropped: 2nd
    config = SimConfig(profile="fast", faults=faults)
    session = broker_session.from_url(mosquitto.url, product_key=SEED_PK, device_name=SEED_DN)
    server = SimServer(config, transport="pty", session=session).start()
    gateways: list[GatewayProcess] = []
    data = tmp_path / "data"
    expected = [payload(i) for i in range(TOTAL)]
    try:
        # --- queued while no gateway runs: a few through the CLI, the rest straight in the store
        SqliteOutbox(db_path(data)).close()  # the store, as a gateway's first start leaves it
        for i in range(VIA_CLI):
            done = subprocess.run(
                [sys.executable, "-m", "airfsm", "publish", "--data-dir", str(data),
                 "--product-key", SEED_PK, "--device-name", SEED_DN, "update", "-"],
                input=payload(i), capture_output=True, env=clean_env(), timeout=60)
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == str(i + 1).encode()
        with SqliteOutbox(db_path(data)) as box:
            for i in range(VIA_CLI, TOTAL):
                box.enqueue(UPDATE, payload(i), 1)
            assert box.count() == TOTAL

        def received() -> list[bytes]:
            return [m.payload for m in probe.messages if m.topic == UPDATE]

        # --- run 1: until half is through, then kill -9
        first = start_gateway(server.endpoint, data, 1)
        gateways.append(first)
        assert probe.wait_for(lambda: len(set(received())) >= KILL_AFTER, DEADLINE_S), (
            f"only {len(set(received()))} delivered in run 1:\n{first.stderr()[-3000:]}")
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(timeout=30) == -signal.SIGKILL
        killed_at = len(received())

        # --- run 2: the first PUBACK after the restart is lost
        server.add_fault(parse_fault("puback=lost@1"))
        second = start_gateway(server.endpoint, data, 2, "--inbox", "stdout")
        gateways.append(second)

        def delivered() -> bool:
            return set(received()) >= set(expected)

        assert probe.wait_for(delivered, DEADLINE_S), (
            f"{len(set(received()))}/{TOTAL} delivered:\n{second.stderr()[-3000:]}")
        status = second.wait_status(lambda s: s["outbox"]["queued"] == 0, DEADLINE_S,
                                    what="the outbox to drain")

        # --- every payload at least once, in queue order (first occurrences), outbox empty
        got = received()
        assert first_occurrences(got) == expected
        assert first_occurrences(got[killed_at:])[0] in expected[KILL_AFTER - 1:KILL_AFTER + 2]
        with SqliteOutbox(db_path(data)) as box:
            assert box.count() == 0

        # --- the faults really happened
        boots, published = server.call(lambda m, _now: (m.boots, list(m.published)))
        assert boots == 2  # the one reboot
        assert len(got) >= TOTAL  # duplicates allowed (at least once), losses not
        assert len(published) > TOTAL  # resends after CLOSED and the lost PUBACK
        counters = status["counters"]
        assert counters["publish_retried"] >= 1  # the lost PUBACK, in run 2
        assert counters["reconnects"].get("mqtt_lost", 0) >= 1  # the second drop, in run 2
        run1 = [json.loads(line) for line in first.stderr().splitlines()
                if line.startswith("{")]
        triggers = [e.get("trigger") for e in run1 if e.get("event") == "state"]
        assert "mqtt_lost" in triggers and "rebooted" in triggers

        # --- downlinks from the broker reach the inbox (store and --inbox stdout)
        downlinks = [b'{"method":"thing.service.blink","params":{"times":3}}',
                     b"second, with \"quotes\"\r\nand a newline"]
        for d in downlinks:
            probe.publish(GET, d, qos=1)
        inbox_path = db_path(data)

        def inbox() -> list[bytes]:
            with SqliteInbox(inbox_path) as box:
                return [m.payload for _id, m in box.read(0)]

        wait_until(lambda: inbox() == downlinks, DEADLINE_S, "downlinks in the inbox")
        lines = [json.loads(line) for line in second.stdout().splitlines()]
        assert [line["payload"].encode() for line in lines] == downlinks
        assert all(line["topic"] == GET for line in lines)
        assert second.stop() == 0
    finally:
        for g in gateways:
            if g.proc.poll() is None:
                g.proc.kill()
                g.proc.wait()
        server.stop()


def test_cli_only_sim_broker_run_publish_inbox(tmp_path: Path, mosquitto: Mosquitto,
                                               probe: BrokerProbe) -> None:
    """Everything through the command line: `airfsm sim --broker`, `run`, `publish`, `inbox`."""
    _broker_session_class()
    env = clean_env(AIRFSM_DEVICE_SECRET=SEED_DS)
    sim = subprocess.Popen([sys.executable, "-m", "airfsm", "sim", "--profile", "fast",
                            "--broker", mosquitto.url], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=env)
    gateway: GatewayProcess | None = None
    data = tmp_path / "data"
    try:
        assert sim.stdout is not None
        first_line = sim.stdout.readline().decode()
        assert first_line.startswith("simulated"), first_line
        pty = first_line.split()[-1]
        gateway = start_gateway(pty, data, 1)
        gateway.wait_online()
        done = subprocess.run([sys.executable, "-m", "airfsm", "publish", "--data-dir",
                               str(data), "user/update", '{"hello":"broker"}'],
                              capture_output=True, env=clean_env(), timeout=60)
        assert done.returncode == 0, done.stderr
        topic = f"/{SEED_PK}/{SEED_DN}/user/update"
        message = probe.wait_for_message(topic, timeout_s=DEADLINE_S)
        assert message is not None and message.payload == b'{"hello":"broker"}'

        probe.publish(GET, b"downlink via mosquitto", qos=1)

        def inbox_lines() -> list[dict[str, Any]]:
            out = subprocess.run([sys.executable, "-m", "airfsm", "inbox", "--data-dir",
                                  str(data)], capture_output=True, env=clean_env(), timeout=60)
            return [json.loads(line) for line in out.stdout.splitlines()]

        lines = wait_until(inbox_lines, DEADLINE_S, "the downlink in `airfsm inbox`")
        assert lines[0]["topic"] == GET and lines[0]["payload"] == "downlink via mosquitto"
        assert gateway.stop() == 0
    finally:
        if gateway is not None and gateway.proc.poll() is None:
            gateway.proc.kill()
            gateway.proc.wait()
        if sim.poll() is None:
            sim.send_signal(signal.SIGTERM)
            try:
                sim.wait(timeout=10)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
