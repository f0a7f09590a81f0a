"""The secrets that must never reach a log line, an error message or a status file.

Secrets are registered by value as soon as they exist (by value rather than by key, so the token
inside an echoed `AT+MCONFIG` line is caught too), and `redact(text)` replaces each occurrence by
`***`. The set is bounded:

* lasting secrets (a DeviceSecret) are kept for the life of the process, one per device;
* session secrets (the sign of an auth request, the iotToken it earns) are kept per device, the
  newest `SESSION_SECRETS_KEPT` only: a gateway re-authenticating every few days for months
  keeps the live pair and the one before it, not every token it was ever given.

Redaction is one search for all secrets at once (an alternation, compiled again only when the
set changes), so it costs about one pass over the text rather than one per secret. No structlog
here: `airfsm publish` and the status file use this without paying for the logging stack.
"""

from __future__ import annotations

import re
import threading
from collections import deque

REDACTED = "***"
MIN_SECRET_LEN = 4  # shorter values would redact ordinary words; no real secret is that short
SESSION_SECRETS_KEPT = 4  # per device: the current sign and iotToken, and the pair before them


class SecretSet:
    """The values `redact` hides: lasting ones, and a small ring of session ones per owner."""

    def __init__(self, session_kept: int = SESSION_SECRETS_KEPT) -> None:
        self._session_kept = session_kept
        self._lasting: dict[str, None] = {}  # an insertion-ordered set
        self._sessions: dict[str, deque[str]] = {}
        self._pattern: re.Pattern[str] | None = None
        self._stale = False  # the set changed since _pattern was compiled
        self._lock = threading.Lock()  # a gateway thread and a test thread may both register

    def keep(self, value: str) -> None:
        """A secret for the life of the process (a DeviceSecret)."""
        if len(value) < MIN_SECRET_LEN or value in self._lasting:
            return
        with self._lock:
            self._lasting[value] = None
            self._stale = True

    def rotate(self, owner: str, value: str) -> None:
        """A session secret of `owner` (a sign, an iotToken); the oldest of owner's ring beyond
        `session_kept` is forgotten."""
        if len(value) < MIN_SECRET_LEN:
            return
        with self._lock:
            ring = self._sessions.setdefault(owner, deque(maxlen=self._session_kept))
            if value in ring:
                return
            ring.append(value)
            self._stale = True

    def clear(self) -> None:
        with self._lock:
            self._lasting.clear()
            self._sessions.clear()
            self._stale = True

    def _held(self) -> set[str]:
        """Every secret held now; the caller holds the lock."""
        held = set(self._lasting)
        for ring in self._sessions.values():
            held.update(ring)
        return held

    def __len__(self) -> int:
        with self._lock:
            return len(self._held())

    def snapshot(self) -> frozenset[str]:
        """Every secret held now (tests check the set stays bounded)."""
        with self._lock:
            return frozenset(self._held())

    def _compiled(self) -> re.Pattern[str] | None:
        if self._stale:
            with self._lock:  # a value registered meanwhile must not miss the new pattern
                held = sorted(self._held(), key=len, reverse=True)  # longest wins an overlap
                self._pattern = re.compile("|".join(map(re.escape, held))) if held else None
                self._stale = False
        return self._pattern

    def redact(self, text: str) -> str:
        """`text` with every secret held replaced by `***`."""
        pattern = self._compiled()
        if pattern is None:
            return text
        return pattern.sub(REDACTED, text)


_secrets = SecretSet()


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def register_secret(value: str | bytes | None) -> None:
    """Never let `value` (a DeviceSecret) reach a log line, an error message or a status file,
    for as long as the process lives."""
    if value is not None:
        _secrets.keep(_text(value))


def register_session_secret(owner: str, value: str | bytes | None) -> None:
    """The same for a sign or an iotToken of device `owner`: only its newest
    SESSION_SECRETS_KEPT are remembered."""
    if value is not None:
        _secrets.rotate(owner, _text(value))


def forget_secrets() -> None:
    """Tests only: start from an empty secret set."""
    _secrets.clear()


def secret_count() -> int:
    """How many secrets redaction holds now (bounded; see the module docstring)."""
    return len(_secrets)


def held_secrets() -> frozenset[str]:
    """Every secret redaction holds now (tests: the set must stay bounded)."""
    return _secrets.snapshot()


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `***`."""
    return _secrets.redact(text)
