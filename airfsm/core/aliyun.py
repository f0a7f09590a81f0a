"""Alibaba Cloud IoT "one device, one secret" (一机一密) HTTPS pre-auth.

C twin: port/c/core/aliyun.c (each function below names its own).

The device POSTs a form to `https://iot-auth.<region>.aliyuncs.com/auth/devicename`, signed with
its DeviceSecret, and gets back an iotId (MQTT username) and an iotToken (MQTT password, valid 7
days). This module builds that form, scans the reply, names endpoints and topics. It is pure: no
I/O, no logging, no clock, and no `json`, `re` or `urllib`: the identity is checked character by
character, the form is written by a bounded encoder, and the reply is read by a bounded scan into
fixed-size results, each the same loop as its C twin (the tests run both on thousands of replies
and compare them field by field). The server's side of the auth lives in the simulator
(`airfsm.sim.cloud`).

Everything here that ends up inside an AT command (`AT+MCONFIG="…"`, `AT+SSLMIPSTART="…"`,
`AT+MSUB="…"`) is checked to be free of quotes and line breaks, so a hostile or broken reply can
never inject a command.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from airfsm.core.textparse import hex_value

__all__ = [
    "AUTH_BODY_MAX",
    "AUTH_ERRORS",
    "DEFAULT_REGION",
    "DEFAULT_SIGN_METHOD",
    "JSON_MAX_DEPTH",
    "MQTT_PORT",
    "SIGN_METHODS",
    "AuthForm",
    "AuthReply",
    "DeviceIdentity",
    "ReplyReason",
    "auth_body",
    "auth_form",
    "auth_host",
    "auth_params",
    "auth_url",
    "describe_auth_code",
    "form_encode",
    "mqtt_endpoint",
    "mqtt_host",
    "parse_auth_reply",
    "resolve_topic",
    "sign",
    "topic_get",
    "topic_update",
    "topic_update_error",
    "topic_user",
]

SIGN_METHODS = ("hmacmd5", "hmacsha1", "hmacsha256")  # C: aliyun_sign_method_t, in this order
DEFAULT_SIGN_METHOD = "hmacmd5"
DEFAULT_REGION = "cn-shanghai"
MQTT_PORT = 1883  # Aliyun's MQTT port; TLS runs on it (AT+SSLMIPSTART)

# Submitted but never signed (Alibaba Cloud's rule).
UNSIGNED_PARAMS = frozenset({"sign", "signmethod", "version", "resources"})

_DIGESTS: dict[str, Callable[[], Any]] = {
    "hmacmd5": hashlib.md5,
    "hmacsha1": hashlib.sha1,
    "hmacsha256": hashlib.sha256,
}

AUTH_OK = 200
AUTH_UNPARSEABLE = -1  # our code for a reply that is not the JSON object we expect
AUTH_ERRORS: dict[int, str] = {
    401: "signature mismatch",
    460: "parameter error",
    500: "unknown server error",
    5001: "device not found",
    6200: "auth type mismatch",
}

# The limits of port/c/core/airfsm_config.h (the same numbers: changing one breaks the lockstep).
MAX_CREDENTIAL_LEN = 256  # AT+MCONFIG takes each field quoted, <= 256 bytes, with no escape
MAX_HOST_LEN = 253  # a DNS name
MAX_PRODUCT_KEY_LEN = 64
MIN_DEVICE_NAME_LEN = 4
MAX_DEVICE_NAME_LEN = 32
MAX_CLIENT_ID_LEN = 64
MAX_REGION_LEN = 64
MAX_INSTANCE_ID_LEN = 64
MAX_TIMESTAMP_MS = 2**64 - 1  # the C's uint64_t: at most 20 decimal digits
# The reply may nest this deep before the scan calls it unparseable; the server's nests 3 deep.
JSON_MAX_DEPTH = 32
# The longest auth body: productKey=<64>&sign=<64 hex>&clientId=<64, each char up to %XX>
# &deviceName=<32, up to %XX each>&timestamp=<20 digits>&signmethod=hmacsha256
# &resources=mqtt = 523 bytes.
AUTH_BODY_MAX = (len("productKey=") + MAX_PRODUCT_KEY_LEN + len("&sign=") + 64
                 + len("&clientId=") + 3 * MAX_CLIENT_ID_LEN
                 + len("&deviceName=") + 3 * MAX_DEVICE_NAME_LEN
                 + len("&timestamp=") + 20 + len("&signmethod=hmacsha256")
                 + len("&resources=mqtt"))


# --- the identity -------------------------------------------------------------------------------


def _is_alnum(cp: int) -> bool:
    return 0x30 <= cp <= 0x39 or 0x41 <= cp <= 0x5A or 0x61 <= cp <= 0x7A


def _is_name_char(cp: int) -> bool:
    """The device name's and client id's characters: letters, digits and _ . @ : -"""
    return _is_alnum(cp) or cp in (0x5F, 0x2E, 0x40, 0x3A, 0x2D)


def _is_region_char(cp: int) -> bool:
    return 0x61 <= cp <= 0x7A or 0x30 <= cp <= 0x39 or cp == 0x2D


def _is_instance_char(cp: int) -> bool:
    """An instance id's characters: letters, digits and -"""
    return _is_alnum(cp) or cp == 0x2D


def _is_secret_char(cp: int) -> bool:
    """Printable ASCII without quotes."""
    return 0x20 <= cp <= 0x7E and cp != 0x22 and cp != 0x27


def _text_matches(text: str, allowed: Callable[[int], bool], min_len: int, max_len: int) -> bool:
    """Every character allowed and min_len <= len <= max_len. C: text_matches()."""
    n = 0
    for ch in text:
        if n >= max_len or not allowed(ord(ch)):
            return False
        n += 1
    return n >= min_len


