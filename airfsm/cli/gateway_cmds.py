"""`airfsm run`, `publish`, `inbox`, `outbox`, `status`: the gateway's commands.

`run` is `airfsm.host.gateway.Gateway` (imported only for `run`); the others talk to a gateway
through its data directory: the SQLite store, the status file and the wake socket. Each finds
that directory the same way (`--data-dir` > `AIRFSM_DATA_DIR` > the config file's `data_dir` >
the per-user default).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from airfsm.cli.commands import add_command
from airfsm.cli.common import CONNECTION_KEYS, add_connection_options, config_path, load_settings
from airfsm.core.messages import InboundMessage
from airfsm.core.payload import QOS_LEVELS
from airfsm.host import alink
from airfsm.host.config import ConfigError, convert, env_var, flag, read_toml
from airfsm.host.errors import Exit, HostError
from airfsm.host.paths import default_data_dir
from airfsm.host.publish import enqueue, enqueue_property_post, poke
from airfsm.host.redact import redact
from airfsm.host.status import current_status, format_status, read_current
from airfsm.host.store import (
    DEFAULT_OUTBOX_CAPACITY,
    OutboxFull,
    SqliteInbox,
    SqliteOutbox,
    StatusFile,
    StoreError,
    db_path,
    dead_letter_json_line,
    inbox_json_line,
    outbox_json_line,
)
from airfsm.host.store_faults import STORE_FAULT_ENV, STORE_FAULT_HELP

INBOX_FOLLOW_INTERVAL_S = 0.25
MAX_MESSAGE_ID = 2**63 - 1  # SQLite's largest INTEGER

# Config keys that get a `run` flag beyond the shared connection flags (flag = config.flag(key)).
_RUN_KEYS = ("data_dir", "inbox", "outbox_capacity", "inbox_capacity", "keepalive_s",
             "watchdog_s", "liveness_s", "puback_timeout_s", "silence_limit", "publish_attempts",
             "shutdown_grace_s", "reset_command", "subscribe", "bridge", "bridge_prefix",
             "metrics_textfile", "metrics_listen", "thing_model", "rrpc", "rrpc_timeout_s", "ntp",
             "ntp_interval_s")
RUN_KEYS = (*CONNECTION_KEYS, *_RUN_KEYS)  # every setting `run` takes as a flag
_RUN_HELP = {
    "data_dir": "where the outbox, inbox and status live (default: per-user state dir)",
    "inbox": "'stdout': also print each inbound message as a JSON line",
    "outbox_capacity": "messages the outbox holds before publish refuses (default 10000)",
    "inbox_capacity": "inbound messages kept (default 10000; oldest pruned)",
    "keepalive_s": "MQTT keepalive, 30-240 s (default 120, the vendor's advice)",
    "watchdog_s": "not ONLINE this long: reset the module (default 600)",
    "liveness_s": "ONLINE: probe the link this often (default 60)",
    "puback_timeout_s": "QoS1: resend when no PUBACK this long after OK (default 10)",
    "silence_limit": "ONLINE: unanswered commands in a row before reconnecting (default 3)",
    "publish_attempts": "sends of a message without PUBACK before it becomes a dead letter "
                        "(default 5)",
    "shutdown_grace_s": "on SIGTERM: time to finish the publish in flight (default 5)",
    "reset_command": "command that pulses the module's RESET pin when it stops answering "
                     "AT (run without a shell; default: none)",
    "subscribe": "topics to subscribe to, comma-separated, wildcards allowed; relative to "
                 "/{pk}/{dn}/ without a leading '/' (default: get)",
    "bridge": "bridge to a local MQTT broker, mqtt://HOST[:PORT] (needs paho-mqtt: the "
              "'bridge' extra)",
    "bridge_prefix": "the bridge's local topics: PREFIX/up/<cloud topic>, PREFIX/down/... "
                     "(default airfsm/{dn})",
    "metrics_textfile": "write Prometheus metrics to this file (node_exporter's textfile "
                        "collector), atomically",
    "metrics_listen": "serve Prometheus /metrics on HOST:PORT (needs prometheus-client: the "
                      "'metrics' extra)",
    "thing_model": "true: subscribe to the Alink property post replies, property set and "
                   "service calls (default false)",
    "rrpc": "true: subscribe to RRPC requests, answered through the priority lane (default "
            "false)",
    "rrpc_timeout_s": "how long the server waits for an RRPC answer; later ones are "
                      "dead-lettered, not sent (default 8, the most it waits)",
    "ntp": "true: ask the cloud's NTP service for the time on every ONLINE (default false)",
    "ntp_interval_s": "ask again this often while ONLINE (default 86400)",
}


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Every flag of `airfsm run` (and `airfsm config check`): one per setting."""
    add_connection_options(p, required=False)
    p.add_argument("--config", default=None, metavar="FILE",
                   help="TOML configuration file (default: $AIRFSM_CONFIG)")
    for key in _RUN_KEYS:
        p.add_argument(flag(key), dest=key, default=None, metavar="VALUE", help=_RUN_HELP[key])


