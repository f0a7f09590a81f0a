"""The proof of lockstep: the C controller (port/c/core/airfsm.c) and the Python one
(airfsm/core/controller.py), fed the same bytes at the same virtual times, write the same bytes
at the same ticks, make the same state changes, log the same events, ask the outbox the same
things and want the next tick at the same time - over every scenario the reliability driver
runs (tests/ctwin.py's LockstepSubject compares them after every request; the first difference
fails with both outputs and what came before).

No trace is written by hand: the simulator's module model (airfsm/sim) plays the other end of
the line for the Python controller, and what it sends is fed to the C twin too, so a C that
differs is caught at the first byte, state change, log event or deadline it differs in.

- the fault matrix (tests/reliability/matrix.py): every fault on every command of every state
  it applies to, its variants, with online traffic (text, binary, a downlink);
- the seeded campaign behind docs/reliability.md (random fault schedules), from 0 and across
  the 32-bit clock's wrap;
- what the matrix leaves out: old firmware, auth rejected for good, a mute module with and
  without a RESET pin, several subscriptions, a firmware with its own heartbeat, QoS0,
  hex payloads, the outbox poll, the watchdog, a clean stop, refused publishes;
- the random schedules of tests/test_reliability_properties.py run against "lockstep" too
  (tests/reliability/subject.py SUBJECTS).
"""

from __future__ import annotations

import pytest

from collections.abc import Callable

from airfsm.core.codes import FailReason, State, Trigger
from airfsm.core.controller import Controller
from airfsm.sim import SimConfig, parse_fault
from tests.ctwin import LockstepSubject
from tests.harness import seed_settings
from tests.reliability.campaign import CAMPAIGN_SEEDS, run_schedule
from tests.reliability.driver import Event, Run, Schedule
from tests.reliability.matrix import FAULTS, TARGETS, Fault, run_trial
from tests.reliability.schedules import RandomChoose, draw_schedule

WRAP = 1 << 32


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_every_fault_of_the_matrix_on_every_command_in_lockstep(fault: Fault) -> None:
    trials = [run_trial(fault, target, variant, seed_settings(), LockstepSubject)
              for target in TARGETS if fault.applies(target) for variant in fault.variants]
    assert trials, fault.name
    assert any(t.fired for t in trials), f"{fault.name}: never fired: nothing was compared"


def test_the_campaign_schedules_in_lockstep() -> None:
    for seed in CAMPAIGN_SEEDS:
        run_schedule(draw_schedule(RandomChoose(seed)), subject_factory=LockstepSubject)


def test_the_campaign_schedules_across_the_clock_wrap_in_lockstep() -> None:
    for seed in CAMPAIGN_SEEDS[:40]:
        run_schedule(draw_schedule(RandomChoose(seed)), subject_factory=LockstepSubject,
                     start_ms=WRAP - seed * 20_000)


def _run(config: SimConfig, **settings: object) -> Run:
    run = Run(config, seed_settings(**settings), LockstepSubject)
    run.publish(b"queued before the start")
    return run


def _lockstep(run: Run) -> LockstepSubject:
    subject = run.subject
    assert isinstance(subject, LockstepSubject)
    return subject


def test_old_firmware_fails_in_lockstep() -> None:
    run = _run(SimConfig(firmware="AirM2M_Air72xUy_V408_LTE_AT"))
    run.run_until(lambda: run.subject.state == "FAILED", 60_000)
    controller = _lockstep(run).controller
    assert controller.fail_reason == FailReason.FIRMWARE
    assert not any(c.startswith("AT+HTTP") for c in run.module.commands)


def test_auth_rejected_for_good_fails_in_lockstep() -> None:
    run = _run(SimConfig(faults=[parse_fault("auth=401@*")]))
    run.run_until(lambda: run.subject.state == "FAILED", 30 * 60_000)
    assert _lockstep(run).controller.fail_reason == FailReason.CREDENTIALS
    assert not any(c.startswith("AT+MCONFIG") for c in run.module.commands)


