"""Living under systemd: sd_notify over a fake notify socket (READY, STATUS, WATCHDOG,
STOPPING from a real `airfsm run`), the secret by LoadCredential=, a clean environment for
reset_command's child, `<N>` journal priorities, and the unit file itself checked by
`systemd-analyze verify` and `security` where systemd is installed."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airfsm.host import log
from airfsm.host.gateway import Gateway
from airfsm.host.systemd import Notifier, child_environment, journal_stream_is
from airfsm.sim import SimServer
from tests.harness import SEED_DN, SEED_DS, SEED_PK
from tests.test_gateway import DEADLINE_S, GatewayProcess, _config, clean_env

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "contrib" / "airfsm.service"


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's (short path: sun_path holds 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="airfsm-notify-", dir="/tmp")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


def _receive_until(sock: socket.socket, messages: list[str],
                   done: Callable[[list[str]], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    sock.settimeout(0.5)
    while not done(messages):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; got {messages}")
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            continue


def test_run_tells_systemd_ready_status_watchdog_and_stopping(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess],
        notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    server = sims()
    env = clean_env(AIRFSM_DEVICE_SECRET=SEED_DS, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    g = gateways(server.endpoint, tmp_path / "data", env=env)
    messages: list[str] = []
    _receive_until(sock, messages, lambda m: any("READY=1" in x for x in m), "READY=1")
    _receive_until(sock, messages, lambda m: any("STATUS=ONLINE" in x for x in m),
                   "STATUS=ONLINE")
    count = sum("WATCHDOG=1" in m for m in messages)
    _receive_until(sock, messages, lambda m: sum("WATCHDOG=1" in x for x in m) >= count + 3,
                   "the loop to keep feeding the watchdog")
    assert g.stop() == 0
    _receive_until(sock, messages, lambda m: any("STOPPING=1" in x for x in m), "STOPPING=1")
    ready = next(m for m in messages if "READY=1" in m)
    assert "STATUS=" in ready
    assert all(SEED_DS not in m for m in messages)


def test_notifier_speaks_to_an_abstract_socket_and_honours_watchdog_pid() -> None:
    name = f"airfsm-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(DEADLINE_S)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000"})
        assert notifier.watchdog_interval_ms == 1000  # half of WatchdogSec
        notifier.ready("up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"
        notifier.status("up")  # unchanged: nothing sent
        notifier.status("ATTACH waiting\nfor +CGATT: 1")
        assert sock.recv(4096) == b"STATUS=ATTACH waiting for +CGATT: 1"  # one line
        notifier.watchdog(0)
        notifier.watchdog(999)  # not due yet
        notifier.watchdog(1000)
        assert [sock.recv(64), sock.recv(64)] == [b"WATCHDOG=1", b"WATCHDOG=1"]
        notifier.close()
    finally:
        sock.close()
    other = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "2000000",
                      "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_interval_ms == 0  # the watchdog is meant for another process
    assert not Notifier({}).enabled and Notifier({}).send("READY=1") is False


def test_reset_commands_child_gets_a_clean_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DeviceSecret (environment or credential directory) never reaches the child."""
    monkeypatch.setenv("AIRFSM_DEVICE_SECRET", SEED_DS)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    dump = tmp_path / "child-env.json"
    script = tmp_path / "pulse.py"
    script.write_text("import json, os, sys\n"
                      "json.dump(dict(os.environ), open(sys.argv[1], 'w'))\n")
    command = f"{sys.executable} {script} {dump}"
    gateway = Gateway(_config("/dev/null", tmp_path, reset_command=command),
                      install_signals=False)
    gateway._pulse_reset_pin()
    child = json.loads(dump.read_text())
    assert SEED_DS not in json.dumps(child)
    assert set(child) <= {"PATH", "LC_CTYPE"}  # PATH; (CPython may add LC_CTYPE itself)
    assert child["PATH"] == os.environ["PATH"]
    assert child_environment({})["PATH"].startswith("/usr/local/sbin")


def test_the_secret_by_loadcredential_reaches_the_gateway(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess]) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "device_secret").write_text(SEED_DS)
    server = sims()
    env = clean_env(CREDENTIALS_DIRECTORY=str(creds))  # no AIRFSM_DEVICE_SECRET at all
    g = gateways(server.endpoint, tmp_path / "data", env=env)
    g.wait_online()
    assert g.stop() == 0
    assert SEED_DS not in g.stderr()


