"""Logging: structlog, JSON lines off a terminal, a console renderer on one, secrets redacted.

Secrets (DeviceSecret, sign, iotToken) are registered by value as soon as they are known; one
processor, placed before the renderer, replaces every occurrence in every string of every event.
Registering by value rather than by key catches the token inside an echoed `AT+MCONFIG` line too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from airfsm.core.codes import LogEvent, LogLevel
from airfsm.host import reasons

REDACTED = "***"
_MIN_SECRET_LEN = 4  # shorter values would redact ordinary words; no real secret is that short
_secrets: set[str] = set()


def register_secret(value: str | bytes | None) -> None:
    """Never let `value` reach a log line, an error message or a status file."""
    if value is None:
        return
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if len(text) >= _MIN_SECRET_LEN:
        _secrets.add(text)


def forget_secrets() -> None:
    """Tests only: start from an empty secret set."""
    _secrets.clear()


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `***`."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("latin-1"))
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: scrub secrets from every value of the event."""
    for key in list(event_dict):
        event_dict[key] = _redact_value(event_dict[key])
    return event_dict


LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written, not when logging was configured: a
    process (or a test runner) may replace or close the stream it had at configure time."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(level: str = "info", *, json: bool | None = None, stream: Any = None) -> None:
    """Configure structlog for a process. `json=None` picks JSON unless `stream` is a TTY.
    Without `stream`, lines go to the current `sys.stderr`."""
    out: Any = stream if stream is not None else _CurrentStderr()  # TextIO enough for print()
    if json is None:
        json = not (hasattr(out, "isatty") and out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    # `log.exception(...)` carries its traceback: as one (redacted) string in a JSON line; the
    # console renderer formats it itself.
    tracebacks: list[Any] = [structlog.processors.format_exc_info] if json else []
    CORE_LOG.level = LEVELS.get(level, logging.INFO)  # what the controllers' hook passes on
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *tracebacks,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    """A structlog logger. A process that never called `configure` still gets the redacting
    pipeline (at warning level), not structlog's unfiltered default."""
    if not structlog.is_configured():
        configure("warning")
    return structlog.get_logger(name)


class CoreLog:
    """The controllers' log hook (`airfsm.core.hal.LogHook`): each core LogEvent becomes the
    structlog event of the same name in lower case, with the keys `airfsm.host.reasons` gives
    it; a SECRET joins the redaction set. Its `level` is the one `configure` set, so a debug
    event is not even built while debug lines are filtered out."""

    level = logging.WARNING  # until configure() is called: get_logger()'s default

    def __call__(self, ctl: Any, level: LogLevel, event: LogEvent, a: int, b: int, c: int,
                 data: bytes | bytearray | memoryview) -> None:
        if event == LogEvent.SECRET:
            register_secret(bytes(data))
            return
        fields = reasons.event_fields(ctl, event, a, b, c, data)
        get_logger("airfsm.core.controller").log(level, event.name.lower(), **fields)


CORE_LOG = CoreLog()
