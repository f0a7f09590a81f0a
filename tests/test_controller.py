"""The controller against the simulator in virtual time: the whole machine, every edge policy."""

from __future__ import annotations

import io
import json

import pytest

from airfsm.core import aliyun, payload
from airfsm.core.codes import FailReason, LogEvent, LogLevel, PubPhase, State, Trigger
from airfsm.core.controller import AGE_MAX_MS, Controller
from airfsm.core.outbox import MemoryOutbox
from airfsm.core.table import MACHINE
from airfsm.core.timebase import backoff_ms, ms_add, ms_diff
from airfsm.host import log, reasons
from airfsm.host.serial import memory_pair
from airfsm.sim import SimConfig, parse_fault
from tests.harness import SEED_DN, SEED_DS, SEED_PK, make_rig, seed_settings

UPDATE = f"/{SEED_PK}/{SEED_DN}/update"
GET = f"/{SEED_PK}/{SEED_DN}/get"
STAGES = ["AUTOBAUD", "VERSION_CHECK", "ATTACH", "BEARER", "HTTP_AUTH", "MQTT_CONNECT", "ONLINE"]


def faults(*specs: str) -> list:  # type: ignore[type-arg]
    return [parse_fault(s) for s in specs]


def online_rig(**config: object):  # type: ignore[no-untyped-def]
    rig = make_rig(SimConfig(**config))  # type: ignore[arg-type]
    assert rig.run_until(lambda: rig.controller.online or rig.controller.failed)
    assert rig.controller.online, reasons.status(rig.controller)
    return rig


def path_of(rig) -> list[str]:  # type: ignore[no-untyped-def]
    """The distinct states visited, in order (retries folded)."""
    seen: list[str] = ["AUTOBAUD"]
    for _src, dest, _trig in rig.states:
        if dest != seen[-1]:
            seen.append(dest)
    return seen


# ---------------------------------------------------------------------- the happy path


def test_seed_dialect_reaches_online_with_the_seed_commands() -> None:
    rig = online_rig()
    assert path_of(rig) == STAGES
    cmds = rig.commands
    # The seed transcript's commands, in its order (our clean-up steps may sit between them),
    # but for two deliberate changes: the keepalive is the vendor's advised 120 s, not the
    # seed's 300 (carrier NATs drop idle links), AT+MQTTMSGSET=0 comes before the MQTT
    # session, not after it, so no message can land in the module's cache, and the auth form
    # asks for `resources=mqtt` (112 + 15 bytes) so the reply names the broker to use.
    seed_order = [
        "AT", "AT+CGMR", "AT+CGATT?", 'AT+SAPBR=3,1,"CONTYPE","GPRS"',
        'AT+SAPBR=3,1,"APN","CMIOT"', "AT+SAPBR=1,1", "AT+HTTPINIT",
        'AT+HTTPPARA="URL","https://iot-auth.cn-shanghai.aliyuncs.com/auth/devicename"',
        'AT+HTTPPARA="USER_DEFINED","Content-Type: application/x-www-form-urlencoded"',
        "AT+HTTPDATA=127,20000", "AT+HTTPACTION=1", "AT+HTTPREAD", "AT+HTTPTERM",
        "AT+MQTTMSGSET=0",
        f'AT+SSLMIPSTART="{SEED_PK}.iot-as-mqtt.cn-shanghai.aliyuncs.com",1883',
        "AT+MCONNECT=1,120", f'AT+MSUB="{GET}",0',
    ]
    position = -1
    for command in seed_order:  # each one after the one before
        position = cmds.index(command, position + 1)
    # MCONFIG carries the credentials the simulated cloud just issued.
    iot_id, token = rig.module.issued_tokens[-1]
    assert f'AT+MCONFIG="{SEED_DN}","{iot_id}","{token}"' in cmds


def test_transition_log_has_from_to_trigger_attempt_elapsed() -> None:
    buf = io.StringIO()
    log.configure("info", json=True, stream=buf)
    try:
        online_rig()
    finally:
        log.configure("warning", json=True, stream=io.StringIO())
    events = [json.loads(line) for line in buf.getvalue().splitlines()]
    changes = [e for e in events if e["event"] == "state"]
    assert [c["to"] for c in changes if c["trigger"] == "done"] == STAGES[1:]
    for change in changes:
        assert {"from", "to", "trigger", "attempt", "elapsed_ms"} <= change.keys()
        assert isinstance(change["elapsed_ms"], int) and change["elapsed_ms"] >= 0


def test_secrets_never_reach_the_log_even_at_debug() -> None:
    buf = io.StringIO()
    log.configure("debug", json=True, stream=buf)
    try:
        rig = online_rig()
        rig.controller.publish("update", b"x", qos=1)
        rig.run_until(lambda: len(rig.controller.outbox) == 0)
    finally:
        log.configure("warning", json=True, stream=io.StringIO())
    text = buf.getvalue()
    _iot_id, token = rig.module.issued_tokens[-1]
    sign = aliyun.auth_params(aliyun.DeviceIdentity(SEED_PK, SEED_DN, SEED_DS))["sign"]
    assert "AT+MCONFIG" in text  # the command was logged ...
    for secret in (SEED_DS, token, sign):
        assert secret not in text  # ... with every secret redacted
    assert log.REDACTED in text


