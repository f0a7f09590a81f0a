"""`airfsm run`, `publish`, `inbox`, `status`: the CLI in-process, the gateway as a real process
on a pty served by the simulator (in this process, so the test can look inside the module).

Synchronisation is always "poll observable state until a deadline" (the status file, the
simulator's record), never a fixed sleep; nothing here asserts a duration.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from airfsm.cli import main
from airfsm.core.codes import State
from airfsm.core.table import MACHINE
from airfsm.host import gateway as gw_module
from airfsm.host import log
from airfsm.host.config import GatewayConfig
from airfsm.host.errors import Exit
from airfsm.host.gateway import Gateway
from airfsm.host.status import current_status, format_status
from airfsm.host.store import SqliteInbox, SqliteOutbox, db_path
from airfsm.sim import SimConfig, SimServer, parse_fault
from tests.harness import SEED_DN, SEED_DS, SEED_PK

UPDATE = f"/{SEED_PK}/{SEED_DN}/update"
GET = f"/{SEED_PK}/{SEED_DN}/get"
DEADLINE_S = 30.0


# ---------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _no_airfsm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("AIRFSM_"):
            monkeypatch.delenv(key)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFSM_")}
    env.update(extra)
    return env


def wait_until(predicate: Callable[[], Any], timeout_s: float = DEADLINE_S,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)  # poll interval; the deadline decides, not this


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def outbox_rows(data_dir: Path) -> list[tuple[str, bytes, int]]:
    with SqliteOutbox(db_path(data_dir)) as box:
        rows = []
        while True:
            _status, head = box.peek()
            if head is None:
                break
            rows.append((head.topic, head.payload, head.qos))
            box.ack(head.id)
        return rows


def gateway_store(data_dir: Path) -> Path:
    """`data_dir` as a gateway leaves it once started: with its (empty) store. `airfsm publish`
    and `inbox` refuse a directory without one."""
    SqliteOutbox(db_path(data_dir)).close()
    return data_dir


def outbox_count(data_dir: Path) -> int:
    with SqliteOutbox(db_path(data_dir)) as box:
        return box.count()


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    stdout_path: Path
    stderr_path: Path

    def status(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.data_dir / "status.json").read_text()))
        except (OSError, ValueError):
            return None

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool],
                    timeout_s: float = DEADLINE_S, what: str = "status") -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited {self.proc.returncode} while waiting for "
                                     f"{what}:\n{self.stderr()[-3000:]}")
            status = self.status()
            return status if status is not None and predicate(status) else None

        return dict(wait_until(check, timeout_s, what))

    def wait_online(self) -> dict[str, Any]:
        return self.wait_status(lambda s: s.get("state") == "ONLINE", what="ONLINE")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.stderr().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("gateway did not stop") from None


@pytest.fixture
def gateways() -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(port: str, data_dir: Path, *extra: str, env: dict[str, str] | None = None,
              secret: str = SEED_DS) -> GatewayProcess:
        data_dir.mkdir(parents=True, exist_ok=True)
        n = len(started)
        out = data_dir.parent / f"gateway-{n}.out"
        err = data_dir.parent / f"gateway-{n}.err"
        args = [sys.executable, "-m", "airfsm", "run", "--port", port, "--data-dir",
                str(data_dir), *extra]
        if "--config" not in extra:
            args += ["--product-key", SEED_PK, "--device-name", SEED_DN]
        with open(out, "wb") as fo, open(err, "wb") as fe:
            proc = subprocess.Popen(args, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                                    env=env or clean_env(AIRFSM_DEVICE_SECRET=secret))
        g = GatewayProcess(proc, data_dir, out, err)
        started.append(g)
        return g

    yield start
    for g in started:
        if g.proc.poll() is None:
            g.proc.kill()
            g.proc.wait()


@pytest.fixture
def sims() -> Iterator[Callable[..., SimServer]]:
    started: list[SimServer] = []

    def start(*faults: str, **config: Any) -> SimServer:
        cfg = SimConfig(profile="fast", faults=[parse_fault(f) for f in faults], **config)
        server = SimServer(cfg, transport="pty").start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def module_record(server: SimServer) -> tuple[list[str], list[tuple[str, bytes, int]]]:
    return server.call(lambda m, _now: (list(m.commands), list(m.published)))


# ---------------------------------------------------------------------- airfsm publish


def test_publish_absolute_topic_prints_the_id_and_queues_durably(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gateway_store(tmp_path)
    code, out, _ = run_cli(capsys, "publish", "--data-dir", str(tmp_path), UPDATE, "hello")
    assert code == 0 and out.strip() == "1"
    code, out, _ = run_cli(capsys, "publish", "--data-dir", str(tmp_path), "--qos", "0",
                           UPDATE, "again")
    assert code == 0 and out.strip() == "2"
    assert outbox_rows(tmp_path) == [(UPDATE, b"hello", 1), (UPDATE, b"again", 0)]


def test_publish_resolves_relative_topics_from_flags_env_config_or_status(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    d = str(gateway_store(tmp_path / "d"))
    code, _, err = run_cli(capsys, "publish", "--data-dir", d, "user/update", "x")
    assert code == Exit.USAGE and "needs the ProductKey and DeviceName" in err
    assert len(err.strip().splitlines()) == 1

    assert run_cli(capsys, "publish", "--data-dir", d, "--product-key", "pk1",
                   "--device-name", "dev1", "user/update", "a")[0] == 0
    monkeypatch.setenv("AIRFSM_PRODUCT_KEY", "pk2")
    monkeypatch.setenv("AIRFSM_DEVICE_NAME", "dev2")
    assert run_cli(capsys, "publish", "--data-dir", d, "update", "b")[0] == 0
    monkeypatch.delenv("AIRFSM_PRODUCT_KEY")
    monkeypatch.delenv("AIRFSM_DEVICE_NAME")
    config = tmp_path / "airfsm.toml"
    config.write_text(f'product_key = "pk3"\ndevice_name = "dev3"\ndata_dir = "{d}"\n'
                      'port = "/dev/ttyUSB0"\n')
    assert run_cli(capsys, "publish", "--config", str(config), "update", "c")[0] == 0
    (Path(d) / "status.json").write_text(json.dumps(
        {"device": {"product_key": "pk4", "device_name": "dev4"}}))
    assert run_cli(capsys, "publish", "--data-dir", d, "update", "d")[0] == 0
    assert [t for t, _p, _q in outbox_rows(Path(d))] == [
        "/pk1/dev1/user/update", "/pk2/dev2/update", "/pk3/dev3/update", "/pk4/dev4/update"]


def test_publish_reads_binary_payloads_from_stdin(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    binary = bytes(range(256))[:300]
    gateway_store(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(binary)))
    code, out, _ = run_cli(capsys, "publish", "--data-dir", str(tmp_path), UPDATE, "-")
    assert code == 0
    assert outbox_rows(tmp_path) == [(UPDATE, binary, 1)]


@pytest.mark.parametrize("topic, payload, reason", [
    (UPDATE, "x" * 2000, "too large"),
    ('/pk/dn/up"date', "x", "'\"'"),
    ("/pk/dn/update\r\nAT+RESET", "x", "CR"),
    ("/pk/dn/+", "x", "wildcard"),
    ("/pk/dn/#", "x", "wildcard"),
    ("/pk/dn/温度", "x", "non-ASCII"),
    ("/pk/dn/" + "t" * 200, "x", "characters long"),
    ("", "x", "empty"),
])
def test_publish_refuses_what_cannot_travel_with_a_clear_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], topic: str, payload: str,
        reason: str) -> None:
    code, out, err = run_cli(capsys, "publish", "--data-dir", str(tmp_path), topic, payload)
    assert code == Exit.USAGE
    assert out == ""
    assert err.startswith("airfsm: refused: ") and reason in err
    assert len(err.strip().splitlines()) == 1
    assert outbox_count(tmp_path) == 0


def test_publish_refuses_binary_too_large_for_hex_mode(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\x00" * 600)))
    code, _, err = run_cli(capsys, "publish", "--data-dir", str(tmp_path), UPDATE, "-")
    assert code == Exit.USAGE and "hex mode" in err


def test_publish_bad_qos_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "publish", "--data-dir", str(tmp_path), "--qos", "2",
                           UPDATE, "x")
    assert code == Exit.USAGE and "qos" in err


def test_full_outbox_refuses_and_drops_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFSM_OUTBOX_CAPACITY", "3")
    gateway_store(tmp_path)
    for i in range(3):
        assert run_cli(capsys, "publish", "--data-dir", str(tmp_path), UPDATE, f"m{i}")[0] == 0
    code, out, err = run_cli(capsys, "publish", "--data-dir", str(tmp_path), UPDATE, "m3")
    assert code == Exit.OUTBOX_FULL
    assert out == "" and "outbox full" in err and "nothing was dropped" in err
    assert [p for _t, p, _q in outbox_rows(tmp_path)] == [b"m0", b"m1", b"m2"]


def test_publish_uses_the_running_gateways_capacity(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (gateway_store(tmp_path) / "status.json").write_text(
        json.dumps({"outbox": {"capacity": 1}}))
    assert run_cli(capsys, "publish", "--data-dir", str(tmp_path), UPDATE, "a")[0] == 0
    assert run_cli(capsys, "publish", "--data-dir", str(tmp_path), UPDATE, "b")[0] == (
        Exit.OUTBOX_FULL)


# ---------------------------------------------------------------------- airfsm inbox / status


def test_inbox_prints_json_lines_with_after_and_last(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "inbox", "--data-dir", str(tmp_path))
    assert code == Exit.FAILURE and "no store" in err
    with SqliteInbox(db_path(tmp_path)) as inbox:
        inbox.add(GET, b'{"a":1}', 1_700_000_000.25)
        inbox.add(GET, b"\xff\x00binary", 1_700_000_001.0)
        inbox.add("/other", "温度".encode(), 1_700_000_002.0)
    code, out, _ = run_cli(capsys, "inbox", "--data-dir", str(tmp_path))
    lines = [json.loads(line) for line in out.splitlines()]
    assert [m["id"] for m in lines] == [1, 2, 3]
    assert lines[0] == {"id": 1, "topic": GET, "payload": '{"a":1}', "payload_encoding": "utf-8",
                        "received_at": "2023-11-14T22:13:20.250Z"}
    assert lines[1]["payload_encoding"] == "base64"
    assert lines[2]["payload"] == "温度"
    assert out.isascii()
    _, out, _ = run_cli(capsys, "inbox", "--data-dir", str(tmp_path), "--after", "2")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [3]
    _, out, _ = run_cli(capsys, "inbox", "--data-dir", str(tmp_path), "--last", "2")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [2, 3]


def test_inbox_follow_prints_new_messages_until_interrupted(tmp_path: Path) -> None:
    with SqliteInbox(db_path(tmp_path)) as inbox:
        inbox.add(GET, b"old", time.time())
    proc = subprocess.Popen([sys.executable, "-m", "airfsm", "inbox", "--follow", "--data-dir",
                             str(tmp_path)], stdout=subprocess.PIPE, env=clean_env())
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["payload"] == "old"
        with SqliteInbox(db_path(tmp_path)) as inbox:
            inbox.add(GET, b"new", time.time())
        assert json.loads(proc.stdout.readline())["payload"] == "new"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_status_without_a_gateway_is_one_line_and_nonzero(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "status", "--data-dir", str(tmp_path))
    assert code == Exit.FAILURE and out == ""
    assert len(err.strip().splitlines()) == 1 and "no status file" in err


def test_status_of_a_dead_gateway_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "status.json").write_text(json.dumps(
        {"pid": dead.pid, "running": True, "state": "ONLINE", "counters": {}}))
    code, out, _ = run_cli(capsys, "status", "--data-dir", str(tmp_path))
    assert code == Exit.FAILURE and "NOT RUNNING" in out
    code, out, _ = run_cli(capsys, "status", "--data-dir", str(tmp_path), "--json")
    assert json.loads(out)["state"] == "ONLINE"


# ---------------------------------------------------------------------- airfsm run: configuration


def test_run_config_unknown_key_and_bad_value_name_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "airfsm.toml"
    config.write_text('port = "/dev/null"\nproduct_key = "pk"\ndevice_name = "dev1"\n'
                      'device_secret = "secret-value"\nwatchdog = 10\n')
    code, _, err = run_cli(capsys, "run", "--config", str(config))
    assert code == Exit.USAGE and "'watchdog'" in err and "watchdog_s" in err
    config.write_text('port = "/dev/null"\nproduct_key = "pk"\ndevice_name = "dev1"\n'
                      'device_secret = "secret-value"\nliveness_s = "often"\n')
    code, _, err = run_cli(capsys, "run", "--config", str(config))
    assert code == Exit.USAGE and "'liveness_s'" in err
    assert "secret-value" not in err
    config.write_text(config.read_text().replace('"often"', "30"))
    code, _, err = run_cli(capsys, "run", "--config", str(config), "--liveness-s", "x")
    assert code == Exit.USAGE and "'liveness_s'" in err and "--liveness-s" in err


def test_run_environment_overrides_the_file_and_flags_override_both(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "airfsm.toml"
    # The file's secret is unusable; the environment's replaces it, so configuration passes and
    # the run stops at the (missing) port instead: exit 3, not 2.
    config.write_text(f'port = "{tmp_path}/file-port"\nproduct_key = "{SEED_PK}"\n'
                      f'device_name = "{SEED_DN}"\ndevice_secret = "x"\n'
                      f'data_dir = "{tmp_path}/data"\n')
    code, _, err = run_cli(capsys, "run", "--config", str(config))
    assert code == Exit.USAGE and "device_secret" in err
    monkeypatch.setenv("AIRFSM_DEVICE_SECRET", SEED_DS)
    monkeypatch.setenv("AIRFSM_PORT", str(tmp_path / "env-port"))
    code, _, err = run_cli(capsys, "run", "--config", str(config))
    assert code == Exit.PORT and "env-port" in err
    code, _, err = run_cli(capsys, "run", "--config", str(config), "--port",
                           str(tmp_path / "flag-port"))
    assert code == Exit.PORT and "flag-port" in err
    monkeypatch.setenv("AIRFSM_CONFIG", str(config))  # --config's default
    code, _, err = run_cli(capsys, "run")
    assert code == Exit.PORT and "env-port" in err


def test_online_timing_keys_reach_the_controller_and_are_range_checked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = GatewayConfig(port="/dev/null", product_key=SEED_PK, device_name=SEED_DN,
                           device_secret=SEED_DS, puback_timeout_s=3, silence_limit=5,
                           liveness_s=7, publish_attempts=2)
    settings = gw_module.settings_from_config(config)
    assert (settings.puback_timeout_ms, settings.silence_limit, settings.liveness_ms,
            settings.publish_attempts) == (3_000, 5, 7_000, 2)
    code, _, err = run_cli(capsys, "run", "--port", "/dev/null", "--product-key", SEED_PK,
                           "--device-name", SEED_DN, "--device-secret", SEED_DS,
                           "--data-dir", str(tmp_path), "--puback-timeout-s", "0")
    assert code == Exit.USAGE and "puback_timeout_s" in err
    code, _, err = run_cli(capsys, "run", "--port", "/dev/null", "--product-key", SEED_PK,
                           "--device-name", SEED_DN, "--device-secret", SEED_DS,
                           "--data-dir", str(tmp_path), "--publish-attempts", "0")
    assert code == Exit.USAGE and "publish_attempts" in err


def test_run_missing_settings_are_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "run", "--port", "/dev/null", "--data-dir", str(tmp_path))
    assert code == Exit.USAGE
    for key in ("product_key", "device_name", "device_secret"):
        assert key in err


def test_one_gateway_per_data_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFSM_DEVICE_SECRET", SEED_DS)
    fd = os.open(tmp_path / "gateway.lock", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"4242\n")
        fcntl.flock(fd, fcntl.LOCK_EX)
        code, _, err = run_cli(capsys, "run", "--port", "/dev/null", "--product-key", SEED_PK,
                               "--device-name", SEED_DN, "--data-dir", str(tmp_path))
    finally:
        os.close(fd)
    assert code == Exit.FAILURE and "already running" in err and "4242" in err


# ---------------------------------------------------------------------- airfsm run: the process


def test_gateway_delivers_publishes_and_downlinks_and_writes_status(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess], capsys: pytest.CaptureFixture[str]) -> None:
    server = sims()
    data = gateway_store(tmp_path / "data")
    assert run_cli(capsys, "publish", "--data-dir", str(data), UPDATE, "queued before")[0] == 0
    g = gateways(server.endpoint, data, "--inbox", "stdout", "--liveness-s", "5")
    status = g.wait_online()
    assert status["pid"] == g.proc.pid and status["running"] is True
    assert (data / "wake.sock").exists()
    wait_until(lambda: outbox_count(data) == 0, what="the queued message")

    assert run_cli(capsys, "publish", "--data-dir", str(data), "user/update",
                   "while running")[0] == 0  # pk/dn learnt from the status file
    wait_until(lambda: len(module_record(server)[1]) == 2, what="the second publish")
    _, published = module_record(server)
    assert published == [(UPDATE, b"queued before", 1),
                         (f"/{SEED_PK}/{SEED_DN}/user/update", b"while running", 1)]

    downlink = b'{"method":"thing.service.set","params":{"a":"b,c"}}\r\nsecond line'
    assert server.send_downlink(GET, downlink)
    wait_until(lambda: g.stdout().strip(), what="the inbox line on stdout")
    line = json.loads(g.stdout().splitlines()[0])
    assert line["topic"] == GET and line["payload"] == downlink.decode()
    assert line["id"] == 1 and line["received_at"].endswith("Z")
    code, out, _ = run_cli(capsys, "inbox", "--data-dir", str(data))
    assert json.loads(out)["payload"] == downlink.decode()

    status = g.wait_status(lambda s: s["counters"]["publish_acked"] == 2
                           and s["counters"]["gateway"]["inbox_stored"] == 1,
                           what="counters in the status file")
    puback_at = status["outbox"].pop("last_puback_at")
    assert status["outbox"] == {"queued": 0, "dead_letters": 0, "capacity": 10_000,
                                "oldest_enqueued_at": None}
    assert puback_at is not None and puback_at.endswith("Z")  # the QoS1 message's PUBACK
    assert status["device"]["product_key"] == SEED_PK
    for key in ("state", "since", "attempt", "counters"):
        assert key in status
    for key in ("reconnects", "publish_sent", "publish_acked", "publish_retried", "inbound",
                "timeouts", "at"):
        assert key in status["counters"]
    assert "lines_dropped" in status["counters"]["at"]
    sim = SimConfig()  # what the simulated module and its network say of themselves
    assert {k: status[k] for k in ("imei", "iccid", "operator", "registration",
                                   "access_technology", "rssi")} == {
        "imei": sim.imei, "iccid": sim.iccid, "operator": sim.operator, "registration": "home",
        "access_technology": "lte", "rssi": sim.rssi}
    assert status["signal_at"].endswith("Z")  # read again after each probe (every 5 s here)
    raw = (data / "status.json").read_text()
    tokens = server.call(lambda m, _now: [t for _id, t in m.issued_tokens])
    for secret in (SEED_DS, *tokens):
        assert secret not in raw
    code, out, _ = run_cli(capsys, "status", "--data-dir", str(data))
    assert code == 0 and "ONLINE" in out and "running" in out

    assert g.stop() == 0
    commands, _ = module_record(server)
    assert commands[-1] == "AT+MDISCONNECT"
    final = g.status()
    assert final is not None and final["running"] is False and final["exit"]["code"] == 0
    assert not (data / "wake.sock").exists()
    code, out, _ = run_cli(capsys, "status", "--data-dir", str(data))
    assert code == Exit.FAILURE and "stopped (exit 0" in out


HOSTILE_TEXT = [
    b'inject"\r\nAT+RESET\r\n',
    b'\\22 is not a quote, \\5C is not a backslash',
    b'"' * 300,  # escapes push it over the text limit: hex mode
    b"AT+MDISCONNECT",
]
HOSTILE_BINARY = [
    b"nul\x00byte\x00AT+RESET\r",
    "温度 22℃ \u2028".encode(),
    b"\x1b[2J\x07\x08\x7f",
    b"\r",
    b"",
]


def test_hostile_payloads_are_encoded_never_injected(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = sims()
    data = gateway_store(tmp_path / "data")
    for payload in HOSTILE_TEXT:
        assert run_cli(capsys, "publish", "--data-dir", str(data), UPDATE,
                       payload.decode())[0] == 0
    for payload in HOSTILE_BINARY:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(payload)))
        assert run_cli(capsys, "publish", "--data-dir", str(data), UPDATE, "-")[0] == 0
    refused = [("/a/b/c\r\nAT+RESET", "x"), ('/a/b/c",1,0,"x"\rAT+RESET', "x"),
               (UPDATE, "y" * 1100)]
    for topic, payload in refused:
        assert run_cli(capsys, "publish", "--data-dir", str(data), topic, payload)[0] == 2
    g = gateways(server.endpoint, data)
    g.wait_online()
    wait_until(lambda: outbox_count(data) == 0, what="the hostile payloads")
    commands, published = module_record(server)
    assert [p for _t, p, _q in published] == HOSTILE_TEXT + HOSTILE_BINARY  # byte-exact
    assert all(t == UPDATE for t, _p, _q in published)
    assert "AT+RESET" not in commands and all(c.startswith("AT") for c in commands)
    mpubs = [c for c in commands if c.startswith("AT+MPUB")]
    assert len(mpubs) == len(published)
    assert all(c.count('"') == 4 for c in mpubs)
    assert "AT+MQTTMODE=1" in commands  # binary went through the module's hex mode
    assert g.stop() == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_finishes_the_publish_in_flight_then_disconnects(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess], signum: int) -> None:
    # Every PUBACK is late (5x): the signal lands while one is outstanding.
    server = sims("puback=late@*")
    data = tmp_path / "data"
    with SqliteOutbox(db_path(data)) as box:
        for i in range(200):
            box.enqueue(UPDATE, f"m{i}".encode(), 1)
    g = gateways(server.endpoint, data)
    wait_until(lambda: len(module_record(server)[1]) >= 3, what="publishing to start")
    assert g.stop(signum) == 0
    commands, published = module_record(server)
    assert commands[-1] == "AT+MDISCONNECT"
    remaining = outbox_count(data)
    assert 0 < remaining < 200
    # Everything published was acknowledged and deleted, nothing else: the one in flight
    # finished (its PUBACK came) before AT+MDISCONNECT.
    assert len({p for _t, p, _q in published}) == 200 - remaining
    status = g.status()
    assert status is not None and status["exit"]["code"] == 0
    assert "clean" in status["exit"]["reason"]


def test_sighup_reloads_the_log_level(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess]) -> None:
    server = sims()
    data = tmp_path / "data"
    config = tmp_path / "airfsm.toml"
    config.write_text(f'port = "{server.endpoint}"\nproduct_key = "{SEED_PK}"\n'
                      f'device_name = "{SEED_DN}"\nlog_level = "warning"\n')
    g = gateways(server.endpoint, data, "--config", str(config))
    g.wait_online()
    assert not any(e.get("level") in ("debug", "info") for e in g.log_events())
    config.write_text(config.read_text().replace('"warning"', '"debug"'))
    g.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: any(e.get("event") == "log_level_reloaded" for e in g.log_events()),
               what="the reload")
    with SqliteOutbox(db_path(data)) as box:
        box.enqueue(UPDATE, b"logged at debug", 1)
    from airfsm.host.publish import poke

    poke(data)
    wait_until(lambda: any(e.get("event") == "at_tx" and "AT+MPUB" in e.get("command", "")
                           for e in g.log_events()), what="a debug line")
    assert g.proc.poll() is None  # SIGHUP did not stop it
    assert g.stop() == 0


def test_usb_unplug_reopens_the_port_with_backoff_and_reconnects(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess]) -> None:
    # The gateway opens a stable name (like /dev/serial/by-id/...), a symlink to the pty.
    first = sims()
    link = tmp_path / "ttyAIR"
    link.symlink_to(first.endpoint)
    data = tmp_path / "data"
    g = gateways(str(link), data)
    g.wait_online()
    first.stop()  # unplugged: the pty vanishes under the gateway
    link.unlink()
    g.wait_status(lambda s: bool(s.get("port_lost")) or "reopening" in (s.get("notice") or ""),
                  what="the gateway to notice")
    second = sims()  # plugged in again (a new device node behind the same name)
    link.symlink_to(second.endpoint)
    status = g.wait_status(lambda s: s["state"] == "ONLINE"
                           and s["counters"]["gateway"]["port_reopens"] == 1,
                           what="ONLINE on the new port")
    assert status["counters"]["reconnects"].get("port_lost") == 1
    with SqliteOutbox(db_path(data)) as box:
        box.enqueue(UPDATE, b"after replug", 1)
    wait_until(lambda: module_record(second)[1], what="a publish on the new port")
    events = [e.get("event") for e in g.log_events()]
    assert "port_vanished" in events and "port_reopened" in events
    assert g.stop() == 0


def test_old_firmware_exits_4_with_one_line(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess]) -> None:
    server = sims("old-firmware")
    g = gateways(server.endpoint, tmp_path / "data")
    assert g.proc.wait(timeout=DEADLINE_S) == Exit.FIRMWARE
    last = g.stderr().strip().splitlines()[-1]
    assert last.startswith("airfsm: firmware") and "V300" in last
    status = g.status()
    assert status is not None and status["exit"]["code"] == Exit.FIRMWARE


# ---------------------------------------------------------------------- in-process Gateway


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    """In-process gateways log here (not to a stream an earlier test's capsys closed)."""
    buffer = io.StringIO()
    log.configure("info", json=True, stream=buffer)
    yield buffer
    log.configure("warning", json=True, stream=io.StringIO())


def _config(port: str, data_dir: Path, **kw: Any) -> GatewayConfig:
    return GatewayConfig(port=port, product_key=SEED_PK, device_name=SEED_DN,
                         device_secret=SEED_DS, data_dir=data_dir, **kw)


def _run_in_thread(gateway: Gateway) -> tuple[threading.Thread, list[Exit]]:
    result: list[Exit] = []
    thread = threading.Thread(target=lambda: result.append(gateway.run()), daemon=True)
    thread.start()
    return thread, result


def _state(gateway: Gateway) -> State | None:
    return gateway.controller.state if gateway.controller is not None else None


def test_rejected_credentials_exit_5(
        tmp_path: Path, sims: Callable[..., SimServer], log_buffer: io.StringIO) -> None:
    server = sims(device_secret="the-cloud-knows-another-secret")
    auth = MACHINE[State.HTTP_AUTH]
    assert auth.policy is not None
    table = tuple(replace(row, policy=replace(auth.policy, retries=0))
                  if row.state == State.HTTP_AUTH else row for row in MACHINE)
    gateway = Gateway(_config(server.endpoint, tmp_path), install_signals=False, table=table)
    thread, result = _run_in_thread(gateway)
    thread.join(timeout=DEADLINE_S)
    assert result == [Exit.CREDENTIALS]
    assert "401" in gateway.exit_reason


def test_mute_module_is_not_fatal_the_gateway_starts_over(
        tmp_path: Path, sims: Callable[..., SimServer],
        monkeypatch: pytest.MonkeyPatch, log_buffer: io.StringIO) -> None:
    """NO_RESPONSE (the module never answered AT) restarts the controller after a backoff."""
    monkeypatch.setattr(gw_module, "RESTART_BACKOFF_MS", (50, 100))
    autobaud = MACHINE[State.AUTOBAUD]
    assert autobaud.policy is not None
    table = (replace(autobaud, policy=replace(autobaud.policy, retries=3)), *MACHINE[1:])
    server = sims("silence:AT@8")  # two controllers' worth of silent "AT"s
    received: list[Any] = []
    gateway = Gateway(_config(server.endpoint, tmp_path), install_signals=False, table=table,
                      on_message=lambda message, mid: received.append((message, mid)))
    thread, result = _run_in_thread(gateway)
    try:
        wait_until(lambda: _state(gateway) == State.ONLINE, what="ONLINE after restarts")
        assert gateway.gateway_counters["module_restarts"] == 2
        status = gateway.status()
        # Counters add up across the controllers: both AUTOBAUD -> FAILED escalations show.
        assert status["counters"]["reconnects"]["exhausted"] == 2
        assert server.send_downlink(GET, b"to the library callback")
        wait_until(lambda: received, what="the on_message callback")
        message, message_id = received[0]
        assert message.payload == b"to the library callback" and message_id == 1
    finally:
        gateway.request_stop()
        thread.join(timeout=DEADLINE_S)
    assert result == [Exit.OK]


def test_reset_command_pulses_the_pin_when_the_module_stops_answering(
        tmp_path: Path, sims: Callable[..., SimServer]) -> None:
    """The module hangs: AUTOBAUD runs out, the gateway runs reset_command, AUTOBAUD again."""
    autobaud = MACHINE[State.AUTOBAUD]
    assert autobaud.policy is not None
    table = (replace(autobaud, policy=replace(autobaud.policy, retries=3, hardware_resets=2)),
             *MACHINE[1:])
    server = sims("silence:AT@4")  # one AUTOBAUD's worth of silent "AT"s
    marker = tmp_path / "pulses"
    command = f"{sys.executable} -c \"open({str(marker)!r}, 'a').write('x')\""
    gateway = Gateway(_config(server.endpoint, tmp_path / "data", reset_command=command),
                      install_signals=False, table=table)
    thread, result = _run_in_thread(gateway)
    try:
        wait_until(lambda: _state(gateway) == State.ONLINE, what="ONLINE after the reset")
        assert marker.read_text() == "x"  # pulsed exactly once: the module answered again
        assert gateway.gateway_counters["module_restarts"] == 0  # no controller restart needed
        assert gateway.status()["counters"]["reconnects"]["hardware_reset"] == 1
    finally:
        gateway.request_stop()
        thread.join(timeout=DEADLINE_S)
    assert result == [Exit.OK]


def test_status_text_shows_the_last_error_while_not_online() -> None:
    status = {"running": True, "pid": 1, "state": "ATTACH", "attempt": 2,
              "last_error": "ATTACH cpin: SIM not ready (+CME ERROR: 10 (SIM not inserted))"}
    text = format_status(status, alive=True)
    assert "last error ATTACH cpin: SIM not ready" in text
    assert "last error" not in format_status({**status, "state": "ONLINE"}, True)


def test_helper_commands_reject_a_bad_config_file_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "airfsm.toml"
    for text, words in (("product_key = 12\n", "'product_key'"),
                        ("outbox_capacity = 0\n", "'outbox_capacity'"),
                        ("port = \n", "TOML syntax error")):
        config.write_text(f'data_dir = "{tmp_path}/data"\n' + text)
        code, _, err = run_cli(capsys, "publish", "--config", str(config), "update", "x")
        assert code == Exit.USAGE, err
        assert words in err and str(config) in err
        assert len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------- delivery: the outbox CLI


def test_outbox_lists_queued_and_dead_messages_and_requeues_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "outbox", "--data-dir", str(tmp_path))
    assert code == Exit.FAILURE and "no store" in err and len(err.strip().splitlines()) == 1
    gateway_store(tmp_path)
    for payload in ("gave up on", "still queued"):
        assert run_cli(capsys, "publish", "--data-dir", str(tmp_path), UPDATE, payload)[0] == 0
    with SqliteOutbox(db_path(tmp_path)) as box:
        for _ in range(5):
            box.mark_attempt(1)
        box.dead_letter(1, "5 attempts without PUBACK (last: no PUBACK within 10000 ms)")

    code, out, _ = run_cli(capsys, "outbox", "--data-dir", str(tmp_path))
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == [
        {"id": 2, "topic": UPDATE, "payload": "still queued", "payload_encoding": "utf-8",
         "qos": 1, "attempts": 0}]
    code, out, _ = run_cli(capsys, "outbox", "--data-dir", str(tmp_path), "--dead")
    [dead] = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and dead["id"] == 1 and dead["payload"] == "gave up on"
    assert dead["attempts"] == 5 and dead["reason"].startswith("5 attempts without PUBACK")
    assert dead["died_at"].endswith("Z")

    code, out, _ = run_cli(capsys, "outbox", "--data-dir", str(tmp_path), "--retry", "1")
    assert code == 0 and out.strip() == "3"  # a new id, at the tail, with a fresh budget
    _, out, _ = run_cli(capsys, "outbox", "--data-dir", str(tmp_path))
    assert [(m["id"], m["payload"], m["attempts"]) for m in map(json.loads, out.splitlines())] \
        == [(2, "still queued", 0), (3, "gave up on", 0)]
    assert run_cli(capsys, "outbox", "--data-dir", str(tmp_path), "--dead")[1] == ""
    with SqliteOutbox(db_path(tmp_path)) as box:
        box.dead_letter(2, "an operator gave up on it")
    assert run_cli(capsys, "outbox", "--data-dir", str(tmp_path), "--discard", "2")[0] == 0
    assert run_cli(capsys, "outbox", "--data-dir", str(tmp_path), "--dead")[1] == ""

    for args, words in ((["--retry", "1"], "no dead letter with id 1"),
                        (["--discard", "2"], "no dead letter with id 2"),
                        (["--retry", "x"], "expected a whole number"),
                        (["--dead", "--retry", "3"], "not allowed with")):
        code, _, err = run_cli(capsys, "outbox", "--data-dir", str(tmp_path), *args)
        assert code == Exit.USAGE and words in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ---------------------------------------------------------------------- bad input: one line


