"""Recovery from every link loss, in virtual time, with the gateway's durable outbox.

One test per recovery path of the issue: each asserts the state path the controller took (the
harness records (from, to, trigger)), that ONLINE is regained, and — where a message was in
flight — that the SQLite outbox delivered it at least once and kept it until PUBACK.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airfsm.core.codes import OutboxStatus, PubPhase, State
from airfsm.core.table import MACHINE
from airfsm.host import reasons
from airfsm.host.gateway import GatewayOutbox
from airfsm.host.serial import memory_pair
from airfsm.host.store import SqliteOutbox, db_path
from airfsm.sim import SimConfig, parse_fault
from tests.harness import SEED_DN, SEED_PK, Rig, first_occurrences, make_rig, seed_settings

UPDATE = f"/{SEED_PK}/{SEED_DN}/update"


def _outbox(tmp_path: Path) -> GatewayOutbox:
    errors: list[str] = []
    store = SqliteOutbox(db_path(tmp_path))
    return GatewayOutbox(store, SEED_PK, SEED_DN, lambda op, exc: errors.append(op))


def online_rig(tmp_path: Path, config: SimConfig | None = None, **settings: object) -> Rig:
    rig = make_rig(config or SimConfig(), seed_settings(**settings), outbox=_outbox(tmp_path))
    assert rig.run_until(lambda: rig.controller.online or rig.controller.failed)
    assert rig.controller.online, reasons.status(rig.controller)
    return rig


def since(rig: Rig, mark: int) -> list[tuple[str, str, str]]:
    return rig.states[mark:]


def path(transitions: list[tuple[str, str, str]]) -> list[str]:
    """Distinct destinations in order, retries folded."""
    out: list[str] = []
    for _src, dest, _trig in transitions:
        if not out or out[-1] != dest:
            out.append(dest)
    return out


def published(rig: Rig) -> list[bytes]:
    return [p for _t, p, _q in rig.module.published]


def enqueue(rig: Rig, *payloads: bytes, qos: int = 1) -> None:
    for p in payloads:
        rig.controller.outbox.enqueue("update", p, qos)


def outbox_len(rig: Rig) -> int:
    return len(rig.controller.outbox)


# ---------------------------------------------------------------------- MQTT session lost


def test_closed_goes_to_mqtt_connect_and_the_message_in_flight_is_resent(
        tmp_path: Path) -> None:
    # CLOSED right after the module took the MPUB: its PUBACK never comes.
    rig = online_rig(tmp_path, SimConfig(faults=[parse_fault("closed:AT+MPUB@1")]))
    mark, auths = len(rig.states), rig.module.auth_requests
    enqueue(rig, b"m0", b"m1")
    assert rig.run_until(lambda: outbox_len(rig) == 0)
    assert path(since(rig, mark)) == ["MQTT_CONNECT", "ONLINE"]
    assert since(rig, mark)[0] == ("ONLINE", "MQTT_CONNECT", "mqtt_lost")
    assert published(rig) == [b"m0", b"m0", b"m1"]  # at least once: resent on the new session
    assert rig.module.auth_requests == auths  # the token was still good
    assert rig.controller.counters.as_dict()["reconnects"] == {"mqtt_lost": 1}


def test_mqtt_status_0_found_by_the_liveness_probe(tmp_path: Path) -> None:
    rig = online_rig(tmp_path)
    mark = len(rig.states)
    rig.module.drop_mqtt(rig.now)
    rig.module.output(rig.now)  # the CLOSED URC is lost on the line: only a probe can tell
    liveness = rig.controller.settings.liveness_ms
    assert rig.run_until(lambda: rig.controller.state == State.MQTT_CONNECT,
                         max_ms=liveness + 10_000)
    assert "AT+MQTTSTATU" in rig.commands
    assert rig.run_until(lambda: rig.controller.online)
    assert path(since(rig, mark)) == ["MQTT_CONNECT", "ONLINE"]


def test_no_answer_for_n_deadlines_in_online_probes_then_reconnects(tmp_path: Path) -> None:
    rig = online_rig(tmp_path)
    limit = rig.controller.settings.silence_limit
    mark = len(rig.commands)
    state_mark = len(rig.states)
    # The module goes deaf for the publish and the probes that follow it.
    rig.module.add_fault(parse_fault(f"silence@{limit}"))
    enqueue(rig, b"unanswered")
    assert rig.run_until(lambda: rig.controller.state == State.MQTT_CONNECT, max_ms=120_000)
    sent = rig.commands[mark:]
    assert sent[0].startswith("AT+MPUB")
    assert sent[1:limit] == ["AT+MQTTSTATU"] * (limit - 1)  # probes after each silence
    assert rig.states[state_mark] == ("ONLINE", "MQTT_CONNECT", "mqtt_lost")
    assert rig.run_until(lambda: outbox_len(rig) == 0)
    assert published(rig)[-1] == b"unanswered"
    assert rig.controller.online


# ---------------------------------------------------------------------- token refused


def test_connack_refused_after_a_good_auth_fetches_a_fresh_token(tmp_path: Path) -> None:
    rig = online_rig(tmp_path)
    mark, auths = len(rig.states), rig.module.auth_requests
    rig.module.expire_token()  # the cloud revoked it: the next CONNECT is refused
    rig.module.drop_mqtt(rig.now)
    assert rig.run_until(lambda: rig.controller.online and len(rig.states) > mark + 2)
    assert path(since(rig, mark)) == ["MQTT_CONNECT", "HTTP_AUTH", "MQTT_CONNECT", "ONLINE"]
    assert ("MQTT_CONNECT", "HTTP_AUTH", "token_rejected") in since(rig, mark)
    assert rig.module.auth_requests == auths + 1


def test_mconnect_error_after_a_good_auth_fetches_a_fresh_token(tmp_path: Path) -> None:
    rig = online_rig(tmp_path)
    mark, auths = len(rig.states), rig.module.auth_requests
    rig.module.add_fault(parse_fault("error:AT+MCONNECT@1"))
    rig.module.drop_mqtt(rig.now)
    assert rig.run_until(lambda: rig.controller.online and len(rig.states) > mark + 2)
    assert path(since(rig, mark)) == ["MQTT_CONNECT", "HTTP_AUTH", "MQTT_CONNECT", "ONLINE"]
    assert rig.module.auth_requests == auths + 1


# ---------------------------------------------------------------------- bearer, reboot


def test_cgatt_0_and_bearer_loss_go_back_to_attach(tmp_path: Path) -> None:
    rig = online_rig(tmp_path)
    mark = len(rig.states)
    rig.module.detach(rig.now)  # +PDP DEACT, +SAPBR 1: DEACT, CLOSED; +CGATT: 0 for a while
    assert rig.run_until(lambda: rig.controller.online and len(rig.states) > mark)
    assert rig.states[mark] == ("ONLINE", "ATTACH", "bearer_lost")  # not merely MQTT_CONNECT
    assert path(since(rig, mark)) == ["ATTACH", "BEARER", "HTTP_AUTH", "MQTT_CONNECT", "ONLINE"]


def test_detach_during_a_publish_loses_nothing(tmp_path: Path) -> None:
    rig = online_rig(tmp_path, SimConfig(faults=[parse_fault("detach:AT+MPUB@1")]))
    enqueue(rig, b"a", b"b")
    assert rig.run_until(lambda: outbox_len(rig) == 0)
    assert first_occurrences(published(rig)) == [b"a", b"b"]
    assert rig.controller.counters.as_dict()["reconnects"] == {"bearer_lost": 1}


def test_rdy_module_reboot_goes_to_autobaud_and_resends(tmp_path: Path) -> None:
    # The module reboots instead of answering the first MPUB: nothing was published.
    rig = online_rig(tmp_path, SimConfig(faults=[parse_fault("reboot:AT+MPUB@1")]))
    mark = len(rig.states)
    enqueue(rig, b"survives a reboot")
    assert rig.run_until(lambda: outbox_len(rig) == 0)
    assert rig.states[mark] == ("ONLINE", "AUTOBAUD", "rebooted")
    assert path(since(rig, mark))[:2] == ["AUTOBAUD", "VERSION_CHECK"]
    assert published(rig) == [b"survives a reboot"]
    assert rig.module.boots == 2


# ---------------------------------------------------------------------- the port vanishes


def unplug(rig: Rig) -> None:
    """The USB serial adapter is pulled: the controller's next read fails."""
    rig.module_port.close()
    rig.controller.tick(rig.now)
    assert rig.controller.port_lost