def _events_of(level: str, run: object) -> list[dict[str, object]]:
    buf = io.StringIO()
    log.configure(level, json=True, stream=buf)
    try:
        run()  # type: ignore[operator]
    finally:
        log.configure("warning", json=True, stream=io.StringIO())
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_each_received_line_is_logged_at_debug_after_the_command_it_answers() -> None:
    events = _events_of("debug", online_rig)
    wire = [(e["event"], e.get("command") or e.get("line")) for e in events
            if e["event"] in ("at_tx", "at_rx")]
    cgatt = wire.index(("at_tx", "AT+CGATT?"))
    # The module echoes (nobody sends ATE0): the echo is a received line like the others.
    assert wire[cgatt + 1:cgatt + 4] == [("at_rx", "AT+CGATT?"), ("at_rx", "+CGATT: 1"),
                                         ("at_rx", "OK")]
    assert ("at_rx", "CONNACK OK") in wire and ("at_rx", "SUBACK") in wire  # URCs too
    assert ("at_rx", "DOWNLOAD") in wire  # the prompt
    read = wire.index(("at_tx", "AT+HTTPREAD"))
    echo, header, final = wire[read + 1:read + 4]
    assert echo == ("at_rx", "AT+HTTPREAD") and header[1].startswith("+HTTPREAD: ")
    assert final == ("at_rx", "OK")  # not the body
    assert all(e.get("state") for e in events if e["event"] == "at_rx")
    assert not any(e["event"] == "at_rx" for e in _events_of("info", online_rig))


def test_a_stray_line_is_logged_at_debug_too() -> None:
    """A final code that comes twice: the second belongs to no command (stray), and a log of
    both directions still shows it where it came."""
    events = _events_of("debug", lambda: online_rig(faults=faults("dup-final:AT+CSQ")))
    wire = [(e["event"], e.get("command") or e.get("line")) for e in events
            if e["event"] in ("at_tx", "at_rx")]
    csq = wire.index(("at_tx", "AT+CSQ"))
    answer_end = wire.index(("at_rx", "OK"), csq)
    assert wire[answer_end + 1] == ("at_rx", "OK")  # the duplicate, before the next command


def test_each_message_is_logged_by_id_from_its_send_to_its_puback_or_dead_letter() -> None:
    def run() -> None:
        rig = online_rig(faults=faults("puback=lost@1"))
        c = rig.controller
        c.settings.publish_attempts = 2
        first = c.publish("update", b"one", qos=1)
        rig.run_until(lambda: len(c.outbox) == 0)
        second = c.publish("update", b"two", qos=0)
        rig.run_until(lambda: len(c.outbox) == 0)
        rig.module.add_fault(parse_fault("puback=lost@2"))
        third = c.publish("update", b"three", qos=1)
        rig.run_until(lambda: c.counters.publish_dead == 1)
        assert (first, second, third) == (1, 2, 3)

    events = _events_of("info", run)
    way = [(e["event"], e["id"], e.get("attempt"), e.get("by")) for e in events
           if e["event"] in ("publish_sent", "publish_failed", "publish_acked", "publish_dead")]
    assert way == [("publish_sent", 1, 1, None), ("publish_failed", 1, 1, None),
                   ("publish_sent", 1, 2, None), ("publish_acked", 1, None, "PUBACK"),
                   ("publish_sent", 2, 1, None), ("publish_acked", 2, None, "OK"),
                   ("publish_sent", 3, 1, None), ("publish_failed", 3, 1, None),
                   ("publish_sent", 3, 2, None), ("publish_failed", 3, 2, None),
                   ("publish_dead", 3, None, None)]
    sent = next(e for e in events if e["event"] == "publish_sent")
    assert sent["topic"] == UPDATE and sent["qos"] == 1 and sent["of"] == 2


@pytest.mark.parametrize("firmware, quoted", [
    ("AirM2M_Air72xUy_V409_LTE_AT", False),
    ("AirM2M_Air724UG_V409_LTE_AT", True),
    ("AirM2M_Air724UG_V1066_LTE_AT", True),  # numerically newer, lexically "smaller"
    ("AirM2M_Air72xUy_V4018xx_LTE_AT", False),
])
def test_supported_firmware_in_both_answer_forms(firmware: str, quoted: bool) -> None:
    rig = online_rig(firmware=firmware, cgmr_quoted=quoted)
    assert rig.controller.firmware == firmware
    assert rig.controller.firmware_version >= 409