def _check(name: str, value: object, allowed: Callable[[int], bool], min_len: int, max_len: int,
           rule: str) -> None:
    """ValueError naming the field and the rule; the value itself is never echoed (it might be a
    secret pasted into the wrong field)."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    if not _text_matches(value, allowed, min_len, max_len):
        raise ValueError(f"{name} must be {rule} (got {len(value)} characters)")


@dataclass(frozen=True)
class DeviceIdentity:
    """The device triple plus where it lives. `repr()` never shows the secret.

    C: aliyun_identity_t.
    """

    product_key: str
    device_name: str
    device_secret: str = field(repr=False)  # "": not known yet (dynamic registration)
    region: str = DEFAULT_REGION
    client_id: str | None = None
    # "One type, one secret": the product's secret, which registers the device once and earns
    # its DeviceSecret (PROVISION). "": none (the DeviceSecret is given).
    product_secret: str = field(default="", repr=False)
    # An instance opened since mid-2021 (`iot-06z00...`): its own MQTT endpoint,
    # `<instance_id>.mqtt.iothub.aliyuncs.com`. None: the legacy regional endpoints.
    instance_id: str | None = None

    @property
    def registered(self) -> bool:
        """The DeviceSecret is known (given, or stored after a registration). C:
        `device_secret[0] != '\\0'`."""
        return bool(self.device_secret)

    @property
    def effective_client_id(self) -> str:
        """The id that is signed and used for MQTT: `client_id`, or the device name.

        C: aliyun_client_id()."""
        return self.client_id or self.device_name

    def validate(self) -> None:
        """Raise ValueError (one line, naming the field, never the secret) if unusable.

        C: aliyun_identity_check(), the same checks in the same order."""
        _check("product_key", self.product_key, _is_alnum, 1, MAX_PRODUCT_KEY_LEN,
               "1-64 letters or digits")
        _check("device_name", self.device_name, _is_name_char, MIN_DEVICE_NAME_LEN,
               MAX_DEVICE_NAME_LEN, "4-32 characters of letters, digits and _ . @ : -")
        secret = self.device_secret
        if not isinstance(secret, str):
            raise ValueError(f"device_secret must be a string, not {type(secret).__name__}")
        product_secret = self.product_secret
        if not isinstance(product_secret, str):
            raise ValueError("product_secret must be a string, not "
                             f"{type(product_secret).__name__}")
        if not secret and not product_secret:
            raise ValueError("device_secret must not be empty")
        if secret and not _text_matches(secret, _is_secret_char, 1, len(secret)):
            raise ValueError("device_secret must be printable ASCII without quotes, CR or LF")
        if product_secret and not _text_matches(product_secret, _is_secret_char, 1,
                                                len(product_secret)):
            raise ValueError("product_secret must be printable ASCII without quotes, CR or LF")
        _check("region", self.region, _is_region_char, 1, MAX_REGION_LEN,
               "lowercase letters, digits and - (e.g. cn-shanghai)")
        if self.client_id is not None:
            _check("client_id", self.client_id, _is_name_char, 0, MAX_CLIENT_ID_LEN,
                   "at most 64 characters of letters, digits and _ . @ : -")
        if self.instance_id is not None:
            _check("instance_id", self.instance_id, _is_instance_char, 1, MAX_INSTANCE_ID_LEN,
                   "1-64 letters, digits and - (e.g. iot-06z00ax1o4qxxxx)")


# --- signing ------------------------------------------------------------------------------------


def _digest_for(method: str) -> Callable[[], Any]:
    digest = _DIGESTS.get(method)
    if digest is None:
        expected = ", ".join(SIGN_METHODS)
        raise ValueError(f"unknown sign method {method!r}: expected one of {expected}")
    return digest


def sign(params: Mapping[str, str], device_secret: str, method: str = DEFAULT_SIGN_METHOD) -> str:
    """HMAC of every parameter except sign/signmethod/version/resources, sorted by name,
    concatenated as name+value with no separator; lowercase hex. C: aliyun_sign()."""
    digest = _digest_for(method)
    text = "".join(
        name + params[name] for name in sorted(params) if name not in UNSIGNED_PARAMS
    )
    return hmac.new(device_secret.encode("utf-8"), text.encode("utf-8"), digest).hexdigest()


def _check_timestamp(timestamp_ms: int | None) -> None:
    """ValueError unless None or an integer 0 .. 2**64-1 (the C's uint64_t)."""
    if timestamp_ms is not None and (
            isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int)
            or not 0 <= timestamp_ms <= MAX_TIMESTAMP_MS):
        raise ValueError("timestamp_ms must be an integer from 0 to 2**64-1")


def auth_params(
    identity: DeviceIdentity,
    method: str = DEFAULT_SIGN_METHOD,
    timestamp_ms: int | None = None,
    resources: bool = False,
) -> dict[str, str]:
    """The auth form's parameters in the seed's order: productKey, sign, clientId, deviceName,
    then timestamp (if given), then signmethod (only when not hmacmd5, the server's default),
    then `resources=mqtt` (with `resources`: the reply then names the MQTT host and port, which
    an instance's device must use). Signs once. C: aliyun_auth_params().

    The timestamp (Unix ms) is signed, so a captured sign is good only as long as the server
    accepts that timestamp; without one (no wall clock) the sign never changes.

    Raises ValueError for an invalid identity (or one with no DeviceSecret yet), an unknown
    method or a timestamp outside 0 .. 2**64-1.
    """
    identity.validate()
    if not identity.registered:
        raise ValueError("device_secret must not be empty (register the device first)")
    _digest_for(method)
    _check_timestamp(timestamp_ms)
    signed: dict[str, str] = {
        "productKey": identity.product_key,
        "clientId": identity.effective_client_id,
        "deviceName": identity.device_name,
    }
    if timestamp_ms is not None:
        signed["timestamp"] = str(timestamp_ms)
    params: dict[str, str] = {
        "productKey": signed["productKey"],
        "sign": sign(signed, identity.device_secret, method),
        "clientId": signed["clientId"],
        "deviceName": signed["deviceName"],
    }
    if timestamp_ms is not None:
        params["timestamp"] = signed["timestamp"]
    if method != DEFAULT_SIGN_METHOD:
        params["signmethod"] = method
    if resources:
        params["resources"] = "mqtt"
    return params


_HEX_DIGITS = b"0123456789ABCDEF"


def _quote_into(text: str, out: bytearray, used: int) -> int:
    """Append `text` percent-encoded as urllib's quote(text, safe='') does (everything but letters,
    digits and _ . - ~ as %XX of its UTF-8 bytes) to out[used:]; the new length, or -1 when it
    does not fit in len(out). C: quote_into()."""
    cap = len(out)
    for c in text.encode("utf-8"):
        if _is_alnum(c) or c in (0x5F, 0x2E, 0x2D, 0x7E):
            if used + 1 > cap:
                return -1
            out[used] = c
            used += 1
        else:
            if used + 3 > cap:
                return -1
            out[used] = 0x25  # %
            out[used + 1] = _HEX_DIGITS[c >> 4]
            out[used + 2] = _HEX_DIGITS[c & 0x0F]
            used += 3
    return used


