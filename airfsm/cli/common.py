"""What the `airfsm` subcommands share: option types, the connection flags, the secret.

Light on purpose (no controller, no logging stack, no simulator): `airfsm publish` loads this
and its own module, nothing more.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airfsm.core.aliyun import SIGN_METHODS
from airfsm.host.config import (
    MAX_TIMEOUT_S,
    STANDARD_BAUDS,
    ConfigError,
    GatewayConfig,
    load_config_sources,
)
from airfsm.host.errors import HostError
from airfsm.host.redact import redact

DEFAULT_BAUD = 115200
# A deadline is compared by the sign of its 32-bit ms difference: one further off would wrap
# into the past (2200000 s exited at once): timeout_seconds() takes at most MAX_TIMEOUT_S.


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
    p.add_argument("--product-secret", default=None,
                   help="ProductSecret: register the device once and keep its DeviceSecret in "
                        "the data directory (better: AIRFSM_PRODUCT_SECRET)")
    p.add_argument("--instance-id", default=None,
                   help="the instance's id (iot-...): its own auth server and MQTT broker")
    p.add_argument("--auth", default=None, choices=("https", "mqtt-sign"),
                   help="https: pre-auth for an iotToken (default); mqtt-sign: sign the MQTT "
                        "CONNECT itself")
    p.add_argument("--region", default=None, help="cn-shanghai (default), ap-southeast-1, ...")
    p.add_argument("--apn", default=None,
                   help='APN of the SIM (default CMIOT; "" for the network\'s default APN)')
    p.add_argument("--baud", type=baud_rate, default=None,
                   help=f"UART speed (default {DEFAULT_BAUD})")
    p.add_argument("--client-id", default=None, help="MQTT clientId (default: the DeviceName)")
    p.add_argument("--sign-method", default=None, choices=SIGN_METHODS,
                   help="auth sign method (default hmacmd5)")
    p.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"))


# The settings every command that talks to the module takes as flags (config.flag(key)).
CONNECTION_KEYS = ("port", "product_key", "device_name", "device_secret", "product_secret",
                   "instance_id", "auth", "region", "apn", "baud", "client_id", "sign_method",
                   "log_level")


def config_path(args: argparse.Namespace, env: Mapping[str, str]) -> Path | None:
    """--config, else $AIRFSM_CONFIG, else no file."""
    given = getattr(args, "config", None) or env.get("AIRFSM_CONFIG") or None
    return Path(given).expanduser() if given else None


def load_settings(args: argparse.Namespace, env: Mapping[str, str], keys: tuple[str, ...],
                  **more: Any) -> tuple[GatewayConfig, dict[str, str]]:
    """The configuration `run`, `connect` and `config check` share: the config file, then the
    `AIRFSM_*` environment (and a systemd credential), then the flags of `keys` and `more`
    (field name -> value, None: not given). HostError (exit 2) with the key's name."""
    overrides = {key: getattr(args, key, None) for key in keys}
    overrides.update(more)
    try:
        return load_config_sources(config_path(args, env), env, overrides)
    except ConfigError as exc:
        raise HostError(f"configuration: {redact(str(exc))}") from None


def secret_from(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    secret = args.device_secret or env.get("AIRFSM_DEVICE_SECRET", "")
    if not secret:
        raise HostError("missing DeviceSecret: pass --device-secret or set AIRFSM_DEVICE_SECRET")
    return str(secret)


# `connect`, `demo` and `sim` show what happens on stdout: their log stays at warning unless a
# level is asked for (`run` logs at info, GatewayConfig's default). docs/GATEWAY.md says so.
DISPLAY_LOG_LEVEL = "warning"


def log_level(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    """--log-level, else AIRFSM_LOG_LEVEL, else warning: for `demo` and `sim`."""
    return getattr(args, "log_level", None) or env.get("AIRFSM_LOG_LEVEL") or DISPLAY_LOG_LEVEL