@pytest.mark.parametrize("args", [["--after", "99999999999999999999999"], ["--after", "-1"],
                                  ["--last", "-5"], ["--last", "1e3"]])
def test_inbox_bad_numbers_are_one_line_and_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    with SqliteInbox(db_path(tmp_path)) as inbox:
        inbox.add(GET, b"x", 1.0)
    code, out, err = run_cli(capsys, "inbox", "--data-dir", str(tmp_path), *args)
    assert code == Exit.USAGE and out == ""
    assert len(err.strip().splitlines()) == 1 and args[0] in err


@pytest.mark.parametrize("status", [
    {"pid": 1, "running": True, "counters": 5},
    {"pid": 1, "running": True, "device": "ttyUSB0"},
    {"pid": 1, "running": False, "exit": [0, "stopped"]},
    {"pid": 1, "running": True, "counters": {"reconnects": ["mqtt_lost"]}},
    {"pid": 1, "running": True, "counters": {"gateway": 3}},
])
def test_status_of_a_malformed_status_file_is_one_line_and_nonzero(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], status: dict[str, Any]) -> None:
    (tmp_path / "status.json").write_text(json.dumps(status))
    for extra in ([], ["--json"]):
        code, out, err = run_cli(capsys, "status", "--data-dir", str(tmp_path), *extra)
        assert code == Exit.FAILURE and out == ""
        assert len(err.strip().splitlines()) == 1 and "corrupt" in err, err
    # `publish` only wanted the device from it: it says what it is missing, nothing worse
    SqliteOutbox(db_path(tmp_path)).close()  # the store the gateway made
    code, _, err = run_cli(capsys, "publish", "--data-dir", str(tmp_path), "update", "x")
    assert code == Exit.USAGE and "needs the ProductKey" in err