def form_encode(params: Mapping[str, str], out: bytearray) -> int:
    """`name=value` pairs joined by `&`, each percent-encoded, written into `out`; the form's
    length, or -1 when it does not fit in len(out). C: aliyun_form_encode()."""
    used = 0
    for i, (name, value) in enumerate(params.items()):
        if i > 0:
            if used + 1 > len(out):
                return -1
            out[used] = 0x26  # &
            used += 1
        used = _quote_into(name, out, used)
        if used < 0 or used + 1 > len(out):
            return -1
        out[used] = 0x3D  # =
        used = _quote_into(value, out, used + 1)
        if used < 0:
            return -1
    return used


@dataclass(frozen=True)
class AuthForm:
    """One auth request: the form-urlencoded body (its `len()` is the n of
    `AT+HTTPDATA=<n>,<ms>`) and the sign inside it, a secret (`repr()` hides both)."""

    body: bytes = field(repr=False)
    sign: str = field(repr=False)


def auth_form(
    identity: DeviceIdentity,
    method: str = DEFAULT_SIGN_METHOD,
    timestamp_ms: int | None = None,
    resources: bool = False,
) -> AuthForm:
    """The POST body and its sign, the HMAC computed once. At most AUTH_BODY_MAX bytes.

    C: aliyun_auth_params() then aliyun_form_encode() (aliyun_auth_body() does both).
    ValueError as `auth_params`.
    """
    return _encoded(auth_params(identity, method, timestamp_ms, resources), AUTH_BODY_MAX)


def _encoded(params: Mapping[str, str], capacity: int) -> AuthForm:
    """A form of at most `capacity` bytes and the sign inside it. C: aliyun_form_encode()."""
    out = bytearray(capacity)
    length = form_encode(params, out)
    if length < 0:  # the identity's limits make this impossible; the C twin checks it too
        raise ValueError(f"form longer than {capacity} bytes")
    return AuthForm(body=bytes(out[:length]), sign=params["sign"])


def auth_body(
    identity: DeviceIdentity,
    method: str = DEFAULT_SIGN_METHOD,
    timestamp_ms: int | None = None,
) -> bytes:
    """The form-urlencoded POST body alone (`auth_form` gives the sign with it).

    C: aliyun_auth_body()."""
    return auth_form(identity, method, timestamp_ms).body


# --- dynamic registration ("one type, one secret", 一型一密) -------------------------------------
#
# A product with dynamic registration on gives all its devices one ProductSecret. A device POSTs
# productKey, deviceName, a random nonce, signMethod and the sign - the HMAC of
# `deviceName<dn>productKey<pk>random<random>` with the ProductSecret - to
# /auth/register/device and gets back its DeviceSecret: `{"code":200,"data":{"productKey":…,
# "deviceName":…,"deviceSecret":…}}`. It must keep it: once the device has connected, the
# server refuses to register it again (until the console resets it, ResetThing).

REGISTER_SIGN_PARAM = "signMethod"  # this API's spelling (the auth API's is `signmethod`)
MAX_NONCE = 2**64 - 1  # the random nonce: at most 20 decimal digits (the C's uint64_t)
# productKey=<64>&deviceName=<32, up to %XX each>&random=<20 digits>&sign=<64 hex>
# &signMethod=hmacsha256 = 303 bytes.
REGISTER_BODY_MAX = (len("productKey=") + MAX_PRODUCT_KEY_LEN
                     + len("&deviceName=") + 3 * MAX_DEVICE_NAME_LEN
                     + len("&random=") + 20 + len("&sign=") + 64
                     + len("&signMethod=hmacsha256"))


def register_form(identity: DeviceIdentity, nonce: int,
                  method: str = DEFAULT_SIGN_METHOD) -> AuthForm:
    """The /auth/register/device POST body and its sign (a secret: an HMAC of the
    ProductSecret). C: aliyun_register_form().

    ValueError for an invalid identity, one without a ProductSecret, an unknown method or a
    nonce outside 0 .. 2**64-1.
    """
    identity.validate()
    if not identity.product_secret:
        raise ValueError("product_secret must not be empty to register the device")
    _digest_for(method)
    if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 <= nonce <= MAX_NONCE:
        raise ValueError("the registration nonce must be an integer from 0 to 2**64-1")
    signed = {"deviceName": identity.device_name, "productKey": identity.product_key,
              "random": str(nonce)}
    params = {"productKey": identity.product_key, "deviceName": identity.device_name,
              "random": signed["random"], "sign": sign(signed, identity.product_secret, method),
              REGISTER_SIGN_PARAM: method}
    return _encoded(params, REGISTER_BODY_MAX)


# --- direct MQTT sign ---------------------------------------------------------------------------
#
# Instead of the HTTPS pre-auth, the MQTT CONNECT itself carries the proof (Alibaba Cloud's
# "MQTT-TCP connection"): clientId `<id>|securemode=2,signmethod=<m>[,timestamp=<t>]|`
# (securemode=2: TLS, direct), username `<dn>&<pk>`, password the HMAC of
# `clientId<id>deviceName<dn>productKey<pk>[timestamp<t>]` with the DeviceSecret, lowercase hex.

DIRECT_SIGN_METHOD = "hmacsha256"
SECURE_MODE_TLS = 2
# <id 64>|securemode=2,signmethod=hmacsha256,timestamp=<20 digits>| = 131 characters.
MAX_MQTT_CLIENT_ID_LEN = (MAX_CLIENT_ID_LEN + len("|securemode=2,signmethod=hmacsha256")
                          + len(",timestamp=") + 20 + len("|"))


@dataclass(frozen=True)
class MqttSign:
    """The AT+MCONFIG triple of a direct sign; `password` is a secret (`repr()` hides it)."""

    client_id: str
    username: str
    password: str = field(repr=False)


