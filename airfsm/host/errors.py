"""Exit codes, and the one error type host code raises for what a user must be told.

The host (gateway, ports, stores) raises `HostError(message, exit)`; the CLI prints the message
as one line on stderr and exits with the code. The codes are the documented contract of
`airfsm connect` and `airfsm run` (README, docs/GATEWAY.md): scripts and systemd act on them.
"""

from __future__ import annotations

from enum import IntEnum

from airfsm.core.codes import FailReason


class Exit(IntEnum):
    OK = 0
    FAILURE = 1  # generic runtime failure (e.g. the demo did not complete)
    USAGE = 2  # bad arguments or configuration (argparse uses 2 as well)
    PORT = 3  # the port cannot be opened, or vanished during `connect`
    FIRMWARE = 4  # firmware older than V409
    CREDENTIALS = 5  # the auth server rejected the device (or its registration, or its sign)
    TIMEOUT = 6  # not ONLINE within --timeout
    NO_RESPONSE = 7  # the module never answered AT
    INTERNAL = 70  # a bug (EX_SOFTWARE)
    OUTBOX_FULL = 75  # EX_TEMPFAIL: `airfsm publish` refused, nothing dropped, retry later
    INTERRUPTED = 130  # SIGINT, as shells report it


class HostError(Exception):
    """A one-line message for the user and the exit code that goes with it."""

    def __init__(self, message: str, exit: Exit = Exit.USAGE) -> None:
        super().__init__(message)
        self.exit = exit


def fail_exit(reason: FailReason) -> Exit | None:
    """The exit code for a machine that ended in FAILED for `reason` (None: no fixed one)."""
    return {
        FailReason.FIRMWARE: Exit.FIRMWARE,
        FailReason.CREDENTIALS: Exit.CREDENTIALS,
        FailReason.REGISTRATION: Exit.CREDENTIALS,
        FailReason.NO_RESPONSE: Exit.NO_RESPONSE,
        FailReason.INTERNAL: Exit.INTERNAL,
    }.get(reason)