def test_a_crashed_gateway_logs_the_traceback_and_says_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(self: Gateway) -> Exit:
        raise RuntimeError("a bug in the gateway")

    monkeypatch.setattr(Gateway, "run", crash)
    monkeypatch.setenv("AIRFSM_DEVICE_SECRET", SEED_DS)
    code, _, err = run_cli(capsys, "run", "--port", "/dev/null", "--product-key", SEED_PK,
                           "--device-name", SEED_DN, "--data-dir", str(tmp_path))
    assert code == Exit.INTERNAL
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    [crashed] = [e for e in logged if e["event"] == "gateway_crashed"]
    assert "Traceback (most recent call last)" in crashed["exception"]
    assert "RuntimeError: a bug in the gateway" in crashed["exception"]
    said = [line for line in err.splitlines() if not line.startswith("{")]
    assert said == ["airfsm: internal error: RuntimeError: a bug in the gateway"]


def test_status_text_counts_dead_letters_and_store_trouble() -> None:
    status = {"running": True, "pid": 1, "state": "ONLINE",
              "outbox": {"queued": 4, "dead_letters": 2, "capacity": 10},
              "counters": {"publish_dead": 2, "store_unavailable": 7,
                           "gateway": {"store_errors": 7}}}
    text = format_status(status, alive=True)
    assert "4 queued, 2 dead letters (capacity 10)" in text
    assert "dead 2" in text and "unavailable 7, errors 7" in text


