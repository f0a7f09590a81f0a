"""The AT receiver's resynchronisation and the module's real dialect, end to end in virtual time.

Each test injects one fault of the simulator (the same spec `airfsm sim --fault` takes) into a
controller that is ONLINE or on its way there, and asserts what the operator must see: the
right edge taken at once (not after a timeout), nothing delivered that was not sent, the link
kept. Times are virtual: "at once" is checked against the deadline that would otherwise have
fired, which is a property of the logic, not a speed.
"""

from __future__ import annotations

import pytest

from airfsm.core.codes import State
from airfsm.core.controller import Controller
from airfsm.core.settings import Settings
from airfsm.core.table import LIVENESS_PROBE, MACHINE, SESSION_KEEPALIVE, SIGNAL_REFRESH
from airfsm.core.timebase import ms_diff
from airfsm.host import reasons
from airfsm.host.serial import memory_pair
from airfsm.sim import SimConfig, parse_fault
from tests.harness import SEED_DN, SEED_PK, Rig, make_rig, seed_settings

GET = f"/{SEED_PK}/{SEED_DN}/get"
V838 = "AirM2M_Air724UG_V838_LTE_AT"


def online_rig(*specs: str, settings: Settings | None = None, **config: object) -> Rig:
    cfg = SimConfig(faults=[parse_fault(s) for s in specs], **config)  # type: ignore[arg-type]
    rig = make_rig(cfg, settings)
    assert rig.run_until(lambda: rig.controller.online or rig.controller.failed)
    assert rig.controller.online, reasons.status(rig.controller)
    return rig


def step_of(state: State, name: str):  # type: ignore[no-untyped-def]
    return next(s for s in MACHINE[state].steps if s.name == name)


def transitions_since(rig: Rig, mark: int) -> list[tuple[int, str, str, str]]:
    return rig.timeline[mark:]


def when(rig: Rig, edge: tuple[str, str, str]) -> int:
    """Virtual time of the first transition `edge` (from, to, trigger)."""
    return next(t for t, *e in rig.timeline if tuple(e) == edge)


# ---------------------------------------------------------------------- item 7: truncation


def test_truncated_downlink_does_not_swallow_the_probe_answer() -> None:
    rig = online_rig()
    rig.module.add_fault(parse_fault("lose-downlink=150"))
    mark, timeouts = len(rig.timeline), rig.controller.counters.timeouts
    # the downlink arrives while the liveness probe is in flight: its answer follows the damage
    assert rig.run_until(lambda: rig.commands[-1] == LIVENESS_PROBE.command)
    assert rig.module.send_downlink(GET, b"x" * 300, rig.now)
    sent = len(rig.commands)
    rig.run_for(LIVENESS_PROBE.timeout_ms + 1_000)
    c = rig.controller
    assert c.counters.timeouts == timeouts  # the probe's OK was read again, not timed out
    assert c.channel.payloads_truncated == 1 and c.counters.downlinks_truncated == 1
    assert rig.inbound == []  # the damaged message is dropped, never delivered
    assert transitions_since(rig, mark) == [] and c.online
    # nothing re-sent, the link was never in doubt: only the signal read after each probe
    assert rig.commands[sent:] == [SIGNAL_REFRESH.command]
    assert rig.module.send_downlink(GET, b"intact", rig.now)
    rig.run_for(100)
    assert rig.inbound == [(GET, b"intact")]


def test_truncated_auth_reply_fails_the_step_at_once_and_the_retry_gets_online() -> None:
    rig = make_rig(SimConfig(faults=[parse_fault("lose=20:AT+HTTPREAD")]))
    assert rig.run_until(lambda: rig.controller.online or rig.controller.failed)
    c = rig.controller
    assert c.online and c.channel.payloads_truncated == 1
    assert "truncated" in str(reasons.last_error_text(c))
    # HTTPREAD's OK came back from inside the short body: judged, not timed out
    retry_at = when(rig, ("HTTP_AUTH", "HTTP_AUTH", "retry"))
    read_at = rig.sent_at("AT+HTTPREAD")[0]
    assert ms_diff(retry_at, read_at) < step_of(State.HTTP_AUTH, "read").timeout_ms


def test_module_reboot_in_the_middle_of_the_auth_reply_is_seen_as_a_reboot() -> None:
    rig = make_rig(SimConfig(faults=[parse_fault("brownout=40:AT+HTTPREAD")]))
    assert rig.run_until(lambda: len(rig.sent_at("AT+HTTPREAD")) == 1)
    read_at = rig.sent_at("AT+HTTPREAD")[0]
    mark = len(rig.timeline)
    assert rig.run_until(lambda: len(rig.timeline) > mark)
    when_, source, dest, trigger = rig.timeline[mark]
    assert (source, dest, trigger) == ("HTTP_AUTH", "AUTOBAUD", "rebooted")
    assert ms_diff(when_, read_at) < step_of(State.HTTP_AUTH, "read").timeout_ms
    assert rig.run_until(lambda: rig.controller.online)


