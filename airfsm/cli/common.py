"""What the `airfsm` subcommands share: option types, the connection flags, the secret.

Light on purpose (no controller, no logging stack, no simulator): `airfsm publish` loads this
and its own module, nothing more.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping

from airfsm.core.aliyun import SIGN_METHODS
from airfsm.core.at import MAX_TIMEOUT_MS
from airfsm.host.config import STANDARD_BAUDS
from airfsm.host.errors import HostError

DEFAULT_BAUD = 115200
# A deadline is compared by the sign of its 32-bit ms difference: one further off would wrap
# into the past (2200000 s exited at once). 2147483 s is about 24.8 days.
MAX_TIMEOUT_S = MAX_TIMEOUT_MS // 1000


def timeout_seconds(text: str) -> float:
    """argparse type of --timeout: a finite number of seconds the wrap-safe clock can hold."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected more than 0 and at most {MAX_TIMEOUT_S} seconds (~24 days)")
    return value


def baud_rate(text: str) -> int:
    """argparse type of --baud: one of the standard UART rates."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value not in STANDARD_BAUDS:
        raise argparse.ArgumentTypeError(
            f"{value} is not a standard rate: one of {', '.join(map(str, STANDARD_BAUDS))}")
    return value


def add_connection_options(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The flags `connect` and `run` share (the gateway's config file has a key for each)."""
    p.add_argument("--port", required=required,
                   help="serial port: /dev/ttyUSB0, a pty path, socket://host:port, rfc2217://")
    p.add_argument("--product-key", required=required, help="Alibaba Cloud ProductKey")
    p.add_argument("--device-name", required=required, help="Alibaba Cloud DeviceName")
    p.add_argument("--device-secret",
                   help="DeviceSecret (better: the AIRFSM_DEVICE_SECRET environment variable, "
                        "which other users cannot read from the process list)")
    p.add_argument("--region", default=None, help="cn-shanghai (default), ap-southeast-1, ...")
    p.add_argument("--apn", default=None,
                   help='APN of the SIM (default CMIOT; "" for the network\'s default APN)')
    p.add_argument("--baud", type=baud_rate, default=None,
                   help=f"UART speed (default {DEFAULT_BAUD})")
    p.add_argument("--client-id", default=None, help="MQTT clientId (default: the DeviceName)")
    p.add_argument("--sign-method", default=None, choices=SIGN_METHODS,
                   help="auth sign method (default hmacmd5)")
    p.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"))


def secret_from(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    secret = args.device_secret or env.get("AIRFSM_DEVICE_SECRET", "")
    if not secret:
        raise HostError("missing DeviceSecret: pass --device-secret or set AIRFSM_DEVICE_SECRET")
    return str(secret)


def log_level(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    """--log-level, else AIRFSM_LOG_LEVEL, else warning: for the commands that log."""
    return getattr(args, "log_level", None) or env.get("AIRFSM_LOG_LEVEL") or "warning"
