"""The `airfsm` command line.

Every failure a user can cause (bad arguments, a missing secret, a port that cannot be opened, a
module that will not come up) ends in one line on stderr and a distinct exit code, never a
traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Any, NoReturn, TextIO

from airfsm.core import aliyun
from airfsm.core.at import MAX_TIMEOUT_MS
from airfsm.core.codes import FailReason, State
from airfsm.core.controller import Controller
from airfsm.core.settings import Settings
from airfsm.core.timebase import ms_add, ms_diff
from airfsm.host import log, reasons
from airfsm.host.config import STANDARD_BAUDS
from airfsm.host.loop import monotonic_ms, run
from airfsm.host.serial import PortError, open_port


class Exit(IntEnum):
    OK = 0
    FAILURE = 1  # generic runtime failure (e.g. the demo did not complete)
    USAGE = 2  # bad arguments or configuration (argparse uses 2 as well)
    PORT = 3  # the port cannot be opened, or vanished during `connect`
    FIRMWARE = 4  # firmware older than V409
    CREDENTIALS = 5  # the auth server rejected the device
    TIMEOUT = 6  # not ONLINE within --timeout
    NO_RESPONSE = 7  # the module never answered AT
    INTERNAL = 70  # a bug (EX_SOFTWARE)


FAIL_EXIT = {  # why the machine ended in FAILED -> the exit code
    FailReason.FIRMWARE: Exit.FIRMWARE,
    FailReason.CREDENTIALS: Exit.CREDENTIALS,
    FailReason.NO_RESPONSE: Exit.NO_RESPONSE,
    FailReason.INTERNAL: Exit.INTERNAL,
}


class CliError(Exception):
    """A one-line message for the user and the exit code that goes with it."""

    def __init__(self, message: str, code: Exit = Exit.USAGE) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CliError(f"{self.prog}: {message}")


# ---------------------------------------------------------------------- shared options

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
    p.add_argument("--sign-method", default=None, choices=aliyun.SIGN_METHODS,
                   help="auth sign method (default hmacmd5)")
    p.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"))


def secret_from(args: argparse.Namespace, env: dict[str, str]) -> str:
    secret = args.device_secret or env.get("AIRFSM_DEVICE_SECRET", "")
    if not secret:
        raise CliError("missing DeviceSecret: pass --device-secret or set AIRFSM_DEVICE_SECRET")
    return str(secret)


def build_settings(args: argparse.Namespace, secret: str, **extra: Any) -> Settings:
    identity = aliyun.DeviceIdentity(
        product_key=args.product_key, device_name=args.device_name, device_secret=secret,
        region=args.region or aliyun.DEFAULT_REGION, client_id=args.client_id)
    # `--apn ""` is a choice (the network's default APN), not an omission
    settings = Settings(identity=identity, apn="CMIOT" if args.apn is None else args.apn,
                        sign_method=args.sign_method or aliyun.DEFAULT_SIGN_METHOD,
                        baud=args.baud or DEFAULT_BAUD, **extra)
    try:
        settings.validate()
    except ValueError as exc:
        raise CliError(f"bad configuration: {log.redact(str(exc))}") from None
    return settings


def open_module_port(url: str, baud: int) -> Any:
    try:
        return open_port(url, baud)
    except PortError as exc:
        raise CliError(str(exc), Exit.PORT) from None


class StageDisplay:
    """Shows the seven stages as they pass, with elapsed time (on a terminal)."""

    def __init__(self, out: TextIO, start_ms: int, clock: Callable[[], int] = monotonic_ms,
                 enabled: bool = True) -> None:
        self.out = out
        self.start_ms = start_ms
        self.clock = clock
        self.enabled = enabled
        self.controller: Controller | None = None

    def __call__(self, source: State, dest: State, trigger: str) -> None:
        if not self.enabled:
            return
        elapsed = ms_diff(self.clock(), self.start_ms) / 1000
        detail = ""
        c = self.controller
        if c is not None:
            if source == State.VERSION_CHECK and c.firmware:
                detail = f"  firmware {c.firmware}"
            elif source == State.ATTACH and dest == State.BEARER:
                detail = f"  signal {c.rssi}/31" if c.rssi != 99 else ""
            elif source == State.BEARER and c.ip:
                detail = f"  ip {c.ip}"
        if trigger == "done":
            self.out.write(f"[{elapsed:7.2f}s] {source.name:<13} ok{detail}\n")
        elif trigger != "retry":
            self.out.write(f"[{elapsed:7.2f}s] {source.name:<13} -> {dest.name} ({trigger})\n")
        if dest == State.ONLINE:
            self.out.write(f"[{elapsed:7.2f}s] ONLINE\n")
        self.out.flush()


def exit_for(controller: Controller) -> tuple[Exit, str]:
    """The exit code and one-line reason for a `connect`-style run."""
    if controller.online:
        return Exit.OK, "online"
    if controller.failed:
        code = FAIL_EXIT.get(controller.fail_reason, Exit.FAILURE)
        return code, reasons.fail_text(controller) or "failed"
    if controller.port_lost:
        return Exit.PORT, "the serial port vanished"
    step = controller.step_name()
    where = f"{controller.state.name}" + (f" ({step})" if step else "")
    last_error = reasons.last_error_text(controller)
    last = f"; last error: {last_error}" if last_error else ""
    return Exit.TIMEOUT, f"timed out in {where} after attempt {controller.attempt}{last}"


# ---------------------------------------------------------------------- commands


def cmd_connect(args: argparse.Namespace, env: dict[str, str]) -> Exit:
    secret = secret_from(args, env)
    settings = build_settings(args, secret, auth_attempts=args.auth_attempts)
    port = open_module_port(args.port, settings.baud)
    start = monotonic_ms()
    display = StageDisplay(sys.stdout, start, enabled=sys.stdout.isatty() or args.progress)
    controller = Controller(port, settings, now_ms=start, on_state=display,
                            log_hook=log.CORE_LOG)
    display.controller = controller
    deadline = ms_add(start, int(args.timeout * 1000)) if args.timeout else None
    try:
        run(controller, until=lambda: controller.online or controller.failed
            or controller.port_lost, deadline_ms=deadline)
    finally:
        port.close()
    code, reason = exit_for(controller)
    elapsed = ms_diff(monotonic_ms(), start) / 1000
    if code == Exit.OK:
        print(f"online in {elapsed:.1f} s: {settings.identity.product_key}/"
              f"{settings.identity.device_name} via {args.port}")
        return Exit.OK
    print(f"airfsm: {log.redact(reason)}", file=sys.stderr)
    return code


def cmd_sign(args: argparse.Namespace, env: dict[str, str]) -> Exit:
    secret = secret_from(args, env)
    identity = aliyun.DeviceIdentity(product_key=args.product_key, device_name=args.device_name,
                                     device_secret=secret, client_id=args.client_id)
    try:
        params = aliyun.auth_params(identity, args.sign_method)
        body = aliyun.auth_body(identity, args.sign_method)
    except ValueError as exc:
        raise CliError(f"bad configuration: {exc}") from None
    print(f"sign:   {params['sign']}")
    print(f"method: {args.sign_method}")
    print(f"body:   {body.decode('ascii')}")
    print(f"length: {len(body)}")
    print(f"AT command: AT+HTTPDATA={len(body)},20000")
    return Exit.OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="airfsm", description=(
        "Drive an AirM2M Air72x module to Alibaba Cloud IoT over AT commands."))
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("connect", help="bring the module ONLINE once and exit 0")
    add_connection_options(p)
    p.add_argument("--timeout", type=timeout_seconds, default=None,
                   help=f"give up (exit 6) if not ONLINE after this many seconds "
                        f"(at most {MAX_TIMEOUT_S})")
    p.add_argument("--auth-attempts", type=int, default=None, metavar="N",
                   help="give up (exit 5) after N rejected auth replies (default 6, with backoff)")
    p.add_argument("--progress", action="store_true",
                   help="show the stages even when stdout is not a terminal")
    p.set_defaults(handler=cmd_connect)

    p = sub.add_parser("sign", help="print the auth sign, the HTTPDATA body and its length")
    p.add_argument("--product-key", required=True)
    p.add_argument("--device-name", required=True)
    p.add_argument("--device-secret", help="or AIRFSM_DEVICE_SECRET")
    p.add_argument("--client-id", default=None)
    p.add_argument("--sign-method", default=aliyun.DEFAULT_SIGN_METHOD,
                   choices=aliyun.SIGN_METHODS)
    p.set_defaults(handler=cmd_sign)

    # The other subcommands live beside what they drive (each module has `register(sub)`).
    from airfsm.cli import demo
    from airfsm.host import gateway
    from airfsm.tools import ctable, diagram

    for module in (demo, ctable, gateway, diagram):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    env = dict(os.environ)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        level = getattr(args, "log_level", None) or env.get("AIRFSM_LOG_LEVEL") or "warning"
        log.configure(level)
        handler: Callable[[argparse.Namespace, dict[str, str]], Exit] = args.handler
        return int(handler(args, env))
    except CliError as exc:
        print(f"airfsm: {log.redact(str(exc))}" if not str(exc).startswith("airfsm")
              else log.redact(str(exc)), file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        print("airfsm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return Exit.FAILURE
