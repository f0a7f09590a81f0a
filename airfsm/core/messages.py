"""The messages that cross the controller / gateway boundary. C twin: `port/c/core/outbox.h`
(`airfsm_message_t`, a view of a queued message).

Kept in their own tiny module so that both the tick path (controller, outbox) and the host-only
storage (store) can use them without either importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass


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
