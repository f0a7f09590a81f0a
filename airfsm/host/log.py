"""Logging: structlog, JSON lines off a terminal, a console renderer on one, secrets redacted.

Redaction happens once per line that is actually written: `make_filtering_bound_logger` drops
an event below the level before any processor runs, and `redact_processor`, the last processor
before the renderer, scrubs every string of what is left (tracebacks included, formatted to text
first). Call sites pass raw values; they never redact themselves. The secret set itself (bounded:
DeviceSecrets, and per device only the newest signs and iotTokens) is `airfsm.host.redact`; its
functions are re-exported here for the code that registers secrets.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from airfsm.core.codes import LogEvent, LogLevel
from airfsm.host import reasons
from airfsm.host.redact import (
    REDACTED,
    forget_secrets,
    redact,
    register_secret,
    register_session_secret,
    secret_count,
)
from airfsm.host.systemd import journal_stream_is

__all__ = ["LEVELS", "REDACTED", "configure", "forget_secrets", "get_logger", "redact",
           "redact_processor", "register_secret", "register_session_secret", "secret_count"]


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes | bytearray):
        return redact(bytes(value).decode("latin-1"))
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: scrub secrets from every value of an event that will be written."""
    for key in list(event_dict):
        event_dict[key] = _redact_value(event_dict[key])
    return event_dict


LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
# syslog priorities (sd-daemon(3)): what the journal reads from a `<N>` at the start of a line
JOURNAL_PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2,
                      "exception": 3}


class _JournalPrefix:
    """A renderer whose lines start with `<N>`, the event's syslog priority: systemd strips
    it and files the line at that priority (`journalctl -p warning`)."""

    def __init__(self, renderer: Any) -> None:
        self.renderer = renderer

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        level = str(event_dict.get("level", method))
        return f"<{JOURNAL_PRIORITIES.get(level, 6)}>{self.renderer(logger, method, event_dict)}"


def _stderr_is_the_journal() -> bool:
    try:
        return journal_stream_is(sys.stderr.fileno(), os.environ)
    except (AttributeError, ValueError, OSError):  # a replaced stderr without a descriptor
        return False


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written, not when logging was configured: a
    process (or a test runner) may replace or close the stream it had at configure time."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(level: str = "info", *, json: bool | None = None, stream: Any = None,
              journal: bool | None = None) -> None:
    """Configure structlog for a process. `json=None` picks JSON unless `stream` is a TTY.
    Without `stream`, lines go to the current `sys.stderr`. `journal=None`: each line gets a
    `<N>` priority prefix when stderr is systemd's journal stream ($JOURNAL_STREAM)."""
    out: Any = stream if stream is not None else _CurrentStderr()  # TextIO enough for print()
    if json is None:
        json = not (hasattr(out, "isatty") and out.isatty())
    if journal is None:
        journal = stream is None and _stderr_is_the_journal()
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    CORE_LOG.level = LEVELS.get(level, logging.INFO)  # what the controllers' hook passes on
    if journal:
        renderer = _JournalPrefix(renderer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # `log.exception(...)` carries its traceback: made text here, so that it is
            # redacted like every other value before either renderer writes it.
            structlog.processors.format_exc_info,
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
            if a:
                register_secret(bytes(data))
            else:
                register_session_secret(ctl.settings.identity.device_name, bytes(data))
            return
        fields = reasons.event_fields(ctl, event, a, b, c, data)
        get_logger("airfsm.core.controller").log(level, event.name.lower(), **fields)


CORE_LOG = CoreLog()
