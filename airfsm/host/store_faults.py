"""Store errors injected into a running gateway (a test aid, `AIRFSM_FAULT_STORE`).

So that a user can reproduce what a full disk, a read-only filesystem or a database locked by
another process do to `airfsm run`; docs/GATEWAY.md has the syntax.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from airfsm.host.errors import Exit, HostError
from airfsm.host.store import StoreError

STORE_FAULT_ENV = "AIRFSM_FAULT_STORE"

# Which calls an injected store fault hits, and the SQLite error text it imitates.
_FAULT_OPERATIONS: dict[str, frozenset[str]] = {
    "peek": frozenset({"peek"}),
    "mark_attempt": frozenset({"mark_attempt"}),
    "ack": frozenset({"ack"}),
    "dead_letter": frozenset({"dead_letter"}),
    "inbox": frozenset({"inbox"}),
    "write": frozenset({"mark_attempt", "ack", "dead_letter", "inbox"}),
    "any": frozenset({"peek", "mark_attempt", "ack", "dead_letter", "inbox"}),
}
_FAULT_ERRORS = {"io": "disk I/O error", "full": "database or disk is full",
                 "readonly": "attempt to write a readonly database",
                 "locked": "database is locked"}
STORE_FAULT_HELP = (f"{STORE_FAULT_ENV}=OPERATION[=ERROR][@COUNT][,...]: OPERATION one of "
                    f"{', '.join(_FAULT_OPERATIONS)}; ERROR one of {', '.join(_FAULT_ERRORS)} "
                    "(default io); COUNT a number (default 1) or * (always)")


@dataclass
class _StoreFault:
    operations: frozenset[str]
    error: str
    remaining: int | None  # None: every time


class StoreFaults:
    """Store errors injected into a running gateway, so a user can reproduce what a full disk,
    a read-only filesystem or a database locked by another process do to it (a test aid, set
    with `AIRFSM_FAULT_STORE`, e.g. `ack@3` or `write=full@*`). Each fault fires on the next
    COUNT calls of its operations, in the order given."""

    def __init__(self, spec: str) -> None:
        """ValueError (one line) for a malformed spec."""
        self._faults: list[_StoreFault] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            head, at, count_text = item.partition("@")
            operation, _eq, error = head.partition("=")
            operation, error = operation.strip().lower(), (error.strip().lower() or "io")
            if operation not in _FAULT_OPERATIONS or error not in _FAULT_ERRORS or (
                    at and not (count_text == "*" or count_text.isdigit() and int(count_text))):
                raise ValueError(f"bad store fault {item!r}: {STORE_FAULT_HELP}")
            remaining = None if count_text == "*" else int(count_text or 1)
            self._faults.append(_StoreFault(_FAULT_OPERATIONS[operation], error, remaining))

    def check(self, operation: str, path: Path) -> None:
        """StoreError if a fault is armed for `operation` (consuming one of its uses)."""
        for fault in self._faults:
            if operation in fault.operations and fault.remaining != 0:
                if fault.remaining is not None:
                    fault.remaining -= 1
                raise StoreError(f"{path}: {_FAULT_ERRORS[fault.error]} (injected by "
                                 f"{STORE_FAULT_ENV})")


def store_faults_from(env: Mapping[str, str]) -> StoreFaults | None:
    """The faults `AIRFSM_FAULT_STORE` asks for, None when unset. HostError when malformed."""
    spec = env.get(STORE_FAULT_ENV, "")
    if not spec:
        return None
    try:
        return StoreFaults(spec)
    except ValueError as exc:
        raise HostError(str(exc), Exit.USAGE) from None