def mqtt_sign(identity: DeviceIdentity, method: str = DIRECT_SIGN_METHOD,
              timestamp_ms: int | None = None) -> MqttSign:
    """The direct-sign MQTT credentials. The timestamp (Unix ms, signed and in the clientId)
    lets the server refuse a replayed CONNECT; without one (no wall clock) it is left out of
    both, as the API allows. C: aliyun_mqtt_sign().

    ValueError as `auth_params`.
    """
    identity.validate()
    if not identity.registered:
        raise ValueError("device_secret must not be empty (register the device first)")
    _digest_for(method)
    _check_timestamp(timestamp_ms)
    client_id = identity.effective_client_id
    signed = {"clientId": client_id, "deviceName": identity.device_name,
              "productKey": identity.product_key}
    options = f"securemode={SECURE_MODE_TLS},signmethod={method}"
    if timestamp_ms is not None:
        signed["timestamp"] = str(timestamp_ms)
        options += f",timestamp={timestamp_ms}"
    return MqttSign(client_id=f"{client_id}|{options}|",
                    username=f"{identity.device_name}&{identity.product_key}",
                    password=sign(signed, identity.device_secret, method))


# --- endpoints and topics -----------------------------------------------------------------------


# An instance (opened since mid-2021) has endpoints of its own under this domain: the MQTT
# broker `<id>.mqtt.iothub.aliyuncs.com` and the device auth server `<id>.auth.iothub...`
# (Alibaba Cloud's "Manage the endpoint of an instance"; the auth server's form as its docs give
# it for /auth/bridge). The legacy public instance has none: `iot-auth.<region>` and
# `<pk>.iot-as-mqtt.<region>`.
INSTANCE_DOMAIN = "iothub.aliyuncs.com"


def auth_host(region: str = DEFAULT_REGION, instance_id: str | None = None) -> str:
    """The HTTPS pre-auth server: the instance's, else the region's (legacy)."""
    if instance_id:
        return f"{instance_id}.auth.{INSTANCE_DOMAIN}"
    return f"iot-auth.{region}.aliyuncs.com"


def auth_url(region: str = DEFAULT_REGION, instance_id: str | None = None) -> str:
    return f"https://{auth_host(region, instance_id)}/auth/devicename"


def register_url(region: str = DEFAULT_REGION) -> str:
    """Dynamic registration over HTTPS: the regional auth server for every kind of instance
    (Alibaba Cloud: "HTTPS动态注册的设备接入地址 iot-auth.${RegionId}.aliyuncs.com, 不区分公共实例和
    企业实例")."""
    return f"https://iot-auth.{region}.aliyuncs.com/auth/register/device"


def mqtt_host(product_key: str, region: str = DEFAULT_REGION,
              instance_id: str | None = None) -> str:
    """The MQTT broker: the instance's, else the legacy regional one of the product."""
    if instance_id:
        return f"{instance_id}.mqtt.{INSTANCE_DOMAIN}"
    return f"{product_key}.iot-as-mqtt.{region}.aliyuncs.com"


def topic_update(product_key: str, device_name: str) -> str:
    return f"/{product_key}/{device_name}/update"


def topic_update_error(product_key: str, device_name: str) -> str:
    return f"/{product_key}/{device_name}/update/error"


def topic_get(product_key: str, device_name: str) -> str:
    return f"/{product_key}/{device_name}/get"


def topic_user(product_key: str, device_name: str, name: str) -> str:
    return f"/{product_key}/{device_name}/user/{name}"


def resolve_topic(product_key: str, device_name: str, topic: str) -> str:
    """An absolute topic as is; a relative one (no leading "/") under "/{pk}/{dn}/".

    ValueError for an empty topic or one with a quote, CR, LF or NUL: it goes inside
    `AT+MSUB="…"` / `AT+MPUB="…"`, which have no escape for the topic. (Whether a topic may be
    published to at all is `payload.check_topic`'s decision.)
    """
    if not topic:
        raise ValueError("topic must not be empty")
    if any(c in topic for c in '"\r\n\x00'):
        raise ValueError("topic must not contain quotes, CR, LF or NUL")
    if topic.startswith("/"):
        return topic
    return f"/{product_key}/{device_name}/{topic}"


# --- the reply: what it says ---------------------------------------------------------------------


class ReplyReason(IntEnum):
    """What the reply scan found. C: aliyun_reply_reason_t."""

    OK = 0  # code 200 with a usable iotId and iotToken
    NOT_UTF8 = 1
    EMPTY = 2
    NOT_JSON = 3  # also: nested deeper than JSON_MAX_DEPTH
    NOT_OBJECT = 4
    NO_CODE = 5  # also: a code of more than 9 digits
    REFUSED = 6  # a code other than 200: the server said no (see `code`)
    NO_DATA = 7
    NO_IOT_ID = 8
    BAD_IOT_ID = 9
    NO_IOT_TOKEN = 10
    BAD_IOT_TOKEN = 11
    # The register reply (parse_register_reply).
    NO_DEVICE_SECRET = 12
    BAD_DEVICE_SECRET = 13


# What parse_auth_reply can answer (the register reply's own reasons are not among them).
AUTH_REPLY_REASONS = tuple(r for r in ReplyReason if r not in (
    ReplyReason.NO_DEVICE_SECRET, ReplyReason.BAD_DEVICE_SECRET))

_UNUSABLE = (f"(over {MAX_CREDENTIAL_LEN} bytes, or not printable ASCII, or holds a quote or "
             "backslash)")
REPLY_MESSAGES: dict[ReplyReason, str] = {
    ReplyReason.OK: "success",
    ReplyReason.NOT_UTF8: "reply is not UTF-8 text",
    ReplyReason.EMPTY: "reply is empty",
    ReplyReason.NOT_JSON: "reply is not valid JSON",
    ReplyReason.NOT_OBJECT: "reply is not a JSON object",
    ReplyReason.NO_CODE: "reply has no integer code",
    ReplyReason.REFUSED: "refused",  # rendered with its code: describe_auth_code
    ReplyReason.NO_DATA: "reply has code 200 but no data object",
    ReplyReason.NO_IOT_ID: "reply has code 200 but no iotId",
    ReplyReason.BAD_IOT_ID: "reply iotId is unusable " + _UNUSABLE,
    ReplyReason.NO_IOT_TOKEN: "reply has code 200 but no iotToken",
    ReplyReason.BAD_IOT_TOKEN: "reply iotToken is unusable " + _UNUSABLE,
    ReplyReason.NO_DEVICE_SECRET: "reply has code 200 but no deviceSecret",
    ReplyReason.BAD_DEVICE_SECRET: "reply deviceSecret is unusable " + _UNUSABLE,
}