def replug(rig: Rig, *, module_rebooted: bool) -> None:
    """A new port to the module (the gateway reopened the device node)."""
    near, far = memory_pair(("near2", "far2"))
    rig.module_port = far
    if module_rebooted:  # USB power went with the data lines
        rig.module.reboot(rig.now)
    rig.controller.replace_port(near, rig.now)


@pytest.mark.parametrize("module_rebooted", [False, True])
def test_port_vanishing_then_reopened_goes_through_autobaud(
        tmp_path: Path, module_rebooted: bool) -> None:
    rig = online_rig(tmp_path, SimConfig(faults=[parse_fault("puback=lost@1")]))
    enqueue(rig, b"in flight when unplugged", b"next")
    assert rig.run_until(lambda: rig.controller.pub_phase == PubPhase.WAIT_PUBACK)
    mark = len(rig.states)
    unplug(rig)
    assert rig.controller.tick(rig.now) - rig.now <= 1_000  # port lost: no long sleep
    rig.now += 5_000  # the gateway's reopen backoff
    replug(rig, module_rebooted=module_rebooted)
    assert rig.states[mark] == ("ONLINE", "AUTOBAUD", "port_lost")
    assert rig.run_until(lambda: outbox_len(rig) == 0)
    assert path(since(rig, mark))[:2] == ["AUTOBAUD", "VERSION_CHECK"]
    assert path(since(rig, mark))[-1] == "ONLINE"
    assert first_occurrences(published(rig)) == [b"in flight when unplugged", b"next"]


