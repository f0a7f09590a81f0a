"""The RAM outbox ring (airfsm/core/outbox.py): fixed slots addressed by index, dead letters."""

from __future__ import annotations

import pytest

from airfsm.core.codes import OutboxStatus, Reason
from airfsm.core.outbox import MemoryOutbox, OutboxFullError
from airfsm.host import reasons


def test_the_ring_wraps_around_its_fixed_slots_many_times() -> None:
    box = MemoryOutbox(capacity=3)
    slots = box._slots
    sent = []
    for i in range(20):  # far more messages than slots, never more than 3 at once
        box.enqueue("/t", b"%d" % i, 1)
        if len(box) == 3:
            status, head = box.peek()
            assert status == OutboxStatus.OK and head is not None
            sent.append(head.payload)
            assert box.ack(head.id) == OutboxStatus.OK
    while (head := box.peek()[1]) is not None:
        sent.append(head.payload)
        box.ack(head.id)
    assert sent == [b"%d" % i for i in range(20)]  # in order, none lost or doubled
    assert box._slots is slots and len(slots) == 3  # the ring never grew
    assert len(box) == 0 and box.peek() == (OutboxStatus.EMPTY, None)


def test_acking_and_dead_lettering_from_the_middle_keeps_the_order() -> None:
    box = MemoryOutbox(capacity=4)
    ids = [box.enqueue("/t", bytes([65 + i]), 1) for i in range(4)]
    with pytest.raises(OutboxFullError):
        box.enqueue("/t", b"E", 1)
    box.ack(ids[1])
    assert box.dead_letter(ids[2], Reason.NO_PUBACK, 10_000) == OutboxStatus.OK
    assert box.ack(12345) == OutboxStatus.OK  # unknown ids are ignored
    assert box.dead_letter(12345, Reason.NONE, 0) == OutboxStatus.OK
    box.enqueue("/t", b"E", 1)
    assert [m.payload for m in box.queued()] == [b"A", b"D", b"E"]
    assert box.mark_attempt(ids[3]) == (OutboxStatus.OK, 1)
    assert box.mark_attempt(ids[3]) == (OutboxStatus.OK, 2)
    assert box.mark_attempt(12345) == (OutboxStatus.OK, 0)  # gone: nothing to count
    assert [m.attempts for m in box.queued()] == [0, 2, 0]
    [dead] = box.dead_letters()
    assert (dead.id, dead.payload, dead.reason, dead.died_at) == (ids[2], b"C", "no_puback", 0.0)


def test_dead_letters_are_worded_and_stamped_by_what_the_host_lends() -> None:
    box = MemoryOutbox(capacity=2, wall_clock=lambda: 1234.5, describe=reasons.dead_letter_text)
    first = box.enqueue("/t", b"x", 1)
    box.mark_attempt(first)
    box.dead_letter(first, Reason.MPUB_ERROR, -1)
    [dead] = box.dead_letters()
    assert dead.reason == "1 attempts without PUBACK (last: AT+MPUB ERROR)"
    assert dead.died_at == 1234.5 and dead.attempts == 1


def test_a_full_dead_letter_ring_forgets_its_oldest_and_counts_it() -> None:
    box = MemoryOutbox(capacity=2)
    for i in range(5):
        box.dead_letter(box.enqueue("/t", b"%d" % i, 1), Reason.SESSION_ENDED, 0)
    assert [d.payload for d in box.dead_letters()] == [b"3", b"4"]
    assert box.dead_letters_dropped == 3 and box.dead_count() == 2
    assert len(box) == 0  # the queue never stopped for want of room to give up


def test_requeue_and_discard_address_dead_letters_by_id() -> None:
    box = MemoryOutbox(capacity=3)
    a, b, c = (box.enqueue("/t", p, 1) for p in (b"a", b"b", b"c"))
    for message_id in (a, b, c):
        box.dead_letter(message_id, Reason.NONE, 0)
    box.discard(b)
    again = box.requeue(c)
    assert again > c and [m.payload for m in box.queued()] == [b"c"]
    assert [d.id for d in box.dead_letters()] == [a]
    with pytest.raises(ValueError, match="no dead letter"):
        box.discard(b)
    with pytest.raises(ValueError):
        MemoryOutbox(capacity=0)