# ---------------------------------------------------------------------- delivery: processes


def test_a_second_gateway_on_the_same_serial_port_refuses_in_one_line(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess]) -> None:
    server = sims()
    first = gateways(server.endpoint, tmp_path / "one")
    first.wait_online()
    second = gateways(server.endpoint, tmp_path / "two")
    assert second.proc.wait(timeout=DEADLINE_S) == Exit.PORT
    said = [line for line in second.stderr().splitlines() if not line.startswith("{")]
    assert len(said) == 1 and "in use by another program" in said[0], second.stderr()
    assert server.endpoint in said[0] and "Traceback" not in second.stderr()
    assert first.status()["state"] == "ONLINE"  # type: ignore[index]
    assert first.stop() == 0


def test_store_errors_injected_into_a_running_gateway_cost_no_resend(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess], capsys: pytest.CaptureFixture[str]) -> None:
    """AIRFSM_FAULT_STORE, the documented way to reproduce a failing disk: the first three
    DELETEs after a PUBACK and the first inbox write fail."""
    server = sims()
    data = gateway_store(tmp_path / "data")
    for payload in ("one", "two"):
        assert run_cli(capsys, "publish", "--data-dir", str(data), UPDATE, payload)[0] == 0
    g = gateways(server.endpoint, data, "--inbox", "stdout",
                 env=clean_env(AIRFSM_DEVICE_SECRET=SEED_DS,
                               AIRFSM_FAULT_STORE="ack=full@3,inbox=locked@1"))
    g.wait_online()
    wait_until(lambda: outbox_count(data) == 0, what="the outbox to drain")
    assert [p for _t, p, _q in module_record(server)[1]] == [b"one", b"two"]  # once each
    assert server.send_downlink(GET, b"kept while the store was locked")
    wait_until(lambda: g.stdout().strip(), what="the downlink, stored late")
    assert json.loads(g.stdout().splitlines()[0])["id"] == 1
    status = g.wait_status(lambda s: s["counters"]["gateway"]["inbox_stored"] == 1,
                           what="the inbox counter")
    assert status["counters"]["store_unavailable"] == 3
    assert status["counters"]["gateway"]["store_errors"] == 4
    events = [e["event"] for e in g.log_events()]
    assert "store_faults_injected" in events and "outbox_unavailable" in events
    assert g.stop() == 0