def test_old_firmware_fails_at_once_without_any_http() -> None:
    rig = make_rig(SimConfig(faults=faults("old-firmware")))
    assert rig.run_until(lambda: rig.controller.failed)
    c = rig.controller
    assert c.fail_reason == FailReason.FIRMWARE
    assert "V300" in str(reasons.fail_text(c))
    assert rig.commands.count("AT+CGMR") == 1  # no retry
    assert not any(cmd.startswith("AT+HTTP") for cmd in rig.commands)
    rig.run_for(600_000)  # FAILED is terminal: nothing more is sent
    assert rig.commands.count("AT+CGMR") == 1


def test_seed_module_with_echo_boot_urcs_split_writes_slow_attach_and_one_601() -> None:
    rig = make_rig(SimConfig(echo=True, boot_urcs=True, attach_after_ms=40_000,
                             faults=faults("split", "http=601@1", "garbage:AT+CSQ")))
    assert rig.run_until(lambda: rig.controller.online or rig.controller.failed)
    assert rig.controller.online
    assert rig.commands.count("AT+CGATT?") > 5  # polled while +CGATT: 0
    assert ("HTTP_AUTH", "HTTP_AUTH", "retry") in rig.states  # the 601 cost one retry
    assert rig.commands.count("AT+HTTPACTION=1") == 2


def test_clock_starting_just_below_the_32_bit_wrap() -> None:
    rig = make_rig(SimConfig(attach_after_ms=10_000), start_ms=2**32 - 3_000)
    assert rig.run_until(lambda: rig.controller.online or rig.controller.failed)
    assert rig.controller.online
    assert rig.now < 2**32 - 3_000  # time really wrapped on the way
    rig.controller.publish("update", b"after the wrap", qos=1)
    assert rig.run_until(lambda: len(rig.controller.outbox) == 0)


# ---------------------------------------------------------------------- edge policies


def test_timeout_retry_after_backoff_then_escalation() -> None:
    """VERSION_CHECK: no answer -> retry x3 with 1..8 s backoff -> exhausted -> AUTOBAUD."""
    rig = make_rig(SimConfig(faults=faults("silence:AT+CGMR@4")))
    assert rig.run_until(lambda: rig.controller.online or rig.controller.failed)
    policy = MACHINE[State.VERSION_CHECK].policy
    assert policy is not None
    retries = [t for t in rig.timeline if t[1] == "VERSION_CHECK" and t[3] == "retry"]
    assert len(retries) == policy.retries
    assert ("VERSION_CHECK", "AUTOBAUD", "exhausted") in rig.states
    assert rig.controller.online  # the fifth AT+CGMR is answered
    # Between two sends of AT+CGMR: the step timeout, then the backoff for that attempt.
    step_timeout = MACHINE[State.VERSION_CHECK].steps[0].timeout_ms
    sends = rig.sent_at("AT+CGMR")
    assert len(sends) == policy.retries + 2  # 4 unanswered, then 1 answered
    pairs = zip(sends, sends[1:policy.retries + 1], strict=False)
    for attempt, (a, b) in enumerate(pairs, start=1):
        nominal = min(policy.backoff_cap_ms, policy.backoff_base_ms << (attempt - 1))
        waited = ms_diff(b, a) - step_timeout
        assert nominal // 2 <= waited <= nominal, (attempt, waited)


def test_backoff_is_deterministic_per_seed() -> None:
    def run() -> list[int]:
        rig = make_rig(SimConfig(faults=faults("silence:AT+CGMR@4")))
        rig.run_until(lambda: rig.controller.online)
        return [t[0] for t in rig.timeline]

    assert run() == run()


def test_attach_polls_then_resets_module_and_starts_over() -> None:
    rig = make_rig(SimConfig(attach_after_ms=10**9))  # never attaches
    step = next(s for s in MACHINE[State.ATTACH].steps if s.name == "cgatt")
    rig.run_until(lambda: ("ATTACH", "AUTOBAUD", "exhausted") in rig.states, max_ms=1_000_000)
    assert ("ATTACH", "AUTOBAUD", "exhausted") in rig.states
    # (poll_limit + 1) polls per attempt, two attempts (one retry)
    assert rig.commands.count("AT+CGATT?") == 2 * (step.poll_limit + 1)
    rig.run_for(5_000)
    assert "AT+RESET" in rig.commands  # escalation resets the module
    assert rig.commands.index("AT+RESET") > rig.commands.index("AT+CGATT?")
    # the retry cycled the radio first, with the settle time between off and on
    assert rig.commands.count("AT+CFUN=4") == rig.commands.count("AT+CFUN=1") == 1
    off, on = rig.sent_at("AT+CFUN=4")[0], rig.sent_at("AT+CFUN=1")[0]
    assert ms_diff(on, off) >= MACHINE[State.ATTACH].steps[0].settle_ms
    first_poll_of_retry = rig.commands.index("AT+CGATT?", rig.commands.index("AT+CFUN=1"))
    assert first_poll_of_retry > rig.commands.index("AT+CFUN=1")


