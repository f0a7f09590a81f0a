"""The command line, end to end: real processes, a real pty, the simulator on the other side."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airfsm.sim import SimConfig, SimServer, parse_fault
from tests.harness import SEED_DN, SEED_DS, SEED_PK

DEADLINE_S = 60  # a bound against hangs, not a performance expectation


def airfsm(*args: str, secret: str | None = SEED_DS, stdin: str | None = None,
           ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFSM_")}
    if secret is not None:
        env["AIRFSM_DEVICE_SECRET"] = secret
    return subprocess.run([sys.executable, "-m", "airfsm", *args], capture_output=True,
                          text=True, env=env, timeout=DEADLINE_S, input=stdin)


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(profile="fast"), transport="pty") as server:
        server.start()
        yield server


def connect_args(endpoint: str, *extra: str) -> list[str]:
    return ["connect", "--port", endpoint, "--product-key", SEED_PK,
            "--device-name", SEED_DN, *extra]


def assert_one_line_error(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("airfsm")


def test_connect_reaches_online_over_a_real_pty(sim: SimServer) -> None:
    result = airfsm(*connect_args(sim.endpoint, "--timeout", "30", "--progress"))
    assert result.returncode == 0, result.stderr
    assert "online in" in result.stdout
    for stage in ("AUTOBAUD", "VERSION_CHECK", "ATTACH", "BEARER", "HTTP_AUTH", "MQTT_CONNECT",
                  "ONLINE"):
        assert stage in result.stdout
    assert sim.call(lambda m, _now: m.mqtt_state) == 1
    assert SEED_DS not in result.stdout + result.stderr


def test_connect_over_tcp() -> None:
    with SimServer(SimConfig(profile="fast"), transport="tcp") as server:
        server.start()
        result = airfsm(*connect_args(server.endpoint, "--timeout", "30"))
    assert result.returncode == 0, result.stderr


def test_old_firmware_exits_4_without_any_http_command() -> None:
    config = SimConfig(profile="fast", faults=[parse_fault("old-firmware")])
    with SimServer(config, transport="pty") as server:
        server.start()
        result = airfsm(*connect_args(server.endpoint, "--timeout", "30"))
        commands = server.call(lambda m, _now: list(m.commands))
    assert result.returncode == 4
    assert_one_line_error(result)
    assert "older than V409" in result.stderr
    assert not any(c.startswith("AT+HTTP") for c in commands)


def test_auth_401_exits_5_and_never_sends_mconfig() -> None:
    config = SimConfig(profile="fast", faults=[parse_fault("auth=401@*")])
    with SimServer(config, transport="pty") as server:
        server.start()
        result = airfsm(*connect_args(server.endpoint, "--timeout", "30",
                                      "--auth-attempts", "2"))
        commands = server.call(lambda m, _now: list(m.commands))
    assert result.returncode == 5
    assert_one_line_error(result)
    assert "401" in result.stderr
    assert commands.count("AT+HTTPACTION=1") == 2
    assert not any(c.startswith("AT+MCONFIG") for c in commands)


def test_timeout_exits_6_naming_the_stage() -> None:
    config = SimConfig(profile="fast", attach_after_ms=10**9)
    with SimServer(config, transport="pty") as server:
        server.start()
        result = airfsm(*connect_args(server.endpoint, "--timeout", "1"))
    assert result.returncode == 6
    assert_one_line_error(result)
    assert "ATTACH" in result.stderr
    assert "not attached yet" in result.stderr  # the last step failure says why


def test_longest_timeout_the_clock_holds_is_accepted(sim: SimServer) -> None:
    result = airfsm(*connect_args(sim.endpoint, "--timeout", "2147483"))
    assert result.returncode == 0, result.stderr


def test_empty_apn_is_the_networks_default_and_reaches_online() -> None:
    with SimServer(SimConfig(profile="fast"), transport="pty") as server:
        server.start()
        result = airfsm(*connect_args(server.endpoint, "--timeout", "30", "--apn", ""))
        commands = server.call(lambda m, _now: list(m.commands))
    assert result.returncode == 0, result.stderr
    assert 'AT+SAPBR=3,1,"APN",""' in commands


def test_truncated_auth_reply_over_a_real_pty_is_logged_and_retried() -> None:
    # Wall-clock stall detection on a real pty: 20 bytes of the HTTPREAD body lost on the UART.
    config = SimConfig(profile="fast", faults=[parse_fault("lose=20:AT+HTTPREAD")])
    with SimServer(config, transport="pty") as server:
        server.start()
        result = airfsm(*connect_args(server.endpoint, "--timeout", "60", "--log-level",
                                      "warning"))
        commands = server.call(lambda m, _now: list(m.commands))
    assert result.returncode == 0, result.stderr
    warnings = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    # the reply: 128 bytes of code, iotId, iotToken and message, and the broker it names
    # (the form asks for resources=mqtt): ,"resources":{"mqtt":{"host":"<93>","port":1883}}
    assert [(w["event"], w["what"], w["declared"]) for w in warnings] == [
        ("payload_truncated", "http body", 221)]
    assert commands.count("AT+HTTPREAD") == 2  # dropped, then read again on the retry


def test_unopenable_port_exits_3_with_one_line() -> None:
    result = airfsm(*connect_args("/dev/does-not-exist-airfsm"))
    assert result.returncode == 3
    assert_one_line_error(result)
    assert "/dev/does-not-exist-airfsm" in result.stderr


@pytest.mark.parametrize("args, secret, words", [
    (["connect", "--port", "/dev/null", "--product-key", SEED_PK, "--device-name", SEED_DN],
     None, "DeviceSecret"),
    (["connect", "--port", "/dev/null", "--product-key", SEED_PK], SEED_DS, "--device-name"),
    (["connect", "--port", "/dev/null", "--product-key", "bad key!", "--device-name", SEED_DN],
     SEED_DS, "product_key"),
    (["connect", "--port", "/dev/null", "--product-key", SEED_PK, "--device-name", SEED_DN,
      "--apn", 'x"\r\nAT+RESET'], SEED_DS, "apn"),
    (["connect", "--port", "/dev/null", "--product-key", SEED_PK, "--device-name", SEED_DN,
      "--baud", "fast"], SEED_DS, "--baud"),
    # Only the standard rates: 0 used to mean 115200, silently.
    *((["connect", "--port", "/dev/null", "--product-key", SEED_PK, "--device-name", SEED_DN,
        "--baud", baud], SEED_DS, "--baud") for baud in ("0", "-9600", "12345")),
    # A timeout the wrap-safe 32-bit ms clock cannot express (2200000 s used to exit at once).
    *((["connect", "--port", "/dev/null", "--product-key", SEED_PK, "--device-name", SEED_DN,
        "--timeout", timeout], SEED_DS, "--timeout")
      for timeout in ("nan", "inf", "-inf", "2200000", "0", "-1", "soon")),
    (["connect", "--port", "/dev/null", "--product-key", SEED_PK, "--device-name", SEED_DN,
      "--keepalive-s", "300"], SEED_DS, "unrecognized"),
    (["sim", "--fault", "explode"], None, "fault"),
    (["frobnicate"], None, "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line(args: list[str], secret: str | None,
                                            words: str) -> None:
    result = airfsm(*args, secret=secret)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result)
    assert words in result.stderr


def test_secret_given_on_the_command_line_never_echoed_in_errors() -> None:
    secret = "S3cr3tValueThatMustNotLeak"
    result = airfsm("connect", "--port", "/dev/does-not-exist-airfsm", "--product-key",
                    SEED_PK, "--device-name", "x", "--device-secret", secret, secret=None)
    assert result.returncode == 2
    assert secret not in result.stderr + result.stdout


def test_sign_prints_the_seed_vector() -> None:
    result = airfsm("sign", "--product-key", SEED_PK, "--device-name", SEED_DN)
    assert result.returncode == 0, result.stderr
    assert "1eb96463ad2345b6c261e2f7cc78a7a0" in result.stdout
    assert ("productKey=b0FMK1Ga5cp&sign=1eb96463ad2345b6c261e2f7cc78a7a0"
            "&clientId=862991419835241&deviceName=862991419835241") in result.stdout
    assert "length: 112" in result.stdout
    assert "AT+HTTPDATA=112,20000" in result.stdout


def test_sign_with_sha256() -> None:
    result = airfsm("sign", "--product-key", SEED_PK, "--device-name", SEED_DN,
                    "--sign-method", "hmacsha256")
    assert result.returncode == 0
    assert "signmethod=hmacsha256" in result.stdout


def test_demo_runs_the_whole_job_without_hardware() -> None:
    result = airfsm("demo", "--profile", "fast", secret=None)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "ONLINE" in out
    assert "published 2 messages" in out
    assert "received on /b0FMK1Ga5cp/862991419835241/get" in out
    assert "cloud received  2 message(s)" in out


def test_demo_shows_every_poll_and_retry_as_it_happens() -> None:
    result = airfsm("demo", "--profile", "fast", "--attach-after", "3", "--fault", "auth=401@1",
                    secret=None)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    polls = [line for line in lines if "ATTACH        waiting for +CGATT: 1 (poll " in line]
    assert polls and polls[0].endswith("(poll 1/60)"), result.stdout
    assert any("HTTP_AUTH     auth code 401" in line and "retry 1/5 in " in line
               for line in lines), result.stdout


def test_python_dash_m_and_help() -> None:
    result = airfsm("--help")
    assert result.returncode == 0
    for command in ("connect", "sim", "demo", "sign"):
        assert command in result.stdout


def test_sim_command_serves_a_pty_and_prints_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFSM_")}
    proc = subprocess.Popen([sys.executable, "-m", "airfsm", "sim", "--profile", "fast"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("simulated Air72x")
        endpoint = first.split(" on ")[-1].strip()
        result = airfsm(*connect_args(endpoint, "--timeout", "30"))
        assert result.returncode == 0, result.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=DEADLINE_S)
    assert proc.returncode == 0


# --- lazy subcommands -------------------------------------------------------------------------

# What `--help`, `publish`, `status` do without; the AT channel and the machine table were a
# third of publish's start-up (bench.cli_startup measures it).
HEAVY = ("structlog", "transitions", "serial", "airfsm.sim", "airfsm.core.controller",
         "airfsm.host.gateway", "airfsm.host.log", "paho", "prometheus_client",
         "airfsm.host.bridge", "airfsm.host.metrics", "airfsm.core.at", "airfsm.core.table")
_LOADED = """
import sys
from airfsm.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("LOADED", code, *sorted(sys.modules), file=sys.stderr)
"""


def loaded_heavy(*args: str) -> tuple[int, list[str]]:
    """Run the CLI in a fresh interpreter; (exit code, heavy modules it imported)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFSM_")}
    result = subprocess.run([sys.executable, "-c", _LOADED, *args], capture_output=True,
                            text=True, env=env, timeout=DEADLINE_S)
    [line] = [line for line in result.stderr.splitlines() if line.startswith("LOADED")]
    _, code, *modules = line.split(" ")
    heavy = [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    return int(code), heavy


def test_help_and_publish_import_no_heavy_module(tmp_path: Path) -> None:
    assert loaded_heavy("--help") == (0, [])
    assert loaded_heavy("publish", "--help") == (0, [])
    from airfsm.host.store import SqliteOutbox, db_path
    SqliteOutbox(db_path(tmp_path)).close()  # the store a gateway made
    code, heavy = loaded_heavy("publish", "--data-dir", str(tmp_path), "/pk/dn/update", "x")
    assert (code, heavy) == (0, [])
    with SqliteOutbox(db_path(tmp_path)) as box:  # it did publish
        assert box.count() == 1
    assert loaded_heavy("--version") == (0, [])
    assert loaded_heavy("status", "--help") == (0, [])
    # The check can fail: a command that needs them does load them.
    assert "airfsm.core.controller" in loaded_heavy("connect", "--help")[1]
    # `run --help` lists --bridge and the metrics flags without loading paho or prometheus
    code, heavy = loaded_heavy("run", "--help")
    assert code == 0 and not [m for m in heavy if m.startswith(("paho", "prometheus"))]


def test_help_lists_every_subcommand_and_each_has_its_own_help() -> None:
    from airfsm.cli.commands import COMMANDS

    listed = airfsm("--help").stdout
    for command in COMMANDS:
        assert f"    {command.name} " in listed and command.help.split()[0] in listed
        result = airfsm(command.name, "--help")
        assert result.returncode == 0, (command.name, result.stderr)
        assert result.stdout.startswith(f"usage: airfsm {command.name}")


def test_the_command_table_agrees_with_what_the_modules_register() -> None:
    from airfsm.cli import build_parser
    from airfsm.cli.commands import COMMANDS

    parser = build_parser()  # every module registered
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    registered = {action.dest: action.help for action in sub._choices_actions}
    assert registered == {command.name: command.help for command in COMMANDS}


# --- one configuration for every command; visible waits ----------------------------------------


def test_connect_reads_the_config_file_and_the_environment(sim: SimServer, tmp_path: Path,
                                                           ) -> None:
    config = tmp_path / "airfsm.toml"
    config.write_text(f'port = "{sim.endpoint}"\nproduct_key = "{SEED_PK}"\n'
                      f'device_name = "{SEED_DN}"\napn = "cfgapn"\ntimeout_s = 30\n')
    result = airfsm("connect", "--config", str(config))  # the secret: AIRFSM_DEVICE_SECRET
    assert result.returncode == 0, result.stderr
    commands = sim.call(lambda m, _now: list(m.commands))
    assert 'AT+SAPBR=3,1,"APN","cfgapn"' in commands
    # $AIRFSM_CONFIG names the file as --config does; a flag still wins over it
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFSM_")}
    env.update(AIRFSM_CONFIG=str(config), AIRFSM_DEVICE_SECRET=SEED_DS, AIRFSM_APN="envapn")
    result = subprocess.run([sys.executable, "-m", "airfsm", "connect", "--baud", "115200"],
                            capture_output=True, text=True, env=env, timeout=DEADLINE_S)
    assert result.returncode == 0, result.stderr
    assert 'AT+SAPBR=3,1,"APN","envapn"' in sim.call(lambda m, _now: list(m.commands))


def test_connect_gives_up_after_AIRFSM_TIMEOUT_S() -> None:
    """A module that never answers: AIRFSM_TIMEOUT_S bounds `connect` (it used to hang)."""
    import pty
    import tty
    master, slave = pty.openpty()
    tty.setraw(slave)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFSM_")}
        env.update(AIRFSM_DEVICE_SECRET=SEED_DS, AIRFSM_TIMEOUT_S="1",
                   AIRFSM_PORT=os.ttyname(slave), AIRFSM_PRODUCT_KEY=SEED_PK,
                   AIRFSM_DEVICE_NAME=SEED_DN)
        result = subprocess.run([sys.executable, "-m", "airfsm", "connect"], capture_output=True,
                                text=True, env=env, timeout=DEADLINE_S)
    finally:
        os.close(slave)
        os.close(master)
    assert result.returncode == 6, result.stderr
    assert_one_line_error(result)
    assert "timed out in AUTOBAUD" in result.stderr


def test_connect_shows_every_poll_and_retry_as_it_happens() -> None:
    config = SimConfig(profile="fast", attach_after_ms=3_000, faults=[parse_fault("auth=401@1")])
    with SimServer(config, transport="pty") as server:
        server.start()
        result = airfsm(*connect_args(server.endpoint, "--timeout", "60", "--progress"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    polls = [line for line in lines if "ATTACH        waiting for +CGATT: 1 (poll " in line]
    assert polls and polls[0].endswith("(poll 1/60)"), result.stdout
    retry = [line for line in lines if line.split("] ", 1)[-1].startswith("HTTP_AUTH ")
             and "retry 1/5 in " in line]
    assert len(retry) == 1 and "auth code 401" in retry[0], result.stdout
    assert "\x1b[" not in result.stdout  # not a terminal: plain lines, nothing redrawn


def test_connect_on_a_terminal_keeps_the_current_wait_in_place() -> None:
    import pty
    import select
    import time
    config = SimConfig(profile="fast", attach_after_ms=3_000)
    with SimServer(config, transport="pty") as server:
        server.start()
        master, slave = pty.openpty()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFSM_")}
        env["AIRFSM_DEVICE_SECRET"] = SEED_DS
        proc = subprocess.Popen([sys.executable, "-m", "airfsm",
                                 *connect_args(server.endpoint, "--timeout", "60")],
                                stdout=slave, stderr=subprocess.DEVNULL, env=env)
        os.close(slave)
        screen = b""
        deadline = time.monotonic() + DEADLINE_S
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.5)
                if ready:
                    try:
                        chunk = os.read(master, 4096)
                    except OSError:  # the child closed its end
                        break
                    if not chunk:
                        break
                    screen += chunk
                elif proc.poll() is not None:
                    break
        finally:
            os.close(master)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == 0, screen
    text = screen.decode(errors="replace")
    assert "\r\x1b[K" in text  # the wait line was rewritten in place
    assert "ATTACH        waiting for +CGATT: 1 (poll 1/60)" in text
    assert "online in" in text


def test_a_wait_that_stays_as_a_line_is_not_repeated_in_place() -> None:
    """On a terminal a retry of a second or more is a line of its own; the in-place line below
    it starts only when the wait says something new (its countdown)."""
    import io

    from airfsm.cli.connect import StageDisplay
    out = io.StringIO()
    display = StageDisplay(out, 0, clock=lambda: 90, live=True)
    retry = "HTTP_AUTH     auth code 401 (signature mismatch), retry 1/5 in 2 s"
    display._line(retry)
    display._in_place(retry)
    assert out.getvalue().count(retry) == 1
    display._in_place(retry.replace("in 2 s", "in 1 s"))
    display._in_place(retry)  # after something else, the same words are news again
    assert out.getvalue().count("in 1 s") == 1 and out.getvalue().count(retry) == 2


def test_config_check_prints_every_setting_with_its_source_and_masks_the_secret(
        tmp_path: Path) -> None:
    config = tmp_path / "airfsm.toml"
    config.write_text(f'port = "/dev/ttyUSB0"\nproduct_key = "{SEED_PK}"\n'
                      f'device_name = "{SEED_DN}"\nsubscribe = '
                      '["/sys/{pk}/{dn}/rrpc/request/+"]\nlog_level = "debug"\n')
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "device_secret").write_text(SEED_DS + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFSM_")}
    env.update(CREDENTIALS_DIRECTORY=str(creds), AIRFSM_APN="envapn")
    result = subprocess.run([sys.executable, "-m", "airfsm", "config", "check", "--config",
                             str(config), "--baud", "9600", "--json"], capture_output=True,
                            text=True, env=env, timeout=DEADLINE_S)
    assert result.returncode == 0, result.stderr
    assert SEED_DS not in result.stdout + result.stderr
    settings = json.loads(result.stdout)["settings"]
    assert settings["device_secret"] == {"value": "***",
                                         "source": f"credential {creds / 'device_secret'}"}
    assert settings["port"]["source"] == f"file {config}"
    assert settings["apn"] == {"value": "envapn", "source": "env AIRFSM_APN"}
    assert settings["baud"] == {"value": 9600, "source": "flag --baud"}
    assert settings["region"] == {"value": "cn-shanghai", "source": "default"}
    assert settings["subscribe"]["value"] == ["/sys/{pk}/{dn}/rrpc/request/+"]
    text = subprocess.run([sys.executable, "-m", "airfsm", "config", "check", "--config",
                           str(config)], capture_output=True, text=True, env=env,
                          timeout=DEADLINE_S)
    assert text.returncode == 0 and text.stdout.startswith("configuration OK")
    assert any(line.split()[:2] == ["device_secret", "***"] for line in text.stdout.splitlines())


@pytest.mark.parametrize("line, words", [
    ('baud = 12345', "'baud'"),
    ('subscribe = ["a/b+"]', "'subscribe'"),
    ('device_name = "x"', "device_name"),  # the controller's own check (4-32 characters)
    ('colour = "blue"', "unknown key 'colour'"),
])
def test_config_check_refuses_in_one_line_naming_the_key(tmp_path: Path, line: str,
                                                         words: str) -> None:
    config = tmp_path / "airfsm.toml"
    body = f'port = "/dev/ttyUSB0"\nproduct_key = "{SEED_PK}"\ndevice_name = "{SEED_DN}"\n'
    key = line.split(" = ")[0]
    body = "\n".join(x for x in body.splitlines() if not x.startswith(key)) + "\n" + line + "\n"
    config.write_text(body)
    result = airfsm("config", "check", "--config", str(config))
    assert result.returncode == 2, result.stdout
    assert_one_line_error(result)
    assert words in result.stderr


def test_log_levels_are_what_the_docs_say(sim: SimServer, tmp_path: Path) -> None:
    """docs/GATEWAY.md: `connect` logs at warning unless a level is given (its display says
    what happens); the config's log_level is one way to give it; `run` defaults to info."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "GATEWAY.md").read_text()
    assert "`info` by default for `airfsm run`" in docs
    assert "log at `warning` unless a level is given" in docs
    from airfsm.host.config import GatewayConfig
    assert GatewayConfig.__dataclass_fields__["log_level"].default == "info"
    quiet = airfsm(*connect_args(sim.endpoint, "--timeout", "30"))
    assert quiet.returncode == 0 and quiet.stderr == ""
    config = tmp_path / "airfsm.toml"
    config.write_text('log_level = "info"\n')
    chatty = airfsm(*connect_args(sim.endpoint, "--timeout", "30", "--config", str(config)))
    assert chatty.returncode == 0
    events = [json.loads(line)["event"] for line in chatty.stderr.splitlines() if line]
    assert "state" in events
