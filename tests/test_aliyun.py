"""Alibaba Cloud IoT pre-auth: sign, body, reply scan, endpoints, topics; the simulated cloud's
form parsing and sign verification (`airfsm.sim.cloud`)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest

from airfsm.core import aliyun as aliyun_module
from airfsm.core.aliyun import (
    AUTH_BODY_MAX,
    AUTH_ERRORS,
    AUTH_REPLY_REASONS,
    DEFAULT_REGION,
    MQTT_PORT,
    SIGN_METHODS,
    AuthReply,
    DeviceIdentity,
    ReplyReason,
    auth_body,
    auth_form,
    auth_host,
    auth_params,
    auth_url,
    describe_auth_code,
    form_encode,
    mqtt_endpoint,
    mqtt_host,
    parse_auth_reply,
    resolve_topic,
    sign,
    topic_get,
    topic_update,
    topic_update_error,
    topic_user,
)
from airfsm.sim.cloud import parse_auth_form, verify_auth_body
from tests.auth_replies import (
    JSON_MAX_DEPTH,
    RAW_HOSTILE,
    generated_bodies,
    reference_line,
    reply_line,
)

PK = "b0FMK1Ga5cp"
DN = "862991419835241"
DS = "y7MTCG6Gk33Ux26bbWSpANl4OaI0bg5Q"
SEED = DeviceIdentity(PK, DN, DS)
SEED_SIGN = "1eb96463ad2345b6c261e2f7cc78a7a0"
SEED_BODY = (
    b"productKey=b0FMK1Ga5cp&sign=1eb96463ad2345b6c261e2f7cc78a7a0"
    b"&clientId=862991419835241&deviceName=862991419835241"
)
SEED_REPLY = (
    b'{"code":200,"data":{"iotId":"jlvFGfQ11FlGOEJ4RoZU001013ba00",'
    b'"iotToken":"613d9cb0946741df98db1c50255a9dd0"},"message":"success"}'
)


def reference_sign(text: str, secret: str, digest: str) -> str:
    """Independent computation: HMAC of the already-concatenated plaintext."""
    return hmac.new(secret.encode(), text.encode(), getattr(hashlib, digest)).hexdigest()


# --- the seed vector --------------------------------------------------------------------------


def test_seed_sign() -> None:
    params = {"productKey": PK, "deviceName": DN, "clientId": DN}
    assert sign(params, DS) == SEED_SIGN
    assert sign(params, DS, "hmacmd5") == SEED_SIGN
    plaintext = f"clientId{DN}deviceName{DN}productKey{PK}"
    assert reference_sign(plaintext, DS, "md5") == SEED_SIGN


def test_seed_body_exact_and_length_112() -> None:
    body = auth_body(SEED)
    assert body == SEED_BODY
    assert len(body) == 112


def test_seed_params_order() -> None:
    params = auth_params(SEED)
    assert list(params) == ["productKey", "sign", "clientId", "deviceName"]
    assert params["sign"] == SEED_SIGN


# --- other sign methods -------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "digest"), [("hmacsha1", "sha1"), ("hmacsha256", "sha256")])
def test_sha_signs_match_independent_hmac(method: str, digest: str) -> None:
    params = {"productKey": PK, "deviceName": DN, "clientId": DN}
    plaintext = f"clientId{DN}deviceName{DN}productKey{PK}"
    expected = reference_sign(plaintext, DS, digest)
    got = sign(params, DS, method)
    assert got == expected
    assert got == got.lower() and len(got) == hashlib.new(digest).digest_size * 2


@pytest.mark.parametrize(("method", "digest"), [("hmacsha1", "sha1"), ("hmacsha256", "sha256")])
def test_non_default_method_is_sent_but_not_signed(method: str, digest: str) -> None:
    params = auth_params(SEED, method)
    assert list(params) == ["productKey", "sign", "clientId", "deviceName", "signmethod"]
    assert params["signmethod"] == method
    plaintext = f"clientId{DN}deviceName{DN}productKey{PK}"  # no "signmethod…" in it
    assert params["sign"] == reference_sign(plaintext, DS, digest)
    assert auth_body(SEED, method).endswith(f"&signmethod={method}".encode())


def test_unsigned_params_are_excluded() -> None:
    base = {"productKey": PK, "deviceName": DN, "clientId": DN}
    noisy = {
        **base,
        "sign": "whatever",
        "signmethod": "hmacmd5",
        "version": "default",
        "resources": "mqtt",
    }
    assert sign(noisy, DS) == sign(base, DS) == SEED_SIGN
    for method in SIGN_METHODS:
        assert sign({**base, "signmethod": method}, DS, method) == sign(base, DS, method)


def test_params_sorted_by_name_regardless_of_order() -> None:
    forward = {"clientId": "c1", "deviceName": "dev1", "productKey": "pk", "timestamp": "123"}
    backward = dict(reversed(list(forward.items())))
    plaintext = "clientIdc1deviceNamedev1productKeypktimestamp123"
    assert sign(forward, DS) == sign(backward, DS) == reference_sign(plaintext, DS, "md5")


def test_sort_is_by_code_point_uppercase_first() -> None:
    # "Zeta" < "alpha" in byte order, as the server (Java String ordering) sorts.
    params = {"alpha": "1", "Zeta": "2"}
    assert sign(params, DS) == reference_sign("Zeta2alpha1", DS, "md5")


def test_unknown_method_is_value_error() -> None:
    with pytest.raises(ValueError, match="sign method"):
        sign({"a": "b"}, DS, "hmacsha512")
    with pytest.raises(ValueError, match="sign method"):
        auth_params(SEED, "HMACMD5")


def test_timestamp_is_signed_and_placed_before_signmethod() -> None:
    params = auth_params(SEED, "hmacsha256", timestamp_ms=1589511374876)
    assert list(params) == [
        "productKey", "sign", "clientId", "deviceName", "timestamp", "signmethod",
    ]
    assert params["timestamp"] == "1589511374876"
    plaintext = f"clientId{DN}deviceName{DN}productKey{PK}timestamp1589511374876"
    assert params["sign"] == reference_sign(plaintext, DS, "sha256")
    body = auth_body(SEED, "hmacsha256", timestamp_ms=1589511374876)
    assert b"&timestamp=1589511374876&signmethod=hmacsha256" in body
    with pytest.raises(ValueError):
        auth_params(SEED, timestamp_ms=-1)


def test_explicit_client_id_is_signed_and_sent() -> None:
    ident = replace(SEED, client_id="gw-01")
    assert ident.effective_client_id == "gw-01"
    assert SEED.effective_client_id == DN
    params = auth_params(ident)
    assert params["clientId"] == "gw-01"
    plaintext = f"clientIdgw-01deviceName{DN}productKey{PK}"
    assert params["sign"] == reference_sign(plaintext, DS, "md5")


# --- percent-encoding -------------------------------------------------------------------------


def test_device_name_with_at_and_colon_is_percent_encoded() -> None:
    ident = DeviceIdentity(PK, "dev@site:01", DS)
    body = auth_body(ident)
    text = body.decode("ascii")
    assert "deviceName=dev%40site%3A01" in text
    assert "clientId=dev%40site%3A01" in text
    assert "@" not in text and ":" not in text
    # The sign is over the raw values, not the encoded ones.
    plaintext = f"clientIddev@site:01deviceNamedev@site:01productKey{PK}"
    expected_sign = reference_sign(plaintext, DS, "md5")
    expected = (
        f"productKey={PK}&sign={expected_sign}"
        f"&clientId={quote('dev@site:01', safe='')}&deviceName={quote('dev@site:01', safe='')}"
    ).encode()
    assert body == expected
    # The AT+HTTPDATA length counts encoded bytes: 2 extra bytes per escaped character, twice.
    raw = f"productKey={PK}&sign={expected_sign}&clientId=dev@site:01&deviceName=dev@site:01"
    raw_len = len(raw)
    assert len(body) == raw_len + 2 * 4
    assert verify_auth_body(body, DS) == (True, "ok")


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"product_key": ""}, "product_key"),
        ({"product_key": "b0FMK1Ga5c p"}, "product_key"),
        ({"product_key": "x" * 65}, "product_key"),
        ({"device_name": "abc"}, "device_name"),
        ({"device_name": "x" * 33}, "device_name"),
        ({"device_name": "dev/01"}, "device_name"),
        ({"device_name": 'dev"01'}, "device_name"),
        ({"device_secret": ""}, "device_secret"),
        ({"device_secret": 'y7MTCG6Gk33Ux26"bbWSpANl4OaI0bg5Q'}, "device_secret"),
        ({"device_secret": "y7MTCG6Gk33Ux26'bbWSpANl4OaI0bg5Q"}, "device_secret"),
        ({"device_secret": "y7MTCG6Gk33Ux26bbWSpANl4OaI0bg5Q\r\n"}, "device_secret"),
        ({"device_secret": "y7MTCG6Gk33Ux26bbWSpANl4OaI0bg5Q\u00e9"}, "device_secret"),
        ({"region": "CN-Shanghai"}, "region"),
        ({"region": ""}, "region"),
        ({"region": "cn shanghai"}, "region"),
        ({"client_id": "c" * 65}, "client_id"),
        ({"client_id": "gw|securemode=3"}, "client_id"),
    ],
)
def test_validate_names_the_field(changes: dict[str, str], field_name: str) -> None:
    ident = replace(SEED, **changes)
    with pytest.raises(ValueError) as info:
        ident.validate()
    text = str(info.value)
    assert text.startswith(field_name)
    assert "\n" not in text


@pytest.mark.parametrize(
    "changes",
    [
        {"device_secret": 'y7MTCG6Gk33Ux26"bbWSpANl4OaI0bg5Q'},
        {"device_secret": "y7MTCG6Gk33Ux26bbWSpANl4OaI0bg5Q\n"},
        # A secret pasted into the wrong field must not be echoed from there either.
        {"product_key": DS + "!", "device_secret": DS},
        {"device_name": DS + DS, "device_secret": DS},
        {"client_id": DS + " ", "device_secret": DS},
    ],
)
def test_validate_never_shows_the_secret(changes: dict[str, str]) -> None:
    ident = replace(SEED, **changes)
    with pytest.raises(ValueError) as info:
        ident.validate()
    assert DS not in str(info.value)
    assert "y7MTCG" not in str(info.value)


def test_validate_rejects_non_strings_with_value_error() -> None:
    ident = DeviceIdentity(12345, DN, DS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^product_key must be a string"):
        ident.validate()


def test_valid_identities_pass() -> None:
    SEED.validate()
    DeviceIdentity("a", "a_b.c@d:e-f", "s", "ap-southeast-1", "c" * 64).validate()
    DeviceIdentity(PK, "x" * 32, "!#$%&()*+,-./:;<=>?@[\\]^_`{|}~", client_id="").validate()


def test_auth_params_validate_the_identity_first() -> None:
    with pytest.raises(ValueError, match="^device_name"):
        auth_body(replace(SEED, device_name="ab"))


def test_identity_repr_hides_the_secret() -> None:
    assert DS not in repr(SEED) and DS not in str(SEED)


# --- endpoints --------------------------------------------------------------------------------


def test_endpoints() -> None:
    assert DEFAULT_REGION == "cn-shanghai"
    assert auth_host("cn-shanghai") == "iot-auth.cn-shanghai.aliyuncs.com"
    assert auth_url("cn-shanghai") == "https://iot-auth.cn-shanghai.aliyuncs.com/auth/devicename"
    assert auth_url("ap-southeast-1") == (
        "https://iot-auth.ap-southeast-1.aliyuncs.com/auth/devicename"
    )
    assert mqtt_host(PK, "cn-shanghai") == "b0FMK1Ga5cp.iot-as-mqtt.cn-shanghai.aliyuncs.com"
    assert MQTT_PORT == 1883


def test_mqtt_endpoint_prefers_the_reply_resources() -> None:
    assert mqtt_endpoint(SEED) == ("b0FMK1Ga5cp.iot-as-mqtt.cn-shanghai.aliyuncs.com", 1883)
    assert mqtt_endpoint(SEED, parse_auth_reply(SEED_REPLY)) == mqtt_endpoint(SEED)
    reply = AuthReply(200, "id", "tok", ReplyReason.OK, "mqtt.example.com", 8883)
    assert mqtt_endpoint(SEED, reply) == ("mqtt.example.com", 8883)


# --- replies ----------------------------------------------------------------------------------


def test_parse_seed_reply() -> None:
    reply = parse_auth_reply(SEED_REPLY)
    assert reply.ok
    assert reply.code == 200
    assert reply.iot_id == "jlvFGfQ11FlGOEJ4RoZU001013ba00"
    assert reply.iot_token == "613d9cb0946741df98db1c50255a9dd0"
    assert reply.message == "success"
    assert reply.mqtt_host is None and reply.mqtt_port is None
    assert reply.iot_token not in repr(reply)


def test_parse_reply_with_trailing_crlf_and_opaque_token() -> None:
    body = (
        b'{"code":200,"data":{"iotId":"abc","iotToken":"^1^1589511374876^27f6f5a03b709fc"},'
        b'"message":"success"}\r\n'
    )
    reply = parse_auth_reply(body)
    assert reply.ok
    assert reply.iot_token == "^1^1589511374876^27f6f5a03b709fc"


def test_resources_host_without_port_uses_the_default_port() -> None:
    body = (
        b'{"code":200,"data":{"iotId":"id1","iotToken":"tok1","resources":{"mqtt":'
        b'{"host":"mqtt.example.com"}}},"message":"success"}'
    )
    reply = parse_auth_reply(body)
    assert reply.mqtt_host == "mqtt.example.com" and reply.mqtt_port is None
    assert mqtt_endpoint(SEED, reply) == ("mqtt.example.com", MQTT_PORT)


def test_parse_reply_with_resources() -> None:
    body = (
        b'{"code":200,"data":{"iotId":"id1","iotToken":"tok1","resources":{"mqtt":'
        b'{"host":"b0FMK1Ga5cp.iot-as-mqtt.cn-shanghai.aliyuncs.com","port":1883}}},'
        b'"message":"success"}'
    )
    reply = parse_auth_reply(body)
    assert reply.ok
    assert reply.mqtt_host == "b0FMK1Ga5cp.iot-as-mqtt.cn-shanghai.aliyuncs.com"
    assert reply.mqtt_port == 1883


@pytest.mark.parametrize(
    "mqtt",
    [
        b'{"host":"evil\\",1883\\r\\nAT+RESET","port":1883}',  # would break AT+SSLMIPSTART
        b'{"host":"","port":"x"}',
        b'{"host":12,"port":70000}',
        b'"not an object"',
    ],
)
def test_unusable_resources_are_ignored(mqtt: bytes) -> None:
    body = (
        b'{"code":200,"data":{"iotId":"id1","iotToken":"tok1","resources":{"mqtt":'
        + mqtt
        + b'}},"message":"success"}'
    )
    reply = parse_auth_reply(body)
    assert reply.ok
    assert reply.mqtt_host is None and reply.mqtt_port is None


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (401, "sign check error"),
        (460, "request parameter error"),
        (5001, "device not found"),
        (6200, "auth type mismatch"),
    ],
)
def test_parse_error_replies(code: int, message: str) -> None:
    # The server's own message is not kept (the scan keeps fixed fields only, as the C twin):
    # the code says it all, in our words.
    body = f'{{"code":{code},"message":"{message}"}}'.encode()
    reply = parse_auth_reply(body)
    assert not reply.ok
    assert reply.code == code and reply.reason == ReplyReason.REFUSED
    assert reply.iot_id == "" and reply.iot_token == ""
    assert reply.message == describe_auth_code(code) == AUTH_ERRORS[code]


def test_error_reply_without_message_gets_a_description() -> None:
    reply = parse_auth_reply(b'{"code":401}')
    assert reply.code == 401 and reply.message == "signature mismatch"


def test_error_reply_with_data_is_still_not_ok() -> None:
    body = b'{"code":460,"data":{"iotId":"id","iotToken":"tok"},"message":"param"}'
    reply = parse_auth_reply(body)
    assert not reply.ok and reply.iot_token == ""


def test_code_as_string_is_accepted() -> None:
    body = b'{"code":"200","data":{"iotId":"id","iotToken":"tok"},"message":"success"}'
    assert parse_auth_reply(body).ok


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   \r\n",
        b"\x00\x00",
        b"garbage",
        b"<html><body>502 Bad Gateway</body></html>",
        SEED_REPLY[:60],  # truncated mid-token
        SEED_REPLY[:-1],
        b"[]",
        b"null",
        b"200",
        b'"success"',
        b"\xff\xfe{}",
        b'{"data":{"iotId":"id","iotToken":"tok"}}',  # no code
        b'{"code":true}',
        b'{"code":200.5}',
        b'{"code":"--5"}',
        b'{"code":"' + b"9" * 5000 + b'"}',
        b'{"code":' + b"9" * 5000 + b"}",
        b"[" * 100000 + b"]" * 100000,
    ],
)
def test_garbage_never_raises(body: bytes) -> None:
    reply = parse_auth_reply(body)
    assert reply.code == -1
    assert not reply.ok
    assert reply.iot_id == "" and reply.iot_token == ""
    assert reply.message and "\n" not in reply.message
    assert describe_auth_code(reply.code) == "unparseable reply"


def test_truncated_reply_message_does_not_quote_the_token() -> None:
    reply = parse_auth_reply(SEED_REPLY[:100])
    assert "613d9cb0" not in reply.message


@pytest.mark.parametrize(
    "data",
    [
        b'{"iotId":"id","iotToken":""}',
        b'{"iotId":"","iotToken":"tok"}',
        b'{"iotId":"id"}',
        b'{"iotToken":"tok"}',
        b'{"iotId":"id","iotToken":null}',
        b'{"iotId":"id","iotToken":123}',
        b'{"iotId":"id","iotToken":"to\\"k"}',  # would break AT+MCONFIG="…"
        b'{"iotId":"id","iotToken":"to\\r\\nAT+RESET"}',
        b'{"iotId":"id","iotToken":"to\\\\k"}',
        b'{"iotId":"id","iotToken":"' + b"t" * 257 + b'"}',
        b"[]",
        b'"x"',
    ],
)
def test_code_200_without_usable_credentials_is_not_ok(data: bytes) -> None:
    reply = parse_auth_reply(b'{"code":200,"data":' + data + b',"message":"success"}')
    assert reply.code == 200
    assert not reply.ok
    assert reply.iot_id == "" and reply.iot_token == ""
    assert reply.message != "success" and "\n" not in reply.message


def test_missing_data_object() -> None:
    reply = parse_auth_reply(b'{"code":200,"message":"success"}')
    assert reply.code == 200 and not reply.ok


def test_ok_requires_all_three() -> None:
    assert AuthReply(200, "id", "tok").ok
    assert not AuthReply(200, "id", "").ok
    assert not AuthReply(200, "", "tok").ok
    assert not AuthReply(401, "id", "tok").ok
    assert not AuthReply(200, "id", "tok", ReplyReason.BAD_IOT_TOKEN).ok


def test_describe_auth_code() -> None:
    assert describe_auth_code(200) == "success"
    assert describe_auth_code(5001) == "device not found"
    assert describe_auth_code(6200) == "auth type mismatch"
    assert describe_auth_code(500) == "unknown server error"
    assert describe_auth_code(999) == "unexpected code 999"


# --- server-side verification -----------------------------------------------------------------


@pytest.mark.parametrize("method", SIGN_METHODS)
def test_verify_accepts_good_bodies(method: str) -> None:
    assert verify_auth_body(auth_body(SEED, method), DS) == (True, "ok")
    assert verify_auth_body(auth_body(SEED, method, timestamp_ms=1700000000000), DS) == (
        True,
        "ok",
    )


def test_verify_accepts_the_seed_body() -> None:
    assert verify_auth_body(SEED_BODY, DS) == (True, "ok")


def test_verify_rejects_tampered_sign() -> None:
    tampered = SEED_BODY.replace(b"sign=1eb9", b"sign=1eb8")
    ok, reason = verify_auth_body(tampered, DS)
    assert not ok and reason == "sign mismatch"


def test_verify_rejects_tampered_value() -> None:
    tampered = SEED_BODY.replace(b"deviceName=862991419835241", b"deviceName=862991419835242")
    assert verify_auth_body(tampered, DS) == (False, "sign mismatch")


def test_verify_rejects_wrong_secret_without_showing_it() -> None:
    wrong = "A" * 32
    ok, reason = verify_auth_body(SEED_BODY, wrong)
    assert not ok
    assert wrong not in reason and DS not in reason and SEED_SIGN not in reason


def test_verify_rejects_signmethod_swap() -> None:
    # An md5 sign claimed as sha256 must fail, not be silently accepted.
    assert verify_auth_body(SEED_BODY + b"&signmethod=hmacsha256", DS) == (False, "sign mismatch")
    ok, reason = verify_auth_body(SEED_BODY + b"&signmethod=hmacsha512", DS)
    assert not ok and "signmethod" in reason


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty"),
        (b"productKey=b0FMK1Ga5cp", "missing parameter"),
        (SEED_BODY.replace(b"&sign=1eb96463ad2345b6c261e2f7cc78a7a0", b""), "sign"),
        (SEED_BODY + b"&deviceName=other", "twice"),
        (SEED_BODY + b"&junk", "form"),
        (b"productKey=\xff", "ASCII"),
        (b"productKey=%ff", "UTF-8"),
    ],
)
def test_verify_rejects_malformed_bodies(body: bytes, fragment: str) -> None:
    ok, reason = verify_auth_body(body, DS)
    assert not ok
    assert fragment in reason
    assert DS not in reason and "\n" not in reason


def test_parse_auth_form_decodes() -> None:
    body = auth_body(DeviceIdentity(PK, "dev@site:01", DS))
    form = parse_auth_form(body)
    assert form["deviceName"] == "dev@site:01"
    assert form["sign"] == auth_params(DeviceIdentity(PK, "dev@site:01", DS))["sign"]


# --- topics -----------------------------------------------------------------------------------


def test_topics() -> None:
    assert topic_update(PK, DN) == "/b0FMK1Ga5cp/862991419835241/update"
    assert topic_update_error(PK, DN) == "/b0FMK1Ga5cp/862991419835241/update/error"
    assert topic_get(PK, DN) == "/b0FMK1Ga5cp/862991419835241/get"
    assert topic_user(PK, DN, "update") == "/b0FMK1Ga5cp/862991419835241/user/update"
    assert topic_user(PK, DN, "get") == "/b0FMK1Ga5cp/862991419835241/user/get"


def test_resolve_topic() -> None:
    assert resolve_topic(PK, DN, "get") == topic_get(PK, DN)
    assert resolve_topic(PK, DN, "user/get") == topic_user(PK, DN, "get")
    assert resolve_topic(PK, DN, "update/error") == topic_update_error(PK, DN)
    absolute = f"/sys/{PK}/{DN}/thing/event/property/post"
    assert resolve_topic(PK, DN, absolute) == absolute
    assert resolve_topic(PK, DN, "/a/b") == "/a/b"


@pytest.mark.parametrize("bad", ["", 'get"', "get\r\nAT+RESET", "get\x00"])
def test_resolve_topic_rejects_unusable(bad: str) -> None:
    with pytest.raises(ValueError):
        resolve_topic(PK, DN, bad)


# --- the scan against its specification ---------------------------------------------------------


def test_scan_matches_its_json_specification_on_generated_replies() -> None:
    bodies = generated_bodies(93, 4000) + RAW_HOSTILE
    seen: dict[str, int] = {}
    for body in bodies:
        expected = reference_line(body)
        assert reply_line(parse_auth_reply(body)) == expected, body
        reason = expected.split()[1]
        seen[reason] = seen.get(reason, 0) + 1
    for reason in AUTH_REPLY_REASONS:  # every verdict is reached, so every rule is compared
        least = 5 if reason == ReplyReason.EMPTY else 10  # few ways to be empty
        assert seen.get(f"reason={reason.name}", 0) >= least, (reason, seen)


@pytest.mark.parametrize("field_name", ["iotId", "iotToken"])
@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "a\\ud83d", "\\ude00b"])
def test_lone_surrogate_credential_is_unusable_not_an_exception(field_name: str,
                                                                escape: str) -> None:
    data = {"iotId": '"id"', "iotToken": '"tok"'}
    data[field_name] = f'"{escape}"'
    body = ('{"code":200,"data":{' + ",".join(f'"{k}":{v}' for k, v in data.items())
            + "}}").encode()
    reply = parse_auth_reply(body)
    assert not reply.ok and reply.code == 200
    assert reply.reason == (ReplyReason.BAD_IOT_ID if field_name == "iotId"
                            else ReplyReason.BAD_IOT_TOKEN)
    assert reply.iot_id == "" and reply.iot_token == ""


@pytest.mark.parametrize(("code", "expected"), [
    (b"999999999", 999_999_999),
    (b"-999999999", -999_999_999),
    (b'" 5001 "', 5001),
    (b"1000000000", -1),
    (b"-1000000000", -1),
    (b'"1234567890"', -1),
    (b"1" * 4300, -1),
    (b"2e2", -1),
])
def test_the_code_is_a_small_integer_or_unparseable(code: bytes, expected: int) -> None:
    reply = parse_auth_reply(b'{"code":' + code + b"}")
    assert reply.code == expected
    assert reply.reason == (ReplyReason.NO_CODE if expected == -1 else ReplyReason.REFUSED)


def test_nesting_is_bounded() -> None:
    def nested(depth: int) -> bytes:  # the top object counts as one level
        return (b'{"code":401,"x":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}")

    assert parse_auth_reply(nested(JSON_MAX_DEPTH)).reason == ReplyReason.REFUSED
    assert parse_auth_reply(nested(JSON_MAX_DEPTH + 1)).reason == ReplyReason.NOT_JSON


def test_form_encoder_is_bounded() -> None:
    params = {"a": "b c", "d": "é"}
    out = bytearray(64)
    n = form_encode(params, out)
    assert bytes(out[:n]) == b"a=b%20c&d=%C3%A9"
    for cap in range(n):  # every buffer too small is refused, none overrun
        small = bytearray(cap)
        assert form_encode(params, small) == -1
        assert len(small) == cap
    assert form_encode(params, bytearray(n)) == n


def test_the_longest_identity_fits_the_body_bound() -> None:
    longest = DeviceIdentity("k" * 64, "@" * 32, DS, client_id=":" * 64)
    form = auth_form(longest, "hmacsha256", timestamp_ms=2**64 - 1, resources=True)
    assert len(form.body) == AUTH_BODY_MAX
    with pytest.raises(ValueError, match="timestamp"):
        auth_body(longest, timestamp_ms=2**64)


def test_auth_form_signs_once_and_matches_params_and_body(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = hmac.new

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aliyun_module.hmac, "new", counting)
    form = auth_form(SEED)
    assert len(calls) == 1
    assert form.body == SEED_BODY and form.sign == SEED_SIGN
    assert SEED_SIGN not in repr(form)


def test_one_hmac_per_auth_in_the_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entering HTTP_AUTH signs the form once (it used to sign twice: params, then body)."""
    from tests.harness import make_rig

    signs: list[str] = []
    real = aliyun_module.sign

    def counting(*args: Any, **kwargs: Any) -> str:
        signs.append(real(*args, **kwargs))
        return signs[-1]

    # The controller's signing goes through aliyun.sign; the simulated cloud verifies with its
    # own import of it, which this does not count.
    monkeypatch.setattr(aliyun_module, "sign", counting)
    rig = make_rig()
    assert rig.run_until(lambda: rig.controller.online)
    auths = sum(1 for c in rig.commands if c.startswith("AT+HTTPACTION"))
    assert auths == 1 and signs == [SEED_SIGN]