# ---------------------------------------------------------------------- item 8: noisy RDY


def test_rdy_after_line_noise_in_online_starts_over_from_autobaud() -> None:
    rig = online_rig("noisy-rdy@2")  # the power-on boot and the next one
    mark, timeouts = len(rig.timeline), rig.controller.counters.timeouts
    rig.module.reboot(rig.now)
    assert rig.run_until(lambda: len(rig.timeline) > mark)
    assert rig.timeline[mark][1:] == ("ONLINE", "AUTOBAUD", "rebooted")
    assert rig.controller.counters.timeouts == timeouts  # seen, not inferred from silence
    assert rig.run_until(lambda: rig.controller.online)


# ---------------------------------------------------------------------- item 9: refused MCONNECT


def test_refused_mconnect_error_urc_fetches_a_fresh_token_at_once() -> None:
    rig = online_rig()
    auths = rig.module.auth_requests
    rig.module.add_fault(parse_fault("connack=refused@1"))  # OK, then a bare ERROR, no CLOSED
    rig.module.drop_mqtt(rig.now)
    assert rig.run_until(lambda: ("MQTT_CONNECT", "HTTP_AUTH", "token_rejected") in rig.states)
    refused_at = next(t for t, s, d, trig in rig.timeline if trig == "token_rejected")
    mconnect_at = rig.sent_at("AT+MCONNECT=1,120")[-1]
    # at once: long before the CONNACK wait of the step would have run out
    assert ms_diff(refused_at, mconnect_at) < step_of(State.MQTT_CONNECT, "connect").urc_timeout_ms
    assert rig.run_until(lambda: rig.controller.online)
    assert rig.module.auth_requests == auths + 1


# ---------------------------------------------------------------------- item 10: ME DETACH


def test_cgev_me_detach_is_a_lost_bearer() -> None:
    rig = online_rig()
    mark, timeouts = len(rig.timeline), rig.controller.counters.timeouts
    rig.module.add_fault(parse_fault("me-detach"))  # the next command: the liveness probe
    assert rig.run_until(lambda: len(rig.timeline) > mark)
    assert rig.timeline[mark][1:] == ("ONLINE", "ATTACH", "bearer_lost")
    assert rig.controller.counters.timeouts == timeouts
    assert rig.run_until(lambda: rig.controller.online)


# ---------------------------------------------------------------------- item 11: cache mode


def test_cache_notice_is_read_with_mqttmsgget_never_an_empty_topic() -> None:
    rig = online_rig("cache-notice@1")
    assert rig.module.send_downlink(GET, b'{"a":1}', rig.now)
    assert rig.run_until(lambda: bool(rig.inbound), max_ms=10_000)
    assert rig.inbound == [(GET, b'{"a":1}')]
    assert rig.commands.count("AT+MQTTMSGGET") == 1
    assert rig.controller.counters.downlinks_cached == 1


def test_msgset_goes_before_the_mqtt_session() -> None:
    rig = online_rig()
    commands = rig.commands
    assert commands.index("AT+MQTTMSGSET=0") < commands.index("AT+MCONNECT=1,120")


# ---------------------------------------------------------------------- item 12: hex downlinks


def test_hex_mode_downlink_is_decoded() -> None:
    rig = online_rig()
    binary = bytes(range(250, 256)) + b"\x00\x01"
    rig.controller.publish("update", binary, 1)
    rig.controller.publish("update", binary, 1)
    assert rig.run_until(lambda: "AT+MQTTMODE=1" in rig.commands)
    assert rig.module.send_downlink(GET, b"\x00\xffhi", rig.now)  # the module is in hex mode
    assert rig.run_until(lambda: bool(rig.inbound) and len(rig.controller.outbox) == 0)
    assert rig.inbound == [(GET, b"\x00\xffhi")]


# ---------------------------------------------------------------------- item 13: ERROR: n


def test_http_error_line_fails_the_step_at_once() -> None:
    rig = make_rig(SimConfig(faults=[parse_fault("http-error=3:AT+HTTPACTION=1")]))
    assert rig.run_until(lambda: rig.controller.online or rig.controller.failed)
    c = rig.controller
    assert c.online and "ERROR: 3" in str(reasons.last_error_text(c))
    retry_at = when(rig, ("HTTP_AUTH", "HTTP_AUTH", "retry"))
    action_at = rig.sent_at("AT+HTTPACTION=1")[0]
    assert ms_diff(retry_at, action_at) < step_of(State.HTTP_AUTH, "action").timeout_ms


