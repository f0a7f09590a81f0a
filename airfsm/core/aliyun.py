"""Alibaba Cloud IoT "one device, one secret" (一机一密) HTTPS pre-auth. The C twin is `aliyun.c`.

The device POSTs a form to `https://iot-auth.<region>.aliyuncs.com/auth/devicename`, signed with
its DeviceSecret, and gets back an iotId (MQTT username) and an iotToken (MQTT password, valid 7
days). This module builds that form, parses the reply, names endpoints and topics, and (for the
simulator) verifies a form. It is pure: no I/O, no logging, no clock. The controller registers
secrets with `airfsm.host.log` and decides what to do with a refusal.

Everything here that ends up inside an AT command (`AT+MCONFIG="…"`, `AT+SSLMIPSTART="…"`,
`AT+MSUB="…"`) is checked to be free of quotes and line breaks, so a hostile or broken reply can
never inject a command.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

__all__ = [
    "AUTH_ERRORS",
    "DEFAULT_REGION",
    "MQTT_PORT",
    "SIGN_METHODS",
    "AuthReply",
    "DeviceIdentity",
    "auth_body",
    "auth_host",
    "auth_params",
    "auth_url",
    "describe_auth_code",
    "mqtt_endpoint",
    "mqtt_host",
    "parse_auth_form",
    "parse_auth_reply",
    "resolve_topic",
    "sign",
    "topic_get",
    "topic_update",
    "topic_update_error",
    "topic_user",
    "verify_auth_body",
]

SIGN_METHODS = ("hmacmd5", "hmacsha1", "hmacsha256")
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

# AT+MCONFIG takes each field quoted, ≤ 256 bytes, with no escape mechanism.
MAX_CREDENTIAL_LEN = 256
MAX_HOST_LEN = 253

_PRODUCT_KEY = re.compile(r"[A-Za-z0-9]{1,64}")
_DEVICE_NAME = re.compile(r"[A-Za-z0-9_.@:\-]{4,32}")
_CLIENT_ID = re.compile(r"[A-Za-z0-9_.@:\-]{0,64}")
_REGION = re.compile(r"[a-z0-9\-]{1,64}")
_SECRET = re.compile(r"[\x20-\x7e]+")  # printable ASCII; quotes rejected separately
_INT_TEXT = re.compile(r"-?[0-9]{1,9}")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?")
# iotId / iotToken: opaque, but they go inside AT+MCONFIG="…": printable, no quote, no backslash.
_CREDENTIAL = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]+")


def _check(name: str, value: object, pattern: re.Pattern[str], rule: str) -> None:
    """ValueError naming the field and the rule; the value itself is never echoed (it might be a
    secret pasted into the wrong field)."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    if not pattern.fullmatch(value):
        raise ValueError(f"{name} must be {rule} (got {len(value)} characters)")


@dataclass(frozen=True)
class DeviceIdentity:
    """The device triple plus where it lives. `repr()` never shows the secret."""

    product_key: str
    device_name: str
    device_secret: str = field(repr=False)
    region: str = DEFAULT_REGION
    client_id: str | None = None

    @property
    def effective_client_id(self) -> str:
        """The id that is signed and used for MQTT: `client_id`, or the device name."""
        return self.client_id or self.device_name

    def validate(self) -> None:
        """Raise ValueError (one line, naming the field, never the secret) if unusable."""
        _check("product_key", self.product_key, _PRODUCT_KEY, "1-64 letters or digits")
        _check(
            "device_name", self.device_name, _DEVICE_NAME,
            "4-32 characters of letters, digits and _ . @ : -",
        )
        secret = self.device_secret
        if not isinstance(secret, str):
            raise ValueError(f"device_secret must be a string, not {type(secret).__name__}")
        if not secret:
            raise ValueError("device_secret must not be empty")
        if not _SECRET.fullmatch(secret) or '"' in secret or "'" in secret:
            raise ValueError(
                "device_secret must be printable ASCII without quotes, CR or LF"
            )
        _check("region", self.region, _REGION, "lowercase letters, digits and - (e.g. cn-shanghai)")
        if self.client_id is not None:
            _check(
                "client_id", self.client_id, _CLIENT_ID,
                "at most 64 characters of letters, digits and _ . @ : -",
            )


# --- signing ------------------------------------------------------------------------------------


def _digest_for(method: str) -> Callable[[], Any]:
    digest = _DIGESTS.get(method)
    if digest is None:
        expected = ", ".join(SIGN_METHODS)
        raise ValueError(f"unknown sign method {method!r}: expected one of {expected}")
    return digest