def test_a_radio_that_will_not_switch_back_on_escalates_at_once() -> None:
    """Regression: AT+CFUN=1 was judged "any answer passes": an ERROR left the radio off and
    ATTACH polled +CGATT: 0 for two minutes before it escalated."""
    rig = make_rig(SimConfig(faults=faults("error:AT+CSQ@1", "error:AT+CFUN=1@1")))
    assert rig.run_until(lambda: ("ATTACH", "AUTOBAUD", "exhausted") in rig.states)
    cmds = rig.commands
    radio_on = cmds.index("AT+CFUN=1")
    assert cmds[radio_on + 1] == "AT+RESET"  # not one +CGATT? poll of a radio left off
    assert reasons.last_error_text(rig.controller) == "ATTACH radio_on: ERROR"
    assert rig.run_until(lambda: rig.controller.online or rig.controller.failed)
    assert rig.controller.online


def test_attach_on_the_first_try_never_touches_the_radio() -> None:
    rig = online_rig()
    assert not any(c.startswith("AT+CFUN") for c in rig.commands)


def test_sapbr_error_when_bearer_already_open_is_not_a_failure() -> None:
    """A gateway restarts while the module keeps its bearer: AT+SAPBR=1,1 answers ERROR."""
    rig = online_rig()
    assert rig.module.bearer_open
    rig.controller = Controller(rig.controller.port, seed_settings(), now_ms=rig.now,
                                on_state=lambda s, d, t: rig.states.append((s.name, d.name, t)))
    rig.states.clear()
    known = len(rig.commands)
    assert rig.run_until(lambda: rig.controller.online or rig.controller.failed)
    assert rig.controller.online
    assert not any(s[0] == "BEARER" and s[2] == "retry" for s in rig.states)
    again = rig.commands[known:]
    assert "AT+SAPBR=1,1" in again and "AT+SAPBR=2,1" in again
    assert rig.controller.ip


def test_sim_busy_is_polled_a_bounded_number_of_times() -> None:
    rig = online_rig(faults=faults("cme=14:AT+CPIN?@3"))
    assert rig.commands.count("AT+CPIN?") == 4


def test_missing_sim_is_not_polled_forever_and_says_why() -> None:
    rig = make_rig(SimConfig(faults=faults("cme=10:AT+CPIN?@*")))
    step = next(s for s in MACHINE[State.ATTACH].steps if s.name == "cpin")
    assert rig.run_until(lambda: ("ATTACH", "AUTOBAUD", "exhausted") in rig.states,
                         max_ms=1_000_000)
    assert rig.commands.count("AT+CPIN?") == 2 * (step.poll_limit + 1)  # bounded, then reset
    last_error = reasons.last_error_text(rig.controller)
    assert last_error == "ATTACH cpin: SIM not ready (+CME ERROR: 10 (SIM not inserted))"
    assert reasons.status(rig.controller)["last_error"] == last_error


def test_auth_rejected_never_sends_mconfig_and_fails_after_configured_attempts() -> None:
    rig = make_rig(SimConfig(faults=faults("auth=401@*")))
    assert rig.run_until(lambda: rig.controller.failed, max_ms=3_600_000)
    c = rig.controller
    assert c.fail_reason == FailReason.CREDENTIALS
    assert "401" in str(reasons.fail_text(c))
    policy = MACHINE[State.HTTP_AUTH].policy
    assert policy is not None
    assert rig.commands.count("AT+HTTPACTION=1") == policy.retries + 1
    assert not any(cmd.startswith("AT+MCONFIG") for cmd in rig.commands)
    # with backoff: the attempts are spread out, not hammered
    sends = rig.sent_at("AT+HTTPACTION=1")
    for attempt, (a, b) in enumerate(zip(sends, sends[1:], strict=False), start=1):
        least = backoff_ms(attempt, policy.backoff_base_ms, policy.backoff_cap_ms, _MinRng())
        assert ms_diff(b, a) >= least


class _MinRng:
    """A PRNG stand-in that always draws 0: backoff_ms then gives its lower bound."""

    def next(self) -> int:
        return 0


def test_auth_attempts_setting_shortens_the_give_up() -> None:
    rig = make_rig(SimConfig(faults=faults("auth=5001@*")),
                   settings=seed_settings(auth_attempts=1))
    assert rig.run_until(lambda: rig.controller.failed)
    assert rig.commands.count("AT+HTTPACTION=1") == 1
    assert "device not found" in str(reasons.fail_text(rig.controller))


def test_auth_attempts_count_rejections_only_and_transient_failures_forgive_none() -> None:
    rig = make_rig(SimConfig(faults=faults("auth=401@1")),
                   settings=seed_settings(auth_attempts=2))
    assert rig.run_until(lambda: rig.commands.count("AT+HTTPACTION=1") == 1
                         and rig.controller.attempt == 2)
    rig.module.add_fault(parse_fault("http=601@1"))  # the next request never reaches the server
    rig.module.add_fault(parse_fault("auth=401@1"))  # ... and the one after it is rejected
    assert rig.run_until(lambda: rig.controller.failed or rig.controller.online)
    assert rig.controller.fail_reason == FailReason.CREDENTIALS
    assert rig.commands.count("AT+HTTPACTION=1") == 3 and rig.module.auth_requests == 2


