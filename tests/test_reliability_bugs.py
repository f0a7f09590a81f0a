"""Minimal reproducers of the bugs the reliability proofs found in the core.

A bug not fixed yet has its reproducer marked `xfail(strict=True, reason=<its summary in
tests/reliability/known_bugs.py>)`: it fails until the bug is fixed, then the strict mark turns
the pass into a failure, and the mark and the bug's entry there (which the property tests
tolerate meanwhile) are deleted. The ones here are all fixed now: plain regression tests.
"""

from __future__ import annotations

from airfsm.core.timebase import ms_diff
from airfsm.host import reasons
from airfsm.sim import SimConfig, parse_fault
from tests import observe
from tests.harness import make_rig, seed_settings
from tests.reliability.driver import Run, Schedule, logs_into
from tests.reliability.monitor import LogWatch

DAY_MS = 24 * 3600 * 1000


def test_a_state_entered_while_a_command_is_in_flight_asks_for_no_tick_until_it_can_send(
        ) -> None:
    # The network detaches right after AT+HTTPDATA answered DOWNLOAD: ATTACH is entered (no
    # backoff: the first escalation) while AT+HTTPDATA is still in flight for 5 s.
    rig = make_rig(SimConfig(faults=[parse_fault("cgatt-detach:AT+HTTPDATA@1")]))
    assert rig.run_until(lambda: ("HTTP_AUTH", "ATTACH", "bearer_lost") in rig.states)
    rig.controller.tick(rig.now)  # whatever was due at this time is done
    # Nothing arrived, nothing can be sent: the next tick is needed later, not now.
    assert ms_diff(rig.controller.tick(rig.now), rig.now) > 0


def test_a_duplicated_final_code_is_never_taken_for_the_next_commands_answer() -> None:
    # Shrunk from a random schedule: every byte a write of its own (a UART) and one OK twice.
    logs = LogWatch()
    with logs_into(logs):
        run = Run(SimConfig(faults=[parse_fault("split=1"),
                                    parse_fault('dup-final:AT+SAPBR=3,1,"CONTYPE"@1')]),
                  seed_settings(), logs=logs)
        assert run.run_until(lambda: run.online, 600_000)
    assert run.violations() == []


def test_one_rejected_auth_after_transient_failures_is_not_fatal() -> None:
    # Five network errors on the auth request, then one 401: not "rejected for good".
    rig = make_rig(SimConfig(faults=[parse_fault("http=601@5"), parse_fault("auth=401@1")]))
    assert rig.run_until(lambda: rig.controller.online or rig.controller.failed, 3_600_000)
    assert not rig.controller.failed, reasons.fail_text(rig.controller)
    # The network errors never reached the server: the rejected request, then the one that
    # passed once the state had escalated and come back.
    assert rig.module.auth_requests == 2


def test_commands_after_an_abandoned_httpdata_prompt_reach_the_module_as_commands() -> None:
    logs = LogWatch()
    with logs_into(logs):
        run = Run(SimConfig(faults=[parse_fault("cgatt-detach:AT+HTTPDATA@1")]),
                  seed_settings(), logs=logs)
        assert run.run_until(lambda: run.departures or run.subject.state == "ATTACH"
                             and bool(run.fired_faults), 60_000)
        written: list[str] = []
        run.before_command = lambda r, writes: written.extend(
            d.decode("latin-1").rstrip("\r") for _s, d in writes if d.endswith(b"\r"))
        received_from = len(run.module.commands)
        assert run.run_until(lambda: run.online, 600_000)
    received = run.module.commands[received_from:]
    assert written[:3] == received[:3], "commands were eaten as body bytes"


def test_status_since_ms_stays_sane_after_25_days_online() -> None:
    run = Run(SimConfig(firmware="AirM2M_Air724UG_V838_LTE_AT"), seed_settings(),
              start_ms=(1 << 32) - 60_000)
    assert run.run_until(lambda: run.online, 600_000)
    entered = run.online_entries[-1]
    run.run_for(25 * DAY_MS)
    assert run.online and run.online_entries[-1] == entered  # one long stay
    assert run.subject.status()["since_ms"] >= 24 * DAY_MS


def test_the_secret_set_stays_bounded_over_ten_days_of_daily_reauth() -> None:
    # a simulator seed of its own: tokens no other test was issued
    run = Run(SimConfig(firmware="AirM2M_Air724UG_V838_LTE_AT", seed=0x5EC2E7), seed_settings())
    assert run.run_until(lambda: run.online, 600_000)
    run.run_for(1000)
    before = len(observe.registered_secrets())
    run.load(Schedule(tuple(_daily_reboots(10)), quiet_at_ms=11 * DAY_MS))
    run.run_for(11 * DAY_MS)
    assert run.online and len(run.module.issued_tokens) >= 10
    assert len(observe.registered_secrets()) <= before + 2


def _daily_reboots(days: int) -> list[object]:
    from tests.reliability.driver import Event

    return [Event(d * DAY_MS, "reboot") for d in range(1, days + 1)]
