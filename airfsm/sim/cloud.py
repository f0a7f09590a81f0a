"""The Alibaba Cloud side of the device auth, as the simulated server checks it.

The device side (sign, form, reply scan) is `airfsm.core.aliyun`, the code an MCU runs; this is
what only the cloud needs: decoding the posted form and verifying its sign against the
DeviceSecret the server holds. Host code: it may use `urllib` and raise.
"""

from __future__ import annotations

import hmac
from urllib.parse import unquote

from airfsm.core.aliyun import DEFAULT_SIGN_METHOD, SIGN_METHODS, sign

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
