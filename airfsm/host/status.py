"""`airfsm status` for a human: the gateway's status file as a dozen lines.

The file itself is written by the gateway (`store.StatusFile`); this reads what it says and
whether the process that wrote it still lives.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any


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


def _ago(iso: Any) -> str:
    try:
        then = datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return ""
    return _duration(max(0.0, time.time() - then))


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_status(status: Mapping[str, Any], alive: bool) -> str:
    """`airfsm status` without --json: a dozen lines for a human."""
    lines: list[str] = []
    pid = status.get("pid")
    exit_info = status.get("exit") or {}
    if alive and status.get("running"):
        lines.append(f"gateway    running, pid {pid}, up {_ago(status.get('started_at'))}")
    elif status.get("running"):
        lines.append(f"gateway    NOT RUNNING (pid {pid} is gone; it did not stop cleanly)")
    else:
        lines.append(f"gateway    stopped (exit {exit_info.get('code')}: "
                     f"{exit_info.get('reason')}), pid {pid}")
    state = status.get("state")
    trigger = status.get("last_trigger")
    lines.append(f"state      {state} for {_ago(status.get('since'))}, attempt "
                 f"{status.get('attempt')}, last trigger {trigger}"
                 + (f", step {status['step']}" if status.get("step") else ""))
    if status.get("notice"):
        lines.append(f"notice     {status['notice']}")
    if status.get("fail_reason"):
        lines.append(f"failed     {status.get('fail_reason')}: {status.get('fail_detail')}")
    if status.get("last_error") and state != "ONLINE":
        lines.append(f"last error {status['last_error']}")
    device = status.get("device") or {}
    rssi = status.get("rssi")
    lines.append(f"device     /{device.get('product_key')}/{device.get('device_name')} on "
                 f"{device.get('port')}, firmware {status.get('firmware') or '?'}, "
                 f"signal {rssi if rssi not in (None, 99) else '?'}/31, "
                 f"ip {status.get('ip') or '-'}")
    outbox = status.get("outbox") or {}
    inbox = status.get("inbox") or {}
    lines.append(f"outbox     {outbox.get('queued')} queued, {outbox.get('dead_letters', 0)} dead "
                 f"letters (capacity {outbox.get('capacity')})")
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
    lines.append(f"updated    {status.get('updated_at')} ({_ago(status.get('updated_at'))} ago)")
    return "\n".join(lines)
