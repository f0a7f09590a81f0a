"""Handing a message to the gateway from any process: the library's `airfsm publish`.

A message is written to the gateway's SQLite outbox (durable at once, whether or not a gateway
runs), then the gateway is poked through its wake socket so it sends the message now rather than
at its next look at the outbox. Light on purpose: no controller, no logging stack.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from airfsm.core.aliyun import resolve_topic
from airfsm.core.payload import check_message
from airfsm.host import alink
from airfsm.host.store import DEFAULT_OUTBOX_CAPACITY, SqliteOutbox, db_path

WAKE_SOCKET = "wake.sock"


def wake_socket_path(data_dir: str | Path) -> Path:
    """`<data_dir>/wake.sock`: the gateway's unix datagram socket."""
    return Path(data_dir) / WAKE_SOCKET


def poke(data_dir: str | Path) -> bool:
    """Wake a gateway running on `data_dir` (best effort; False when none is listening)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            sock.sendto(b"!", str(wake_socket_path(data_dir)))
        except OSError:
            return False  # no gateway, a stale socket file, or its queue is full: all fine
    return True


def enqueue(data_dir: str | Path, topic: str, payload: bytes, qos: int = 1, *,
            product_key: str | None = None, device_name: str | None = None,
            capacity: int = DEFAULT_OUTBOX_CAPACITY, create: bool = True,
            priority: bool = False, deadline_at: float | None = None) -> int:
    """Durably queue a message for the gateway of `data_dir`; return its id.

    A topic without a leading `/` is relative to `/{product_key}/{device_name}/` (ValueError
    when those are not given). ValueError for anything that could never be published (bad topic,
    QoS, payload); `store.OutboxFull` when the outbox holds `capacity` messages (nothing is
    dropped); `store.StoreError` when the store cannot be opened or written. `create=False`
    (what `airfsm publish` does) refuses with `store.NoStore` when no gateway store exists yet,
    rather than making a new one no gateway may ever read. `priority` queues it in the
    priority lane (sent before the normal queue), where `deadline_at` (Unix time) is when it is
    no longer worth sending (`SqliteOutbox.enqueue_priority`).
    """
    if not topic:
        raise ValueError("topic is empty")
    if not topic.startswith("/"):
        if not product_key or not device_name:
            raise ValueError(f"relative topic {topic!r} needs the ProductKey and DeviceName")
        topic = resolve_topic(product_key, device_name, topic)
    reason = check_message(topic, payload, qos)  # refused before any store is looked at
    if reason is not None:
        raise ValueError(reason)
    with SqliteOutbox(db_path(data_dir), capacity, create=create) as outbox:
        if priority:
            message_id = outbox.enqueue_priority(topic, payload, qos, deadline_at)
        else:
            message_id = outbox.enqueue(topic, payload, qos)
    poke(data_dir)
    return message_id


ALINK_ID_COUNTER = "alink_id"  # the store's counter of the device's Alink request ids


def enqueue_property_post(data_dir: str | Path, product_key: str, device_name: str,
                          params: dict[str, Any], *, capacity: int = DEFAULT_OUTBOX_CAPACITY,
                          create: bool = True) -> tuple[int, int]:
    """Queue an Alink property post (`/sys/{pk}/{dn}/thing/event/property/post`, QoS 1) with
    the next request id from the store's counter; return (message id, Alink id). The errors
    are `enqueue`'s (ValueError when the JSON is too large to publish)."""
    topic = alink.property_post_topic(product_key, device_name)
    with SqliteOutbox(db_path(data_dir), capacity, create=create) as outbox:
        message_id, alink_id = outbox.enqueue_numbered(
            topic, 1, ALINK_ID_COUNTER, lambda number: alink.property_post_payload(number, params),
            wrap=alink.MAX_ALINK_ID)
    poke(data_dir)
    return message_id, alink_id
