"""`airfsm status`: what the gateway's status file says, checked against what is true now.

The file itself is written by the gateway (`store.StatusFile`) and says what the gateway saw when
it last wrote it. A reader must not repeat it blindly: a gateway killed with SIGKILL leaves a
file saying `running: true` and `ONLINE`, a gateway that stopped leaves its last state, and
while the serial port is gone the connection machine still holds the state it was in. So the
reader asks the data directory whether a gateway holds it now (`gateway_running`: the gateway
keeps `gateway.lock` flock()ed while it runs, and the kernel drops that lock when the process
dies, however it dies) and derives from that and the file one `condition` an operator (or a
script) can trust: see `condition_of`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from airfsm.host.paths import LOCK_FILE
from airfsm.host.store import SqliteOutbox, StatusFile, StoreError, db_path, iso_utc

# What `condition` can say, and what it means.
CONDITIONS = {
    "online": "running, ONLINE, the serial port open",
    "connecting": "running, on its way to ONLINE (the state says where)",
    "port_lost": "running, the serial port is gone; the gateway reopens it",
    "restarting": "running, the module does not answer; the gateway starts over after a wait",
    "failed": "running, the machine is in FAILED (the gateway is about to exit)",
    "stopping": "running, finishing the publish in flight before it exits",
    "stopped": "not running: the gateway stopped and said why (exit)",
    "dead": "not running: the process is gone without stopping (killed, power cut, crash)",
}


def pid_alive(pid: Any) -> bool:
    """Is `pid` a live process (ours or anyone's)? False for anything that is not a pid."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _looks_like_airfsm(pid: int) -> bool:
    """Is `pid`, as far as /proc tells, an airfsm process (not a stranger reusing the pid)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc, or not ours to read: cannot tell, do not deny
    return b"airfsm" in cmdline


def gateway_running(data_dir: str | Path, pid: Any = None) -> bool:
    """Does a gateway run on `data_dir` now? The gateway holds `gateway.lock` (flock) for as
    long as it runs; probing it takes a shared lock for an instant and drops it. Where the lock
    file cannot be read (another user's gateway), `pid` is checked instead."""
    path = Path(data_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return pid_alive(pid) and _looks_like_airfsm(int(pid))
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EACCES)  # held: a gateway runs
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _timestamp(iso: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _ago_s(iso: Any, now: float) -> float | None:
    then = _timestamp(iso)
    return None if then is None else max(0.0, now - then)


def _ago(iso: Any, now: float | None = None) -> str:
    seconds = _ago_s(iso, time.time() if now is None else now)
    return "?" if seconds is None else duration(seconds)


def duration(seconds: float) -> str:
    """`42s`, `3m07s`, `2h13m`, `3d04h`."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def condition_of(status: Mapping[str, Any], alive: bool) -> str:
    """One of CONDITIONS for a status file and whether its gateway runs now."""
    if not alive:
        return "dead" if status.get("running") or not status.get("exit") else "stopped"
    if status.get("stopping"):
        return "stopping"
    if status.get("port_lost") or status.get("port_lost_since"):
        return "port_lost"
    if status.get("restart_at") or "not responding" in str(status.get("notice") or ""):
        return "restarting"
    state = status.get("state")
    if state == "ONLINE":
        return "online"
    if state == "FAILED":
        return "failed"
    return "connecting"


def current_status(status: Mapping[str, Any], alive: bool,
                   now: float | None = None) -> dict[str, Any]:
    """The status file, corrected by what is true now: `running` (checked, not copied),
    `condition`, `online` (ONLINE with its port, in a running gateway), and the ages a reader
    would otherwise compute: `uptime_s`, `updated_s_ago`, `signal_age_s`, the outbox's
    `oldest_age_s` and `last_puback_s_ago`. `airfsm status --json` prints this."""
    now = time.time() if now is None else now
    out = dict(status)
    condition = condition_of(status, alive)
    out["running"] = alive
    out["condition"] = condition
    out["online"] = condition == "online"
    out["checked_at"] = datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds")
    started = _timestamp(status.get("started_at"))
    last_seen = _timestamp(status.get("updated_at"))
    end = now if alive else (last_seen if last_seen is not None else now)
    out["uptime_s"] = None if started is None else round(max(0.0, end - started), 3)
    out["updated_s_ago"] = None if last_seen is None else round(max(0.0, now - last_seen), 3)
    signal_read = _ago_s(status.get("signal_at"), now) if status.get("signal_at") else None
    out["signal_age_s"] = None if signal_read is None else round(signal_read, 3)
    outbox = status.get("outbox")
    if isinstance(outbox, Mapping):
        outbox = dict(outbox)
        oldest = outbox.get("oldest_enqueued_at")
        puback = outbox.get("last_puback_at")
        oldest_age = _ago_s(oldest, now) if oldest else None
        puback_age = _ago_s(puback, now) if puback else None
        outbox["oldest_age_s"] = None if oldest_age is None else round(oldest_age, 3)
        outbox["last_puback_s_ago"] = None if puback_age is None else round(puback_age, 3)
        out["outbox"] = outbox
    return out


def _or_unknown(value: Any) -> str:
    return "?" if value in (None, "") else str(value)


def format_status(status: Mapping[str, Any], alive: bool, now: float | None = None) -> str:
    """`airfsm status` without --json: a dozen lines for a human, none of them untrue: the
    state of a gateway that does not run, or whose port is gone, is said to be the last one
    seen, not the current one."""
    now = time.time() if now is None else now
    lines: list[str] = []
    pid = status.get("pid")
    exit_info = status.get("exit") or {}
    condition = condition_of(status, alive)
    current = current_status(status, alive, now)
    up = current.get("uptime_s")
    up_text = "?" if up is None else duration(up)
    seen = _ago(status.get("updated_at"), now)
    state = status.get("state")
    if alive:
        lines.append(f"gateway    running, pid {pid}, up {up_text}"
                     + (", stopping" if condition == "stopping" else ""))
    elif condition == "stopped":
        lines.append(f"gateway    stopped (exit {exit_info.get('code')}: "
                     f"{exit_info.get('reason')}) {seen} ago, pid {pid} had run {up_text}")
    else:
        lines.append(f"gateway    NOT RUNNING: pid {pid} is gone without stopping (killed, "
                     f"crashed or powered off) after {up_text}; last update {seen} ago")
    trigger = status.get("last_trigger")
    if not alive and status.get("port_lost"):
        lines.append(f"state      last seen SERIAL PORT LOST ({seen} ago; the machine was in "
                     f"{state}); nothing is connected now")
    elif not alive:
        lines.append(f"state      last seen {state} ({seen} ago); nothing is connected now")
    elif condition == "port_lost":
        since = status.get("port_lost_since")
        lost = f" for {_ago(since, now)}" if since else ""
        lines.append(f"state      SERIAL PORT LOST{lost} (the machine was in {state}); "
                     f"{status.get('notice') or 'waiting for it to come back'}")
    else:
        lines.append(f"state      {state} for {_ago(status.get('since'), now)}, attempt "
                     f"{status.get('attempt')}, last trigger {trigger}"
                     + (f", step {status['step']}" if status.get("step") else ""))
        if status.get("waiting") and state != "ONLINE":
            lines.append(f"waiting    {status['waiting']}")
        if status.get("notice"):
            lines.append(f"notice     {status['notice']}")
    if status.get("fail_reason"):
        lines.append(f"failed     {status.get('fail_reason')}: {status.get('fail_detail')}")
    if status.get("last_error") and state != "ONLINE":
        lines.append(f"last error {status['last_error']}")
    device = status.get("device") or {}
    lines.append(f"device     /{device.get('product_key')}/{device.get('device_name')} on "
                 f"{device.get('port')}")
    rssi = status.get("rssi")
    known = rssi not in (None, 99)
    signal_at = status.get("signal_at")
    signal_age = f" ({_ago(signal_at, now)} ago)" if known and signal_at else ""
    lines.append(f"module     firmware {_or_unknown(status.get('firmware'))}, "
                 f"IMEI {_or_unknown(status.get('imei'))}, "
                 f"ICCID {_or_unknown(status.get('iccid'))}")
    lines.append(f"network    operator {_or_unknown(status.get('operator'))}, "
                 f"registration {_or_unknown(status.get('registration'))}, "
                 f"access {_or_unknown(status.get('access_technology'))}, "
                 f"signal {rssi if known else '?'}/31{signal_age}, "
                 f"ip {status.get('ip') or '-'}")
    outbox = current.get("outbox") or {}
    inbox = status.get("inbox") or {}
    oldest = outbox.get("oldest_age_s")
    puback = outbox.get("last_puback_s_ago")
    unchecked = "" if outbox.get("checked_now", True) else " (as of the last update)"
    lines.append(f"outbox     {outbox.get('queued')} queued"
                 + (f" (oldest {duration(oldest)})" if oldest is not None else "")
                 + f", {outbox.get('dead_letters', 0)} dead letters "
                 f"(capacity {outbox.get('capacity')}), last PUBACK "
                 + ("never" if puback is None else f"{duration(puback)} ago") + unchecked)
    lines.append(f"inbox      {inbox.get('stored')} stored")
    c = status.get("counters") or {}
    lines.append(f"publishes  sent {c.get('publish_sent', 0)}, acked {c.get('publish_acked', 0)}"
                 f", retried {c.get('publish_retried', 0)}, dead {c.get('publish_dead', 0)}")
    reconnects = c.get("reconnects") or {}
    text = ", ".join(f"{k} {v}" for k, v in sorted(reconnects.items())) or "none"
    lines.append(f"reconnects {text}")
    at = c.get("at") or {}
    gw = c.get("gateway") or {}
    lines.append(f"link       inbound {c.get('inbound', 0)}, timeouts {c.get('timeouts', 0)}, "
                 f"probes {c.get('probes', 0)}, AT lines dropped {at.get('lines_dropped', 0)}, "
                 f"port reopens {gw.get('port_reopens', 0)}, module restarts "
                 f"{gw.get('module_restarts', 0)}")
    lines.append(f"store      unavailable {c.get('store_unavailable', 0)}, errors "
                 f"{gw.get('store_errors', 0)}, inbox errors {gw.get('inbox_errors', 0)}")
    bridge = status.get("bridge")
    if isinstance(bridge, Mapping):
        lines.append(f"bridge     {bridge.get('url')}: "
                     + ("connected" if bridge.get("connected") else "not connected")
                     + f", up {bridge.get('forwarded_up', 0)}, down "
                     f"{bridge.get('forwarded_down', 0)}, refused {bridge.get('refused', 0)}")
    lines.extend(_alink_lines(status.get("alink"), now))
    lines.append(f"updated    {status.get('updated_at')} ({seen} ago)")
    return "\n".join(lines)


# `status` reads the store beside the gateway; it waits this long at most for a lock.
STORE_READ_TIMEOUT_MS = 1_000


def _outbox_now(data_dir: str | Path, written: Any) -> dict[str, Any]:
    """The status file's `outbox` with what the store says now: `queued`, `dead_letters` and
    `oldest_enqueued_at` read from the outbox itself (`checked_now: true`), so messages
    published while the gateway is down (or since its last write) are counted. Where the store
    cannot be read, the file's values stay, marked `checked_now: false`."""
    outbox = dict(written) if isinstance(written, Mapping) else {}
    path = db_path(data_dir)
    try:
        with SqliteOutbox(path, busy_timeout_ms=STORE_READ_TIMEOUT_MS, create=False) as store:
            queued, dead, oldest = store.count(), store.dead_count(), store.oldest_enqueued_at()
    except (StoreError, OSError):
        outbox["checked_now"] = False
        return outbox
    outbox.update(queued=queued, dead_letters=dead, checked_now=True,
                  oldest_enqueued_at=None if oldest is None else iso_utc(oldest))
    return outbox

def _signed_ms(ms: int) -> str:
    return f"{'+' if ms >= 0 else '-'}{abs(ms)} ms"


def _alink_lines(section: Any, now: float) -> list[str]:
    """The thing model's replies and requests (once there were any) and the NTP clock skew
    (when measuring is on)."""
    if not isinstance(section, Mapping):
        return []
    lines = []
    thing = section.get("thing_model") or {}
    activity = ("posts_acked", "accepted", "rejected", "property_set", "service", "rrpc_request")
    if any(thing.get(key) for key in activity):
        last = thing.get("last_reply") or {}
        rejected = thing.get("last_rejected") or {}
        text = (f"thing      posts accepted {thing.get('accepted', 0)}, rejected "
                f"{thing.get('rejected', 0)}, awaiting reply {thing.get('awaiting_reply', 0)}")
        if last:
            verdict = "accepted" if last.get("accepted") else (
                f"rejected, code {last.get('code')}"
                + (f" ({last['message']})" if last.get("message") else ""))
            text += f"; last reply: id {last.get('id')} {verdict}, {_ago(last.get('at'), now)} ago"
        if rejected and rejected.get("id") != last.get("id"):
            text += f"; last rejected: id {rejected.get('id')} code {rejected.get('code')}"
        lines.append(text)
        lines.append(f"requests   property set {thing.get('property_set', 0)}, service "
                     f"{thing.get('service', 0)}, rrpc {thing.get('rrpc_request', 0)}")
    ntp = section.get("ntp") or {}
    if ntp.get("enabled"):
        skew = ntp.get("skew_ms")
        if isinstance(skew, int) and not isinstance(skew, bool):
            behind = ("local clock behind" if skew > 0 else
                      "local clock ahead" if skew < 0 else "in step")
            lines.append(f"clock      skew {_signed_ms(skew)} ({behind}), measured "
                         f"{_ago(ntp.get('measured_at'), now)} ago, round trip "
                         f"{ntp.get('round_trip_ms')} ms")
        else:
            lines.append(f"clock      skew not measured yet ({ntp.get('requests', 0)} NTP "
                         "requests so far)")
    return lines


def read_current(data_dir: str | Path) -> tuple[dict[str, Any], bool]:
    """The status file of `data_dir`, its `outbox` read from the store now, and whether its
    gateway runs now (StoreError when there is no readable status file)."""
    status = StatusFile.read(data_dir)
    status["outbox"] = _outbox_now(data_dir, status.get("outbox"))
    return status, gateway_running(data_dir, status.get("pid"))


__all__ = ["CONDITIONS", "condition_of", "current_status", "duration", "format_status",
           "gateway_running", "pid_alive", "read_current"]