def test_a_malformed_store_fault_spec_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFSM_DEVICE_SECRET", SEED_DS)
    monkeypatch.setenv("AIRFSM_FAULT_STORE", "ack@0")
    code, _, err = run_cli(capsys, "run", "--port", "/dev/null", "--product-key", SEED_PK,
                           "--device-name", SEED_DN, "--data-dir", str(tmp_path))
    assert code == Exit.USAGE and "bad store fault 'ack@0'" in err
    assert len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------- status: never untrue


def _status(capsys: pytest.CaptureFixture[str], data: Path, *more: str) -> tuple[int, str]:
    code, out, err = run_cli(capsys, "status", "--data-dir", str(data), *more)
    assert "Traceback" not in err
    return code, out


def test_status_after_kill_9_says_not_running_in_text_and_json(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess], capsys: pytest.CaptureFixture[str]) -> None:
    server = sims()
    data = tmp_path / "data"
    g = gateways(server.endpoint, data)
    g.wait_online()
    code, out = _status(capsys, data, "--json")
    live = json.loads(out)
    assert code == 0 and live["running"] is True and live["condition"] == "online"
    assert live["online"] is True and live["uptime_s"] >= 0
    g.proc.send_signal(signal.SIGKILL)
    assert g.proc.wait(timeout=DEADLINE_S) == -signal.SIGKILL
    raw = g.status()
    assert raw is not None and raw["running"] is True  # what the file still says
    code, out = _status(capsys, data, "--json")
    dead = json.loads(out)
    assert code == Exit.FAILURE
    assert dead["running"] is False and dead["condition"] == "dead" and dead["online"] is False
    assert dead["state"] == "ONLINE"  # the last state seen, with running/condition saying so
    code, text = _status(capsys, data)
    assert code == Exit.FAILURE
    assert "NOT RUNNING" in text and "gone without stopping" in text
    assert "ONLINE for" not in text and "last seen ONLINE" in text