# ---------------------------------------------------------------------- the global watchdog


def test_watchdog_resets_the_module_when_not_online_for_too_long(tmp_path: Path) -> None:
    # After a link loss the auth request never gets an answer for a long time: without the
    # watchdog the machine would keep retrying HTTP_AUTH (and BEARER) with growing backoffs.
    rig = online_rig(tmp_path, watchdog_ms=60_000)
    rig.module.expire_token()
    rig.module.add_fault(parse_fault("silence:AT+HTTPACTION@12"))
    mark, resets = len(rig.states), rig.commands.count("AT+RESET")
    lost_at = rig.now
    rig.module.drop_mqtt(rig.now)
    assert rig.run_until(lambda: any(t == "watchdog" for _s, _d, t in since(rig, mark)),
                         max_ms=120_000)
    fired = next(e for e in rig.timeline if e[3] == "watchdog" and e[0] >= lost_at)
    assert 60_000 <= fired[0] - lost_at <= 61_000
    assert fired[2] == "AUTOBAUD"
    assert rig.run_until(lambda: rig.commands.count("AT+RESET") > resets)
    assert rig.run_until(lambda: rig.controller.online, max_ms=1_800_000)
    assert rig.module.boots >= 2  # AT+RESET really restarted it


def test_watchdog_is_off_in_online(tmp_path: Path) -> None:
    rig = online_rig(tmp_path, watchdog_ms=60_000)
    resets = rig.commands.count("AT+RESET")
    rig.run_for(600_000)  # ten quiet minutes ONLINE
    assert rig.controller.online
    assert rig.commands.count("AT+RESET") == resets


# ---------------------------------------------------------------------- counters reset at ONLINE


def test_retry_counters_reset_when_online_is_reached(tmp_path: Path) -> None:
    policy = MACHINE[State.MQTT_CONNECT].policy
    assert policy is not None
    almost = policy.retries  # one short of exhausting MQTT_CONNECT's budget
    rig = online_rig(tmp_path)
    for _round in range(3):
        mark = len(rig.states)
        rig.module.add_fault(parse_fault(f"error:AT+MCONFIG@{almost}"))
        rig.module.drop_mqtt(rig.now)
        assert rig.run_until(lambda m=mark: rig.controller.online and len(rig.states) > m)
        retries = [s for s in since(rig, mark) if s == ("MQTT_CONNECT", "MQTT_CONNECT", "retry")]
        assert len(retries) == almost
        assert ("MQTT_CONNECT", "HTTP_AUTH", "exhausted") not in since(rig, mark)
        assert rig.controller.attempt == 1
        rig.run_for(rig.controller.settings.liveness_ms + 1_000)  # ONLINE holds


