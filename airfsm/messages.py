"""The two message records that cross the controller / gateway boundary.

Kept in their own tiny module so that both the tick path (controller) and the host-only storage
(store) can use them without either importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutboundMessage:
    """One message waiting in the outbox. `id` is unique and increases with enqueue order."""

    id: int
    topic: str
    payload: bytes
    qos: int


@dataclass(frozen=True)
class InboundMessage:
    """One `+MSUB:` message as received. `received_at` is Unix time in seconds (time.time())."""

    topic: str
    payload: bytes
    received_at: float