def test_status_of_a_pid_reused_by_another_process_is_not_running(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A live pid is not enough: after kill -9 the pid may belong to anyone (here: this test).
    Only the gateway's lock on the data directory says it runs."""
    (tmp_path / "status.json").write_text(json.dumps(
        {"pid": os.getpid(), "running": True, "state": "ONLINE", "counters": {}}))
    (tmp_path / "gateway.lock").write_text(f"{os.getpid()}\n")
    code, out = _status(capsys, tmp_path, "--json")
    assert code == Exit.FAILURE and json.loads(out)["running"] is False
    with open(tmp_path / "gateway.lock") as held:  # as a live gateway holds it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        code, out = _status(capsys, tmp_path, "--json")
        assert code == 0 and json.loads(out)["running"] is True


def test_status_of_a_stopped_gateway_shows_no_current_state(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess], capsys: pytest.CaptureFixture[str]) -> None:
    server = sims()
    data = tmp_path / "data"
    g = gateways(server.endpoint, data)
    g.wait_online()
    assert g.stop() == 0
    code, text = _status(capsys, data)
    assert code == Exit.FAILURE
    assert "stopped (exit 0" in text and "ONLINE for" not in text
    code, out = _status(capsys, data, "--json")
    assert json.loads(out)["condition"] == "stopped"
    # What is queued while it is down is counted: the outbox is read from the store, not
    # copied from the file the gateway wrote before it stopped (which says 0).
    for payload in ("a", "b"):
        assert run_cli(capsys, "publish", "--data-dir", str(data), UPDATE, payload)[0] == 0
    assert (g.status() or {})["outbox"]["queued"] == 0
    code, text = _status(capsys, data)
    assert "outbox     2 queued (oldest " in text and "as of the last update" not in text
    code, out = _status(capsys, data, "--json")
    outbox = json.loads(out)["outbox"]
    assert outbox["queued"] == 2 and outbox["checked_now"] is True
    assert outbox["oldest_age_s"] is not None