def test_log_lines_carry_journal_priorities_when_stderr_is_the_journal(
        tmp_path: Path) -> None:
    buffer = io.StringIO()
    log.configure("info", json=True, stream=buffer, journal=True)
    logger = log.get_logger("test")
    logger.info("hello")
    logger.warning("careful")
    logger.error("broken")
    logger.debug("hidden")  # below the level: not written at all
    log.configure("warning", json=True, stream=io.StringIO())
    lines = buffer.getvalue().splitlines()
    assert [line[:3] for line in lines] == ["<6>", "<4>", "<3>"]
    assert json.loads(lines[1][3:])["event"] == "careful"
    # the journal stream is recognised by device and inode, as systemd sets $JOURNAL_STREAM
    with open(tmp_path / "stream", "w") as stream:
        st = os.fstat(stream.fileno())
        assert journal_stream_is(stream.fileno(), {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not journal_stream_is(stream.fileno(),
                                     {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not journal_stream_is(stream.fileno(), {})


def test_a_real_gateway_prefixes_its_lines_only_on_the_journal_stream(
        tmp_path: Path, sims: Callable[..., SimServer]) -> None:
    server = sims()
    for journal in (True, False):
        data = tmp_path / f"data-{journal}"
        err = tmp_path / f"err-{journal}"
        with open(err, "wb") as fe:
            st = os.fstat(fe.fileno())
            env = clean_env(AIRFSM_DEVICE_SECRET=SEED_DS)
            if journal:
                env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
            proc = subprocess.Popen(
                [sys.executable, "-m", "airfsm", "run", "--port", server.endpoint,
                 "--data-dir", str(data), "--product-key", SEED_PK, "--device-name", SEED_DN],
                stdout=subprocess.DEVNULL, stderr=fe, stdin=subprocess.DEVNULL, env=env)
        g = GatewayProcess(proc, data, tmp_path / "out", err)
        g.wait_online()
        assert g.stop() == 0
        lines = [line for line in err.read_text().splitlines() if line]
        assert lines
        if journal:
            assert all(re.match(r"<[2-7]>\{", line) for line in lines), lines[:3]
            assert any(line.startswith("<6>") for line in lines)
        else:
            assert all(line.startswith("{") for line in lines), lines[:3]


# ---------------------------------------------------------------------- the unit file


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd): the unit file "
                    "cannot be checked here")
    return found


def _unit_for_analysis(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's airfsm (verify checks it exists)."""
    airfsm = Path(sys.executable).parent / "airfsm"
    text = UNIT.read_text().replace("ExecStart=/opt/airfsm/bin/airfsm", f"ExecStart={airfsm}")
    path = tmp_path / "airfsm.service"
    path.write_text(text)
    return path


def test_the_unit_file_verifies(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    result = subprocess.run([analyze, "verify", "--man=no", str(_unit_for_analysis(tmp_path))],
                            capture_output=True, text=True, timeout=DEADLINE_S)
    assert result.returncode == 0, result.stderr
    assert "airfsm.service" not in result.stderr, result.stderr  # no warning about it either


def test_the_security_score_in_the_docs_is_the_units(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    result = subprocess.run([analyze, "security", "--offline=yes",
                             str(_unit_for_analysis(tmp_path))],
                            capture_output=True, text=True, timeout=DEADLINE_S)
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for airfsm\.service: ([0-9.]+) (\w+)",
                      result.stdout)
    assert match is not None, result.stdout[-2000:]
    docs = (ROOT / "docs" / "GATEWAY.md").read_text()
    written = re.search(r"`systemd-analyze security` scores it \*\*([0-9.]+) (\w+)\*\*", docs)
    assert written is not None, "docs/GATEWAY.md must state the score"
    assert (written.group(1), written.group(2)) == (match.group(1), match.group(2))
    for line in UNIT.read_text().splitlines():  # every hardening line is explained
        if line and not line.startswith(("#", "[")) and "=" in line:
            key = line.split("=", 1)[0]
            if key in HARDENING_KEYS:
                assert f"`{key}=" in docs, f"docs/GATEWAY.md does not explain {key}="


HARDENING_KEYS = {
    "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectSystem",
    "ProtectHome", "PrivateTmp", "PrivateNetwork", "PrivateIPC", "PrivateMounts",
    "ProtectHostname", "ProtectClock", "ProtectKernelTunables", "ProtectKernelModules",
    "ProtectKernelLogs", "ProtectControlGroups", "ProtectProc", "ProcSubset",
    "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
    "LockPersonality", "MemoryDenyWriteExecute", "RemoveIPC", "SystemCallArchitectures",
    "SystemCallFilter", "SystemCallErrorNumber", "IPAddressDeny", "DevicePolicy", "DeviceAllow",
    "UMask", "LoadCredential", "WatchdogSec",
}