def describe_auth_code(code: int) -> str:
    if code == AUTH_OK:
        return "success"
    if code == AUTH_UNPARSEABLE:
        return "unparseable reply"
    return AUTH_ERRORS.get(code, f"unexpected code {code}")


@dataclass(frozen=True)
class AuthReply:
    """The auth server's answer. `iot_token` is the MQTT password: `repr()` hides it.

    C: aliyun_auth_reply_t. Unless `reason` is OK, iot_id, iot_token and mqtt_host are empty.
    """

    code: int  # the server's code (at most 9 digits), or AUTH_UNPARSEABLE
    iot_id: str
    iot_token: str = field(repr=False)
    reason: ReplyReason = ReplyReason.OK
    mqtt_host: str | None = None  # data.resources.mqtt.host when usable
    mqtt_port: int | None = None  # data.resources.mqtt.port when usable (and the host is)

    @property
    def ok(self) -> bool:
        return (self.reason == ReplyReason.OK and self.code == AUTH_OK and bool(self.iot_id)
                and bool(self.iot_token))

    @property
    def message(self) -> str:
        """One line for a log or an error; never quotes the body (it may hold a partial token)."""
        if self.reason == ReplyReason.REFUSED:
            return describe_auth_code(self.code)
        return REPLY_MESSAGES[self.reason]


def mqtt_endpoint(identity: DeviceIdentity, reply: AuthReply | None = None) -> tuple[str, int]:
    """Where to AT+SSLMIPSTART: the host/port the reply named, else the instance's broker (with
    an instance id), else the legacy regional one."""
    host = (reply.mqtt_host if reply else None) or mqtt_host(
        identity.product_key, identity.region, identity.instance_id)
    port = (reply.mqtt_port if reply else None) or MQTT_PORT
    return host, port


# --- the reply: text ------------------------------------------------------------------------------
#
# The body must be strict UTF-8 (bytes.decode is the twin of the C's utf8_decode over the whole
# body); it is stripped of str.isspace() characters, then NULs, then whitespace again, and what is
# left must be one JSON object as Python's json module reads it. The scan below works on code
# points, as the C works on the code points it decodes.


def _is_space(cp: int) -> bool:
    """str.isspace(): the code points Python strips. C: is_python_space()."""
    return (0x09 <= cp <= 0x0D or 0x1C <= cp <= 0x20 or cp == 0x85 or cp == 0xA0 or cp == 0x1680
            or 0x2000 <= cp <= 0x200A or cp == 0x2028 or cp == 0x2029 or cp == 0x202F
            or cp == 0x205F or cp == 0x3000)


def _strip(text: str, start: int, end: int, nul: bool) -> tuple[int, int]:
    """str.strip() (nul=False) or str.strip("\\x00") (nul=True) on text[start:end], as bounds.

    C: strip()."""
    while start < end and ((ord(text[start]) == 0) if nul else _is_space(ord(text[start]))):
        start += 1
    while end > start and ((ord(text[end - 1]) == 0) if nul else _is_space(ord(text[end - 1]))):
        end -= 1
    return start, end


# --- the reply: what a JSON string is collected into ---------------------------------------------
#
# The scan reads strings as code points (escapes decoded) and hands each to a sink; the sink keeps
# what its field needs within a fixed buffer and notes whether the string could still be what the
# field accepts. That is how duplicate keys, escaped keys ("\u0063ode" is "code") and values too
# long for a buffer are judged exactly as the decoded string would be, without storing it.


class _SinkMode(IntEnum):
    SKIP = 0  # a value nobody needs: only validated
    TEXT = 1  # printable ASCII without " or \ kept in buf; anything else makes it unclean
    INT = 2  # integer text: surrounding whitespace, then -?[0-9]{1,9}


INT_TEXT_MAX = 10  # "-" and 9 digits


class _Sink:
    """C: sink_t, sink_start(), sink_put()."""

    __slots__ = ("buf", "cap", "clean", "count", "length", "mode", "trailing")

    def __init__(self, mode: _SinkMode, buf: bytearray | None, cap: int) -> None:
        self.mode = mode
        self.buf = buf  # TEXT / INT: at least `cap` bytes
        self.cap = cap
        self.length = 0  # bytes in buf
        self.count = 0  # code points seen
        self.clean = True  # every code point fitted and was allowed
        self.trailing = False  # INT: in the whitespace after the digits

    def put(self, cp: int) -> None:
        self.count += 1
        if self.mode == _SinkMode.SKIP:
            return
        if self.mode == _SinkMode.TEXT:
            if cp < 0x20 or cp > 0x7E or cp == 0x22 or cp == 0x5C or self.length >= self.cap:
                self.clean = False
                return
        else:
            if _is_space(cp):
                self.trailing = self.length > 0  # leading space is stripped, trailing ends it
                return
            if self.trailing or self.length >= self.cap or cp > 0x7E:
                self.clean = False  # text after the trailing space, too long, or not ASCII
                return
        if self.clean and self.buf is not None:
            self.buf[self.length] = cp
            self.length += 1

    def text(self) -> str:
        return "" if self.buf is None else self.buf[:self.length].decode("ascii")


def _parse_int_text(buf: bytearray, length: int) -> int | None:
    """-?[0-9]{1,9} in buf[:length] (so it fits an int32_t); None when not. C: parse_int_text()."""
    i = 0
    negative = length > 0 and buf[0] == 0x2D
    if negative:
        i = 1
    if length == i or length - i > 9:
        return None
    n = 0
    while i < length:
        if not 0x30 <= buf[i] <= 0x39:
            return None
        n = n * 10 + (buf[i] - 0x30)
        i += 1
    return -n if negative else n


# --- the reply: the JSON reader ------------------------------------------------------------------
#
# Python's json module, read without recursion: the open containers are a stack of bytes (one per
# level, JSON_MAX_DEPTH of them). It accepts what json.loads accepts, Python's extensions included
# (NaN, Infinity, -Infinity, unpaired \uD800 surrogates), and rejects what it rejects (control
# characters in strings, leading zeros, trailing commas, an integer of more than 4300 digits),
# with two bounds json lacks: nesting deeper than JSON_MAX_DEPTH is not JSON, and a code of more
# than 9 digits is no integer code.
#
# Which value is which field follows from the path: the top object's "code" and "data", data's
# "iotId", "iotToken" and "resources", resources' "mqtt", mqtt's "host" and "port". A key starts
# its field afresh, so the last duplicate wins, as in a Python dict.