# ---------------------------------------------------------------------- item 14: keepalive


def test_old_firmware_session_is_kept_alive_by_resubscribing() -> None:
    rig = online_rig()  # V409: the module sends no PINGREQ
    mark = len(rig.commands)
    rig.run_for(20 * 60_000)  # 20 idle minutes: the server would close after 180 s
    assert rig.module.server_closed_silently == 0
    keepalive = SESSION_KEEPALIVE.command.format(sub_topic=GET, sub_qos=0)
    sends = rig.sent_at(keepalive)[1:]  # the first one is the MQTT_CONNECT step's
    assert len(sends) >= 20 * 60 // 120
    gaps = [ms_diff(b, a) for a, b in zip(sends, sends[1:], strict=False)]
    assert all(gap < 120_000 for gap in gaps)  # within the keepalive, every time
    assert rig.controller.online and rig.controller.counters.keepalives == len(sends)
    assert rig.commands[mark:].count(keepalive) == len(sends)
    assert rig.module.send_downlink(GET, b"still here", rig.now)
    rig.run_for(100)
    assert rig.inbound == [(GET, b"still here")]


def test_heartbeat_firmware_needs_no_keepalive_from_the_controller() -> None:
    rig = online_rig(firmware=V838)
    keepalive = SESSION_KEEPALIVE.command.format(sub_topic=GET, sub_qos=0)
    before = rig.commands.count(keepalive)
    rig.run_for(20 * 60_000)
    assert rig.commands.count(keepalive) == before == 1 and rig.controller.counters.keepalives == 0
    assert rig.module.send_downlink(GET, b"x", rig.now)
    rig.run_for(100)
    assert rig.inbound == [(GET, b"x")]


def test_old_firmware_dead_session_is_detected_by_the_missing_suback() -> None:
    rig = online_rig()
    mark = len(rig.timeline)
    rig.module.drop_mqtt_silently(rig.now)  # no CLOSED, MQTTSTATU still says 1
    assert rig.run_until(lambda: len(rig.timeline) > mark, max_ms=300_000)
    assert rig.timeline[mark][1:] == ("ONLINE", "MQTT_CONNECT", "mqtt_lost")
    assert rig.run_until(lambda: rig.controller.online)
    assert rig.module.send_downlink(GET, b"back", rig.now)
    rig.run_for(100)
    assert rig.inbound == [(GET, b"back")]


SET = f"/sys/{SEED_PK}/{SEED_DN}/thing/service/property/set"
RRPC = f"/sys/{SEED_PK}/{SEED_DN}/rrpc/request/+"


def test_every_subscription_is_acknowledged_before_online_and_each_delivers() -> None:
    rig = online_rig(settings=seed_settings(subscribe=(GET, SET, RRPC)))
    subscribes = [c for c in rig.commands if c.startswith("AT+MSUB=")]
    assert subscribes == [f'AT+MSUB="{t}",0' for t in (GET, SET, RRPC)]
    assert set(rig.module.subscribed) == {GET, SET, RRPC}  # each SUBACK came
    request = f"/sys/{SEED_PK}/{SEED_DN}/rrpc/request/1700000000"
    for topic in (GET, SET, request):
        assert rig.module.send_downlink(topic, topic.encode(), rig.now)
    rig.run_for(100)
    assert rig.inbound == [(t, t.encode()) for t in (GET, SET, request)]


def test_a_subscription_that_gets_no_suback_fails_the_connect_and_all_are_sent_again() -> None:
    rig = online_rig("silence:AT+MSUB=\"" + SET + "\"@1",
                     settings=seed_settings(subscribe=(GET, SET)))
    subscribes = [c for c in rig.commands if c.startswith("AT+MSUB=")]
    assert subscribes == [f'AT+MSUB="{t}",0' for t in (GET, SET, GET, SET)]
    assert ("MQTT_CONNECT", "MQTT_CONNECT", "retry") in [t[1:] for t in rig.timeline]


def test_old_firmware_keepalives_resubscribe_each_topic_in_turn() -> None:
    rig = online_rig(settings=seed_settings(subscribe=(GET, SET, RRPC)))
    mark = len(rig.commands)
    rig.run_for(10 * 60_000)
    assert rig.module.server_closed_silently == 0 and rig.controller.online
    keepalives = [c for c in rig.commands[mark:] if c.startswith("AT+MSUB=")]
    assert len(keepalives) >= 6 and keepalives == [
        f'AT+MSUB="{(GET, SET, RRPC)[i % 3]}",0' for i in range(len(keepalives))]