def test_status_without_a_readable_store_says_its_outbox_is_the_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "status.json").write_text(json.dumps(
        {"pid": 1, "running": False, "state": "ONLINE", "counters": {},
         "exit": {"code": 0, "reason": "stopped by signal (clean)"},
         "outbox": {"queued": 7, "dead_letters": 0, "capacity": 10}}))
    code, text = _status(capsys, tmp_path)
    assert code == Exit.FAILURE
    assert "7 queued" in text and "(as of the last update)" in text
    code, out = _status(capsys, tmp_path, "--json")
    outbox = json.loads(out)["outbox"]
    assert outbox["queued"] == 7 and outbox["checked_now"] is False
    assert not db_path(tmp_path).exists()  # status never creates a store


def test_status_text_gives_the_signals_age_and_a_port_lost_before_the_stop() -> None:
    now = 1_700_000_100.0
    status = {"pid": 1, "state": "ONLINE", "started_at": "2023-11-14T22:00:00Z",
              "updated_at": "2023-11-14T22:15:00Z", "rssi": 24,
              "signal_at": "2023-11-14T22:14:20Z", "counters": {}}
    assert "signal 24/31 (40s ago)" in format_status(status, alive=True, now=now)
    assert current_status(status, alive=True, now=now)["signal_age_s"] == 40.0
    assert current_status({**status, "signal_at": None}, True, now)["signal_age_s"] is None
    unknown = format_status({**status, "rssi": 99}, alive=True, now=now)
    assert "signal ?/31," in unknown and "ago), ip" not in unknown
    stopped = {**status, "port_lost": True, "exit": {"code": 0, "reason": "stopped"}}
    text = format_status(stopped, alive=False, now=now)
    assert "last seen SERIAL PORT LOST (0s ago; the machine was in ONLINE)" in text
    assert "last seen ONLINE" not in text


def test_status_while_the_port_is_gone_says_so(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess], capsys: pytest.CaptureFixture[str]) -> None:
    server = sims()
    data = tmp_path / "data"
    g = gateways(server.endpoint, data)
    g.wait_online()
    server.stop()  # the pty vanishes: an unplugged USB adapter
    g.wait_status(lambda s: bool(s.get("port_lost_since")), what="the port loss noticed")
    code, out = _status(capsys, data, "--json")
    lost = json.loads(out)
    assert code == 0 and lost["condition"] == "port_lost" and lost["online"] is False
    code, text = _status(capsys, data)
    assert "SERIAL PORT LOST" in text and "ONLINE for" not in text
    assert g.stop() == 0