PY_INT_MAX_DIGITS = 4300  # sys.get_int_max_str_digits(): json.loads refuses longer integers


class _Field(IntEnum):
    NONE = 0
    ROOT = 1
    CODE = 2
    DATA = 3
    IOT_ID = 4
    IOT_TOKEN = 5
    RESOURCES = 6
    MQTT = 7
    HOST = 8
    PORT = 9
    DEVICE_SECRET = 10  # the register reply's data.deviceSecret


class _Role(IntEnum):
    """What an object is, by the key that holds it (its fields are looked up by this)."""

    OTHER = 0
    TOP = 1
    DATA = 2
    RESOURCES = 3
    MQTT = 4


_FRAME_ARRAY = 0x80  # a stack byte: the role, plus this bit for an array


class _Found(IntEnum):
    ABSENT = 0
    USABLE = 1
    UNUSABLE = 2


_FIELDS: tuple[tuple[_Role, str, _Field], ...] = (
    (_Role.TOP, "code", _Field.CODE), (_Role.TOP, "data", _Field.DATA),
    (_Role.DATA, "iotId", _Field.IOT_ID), (_Role.DATA, "iotToken", _Field.IOT_TOKEN),
    (_Role.DATA, "resources", _Field.RESOURCES), (_Role.RESOURCES, "mqtt", _Field.MQTT),
    (_Role.MQTT, "host", _Field.HOST), (_Role.MQTT, "port", _Field.PORT),
    (_Role.DATA, "deviceSecret", _Field.DEVICE_SECRET),
)
_KEY_MAX = 15  # longer than any key of _FIELDS
_ESCAPES: dict[str, int] = {'"': 0x22, "\\": 0x5C, "/": 0x2F, "b": 0x08, "f": 0x0C, "n": 0x0A,
                            "r": 0x0D, "t": 0x09}


class _Scan:
    """The scan's state, and the fixed buffers the credentials and host are collected into.

    C: scan_t plus the string fields of aliyun_auth_reply_t."""

    __slots__ = ("code", "data_is_object", "device_secret", "device_secret_found", "end",
                 "has_code", "host", "host_ok", "iot_id", "iot_id_found", "iot_token",
                 "iot_token_found", "port", "port_ok", "pos", "root_is_object", "text")

    def __init__(self, text: str, start: int, end: int) -> None:
        self.text = text
        self.pos = start
        self.end = end
        self.root_is_object = False
        self.has_code = False  # code is an integer (json int or int text) that fits
        self.code = 0
        self.data_is_object = False
        self.iot_id_found = _Found.ABSENT
        self.iot_token_found = _Found.ABSENT
        self.host_ok = False
        self.port_ok = False
        self.port = 0
        self.iot_id = _Sink(_SinkMode.TEXT, bytearray(MAX_CREDENTIAL_LEN), MAX_CREDENTIAL_LEN)
        self.iot_token = _Sink(_SinkMode.TEXT, bytearray(MAX_CREDENTIAL_LEN),
                               MAX_CREDENTIAL_LEN)
        self.host = _Sink(_SinkMode.TEXT, bytearray(MAX_HOST_LEN), MAX_HOST_LEN)
        self.device_secret_found = _Found.ABSENT
        self.device_secret = _Sink(_SinkMode.TEXT, bytearray(MAX_CREDENTIAL_LEN),
                                   MAX_CREDENTIAL_LEN)

    def at(self, ch: str) -> bool:
        return self.pos < self.end and self.text[self.pos] == ch

    def at_digit(self) -> bool:
        return self.pos < self.end and "0" <= self.text[self.pos] <= "9"

    def skip_space(self) -> None:
        """JSON's whitespace. C: skip_json_space()."""
        while self.pos < self.end and self.text[self.pos] in " \t\n\r":
            self.pos += 1

    def take(self, word: str) -> bool:
        """C: take_literal()."""
        if not self.text.startswith(word, self.pos, self.end):
            return False
        self.pos += len(word)
        return True


def _take_hex4(s: _Scan) -> int:
    """The 4 hex digits of a \\u escape (the "\\u" already taken); -1 when not. C: take_hex4()."""
    if s.end - s.pos < 4:
        return -1
    value = 0
    for i in range(4):
        digit = hex_value(ord(s.text[s.pos + i]))
        if digit < 0:
            return -1
        value = value << 4 | digit
    s.pos += 4
    return value


def _read_string(s: _Scan, sink: _Sink) -> bool:
    """A JSON string at s.pos (its opening quote), its code points into `sink`. A \\uXXXX escape
    is passed on as the code unit it names, without joining surrogate pairs as json does: every
    sink refuses anything outside printable ASCII, a pair as much as its halves, so the verdict is
    the same. C: read_string()."""
    s.pos += 1  # the opening quote
    while True:
        if s.pos >= s.end:
            return False  # unterminated
        ch = s.text[s.pos]
        s.pos += 1
        if ch == '"':
            return True
        if ord(ch) < 0x20:
            return False  # json's strict mode: no raw control characters
        if ch != "\\":
            sink.put(ord(ch))
            continue
        if s.pos >= s.end:
            return False
        escape = s.text[s.pos]
        s.pos += 1
        # -1: too few hex digits, or an escape json does not know
        cp = _take_hex4(s) if escape == "u" else _ESCAPES.get(escape, -1)
        if cp < 0:
            return False
        sink.put(cp)


def _read_number(s: _Scan) -> tuple[bool, int | None]:
    """A JSON number (or -Infinity) at s.pos: (valid, its value if an integer of at most 9
    digits). json's grammar: -?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][-+]?[0-9]+)?  C: read_number()."""
    negative = False
    fraction = False
    digits = 0
    n = 0
    if s.at("-"):
        s.pos += 1
        negative = True
        if s.take("Infinity"):
            return True, None
    if s.at("0"):
        s.pos += 1
        digits = 1
    else:
        while s.at_digit():
            if digits < 9:
                n = n * 10 + (ord(s.text[s.pos]) - 0x30)
            digits += 1
            s.pos += 1
    if digits == 0:
        return False, None
    if s.at("."):
        s.pos += 1
        if not s.at_digit():
            return False, None
        while s.at_digit():
            s.pos += 1
        fraction = True
    if s.at("e") or s.at("E"):
        s.pos += 1
        if s.at("+") or s.at("-"):
            s.pos += 1
        if not s.at_digit():
            return False, None
        while s.at_digit():
            s.pos += 1
        fraction = True
    if fraction:
        return True, None  # a float: never an integer code or port
    if digits > PY_INT_MAX_DIGITS:
        return False, None  # json.loads refuses it
    if digits > 9:
        return True, None
    return True, -n if negative else n