def sign(params: Mapping[str, str], device_secret: str, method: str = DEFAULT_SIGN_METHOD) -> str:
    """HMAC of every parameter except sign/signmethod/version/resources, sorted by name,
    concatenated as name+value with no separator; lowercase hex."""
    digest = _digest_for(method)
    text = "".join(
        name + params[name] for name in sorted(params) if name not in UNSIGNED_PARAMS
    )
    return hmac.new(device_secret.encode("utf-8"), text.encode("utf-8"), digest).hexdigest()


def auth_params(
    identity: DeviceIdentity,
    method: str = DEFAULT_SIGN_METHOD,
    timestamp_ms: int | None = None,
) -> dict[str, str]:
    """The auth form's parameters in the seed's order: productKey, sign, clientId, deviceName,
    then timestamp (if given), then signmethod (only when not hmacmd5, the server's default).

    Raises ValueError for an invalid identity, an unknown method or a negative timestamp.
    """
    identity.validate()
    _digest_for(method)
    signed: dict[str, str] = {
        "productKey": identity.product_key,
        "clientId": identity.effective_client_id,
        "deviceName": identity.device_name,
    }
    if timestamp_ms is not None:
        if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int) or timestamp_ms < 0:
            raise ValueError("timestamp_ms must be a non-negative integer")
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
    return params


def _form_encode(params: Mapping[str, str]) -> bytes:
    return "&".join(
        f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in params.items()
    ).encode("ascii")


def auth_body(
    identity: DeviceIdentity,
    method: str = DEFAULT_SIGN_METHOD,
    timestamp_ms: int | None = None,
) -> bytes:
    """The form-urlencoded POST body. Its `len()` is the n of `AT+HTTPDATA=<n>,<ms>`."""
    return _form_encode(auth_params(identity, method, timestamp_ms))


# --- endpoints and topics -----------------------------------------------------------------------


def auth_host(region: str = DEFAULT_REGION) -> str:
    return f"iot-auth.{region}.aliyuncs.com"


def auth_url(region: str = DEFAULT_REGION) -> str:
    return f"https://{auth_host(region)}/auth/devicename"


def mqtt_host(product_key: str, region: str = DEFAULT_REGION) -> str:
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
    `AT+MSUB="…"` / `AT+MPUB="…"`, which have no escape for the topic.
    """
    if not topic:
        raise ValueError("topic must not be empty")
    if any(c in topic for c in '"\r\n\x00'):
        raise ValueError("topic must not contain quotes, CR, LF or NUL")
    if topic.startswith("/"):
        return topic
    return f"/{product_key}/{device_name}/{topic}"


# --- the reply ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthReply:
    """The auth server's answer. `iot_token` is the MQTT password: `repr()` hides it."""

    code: int
    iot_id: str
    iot_token: str = field(repr=False)
    message: str
    mqtt_host: str | None = None
    mqtt_port: int | None = None

    @property
    def ok(self) -> bool:
        return self.code == AUTH_OK and bool(self.iot_id) and bool(self.iot_token)


def describe_auth_code(code: int) -> str:
    if code == AUTH_OK:
        return "success"
    if code == AUTH_UNPARSEABLE:
        return "unparseable reply"
    return AUTH_ERRORS.get(code, f"unexpected code {code}")


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _credential(data: Mapping[str, Any], name: str) -> str | None:
    """data[name] if it is a usable credential; "" if present but unusable; None if absent."""
    value = data.get(name)
    if not isinstance(value, str) or not value:
        return None
    if len(value.encode("utf-8")) > MAX_CREDENTIAL_LEN or not _CREDENTIAL.fullmatch(value):
        return ""
    return value


def _failed(code: int, message: str) -> AuthReply:
    return AuthReply(code=code, iot_id="", iot_token="", message=message)