# ---------------------------------------------------------------------- locating things


def _read_toml_subset(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """`keys` from a config file, for the helper commands (the full check is `run`'s job)."""
    try:
        data = read_toml(path)
        out = {key: convert(key, data[key]) for key in keys if key in data}
    except ConfigError as exc:
        where = "" if str(path) in str(exc) else f" (in {path})"
        raise HostError(f"{exc}{where}") from None
    for key, value in out.items():
        if key.endswith("capacity") and value < 1:
            raise HostError(f"bad value for '{key}' in {path}: expected a positive integer")
    return out


def _locate(args: argparse.Namespace, env: Mapping[str, str],
            keys: tuple[str, ...] = ()) -> tuple[Path, dict[str, Any]]:
    """The data directory (flag > AIRFSM_DATA_DIR > config file > per-user default) and the
    other `keys` found with the same precedence (missing ones are absent)."""
    path = config_path(args, env)
    found = _read_toml_subset(path, ("data_dir", *keys)) if path is not None else {}
    for key in ("data_dir", *keys):
        raw = env.get(env_var(key))
        if raw:
            found[key] = raw
        value = getattr(args, key, None)
        if value is not None:
            found[key] = value
    data_dir = found.pop("data_dir", "") or ""
    directory = Path(data_dir).expanduser() if data_dir else default_data_dir(env)
    return directory, found


# ---------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace, env: Mapping[str, str]) -> Exit:
    # Here, not at the top: the gateway brings the controller and the logging stack, which
    # `publish`, `inbox`, `outbox` and `status` do without.
    from airfsm.host import log
    from airfsm.host.gateway import Gateway

    keys = RUN_KEYS
    config, _sources = load_settings(args, env, keys)
    log.configure(config.log_level)
    inbox_out = sys.stdout if config.inbox == "stdout" else None
    overrides = {key: getattr(args, key, None) for key in keys}
    gateway = Gateway(config, config_path=config_path(args, env), overrides=overrides, env=env,
                      inbox_out=inbox_out)
    try:
        code = gateway.run()
    except HostError:
        raise
    except Exception as exc:  # a bug outside the tick: one line, exit 70, systemd restarts
        reason = redact(f"{type(exc).__name__}: {exc}")
        gateway.log.exception("gateway_crashed", error=reason)
        print(f"airfsm: internal error: {reason}", file=sys.stderr)
        return Exit.INTERNAL
    if code != Exit.OK:
        print(f"airfsm: {redact(gateway.exit_reason)}", file=sys.stderr)
    return code


def _payload_from(args: argparse.Namespace) -> bytes:
    if args.payload == "-":
        return sys.stdin.buffer.read()
    # The bytes the user typed, even if they are not valid in the locale's encoding.
    return os.fsencode(args.payload)


def _device_of(data_dir: Path, found: Mapping[str, Any]) -> tuple[str, str] | None:
    """The ProductKey and DeviceName (flags > environment > config file, else the running
    gateway's status file), None when unknown."""
    pk, dn = found.get("product_key"), found.get("device_name")
    if not (pk and dn):
        with contextlib.suppress(StoreError):
            device = StatusFile.read(data_dir).get("device") or {}
            pk = pk or device.get("product_key")
            dn = dn or device.get("device_name")
    return (str(pk), str(dn)) if pk and dn else None


def _require_store(data_dir: Path) -> None:
    """HostError (exit 1) naming the problem when the data dir holds no gateway store."""
    try:
        SqliteOutbox(db_path(data_dir), create=False).close()
    except StoreError as exc:
        raise HostError(str(exc), Exit.FAILURE) from None


_WHERE_THE_DEVICE_IS = ("pass --product-key and --device-name, set AIRFSM_PRODUCT_KEY and "
                        "AIRFSM_DEVICE_NAME, or use --config")


def cmd_publish(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    data_dir, found = _locate(args, env, ("product_key", "device_name", "outbox_capacity"))
    if args.property:
        return _publish_properties(args, data_dir, found)
    if args.topic is None or args.payload is None:
        raise HostError("publish: give TOPIC and PAYLOAD, or --property NAME=VALUE",
                        Exit.USAGE)
    topic: str = args.topic
    if not topic:
        raise HostError("refused: topic is empty")
    device = None if topic.startswith("/") else _device_of(data_dir, found)
    if not topic.startswith("/") and device is None:
        _require_store(data_dir)  # a mistyped --data-dir: say that rather than ask for pk/dn
        raise HostError(f"relative topic {topic!r} needs the ProductKey and DeviceName: "
                        f"{_WHERE_THE_DEVICE_IS}, or give an absolute topic (/pk/dn/...)")
    pk, dn = device if device is not None else (None, None)
    capacity = _capacity(found.get("outbox_capacity"), data_dir)
    payload = _payload_from(args)
    return _queued(lambda: enqueue(data_dir, topic, payload, args.qos, product_key=pk,
                                   device_name=dn, capacity=capacity, create=False))


def _publish_properties(args: argparse.Namespace, data_dir: Path,
                        found: Mapping[str, Any]) -> int:
    """`publish --property NAME=VALUE ...`: an Alink property post, its id from the store."""
    if args.topic is not None:
        raise HostError("publish: --property builds the Alink JSON and its topic itself: give "
                        "no TOPIC or PAYLOAD with it", Exit.USAGE)
    try:
        params = alink.parse_properties(args.property)
    except ValueError as exc:
        raise HostError(f"refused: {exc}", Exit.USAGE) from None
    device = _device_of(data_dir, found)
    if device is None:
        _require_store(data_dir)
        raise HostError(f"--property needs the ProductKey and DeviceName: {_WHERE_THE_DEVICE_IS}")
    capacity = _capacity(found.get("outbox_capacity"), data_dir)
    return _queued(lambda: enqueue_property_post(data_dir, *device, params, capacity=capacity,
                                                 create=False)[0])


def _queued(put: Callable[[], int]) -> int:
    """Run an enqueue, print the message id; the store's refusals as one line and a code."""
    try:
        message_id = put()
    except ValueError as exc:
        raise HostError(f"refused: {exc}", Exit.USAGE) from None
    except OutboxFull as exc:
        print(f"airfsm: {exc}", file=sys.stderr)
        return Exit.OUTBOX_FULL
    except StoreError as exc:
        raise HostError(str(exc), Exit.FAILURE) from None
    print(message_id)
    return Exit.OK


def _capacity(given: Any, data_dir: Path) -> int:
    """The outbox bound: the configured one, else what the running gateway uses, else the
    default."""
    if given is not None:
        try:
            value = int(given)
        except (TypeError, ValueError):
            raise HostError(f"bad value for 'outbox_capacity': {given!r}") from None
        if value < 1:
            raise HostError("bad value for 'outbox_capacity': must be positive")
        return value
    with contextlib.suppress(StoreError, TypeError, ValueError, AttributeError):
        capacity = StatusFile.read(data_dir).get("outbox", {}).get("capacity")
        if isinstance(capacity, int) and capacity > 0:
            return capacity
    return DEFAULT_OUTBOX_CAPACITY


def cmd_inbox(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    data_dir, _found = _locate(args, env)
    try:
        inbox = SqliteInbox(db_path(data_dir), create=False)
    except StoreError as exc:
        raise HostError(str(exc), Exit.FAILURE) from None
    out = sys.stdout
    after = args.after if args.after is not None else 0
    if args.last is not None:
        after = max(0, inbox.last_id() - args.last)
    try:
        while True:
            batch = inbox.read(after, limit=500)
            for message_id, message in batch:
                described = alink.describe(message.topic, message.payload)
                out.write(inbox_json_line(message, message_id, alink=described) + "\n")
                after = message_id
            if batch:
                out.flush()
                continue
            if not args.follow:
                return Exit.OK
            time.sleep(INBOX_FOLLOW_INTERVAL_S)  # a reader's poll; the gateway never polls
    except KeyboardInterrupt:
        return Exit.OK
    except StoreError as exc:
        raise HostError(str(exc), Exit.FAILURE) from None
    finally:
        inbox.close()


def _inbox_message(data_dir: Path, inbox_id: int) -> InboundMessage:
    """Inbox message `inbox_id`; HostError when the store or the message is not there."""
    try:
        with SqliteInbox(db_path(data_dir), create=False) as inbox:
            found = inbox.read(inbox_id - 1, limit=1) if inbox_id > 0 else []
    except StoreError as exc:
        raise HostError(str(exc), Exit.FAILURE) from None
    if not found or found[0][0] != inbox_id:
        raise HostError(f"no message {inbox_id} in the inbox (pruned, or never there: see "
                        "`airfsm inbox`)", Exit.USAGE)
    return found[0][1]


def cmd_reply(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Answer the cloud request stored as inbox message INBOX_ID: an Alink `_reply` to a
    property set or service call, or the response to an RRPC request (before its deadline)."""
    data_dir, found = _locate(args, env, ("outbox_capacity", "rrpc_timeout_s"))
    request = _inbox_message(data_dir, args.inbox_id)
    kind = alink.classify(request.topic, request.payload)
    raw = None if args.payload is None else os.fsencode(args.payload)
    try:
        data = alink.parse_data(args.data)
        if kind is None:
            raise ValueError(f"message {args.inbox_id} ({request.topic}) is not a request that "
                             "takes a reply (property set, service call or RRPC request)")
        topic, payload = alink.answer_for(kind, request.payload, args.code, data, raw)
    except ValueError as exc:
        raise HostError(f"refused: {exc}", Exit.USAGE) from None
    capacity = _capacity(found.get("outbox_capacity"), data_dir)
    deadline_at = None
    if kind.kind == alink.KIND_RRPC_REQUEST:
        deadline_at = request.received_at + _rrpc_timeout_s(found, data_dir)
        if time.time() >= deadline_at:
            raise HostError(f"refused: too late: the RRPC request {kind.id} came "
                            f"{time.time() - request.received_at:.1f} s ago and the server "
                            f"waits {deadline_at - request.received_at:g} s for its answer",
                            Exit.FAILURE)
    return _queued(lambda: enqueue(data_dir, topic, payload, args.qos, capacity=capacity,
                                   create=False, priority=deadline_at is not None,
                                   deadline_at=deadline_at))


def _rrpc_timeout_s(found: Mapping[str, Any], data_dir: Path) -> float:
    """How long the server waits for an RRPC answer: `rrpc_timeout_s` as configured, else
    what the running gateway uses, else the server's longest (8 s)."""
    given = found.get("rrpc_timeout_s")
    if given is not None:
        try:
            return float(int(given))
        except (TypeError, ValueError):
            raise HostError(f"bad value for 'rrpc_timeout_s': {given!r}") from None
    with contextlib.suppress(StoreError, TypeError, ValueError, AttributeError):
        timeout_ms = StatusFile.read(data_dir).get("alink", {}).get("rrpc_timeout_ms")
        if isinstance(timeout_ms, int) and timeout_ms > 0:
            return timeout_ms / 1000
    return alink.RRPC_TIMEOUT_MS / 1000


def cmd_outbox(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """List the queued messages, or the dead letters, or put a dead letter back in the queue."""
    data_dir, found = _locate(args, env, ("outbox_capacity",))
    capacity = _capacity(found.get("outbox_capacity"), data_dir)
    try:
        with SqliteOutbox(db_path(data_dir), capacity, create=False) as outbox:
            if args.retry is not None:
                new_id = outbox.requeue(args.retry)
                poke(data_dir)
                print(new_id)
                return Exit.OK
            if args.discard is not None:
                outbox.discard(args.discard)
                return Exit.OK
            after = 0
            while True:
                if args.dead:
                    dead = outbox.dead_letters(after, limit=500)
                    lines = [dead_letter_json_line(d) for d in dead]
                    after = dead[-1].id if dead else after
                else:
                    queued = outbox.queued(after, limit=500)
                    lines = [outbox_json_line(m) for m in queued]
                    after = queued[-1].id if queued else after
                if not lines:
                    return Exit.OK
                sys.stdout.write("".join(line + "\n" for line in lines))
                sys.stdout.flush()
    except ValueError as exc:  # no dead letter with that id
        raise HostError(str(exc), Exit.USAGE) from None
    except OutboxFull as exc:
        print(f"airfsm: {exc}", file=sys.stderr)
        return Exit.OUTBOX_FULL
    except StoreError as exc:
        raise HostError(str(exc), Exit.FAILURE) from None


def cmd_status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    data_dir, _found = _locate(args, env)
    try:
        status, alive = read_current(data_dir)
    except StoreError as exc:
        raise HostError(str(exc), Exit.FAILURE) from None
    if args.watch:
        return _watch_status(data_dir, args.json, args.interval)
    _print_status(status, alive, args.json)
    return Exit.OK if alive else Exit.FAILURE


def _status_text(status: Mapping[str, Any], alive: bool, as_json: bool) -> str:
    if as_json:
        return json.dumps(current_status(status, alive), indent=2, sort_keys=False)
    return format_status(status, alive)


def _print_status(status: Mapping[str, Any], alive: bool, as_json: bool) -> None:
    print(_status_text(status, alive, as_json), flush=True)


# A terminal: home the cursor, clear the screen below it, draw again.
_REDRAW = "\x1b[H\x1b[J"


def _watch_status(data_dir: Path, as_json: bool, interval_s: float) -> int:
    """`status --watch`: on a terminal the status is redrawn in place every `interval_s`; into
    a pipe or a file it is printed again only when it changed (what the gateway wrote, apart
    from its heartbeat time, or whether it runs), each print followed by a blank line."""
    out = sys.stdout
    on_terminal = out.isatty()
    shown: tuple[str, bool] | None = None
    try:
        while True:
            try:
                status, alive = read_current(data_dir)
                problem = ""
            except StoreError as exc:  # e.g. the file is being replaced by hand: say so
                status, alive, problem = {}, False, str(exc)
            if on_terminal:
                body = problem or _status_text(status, alive, as_json)
                out.write(f"{_REDRAW}{body}\n")
                out.flush()
            else:
                change = {k: v for k, v in status.items() if k != "updated_at"}
                key = (problem or json.dumps(change, sort_keys=True, default=str), alive)
                if key != shown:
                    shown = key
                    out.write((problem or _status_text(status, alive, as_json)) + "\n\n")
                    out.flush()
            time.sleep(interval_s)  # a reader's poll of a file; the gateway never polls
    except KeyboardInterrupt:
        return Exit.OK


# ---------------------------------------------------------------------- registration


def _add_locating_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the gateway's data directory (default: AIRFSM_DATA_DIR, the config "
                        "file's data_dir, else a per-user state directory)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="read data_dir (and product_key/device_name) from this TOML file "
                        "(default: $AIRFSM_CONFIG)")


def _whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in low .. high, else a one-line error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {low} .. {high}, got {text}")
        return value
    return parse


# An id for --after / --retry, or a count for --last: 0 .. 2**63-1 (SQLite's range).
_message_id = _whole_number(0, MAX_MESSAGE_ID)
# The code of an Alink reply.
_alink_code = _whole_number(0, 999_999)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected 0.05 .. 3600 seconds, got {text}")
    return value


def _qos(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid qos {text!r} (0 or 1)") from None
    if value not in QOS_LEVELS:
        raise argparse.ArgumentTypeError(f"invalid qos {value} (0 or 1)")
    return value


def register(sub: Any) -> None:
    p = add_command(
        sub, "run",
        description="Run the gateway until SIGTERM/SIGINT. Settings: --config FILE (TOML, "
                    "one key per flag), then AIRFSM_* environment variables, then flags.",
        epilog=f"Test aid: store errors can be injected with {STORE_FAULT_HELP}, e.g. "
               f"{STORE_FAULT_ENV}=ack@3 (the next three DELETEs after a PUBACK fail) or "
               f"{STORE_FAULT_ENV}=write=full@* (a full disk).")
    add_run_options(p)
    p.set_defaults(handler=cmd_run)

    p = add_command(
        sub, "publish",
        description="Queue TOPIC/PAYLOAD in the gateway's outbox and print the message id. "
                    "A TOPIC without a leading '/' is relative to /{ProductKey}/{DeviceName}/. "
                    "With --property (no TOPIC/PAYLOAD): an Alink property post to "
                    "/sys/{pk}/{dn}/thing/event/property/post, its id from the store's "
                    "counter; the cloud's post_reply shows in `airfsm status` and the inbox.")
    _add_locating_options(p)
    p.add_argument("--qos", type=_qos, default=1, help="0 or 1 (default 1: at least once)")
    p.add_argument("--product-key", default=None, help="for relative topics and --property")
    p.add_argument("--device-name", default=None, help="for relative topics and --property")
    p.add_argument("--property", action="append", default=[], metavar="NAME=VALUE",
                   help="a thing-model property (repeat for more): 21 is an int, 21.5 a float, "
                        "true/false a bool, {...} / [...] a JSON struct / array, anything else "
                        "(or a quoted '\"21\"') a string")
    p.add_argument("--outbox-capacity", default=None, help=argparse.SUPPRESS)
    p.add_argument("topic", metavar="TOPIC", nargs="?")
    p.add_argument("payload", metavar="PAYLOAD", nargs="?",
                   help="the message; '-' reads it from stdin")
    p.set_defaults(handler=cmd_publish)

    p = add_command(sub, "inbox",
                    description="Print the inbox (oldest first) as JSON lines: id, topic, "
                                "payload, payload_encoding, received_at, and for Alink "
                                "messages 'alink' (kind, id, reply_topic; a post_reply's code "
                                "and accepted).")
    _add_locating_options(p)
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing new messages until interrupted")
    p.add_argument("--after", type=_message_id, default=None, metavar="ID",
                   help="only messages with an id greater than ID")
    p.add_argument("--last", type=_message_id, default=None, metavar="N",
                   help="start with the last N messages")
    p.set_defaults(handler=cmd_inbox)

    p = add_command(
        sub, "reply",
        description="Answer a request from the cloud that is in the inbox: a property set or "
                    "service call gets the Alink reply {\"id\", \"code\", \"data\"} on its "
                    "<topic>_reply; an RRPC request gets its response on .../rrpc/response/<id> "
                    "(an Alink reply when the request is Alink JSON, else --payload as given). "
                    "Queued like `airfsm publish`; prints the message id.")
    _add_locating_options(p)
    p.add_argument("inbox_id", metavar="INBOX_ID", type=_message_id,
                   help="the request's id in `airfsm inbox`")
    p.add_argument("--code", type=_alink_code, default=alink.CODE_OK,
                   help="the Alink result code (default 200: success)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--data", default=None, metavar="JSON",
                      help="the reply's data, JSON (default {})")
    what.add_argument("--payload", default=None, metavar="TEXT",
                      help="RRPC only: the response exactly as given, for a format of your own")
    p.add_argument("--qos", type=_qos, default=1, help="0 or 1 (default 1)")
    p.add_argument("--outbox-capacity", default=None, help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_reply)

    p = add_command(
        sub, "outbox",
        description="Print the outbox (oldest first) as JSON lines: id, topic, payload, "
                    "payload_encoding, qos, attempts. A message whose attempts ran out without "
                    "a PUBACK is moved to the dead letters (--dead, with reason and died_at); "
                    "--retry ID puts one back at the tail of the queue with a new id and a "
                    "fresh attempt budget, and prints the new id; --discard ID deletes one.")
    _add_locating_options(p)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--dead", action="store_true", help="list the dead letters instead")
    what.add_argument("--retry", type=_message_id, default=None, metavar="ID",
                      help="move dead letter ID back to the queue")
    what.add_argument("--discard", type=_message_id, default=None, metavar="ID",
                      help="delete dead letter ID for good")
    p.add_argument("--outbox-capacity", default=None, help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_outbox)

    p = add_command(sub, "status",
                    description="Print the gateway's status, checked against what is true now "
                                "(whether the gateway runs, whether its port is there). Exit 0 "
                                "when the gateway is running, 1 when it is not (or never ran "
                                "here).")
    _add_locating_options(p)
    p.add_argument("--json", action="store_true",
                   help="the status file as JSON, with 'running', 'condition' and 'online' "
                        "checked now and the ages computed")
    p.add_argument("--watch", "-w", action="store_true",
                   help="keep showing it: redrawn in place on a terminal, printed again on "
                        "every change otherwise (until interrupted)")
    p.add_argument("--interval", type=_interval, default=1.0, metavar="SECONDS",
                   help="how often --watch looks (default 1)")
    p.set_defaults(handler=cmd_status)
