"""The message records and the outbox contract that cross the controller / gateway boundary.

Kept in their own tiny module so that both the tick path (controller) and the host-only storage
(store) can use them without either importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class OutboundMessage:
    """One message waiting in the outbox. `id` is unique and increases with enqueue order.
    `attempts` counts the sends (and refused mode switches) already spent on it."""

    id: int
    topic: str
    payload: bytes
    qos: int
    attempts: int = 0


@dataclass(frozen=True)
class DeadLetter:
    """A message the gateway gave up on after its attempt budget: kept, never sent again
    unless re-queued. `id` is the id it had in the outbox; times are Unix seconds."""

    id: int
    topic: str
    payload: bytes
    qos: int
    attempts: int
    reason: str
    died_at: float


@dataclass(frozen=True)
class InboundMessage:
    """One `+MSUB:` message as received. `received_at` is Unix time in seconds (time.time())."""

    topic: str
    payload: bytes
    received_at: float


class OutboxUnavailable(Exception):
    """The outbox cannot do this now (locked by another process, disk full, read-only
    filesystem). Nothing changed; the controller backs off and asks again later."""


class Outbox(Protocol):
    """What the controller needs from an outbox (`controller.MemoryOutbox`, the gateway's view
    of `store.SqliteOutbox`). Each call either does all of its work or raises
    OutboxUnavailable having done none; none of them may wait."""

    def peek(self) -> OutboundMessage | None:
        """The oldest message still queued, or None."""
        ...

    def mark_attempt(self, message_id: int) -> int:
        """Count one more attempt for the message; the new count (0 if it is gone)."""
        ...

    def ack(self, message_id: int) -> None:
        """Delivered: remove the message for good. Unknown ids are ignored."""
        ...

    def dead_letter(self, message_id: int, reason: str) -> None:
        """Given up on: move the message to the dead letters. Unknown ids are ignored."""
        ...