def _mqtt_resource(data: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """data.resources.mqtt.{host,port} when present and usable inside AT+SSLMIPSTART."""
    resources = data.get("resources")
    mqtt = resources.get("mqtt") if isinstance(resources, dict) else None
    if not isinstance(mqtt, dict):
        return None, None
    host = mqtt.get("host")
    if not (isinstance(host, str) and len(host) <= MAX_HOST_LEN and _HOSTNAME.fullmatch(host)):
        return None, None  # a port without its host means nothing
    port = _as_int(mqtt.get("port"))
    if port is None or not 0 < port < 65536:
        port = None
    return host, port


def parse_auth_reply(body: bytes) -> AuthReply:
    """Parse the JSON the auth server returned (the +HTTPREAD data). Never raises.

    Anything not shaped like `{"code":…, "data":{"iotId":…, "iotToken":…}, "message":…}` yields
    code -1 (or the code that was there) with empty iot_id/iot_token and a message saying what was
    wrong; `ok` is then False. Messages never quote the body (it may hold a partial token).
    """
    try:
        text = bytes(body).decode("utf-8").strip().strip("\x00").strip()
    except (UnicodeDecodeError, TypeError, ValueError):
        return _failed(AUTH_UNPARSEABLE, "reply is not UTF-8 text")
    if not text:
        return _failed(AUTH_UNPARSEABLE, "reply is empty")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        return _failed(AUTH_UNPARSEABLE, f"reply is not valid JSON ({reason})")
    if not isinstance(doc, dict):
        return _failed(AUTH_UNPARSEABLE, "reply is not a JSON object")

    code = _as_int(doc.get("code"))
    raw_message = doc.get("message")
    message = " ".join(raw_message.split()) if isinstance(raw_message, str) else ""
    if code is None:
        return _failed(AUTH_UNPARSEABLE, "reply has no integer code")
    if code != AUTH_OK:
        return _failed(code, message or describe_auth_code(code))

    data = doc.get("data")
    if not isinstance(data, dict):
        return _failed(code, "reply has code 200 but no data object")
    iot_id = _credential(data, "iotId")
    iot_token = _credential(data, "iotToken")
    for name, value in (("iotId", iot_id), ("iotToken", iot_token)):
        if value is None:
            return _failed(code, f"reply has code 200 but no {name}")
        if not value:
            return _failed(
                code,
                f"reply {name} is unusable (over {MAX_CREDENTIAL_LEN} bytes, or not printable "
                "ASCII, or holds a quote or backslash)",
            )
    if iot_id is None or iot_token is None:  # unreachable; keeps the types narrow for mypy
        return _failed(code, "reply has code 200 but no credentials")
    host, port = _mqtt_resource(data)
    return AuthReply(
        code=code,
        iot_id=iot_id,
        iot_token=iot_token,
        message=message or "success",
        mqtt_host=host,
        mqtt_port=port,
    )


def mqtt_endpoint(identity: DeviceIdentity, reply: AuthReply | None = None) -> tuple[str, int]:
    """Where to AT+SSLMIPSTART: the host/port the reply named, else the regional default."""
    host = (reply.mqtt_host if reply else None) or mqtt_host(identity.product_key, identity.region)
    port = (reply.mqtt_port if reply else None) or MQTT_PORT
    return host, port


# --- the server side (the simulator) ------------------------------------------------------------


def parse_auth_form(body: bytes) -> dict[str, str]:
    """Decode a form-urlencoded auth body. ValueError (one line) when malformed or a name repeats.

    Strict on purpose: `+` is kept as `+` (our encoder writes spaces as %20) and every pair must
    have an `=`.
    """
    try:
        text = bytes(body).decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("body is not ASCII (values must be percent-encoded)") from None
    params: dict[str, str] = {}
    if not text:
        raise ValueError("body is empty")
    for pair in text.split("&"):
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError("body is not a form (a pair lacks name=value)")
        try:
            name = unquote(name, errors="strict")
            value = unquote(value, errors="strict")
        except UnicodeDecodeError:
            raise ValueError("body has a percent-encoding that is not UTF-8") from None
        if name in params:
            raise ValueError(f"parameter {name!r} appears twice")
        params[name] = value
    return params


REQUIRED_AUTH_PARAMS = ("productKey", "deviceName", "clientId", "sign")


def verify_auth_body(body: bytes, device_secret: str) -> tuple[bool, str]:
    """Server side: does `body` carry a valid sign for `device_secret`? Returns (ok, reason).

    The reason is one line and never contains the secret nor the expected sign.
    """
    try:
        params = parse_auth_form(body)
    except ValueError as exc:
        return False, str(exc)
    for name in REQUIRED_AUTH_PARAMS:
        if not params.get(name):
            return False, f"missing parameter {name}"
    method = params.get("signmethod", DEFAULT_SIGN_METHOD)
    if method not in _DIGESTS:
        return False, "unknown signmethod (expected one of " + ", ".join(SIGN_METHODS) + ")"
    expected = sign(params, device_secret, method)
    given = params["sign"]
    if not hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8")):
        return False, "sign mismatch"
    return True, "ok"
