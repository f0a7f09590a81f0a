"""The controller under test, seen from the module's side of the line: the seam for the C twin.

The driver (`tests.reliability.driver`) runs a schedule against a `Subject`: bytes from the
simulated module go in, the bytes it writes for the module come out, and the driver asks it
the few questions the monitors need (its state, its outbox, its buffers). `PythonSubject` is
`airfsm.core.controller.Controller` on an in-memory port. The C twin (port/c) runs as
`tests.ctwin.LockstepSubject` ("lockstep" in `SUBJECTS`): the Python controller and the C one
fed the same bytes, their outputs compared after every request, so every schedule, the fault
matrix and the monitors run against it unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from airfsm.core.codes import OutboxStatus, Reason
from airfsm.core.controller import Controller
from airfsm.core.hal import PORT_LOST
from airfsm.core.messages import DeadLetter, OutboundMessage
from airfsm.core.outbox import MemoryOutbox
from airfsm.core.settings import Settings
from airfsm.host import log, reasons
from airfsm.host.serial import MemoryPort, memory_pair
from tests import observe


class Subject(Protocol):
    name: str

    def receive(self, data: bytes) -> None:
        """Bytes the module sent, into the controller's UART."""

    def tick(self, now_ms: int) -> int:
        """Run what is due at `now_ms`; the next time a tick is needed."""

    def transmitted(self) -> list[tuple[str, bytes]]:
        """What it wrote to its UART since the last call: (its state at the write, bytes)."""

    def input_pending(self) -> bool:
        """Bytes wait in its UART that a tick has not read yet (a host's select() would wake
        at once)."""

    def command_deadline(self) -> int | None:
        """When the command in flight times out, None when none is."""

    @property
    def state(self) -> str: ...

    def step(self) -> str | None:
        """The step of its state's script it is at (None in ONLINE and FAILED)."""

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Queue a message; ValueError when it is refused (it can never travel)."""

    def queued(self) -> list[bytes]: ...

    def dead(self) -> list[bytes]: ...

    def delivered(self) -> list[tuple[bytes, int]]:
        """(payload, QoS) of every message the outbox deleted as delivered since the last
        call."""

    def inbound(self) -> list[tuple[str, bytes]]:
        """Messages it delivered to its application since the last call."""

    def unplug(self) -> None:
        """The serial adapter vanishes (the next read fails)."""

    def replug(self, now_ms: int) -> None:
        """A new port to the same module (the gateway reopened it)."""

    def fail_store(self, operation: str, count: int) -> None:
        """The next `count` outbox calls of `operation` (peek, mark_attempt, ack, dead_letter,
        or write: any of the three writes) fail as a full disk does."""

    def heal_store(self) -> None: ...

    def buffer_levels(self) -> list[tuple[str, int, int]]:
        """(buffer, fill, capacity) of its fixed buffers."""

    def status(self) -> dict[str, Any]: ...


WRITE_OPERATIONS = ("mark_attempt", "ack", "dead_letter")


class WatchedOutbox:
    """A `MemoryOutbox` that tells what it deleted as delivered and can fail on demand."""

    def __init__(self, capacity: int = 1000) -> None:
        # What a host lends the core's ring: a clock and words for its dead letters.
        self.box = MemoryOutbox(capacity, wall_clock=time.time,
                                describe=reasons.dead_letter_text)
        self.capacity = capacity
        self.deleted: list[tuple[bytes, int]] = []
        self._failing: dict[str, int] = {}
        self.last_error = ""  # why the latest refused call failed (the log shows it)

    def fail(self, operation: str, count: int) -> None:
        for op in WRITE_OPERATIONS if operation == "write" else (operation,):
            self._failing[op] = self._failing.get(op, 0) + count

    def heal(self) -> None:
        self._failing.clear()

    def _refused(self, operation: str) -> bool:
        """True when `operation` fails now, as a full disk does."""
        if self._failing.get(operation, 0) > 0:
            self._failing[operation] -= 1
            self.last_error = f"outbox: database or disk is full ({operation}, injected)"
            return True
        return False

    # the controller's side (airfsm.core.outbox.Outbox)
    def peek(self) -> tuple[OutboxStatus, OutboundMessage | None]:
        if self._refused("peek"):
            return OutboxStatus.UNAVAILABLE, None
        return self.box.peek()

    def mark_attempt(self, message_id: int) -> tuple[OutboxStatus, int]:
        if self._refused("mark_attempt"):
            return OutboxStatus.UNAVAILABLE, 0
        return self.box.mark_attempt(message_id)

    def ack(self, message_id: int) -> OutboxStatus:
        if self._refused("ack"):
            return OutboxStatus.UNAVAILABLE
        for message in self.box.queued(message_id - 1, 1):
            if message.id == message_id:
                self.deleted.append((message.payload, message.qos))
        return self.box.ack(message_id)

    def dead_letter(self, message_id: int, reason: Reason, detail: int) -> OutboxStatus:
        if self._refused("dead_letter"):
            return OutboxStatus.UNAVAILABLE
        return self.box.dead_letter(message_id, reason, detail)

    # the application's and the operator's side
    def enqueue(self, topic: str, data: bytes, qos: int) -> int:
        return self.box.enqueue(topic, data, qos)

    def queued(self, after_id: int = 0, limit: int = 100) -> list[OutboundMessage]:
        return self.box.queued(after_id, limit)

    def dead_letters(self, after_id: int = 0, limit: int = 100) -> list[DeadLetter]:
        return self.box.dead_letters(after_id, limit)

    def count(self) -> int:
        return self.box.count()

    def __len__(self) -> int:
        return self.box.count()


class TapPort:
    """The controller's end of the line, noting its state at every write."""

    def __init__(self, port: MemoryPort, state: Callable[[], str]) -> None:
        self.port = port
        self._state = state
        self.writes: list[tuple[str, bytes]] = []

    @property
    def lost_reason(self) -> str:
        return self.port.lost_reason

    def read(self, buf: bytearray, max_bytes: int) -> int:
        return self.port.read(buf, max_bytes)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        written = self.port.write(data)
        if written != PORT_LOST:  # what reached the line (a view of the command buffer: copied)
            self.writes.append((self._state(), bytes(data)))
        return written

    def fileno(self) -> int | None:
        return None

    def close(self) -> None:
        self.port.close()


