"""The gateway: `airfsm run` holds the link for months; `publish`, `inbox`, `status` talk to it.

Host-only code (the MCU port has its own super-loop). One process owns the serial port and one
data directory:

    <data_dir>/airfsm.db      outbox + inbox (SQLite, WAL; `airfsm.host.store`)
    <data_dir>/status.json    what the gateway is doing (`airfsm status` prints it)
    <data_dir>/wake.sock      unix datagram socket: `airfsm publish` pokes it after enqueuing
    <data_dir>/gateway.lock   flock()ed while a gateway runs: one gateway per data directory

The loop is `airfsm.host.loop.run`: the process sleeps in `select()` on the port, the wake
socket and a self-pipe that signal handlers write to (`signal.set_wakeup_fd`), until data
arrives or the controller's next deadline is due. Nothing polls faster than once a second when idle.

What the gateway adds to the controller's own recovery (`airfsm.core.table`):

* the serial port vanishing (USB unplugged): close it, reopen with backoff 1 s .. 30 s, then
  `Controller.replace_port` (-> AUTOBAUD);
* FAILED: firmware too old or credentials rejected are permanent (exit 4 / 5, systemd does not
  restart); a module that does not answer AT at all (NO_RESPONSE) is *not* fatal for a
  months-long gateway: reopen the port and start a fresh controller after a backoff of
  10 s .. 5 min, forever; an internal error exits 70 so systemd restarts the process;
* SIGTERM / SIGINT: finish the publish in flight within `shutdown_grace_s`, `AT+MDISCONNECT`,
  close the port, exit 0 (a second signal stops at once); SIGHUP reloads the log level.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import select
import shlex
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from airfsm.core import aliyun
from airfsm.core.aliyun import resolve_topic
from airfsm.core.codes import AuthMode, FailReason, OutboxStatus, Reason, State
from airfsm.core.controller import Controller, WallClock
from airfsm.core.messages import InboundMessage, OutboundMessage
from airfsm.core.settings import Settings
from airfsm.core.table import MACHINE, StateSpec
from airfsm.core.timebase import Xorshift32, backoff_ms, ms_add, ms_diff, ms_reached, seed_from_text
from airfsm.host import alink, log, progress, reasons
from airfsm.host.alink_gateway import AlinkTracker, late_reason
from airfsm.host.config import ConfigError, GatewayConfig, load_config
from airfsm.host.errors import Exit, HostError, fail_exit
from airfsm.host.loop import monotonic_ms
from airfsm.host.loop import run as run_loop
from airfsm.host.paths import LOCK_FILE
from airfsm.host.publish import wake_socket_path
from airfsm.host.secret_file import SecretFileError, read_device_secret, store_device_secret
from airfsm.host.serial import Port, PortError, open_port
from airfsm.host.store import (
    OutboxFull,
    SqliteInbox,
    SqliteOutbox,
    StatusFile,
    StoreError,
    db_path,
    inbox_json_line,
    iso_utc,
)
from airfsm.host.store_faults import STORE_FAULT_ENV, StoreFaults, store_faults_from
from airfsm.host.systemd import Notifier, child_environment

OUTBOX_POLL_MS = 1_000  # fallback when the wake socket is unusable; the loop wakes 1/s anyway
STATUS_MIN_INTERVAL_S = 2.0  # counters change: rewrite the status file at most this often
STATUS_HEARTBEAT_S = 30.0  # nothing changed: still rewrite it this often (`updated_at`)
REOPEN_BACKOFF_MS = (1_000, 30_000)  # the serial port vanished: reopen attempts
RESTART_BACKOFF_MS = (10_000, 300_000)  # the module does not answer AT: fresh controller
STORE_ERROR_LOG_S = 60.0  # a broken store is logged at most this often per operation
STOP_MDISCONNECT_WAIT_MS = 500  # grace expired with a publish in flight: still say goodbye
RESET_COMMAND_TIMEOUT_S = 10  # a reset command that hangs must not stop the gateway for good
TICK_BUSY_TIMEOUT_MS = 0  # the gateway's own store calls never wait for another process's lock
INBOX_PENDING_MAX = 1_000  # inbound messages held in memory while the store refuses them
LOCK_PROBE_RETRIES = 20  # the lock is busy: a status reader's probe, or another gateway ...
LOCK_PROBE_WAIT_S = 0.01  # ... which still holds it after 20 tries 10 ms apart


MessageCallback = Callable[[InboundMessage, int | None], None]
# What the module says about itself and its network, as the controller's snapshot names it
# (AT+CGSN, AT+CCID, AT+COPS?, AT+CEREG?); null until read, the status then shows "?".
MODULE_FIELDS = ("imei", "iccid", "operator", "registration", "access_technology")


# ---------------------------------------------------------------------- helpers


def _iso_or_none(timestamp: float | None) -> str | None:
    return None if timestamp is None else iso_utc(timestamp)


def _merge_counts(base: Mapping[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """Counter dicts added key by key (nested dicts too): totals across controller restarts."""
    out: dict[str, Any] = dict(base)
    for key, value in more.items():
        old = out.get(key)
        if isinstance(value, Mapping):
            out[key] = _merge_counts(old if isinstance(old, Mapping) else {}, value)
        elif isinstance(value, int) and isinstance(old, int) and not isinstance(value, bool):
            out[key] = old + value
        else:
            out[key] = value
    return out


class _RateLimitedLog:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}

    def due(self, key: str) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return False
        self._last[key] = now
        return True



class GatewayOutbox:
    """The controller's view of the SQLite outbox (`airfsm.core.outbox.Outbox`).

    Resolves relative topics (a library user may have enqueued one directly), applies injected
    store faults, and reports store trouble (locked by another process, disk full, read-only)
    to `on_error(operation, error)` as it answers OutboxStatus.UNAVAILABLE, the words kept in
    `last_error`: the controller then backs off and asks again, never sending a message twice
    or losing one because of it. The store should be opened with `busy_timeout_ms=0`, so that
    no call waits for a lock inside the tick.

    A message enqueued here (the bridge, a library user) is logged `message_queued` with its
    id; the rest of its way is logged by the controller, which decides it: `publish_sent`
    (attempt n of m), `publish_acked` (PUBACK, or OK for QoS 0), `publish_failed` (why an
    attempt failed), `publish_dead`. It remembers when the last PUBACK came (status).
    """

    def __init__(self, store: SqliteOutbox, product_key: str, device_name: str,
                 on_error: Callable[[str, str], None],
                 faults: StoreFaults | None = None, *, logger: Any = None,
                 alink: AlinkTracker | None = None) -> None:
        self.store = store
        self.alink = alink  # stamps NTP requests as they go, hears of acked property posts
        self.product_key = product_key
        self.device_name = device_name
        self._on_error = on_error
        self._faults = faults
        self._log = logger if logger is not None else log.get_logger("airfsm.host.gateway")
        self._head: OutboundMessage | None = None  # the latest peek: an ack's qos and topic
        self.last_puback_at: float | None = None  # wall-clock time of the latest PUBACK
        self.last_error = ""  # why the latest call that answered UNAVAILABLE could not work

    def _refused(self, operation: str) -> bool:
        """True when an injected fault refuses `operation` (then reported like the store's)."""
        if self._faults is None:
            return False
        try:
            self._faults.check(operation, self.store.path)
        except StoreError as exc:
            self._unavailable(operation, str(exc))
            return True
        return False

    def _unavailable(self, operation: str, error: str) -> OutboxStatus:
        self.last_error = error
        self._on_error(operation, error)
        return OutboxStatus.UNAVAILABLE

    def _answer(self, operation: str, status: OutboxStatus) -> OutboxStatus:
        """The store's answer, its trouble reported."""
        if status == OutboxStatus.UNAVAILABLE:
            return self._unavailable(operation, self.store.last_error)
        return status

    def peek(self) -> tuple[OutboxStatus, OutboundMessage | None]:
        """C: outbox_peek() of a host store. Priority messages past their deadline are
        dead-lettered first (`_expire_overdue`); the message to be sent is what the Alink
        tracker makes of it (an NTP request gets the current time)."""
        if self._refused("peek"):
            return OutboxStatus.UNAVAILABLE, None
        status, message = self.store.peek()
        if status != OutboxStatus.UNAVAILABLE and self.store.overdue(time.time()) and (
                self._expire_overdue()):
            status, message = self.store.peek()
        if message is not None and not message.topic.startswith("/"):
            message = replace(message, topic=resolve_topic(self.product_key, self.device_name,
                                                           message.topic))
        if status == OutboxStatus.UNAVAILABLE:
            return self._answer("peek", status), None
        if message is not None and self.alink is not None:
            message = self.alink.on_sending(message)
        self._head = message
        return status, message

    # The priority lane (RRPC answers, NTP requests): sent before the normal queue; what is
    # still queued past its deadline is dead-lettered, not sent.

    def enqueue_priority(self, topic: str, data: bytes, qos: int,
                         deadline_at: float | None = None) -> int:
        topic = resolve_topic(self.product_key, self.device_name, topic)
        message_id = self.store.enqueue_priority(topic, data, qos, deadline_at)
        self._log.info("message_queued", id=message_id, topic=topic, qos=qos, bytes=len(data),
                       lane="priority",
                       deadline=None if deadline_at is None else iso_utc(deadline_at))
        return message_id

    def _expire_overdue(self) -> bool:
        """The priority messages past their deadline go to the dead letters; True when some
        did (a store that refuses now is asked again at the next look)."""
        try:
            expired = self.store.expire_overdue(time.time(), late_reason)
        except StoreError as exc:
            self._on_error("expire", str(exc))
            return False
        for message_id in expired:
            self._log.warning("publish_dead", id=message_id, lane="priority",
                              reason="deadline passed")
        return bool(expired)

    def _known(self, message_id: int) -> OutboundMessage | None:
        head = self._head
        return head if head is not None and head.id == message_id else None

    def ack(self, message_id: int) -> OutboxStatus:
        """C: outbox_ack() of a host store."""
        if self._refused("ack"):
            return OutboxStatus.UNAVAILABLE
        status = self._answer("ack", self.store.ack(message_id))
        if status == OutboxStatus.OK:
            message = self._known(message_id)
            qos = message.qos if message is not None else None
            if qos != 0:
                self.last_puback_at = time.time()
            if self.alink is not None:
                self.alink.on_acked(message)
        return status

    def mark_attempt(self, message_id: int) -> tuple[OutboxStatus, int]:
        """C: outbox_mark_attempt() of a host store."""
        if self._refused("mark_attempt"):
            return OutboxStatus.UNAVAILABLE, 0
        status, attempts = self.store.mark_attempt(message_id)
        return self._answer("mark_attempt", status), attempts

    def dead_letter(self, message_id: int, reason: Reason, detail: int) -> OutboxStatus:
        """C: outbox_dead_letter() of a host store."""
        if self._refused("dead_letter"):
            return OutboxStatus.UNAVAILABLE
        return self._answer("dead_letter", self.store.dead_letter(message_id, reason, detail))

    def enqueue(self, topic: str, data: bytes, qos: int) -> int:
        topic = resolve_topic(self.product_key, self.device_name, topic)
        message_id = self.store.enqueue(topic, data, qos)
        self._log.info("message_queued", id=message_id, topic=topic, qos=qos, bytes=len(data))
        return message_id

    def __len__(self) -> int:
        try:
            return self.store.count()
        except StoreError as exc:
            self._on_error("count", str(exc))
            return 0


# ---------------------------------------------------------------------- the gateway


def device_secret_of(config: GatewayConfig) -> str:
    """The DeviceSecret to sign with: the configured one, else the one a dynamic registration
    stored in the data directory, else "" (PROVISION will register the device). HostError
    (exit 2, never the secret) when the stored one is unreadable."""
    if config.device_secret or not config.product_secret:
        return config.device_secret
    try:
        return read_device_secret(config.data_dir_or_default()) or ""
    except SecretFileError as exc:
        raise HostError(f"bad configuration: {exc}", Exit.USAGE) from None


def registered_secret_keeper(config: GatewayConfig, logger: Any) -> Callable[[str], None]:
    """The controller's `on_registered`: store the DeviceSecret a registration earned in the
    data directory (mode 0600, atomically) for every later start. Never logs the value."""
    def keep(secret: str) -> None:
        try:
            path = store_device_secret(config.data_dir_or_default(), secret)
        except SecretFileError as exc:
            logger.error("device_secret_not_stored", error=str(exc))
            raise
        logger.warning("device_registered", product_key=config.product_key,
                       device_name=config.device_name, secret_file=str(path))
    return keep


def settings_from_config(config: GatewayConfig, **extra: Any) -> Settings:
    """The controller's Settings for a configuration (`run` and `connect` alike); `extra` are
    more Settings fields. HostError (exit 2) if unusable."""
    identity = aliyun.DeviceIdentity(
        product_key=config.product_key, device_name=config.device_name,
        device_secret=device_secret_of(config), region=config.region,
        client_id=config.client_id, product_secret=config.product_secret or "",
        instance_id=config.instance_id)
    auth_mode = AuthMode.MQTT_SIGN if config.auth == "mqtt-sign" else AuthMode.HTTPS
    settings = Settings(
        identity=identity, auth_mode=auth_mode, apn=config.apn, sign_method=config.sign_method,
        baud=config.baud,
        keepalive_s=config.keepalive_s, liveness_ms=config.liveness_s * 1000,
        puback_timeout_ms=config.puback_timeout_s * 1000, silence_limit=config.silence_limit,
        publish_attempts=config.publish_attempts,
        watchdog_ms=config.watchdog_s * 1000, outbox_poll_ms=OUTBOX_POLL_MS,
        subscribe=config.subscriptions(), **extra)
    try:
        settings.validate()
    except ValueError as exc:
        raise HostError(f"bad configuration: {log.redact(str(exc))}", Exit.USAGE) from None
    return settings


class Gateway:
    """One `airfsm run`: the controller, the port, the stores, signals and the status file.

    Library use: `Gateway(config, on_message=callback).run()` blocks until stopped and returns
    the exit code; `on_message(message, inbox_id)` is called for every `+MSUB:` message after
    it was stored. `request_stop()` may be called from a signal handler or another thread.
    `install_signals=False` leaves signal handling to the caller (required off the main thread).
    `table` is the machine table (tests shorten policies with it).
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        config_path: Path | None = None,
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        on_message: MessageCallback | None = None,
        inbox_out: TextIO | None = None,
        port_opener: Callable[[str, int], Port] = open_port,
        clock: Callable[[], int] = monotonic_ms,
        install_signals: bool = True,
        table: tuple[StateSpec, ...] = MACHINE,
        wall_clock_ms: WallClock | None = None,
    ) -> None:
        self.config = config
        self.table = table
        # The controller's `wall_clock_ms` hook (Unix ms or None while unknown): the timestamp
        # of the auth form and of the direct MQTT sign. None: with `ntp = true` the
        # NTP-corrected wall clock (`_sign_clock`), else nothing is timestamped.
        self.wall_clock_ms = wall_clock_ms
        self.settings = settings_from_config(config)
        self.config_path = config_path
        self.overrides = dict(overrides or {})
        self.env = dict(os.environ if env is None else env)
        self.on_message = on_message
        self.inbox_out = inbox_out
        self.port_opener = port_opener
        self.clock = clock
        self.install_signals = install_signals
        self.data_dir = config.data_dir_or_default()
        self.log = log.get_logger("airfsm.host.gateway")
        self.store_faults = store_faults_from(self.env)
        self.notifier = Notifier(self.env)  # systemd's Type=notify; does nothing without it
        self._metrics_server: Any = None  # host.metrics.MetricsServer with metrics_listen
        self.bridge: Any = None  # host.bridge.MqttBridge with --bridge
        # Alink: post replies, cloud requests, RRPC deadlines, NTP (`host.alink_gateway`).
        self.alink = AlinkTracker(config.product_key, config.device_name, ntp=config.ntp,
                                  ntp_interval_s=config.ntp_interval_s,
                                  rrpc_timeout_ms=config.rrpc_timeout_s * 1000, logger=self.log)

        self.controller: Controller | None = None
        self.outbox: SqliteOutbox | None = None
        self.inbox: SqliteInbox | None = None
        self.status_file = StatusFile(self.data_dir)
        self.exit_code: Exit | None = None
        self.exit_reason = ""

        # Jitter differs per device (fleets spread out) but is reproducible for one device.
        self._rng = Xorshift32(seed_from_text(config.device_name))
        self._port: Port | None = None
        self._lock_fd: int | None = None
        self._wake_sock: socket.socket | None = None
        self._pipe_r = -1
        self._pipe_w = -1
        self._old_handlers: dict[int, Any] = {}
        self._old_wakeup_fd: int | None = None
        self._stop_requested = False
        self._hard_stop = False
        self._reload_requested = False
        self._store_errors = _RateLimitedLog(STORE_ERROR_LOG_S)
        self._inbox_pending: deque[InboundMessage] = deque()  # received, not yet stored

        self.started_at = time.time()
        self._since = self.started_at
        self._base_counters: dict[str, Any] = {}  # totals of controllers already replaced
        self.gateway_counters: dict[str, int] = {
            "port_reopens": 0, "module_restarts": 0, "inbox_stored": 0, "inbox_errors": 0,
            "store_errors": 0, "status_errors": 0, "log_reloads": 0}
        self._restart_streak = 0  # NO_RESPONSE restarts since ONLINE was last reached
        self._status_dirty = True
        self._status_last_write = 0.0
        self._status_last_body: str | None = None
        self._notice = ""  # what the gateway itself is waiting for (port, restart)
        # The wall-clock time of the controller's latest signal reading, by its clock's ms.
        self._signal_wall: tuple[int, str] | None = None
        self._view: GatewayOutbox | None = None
        self._port_lost_at: float | None = None  # when the serial port was seen gone
        self._restart_at: float | None = None  # the mute module: when the gateway starts over
        self._stopping = False  # a stop signal came: finishing the publish in flight

    # ------------------------------------------------------------------ public

    def request_stop(self) -> None:
        """Stop soon (graceful); a second call stops at once. Safe from signal handlers."""
        if self._stop_requested:
            self._hard_stop = True
        self._stop_requested = True
        self._wake()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake()

    def run(self) -> Exit:
        """Run until stopped or a permanent failure; return the exit code (reason in
        `exit_reason`). HostError for what prevents starting at all."""
        try:
            self._start()
            code = self._main()
        except HostError:
            self._release()
            raise
        except BaseException:
            self._finish_status(Exit.INTERNAL, "crashed")
            self._release()
            raise
        self._finish_status(code, self.exit_reason)
        self._release()
        return code

    # ------------------------------------------------------------------ start and stop

    def _start(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HostError(f"cannot create data directory {self.data_dir}: {exc.strerror}",
                            Exit.FAILURE) from None
        self._lock()
        try:
            # Opening may wait for other processes; afterwards no call of ours ever does.
            self.outbox = SqliteOutbox(db_path(self.data_dir), self.config.outbox_capacity,
                                       busy_timeout_ms=TICK_BUSY_TIMEOUT_MS)
            self.inbox = SqliteInbox(db_path(self.data_dir), self.config.inbox_capacity,
                                     busy_timeout_ms=TICK_BUSY_TIMEOUT_MS)
        except StoreError as exc:
            self._release()
            raise HostError(str(exc), Exit.FAILURE) from None
        self._start_metrics()
        self._start_bridge()
        self._pipe_r, self._pipe_w = os.pipe()
        for fd in (self._pipe_r, self._pipe_w):
            os.set_blocking(fd, False)
        self._bind_wake_socket()
        try:
            self._port = self.port_opener(self.config.port, self.config.baud)
        except PortError as exc:
            self._release()
            raise HostError(str(exc), Exit.PORT) from None
        if self.install_signals:
            self._install_signals()
        self.log.info("gateway_start", pid=os.getpid(), port=self.config.port,
                      data_dir=str(self.data_dir), product_key=self.config.product_key,
                      device_name=self.config.device_name, outbox=self._outbox_count())
        if self.store_faults is not None:
            self.log.warning("store_faults_injected", spec=self.env.get(STORE_FAULT_ENV))
        self._new_controller()
        self.notifier.ready(self._notify_text(self.status()))

    def _lock(self) -> None:
        path = self.data_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise HostError(f"cannot open {path}: {exc.strerror}", Exit.FAILURE) from None
        try:
            self._take_lock(fd)
        except OSError as exc:
            other = ""
            with contextlib.suppress(OSError, ValueError):
                other = os.pread(fd, 32, 0).decode("ascii").strip()
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                who = f" (pid {other})" if other else ""
                raise HostError(f"another gateway{who} is already running with data directory "
                                f"{self.data_dir}", Exit.FAILURE) from None
            raise HostError(f"cannot lock {path}: {exc.strerror}", Exit.FAILURE) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._lock_fd = fd

    def _start_metrics(self) -> None:
        """`/metrics` on metrics_listen (prometheus-client, imported only then)."""
        if self.config.metrics_listen is None:
            return
        try:
            from airfsm.host.metrics import MetricsServer

            self._metrics_server = MetricsServer(self.config.metrics_listen)
        except ImportError as exc:
            self._release()
            raise HostError("metrics_listen needs prometheus-client (pip install "
                            f"'airfsm[metrics]'): {exc}", Exit.USAGE) from None
        except OSError as exc:
            self._release()
            raise HostError(f"metrics_listen {self.config.metrics_listen}: "
                            f"{exc.strerror or exc}", Exit.FAILURE) from None
        self.log.info("metrics_listening", address=self.config.metrics_listen,
                      port=self._metrics_server.port)

    def _start_bridge(self) -> None:
        """--bridge: the local MQTT broker (paho-mqtt, imported only then). A broker that is
        not there yet is not an error: the bridge keeps trying."""
        address = self.config.bridge_address()
        if address is None:
            return
        try:
            from airfsm.host.bridge import MqttBridge
        except ImportError as exc:
            self._release()
            raise HostError("--bridge needs paho-mqtt (pip install 'airfsm[bridge]'): "
                            f"{exc}", Exit.USAGE) from None
        self.bridge = MqttBridge(
            address[0], address[1], self.config.expand(self.config.bridge_prefix),
            f"airfsm-bridge-{self.config.device_name}", enqueue=self._bridge_enqueue,
            logger=self.log, on_up=self._wake)
        self.bridge.start()

    def _bridge_enqueue(self, topic: str, payload: bytes, qos: int) -> int:
        """An up message from the local broker into the outbox (the controller's own view,
        so it is logged like any other); the store's trouble is StoreError."""
        if self._view is None:
            raise StoreError("the outbox is not open yet")
        try:
            rrpc = self._rrpc_answered(topic)
            if rrpc is not None:
                return self._view.enqueue_priority(topic, payload, qos,
                                                   self.alink.rrpc_deadline(rrpc))
            return self._view.enqueue(topic, payload, qos)
        except StoreError as exc:
            self._store_error("bridge", str(exc))
            raise

    def _rrpc_answered(self, topic: str) -> str | None:
        """The messageId when `topic` is this device's RRPC response topic."""
        prefix = alink.rrpc_response_topic(self.config.product_key, self.config.device_name, "")
        message_id = topic[len(prefix):] if topic.startswith(prefix) else ""
        return message_id if message_id and "/" not in message_id else None

    def _publish_metrics(self, status: Mapping[str, Any]) -> None:
        """The textfile and the /metrics endpoint follow the status file."""
        if self._metrics_server is not None:
            self._metrics_server.update(status)
        path = self.config.metrics_textfile
        if path is None:
            return
        from airfsm.host.metrics import render, write_textfile

        try:
            write_textfile(path, render(status))
        except OSError as exc:
            self.gateway_counters["status_errors"] += 1
            if self._store_errors.due("metrics"):
                self.log.error("metrics_write_failed", path=str(path),
                               error=exc.strerror or str(exc))

    @staticmethod
    def _take_lock(fd: int) -> None:
        """flock(LOCK_EX) without waiting for another gateway, but past a status reader: one
        that probes the lock holds it, shared, for a few microseconds (`status.gateway_running`).
        OSError when another gateway holds it."""
        for _ in range(LOCK_PROBE_RETRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                time.sleep(LOCK_PROBE_WAIT_S)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _bind_wake_socket(self) -> None:
        path = wake_socket_path(self.data_dir)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a stale one from a gateway that was killed: we hold the lock
            sock.bind(str(path))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            # e.g. a path longer than sun_path (108 bytes): the 1 s outbox poll still works
            self.log.warning("wake_socket_unavailable", path=str(path),
                             error=exc.strerror or str(exc))
            return
        self._wake_sock = sock

    def _install_signals(self) -> None:
        def on_stop(_signum: int, _frame: FrameType | None) -> None:
            self.request_stop()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self.request_reload()

        for signum, handler in ((signal.SIGTERM, on_stop), (signal.SIGINT, on_stop),
                                (signal.SIGHUP, on_hup)):
            self._old_handlers[signum] = signal.signal(signum, handler)
        # A signal arriving while we sleep in select() writes a byte here, so select returns
        # (PEP 475 would otherwise resume the sleep after running the handler).
        self._old_wakeup_fd = signal.set_wakeup_fd(self._pipe_w, warn_on_full_buffer=False)

    def _release(self) -> None:
        if self._old_wakeup_fd is not None:
            with contextlib.suppress(ValueError, OSError):
                signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None
        for signum, handler in self._old_handlers.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, handler)
        self._old_handlers.clear()
        port, self._port = self._port, None
        if self.controller is not None:
            with contextlib.suppress(Exception):
                self.controller.port.close()
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()
        if self._wake_sock is not None:
            self._wake_sock.close()
            self._wake_sock = None
            with contextlib.suppress(OSError):
                wake_socket_path(self.data_dir).unlink()
        for fd in (self._pipe_r, self._pipe_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._pipe_r = self._pipe_w = -1
        for store in (self.outbox, self.inbox):
            if store is not None:
                store.close()
        self.notifier.close()
        if self.bridge is not None:
            with contextlib.suppress(Exception):
                self.bridge.close()
            self.bridge = None
        if self._metrics_server is not None:
            self._metrics_server.close()
            self._metrics_server = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # ------------------------------------------------------------------ the main loop

    def _new_controller(self) -> Controller:
        assert self.outbox is not None and self._port is not None
        if self.controller is not None:
            self._base_counters = _merge_counts(self._base_counters,
                                                self._controller_counters(self.controller))
            self.controller.close()  # its model leaves the shared transitions Machine
        if self._view is None:  # one for the life of the gateway: it remembers the last PUBACK
            self._view = GatewayOutbox(self.outbox, self.config.product_key,
                                       self.config.device_name, self._store_error,
                                       self.store_faults, logger=self.log, alink=self.alink)
        self.controller = Controller(
            self._port, self.settings, now_ms=self.clock(), outbox=self._view,
            on_message=self._on_inbound, on_state=self._on_state, table=self.table,
            log_hook=log.CORE_LOG, wall_clock_ms=self._sign_clock(),
            on_registered=self._registered,
            hardware_reset=self._pulse_reset_pin if self.config.reset_command else None)
        self._since = time.time()
        self._status_dirty = True
        return self.controller

    def _registered(self, secret: str) -> None:
        """PROVISION earned the DeviceSecret: keep it in the data directory, and sign with it
        from now on (a later controller of this gateway starts with it)."""
        registered_secret_keeper(self.config, self.log)(secret)
        self.settings.identity = replace(self.settings.identity, device_secret=secret)

    def _pulse_reset_pin(self) -> None:
        """Run `reset_command` (the board's way of pulsing RESET). Bounded; never raises."""
        command = self.config.reset_command or ""
        try:
            # A clean environment: the DeviceSecret and the credential directory stay here.
            done = subprocess.run(shlex.split(command), capture_output=True,
                                  timeout=RESET_COMMAND_TIMEOUT_S, check=False,
                                  env=child_environment(self.env), stdin=subprocess.DEVNULL)
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            self.log.error("reset_command_failed", command=command, error=str(exc))
            return
        if done.returncode != 0:
            self.log.error("reset_command_failed", command=command, exit_code=done.returncode,
                           stderr=done.stderr.decode("utf-8", "replace").strip()[-200:])
        else:
            self.log.warning("reset_pin_pulsed", command=command)

    def _main(self) -> Exit:
        while True:
            controller = self.controller
            assert controller is not None
            run_loop(controller, until=self._needs_attention, extra_fds=self._fds,
                     on_wake=self._on_wake, clock=self.clock)
            if self._stop_requested:
                return self._graceful_stop(controller)
            if controller.failed:
                code = self._on_failed(controller)
                if code is not None:
                    return code
                continue
            if controller.port_lost:
                self.log.warning("port_vanished", port=self.config.port,
                                 state=controller.state.name)
                self._port_lost_at = time.time()
                port = self._reopen_port(controller.port)
                if port is None:  # stopped while waiting
                    return self._stopped(Exit.OK, "stopped while the serial port was gone")
                self._port = port
                controller.replace_port(port, self.clock())
                self._port_lost_at = None
                self.gateway_counters["port_reopens"] += 1
                self._status_dirty = True

    def _needs_attention(self) -> bool:
        c = self.controller
        return self._stop_requested or c is None or c.failed or c.port_lost

    def _fds(self) -> list[int]:
        fds = [self._pipe_r]
        if self._wake_sock is not None:
            fds.append(self._wake_sock.fileno())
        if self.bridge is not None:
            bridge_fd = self.bridge.fileno()  # changes when it reconnects
            if bridge_fd is not None:
                fds.append(bridge_fd)
        return fds

    def _wake(self) -> None:
        if self._pipe_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._pipe_w, b"!")

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._pipe_r, 512):
                pass
        if self._wake_sock is not None:
            with contextlib.suppress(OSError):
                while self._wake_sock.recv(64):
                    pass

    def _on_wake(self, now: int) -> None:
        self.notifier.watchdog(now)
        self._drain()
        if self.bridge is not None:
            self.bridge.service()
        if self._inbox_pending:
            self._store_inbound()
        if self._reload_requested:
            self._reload_requested = False
            self._reload_log_level()
        self._maybe_request_ntp()
        self._maybe_write_status()

    def _sleep(self, delay_ms: int) -> bool:
        """Wait `delay_ms` (status kept fresh, signals honoured); False if a stop came."""
        deadline = ms_add(self.clock(), delay_ms)
        while not self._stop_requested:
            now = self.clock()
            if ms_reached(now, deadline):
                return True
            timeout = min(ms_diff(deadline, now), 1_000) / 1000
            with contextlib.suppress(InterruptedError, OSError, ValueError):
                select.select(self._fds(), [], [], timeout)
            self._on_wake(now)
        return False

    def _reopen_port(self, old: Port | None) -> Port | None:
        """Close the lost port and open it again with backoff; None if stopped meanwhile."""
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        attempt = 0
        while True:
            attempt += 1
            delay = backoff_ms(attempt, REOPEN_BACKOFF_MS[0], REOPEN_BACKOFF_MS[1], self._rng)
            self._notice = f"reopening {self.config.port} (attempt {attempt})"
            self._status_dirty = True
            if not self._sleep(delay):
                return None
            try:
                port = self.port_opener(self.config.port, self.config.baud)
            except PortError as exc:
                self.log.warning("port_reopen_failed", attempt=attempt, error=str(exc))
                continue
            self._notice = ""
            self.log.info("port_reopened", port=self.config.port, attempt=attempt)
            return port

    def _on_failed(self, controller: Controller) -> Exit | None:
        reason = controller.fail_reason
        detail = log.redact(reasons.fail_text(controller) or reason.name.lower())
        # FIRMWARE and CREDENTIALS are permanent: exit with connect's code. NO_RESPONSE is not,
        # for a gateway: start over below.
        code = None if reason == FailReason.NO_RESPONSE else fail_exit(reason)
        if code is not None:
            self.log.error("gateway_failed", reason=reason.name, detail=detail,
                           exit_code=int(code))
            return self._stopped(code, detail)
        # NO_RESPONSE: the module is mute (powered off, wrong baud, hung). Not permanent.
        self._restart_streak += 1
        self.gateway_counters["module_restarts"] += 1
        delay = backoff_ms(self._restart_streak, RESTART_BACKOFF_MS[0], RESTART_BACKOFF_MS[1],
                           self._rng)
        self.log.error("module_not_responding", detail=detail, restart_in_ms=delay,
                       restarts=self._restart_streak)
        self._notice = f"module not responding: starting over in {delay // 1000} s"
        self._restart_at = time.time() + delay / 1000
        self._status_dirty = True
        with contextlib.suppress(Exception):
            controller.port.close()
        if not self._sleep(delay):
            return self._stopped(Exit.OK, "stopped while waiting for the module")
        port = self._reopen_port_now_or_later()
        if port is None:
            return self._stopped(Exit.OK, "stopped while the serial port was gone")
        self._port = port
        self._notice = ""
        self._restart_at = None
        self._new_controller()
        return None

    def _reopen_port_now_or_later(self) -> Port | None:
        try:
            return self.port_opener(self.config.port, self.config.baud)
        except PortError:
            self._port_lost_at = time.time()
            port = self._reopen_port(None)
            self._port_lost_at = None
            return port

    def _graceful_stop(self, controller: Controller) -> Exit:
        grace_ms = int(self.config.shutdown_grace_s * 1000)
        self.log.info("gateway_stopping", state=controller.state.name, grace_ms=grace_ms)
        self._stopping = True
        self._status_dirty = True
        self.notifier.stopping(f"stopping: finishing the publish in flight (up to {grace_ms} ms)")
        self._maybe_write_status()
        controller.request_stop()
        if not controller.port_lost and not controller.stopped and not self._hard_stop:
            run_loop(controller,
                     until=lambda: controller.stopped or controller.port_lost or self._hard_stop,
                     deadline_ms=ms_add(self.clock(), grace_ms), extra_fds=self._fds,
                     on_wake=self._on_wake, clock=self.clock)
        if controller.online and not controller.stopped and not controller.port_lost:
            # Grace ran out with a publish still unacknowledged: it stays in the outbox and is
            # sent again next time. Still end the MQTT session politely, best effort.
            self.log.warning("shutdown_grace_expired", in_flight=controller.pub_phase.name)
            with contextlib.suppress(Exception):
                controller.port.write(b"AT+MDISCONNECT\r")
        how = "clean" if controller.stopped else "grace expired"
        return self._stopped(Exit.OK, f"stopped by signal ({how})")

    def _stopped(self, code: Exit, reason: str) -> Exit:
        self.exit_code = code
        self.exit_reason = reason
        self._store_inbound()
        while self._inbox_pending:  # the store still refuses: hand them on, say so
            message = self._inbox_pending.popleft()
            self.gateway_counters["inbox_errors"] += 1
            self.log.error("inbox_store_failed", topic=message.topic, error="store unavailable "
                           "at shutdown")
            self._hand_on(message, None)
        self.log.info("gateway_stop", exit_code=int(code), reason=reason,
                      outbox=self._outbox_count())
        return code

    # ------------------------------------------------------------------ callbacks

    def _on_state(self, source: State, dest: State, trigger: str) -> None:
        self._since = time.time()
        self._status_dirty = True
        if dest == State.ONLINE:
            self._restart_streak = 0
            self.alink.on_online()
        elif source == State.ONLINE:
            self.alink.on_offline()

    def _on_inbound(self, topic: str, payload: bytes) -> None:
        message = InboundMessage(topic=topic, payload=payload, received_at=time.time())
        try:
            self.alink.on_inbound(topic, payload, message.received_at)
        except Exception as exc:  # bookkeeping only: never the tick's problem
            self.log.error("alink_tracking_failed", error=f"{type(exc).__name__}: {exc}")
        self._inbox_pending.append(message)
        self._store_inbound()

    def _sign_clock(self) -> WallClock | None:
        """The clock the controller timestamps its signs by: the one given, else with
        `ntp = true` the NTP-corrected wall clock (the local one until the first answer),
        else none (nothing timestamped, as before NTP)."""
        if self.wall_clock_ms is not None:
            return self.wall_clock_ms
        return self.corrected_wall_clock_ms if self.config.ntp else None

    def corrected_wall_clock_ms(self) -> int:
        """Unix ms by the local clock corrected with the latest NTP skew (`ntp = true`; the
        local clock until the first measurement): the clock for timestamps the cloud checks,
        such as the auth sign's (the controller's `wall_clock_ms` hook)."""
        return self.alink.wall_clock_ms()

    def _maybe_request_ntp(self) -> None:
        """`ntp = true`: queue a time request when one is due (ONLINE, then daily)."""
        c = self.controller
        if self._view is None or not self.alink.ntp_request_due(c is not None and c.online):
            return
        topic, payload, qos = self.alink.ntp_request()
        try:
            self._view.enqueue_priority(topic, payload, qos)
        except (StoreError, OutboxFull, ValueError) as exc:
            self.alink.ntp_queued = False  # asked again after NTP_RETRY_S
            if self._store_errors.due("ntp"):
                self.log.warning("ntp_request_not_queued", error=str(exc))
            return
        self._wake()

    def _store_inbound(self) -> None:
        """Store the inbound messages waiting, in arrival order, and hand each on (stdout,
        `on_message`) once stored. This runs inside the tick, so the store never waits: while
        it refuses (locked, full) they wait in memory and are tried again at each wake-up;
        beyond INBOX_PENDING_MAX the oldest is handed on unstored, counted and logged."""
        while self._inbox_pending:
            message = self._inbox_pending[0]
            message_id: int | None = None
            try:
                if self.inbox is None:
                    raise StoreError("inbox is closed")
                if self.store_faults is not None:
                    self.store_faults.check("inbox", self.inbox.path)
                message_id = self.inbox.add(message.topic, message.payload, message.received_at)
                self.gateway_counters["inbox_stored"] += 1
            except StoreError as exc:
                self._store_error("inbox", str(exc))
                if len(self._inbox_pending) <= INBOX_PENDING_MAX:
                    return
                self.gateway_counters["inbox_errors"] += 1
                self.log.error("inbox_store_failed", topic=message.topic, error=str(exc))
            self._inbox_pending.popleft()
            self._hand_on(message, message_id)

    def _hand_on(self, message: InboundMessage, message_id: int | None) -> None:
        if self.bridge is not None:
            self.bridge.forward_down(message.topic, message.payload)
        if self.inbox_out is not None:
            try:
                line = inbox_json_line(message, message_id,
                                       alink=alink.describe(message.topic, message.payload))
                self.inbox_out.write(line + "\n")
                self.inbox_out.flush()
            except (OSError, ValueError) as exc:
                self.log.error("inbox_output_failed", error=str(exc))
                self.inbox_out = None  # a closed pipe stays closed: keep storing
        if self.on_message is not None:
            try:
                self.on_message(message, message_id)
            except Exception as exc:
                self.log.error("on_message_failed", error=f"{type(exc).__name__}: {exc}")

    def _store_error(self, operation: str, error: str) -> None:
        self.gateway_counters["store_errors"] += 1
        if self._store_errors.due(operation):
            self.log.error("store_error", operation=operation, error=error)

    def _reload_log_level(self) -> None:
        """SIGHUP: the config file's (and environment's) log_level, flags still winning."""
        try:
            fresh = load_config(self.config_path, self.env, self.overrides)
        except ConfigError as exc:
            self.log.error("reload_failed", error=str(exc),
                           kept_log_level=self.config.log_level)
            return
        self.config.log_level = fresh.log_level
        log.configure(fresh.log_level)
        self.gateway_counters["log_reloads"] += 1
        self.log.warning("log_level_reloaded", log_level=fresh.log_level)

    # ------------------------------------------------------------------ status

    def _outbox_count(self, dead: bool = False) -> int | None:
        """Messages queued (or dead letters); None when the store cannot say."""
        if self.outbox is None:
            return None
        try:
            return self.outbox.dead_count() if dead else self.outbox.count()
        except StoreError:
            return None

    def _oldest_enqueued_at(self) -> float | None:
        if self.outbox is None:
            return None
        try:
            return self.outbox.oldest_enqueued_at()
        except StoreError:
            return None

    @staticmethod
    def _controller_counters(controller: Controller) -> dict[str, Any]:
        counters = controller.counters.as_dict()
        counters["at"] = reasons.status(controller)["at"]
        return counters

    def status(self) -> dict[str, Any]:
        """The status file's contents (no secret in here; StatusFile redacts once more)."""
        c = self.controller
        snapshot = progress.snapshot(c) if c is not None else {}
        waiting = None
        if c is not None and not c.online and not c.failed and not c.port_lost:
            wait = progress.wait_of(c, self.clock())
            waiting = f"{wait.state} {wait.text()}"
        counters = _merge_counts(self._base_counters,
                                 self._controller_counters(c) if c is not None else {})
        counters["gateway"] = dict(self.gateway_counters)
        inbox_count: int | None = None
        if self.inbox is not None:
            with contextlib.suppress(StoreError):
                inbox_count = self.inbox.count()
        return {
            "pid": os.getpid(),
            "running": self.exit_code is None,
            "started_at": iso_utc(self.started_at),
            "updated_at": iso_utc(time.time()),
            "device": {"product_key": self.config.product_key,
                       "device_name": self.config.device_name,
                       "region": self.config.region, "port": self.config.port},
            "state": snapshot.get("state"),
            "since": iso_utc(self._since),
            "waiting": waiting,
            "stopping": self._stopping,
            "port_lost_since": _iso_or_none(self._port_lost_at),
            "restart_at": _iso_or_none(self._restart_at),
            "attempt": snapshot.get("attempt"),
            "step": snapshot.get("step"),
            "last_trigger": snapshot.get("last_trigger"),
            "last_error": snapshot.get("last_error"),
            "port_lost": snapshot.get("port_lost"),
            "notice": self._notice or None,
            "fail_reason": snapshot.get("fail_reason"),
            "fail_detail": snapshot.get("fail_detail"),
            "firmware": snapshot.get("firmware"),
            "rssi": snapshot.get("rssi"),
            "signal_at": self._signal_at(c),
            "ip": snapshot.get("ip"),
            **{key: snapshot.get(key) for key in MODULE_FIELDS},
            "outbox": {"queued": self._outbox_count(),
                       "dead_letters": self._outbox_count(dead=True),
                       "capacity": self.config.outbox_capacity,
                       "oldest_enqueued_at": _iso_or_none(self._oldest_enqueued_at()),
                       "last_puback_at": _iso_or_none(
                           self._view.last_puback_at if self._view is not None else None)},
            "inbox": {"stored": inbox_count, "capacity": self.config.inbox_capacity},
            "counters": counters,
            "bridge": self.bridge.status() if self.bridge is not None else None,
            "alink": self.alink.status(),
            "exit": None if self.exit_code is None else {
                "code": int(self.exit_code), "reason": self.exit_reason},
        }

    def _signal_at(self, controller: Controller | None) -> str | None:
        """When the signal in the status was read (ISO, UTC); None before the first reading.
        Made once per reading (the controller's clock is the gateway's `clock`), so the status
        file does not change while the reading does not."""
        if controller is None or not controller.signal_read:
            return None
        read_at = controller.signal_at
        if self._signal_wall is None or self._signal_wall[0] != read_at:
            ago_s = max(0, ms_diff(self.clock(), read_at)) / 1000
            self._signal_wall = (read_at, iso_utc(time.time() - ago_s))
        return self._signal_wall[1]

    def _maybe_write_status(self) -> None:
        now = time.monotonic()
        elapsed = now - self._status_last_write
        if not self._status_dirty and elapsed < STATUS_MIN_INTERVAL_S:
            return
        status = self.status()
        body = json.dumps({k: v for k, v in status.items() if k != "updated_at"},
                          sort_keys=True, default=str)
        if not self._status_dirty and body == self._status_last_body and (
                elapsed < STATUS_HEARTBEAT_S):
            return
        self._write_status(status)
        self.notifier.status(self._notify_text(status))
        self._status_last_body = body
        self._status_last_write = now
        self._status_dirty = False

    @staticmethod
    def _notify_text(status: Mapping[str, Any]) -> str:
        """systemd's STATUS= line: what `systemctl status airfsm` shows."""
        outbox = status.get("outbox") or {}
        if status.get("port_lost_since"):
            return f"serial port lost; {status.get('notice') or 'reopening'}"
        if status.get("notice"):
            return str(status["notice"])
        if status.get("state") == "ONLINE":
            return f"ONLINE, {outbox.get('queued')} queued, {outbox.get('dead_letters')} dead"
        return str(status.get("waiting") or status.get("state"))

    def _write_status(self, status: Mapping[str, Any]) -> None:
        self._publish_metrics(status)
        try:
            self.status_file.write(status)
        except StoreError as exc:
            self.gateway_counters["status_errors"] += 1
            if self._store_errors.due("status"):
                self.log.error("status_write_failed", error=str(exc))

    def _finish_status(self, code: Exit, reason: str) -> None:
        if self.exit_code is None:
            self.exit_code = code
            self.exit_reason = reason
        if self._lock_fd is None:
            return  # never started: do not overwrite another gateway's status
        with contextlib.suppress(Exception):
            self._write_status(self.status())


__all__ = ["Gateway", "GatewayOutbox", "settings_from_config"]
