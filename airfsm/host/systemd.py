"""Living under systemd: sd_notify, the watchdog, journal priorities, a clean child environment.

No dependency: the notify protocol is one datagram per message on the unix socket named by
`$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace), each message `KEY=VALUE`
lines (sd_notify(3)). With `Type=notify` the gateway sends

* `READY=1` once it has its port, its store and a controller, and the loop is about to run;
* `STATUS=...` when what it does changes (`ONLINE, 0 queued`, `ATTACH waiting for +CGATT: 1
  (poll 7/60)`), which `systemctl status airfsm` shows;
* `WATCHDOG=1` from the loop, every half of `$WATCHDOG_USEC` (`WatchdogSec=`): a loop that
  stops turning is restarted by systemd;
* `STOPPING=1` when a stop signal came.

Without `$NOTIFY_SOCKET` every call does nothing. A send that fails is dropped: the service
manager going away must not stop the gateway.

Logs: when stderr is the journal (`$JOURNAL_STREAM` names its device and inode), every line
starts with a `<N>` syslog priority (`airfsm.host.log`), so `journalctl -p warning` works.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping

from airfsm.core.timebase import ms_add, ms_reached

NOTIFY_ENV = "NOTIFY_SOCKET"
WATCHDOG_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"
JOURNAL_ENV = "JOURNAL_STREAM"
# What a child the gateway starts (reset_command) gets of its environment: a search path and
# nothing else. Not the DeviceSecret, not $CREDENTIALS_DIRECTORY, not the notify socket.
CHILD_PATH_DEFAULT = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a program the gateway runs: only PATH."""
    return {"PATH": env.get("PATH") or CHILD_PATH_DEFAULT}


def journal_stream_is(fd: int, env: Mapping[str, str]) -> bool:
    """Is `fd` the journal stream systemd connected (`$JOURNAL_STREAM` is `DEVICE:INODE`)?"""
    value = env.get(JOURNAL_ENV, "")
    device, _, inode = value.partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


class Notifier:
    """sd_notify for one process. `env` is its environment (the variables systemd set)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._address = _socket_address(env.get(NOTIFY_ENV, ""))
        self._sock: socket.socket | None = None
        self._status = ""
        self.watchdog_interval_ms = 0  # 0: no watchdog asked for
        usec = env.get(WATCHDOG_ENV, "")
        pid = env.get(WATCHDOG_PID_ENV, "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            # "every half of the interval" (sd_watchdog_enabled(3)); at least every 1 ms
            self.watchdog_interval_ms = max(1, int(usec) // 2000)
        self._watchdog_due: int | None = None
        if self._address is not None:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._sock = sock
            except OSError:
                self._sock = None

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> bool:
        """One notification of `KEY=VALUE` fields; False when not sent (no socket, error)."""
        if self._sock is None or self._address is None:
            return False
        text = "\n".join(field.replace("\n", " ") for field in fields)
        try:
            self._sock.sendto(text.encode("utf-8", "replace"), self._address)
        except OSError:
            return False
        return True

    def ready(self, status: str) -> None:
        self._status = status
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        """STATUS=, when it changed."""
        if status != self._status:
            self._status = status
            self.send(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> None:
        self._status = status
        self.send("STOPPING=1", f"STATUS={status}")

    def watchdog(self, now_ms: int) -> None:
        """WATCHDOG=1 when half the watchdog interval passed since the last one (call it from
        the loop: that the loop turns is what it proves)."""
        if not self.watchdog_interval_ms or self._sock is None:
            return
        if self._watchdog_due is None or ms_reached(now_ms, self._watchdog_due):
            self.send("WATCHDOG=1")
            self._watchdog_due = ms_add(now_ms, self.watchdog_interval_ms)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def _socket_address(value: str) -> str | bytes | None:
    """$NOTIFY_SOCKET as a sendto() address: a path, or `@name` in the abstract namespace."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode("utf-8", "surrogateescape")
    if value.startswith("/"):
        return value
    return None  # vsock:// and the like: not for a gateway on a serial port


__all__ = ["Notifier", "child_environment", "journal_stream_is"]
