"""Simulator pacing (`SimServer(baud=N)`, `airfsm sim --baud N`): the schedule, not the clock.

The unit tests ask `LinePacer` how many bytes have crossed the line by a given time; no test
here reads a wall clock or waits for a threshold. The end-to-end test only checks that a paced
line still carries a whole session intact.
"""

from __future__ import annotations

import pytest

from airfsm.cli import main
from airfsm.core.aliyun import DeviceIdentity
from airfsm.core.controller import Controller
from airfsm.core.settings import Settings
from airfsm.core.timebase import ms_add
from airfsm.host.loop import monotonic_ms, run
from airfsm.host.serial import open_port
from airfsm.sim import SimConfig, SimServer
from airfsm.sim.server import BITS_PER_BYTE, LinePacer
from tests.harness import SEED_DN, SEED_DS, SEED_PK

BAUD = 115200
NS = 1_000_000_000


def byte_ns(k: int, baud: int = BAUD) -> int:
    """When the k-th byte of a burst started at 0 has crossed (rounded up, as the pacer does)."""
    return -(-k * BITS_PER_BYTE * NS // baud)


def test_a_byte_crosses_after_ten_bit_times() -> None:
    pacer = LinePacer(BAUD)
    pacer.push(10, 0)
    assert pacer.due(0) == 0
    assert pacer.due(byte_ns(1) - 1) == 0
    assert pacer.due(byte_ns(1)) == 1
    assert pacer.due(byte_ns(9)) == 9
    assert pacer.due(byte_ns(10)) == 10
    assert pacer.due(10 * NS) == 10  # never more than was handed over


def test_a_second_of_line_carries_baud_over_ten_bytes() -> None:
    for baud in (9600, 115200, 921600):
        pacer = LinePacer(baud)
        pacer.push(10 * baud, 0)
        assert pacer.due(NS) == baud // BITS_PER_BYTE
        assert pacer.due(NS - 1) == baud // BITS_PER_BYTE - 1


def test_bursts_handed_over_while_the_line_is_busy_queue_behind_each_other() -> None:
    pacer = LinePacer(BAUD)
    pacer.push(4, 0)
    pacer.push(4, byte_ns(1))  # the line is still busy: this burst starts when that one ends
    assert pacer.busy_until() == byte_ns(4) + byte_ns(4)
    assert pacer.due(byte_ns(4)) == 4
    assert pacer.due(byte_ns(4) + byte_ns(1)) == 5
    assert pacer.ready_at(8) == byte_ns(4) + byte_ns(4)


def test_an_idle_line_banks_no_time() -> None:
    pacer = LinePacer(BAUD)
    pacer.push(2, 0)
    pacer.take(pacer.due(byte_ns(2)))
    later = 5 * NS  # seconds of silence must not let the next burst arrive all at once
    pacer.push(100, later)
    assert pacer.due(later) == 0
    assert pacer.due(later + byte_ns(1)) == 1
    assert pacer.due(later + byte_ns(50)) == 50


def test_taken_bytes_are_not_due_again_and_ready_at_counts_from_the_first_left() -> None:
    pacer = LinePacer(BAUD)
    pacer.push(6, 0)
    pacer.take(pacer.due(byte_ns(3)))
    assert pacer.pending == 3
    assert pacer.due(byte_ns(3)) == 0
    assert pacer.due(byte_ns(5)) == 2
    assert pacer.ready_at(1) == byte_ns(4)
    assert pacer.ready_at(3) == byte_ns(6)
    assert pacer.ready_at(4) is None  # only 3 are pending
    pacer.take(3)
    assert pacer.pending == 0
    assert pacer.busy_until() is None


def test_a_pacer_needs_a_positive_rate() -> None:
    with pytest.raises(ValueError):
        LinePacer(0)
    with pytest.raises(ValueError):
        SimServer(SimConfig(), baud=-1)


def test_a_paced_pty_carries_a_whole_session_intact() -> None:
    """Paced bytes are only late, never lost, reordered or glued wrong: the controller gets
    ONLINE and its QoS1 message reaches the cloud exactly once."""
    with SimServer(SimConfig(profile="line"), baud=BAUD) as server:
        server.start()
        port = open_port(server.endpoint, BAUD)
        try:
            settings = Settings(identity=DeviceIdentity(SEED_PK, SEED_DN, SEED_DS))
            start = monotonic_ms()
            controller = Controller(port, settings, now_ms=start)
            assert run(controller, until=lambda: controller.online,
                       deadline_ms=ms_add(start, 30_000))
            controller.publish("update", b'{"paced":true}', qos=1)
            assert run(controller, until=lambda: controller.counters.publish_acked == 1,
                       deadline_ms=ms_add(monotonic_ms(), 30_000))
        finally:
            port.close()
        published = server.call(lambda module, _now: list(module.published))
        assert [p[1] for p in published] == [b'{"paced":true}']
        assert server.tx_dropped == 0


@pytest.mark.parametrize("baud", ["0", "-5", "5000000"])
def test_sim_refuses_a_baud_rate_no_uart_has(baud: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--baud", baud]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--baud" in err and "Traceback" not in err
