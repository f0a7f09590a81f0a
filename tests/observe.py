"""The one place the reliability proofs read what a controller does not show publicly.

Everything else they check is observable: the bytes the simulator receives and sends, the
controller's `state`/`status()`/callbacks, the outbox's operator methods, the log lines. What is
left - a receive buffer's fill level, the deadline of the command in flight, the process-wide
secret set, the memory a controller holds - is read here and nowhere else, so when the core's
internals move only this file follows them.
"""

from __future__ import annotations

import gc
import sys
import types
from typing import Any

from airfsm.core.controller import Controller
from airfsm.core.settings import (
    BODY_CAPACITY,
    CMD_CAPACITY,
    DATA_CAPACITY,
    INFO_ARENA,
    LINE_CAPACITY,
    MAX_INFO_LINES,
    READ_CHUNK,
)
from airfsm.host import redact


def channel(controller: Controller) -> Any:
    """The controller's AT channel."""
    return controller.channel


def command_deadline(controller: Controller) -> int | None:
    """When the command in flight times out (32-bit ms), None when none is in flight."""
    deadline: int | None = channel(controller).deadline
    return deadline


def buffer_levels(controller: Controller) -> list[tuple[str, int, int]]:
    """(buffer, bytes or items held, capacity) for every fixed-size buffer of the tick path.

    A buffer's length must stay its capacity too: a Python bytearray that grew would be a C
    buffer overrun."""
    ch = channel(controller)
    response = ch._response
    auth = controller.auth
    levels = [
        ("line", ch._line_len, LINE_CAPACITY),
        ("line buffer size", len(ch._line), LINE_CAPACITY),
        ("data", ch._data_len, DATA_CAPACITY),
        ("data buffer size", len(ch._data), DATA_CAPACITY),
        ("info lines", response.line_count, MAX_INFO_LINES),
        ("info arena", response.arena_used, INFO_ARENA),
        ("info arena size", len(response.arena), INFO_ARENA),
        ("command buffer size", len(controller.cmd_buf), CMD_CAPACITY),
        ("read buffer size", len(controller.read_buf), READ_CHUNK),
        ("auth body", auth.body_len, BODY_CAPACITY),
        ("auth body size", len(auth.body), BODY_CAPACITY),
    ]
    outbox = controller.outbox
    capacity = getattr(outbox, "capacity", None)
    if capacity is not None:
        levels.append(("outbox", outbox.count(), capacity))  # type: ignore[attr-defined]
    return levels


def registered_secrets() -> frozenset[str]:
    """Every value the log redaction currently hides (process-wide)."""
    return redact.held_secrets()


# Objects shared by every controller (the machine table, transitions' classes, loggers) are not
# what one controller holds: the walk stops at them.
_SHARED = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
           types.MethodType, types.CodeType)


def footprint(controller: Controller, exclude: tuple[object, ...] = ()) -> int:
    """Bytes of the objects reachable from `controller` (its own state: fields, buffers, queues,
    the transitions model), not counting shared ones - the Machine, the edge lookup, the table
    and the URC index every controller of a table shares, the port, the outbox, the log hook,
    the callbacks - or `exclude`."""
    ch = channel(controller)
    shared = (controller.port, controller.outbox, controller.log_hook, controller.on_message,
              controller.on_state, controller.hardware_reset, controller.machine,
              controller.edges, controller.table, ch._urcs, ch._urcs_by_first, *exclude)
    stop = {id(x) for x in shared if x is not None}
    seen: set[int] = set()
    todo: list[object] = [controller]
    total = 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or id(obj) in stop or isinstance(obj, _SHARED):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        todo.extend(gc.get_referents(obj))
    return total