def test_escalation_backoff_resets_once_online_holds(tmp_path: Path) -> None:
    rig = online_rig(tmp_path)

    def reconnect_delay() -> int:
        """Drop the session; ms from the drop to the first command of MQTT_CONNECT."""
        mark = len(rig.command_times)
        dropped = rig.now
        rig.module.drop_mqtt(rig.now)
        assert rig.run_until(lambda: any(c == "AT+MIPCLOSE" for _t, c in
                                         rig.command_times[mark:]), max_ms=300_000)
        sent = next(t for t, c in rig.command_times[mark:] if c == "AT+MIPCLOSE")
        assert rig.run_until(lambda: rig.controller.online)
        return sent - dropped

    flapping = [reconnect_delay() for _ in range(3)]
    assert flapping[0] < 100  # the first loss reconnects at once ...
    assert flapping[1] >= 500 and flapping[2] >= flapping[1]  # ... a flapping link backs off
    rig.run_for(rig.controller.settings.liveness_ms + 1_000)  # stable again
    assert reconnect_delay() < 100


# ---------------------------------------------------------------------- at least once, durably


def test_puback_lost_is_retransmitted_and_deleted_only_after_puback(tmp_path: Path) -> None:
    rig = online_rig(tmp_path, SimConfig(faults=[parse_fault("puback=lost@1")]))
    enqueue(rig, b"m0", b"m1")
    view = rig.controller.outbox
    _status, head = view.peek()
    assert head is not None
    kept_while_unacked: list[bool] = []

    def watch() -> bool:
        if published(rig).count(b"m0") == 1:  # sent once, its PUBACK lost
            kept_while_unacked.append(view.store.attempts(head.id) > 0)
        return outbox_len(rig) == 0

    assert rig.run_until(watch)
    assert kept_while_unacked and all(kept_while_unacked)
    assert published(rig) == [b"m0", b"m0", b"m1"]
    mpub = next(c for c in rig.commands if c.endswith('"m0"'))
    first, second = rig.sent_at(mpub)
    assert second - first >= rig.controller.settings.puback_timeout_ms  # after its deadline
    assert rig.controller.counters.publish_retried == 1
    assert view.store.attempts(head.id) == 0  # gone for good


def test_a_new_controller_on_the_same_store_resends_what_was_not_acknowledged(
        tmp_path: Path) -> None:
    """The gateway was kill -9'ed with a QoS1 message in flight: the next one sends it."""
    rig = online_rig(tmp_path, SimConfig(faults=[parse_fault("puback=lost@1")]))
    enqueue(rig, b"first", b"second")
    assert rig.run_until(lambda: rig.controller.pub_phase == PubPhase.WAIT_PUBACK)
    rig.controller.outbox.store.close()  # the process dies here
    again = make_rig(SimConfig(), seed_settings(), outbox=_outbox(tmp_path))
    assert again.run_until(lambda: outbox_len(again) == 0)
    assert published(again) == [b"first", b"second"]


def test_qos0_is_deleted_after_ok(tmp_path: Path) -> None:
    rig = online_rig(tmp_path, SimConfig(faults=[parse_fault("puback=lost@*")]))
    enqueue(rig, b"fire and forget", qos=0)
    assert rig.run_until(lambda: outbox_len(rig) == 0)
    assert published(rig) == [b"fire and forget"]


def test_relative_topics_stored_by_a_library_user_are_resolved(tmp_path: Path) -> None:
    store = SqliteOutbox(db_path(tmp_path))
    store.enqueue("user/update", b"x", 1)  # bypassing `airfsm publish`, which resolves
    store.close()
    rig = online_rig(tmp_path)
    assert rig.run_until(lambda: outbox_len(rig) == 0)
    assert rig.module.published == [(f"/{SEED_PK}/{SEED_DN}/user/update", b"x", 1)]


def test_store_trouble_is_logged_and_retried_not_fatal(tmp_path: Path) -> None:
    rig = online_rig(tmp_path)
    view = rig.controller.outbox
    assert isinstance(view, GatewayOutbox)
    real = view.store
    enqueue(rig, b"after the hiccup")

    class Broken:
        last_error = "outbox: database is locked"

        def peek(self) -> tuple[OutboxStatus, None]:
            return OutboxStatus.UNAVAILABLE, None

    errors: list[str] = []
    view.store = Broken()  # type: ignore[assignment]
    view._on_error = lambda op, error: errors.append(f"{op}: {error}")
    rig.run_for(3_000)
    assert rig.controller.online and errors
    assert set(errors) == {"peek: outbox: database is locked"}
    view.store = real
    assert rig.run_until(lambda: outbox_len(rig) == 0)
    assert published(rig) == [b"after the hiccup"]
