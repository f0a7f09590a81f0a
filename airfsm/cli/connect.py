"""`airfsm connect`: bring the module ONLINE once and exit 0, or exit with the reason's code.

Also what `demo` shares with it: the Settings from the flags, the port, the stage display.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from airfsm.cli.commands import add_command
from airfsm.cli.common import (
    DEFAULT_BAUD,
    MAX_TIMEOUT_S,
    add_connection_options,
    log_level,
    secret_from,
    timeout_seconds,
)
from airfsm.core import aliyun
from airfsm.core.codes import State
from airfsm.core.controller import Controller
from airfsm.core.settings import Settings
from airfsm.core.timebase import ms_add, ms_diff
from airfsm.host import log, reasons
from airfsm.host.errors import Exit, HostError, fail_exit
from airfsm.host.loop import monotonic_ms, run
from airfsm.host.serial import PortError, open_port


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
        raise HostError(f"bad configuration: {log.redact(str(exc))}") from None
    return settings


def open_module_port(url: str, baud: int) -> Any:
    try:
        return open_port(url, baud)
    except PortError as exc:
        raise HostError(str(exc), Exit.PORT) from None


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
        code = fail_exit(controller.fail_reason) or Exit.FAILURE
        return code, reasons.fail_text(controller) or "failed"
    if controller.port_lost:
        return Exit.PORT, "the serial port vanished"
    step = controller.step_name()
    where = f"{controller.state.name}" + (f" ({step})" if step else "")
    last_error = reasons.last_error_text(controller)
    last = f"; last error: {last_error}" if last_error else ""
    return Exit.TIMEOUT, f"timed out in {where} after attempt {controller.attempt}{last}"


def cmd_connect(args: argparse.Namespace, env: Mapping[str, str]) -> Exit:
    log.configure(log_level(args, env))
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


def register(sub: Any) -> None:
    p = add_command(sub, "connect")
    add_connection_options(p)
    p.add_argument("--timeout", type=timeout_seconds, default=None,
                   help=f"give up (exit 6) if not ONLINE after this many seconds "
                        f"(at most {MAX_TIMEOUT_S})")
    p.add_argument("--auth-attempts", type=int, default=None, metavar="N",
                   help="give up (exit 5) after N rejected auth replies (default 6, with backoff)")
    p.add_argument("--progress", action="store_true",
                   help="show the stages even when stdout is not a terminal")
    p.set_defaults(handler=cmd_connect)