def _field_of(role: _Role, key: _Sink) -> _Field:
    """The field a key names inside an object of `role`. C: field_of()."""
    if not key.clean:
        return _Field.NONE
    name = key.text()
    for field_role, field_key, found in _FIELDS:
        if field_role == role and field_key == name:
            return found
    return _Field.NONE


def _forget_field(s: _Scan, which: _Field) -> None:
    """A key was read: what its value held before no longer counts (the last duplicate wins).

    C: forget_field()."""
    if which == _Field.CODE:
        s.has_code = False
    elif which == _Field.DATA:
        s.data_is_object = False
        s.iot_id_found = s.iot_token_found = s.device_secret_found = _Found.ABSENT
        s.host_ok = s.port_ok = False
    elif which == _Field.IOT_ID:
        s.iot_id_found = _Found.ABSENT
    elif which == _Field.IOT_TOKEN:
        s.iot_token_found = _Found.ABSENT
    elif which == _Field.DEVICE_SECRET:
        s.device_secret_found = _Found.ABSENT
    elif which in (_Field.RESOURCES, _Field.MQTT):
        s.host_ok = s.port_ok = False
    elif which == _Field.HOST:
        s.host_ok = False
    elif which == _Field.PORT:
        s.port_ok = False


def _is_hostname(host: bytearray, length: int) -> bool:
    """[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])? (the sink bounds the length). C: is_hostname()."""
    if length == 0 or not _is_alnum(host[0]) or not _is_alnum(host[length - 1]):
        return False
    return all(_is_alnum(c) or c in (0x2E, 0x2D) for c in host[:length])


def _credential_found(sink: _Sink) -> _Found:
    """"" is absent; over MAX_CREDENTIAL_LEN bytes or a disallowed character is unusable."""
    if sink.count == 0:
        return _Found.ABSENT
    return _Found.USABLE if sink.clean else _Found.UNUSABLE


def _read_string_value(s: _Scan, which: _Field) -> bool:
    """A string value for `which`: collected into its buffer, or validated only.

    C: read_string_value()."""
    if which in (_Field.CODE, _Field.PORT):
        sink = _Sink(_SinkMode.INT, bytearray(INT_TEXT_MAX), INT_TEXT_MAX)
    elif which == _Field.IOT_ID:
        sink = s.iot_id = _Sink(_SinkMode.TEXT, s.iot_id.buf, MAX_CREDENTIAL_LEN)
    elif which == _Field.IOT_TOKEN:
        sink = s.iot_token = _Sink(_SinkMode.TEXT, s.iot_token.buf, MAX_CREDENTIAL_LEN)
    elif which == _Field.DEVICE_SECRET:
        sink = s.device_secret = _Sink(_SinkMode.TEXT, s.device_secret.buf, MAX_CREDENTIAL_LEN)
    elif which == _Field.HOST:
        sink = s.host = _Sink(_SinkMode.TEXT, s.host.buf, MAX_HOST_LEN)
    else:
        sink = _Sink(_SinkMode.SKIP, None, 0)
    if not _read_string(s, sink):
        return False
    if which in (_Field.CODE, _Field.PORT):
        assert sink.buf is not None
        value = _parse_int_text(sink.buf, sink.length) if sink.clean else None
        if which == _Field.CODE:
            s.has_code, s.code = value is not None, value or 0
        else:
            s.port_ok, s.port = value is not None, value or 0
    elif which == _Field.IOT_ID:
        s.iot_id_found = _credential_found(sink)
    elif which == _Field.IOT_TOKEN:
        s.iot_token_found = _credential_found(sink)
    elif which == _Field.DEVICE_SECRET:
        s.device_secret_found = _credential_found(sink)
    elif which == _Field.HOST:
        assert sink.buf is not None
        s.host_ok = sink.clean and _is_hostname(sink.buf, sink.length)
    return True


def _read_scalar(s: _Scan, which: _Field) -> bool:
    """A scalar value (anything but an object or array) for `which`. C: read_scalar()."""
    if s.at('"'):
        return _read_string_value(s, which)
    if s.take("true") or s.take("false") or s.take("null") or s.take("NaN") or \
            s.take("Infinity"):
        return True  # none of them is an integer (True is not) or a string
    valid, value = _read_number(s)
    if not valid:
        return False
    if which == _Field.CODE:
        s.has_code, s.code = value is not None, value or 0
    elif which == _Field.PORT:
        s.port_ok, s.port = value is not None, value or 0
    return True


def _read_key(s: _Scan, role: _Role) -> _Field | None:
    """An object's key and its colon: the field the value that follows is; None when it is no
    key. C: read_key()."""
    s.skip_space()
    if not s.at('"'):
        return None  # a key must be a string (and no trailing comma)
    key = _Sink(_SinkMode.TEXT, bytearray(_KEY_MAX), _KEY_MAX)
    if not _read_string(s, key):
        return None
    which = _field_of(role, key)
    _forget_field(s, which)
    s.skip_space()
    if not s.at(":"):
        return None
    s.pos += 1
    return which


def _role_of(which: _Field) -> _Role:
    """The role an object gets from the field it is the value of. C: role_of()."""
    if which == _Field.ROOT:
        return _Role.TOP
    if which == _Field.DATA:
        return _Role.DATA
    if which == _Field.RESOURCES:
        return _Role.RESOURCES
    if which == _Field.MQTT:
        return _Role.MQTT
    return _Role.OTHER


