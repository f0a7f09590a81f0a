"""`airfsm sim` and `airfsm demo`: the no-hardware way in.

`sim` serves a simulated Air72x on a pty or TCP port for airfsm, a C port, or a terminal program.
`demo` starts that simulator on a pty, connects to it through pyserial exactly as `connect` would
to /dev/ttyUSB0, publishes, receives a downlink, and prints what happened.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Mapping
from typing import Any

from airfsm.cli.commands import add_command
from airfsm.cli.common import log_level, timeout_seconds
from airfsm.cli.connect import StageDisplay, open_module_port
from airfsm.core import aliyun
from airfsm.core.controller import Controller
from airfsm.core.settings import Settings
from airfsm.core.timebase import ms_add, ms_diff
from airfsm.host import log, reasons
from airfsm.host.errors import Exit, HostError
from airfsm.host.loop import monotonic_ms, run
from airfsm.sim import FAULT_HELP, PROFILES, SimConfig, SimServer, parse_fault

DEMO_DOWNLINK = b'{"method":"thing.service.blink","params":{"times":3}}'
MIN_BAUD, MAX_BAUD = 300, 4_000_000  # what a UART of this class can be set to


def add_sim_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--product-key", default=SimConfig.product_key)
    p.add_argument("--device-name", default=SimConfig.device_name)
    p.add_argument("--device-secret", default=None,
                   help="the secret the simulated cloud checks signs against "
                        "(default: the seed transcript's)")
    p.add_argument("--region", default=SimConfig.region)
    p.add_argument("--firmware", default=SimConfig.firmware,
                   help="what AT+CGMR reports (e.g. AirM2M_Air72xUy_V300_LTE_AT to see a refusal)")
    p.add_argument("--cgmr-quoted", action="store_true",
                   help='answer AT+CGMR as +CGMR: "..." instead of the bare line')
    p.add_argument("--no-echo", action="store_true", help="start with echo off (as after ATE0)")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help="latencies: real (PROTOCOL.md's measurements), fast (tests) or line "
                        "(fast with no answer delay: with --baud only the line is slow)")
    p.add_argument("--attach-after", type=float, default=0.0, metavar="SECONDS",
                   help="answer +CGATT: 0 until this long after boot (slow attach)")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="inject a fault; repeatable. " + FAULT_HELP.splitlines()[0])
    p.add_argument("--seed", type=int, default=1, help="PRNG seed for tokens and garbage")
    p.add_argument("--instance-id", default=None,
                   help="serve as this instance: only <id>.auth/.mqtt.iothub.aliyuncs.com answer")
    p.add_argument("--broker-host", default=None,
                   help="the only MQTT host that answers (the auth reply names it)")
    p.add_argument("--product-secret", default=None,
                   help="turn dynamic registration on, checking signs against this secret")
    p.add_argument("--device-activated", action="store_true",
                   help="the device has connected before: a registration is refused")
    p.add_argument("--cloud-clock-offset", type=float, default=0.0, metavar="SECONDS",
                   help="the simulated cloud's clock runs this far ahead (negative: behind) "
                        "of this machine's: what the gateway's NTP should measure as its skew")
    p.add_argument("--thing-property", action="append", default=[], metavar="NAME:TYPE",
                   help="a property of the simulated thing model (TYPE int, float, bool or "
                        "text); with any, property posts naming others are refused (code 460)")


def sim_config_from(args: argparse.Namespace, default_profile: str) -> SimConfig:
    try:
        faults = [parse_fault(spec) for spec in args.fault]
    except ValueError as exc:
        raise HostError(f"bad --fault: {exc}") from None
    if args.attach_after < 0:
        raise HostError("--attach-after must not be negative")
    properties: dict[str, str] = {}
    for spec in args.thing_property:
        name, _sep, kind = spec.partition(":")
        if not name or kind not in ("int", "float", "bool", "text"):
            raise HostError(f"bad --thing-property {spec!r}: expected NAME:int|float|bool|text")
        properties[name] = kind
    if not abs(args.cloud_clock_offset) <= 10 * 365 * 86400:
        raise HostError("--cloud-clock-offset: expected at most ten years either way")
    config = SimConfig(
        product_key=args.product_key, device_name=args.device_name, region=args.region,
        firmware=args.firmware, cgmr_quoted=args.cgmr_quoted, echo=not args.no_echo,
        profile=args.profile or default_profile, attach_after_ms=int(args.attach_after * 1000),
        faults=faults, seed=args.seed, instance_id=args.instance_id,
        broker_host=args.broker_host, product_secret=args.product_secret,
        device_activated=args.device_activated, thing_properties=properties or None,
        cloud_clock_offset_ms=int(args.cloud_clock_offset * 1000),
    )
    if args.device_secret:
        config.device_secret = args.device_secret
    return config


def cmd_sim(args: argparse.Namespace, env: Mapping[str, str]) -> Exit:
    log.configure(log_level(args, env))
    config = sim_config_from(args, "real")
    if args.tcp is not None and not 0 <= args.tcp <= 65535:
        raise HostError("--tcp takes a port number 0-65535 (0: any free port)")
    if args.baud is not None and not MIN_BAUD <= args.baud <= MAX_BAUD:
        raise HostError(f"--baud takes a line rate of {MIN_BAUD}-{MAX_BAUD} bits per second")
    transport = "tcp" if args.tcp is not None else "pty"
    session = _broker_session(args)
    try:
        server = SimServer(config, transport=transport, port=args.tcp or 0, session=session,
                           baud=args.baud)
    except OSError as exc:
        raise HostError(f"cannot start the simulator: {exc.strerror or exc}", Exit.PORT) from None
    print(f"simulated Air72x ({config.firmware}) on {server.endpoint}", flush=True)
    print(f"try: airfsm connect --port {server.endpoint} --product-key {config.product_key} "
          f"--device-name {config.device_name} --device-secret ...", flush=True)
    if args.baud:
        print(f"the line is paced at {args.baud} baud (10 bits a byte, both directions)",
              flush=True)

    def stop(_signum: int, _frame: Any) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return Exit.OK


def _broker_session(args: argparse.Namespace) -> Any:
    url = getattr(args, "broker", None)
    if not url:
        return None
    try:
        from airfsm.sim.broker import BrokerSession
    except ImportError as exc:  # paho-mqtt is the optional `broker` extra
        raise HostError(
            f"--broker needs paho-mqtt (pip install 'airfsm[broker]'): {exc}") from None
    try:
        return BrokerSession.from_url(url, product_key=args.product_key,
                                      device_name=args.device_name)
    except (ValueError, OSError) as exc:
        raise HostError(f"--broker {url}: {exc}", Exit.PORT) from None


def cmd_demo(args: argparse.Namespace, env: Mapping[str, str]) -> Exit:
    log.configure(log_level(args, env))
    config = sim_config_from(args, "real")
    out = sys.stdout
    with SimServer(config, transport="pty") as server:
        server.start()
        out.write(f"airfsm demo: simulated Air72x ({config.firmware}) on {server.endpoint}\n")
        port = open_module_port(server.endpoint, 115200)
        identity = aliyun.DeviceIdentity(config.product_key, config.device_name,
                                         config.device_secret, config.region)
        settings = Settings(identity=identity)
        start = monotonic_ms()
        display = StageDisplay(out, start)
        inbound: list[tuple[str, bytes]] = []
        controller = Controller(port, settings, now_ms=start, on_state=display,
                                on_message=lambda t, p: inbound.append((t, p)),
                                log_hook=log.CORE_LOG)
        display.controller = controller
        try:
            return _demo_session(args, server, controller, display, inbound, start)
        finally:
            port.close()


def _demo_session(args: argparse.Namespace, server: SimServer, controller: Controller,
                  display: StageDisplay, inbound: list[tuple[str, bytes]], start: int) -> Exit:
    out = sys.stdout
    limit = ms_add(start, int(args.timeout * 1000))

    def fail(what: str) -> Exit:
        detail = reasons.fail_text(controller)
        out.write(f"airfsm demo: {what} ({controller.state.name}"
                  f"{': ' + detail if detail else ''})\n")
        return Exit.FAILURE

    if not run(controller, until=lambda: controller.online or controller.failed,
               deadline_ms=limit, on_wake=display.observe) or not controller.online:
        display.close()
        return fail("did not get ONLINE")
    display.close()
    online_at = monotonic_ms()

    ident = controller.settings.identity
    topic = aliyun.topic_update(ident.product_key, ident.device_name)
    controller.publish(topic, b"hello from airfsm (qos0)", qos=0)
    controller.publish(topic, b'{"temperature":21.5,"note":"qos1, \\"quoted\\", a,b"}', qos=1)
    if not run(controller, until=lambda: controller.counters.publish_acked >= 2,
               deadline_ms=limit):
        return fail("publishes were not acknowledged")
    out.write(f"[{ms_diff(monotonic_ms(), start) / 1000:7.2f}s] published 2 messages "
              f"(QoS0 OK, QoS1 PUBACK) to {topic}\n")

    get_topic = aliyun.topic_get(ident.product_key, ident.device_name)
    server.send_downlink(get_topic, DEMO_DOWNLINK)
    if not run(controller, until=lambda: bool(inbound), deadline_ms=limit):
        return fail("the downlink did not arrive")
    t, p = inbound[0]
    out.write(f"[{ms_diff(monotonic_ms(), start) / 1000:7.2f}s] received on {t}: "
              f"{p.decode('utf-8', 'replace')}\n")

    seen = server.call(lambda module, _now: list(module.published))
    counters = controller.counters
    out.write("\nsummary\n")
    out.write(f"  firmware        {controller.firmware}\n")
    out.write(f"  online after    {ms_diff(online_at, start) / 1000:.2f} s\n")
    out.write(f"  cloud received  {len(seen)} message(s): "
              + ", ".join(repr(m[1].decode('utf-8', 'replace')) for m in seen) + "\n")
    out.write(f"  device received {len(inbound)} downlink(s)\n")
    out.write(f"  AT timeouts     {counters.timeouts} (AUTOBAUD's unanswered ATs while the module "
              f"boots count here), state changes {counters.transitions}\n")
    out.write("next: `airfsm sim` serves this simulator for your own tests; "
              "`airfsm connect --port /dev/ttyUSB0 ...` talks to a real module.\n")
    return Exit.OK


def register(sub: Any) -> None:
    p = add_command(sub, "sim", description="Run a simulated Air72x module.\n\n" + FAULT_HELP,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="serve on a pseudo-terminal (default)")
    where.add_argument("--tcp", type=int, metavar="PORT", default=None,
                       help="serve on TCP 127.0.0.1:PORT (0: pick a free port)")
    p.add_argument("--broker", default=None, metavar="mqtt://HOST:PORT",
                   help="make the simulated MQTT session a real client of this broker")
    p.add_argument("--baud", type=int, default=None, metavar="N",
                   help="pace the line: bytes cross no faster than N baud (10 bits a byte) in "
                        "both directions, as on a real UART (default: as fast as the pty goes)")
    add_sim_options(p)
    p.set_defaults(handler=cmd_sim)

    p = add_command(sub, "demo")
    add_sim_options(p)
    p.add_argument("--timeout", type=timeout_seconds, default=120.0,
                   help="give up after this many seconds")
    p.set_defaults(handler=cmd_demo)


__all__ = ["register"]