@pytest.mark.parametrize(("subscribe", "problem"), [
    ((), None),  # the device's /{pk}/{dn}/get
    ((GET, SET, RRPC, "/a/#", "/+/+", "/x", "/y", "/z"), None),
    (tuple(f"/t{i}" for i in range(9)), "1-8 topics"),
    (("get",), "must be absolute"),
    (("/a/b+",), "'+' must be a whole level"),
    (("/a/#/b",), "'#' must be the whole last level"),
    (('/a"b',), "without quotes"),
    (("/" + "t" * 128,), "1-128 printable ASCII"),
    ("/a/b", "a list of topics"),
])
def test_subscriptions_are_validated(subscribe: tuple[str, ...], problem: str | None) -> None:
    settings = seed_settings(subscribe=subscribe)
    if problem is None:
        settings.validate()
        return
    with pytest.raises(ValueError) as info:
        settings.validate()
    assert problem in str(info.value)


def test_sub_topic_is_still_the_one_topic_form() -> None:
    assert seed_settings(sub_topic=SET).subscriptions() == (SET,)
    assert seed_settings().subscriptions() == (GET,)
    with pytest.raises(ValueError, match="not both"):
        seed_settings(sub_topic=SET, subscribe=(GET,)).validate()
    rig = online_rig(settings=seed_settings(sub_topic=SET))
    assert set(rig.module.subscribed) == {SET}


def test_keepalive_over_240_s_is_refused_citing_the_vendor() -> None:
    settings = seed_settings(keepalive_s=241)
    with pytest.raises(ValueError) as info:
        settings.validate()
    assert "vendor advises 120 s and at most 240 s" in str(info.value)
    assert seed_settings().keepalive_s == 120
    seed_settings(keepalive_s=240).validate()


# ---------------------------------------------------------------------- item 15: APN, HTTPDATA


def test_empty_apn_is_the_networks_default() -> None:
    rig = online_rig(settings=seed_settings(apn=""))
    assert 'AT+SAPBR=3,1,"APN",""' in rig.commands


@pytest.mark.parametrize(("window", "ok"), [(999, False), (1_000, True), (120_000, True),
                                            (120_001, False), (2**31 - 1, False)])
def test_httpdata_window_is_what_the_module_accepts(window: int, ok: bool) -> None:
    settings = seed_settings(body_window_ms=window)
    if ok:
        settings.validate()
        return
    with pytest.raises(ValueError, match="1000-120000"):
        settings.validate()
    with pytest.raises(ValueError):
        Controller(memory_pair()[0], settings)


# ---------------------------------------------------------------------- a topic like a header


def test_topic_containing_a_header_lookalike_arrives_whole() -> None:
    rig = online_rig(settings=seed_settings(sub_topic=f"/{SEED_PK}/{SEED_DN}/#"))
    topic = f'/{SEED_PK}/{SEED_DN}/get",1 byte,x'
    assert rig.module.send_downlink(topic, b"payload, with commas", rig.now)
    rig.run_for(100)
    assert rig.inbound == [(topic, b"payload, with commas")]


def test_a_keepalive_due_while_the_channel_is_busy_asks_for_no_tick_until_it_can_go() -> None:
    rig = online_rig("silence:AT+MQTTSTATU", settings=seed_settings(keepalive_s=30,
                                                                    liveness_ms=20_000))
    c = rig.controller
    online_at = rig.timeline[-1][0]
    assert rig.run_until(lambda: rig.commands[-1] == LIVENESS_PROBE.command)  # unanswered
    due = online_at + 30_000 * 3 // 4
    assert c.channel.busy and ms_diff(due, rig.now) > 0
    later = due + 100  # the keepalive is due, the probe still in flight
    assert ms_diff(c.channel.deadline or 0, later) > 0
    assert c.tick(later) == c.channel.deadline  # not `later`: the loop would spin
    assert rig.run_until(lambda: c.counters.keepalives == 1)  # it goes once the probe ends


def test_msub_line_of_no_known_shape_is_never_a_message_with_an_empty_topic() -> None:
    rig = online_rig()
    rig.module_port.write(b'\r\n+MSUB: "/t",5,hello\r\n\r\n+MSUB: \r\n')
    rig.run_for(100)
    assert rig.inbound == [] and rig.controller.counters.inbound == 0
    rig.module_port.write(b'\r\n+MSUB: "",2 byte,hi\r\n')  # an empty topic, but a message
    rig.run_for(100)
    assert rig.inbound == [("", b"hi")]