def _read_document(s: _Scan) -> bool:
    """The whole document: one value, then only whitespace. C: read_document()."""
    stack = bytearray(JSON_MAX_DEPTH)
    depth = 0
    which: _Field | None = _Field.ROOT
    while True:
        # A value for `which`.
        assert which is not None
        s.skip_space()
        if s.at("{") or s.at("["):
            array = s.at("[")
            role = _Role.OTHER if array else _role_of(which)
            if depth == JSON_MAX_DEPTH:
                return False
            if not array:
                if which == _Field.ROOT:
                    s.root_is_object = True
                elif which == _Field.DATA:
                    s.data_is_object = True
            stack[depth] = role | (_FRAME_ARRAY if array else 0)
            depth += 1
            s.pos += 1
            s.skip_space()
            if not s.at("]" if array else "}"):
                which = _Field.NONE if array else _read_key(s, role)
                if which is None:
                    return False
                continue  # the container's first value
            s.pos += 1
            depth -= 1  # empty: closed at once
        elif not _read_scalar(s, which):
            return False

        # After a value: a comma starts the next one, a bracket closes containers.
        while True:
            s.skip_space()
            if depth == 0:
                return s.pos == s.end  # json's "Extra data" otherwise
            frame = stack[depth - 1]
            if s.at(","):
                s.pos += 1
                which = _Field.NONE if frame & _FRAME_ARRAY else _read_key(s, _Role(frame))
                if which is None:
                    return False
                break
            if not s.at("]" if frame & _FRAME_ARRAY else "}"):
                return False
            s.pos += 1
            depth -= 1


def _failed(code: int, reason: ReplyReason) -> AuthReply:
    """A reply that is not OK: a partial token never lingers in it. C: judge()."""
    return AuthReply(code=code, iot_id="", iot_token="", reason=reason)


def _scan_reply(body: bytes | bytearray | memoryview) -> tuple[_Scan | None, int, ReplyReason]:
    """The bounded scan of a JSON reply, up to the verdict every reply shares: (the scan, its
    code, OK) when the body is an object with code 200 and a data object; (None, the code,
    why not) otherwise. Never raises. C: the first half of aliyun_parse_auth_reply()."""
    try:
        text = bytes(body).decode("utf-8")
    except (UnicodeDecodeError, TypeError, ValueError):
        return None, AUTH_UNPARSEABLE, ReplyReason.NOT_UTF8
    start, end = _strip(text, 0, len(text), nul=False)
    start, end = _strip(text, start, end, nul=True)
    start, end = _strip(text, start, end, nul=False)
    if start == end:
        return None, AUTH_UNPARSEABLE, ReplyReason.EMPTY

    s = _Scan(text, start, end)
    if not _read_document(s):
        return None, AUTH_UNPARSEABLE, ReplyReason.NOT_JSON
    if not s.root_is_object:
        return None, AUTH_UNPARSEABLE, ReplyReason.NOT_OBJECT
    if not s.has_code:
        return None, AUTH_UNPARSEABLE, ReplyReason.NO_CODE
    if s.code != AUTH_OK:
        return None, s.code, ReplyReason.REFUSED
    if not s.data_is_object:
        return None, s.code, ReplyReason.NO_DATA
    return s, s.code, ReplyReason.OK


def parse_auth_reply(body: bytes | bytearray | memoryview) -> AuthReply:
    """Scan the JSON the auth server returned (the +HTTPREAD data) for code, data.iotId,
    data.iotToken and data.resources.mqtt.host/port. Never raises; reads at most the body.

    Anything not shaped like `{"code":…, "data":{"iotId":…, "iotToken":…}, …}` yields code -1 (or
    the code that was there) with empty iot_id/iot_token and the `reason`; `ok` is then False.
    C: aliyun_parse_auth_reply(), the same verdict for every body.
    """
    s, code, reason = _scan_reply(body)
    if s is None:
        return _failed(code, reason)
    if s.iot_id_found != _Found.USABLE:
        return _failed(s.code, ReplyReason.NO_IOT_ID if s.iot_id_found == _Found.ABSENT
                       else ReplyReason.BAD_IOT_ID)
    if s.iot_token_found != _Found.USABLE:
        return _failed(s.code, ReplyReason.NO_IOT_TOKEN if s.iot_token_found == _Found.ABSENT
                       else ReplyReason.BAD_IOT_TOKEN)
    # A port without its host means nothing.
    host = s.host.text() if s.host_ok else None
    port = s.port if host is not None and s.port_ok and 0 < s.port < 65536 else None
    return AuthReply(code=s.code, iot_id=s.iot_id.text(), iot_token=s.iot_token.text(),
                     reason=ReplyReason.OK, mqtt_host=host, mqtt_port=port)


@dataclass(frozen=True)
class RegisterReply:
    """The register server's answer. `device_secret` is a secret: `repr()` hides it; it is ""
    unless `ok`. C: aliyun_register_reply_t."""

    code: int  # the server's code (at most 9 digits), or AUTH_UNPARSEABLE
    device_secret: str = field(repr=False)
    reason: ReplyReason = ReplyReason.OK

    @property
    def ok(self) -> bool:
        return self.reason == ReplyReason.OK and self.code == AUTH_OK and bool(self.device_secret)

    @property
    def message(self) -> str:
        """One line; never quotes the body (it may hold the secret)."""
        if self.reason == ReplyReason.REFUSED:
            return f"refused (code {self.code})"
        return REPLY_MESSAGES[self.reason]


def parse_register_reply(body: bytes | bytearray | memoryview) -> RegisterReply:
    """Scan the /auth/register/device reply for code and data.deviceSecret, with the same
    bounded scan as the auth reply (the same buffers, the same limits: a secret over
    MAX_CREDENTIAL_LEN bytes, or with a character that could not travel inside a quoted AT
    argument, is unusable). Never raises. C: aliyun_parse_register_reply()."""
    s, code, reason = _scan_reply(body)
    if s is None:
        return RegisterReply(code=code, device_secret="", reason=reason)
    if s.device_secret_found != _Found.USABLE:
        return RegisterReply(code=code, device_secret="", reason=(
            ReplyReason.NO_DEVICE_SECRET if s.device_secret_found == _Found.ABSENT
            else ReplyReason.BAD_DEVICE_SECRET))
    secret = s.device_secret.text()
    # It must also be a DeviceSecret the identity takes (no '), or every sign made with it
    # would be refused (a ValueError inside the tick).
    if not _text_matches(secret, _is_secret_char, 1, len(secret)):
        return RegisterReply(code=code, device_secret="", reason=ReplyReason.BAD_DEVICE_SECRET)
    return RegisterReply(code=code, device_secret=secret)
