"""Instance endpoints, dynamic registration, the direct MQTT sign and the sign's timestamp, end
to end: `airfsm connect` and the gateway over a real pty to the simulator (whose cloud clock
is the wall clock)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from airfsm.core.codes import State
from airfsm.core.table import MACHINE
from airfsm.host import log
from airfsm.host.config import GatewayConfig
from airfsm.host.errors import Exit
from airfsm.host.gateway import Gateway
from airfsm.host.secret_file import SECRET_FILE, read_device_secret
from airfsm.sim import SimConfig, SimServer
from airfsm.sim.module import REGISTER_REFUSED_CODE
from tests.harness import SEED_DN, SEED_DS, SEED_PK

DEADLINE_S = 60  # a bound against hangs, not a performance expectation
PRODUCT_SECRET = "Pr0ductS3cretForTheWholeProduct1"
INSTANCE = "iot-06z00ax1o4qtest"


def airfsm(*args: str, env_extra: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFSM_")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "airfsm", *args], capture_output=True,
                          text=True, env=env, timeout=DEADLINE_S)


def connect(endpoint: str, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    return airfsm("connect", "--port", endpoint, "--product-key", SEED_PK, "--device-name",
                  SEED_DN, "--timeout", "30", *extra,
                  env_extra={f"AIRFSM_{k.upper()}": v for k, v in env.items()})


@pytest.fixture
def sim_of() -> Iterator[Any]:
    started: list[SimServer] = []

    def start(**config: Any) -> SimServer:
        server = SimServer(SimConfig(profile="fast", **config), transport="pty").start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def cloud(server: SimServer, what: str) -> Any:
    return server.call(lambda m, _now: getattr(m, what))


def test_connect_to_an_instance(sim_of: Any) -> None:
    server = sim_of(instance_id=INSTANCE)
    result = connect(server.endpoint, "--instance-id", INSTANCE, device_secret=SEED_DS)
    assert result.returncode == 0, result.stderr
    commands = cloud(server, "commands")
    assert f'AT+SSLMIPSTART="{INSTANCE}.mqtt.iothub.aliyuncs.com",1883' in commands


def test_register_once_keep_the_secret_then_never_again(sim_of: Any, tmp_path: Path) -> None:
    server = sim_of(product_secret=PRODUCT_SECRET)
    data = tmp_path / "data"
    first = connect(server.endpoint, data_dir=str(data), product_secret=PRODUCT_SECRET)
    assert first.returncode == 0, first.stderr
    issued = cloud(server, "device_secret")
    path = data / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_device_secret(data) == issued and cloud(server, "registrations") == 1
    # neither secret is printed, whatever the output
    for secret in (issued, PRODUCT_SECRET):
        assert secret not in first.stdout + first.stderr
    assert [p.name for p in data.iterdir()] == [SECRET_FILE]  # no temporary file left

    second = connect(server.endpoint, data_dir=str(data), product_secret=PRODUCT_SECRET)
    assert second.returncode == 0, second.stderr
    assert cloud(server, "register_requests") == 1  # the stored secret was used

    # the secret lost (a wiped data directory): the cloud will not register the device again
    path.unlink()
    third = connect(server.endpoint, "--auth-attempts", "2", data_dir=str(data),
                    product_secret=PRODUCT_SECRET)
    assert third.returncode == Exit.CREDENTIALS, third.stderr
    assert "registers only once" in third.stderr and str(REGISTER_REFUSED_CODE) in third.stderr
    assert "Traceback" not in third.stderr and not path.exists()


def test_a_stored_secret_readable_by_others_is_refused_in_one_line(
        sim_of: Any, tmp_path: Path) -> None:
    server = sim_of(product_secret=PRODUCT_SECRET)
    (tmp_path / SECRET_FILE).write_text("leaked-secret\n")
    os.chmod(tmp_path / SECRET_FILE, 0o644)
    result = connect(server.endpoint, data_dir=str(tmp_path), product_secret=PRODUCT_SECRET)
    assert result.returncode == Exit.USAGE
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "readable by others" in lines[0]
    assert "leaked-secret" not in result.stderr


def test_connect_with_the_direct_sign(sim_of: Any) -> None:
    server = sim_of()
    result = connect(server.endpoint, "--auth", "mqtt-sign", "--progress",
                     device_secret=SEED_DS)
    assert result.returncode == 0, result.stderr
    assert "HTTP_AUTH" not in result.stdout and cloud(server, "auth_requests") == 0
    assert not any(c.startswith("AT+HTTP") for c in cloud(server, "commands"))


def test_a_wrong_direct_sign_exits_5(sim_of: Any) -> None:
    server = sim_of()
    result = connect(server.endpoint, "--auth", "mqtt-sign", "--auth-attempts", "1",
                     device_secret="not-the-secret")
    assert result.returncode == Exit.CREDENTIALS, result.stderr
    assert "refused the direct MQTT sign" in result.stderr


# ---------------------------------------------------------------------- the gateway's wall clock


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    log.configure("info", json=True, stream=buffer)
    yield buffer
    log.configure("warning", json=True, stream=io.StringIO())


# One attempt at the auth and at the connect: a refusal is final at once (no backoff to wait).
ONE_ATTEMPT = tuple(replace(row, policy=replace(row.policy, retries=0))
                    if row.state in (State.HTTP_AUTH, State.MQTT_CONNECT) and row.policy
                    else row for row in MACHINE)


def run_gateway(config: GatewayConfig, clock: Any) -> tuple[Gateway, list[Exit]]:
    gateway = Gateway(config, install_signals=False, wall_clock_ms=clock, table=ONE_ATTEMPT)
    result: list[Exit] = []
    thread = threading.Thread(target=lambda: result.append(gateway.run()), daemon=True)
    thread.start()
    deadline = time.monotonic() + DEADLINE_S
    while not result and not (gateway.controller is not None and gateway.controller.online):
        assert time.monotonic() < deadline, "neither ONLINE nor exited"
        time.sleep(0.02)  # poll interval; the deadline decides
    gateway.request_stop()
    thread.join(timeout=DEADLINE_S)
    return gateway, result


@pytest.mark.parametrize("auth", ["https", "mqtt-sign"])
def test_the_gateway_signs_with_its_wall_clock(sim_of: Any, tmp_path: Path, auth: str,
                                               log_buffer: io.StringIO) -> None:
    server = sim_of()
    config = GatewayConfig(port=server.endpoint, product_key=SEED_PK, device_name=SEED_DN,
                           device_secret=SEED_DS, data_dir=tmp_path, auth=auth)
    gateway, result = run_gateway(config, lambda: time.time_ns() // 1_000_000)
    assert result == [Exit.OK], gateway.exit_reason
    commands = cloud(server, "commands")
    if auth == "mqtt-sign":
        assert any(",timestamp=" in c for c in commands if c.startswith("AT+MCONFIG="))
    # (the auth body is not an AT command line: the cloud checked its timestamp, or refused)


@pytest.mark.parametrize("ntp", [True, False])
def test_with_ntp_the_gateway_signs_by_the_ntp_corrected_clock(
        sim_of: Any, tmp_path: Path, ntp: bool, log_buffer: io.StringIO) -> None:
    """No clock given: `ntp = true` timestamps the sign by the gateway's NTP-corrected wall
    clock (the local one before the first answer); without NTP nothing is timestamped."""
    server = sim_of()
    config = GatewayConfig(port=server.endpoint, product_key=SEED_PK, device_name=SEED_DN,
                           device_secret=SEED_DS, data_dir=tmp_path, auth="mqtt-sign", ntp=ntp)
    gateway, result = run_gateway(config, None)
    assert result == [Exit.OK], gateway.exit_reason
    mconfig = [c for c in cloud(server, "commands") if c.startswith("AT+MCONFIG=")]
    assert mconfig and all((",timestamp=" in c) == ntp for c in mconfig)


@pytest.mark.parametrize("auth", ["https", "mqtt-sign"])
def test_a_gateway_clock_an_hour_off_is_refused(sim_of: Any, tmp_path: Path, auth: str,
                                                log_buffer: io.StringIO) -> None:
    server = sim_of()
    config = GatewayConfig(port=server.endpoint, product_key=SEED_PK, device_name=SEED_DN,
                           device_secret=SEED_DS, data_dir=tmp_path, auth=auth)
    gateway, result = run_gateway(config, lambda: time.time_ns() // 1_000_000 - 3_600_000)
    assert result == [Exit.CREDENTIALS], gateway.exit_reason


def test_the_gateway_registers_keeps_the_secret_and_restarts_with_it(
        sim_of: Any, tmp_path: Path, log_buffer: io.StringIO) -> None:
    server = sim_of(product_secret=PRODUCT_SECRET)
    config = GatewayConfig(port=server.endpoint, product_key=SEED_PK, device_name=SEED_DN,
                           product_secret=PRODUCT_SECRET, data_dir=tmp_path)
    gateway, result = run_gateway(config, None)
    assert result == [Exit.OK], gateway.exit_reason
    issued = cloud(server, "device_secret")
    assert read_device_secret(tmp_path) == issued
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600
    assert gateway.settings.identity.device_secret == issued  # a new controller would sign so
    again, result = run_gateway(config, None)
    assert result == [Exit.OK], again.exit_reason
    assert cloud(server, "register_requests") == 1
    logged = log_buffer.getvalue()
    assert "device_registered" in logged
    for secret in (issued, PRODUCT_SECRET):
        assert secret not in logged
        assert secret not in (tmp_path / "status.json").read_text()
