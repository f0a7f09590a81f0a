"""The C port as Cortex-M3 firmware under QEMU's mps2-an385 board.

`make -C port/c firmware` cross-builds three images with the startup code, vector table and
linker script of port/c/mps2/: `vectors.elf` runs the hash/HMAC/sign known answers on the
emulated core, `smoke.elf` talks to the simulator over UART0, which QEMU maps onto the
simulator's pty (the first -serial), and `airfsm.elf` is the whole controller: ONLINE against
the simulator and one QoS1 message published and acknowledged. The firmware writes its log to
UART1 (the second -serial: QEMU's stdout here) and ends with a semihosting exit, whose status
QEMU returns. A deadline on the QEMU process stands in for any hang; nothing sleeps.

Needs arm-none-eabi-gcc with newlib and qemu-system-arm (`make system-deps` installs them as
root): without them these tests skip locally and fail on CI.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from airfsm.sim import SimConfig, SimServer, parse_fault
from airfsm.sim.module import OLD_FIRMWARE, SimEvent
from tests.cport import BUILD, make, require_cross_toolchain, require_host_compiler, require_qemu
from tests.harness import SEED_DN, SEED_DS, SEED_PK

QEMU_DEADLINE_S = 60


@pytest.fixture(scope="module")
def qemu_binary() -> str:
    require_cross_toolchain()
    qemu = require_qemu()
    make("firmware")
    return qemu


def run_firmware(qemu: str, image: str, module_serial: str) -> subprocess.CompletedProcess[str]:
    elf: Path = BUILD / "mps2" / image
    command = [qemu, "-M", "mps2-an385", "-nographic", "-monitor", "none",
               "-serial", module_serial, "-serial", "stdio",
               "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    try:
        return subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=QEMU_DEADLINE_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{image} did not exit within {QEMU_DEADLINE_S} s; its log:\n{exc.stdout!r}")


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(profile="fast"), transport="pty") as server:
        yield server


def test_known_answers_pass_on_the_cortex_m3(qemu_binary: str) -> None:
    result = run_firmware(qemu_binary, "vectors.elf", "null")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "all vectors pass"
    require_host_compiler()
    host = make("check")  # the same table, on the host: the same lines
    assert [line for line in result.stdout.splitlines() if line.startswith("ok ")] == \
        [line for line in host.splitlines() if line.startswith("ok ")]


def test_smoke_firmware_reads_the_version_from_the_simulator(qemu_binary: str,
                                                              sim: SimServer) -> None:
    assert sim.port_path is not None
    result = run_firmware(qemu_binary, "smoke.elf", sim.port_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "firmware AirM2M_Air72xUy_V409_LTE_AT (V409)" in result.stdout
    commands = sim.call(lambda module, _now: list(module.commands))
    assert commands[-1] == "AT+CGMR"
    assert set(commands[:-1]) == {"AT"}  # AT until the module trained and answered, nothing else


def test_smoke_firmware_exit_status_says_old_firmware(qemu_binary: str) -> None:
    config = SimConfig(profile="fast", firmware=OLD_FIRMWARE, cgmr_quoted=True)
    with SimServer(config, transport="pty") as server:
        assert server.port_path is not None
        result = run_firmware(qemu_binary, "smoke.elf", server.port_path)
    assert result.returncode == 4, result.stdout + result.stderr
    assert f"firmware {OLD_FIRMWARE} (V300)" in result.stdout
    assert "smoke: firmware older than V409" in result.stdout


def test_controller_firmware_gets_online_and_publishes_one_qos1_message(
        qemu_binary: str) -> None:
    """build/mps2/airfsm.elf: the whole C controller on the Cortex-M3, with the simulator's seed
    device compiled in (the Makefile's FIRMWARE_* defaults): ONLINE, one QoS1 message, PUBACK."""
    events: list[SimEvent] = []
    with SimServer(SimConfig(profile="fast"), transport="pty") as server:
        server.module.observer = events.append
        assert server.port_path is not None
        result = run_firmware(qemu_binary, "airfsm.elf", server.port_path)
        published = server.call(lambda module, _now: list(module.published))
        commands = server.call(lambda module, _now: list(module.commands))
    log = result.stdout
    assert result.returncode == 0, log + result.stderr
    assert "airfsm: ONLINE" in log
    assert "MQTT_CONNECT -> ONLINE" in log
    assert "ONLINE, message acknowledged (PUBACK); exit 0" in log
    assert published == [(f"/{SEED_PK}/{SEED_DN}/update", b'{"hello":"from the Cortex-M3"}', 1)]
    assert [e.data for e in events if e.kind == "puback"] == [published[0][1]]
    assert [e.kind for e in events].count("grant") == 1  # one auth: the compiled-in secret signs
    assert any(c.startswith("AT+MCONFIG=") for c in commands)
    assert "RX ring dropped 0" in log  # the interrupt-driven ring kept up with the simulator
    for secret in (SEED_DS, next(e.text for e in events if e.kind == "grant").split("\t")[2]):
        assert secret not in log  # the firmware's log carries codes and names, no secrets


def test_controller_firmware_exits_4_on_old_firmware_without_any_http_command(
        qemu_binary: str) -> None:
    config = SimConfig(profile="fast", firmware=OLD_FIRMWARE)
    with SimServer(config, transport="pty") as server:
        assert server.port_path is not None
        result = run_firmware(qemu_binary, "airfsm.elf", server.port_path)
        commands = server.call(lambda module, _now: list(module.commands))
    assert result.returncode == 4, result.stdout + result.stderr
    assert "FAILED: firmware older than V409; exit 4" in result.stdout
    assert "AT+CGMR" in commands
    assert not any(c.startswith("AT+HTTP") for c in commands)


@pytest.mark.parametrize("faults, baud", [
    (["split", "http=601@1", "garbage:AT+CSQ"], None),  # every write in 1-3 byte pieces
    (["reboot:AT+MCONNECT@1"], None),  # the module reboots: AUTOBAUD again
    (["puback=lost@1"], None),  # resent after the PUBACK deadline, acknowledged then
    ([], 115200),  # the simulator paced at the UART's real rate, both ways
])
def test_controller_firmware_recovers_from_faults(qemu_binary: str, faults: list[str],
                                                  baud: int | None) -> None:
    config = SimConfig(profile="fast", faults=[parse_fault(f) for f in faults])
    with SimServer(config, transport="pty", baud=baud) as server:
        assert server.port_path is not None
        result = run_firmware(qemu_binary, "airfsm.elf", server.port_path)
        published = server.call(lambda module, _now: list(module.published))
        boots = server.call(lambda module, _now: module.boots)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ONLINE, message acknowledged (PUBACK); exit 0" in result.stdout
    assert "RX ring dropped 0" in result.stdout
    expected = (f"/{SEED_PK}/{SEED_DN}/update", b'{"hello":"from the Cortex-M3"}', 1)
    assert published == [expected] * (2 if "puback=lost@1" in faults else 1)
    assert boots == (2 if "reboot:AT+MCONNECT@1" in faults else 1)