def test_status_shows_outbox_age_last_puback_and_unknown_module_fields() -> None:
    now = 1_700_000_100.0
    status = {"running": True, "pid": 1, "state": "ONLINE", "since": "2023-11-14T22:13:20Z",
              "started_at": "2023-11-14T22:00:00Z", "updated_at": "2023-11-14T22:15:00Z",
              "outbox": {"queued": 3, "dead_letters": 1, "capacity": 10,
                         "oldest_enqueued_at": "2023-11-14T22:13:00Z",
                         "last_puback_at": "2023-11-14T22:14:50Z"},
              "counters": {"reconnects": {"mqtt_lost": 2, "rebooted": 1}}}
    text = format_status(status, alive=True, now=now)
    assert "3 queued (oldest 2m00s), 1 dead letters (capacity 10), last PUBACK 10s ago" in text
    assert "up 15m00s" in text and "reconnects mqtt_lost 2, rebooted 1" in text
    assert "IMEI ?, ICCID ?" in text and "operator ?" in text  # until the core reads them
    with_module = {**status, "imei": "862991419835241", "operator": "CHINA MOBILE"}
    text = format_status(with_module, alive=True, now=now)
    assert "IMEI 862991419835241" in text and "operator CHINA MOBILE" in text


def _read_block(stream: Any) -> str:
    """One `status --watch` print into a pipe: lines up to the blank line after them."""
    lines = []
    while True:
        line = stream.readline()
        if not line:
            raise AssertionError("status --watch ended: " + "".join(lines))
        if line == "\n":
            return "".join(lines)
        lines.append(line)


def test_status_watch_prints_once_per_change_into_a_pipe(tmp_path: Path) -> None:
    base = {"pid": 1, "running": False, "state": "ATTACH", "counters": {},
            "exit": {"code": 0, "reason": "stopped by signal (clean)"},
            "updated_at": "2023-11-14T22:15:00Z"}
    path = tmp_path / "status.json"
    path.write_text(json.dumps(base))
    proc = subprocess.Popen([sys.executable, "-m", "airfsm", "status", "--watch", "--interval",
                             "0.05", "--data-dir", str(tmp_path)], stdout=subprocess.PIPE,
                            text=True, env=clean_env())
    try:
        assert "last seen ATTACH" in _read_block(proc.stdout)
        path.write_text(json.dumps({**base, "updated_at": "2023-11-14T22:15:30Z"}))  # heartbeat
        path.write_text(json.dumps({**base, "state": "BEARER"}))
        second = _read_block(proc.stdout)  # not the heartbeat: it changed nothing
        assert "last seen BEARER" in second
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=DEADLINE_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_status_watch_redraws_in_place_on_a_terminal(tmp_path: Path) -> None:
    import pty
    import select
    (tmp_path / "status.json").write_text(json.dumps(
        {"pid": 1, "running": False, "state": "ONLINE", "counters": {}}))
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "airfsm", "status", "--watch", "--interval",
                             "0.05", "--data-dir", str(tmp_path)], stdout=slave,
                            env=clean_env())
    os.close(slave)
    screen = b""
    try:
        deadline = time.monotonic() + DEADLINE_S
        while screen.count(b"\x1b[H\x1b[J") < 2 and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                screen += os.read(master, 4096)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=DEADLINE_S)
        os.close(master)
    assert screen.count(b"\x1b[H\x1b[J") >= 2 and b"last seen ONLINE" in screen


def test_publish_and_inbox_without_a_gateway_store_refuse_and_create_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped --data-dir used to get a fresh store no gateway would ever read."""
    data = tmp_path / "typo"
    for args in (("publish", "--data-dir", str(data), UPDATE, "lost?"),
                 ("publish", "--data-dir", str(data), "update", "relative"),
                 ("inbox", "--data-dir", str(data)),
                 ("inbox", "--data-dir", str(data), "--follow")):
        code, out, err = run_cli(capsys, *args)
        assert code == Exit.FAILURE and out == "", args
        assert len(err.strip().splitlines()) == 1 and "no store at" in err
        assert "airfsm run" in err
    assert not data.exists()
    # bad input is still a usage error first, store or not
    code, _, err = run_cli(capsys, "publish", "--data-dir", str(data), "/pk/dn/#", "x")
    assert code == Exit.USAGE and "wildcard" in err


# ---------------------------------------------------------------------- subscriptions

RRPC = f"/sys/{SEED_PK}/{SEED_DN}/rrpc/request/+"


def _online_gateway(config: GatewayConfig) -> tuple[Gateway, threading.Thread, list[Exit]]:
    gateway = Gateway(config, install_signals=False)
    thread, result = _run_in_thread(gateway)
    wait_until(lambda: _state(gateway) == State.ONLINE, what="ONLINE")
    return gateway, thread, result


def test_a_wildcard_subscription_from_the_config_reaches_the_module_and_the_inbox(
        tmp_path: Path, sims: Callable[..., SimServer], log_buffer: io.StringIO) -> None:
    server = sims()
    config = _config(server.endpoint, tmp_path, subscribe=("/sys/{pk}/{dn}/rrpc/request/+",))
    gateway, thread, result = _online_gateway(config)
    try:
        commands, _ = module_record(server)
        assert f'AT+MSUB="{RRPC}",0' in commands
        request = f"/sys/{SEED_PK}/{SEED_DN}/rrpc/request/1700000000"
        assert server.send_downlink(request, b'{"method":"thing.service.ping"}')
        with SqliteInbox(db_path(tmp_path)) as inbox:
            wait_until(lambda: inbox.read(0), what="the RRPC request in the inbox")
            assert inbox.read(0)[0][1].topic == request
    finally:
        gateway.request_stop()
        thread.join(timeout=DEADLINE_S)
    assert result == [Exit.OK]


def test_several_subscriptions_each_reach_the_module_and_the_inbox(
        tmp_path: Path, sims: Callable[..., SimServer], log_buffer: io.StringIO) -> None:
    server = sims()
    config = _config(server.endpoint, tmp_path, subscribe=(
        "get", "/sys/{pk}/{dn}/thing/service/property/set", "/sys/{pk}/{dn}/rrpc/request/+"))
    gateway, thread, result = _online_gateway(config)
    try:
        commands, _ = module_record(server)
        property_set = f"/sys/{SEED_PK}/{SEED_DN}/thing/service/property/set"
        for topic in (GET, property_set, RRPC):
            assert f'AT+MSUB="{topic}",0' in commands
        # what the cloud sends on each of them reaches the inbox, in order
        request = f"/sys/{SEED_PK}/{SEED_DN}/rrpc/request/42"
        sent = [(property_set, b'{"params":{"LightSwitch":1}}'), (request, b'{"id":"42"}'),
                (GET, b'{"method":"blink"}')]
        for topic, payload in sent:
            assert server.send_downlink(topic, payload)
        with SqliteInbox(db_path(tmp_path)) as inbox:
            wait_until(lambda: len(inbox.read(0)) == len(sent), what="three downlinks stored")
            assert [(m.topic, m.payload) for _id, m in inbox.read(0)] == sent
    finally:
        gateway.request_stop()
        thread.join(timeout=DEADLINE_S)
    assert result == [Exit.OK]