def test_wrong_secret_is_rejected_by_the_simulated_cloud() -> None:
    settings = seed_settings(auth_attempts=2)
    settings.identity = aliyun.DeviceIdentity(SEED_PK, SEED_DN, "not-the-secret")
    rig = make_rig(settings=settings)
    assert rig.run_until(lambda: rig.controller.failed)
    assert rig.controller.fail_reason == FailReason.CREDENTIALS
    assert rig.controller.auth_code == 401


def test_mute_module_fails_with_no_response_after_autobaud_budget() -> None:
    rig = make_rig(SimConfig(faults=faults("silence:AT@*")))
    assert rig.run_until(lambda: rig.controller.failed, max_ms=3_600_000)
    assert rig.controller.fail_reason == FailReason.NO_RESPONSE
    policy = MACHINE[State.AUTOBAUD].policy
    assert policy is not None
    retries = [t for t in rig.states if t == ("AUTOBAUD", "AUTOBAUD", "retry")]
    assert len(retries) == policy.retries
    assert rig.states[-1] == ("AUTOBAUD", "FAILED", "exhausted")
    failed_at = rig.timeline[-1][0]
    assert 80_000 <= failed_at <= 100_000  # about 90 s: the vendor's limit


def test_a_hung_module_is_cured_by_the_reset_pin() -> None:
    pulses: list[int] = []

    def pulse_reset_pin() -> None:  # the board's GPIO: the module restarts, healed
        pulses.append(rig.now)
        rig.module.clear_faults()
        rig.module.reboot(rig.now)

    rig = make_rig(SimConfig(faults=faults("silence:AT@*")), hardware_reset=pulse_reset_pin)
    assert rig.run_until(lambda: rig.controller.online or rig.controller.failed,
                         max_ms=3_600_000)
    assert rig.controller.online
    assert len(pulses) == 1
    assert ("AUTOBAUD", "AUTOBAUD", "hardware_reset") in rig.states
    policy = MACHINE[State.AUTOBAUD].policy
    assert policy is not None
    before = rig.states.index(("AUTOBAUD", "AUTOBAUD", "hardware_reset"))
    assert rig.states[:before].count(("AUTOBAUD", "AUTOBAUD", "retry")) == policy.retries


def test_reset_pin_pulses_are_bounded_then_no_response() -> None:
    pulses: list[int] = []
    rig = make_rig(SimConfig(faults=faults("silence:AT@*")),
                   hardware_reset=lambda: pulses.append(rig.now))
    assert rig.run_until(lambda: rig.controller.failed, max_ms=36_000_000)
    policy = MACHINE[State.AUTOBAUD].policy
    assert policy is not None
    assert len(pulses) == policy.hardware_resets
    assert rig.controller.fail_reason == FailReason.NO_RESPONSE
    assert f"{policy.hardware_resets} RESET-pin pulses" in str(reasons.fail_text(rig.controller))


def test_mconnect_refused_goes_back_to_http_auth_for_a_fresh_token() -> None:
    rig = online_rig()
    before = rig.module.auth_requests
    rig.module.expire_token()  # the next MCONNECT with it is refused
    rig.module.drop_mqtt(rig.now)
    assert rig.run_until(lambda: ("MQTT_CONNECT", "HTTP_AUTH", "token_rejected") in rig.states)
    assert rig.run_until(lambda: rig.controller.online)
    assert rig.module.auth_requests == before + 1


def test_the_module_and_its_network_are_known_once_online() -> None:
    rig = online_rig(imei="861234567890123", iccid="8986041234567890123F",
                     operator="CHN-UNICOM", access_technology=7)
    status = reasons.status(rig.controller)
    assert {k: status[k] for k in ("imei", "iccid", "operator", "registration",
                                   "access_technology", "rssi")} == {
        "imei": "861234567890123", "iccid": "8986041234567890123F", "operator": "CHN-UNICOM",
        "registration": "home", "access_technology": "lte", "rssi": 24}
    assert 0 <= status["signal_age_ms"] < 60_000
    cmds = rig.commands
    assert cmds.index("AT+CGSN") == cmds.index("AT+CGMR") + 1
    # the operator and registration are asked once attached, the ICCID once the SIM is ready
    assert cmds.index("AT+CCID") == cmds.index("AT+CPIN?") + 1
    assert cmds.index("AT+CGATT?") < cmds.index("AT+COPS?") < cmds.index("AT+CEREG?")


def test_a_module_that_will_not_say_who_it_is_still_gets_online() -> None:
    rig = online_rig(faults=faults("error:AT+CGSN@1", "cme=10:AT+CCID@1", "silence:AT+COPS?@1",
                                   "error:AT+CEREG?@1"))
    status = reasons.status(rig.controller)
    assert [status[k] for k in ("imei", "iccid", "operator", "registration",
                                "access_technology")] == [None] * 5
    # not one retry (but AUTOBAUD's, while the module boots)
    assert [s for s in rig.states if s[2] == "retry" and s[0] != "AUTOBAUD"] == []


