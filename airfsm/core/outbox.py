"""The outbox the controller publishes from: its interface and a fixed RAM ring.

C twin: `port/c/core/outbox.c` (the ring; a host's store implements the same calls).

`Outbox` is all the controller asks of an outbox: the oldest message, counting an attempt,
deleting it once delivered, moving it to the dead letters once given up. Each call answers an
`OutboxStatus` code, as its C twin returns `airfsm_outbox_status_t`; none raises. `MemoryOutbox`
is the one in the core: a ring of `capacity` slots addressed by index (C: an array and two
indices), with a second ring of as many dead letters. The gateway's durable outbox is SQLite
(`airfsm.host.store.SqliteOutbox`), behind the same calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from airfsm.core import payload
from airfsm.core.codes import OutboxStatus, Reason
from airfsm.core.messages import DeadLetter, OutboundMessage
from airfsm.core.settings import OUTBOX_RING


class OutboxFullError(Exception):
    """The in-memory outbox is at capacity: the caller keeps the message."""


class Outbox(Protocol):
    """What the controller needs from an outbox (`MemoryOutbox`, `store.SqliteOutbox`, the
    gateway's view of it). Each call either does all of its work and answers OK, or answers
    UNAVAILABLE having done none (the store is locked by another process, the disk is full,
    the filesystem read-only: the controller backs off and asks again); none of them raises or
    waits. The RAM ring is never UNAVAILABLE. A host store may say why it was in a text
    `last_error`, which the host's log shows with LogEvent.OUTBOX_UNAVAILABLE (the core never
    reads it: C keeps such words out of the core too)."""

    def peek(self) -> tuple[OutboxStatus, OutboundMessage | None]:
        """The oldest message still queued: (OK, it), (EMPTY, None) or (UNAVAILABLE, None).

        C: airfsm_outbox_status_t outbox_peek(const airfsm_outbox_t *outbox,
        airfsm_message_t *out) - fills `*out` on OK."""
        ...

    def mark_attempt(self, message_id: int) -> tuple[OutboxStatus, int]:
        """Count one more attempt for the message: (OK, the new count), (OK, 0) when it is
        gone, or (UNAVAILABLE, 0).

        C: airfsm_outbox_status_t outbox_mark_attempt(const airfsm_outbox_t *outbox,
        uint32_t id, uint32_t *attempts) - sets `*attempts` on OK."""
        ...

    def ack(self, message_id: int) -> OutboxStatus:
        """Delivered: remove the message for good. Unknown ids are ignored (OK).

        C: airfsm_outbox_status_t outbox_ack(const airfsm_outbox_t *outbox, uint32_t id)."""
        ...

    def dead_letter(self, message_id: int, reason: Reason, detail: int) -> OutboxStatus:
        """Given up on: move the message to the dead letters, with why (codes: a store that
        keeps text words them with `airfsm.host.reasons.dead_letter_text`). Unknown ids are
        ignored (OK).

        C: airfsm_outbox_status_t outbox_dead_letter(const airfsm_outbox_t *outbox,
        uint32_t id, airfsm_reason_t reason, int32_t detail)."""
        ...


# Words a dead letter's (attempts, reason, detail) for DeadLetter.reason.
DescribeDeath = Callable[[int, Reason, int], str]


class _Dead:
    """A slot of the dead-letter ring (C: a struct)."""

    __slots__ = ("message", "reason", "detail", "died_at")

    def __init__(self, message: OutboundMessage, reason: Reason, detail: int,
                 died_at: float) -> None:
        """C: a struct, filled by outbox_dead_letter()."""
        self.message = message
        self.reason = reason
        self.detail = detail
        self.died_at = died_at


class MemoryOutbox:
    """The in-memory outbox for library use and tests: a ring of `capacity` messages, and a
    ring of as many dead letters (when that is full, the oldest dead letter is forgotten and
    counted in `dead_letters_dropped`: the queue never stops for want of room to give up).

    The core has no clock and no texts: `wall_clock` stamps dead letters (Unix seconds; 0.0
    without one) and `describe` words them (the reason's name without one). A host passes
    `time.time` and `airfsm.host.reasons.dead_letter_text`.
    C: outbox_ring_t.
    """

    __slots__ = ("capacity", "_slots", "_head", "_count", "_dead", "_dead_head", "_dead_count",
                 "_next_id", "_wall_clock", "_describe", "dead_letters_dropped")

    def __init__(self, capacity: int = OUTBOX_RING, *,
                 wall_clock: Callable[[], float] | None = None,
                 describe: DescribeDeath | None = None) -> None:
        """C: outbox_ring_init()."""
        if capacity < 1:
            raise ValueError("outbox capacity must be at least 1")
        self.capacity = capacity
        self._slots: list[OutboundMessage | None] = [None] * capacity
        self._head = 0  # the slot of the oldest message
        self._count = 0
        self._dead: list[_Dead | None] = [None] * capacity
        self._dead_head = 0
        self._dead_count = 0
        self._next_id = 1
        self._wall_clock = wall_clock
        self._describe = describe
        self.dead_letters_dropped = 0

    # -- the queue ---------------------------------------------------------------------------

    def _slot(self, k: int) -> int:
        """The slot of the k-th oldest message. C: outbox_slot()."""
        return (self._head + k) % self.capacity

    def _find(self, message_id: int) -> int:
        """k such that the k-th oldest message has this id; -1 if none. C: a loop."""
        for k in range(self._count):
            message = self._slots[self._slot(k)]
            if message is not None and message.id == message_id:
                return k
        return -1

    def _remove(self, k: int) -> OutboundMessage:
        """Take the k-th oldest message out; the younger ones move up one slot (C: a loop of
        slot copies, the ring's memmove)."""
        message = self._slots[self._slot(k)]
        assert message is not None
        for j in range(k, self._count - 1):
            self._slots[self._slot(j)] = self._slots[self._slot(j + 1)]
        self._slots[self._slot(self._count - 1)] = None
        self._count -= 1
        return message

    def enqueue(self, topic: str, data: bytes, qos: int) -> int:
        """ValueError for a message that could never be sent; OutboxFullError when full.

        C: outbox_enqueue()."""
        reason = payload.check_message(topic, data, qos)
        if reason is not None:
            raise ValueError(reason)
        if self._count >= self.capacity:
            raise OutboxFullError(f"outbox full ({self.capacity} messages)")
        message = OutboundMessage(self._next_id, topic, bytes(data), qos)
        self._next_id += 1
        self._slots[self._slot(self._count)] = message
        self._count += 1
        return message.id

    def peek(self) -> tuple[OutboxStatus, OutboundMessage | None]:
        """C: outbox_peek()."""
        if not self._count:
            return OutboxStatus.EMPTY, None
        return OutboxStatus.OK, self._slots[self._head]

    def queued(self, after_id: int = 0, limit: int = 100) -> list[OutboundMessage]:
        """Python only (no C twin)."""
        out: list[OutboundMessage] = []
        for k in range(self._count):
            message = self._slots[self._slot(k)]
            if message is not None and message.id > after_id and len(out) < limit:
                out.append(message)
        return out

    def mark_attempt(self, message_id: int) -> tuple[OutboxStatus, int]:
        """C: outbox_mark_attempt()."""
        k = self._find(message_id)
        if k < 0:
            return OutboxStatus.OK, 0
        slot = self._slot(k)
        message = self._slots[slot]
        assert message is not None
        counted = replace(message, attempts=message.attempts + 1)
        self._slots[slot] = counted
        return OutboxStatus.OK, counted.attempts

    def ack(self, message_id: int) -> OutboxStatus:
        """C: outbox_ack()."""
        k = self._find(message_id)
        if k >= 0:
            self._remove(k)
        return OutboxStatus.OK

    def count(self) -> int:
        """C: outbox_count()."""
        return self._count

    def __len__(self) -> int:
        """Python only (no C twin)."""
        return self._count

    # -- dead letters ------------------------------------------------------------------------

    def dead_letter(self, message_id: int, reason: Reason, detail: int) -> OutboxStatus:
        """C: outbox_dead_letter()."""
        k = self._find(message_id)
        if k < 0:
            return OutboxStatus.OK
        message = self._remove(k)
        if self._dead_count == self.capacity:
            self._take_dead(0)  # the oldest goes, so that this one is kept
            self.dead_letters_dropped += 1
        died_at = self._wall_clock() if self._wall_clock is not None else 0.0
        self._dead[(self._dead_head + self._dead_count) % self.capacity] = _Dead(
            message, reason, detail, died_at)
        self._dead_count += 1
        return OutboxStatus.OK

    def _dead_at(self, k: int) -> _Dead:
        """C: outbox_dead_at()."""
        dead = self._dead[(self._dead_head + k) % self.capacity]
        assert dead is not None
        return dead

    def _find_dead(self, dead_id: int) -> int:
        """Python only (no C twin: the C ring keeps no bytes to re-queue)."""
        for k in range(self._dead_count):
            if self._dead_at(k).message.id == dead_id:
                return k
        return -1

    def _take_dead(self, k: int) -> _Dead:
        """Take the k-th oldest dead letter out (the younger ones move up one slot).

        C: outbox_drop_oldest_dead() (k = 0, the only one the C ring takes)."""
        dead = self._dead_at(k)
        cap = self.capacity
        for j in range(k, self._dead_count - 1):
            self._dead[(self._dead_head + j) % cap] = self._dead[(self._dead_head + j + 1) % cap]
        self._dead[(self._dead_head + self._dead_count - 1) % cap] = None
        self._dead_count -= 1
        return dead

    def _as_record(self, dead: _Dead) -> DeadLetter:
        """Python only (no C twin)."""
        m = dead.message
        reason = (self._describe(m.attempts, dead.reason, dead.detail)
                  if self._describe is not None else dead.reason.name.lower())
        return DeadLetter(m.id, m.topic, m.payload, m.qos, m.attempts, reason, dead.died_at)

    def dead_letters(self, after_id: int = 0, limit: int = 100) -> list[DeadLetter]:
        """Python only (no C twin)."""
        out: list[DeadLetter] = []
        for k in range(self._dead_count):
            dead = self._dead_at(k)
            if dead.message.id > after_id and len(out) < limit:
                out.append(self._as_record(dead))
        return out

    def dead_count(self) -> int:
        """Python only (no C twin)."""
        return self._dead_count

    def requeue(self, dead_id: int) -> int:
        """A dead letter back at the tail with a new id and a fresh budget.

        Python only (no C twin)."""
        k = self._find_dead(dead_id)
        if k < 0:
            raise ValueError(f"no dead letter with id {dead_id}")
        m = self._dead_at(k).message
        new_id = self.enqueue(m.topic, m.payload, m.qos)  # OutboxFullError: it stays dead
        self._take_dead(k)
        return new_id

    def discard(self, dead_id: int) -> None:
        """Forget a dead letter for good. Python only (no C twin)."""
        k = self._find_dead(dead_id)
        if k < 0:
            raise ValueError(f"no dead letter with id {dead_id}")
        self._take_dead(k)
