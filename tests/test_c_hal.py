"""The POSIX HAL (port/c/posix/hal_posix.c) proven by `at-probe` over real ptys: against
`airfsm sim --pty` as a user runs it, against a silent line, and when the line vanishes."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from airfsm.sim.module import OLD_FIRMWARE
from tests.cport import BUILD, make, require_host_compiler

DEADLINE_S = 30


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    require_host_compiler()
    make("harnesses")  # the sanitized at-probe is one of them


def at_probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BUILD / "asan" / "at-probe"), *args], capture_output=True,
                          text=True, timeout=DEADLINE_S)


@contextlib.contextmanager
def airfsm_sim(*args: str) -> Iterator[str]:
    """`python -m airfsm sim --pty` as a user starts it; yields the pty path it prints."""
    proc = subprocess.Popen([sys.executable, "-m", "airfsm", "sim", "--pty", "--profile", "fast",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("simulated Air72x"), first
        yield first.split(" on ")[-1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=DEADLINE_S)


def test_at_probe_gets_the_version_from_airfsm_sim() -> None:
    with airfsm_sim() as port:
        result = at_probe("--port", port, "--timeout", "20")
    assert result.returncode == 0, result.stderr
    assert "firmware AirM2M_Air72xUy_V409_LTE_AT (V409)" in result.stdout


def test_at_probe_refuses_old_firmware_like_connect() -> None:
    with airfsm_sim("--firmware", OLD_FIRMWARE, "--cgmr-quoted") as port:
        result = at_probe("--port", port, "--timeout", "20")
    assert result.returncode == 4, result.stderr
    assert f"firmware {OLD_FIRMWARE} (V300)" in result.stdout  # quotes and +CGMR: stripped
    assert result.stderr.strip() == "at-probe: firmware older than V409"


def test_at_probe_repeats_at_on_a_silent_line_then_gives_up() -> None:
    master, slave = os.openpty()
    os.set_blocking(master, False)
    try:
        result = at_probe("--port", os.ttyname(slave), "--timeout", "2")
        sent = os.read(master, 4096)  # all it wrote is buffered in the pty by now
    except BlockingIOError:
        sent = b""
    finally:
        os.close(master)
        os.close(slave)
    assert result.returncode == 7
    assert result.stderr.strip().startswith("at-probe: no answer to AT after")
    assert sent.startswith(b"AT\rAT\r") and set(sent.split(b"\r")) <= {b"AT", b""}


def test_at_probe_reports_a_vanished_port() -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    proc = subprocess.Popen([str(BUILD / "asan" / "at-probe"), "--port", path, "--timeout", "20"],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + DEADLINE_S
        got = b""
        while b"AT\r" not in got:  # the probe has the port open and is talking
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, "at-probe sent nothing"
            got += os.read(master, 64)
    finally:
        os.close(slave)
        os.close(master)  # the pty is gone: its slave side hangs up under the probe
    _, stderr = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 3
    assert stderr.strip() == f"at-probe: {path}: the port vanished"


def test_at_probe_bad_arguments_and_ports() -> None:
    assert at_probe().returncode == 2
    assert at_probe("--port", "/dev/pts/x", "--timeout", "0").returncode == 2
    missing = at_probe("--port", "/nonexistent/tty")
    assert missing.returncode == 3
    assert missing.stderr.strip() == ("at-probe: cannot open /nonexistent/tty: "
                                      "No such file or directory")
    not_a_tty = at_probe("--port", "/dev/null")
    assert not_a_tty.returncode == 3
    assert "is not a serial port" in not_a_tty.stderr