def test_the_signal_is_read_again_after_each_liveness_probe_while_online() -> None:
    rig = online_rig()
    c = rig.controller
    assert c.rssi == 24
    rig.module.config.rssi = 9  # the antenna was knocked
    attach_reading = c.signal_at
    rig.run_for(c.settings.liveness_ms + 5_000)
    assert c.online and c.rssi == 9 and c.signal_at != attach_reading
    assert reasons.status(c)["signal_age_ms"] < 5_000
    probe = rig.commands.index("AT+MQTTSTATU")
    assert rig.commands[probe + 1] == "AT+CSQ"


# ---------------------------------------------------------------------- ONLINE


def test_publish_qos0_and_qos1_with_escaping() -> None:
    rig = online_rig()
    c = rig.controller
    hostile = b'say "hi"\r\nAT+RESET\r\n\\22 done'
    c.publish("update", b"test0", qos=0)
    c.publish(UPDATE, hostile, qos=1)
    assert rig.run_until(lambda: len(c.outbox) == 0)
    assert [(t, p, q) for t, p, q in rig.module.published] == [
        (UPDATE, b"test0", 0), (UPDATE, hostile, 1)]
    assert "AT+RESET" not in rig.commands  # escaped, never a command of its own
    assert c.counters.publish_acked == 2


def test_qos1_waits_for_puback_before_the_next_message() -> None:
    rig = online_rig(faults=faults("puback=late@1"))
    c = rig.controller
    c.publish("update", b"one", qos=1)
    c.publish("update", b"two", qos=1)
    assert rig.run_until(lambda: c.pub_phase == PubPhase.WAIT_PUBACK)
    sent_before_ack = [p for _t, p, _q in rig.module.published]
    assert sent_before_ack == [b"one"]
    assert rig.run_until(lambda: len(c.outbox) == 0)
    assert [p for _t, p, _q in rig.module.published] == [b"one", b"two"]


def test_lost_puback_resends_after_deadline_and_loses_nothing() -> None:
    rig = online_rig(faults=faults("puback=lost@1"))
    c = rig.controller
    for i in range(3):
        c.publish("update", f"m{i}".encode(), qos=1)
    assert rig.run_until(lambda: len(c.outbox) == 0)
    payloads = [p for _t, p, _q in rig.module.published]
    assert payloads[:2] == [b"m0", b"m0"]  # resent after the PUBACK deadline
    assert payloads[2:] == [b"m1", b"m2"]
    assert c.counters.publish_retried == 1


def test_hex_mode_for_binary_payloads() -> None:
    rig = online_rig()
    binary = bytes(range(256))[:200] + "温度".encode()
    rig.controller.publish("update", binary, qos=1)
    rig.controller.publish("update", b"plain again", qos=0)
    assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
    assert [p for _t, p, _q in rig.module.published] == [binary, b"plain again"]
    assert rig.commands.count("AT+MQTTMODE=1") == 1
    assert rig.commands.count("AT+MQTTMODE=0") == 1


def test_unsendable_messages_are_refused_at_publish_time() -> None:
    rig = online_rig()
    with pytest.raises(ValueError, match="too large"):
        rig.controller.publish("update", b"x" * 5000)
    with pytest.raises(ValueError):
        rig.controller.publish('up"date', b"x")
    with pytest.raises(ValueError):
        rig.controller.publish("update/#", b"x")
    with pytest.raises(ValueError):
        rig.controller.publish("update", b"x", qos=2)
    assert len(rig.controller.outbox) == 0


