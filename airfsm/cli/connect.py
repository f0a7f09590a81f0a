"""`airfsm connect`: bring the module ONLINE once and exit 0, or exit with the reason's code.

It reads the same configuration as `airfsm run` (config file, `AIRFSM_*`, flags). Also what
`demo` shares with it: the port and the stage display (`StageDisplay`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from airfsm.cli.commands import add_command
from airfsm.cli.common import (
    CONNECTION_KEYS,
    DISPLAY_LOG_LEVEL,
    add_connection_options,
    load_settings,
    timeout_seconds,
)
from airfsm.core.codes import State
from airfsm.core.controller import Controller
from airfsm.core.timebase import ms_add, ms_diff
from airfsm.host import log, reasons
from airfsm.host.config import MAX_TIMEOUT_S
from airfsm.host.errors import Exit, HostError, fail_exit
from airfsm.host.gateway import registered_secret_keeper, settings_from_config
from airfsm.host.loop import monotonic_ms, run
from airfsm.host.progress import wait_of
from airfsm.host.serial import PortError, open_port


def open_module_port(url: str, baud: int) -> Any:
    try:
        return open_port(url, baud)
    except PortError as exc:
        raise HostError(str(exc), Exit.PORT) from None


# A retry that waits less than this is shown in place on a terminal, not as a line of its own:
# AUTOBAUD retries "AT" every 200 ms while the module boots.
QUICK_RETRY_MS = 1_000
_CLEAR_LINE = "\r\x1b[K"


class StageDisplay:
    """Shows the stages as they pass, with elapsed time, and every wait on the way: polls,
    retries and their backoff, escalations. On a terminal the current wait is one line kept up
    to date in place ("ATTACH  waiting for +CGATT: 1 (poll 7/60)"); elsewhere (`--progress`
    into a pipe or a file) each change is a line of its own.

    `__call__` is the controller's `on_state`; `observe(now_ms)` runs after every tick (the
    loop's `on_wake`)."""

    def __init__(self, out: TextIO, start_ms: int, clock: Callable[[], int] = monotonic_ms,
                 enabled: bool = True, live: bool | None = None) -> None:
        self.out = out
        self.start_ms = start_ms
        self.clock = clock
        self.enabled = enabled
        self.live = bool(out.isatty()) if live is None else live
        self.controller: Controller | None = None
        self._live_text = ""  # the in-place line shown now ("" none)
        self._kept_text = ""  # the text of the last line that stays (not repeated in place)
        self._shown_poll: tuple[str, str | None, int] | None = None

    def _stamp(self) -> str:
        return f"[{ms_diff(self.clock(), self.start_ms) / 1000:7.2f}s]"

    def _line(self, text: str) -> None:
        """A line that stays (it replaces the in-place line, which comes back below it)."""
        if self._live_text:
            self.out.write(_CLEAR_LINE)
            self._live_text = ""
        self.out.write(f"{self._stamp()} {text}\n")
        self.out.flush()
        self._kept_text = text

    def _in_place(self, text: str) -> None:
        """The current wait, rewritten in place; not when the line above already says it (a
        retry's line stays; its countdown comes in place once it changes)."""
        if text != self._live_text and text != self._kept_text:
            self.out.write(f"{_CLEAR_LINE}{self._stamp()} {text}")
            self.out.flush()
            self._live_text = text
            self._kept_text = ""

    def __call__(self, source: State, dest: State, trigger: str) -> None:
        if not self.enabled:
            return
        detail = ""
        c = self.controller
        if c is not None:
            if source == State.VERSION_CHECK and c.firmware:
                detail = f"  firmware {c.firmware}"
            elif source == State.ATTACH and dest == State.BEARER:
                detail = f"  signal {c.rssi}/31" if c.rssi != 99 else ""
            elif source == State.BEARER and c.ip:
                detail = f"  ip {c.ip}"
        wait = wait_of(c, self.clock()) if c is not None else None
        if trigger == "done":
            self._line(f"{source.name:<13} ok{detail}")
        elif trigger == "retry" and wait is not None:
            text = f"{source.name:<13} {wait.text()}"
            quick = wait.resume_in_ms is not None and wait.resume_in_ms < QUICK_RETRY_MS
            if self.live and quick:
                self._in_place(text)
            else:
                self._line(text)
        elif trigger != "retry":
            later = ""
            if wait is not None and wait.kind == "backoff" and wait.resume_in_ms:
                later = f", starting in {(wait.resume_in_ms + 999) // 1000} s"
            self._line(f"{source.name:<13} -> {dest.name} ({trigger}{later})")
        if dest == State.ONLINE:
            self._line("ONLINE")

    def observe(self, now_ms: int) -> None:
        """After a tick: a new poll is shown; on a terminal the current wait is kept in place."""
        c = self.controller
        if not self.enabled or c is None or c.online or c.failed:
            return
        wait = wait_of(c, now_ms)
        text = f"{wait.state:<13} {wait.text()}"
        if wait.kind == "poll":
            key = (wait.state, wait.step, wait.polls)
            if key != self._shown_poll:
                self._shown_poll = key
                if not self.live:
                    self._line(text)
        if self.live:
            self._in_place(text)

    def close(self) -> None:
        """Clear the in-place line (before a final message)."""
        if self._live_text:
            self.out.write(_CLEAR_LINE)
            self.out.flush()
            self._live_text = ""


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
    # The same settings as `airfsm run`: --config / $AIRFSM_CONFIG, AIRFSM_*, the flags.
    config, sources = load_settings(args, env, CONNECTION_KEYS, timeout_s=args.timeout)
    log.configure(config.log_level if sources["log_level"] != "default" else DISPLAY_LOG_LEVEL)
    settings = settings_from_config(config, auth_attempts=args.auth_attempts)
    port = open_module_port(config.port, settings.baud)
    start = monotonic_ms()
    display = StageDisplay(sys.stdout, start, enabled=sys.stdout.isatty() or args.progress)
    controller = Controller(port, settings, now_ms=start, on_state=display,
                            log_hook=log.CORE_LOG,
                            on_registered=registered_secret_keeper(config, log.get_logger(
                                "airfsm.cli.connect")))
    display.controller = controller
    deadline = ms_add(start, int(config.timeout_s * 1000)) if config.timeout_s else None
    try:
        run(controller, until=lambda: controller.online or controller.failed
            or controller.port_lost, deadline_ms=deadline, on_wake=display.observe)
    finally:
        display.close()
        port.close()
    code, reason = exit_for(controller)
    elapsed = ms_diff(monotonic_ms(), start) / 1000
    if code == Exit.OK:
        print(f"online in {elapsed:.1f} s: {settings.identity.product_key}/"
              f"{settings.identity.device_name} via {config.port}")
        return Exit.OK
    print(f"airfsm: {log.redact(reason)}", file=sys.stderr)
    return code


def register(sub: Any) -> None:
    p = add_command(sub, "connect", description=(
        "Bring the module ONLINE once and exit 0. Settings as for `airfsm run`: --config FILE "
        "(TOML), then AIRFSM_* environment variables (and a systemd credential), then flags."))
    add_connection_options(p, required=False)
    p.add_argument("--config", default=None, metavar="FILE",
                   help="TOML configuration file (default: $AIRFSM_CONFIG)")
    p.add_argument("--timeout", type=timeout_seconds, default=None,
                   help=f"give up (exit 6) if not ONLINE after this many seconds "
                        f"(at most {MAX_TIMEOUT_S}; config key timeout_s)")
    p.add_argument("--auth-attempts", type=int, default=None, metavar="N",
                   help="give up (exit 5) after N rejected auth replies (default 6, with backoff)")
    p.add_argument("--progress", action="store_true",
                   help="show the stages even when stdout is not a terminal")
    p.set_defaults(handler=cmd_connect)
