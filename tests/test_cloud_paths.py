"""Alibaba Cloud as users meet it today, against the simulator (virtual time): instance
endpoints, the broker the auth reply names, dynamic registration (PROVISION), the direct MQTT
sign, and the timestamp in a sign (the `wall_clock_ms` hook)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json

from airfsm.core import aliyun
from airfsm.core.codes import AuthMode, FailReason, Reason, State
from airfsm.core.settings import Settings
from airfsm.host import log, reasons
from airfsm.sim import SimConfig
from airfsm.sim.module import REGISTER_REFUSED_CODE
from tests.harness import SEED_DN, SEED_DS, SEED_PK, Rig, make_rig

INSTANCE = "iot-06z00ax1o4qtest"
PRODUCT_SECRET = "Pr0ductS3cretForTheWholeProduct1"
NOW_MS = 1_780_000_000_000  # the wall clock the tests lend the device and the cloud


def settings(**fields: object) -> Settings:
    identity_fields = {k: fields.pop(k) for k in ("device_secret", "product_secret",
                                                 "instance_id") if k in fields}
    identity = aliyun.DeviceIdentity(SEED_PK, SEED_DN, **{"device_secret": SEED_DS,
                                                         **identity_fields})  # type: ignore
    return Settings(identity=identity, **fields)  # type: ignore[arg-type]


def run(rig: Rig) -> Rig:
    assert rig.run_until(lambda: rig.controller.online or rig.controller.failed)
    return rig


def path(rig: Rig) -> list[tuple[str, str, str]]:
    """The transitions taken, retries left out."""
    return [(s, d, t) for s, d, t in rig.states if t != "retry"]


def sent(rig: Rig, prefix: str) -> list[str]:
    return [c for c in rig.commands if c.startswith(prefix)]


# ---------------------------------------------------------------------- 1. instance endpoints


def test_an_instance_device_uses_the_instance_auth_server_and_broker() -> None:
    rig = run(make_rig(SimConfig(instance_id=INSTANCE), settings(instance_id=INSTANCE)))
    assert rig.controller.online, reasons.status(rig.controller)
    assert sent(rig, 'AT+HTTPPARA="URL"') == [
        f'AT+HTTPPARA="URL","https://{INSTANCE}.auth.iothub.aliyuncs.com/auth/devicename"']
    assert sent(rig, "AT+SSLMIPSTART") == [
        f'AT+SSLMIPSTART="{INSTANCE}.mqtt.iothub.aliyuncs.com",1883']


def test_a_device_without_its_instance_id_is_not_found_by_the_legacy_server() -> None:
    rig = run(make_rig(SimConfig(instance_id=INSTANCE), settings(auth_attempts=2)))
    assert rig.controller.failed
    assert rig.controller.auth_code == 5001  # the regional server knows no such device


def test_the_broker_the_auth_reply_names_is_the_one_connected_to() -> None:
    # The device is configured the legacy way; the cloud's reply (resources=mqtt) names
    # another broker, and only that one answers.
    host = "iot-cn-0pp1n8t.mqtt.iothub.aliyuncs.com"
    rig = run(make_rig(SimConfig(broker_host=host), settings()))
    assert rig.controller.online, reasons.status(rig.controller)
    form = aliyun.auth_form(settings().identity, resources=True)  # asks for resources=mqtt
    assert sent(rig, "AT+HTTPDATA=")[0].startswith(f"AT+HTTPDATA={len(form.body)},")
    assert sent(rig, "AT+SSLMIPSTART") == [f'AT+SSLMIPSTART="{host}",1883']


def test_a_configured_broker_wins_over_the_reply() -> None:
    host = "iot-cn-0pp1n8t.mqtt.iothub.aliyuncs.com"
    rig = run(make_rig(SimConfig(broker_host=host), settings(mqtt_host=host)))
    assert rig.controller.online
    assert sent(rig, "AT+SSLMIPSTART") == [f'AT+SSLMIPSTART="{host}",1883']


# ---------------------------------------------------------------------- 2. dynamic registration


def registering_rig(config: SimConfig | None = None, **fields: object) -> tuple[Rig, list[str]]:
    stored: list[str] = []
    rig = make_rig(config or SimConfig(product_secret=PRODUCT_SECRET),
                   settings(device_secret="", product_secret=PRODUCT_SECRET, **fields),
                   on_registered=stored.append)
    return run(rig), stored


def test_a_device_with_only_the_product_secret_registers_then_connects() -> None:
    rig, stored = registering_rig()
    assert rig.controller.online, reasons.status(rig.controller)
    assert ("BEARER", "PROVISION", "register") in path(rig)
    assert ("PROVISION", "HTTP_AUTH", "done") in path(rig)
    # the secret the cloud issued reached the host once, and signs the auth
    assert stored == [rig.module.device_secret] and rig.module.registrations == 1
    assert rig.module.register_requests == 1 and rig.module.auth_requests == 1
    assert sent(rig, 'AT+HTTPPARA="URL"')[0] == (
        f'AT+HTTPPARA="URL","{aliyun.register_url()}"')


def test_the_stored_secret_means_no_second_registration() -> None:
    rig, stored = registering_rig()
    assert rig.controller.online
    module = rig.module
    # the next start: the host read the stored secret; the same cloud
    again = make_rig(SimConfig(product_secret=PRODUCT_SECRET),
                     settings(device_secret=stored[0], product_secret=PRODUCT_SECRET),
                     start_ms=rig.now)
    again.module = module  # type: ignore[misc]
    requests = module.register_requests
    run(again)
    assert again.controller.online, reasons.status(again.controller)
    assert module.register_requests == requests
    assert all(dest != "PROVISION" for _s, dest, _t in again.states)


def test_a_registration_refused_because_the_device_is_active_is_a_clear_failure() -> None:
    rig, stored = registering_rig(SimConfig(product_secret=PRODUCT_SECRET,
                                            device_activated=True), auth_attempts=2)
    ctl = rig.controller
    assert ctl.failed and stored == []
    assert ctl.fail_reason == FailReason.REGISTRATION
    assert (ctl.fail_cause, ctl.fail_cause_detail) == (Reason.REGISTRATION_REFUSED,
                                                       REGISTER_REFUSED_CODE)
    text = reasons.fail_text(ctl) or ""
    assert "registers only once" in text and str(REGISTER_REFUSED_CODE) in text
    assert rig.module.register_requests == 2 and rig.module.auth_requests == 0


def test_a_wrong_product_secret_is_refused_and_never_connects() -> None:
    rig, stored = registering_rig(SimConfig(product_secret="another-product-secret"),
                                  auth_attempts=1)
    assert rig.controller.failed and stored == []
    assert rig.controller.fail_reason == FailReason.REGISTRATION
    assert rig.controller.auth_code == 401


def test_a_host_that_cannot_keep_the_secret_still_connects_now() -> None:
    def broken(_secret: str) -> None:
        raise OSError("disk full")

    rig = run(make_rig(SimConfig(product_secret=PRODUCT_SECRET),
                       settings(device_secret="", product_secret=PRODUCT_SECRET),
                       on_registered=broken))
    assert rig.controller.online, reasons.status(rig.controller)


def test_the_register_reply_is_scanned_with_bounds() -> None:
    ok = aliyun.parse_register_reply(b'{"code":200,"data":{"deviceSecret":"abcd1234"}}')
    assert ok.ok and ok.device_secret == "abcd1234" and "abcd1234" not in repr(ok)
    long = aliyun.parse_register_reply(
        b'{"code":200,"data":{"deviceSecret":"' + b"s" * 257 + b'"}}')
    assert not long.ok and long.reason == aliyun.ReplyReason.BAD_DEVICE_SECRET
    quoted = aliyun.parse_register_reply(b'{"code":200,"data":{"deviceSecret":"a\\"b"}}')
    assert not quoted.ok and quoted.device_secret == ""
    none = aliyun.parse_register_reply(b'{"code":200,"data":{"iotId":"x"}}')
    assert none.reason == aliyun.ReplyReason.NO_DEVICE_SECRET
    refused = aliyun.parse_register_reply(b'{"code":6289,"data":{},"message":"x"}')
    assert refused.code == 6289 and refused.reason == aliyun.ReplyReason.REFUSED
    assert aliyun.parse_register_reply(b"\xff").reason == aliyun.ReplyReason.NOT_UTF8


def test_a_registered_secret_no_sign_could_use_is_refused() -> None:
    """A deviceSecret with a ' is a credential the scan would take but no DeviceSecret the
    identity takes: accepted, every sign made with it raised inside the tick (FAILED
    INTERNAL, the host keeping a useless secret). It is an unusable reply instead."""
    reply = aliyun.parse_register_reply(b'{"code":200,"data":{"deviceSecret":"ab\'cd"}}')
    assert not reply.ok and reply.reason == aliyun.ReplyReason.BAD_DEVICE_SECRET
    assert reply.device_secret == ""


def test_the_register_form_signs_what_the_api_names() -> None:
    identity = aliyun.DeviceIdentity(SEED_PK, SEED_DN, "", product_secret=PRODUCT_SECRET)
    form = aliyun.register_form(identity, 1234567, "hmacsha256")

    text = f"deviceName{SEED_DN}productKey{SEED_PK}random1234567"
    expected = hmac.new(PRODUCT_SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()
    assert form.sign == expected
    assert form.body == (f"productKey={SEED_PK}&deviceName={SEED_DN}&random=1234567"
                         f"&sign={expected}&signMethod=hmacsha256").encode()
    assert len(form.body) <= aliyun.REGISTER_BODY_MAX


# ---------------------------------------------------------------------- 3. direct MQTT sign


def test_the_direct_sign_skips_the_https_pre_auth() -> None:
    rig = run(make_rig(SimConfig(), settings(auth_mode=AuthMode.MQTT_SIGN)))
    assert rig.controller.online, reasons.status(rig.controller)
    assert ("BEARER", "MQTT_CONNECT", "direct_sign") in path(rig)
    assert not sent(rig, "AT+HTTP") and rig.module.auth_requests == 0
    config = sent(rig, "AT+MCONFIG=")[0]
    signed = aliyun.mqtt_sign(settings().identity, "hmacmd5")
    assert config == (f'AT+MCONFIG="{signed.client_id}","{SEED_DN}&{SEED_PK}",'
                      f'"{signed.password}"')
    assert "timestamp" not in config  # no wall clock, no timestamp


def test_the_direct_sign_with_a_wrong_secret_is_refused_for_good() -> None:
    rig = run(make_rig(SimConfig(), settings(auth_mode=AuthMode.MQTT_SIGN,
                                             device_secret="not-the-secret", auth_attempts=3)))
    ctl = rig.controller
    assert ctl.failed and ctl.fail_reason == FailReason.CREDENTIALS
    assert (ctl.fail_cause, ctl.fail_cause_detail) == (Reason.SIGN_REFUSED, 3)
    assert len(sent(rig, "AT+MCONNECT")) == 3
    assert not any(d == State.HTTP_AUTH.name for _s, d, _t in rig.states)


def test_a_direct_sign_that_cannot_reach_the_broker_reopens_the_bearer() -> None:
    rig = make_rig(SimConfig(broker_host="elsewhere.mqtt.iothub.aliyuncs.com"),
                   settings(auth_mode=AuthMode.MQTT_SIGN))
    assert rig.run_until(lambda: ("MQTT_CONNECT", "BEARER", "sign_exhausted") in rig.states)
    assert not sent(rig, "AT+HTTP")


def test_registration_then_direct_sign() -> None:
    rig, stored = registering_rig(auth_mode=AuthMode.MQTT_SIGN)
    assert rig.controller.online, reasons.status(rig.controller)
    assert ("PROVISION", "MQTT_CONNECT", "direct_sign") in path(rig)
    assert rig.module.auth_requests == 0 and stored == [rig.module.device_secret]


# ---------------------------------------------------------------------- 4. the sign's timestamp


def clocked_rig(cloud_ms: int, **fields: object) -> Rig:
    rig = make_rig(SimConfig(), settings(**fields), wall_clock_ms=lambda: NOW_MS)
    rig.module.cloud_clock_ms = lambda: cloud_ms
    return run(rig)


def test_the_https_auth_carries_a_timestamp_the_cloud_accepts() -> None:
    rig = clocked_rig(NOW_MS + 60_000)
    assert rig.controller.online, reasons.status(rig.controller)
    form = aliyun.auth_form(settings().identity, "hmacmd5", NOW_MS, resources=True)
    assert sent(rig, "AT+HTTPDATA=")[0].startswith(f"AT+HTTPDATA={len(form.body)},")


def test_a_replayed_https_auth_is_refused() -> None:
    # the cloud's clock is an hour past the timestamp: a captured form, replayed
    rig = clocked_rig(NOW_MS + 3_600_000, auth_attempts=1)
    assert rig.controller.failed and rig.controller.auth_code == 460


def test_the_direct_sign_carries_a_timestamp() -> None:
    rig = clocked_rig(NOW_MS - 60_000, auth_mode=AuthMode.MQTT_SIGN)
    assert rig.controller.online, reasons.status(rig.controller)
    assert f"timestamp={NOW_MS}|" in sent(rig, "AT+MCONFIG=")[0]


def test_a_replayed_direct_sign_is_refused() -> None:
    rig = clocked_rig(NOW_MS + 3_600_000, auth_mode=AuthMode.MQTT_SIGN, auth_attempts=2)
    assert rig.controller.failed
    assert rig.controller.fail_cause == Reason.SIGN_REFUSED


def test_a_clock_that_knows_no_time_yet_sends_no_timestamp() -> None:
    rig = make_rig(SimConfig(), settings(auth_mode=AuthMode.MQTT_SIGN),
                   wall_clock_ms=lambda: None)
    rig.module.cloud_clock_ms = lambda: NOW_MS
    run(rig)
    assert rig.controller.online
    assert "timestamp" not in sent(rig, "AT+MCONFIG=")[0]


def test_no_secret_reaches_a_debug_log() -> None:
    buffer = io.StringIO()
    log.configure("debug", json=True, stream=buffer)
    try:
        stored: list[str] = []
        rig = run(make_rig(SimConfig(product_secret=PRODUCT_SECRET),
                           settings(device_secret="", product_secret=PRODUCT_SECRET,
                                    auth_mode=AuthMode.MQTT_SIGN),
                           on_registered=stored.append, wall_clock_ms=lambda: NOW_MS))
    finally:
        log.configure("warning", json=True, stream=io.StringIO())
    assert rig.controller.online
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert any(line["event"] == "at_tx" and "AT+MCONFIG" in line["command"] for line in lines)
    assert any(line["event"] == "registered" and line["stored"] for line in lines)
    password = aliyun.mqtt_sign(aliyun.DeviceIdentity(SEED_PK, SEED_DN, stored[0]),
                                "hmacmd5", NOW_MS).password
    for secret in (PRODUCT_SECRET, stored[0], password):
        assert secret not in buffer.getvalue()
