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

from airfsm.core import at
from airfsm.core.controller import Controller
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
    levels = [
        ("line", ch._line_len, at.LINE_CAPACITY),
        ("line buffer size", len(ch._line), at.LINE_CAPACITY),
        ("data", ch._data_len, at.DATA_CAPACITY),
        ("data buffer size", len(ch._data), at.DATA_CAPACITY),
        ("info lines", len(ch._response.lines), at.MAX_INFO_LINES),
    ]
    outbox = controller.outbox
    capacity = getattr(outbox, "capacity", None)
    if capacity is not None:
        levels.append(("outbox", outbox.count(), capacity))
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
    the transitions model), not counting shared ones, the port, the outbox, the logger or
    `exclude`."""
    stop = {id(controller.port), id(controller.outbox), id(controller.log),
            *(id(x) for x in exclude)}
    if controller.on_message is not None:
        stop.add(id(controller.on_message))
    if controller.on_state is not None:
        stop.add(id(controller.on_state))
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