class PythonSubject:
    """`airfsm.core.controller.Controller` on an in-memory port."""

    name = "python"

    def __init__(self, settings: Settings, now_ms: int, outbox_capacity: int = 1000) -> None:
        self.outbox = WatchedOutbox(outbox_capacity)
        self._inbound: list[tuple[str, bytes]] = []
        self._tap, self._far = self._new_line()
        self.controller = Controller(self._tap, settings, now_ms=now_ms, outbox=self.outbox,
                                     on_message=lambda t, p: self._inbound.append((t, p)),
                                     log_hook=log.CORE_LOG)  # logs, as the gateway's

    def _new_line(self) -> tuple[TapPort, MemoryPort]:
        near, far = memory_pair(("controller", "module"))
        return TapPort(near, lambda: self.state), far

    def receive(self, data: bytes) -> None:
        if not self._far.closed:
            self._far.write(data)

    def tick(self, now_ms: int) -> int:
        return self.controller.tick(now_ms)

    def transmitted(self) -> list[tuple[str, bytes]]:
        writes, self._tap.writes = self._tap.writes, []
        if not self._far.closed:
            self._far.drain()  # what reached the module end: the writes say it all
        return writes

    def input_pending(self) -> bool:
        return self._tap.port.pending > 0

    def command_deadline(self) -> int | None:
        return observe.command_deadline(self.controller)

    @property
    def state(self) -> str:
        return self.controller.state.name

    def step(self) -> str | None:
        return self.controller.step_name()

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        self.controller.publish(topic, payload, qos)

    def queued(self) -> list[bytes]:
        return [m.payload for m in self.outbox.queued(0, 1 << 30)]

    def dead(self) -> list[bytes]:
        return [d.payload for d in self.outbox.dead_letters(0, 1 << 30)]

    def delivered(self) -> list[tuple[bytes, int]]:
        deleted, self.outbox.deleted = self.outbox.deleted, []
        return deleted

    def inbound(self) -> list[tuple[str, bytes]]:
        inbound, self._inbound = self._inbound, []
        return inbound

    def unplug(self) -> None:
        self._far.close()

    def replug(self, now_ms: int) -> None:
        self._tap, self._far = self._new_line()
        self.controller.replace_port(self._tap, now_ms)

    def fail_store(self, operation: str, count: int) -> None:
        self.outbox.fail(operation, count)

    def heal_store(self) -> None:
        self.outbox.heal()

    def buffer_levels(self) -> list[tuple[str, int, int]]:
        return observe.buffer_levels(self.controller)

    def status(self) -> dict[str, Any]:
        return reasons.status(self.controller)


SubjectFactory = Callable[[Settings, int], Subject]


def lockstep_subject(settings: Settings, now_ms: int) -> Subject:
    """The Python controller and the C twin side by side, compared after every request
    (tests/ctwin.py; needs a host C compiler: skips without one, as the other C tests do)."""
    from tests.ctwin import LockstepSubject  # it builds on this module's pieces

    return LockstepSubject(settings, now_ms)


# Every controller implementation the schedules run against: "lockstep" runs the C twin
# (port/c) in lockstep with the Python one, so every schedule is also a proof that they agree.
SUBJECTS: dict[str, SubjectFactory] = {"python": PythonSubject, "lockstep": lockstep_subject}
