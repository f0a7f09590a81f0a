"""Crash loops with real parts: `airfsm run` kill -9'ed again and again during QoS1 traffic, and
a process killed in the middle of its SQLite writes.

The gateway runs as a real process on a pty served by the simulator, whose MQTT session is a
real client of a real mosquitto (the `airfsm sim --pty --broker` setup, in-process so the test
can read the module's record). Kill points are drawn from a seeded PRNG: while the gateway
starts, connects, or publishes. After every kill the database must pass `PRAGMA
integrity_check`; at the end every message must have reached the broker (0 lost), and a
message may arrive twice only across a kill (at least once: it was in flight when its gateway
died), never twice within one gateway's life.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from airfsm.host.store import SqliteOutbox, db_path
from airfsm.sim import SimConfig, SimServer
from tests.conftest import BrokerProbe, Mosquitto
from tests.harness import SEED_DN, SEED_PK
from tests.test_gateway import wait_until
from tests.test_gateway_e2e import _broker_session_class, probe, start_gateway  # noqa: F401

UPDATE = f"/{SEED_PK}/{SEED_DN}/update"
KILLS = 22
BATCH = 8  # messages queued before each gateway start
DEADLINE_S = 120.0


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def test_kill_9_at_random_points_loses_nothing_and_duplicates_only_across_a_kill(
        tmp_path: Path, mosquitto: Mosquitto, probe: BrokerProbe) -> None:  # noqa: F811
    session = _broker_session_class().from_url(mosquitto.url, product_key=SEED_PK,
                                               device_name=SEED_DN)
    server = SimServer(SimConfig(profile="fast"), transport="pty", session=session).start()
    rng = random.Random(20240610)
    data = tmp_path / "data"
    expected: list[bytes] = []
    segments: list[int] = []  # len(module.published) at each kill
    gateways = []

    def queue(n: int) -> None:
        with SqliteOutbox(db_path(data)) as box:
            for _ in range(n):
                payload = f'{{"crash":{len(expected)}}}'.encode()
                box.enqueue(UPDATE, payload, 1)
                expected.append(payload)

    def published() -> int:
        return int(server.call(lambda m, _now: len(m.published)))

    try:
        for kill in range(KILLS):
            queue(BATCH)
            gateway = start_gateway(server.endpoint, data, kill)
            gateways.append(gateway)
            if kill % 2:  # in the middle of the traffic
                before = published()
                running = gateway.proc
                wait_until(lambda b=before, p=running: published() > b or p.poll() is not None,
                           DEADLINE_S, "a publish")
                time.sleep(rng.uniform(0, 0.15))  # a random point of what follows
            else:  # while it starts, opens its stores, connects
                time.sleep(rng.uniform(0.05, 1.2))
            gateway.proc.send_signal(signal.SIGKILL)
            assert gateway.proc.wait(timeout=30) == -signal.SIGKILL, gateway.stderr()[-2000:]
            segments.append(published())
            assert integrity(db_path(data)) == "ok"

        final = start_gateway(server.endpoint, data, KILLS)
        gateways.append(final)

        def delivered() -> bool:
            return set(probe.payloads(UPDATE)) >= set(expected)

        assert probe.wait_for(delivered, DEADLINE_S), (
            f"{len(set(probe.payloads(UPDATE)))}/{len(expected)}:\n{final.stderr()[-3000:]}")
        final.wait_status(lambda s: s["outbox"]["queued"] == 0, DEADLINE_S, "an empty outbox")
        assert final.stop() == 0
        assert integrity(db_path(data)) == "ok"
        with SqliteOutbox(db_path(data)) as box:
            assert box.count() == 0 and box.dead_count() == 0

        # At least once: a copy more only where a gateway died with that message in flight.
        record = server.call(lambda m, _now: [p for _t, p, _q in m.published])
        lives = [record[a:b] for a, b in zip([0, *segments], [*segments, len(record)],
                                             strict=True)]
        for n, life in enumerate(lives):
            twice = [p for p, c in Counter(life).items() if c > 1]
            assert twice == [], f"gateway {n} sent {twice[:3]} twice within its own life"
        copies = Counter(record)
        duplicated = [p for p in expected if copies[p] > 1]
        assert len(duplicated) <= KILLS
        assert all(copies[p] >= 1 for p in expected)  # 0 lost, as the module saw it too
    finally:
        for g in gateways:
            if g.proc.poll() is None:
                g.proc.kill()
                g.proc.wait()
        server.stop()


WRITER = r"""
import sys
from airfsm.host.store import SqliteOutbox
box = SqliteOutbox(sys.argv[1])
n = int(sys.argv[2])
while True:
    message_id = box.enqueue("/p/d/update", b"power %d" % n, 1)
    print("E", message_id, flush=True)
    box.mark_attempt(message_id)
    _status, head = box.peek()
    if head is not None and n % 3 == 0:
        print("a", head.id, flush=True)  # about to go: killed now, it may or may not be
        box.ack(head.id)
        print("A", head.id, flush=True)
    elif head is not None and n % 7 == 0:
        print("a", head.id, flush=True)
        box.dead_letter(head.id, "test")
        print("D", head.id, flush=True)
    n += 1
"""


def test_a_writer_killed_in_the_middle_of_its_transactions_leaves_a_sound_store(
        tmp_path: Path) -> None:
    rng = random.Random(4711)
    path = db_path(tmp_path)
    with SqliteOutbox(path):
        pass  # created, migrated
    enqueued: set[int] = set()
    leaving: set[int] = set()  # the writer was about to acknowledge or dead-letter these
    acked: set[int] = set()  # ... and said it had
    dead_lettered: set[int] = set()
    for round_ in range(20):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(round_ * 1000)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert writer.stdout is not None
        first = writer.stdout.readline()  # it writes now: kill it somewhere in what follows
        assert first.startswith(b"E "), writer.stderr.read() if writer.stderr else b""
        time.sleep(rng.uniform(0, 0.2))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        # The rest through the same buffered reader: readline() may have read lines past the
        # first into its buffer, which communicate() (it reads the pipe itself) would skip.
        out = writer.stdout.read()
        writer.stdout.close()
        assert writer.stderr is not None
        writer.stderr.close()
        # A line cut by the kill (no newline yet) says nothing.
        for line in [first, *out.split(b"\n")[:-1]]:
            kind, _, number = line.decode().partition(" ")
            sets = {"E": enqueued, "a": leaving, "A": acked, "D": dead_lettered}
            if kind in sets:
                sets[kind].add(int(number))
        assert integrity(path) == "ok"
        with SqliteOutbox(path) as box:
            queued = {m.id for m in box.queued(0, 1 << 30)}
            dead = {d.id for d in box.dead_letters(0, 1 << 30)}
            # every write it reported committed is there, or gone the way it said
            assert enqueued - leaving <= queued | dead
            assert not (acked & (queued | dead)) and dead_lettered <= dead
            box.enqueue("/p/d/update", b"after the crash", 1)  # and the store still works
    assert len(enqueued) > 20