@pytest.mark.parametrize("reset_pin", [False, True], ids=["no reset pin", "reset pin"])
def test_a_mute_module_in_lockstep(reset_pin: bool) -> None:
    settings = seed_settings()
    run = Run(SimConfig(faults=[parse_fault("silence@*")]), settings,
              lambda s, now: LockstepSubject(s, now, reset_pin=reset_pin))
    run.run_until(lambda: run.subject.state == "FAILED", 60 * 60_000)
    assert _lockstep(run).controller.fail_reason == FailReason.NO_RESPONSE
    assert (_lockstep(run).controller.hardware_resets > 0) == reset_pin


def _sent(run: Run, prefix: str) -> int:
    return sum(1 for c in run.module.commands if c.startswith(prefix))


SCENARIOS: dict[str, tuple[SimConfig, dict[str, object], Callable[[Run, Controller], bool]]] = {
    "several subscriptions": (
        SimConfig(), {"subscribe": ("/b0FMK1Ga5cp/862991419835241/get", "/broadcast/+/all",
                                    "/b0FMK1Ga5cp/862991419835241/user/#")},
        lambda run, c: _sent(run, 'AT+MSUB="/broadcast/+/all"') >= 1),
    "V838 quoted CGMR": (
        SimConfig(firmware="AirM2M_Air72xUy_V838_LTE_AT", cgmr_quoted=True), {},
        lambda run, c: c.firmware_version == 838 and c.counters.keepalives == 0),
    "outbox poll": (SimConfig(), {"outbox_poll_ms": 1_500, "sub_qos": 1, "apn": ""},
                    lambda run, c: c.counters.publish_acked >= 3),
    "watchdog": (SimConfig(attach_after_ms=200_000), {"watchdog_ms": 90_000},
                 lambda run, c: c.counters.reconnects[Trigger.WATCHDOG] > 0),
    "short keepalive": (SimConfig(), {"publish_attempts": 1, "keepalive_s": 30,
                                      "liveness_ms": 5_000},
                        lambda run, c: c.counters.keepalives > 3 and c.counters.probes > 10),
    "PUBACKs all lost": (SimConfig(faults=[parse_fault("puback=lost@*")]),
                         {"publish_attempts": 2},
                         lambda run, c: c.counters.publish_retried >= 1),
    "own broker": (SimConfig(), {"mqtt_host": "broker.example.com", "mqtt_port": 8883,
                                 "sign_method": "hmacsha256", "jitter_seed": 12345},
                   lambda run, c: _sent(run, 'AT+SSLMIPSTART="broker.example.com",8883') >= 1),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_settings_and_traffic_in_lockstep(name: str) -> None:
    config, settings, check = SCENARIOS[name]
    run = _run(config, **settings)
    run.load(Schedule((
        Event(0, "publish", '{"t":1}'), Event(10, "downlink", '{"set":1}'),
        Event(20, "publish", "\x00\x01binary"), Event(300_000, "publish", "later"),
    ), 5_000))
    run.run_until(lambda: run.elapsed > 400_000, 500_000)
    assert check(run, _lockstep(run).controller), name


def test_publish_refused_and_qos0_in_lockstep() -> None:
    run = _run(SimConfig())
    run.run_until(lambda: run.online, 60_000)
    subject = _lockstep(run)
    for topic, payload, qos in (("update", b"qos0", 0), ("", b"x", 1), ("bad\"topic", b"x", 1),
                                ("update", b"x", 2), ("/a/+/b", b"x", 1),
                                ("update", b"y" * 2000, 1)):
        try:
            subject.publish(topic, payload, qos)
        except ValueError:
            pass
    run.run_for(60_000)
    assert subject.controller.counters.publish_acked >= 2


def test_a_clean_stop_in_lockstep() -> None:
    run = _run(SimConfig())
    run.run_until(lambda: run.online, 60_000)
    subject = _lockstep(run)
    subject.request_stop()
    run.run_until(lambda: subject.controller.stopped, 60_000)
    assert subject.controller.state == State.ONLINE
    assert "AT+MDISCONNECT" in run.module.commands
