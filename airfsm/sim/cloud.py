"""The Alibaba Cloud side of the device auth, as the simulated server checks it.

The device side (sign, form, reply scan) is `airfsm.core.aliyun`, the code an MCU runs; this is
what only the cloud needs: decoding the posted form and verifying its sign against the
DeviceSecret the server holds. Host code: it may use `urllib` and raise.
"""

from __future__ import annotations

import hmac
from urllib.parse import unquote

from airfsm.core.aliyun import DEFAULT_SIGN_METHOD, REGISTER_SIGN_PARAM, SIGN_METHODS, sign

REQUIRED_AUTH_PARAMS = ("productKey", "deviceName", "clientId", "sign")


def parse_auth_form(body: bytes) -> dict[str, str]:
    """Decode a form-urlencoded auth body. ValueError (one line) when malformed or a name repeats.

    Strict on purpose: `+` is kept as `+` (the device's encoder writes spaces as %20) and every
    pair must have an `=`.
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


def verify_auth_body(body: bytes, device_secret: str) -> tuple[bool, str]:
    """Does `body` carry a valid sign for `device_secret`? Returns (ok, reason).

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
    if method not in SIGN_METHODS:
        return False, "unknown signmethod (expected one of " + ", ".join(SIGN_METHODS) + ")"
    expected = sign(params, device_secret, method)
    given = params["sign"]
    if not hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8")):
        return False, "sign mismatch"
    return True, "ok"


REQUIRED_REGISTER_PARAMS = ("productKey", "deviceName", "random", "sign")


def verify_register_body(body: bytes, product_secret: str | None
                         ) -> tuple[bool, str, dict[str, str] | None]:
    """Does a /auth/register/device body carry a valid sign for `product_secret`?

    Returns (ok, reason, the form's parameters or None when it is no form). The sign covers
    `deviceName<dn>productKey<pk>random<random>`; `signMethod` names the HMAC (hmacmd5 when
    absent). The reason never contains a secret nor the expected sign.
    """
    try:
        params = parse_auth_form(body)
    except ValueError as exc:
        return False, str(exc), None
    for name in REQUIRED_REGISTER_PARAMS:
        if not params.get(name):
            return False, f"missing parameter {name}", params
    method = params.get(REGISTER_SIGN_PARAM, DEFAULT_SIGN_METHOD)
    if method not in SIGN_METHODS:
        return False, "unknown signMethod (expected one of " + ", ".join(SIGN_METHODS) + ")", \
            params
    if product_secret is None:
        return False, "dynamic registration is off", params
    signed = {name: params[name] for name in ("deviceName", "productKey", "random")}
    expected = sign(signed, product_secret, method)
    if not hmac.compare_digest(expected.encode("ascii"), params["sign"].encode("utf-8")):
        return False, "sign mismatch", params
    return True, "ok", params


def verify_mqtt_sign(client_id: str, username: str, password: str, product_key: str,
                     device_name: str, device_secret: str) -> tuple[bool, str, str | None]:
    """Is this a valid direct-sign MQTT CONNECT? Returns (ok, reason, the timestamp it carries,
    None when none).

    clientId `<id>|securemode=2,signmethod=<m>[,timestamp=<t>]|`, username `<dn>&<pk>`,
    password the HMAC of `clientId<id>deviceName<dn>productKey<pk>[timestamp<t>]`.
    """
    head, bar, rest = client_id.partition("|")
    if not bar or not rest.endswith("|") or not head:
        return False, "clientId is not id|options|", None
    options: dict[str, str] = {}
    for item in rest[:-1].split(","):
        key, eq, value = item.partition("=")
        if not eq or key in options:
            return False, "clientId options are not key=value pairs", None
        options[key] = value
    if options.get("securemode") != "2":
        return False, "securemode must be 2 (TLS, direct)", None
    method = options.get("signmethod", "")
    if method not in SIGN_METHODS:
        return False, "unknown signmethod", None
    if username != f"{device_name}&{product_key}":
        return False, "username is not deviceName&productKey", None
    timestamp = options.get("timestamp")
    signed = {"clientId": head, "deviceName": device_name, "productKey": product_key}
    if timestamp is not None:
        signed["timestamp"] = timestamp
    expected = sign(signed, device_secret, method)
    if not hmac.compare_digest(expected.encode("ascii"), password.encode("utf-8")):
        return False, "sign mismatch", timestamp
    return True, "ok", timestamp