def test_a_message_mpub_cannot_carry_at_the_head_becomes_a_dead_letter(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # An outbox that lets anything in (as a host's store might): the tick refuses what AT+MPUB
    # cannot carry by put_mpub's code, dead-letters it with why, and the queue flows on.
    rig = online_rig()
    monkeypatch.setattr(payload, "check_message", lambda *args, **kwargs: None)
    box = rig.controller.outbox
    bad_topic = box.enqueue('/a/"b', b"x", 1)  # type: ignore[attr-defined]
    too_big = box.enqueue(UPDATE, b"\x00" * (payload.MAX_PAYLOAD_HEX_RAW + 1), 1)  # type: ignore[attr-defined]
    bad_qos = box.enqueue(UPDATE, b"x", 2)  # type: ignore[attr-defined]
    box.enqueue(UPDATE, b"fine", 1)  # type: ignore[attr-defined]
    assert rig.run_until(lambda: len(box) == 0)  # type: ignore[arg-type]
    dead = {d.id: d.reason for d in box.dead_letters()}  # type: ignore[attr-defined]
    assert set(dead) == {bad_topic, too_big, bad_qos}
    assert dead[bad_topic].startswith("bad topic: 5 characters")
    assert dead[too_big].startswith(f"payload of {payload.MAX_PAYLOAD_HEX_RAW + 1} bytes")
    assert dead[bad_qos] == "qos must be 0 or 1, got 2"
    assert [p for _t, p, _q in rig.module.published] == [b"fine"]
    assert sum(c.startswith("AT+MPUB=") for c in rig.commands) == 1
    assert rig.controller.counters.internal_errors == 0


def test_inbound_payload_read_by_length_never_split_on_commas() -> None:
    rig = online_rig()
    payload = b'{"a":1,"b":"x,y"}\r\nsecond line, "quoted", OK\r\nCLOSED'
    rig.module.send_downlink(GET, payload, rig.now)
    assert rig.run_until(lambda: bool(rig.inbound))
    assert rig.inbound == [(GET, payload)]
    assert rig.controller.online  # the CLOSED inside the payload is data, not a URC


def test_closed_urc_reconnects_mqtt_only() -> None:
    rig = online_rig()
    auths = rig.module.auth_requests
    rig.module.drop_mqtt(rig.now)
    assert rig.run_until(lambda: ("ONLINE", "MQTT_CONNECT", "mqtt_lost") in rig.states)
    assert rig.run_until(lambda: rig.controller.online)
    assert rig.module.auth_requests == auths  # the token is still good: no new auth


def test_module_reboot_starts_over_from_autobaud() -> None:
    rig = online_rig()
    rig.module.reboot(rig.now)
    assert rig.run_until(lambda: ("ONLINE", "AUTOBAUD", "rebooted") in rig.states)
    assert rig.run_until(lambda: rig.controller.online)


def test_detach_goes_back_to_attach() -> None:
    rig = online_rig()
    rig.module.detach(rig.now)
    assert rig.run_until(lambda: ("ONLINE", "ATTACH", "bearer_lost") in rig.states)
    assert rig.run_until(lambda: rig.controller.online)


def test_liveness_probe_detects_a_silently_dead_session() -> None:
    rig = online_rig()
    # The link dies without a CLOSED URC: only AT+MQTTSTATU can tell.
    rig.module.add_fault(parse_fault("silence:AT+NOTHING"))  # no-op fault, keeps API honest
    rig.module._close_link(announce=False)
    assert rig.run_until(lambda: ("ONLINE", "MQTT_CONNECT", "mqtt_lost") in rig.states,
                         max_ms=2 * rig.controller.settings.liveness_ms)
    assert "AT+MQTTSTATU" in rig.commands


def test_silent_module_in_online_leads_to_reconnect() -> None:
    rig = online_rig()
    rig.module.add_fault(parse_fault("silence:AT+MQTTSTATU@*"))
    limit = rig.controller.settings.silence_limit
    assert rig.run_until(lambda: ("ONLINE", "MQTT_CONNECT", "mqtt_lost") in rig.states,
                         max_ms=(limit + 1) * rig.controller.settings.liveness_ms)
    assert rig.commands.count("AT+MQTTSTATU") >= limit


def test_token_older_than_refresh_age_is_renewed_on_reconnect() -> None:
    rig = make_rig(settings=seed_settings(token_refresh_ms=120_000))
    assert rig.run_until(lambda: rig.controller.online)
    auths = rig.module.auth_requests
    rig.run_for(130_000)
    rig.module.drop_mqtt(rig.now)
    assert rig.run_until(lambda: ("MQTT_CONNECT", "HTTP_AUTH", "token_rejected") in rig.states)
    assert rig.run_until(lambda: rig.controller.online)
    assert rig.module.auth_requests == auths + 1


def test_request_stop_finishes_in_flight_publish_then_disconnects() -> None:
    rig = online_rig(faults=faults("puback=late@1"))
    c = rig.controller
    c.publish("update", b"last words", qos=1)
    c.publish("update", b"stays queued", qos=1)
    assert rig.run_until(lambda: c.pub_phase == PubPhase.WAIT_PUBACK)
    c.request_stop()
    assert rig.run_until(lambda: c.stopped)
    assert [p for _t, p, _q in rig.module.published] == [b"last words"]
    assert rig.commands[-1] == "AT+MDISCONNECT"
    assert len(c.outbox) == 1  # the unsent one is kept for the next run


class _StateLog:
    """A log hook that keeps the STATE events (source, trigger, elapsed)."""

    level = LogLevel.INFO

    def __init__(self) -> None:
        self.changes: list[tuple[int, int, int]] = []

    def __call__(self, ctl: object, level: LogLevel, event: LogEvent, a: int, b: int, c: int,
                 data: object) -> None:
        if event == LogEvent.STATE:
            self.changes.append((a, b, c))


def test_the_age_of_a_state_saturates_instead_of_wrapping_after_25_days() -> None:
    hook = _StateLog()
    rig = make_rig(SimConfig(firmware="AirM2M_Air724UG_V838_LTE_AT"),
                   start_ms=(1 << 32) - 60_000, log_hook=hook)
    c = rig.controller
    assert rig.run_until(lambda: c.online)
    for _day in range(25):  # (one run_for must stay below the 32-bit clock's half)
        rig.run_for(24 * 3600 * 1000)
    assert c.online and c.state_age_ms() == AGE_MAX_MS
    assert reasons.status(c)["since_ms"] == AGE_MAX_MS
    known = len(hook.changes)
    rig.module.drop_mqtt(rig.now)
    assert rig.run_until(lambda: c.state != State.ONLINE)
    source, trigger, elapsed = hook.changes[known]
    assert (State(source), Trigger(trigger), elapsed) == (State.ONLINE, Trigger.MQTT_LOST,
                                                          AGE_MAX_MS)
    assert 0 <= c.state_age_ms() < 1_000  # the new state's age starts afresh


# ---------------------------------------------------------------------- robustness


def test_tick_never_raises_on_garbage_and_port_loss() -> None:
    near, far = memory_pair()
    c = Controller(near, seed_settings(), now_ms=0)
    for i in range(256):
        far.write(bytes([i]) * 3 + b"\r\n")
        c.tick(i * 10)
    far.close()
    c.tick(5_000)
    assert c.port_lost
    assert c.tick(6_000) >= 6_000


def test_settings_are_validated_before_the_first_tick() -> None:
    near, _far = memory_pair()
    bad = seed_settings(apn='CMIOT"\r\nAT+RESET')
    with pytest.raises(ValueError, match="apn"):
        Controller(near, bad)


def test_memory_outbox_is_bounded() -> None:
    box = MemoryOutbox(capacity=2)
    box.enqueue("/a", b"1", 1)
    box.enqueue("/a", b"2", 1)
    with pytest.raises(Exception, match="full"):
        box.enqueue("/a", b"3", 1)
    assert [box.peek()[1].payload] == [b"1"]  # type: ignore[union-attr]


def test_default_log_stream_follows_sys_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream replaced (or closed) after configure() never breaks logging."""
    log.configure("info", json=True)
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    log.get_logger("t").info("one")
    first.close()
    monkeypatch.setattr("sys.stderr", second)
    log.get_logger("t").info("two")
    assert '"event": "two"' in second.getvalue()


def test_a_probe_due_while_a_command_is_in_flight_asks_for_no_early_tick() -> None:
    """Regression: a probe (or PUBACK deadline) that fell due while the channel was busy made
    next_deadline() answer "now" until the command completed: the host loop spun."""
    rig = online_rig()
    c = rig.controller
    c.settings.publish_timeout_ms = 3 * c.settings.liveness_ms  # MPUB outlives the next probe
    rig.module.add_fault(parse_fault("silence:AT+MPUB"))
    c.publish("update", b"x", qos=1)
    assert rig.run_until(lambda: c.channel.busy and "AT+MPUB" in rig.commands[-1])
    in_flight_until = c.channel.deadline
    assert in_flight_until is not None
    late = ms_add(c.session.next_probe_at, 1)  # the probe is due, the MPUB still waits
    assert ms_diff(in_flight_until, late) > 0
    assert ms_diff(c.tick(late), late) > 0  # not "now": nothing can start before the answer


def test_a_prompt_that_comes_after_its_state_was_left_still_gets_its_body() -> None:
    """Regression: the bearer went while AT+HTTPDATA waited for DOWNLOAD; the controller had
    left HTTP_AUTH by the time the prompt came and never sent the body, so the module took the
    next commands (AT+CPIN?, ...) for body bytes until its window ended."""
    rig = make_rig()
    c = rig.controller
    assert rig.run_until(lambda: bool(rig.commands) and rig.commands[-1].startswith(
        "AT+HTTPDATA="))
    rig.module.detach(rig.now)  # its URCs go out before the DOWNLOAD the module owes
    assert rig.run_until(lambda: c.state == State.ATTACH)
    assert rig.run_until(lambda: c.online or c.failed)
    assert c.online
    after = rig.commands[[i for i, cmd in enumerate(rig.commands)
                          if cmd.startswith("AT+HTTPDATA=")][0] + 1:]
    assert after[0] == "AT+CPIN?"  # a command, not body bytes
    assert not any(s == ("ATTACH", "ATTACH", "retry") for s in rig.states)


def test_an_auth_computes_its_sign_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the body and the secret to redact were signed separately (two HMACs)."""
    near, _far = memory_pair()
    c = Controller(near, seed_settings(), log_hook=log.CORE_LOG)  # registers what it signs
    signs: list[str] = []
    real_sign = aliyun.sign

    def counting_sign(*args: object, **kwargs: object) -> str:
        signs.append(real_sign(*args, **kwargs))  # type: ignore[arg-type]
        return signs[-1]

    monkeypatch.setattr(aliyun, "sign", counting_sign)
    c._prepare_auth()
    assert len(signs) == 1
    assert f"sign={signs[0]}".encode() in c.auth.body[:c.auth.body_len]
    assert log.redact(f"x{signs[0]}y") == "x***y"  # the one sign is the secret registered
