"""Durable outbox/inbox (SQLite), inbox JSON lines, the data directory and the status file."""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from enum import IntEnum
from pathlib import Path

import pytest

from airfsm.core.codes import OutboxStatus, Reason
from airfsm.core.messages import InboundMessage, OutboundMessage
from airfsm.core.outbox import MemoryOutbox, OutboxFullError
from airfsm.core.payload import MAX_PAYLOAD_HEX_RAW
from airfsm.host import log, reasons, store
from airfsm.host.paths import default_data_dir
from airfsm.host.store import (
    SCHEMA_VERSION,
    OutboxFull,
    SqliteInbox,
    SqliteOutbox,
    StatusFile,
    StoreError,
    db_path,
    inbox_json_line,
)

REPO = Path(__file__).resolve().parent.parent
TOPIC = "/pk/dn/update"


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[SqliteOutbox]:
    box = SqliteOutbox(db_path(tmp_path))
    yield box
    box.close()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# --- outbox ---------------------------------------------------------------------------------

OK = OutboxStatus.OK


def test_outbox_is_fifo_and_keeps_fields(outbox: SqliteOutbox) -> None:
    assert outbox.peek() == (OutboxStatus.EMPTY, None) and outbox.count() == 0
    first = outbox.enqueue(TOPIC, b"one", 1)
    second = outbox.enqueue("/pk/dn/other", b"\x00\xff binary", 0)
    third = outbox.enqueue("relative/topic", b"", 1)
    assert first < second < third
    assert outbox.count() == 3
    assert outbox.peek() == (OK, OutboundMessage(first, TOPIC, b"one", 1))
    assert outbox.peek() == (OK, OutboundMessage(first, TOPIC, b"one", 1))  # not consumed
    assert outbox.ack(first) == OK
    assert outbox.peek() == (OK, OutboundMessage(second, "/pk/dn/other", b"\x00\xff binary", 0))
    outbox.ack(second)
    assert outbox.peek() == (OK, OutboundMessage(third, "relative/topic", b"", 1))
    outbox.ack(third)
    assert outbox.peek() == (OutboxStatus.EMPTY, None) and outbox.count() == 0


def test_ids_are_never_reused(outbox: SqliteOutbox) -> None:
    a = outbox.enqueue(TOPIC, b"a", 1)
    outbox.ack(a)
    b = outbox.enqueue(TOPIC, b"b", 1)
    assert b > a  # a late PUBACK for `a` can never acknowledge `b`


def test_ack_is_idempotent(outbox: SqliteOutbox) -> None:
    a = outbox.enqueue(TOPIC, b"a", 1)
    b = outbox.enqueue(TOPIC, b"b", 1)
    outbox.ack(a)
    assert outbox.ack(a) == OK
    assert outbox.ack(999_999) == OK
    assert outbox.count() == 1
    _status, peeked = outbox.peek()
    assert peeked is not None and peeked.id == b


def test_only_the_ack_commits_without_waiting_for_the_disk(outbox: SqliteOutbox) -> None:
    """enqueue and mark_attempt are synced (power loss); the DELETE after a PUBACK is not: a
    power cut undoing it costs one resend, which at-least-once allows."""
    a = outbox.enqueue(TOPIC, b"a", 1)
    assert outbox.mark_attempt(a) == (OK, 1)
    seen = _statements(outbox)
    assert outbox.ack(a) == OK
    assert [q.split()[0] for q in seen] == ["PRAGMA", "DELETE", "PRAGMA"]
    assert seen[0] == "PRAGMA synchronous=NORMAL" and seen[-1] == "PRAGMA synchronous=FULL"
    assert outbox._db().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
    outbox.close()
    assert outbox.ack(a) == OutboxStatus.UNAVAILABLE


def test_capacity_refuses_without_losing_rows(tmp_path: Path) -> None:
    with SqliteOutbox(db_path(tmp_path), capacity=3) as box:
        ids = [box.enqueue(TOPIC, f"m{i}".encode(), 1) for i in range(3)]
        with pytest.raises(OutboxFull) as info:
            box.enqueue(TOPIC, b"m3", 1)
        message = str(info.value)
        assert "full" in message and "3" in message and "\n" not in message
        assert box.count() == 3
        # the old rows are all still there, in order, unchanged
        for i, message_id in enumerate(ids):
            assert box.peek() == (OK, OutboundMessage(message_id, TOPIC, f"m{i}".encode(), 1))
            box.ack(message_id)
            if i == 0:
                box.enqueue(TOPIC, b"after", 1)  # room again once one is acked
        _status, head = box.peek()
        assert head is not None and head.payload == b"after"


def test_mark_attempt_counts(outbox: SqliteOutbox) -> None:
    a = outbox.enqueue(TOPIC, b"a", 1)
    assert outbox.attempts(a) == 0
    assert outbox.mark_attempt(a) == (OK, 1)
    assert outbox.mark_attempt(a) == (OK, 2)
    assert outbox.attempts(a) == 2
    outbox.ack(a)
    assert outbox.mark_attempt(a) == (OK, 0)  # gone: nothing to count, no error


@pytest.mark.parametrize(("topic", "payload", "qos", "word"), [
    ("", b"x", 1, "empty"),
    ('/a"b', b"x", 1, '"'),
    ("/a/+", b"x", 1, "wildcard"),
    (TOPIC, b"x", 2, "qos"),
    (TOPIC, b"\x00" * (MAX_PAYLOAD_HEX_RAW + 1), 1, "too large"),
])
def test_enqueue_refuses_what_could_never_be_sent(
        outbox: SqliteOutbox, topic: str, payload: bytes, qos: int, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        outbox.enqueue(topic, payload, qos)
    assert outbox.count() == 0


def test_allow_hex_false_refuses_binary(tmp_path: Path) -> None:
    with SqliteOutbox(db_path(tmp_path), allow_hex=False) as box:
        with pytest.raises(ValueError, match="hex mode"):
            box.enqueue(TOPIC, "温度".encode(), 1)
        box.enqueue(TOPIC, b"plain", 1)
        assert box.count() == 1


def test_outbox_survives_reopen_and_uses_wal_full_and_a_schema_version(tmp_path: Path) -> None:
    path = db_path(tmp_path / "new" / "dir")  # parents are created
    with SqliteOutbox(path) as box:
        message_id = box.enqueue(TOPIC, b"kept", 1)
        assert box._db().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert box._db().execute("PRAGMA busy_timeout").fetchone()[0] > 0
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()
    with SqliteOutbox(path) as box:
        assert box.peek() == (OK, OutboundMessage(message_id, TOPIC, b"kept", 1))


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    SqliteOutbox(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="schema version"):
        SqliteOutbox(path)


SCHEMA_1 = (  # what airfsm wrote before the dead letters existed
    """CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
       payload BLOB NOT NULL, qos INTEGER NOT NULL CHECK (qos IN (0, 1)),
       enqueued_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
       payload BLOB NOT NULL, received_at REAL NOT NULL)""",
)


def test_a_schema_1_store_is_migrated_to_the_current_one_and_keeps_its_rows(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    raw = sqlite3.connect(path)
    for statement in SCHEMA_1:
        raw.execute(statement)
    raw.execute("INSERT INTO outbox (topic, payload, qos, enqueued_at, attempts) "
                "VALUES (?, ?, 1, 1.0, 2)", (TOPIC, b"queued under schema 1"))
    raw.execute("INSERT INTO inbox (topic, payload, received_at) VALUES ('/pk/dn/get', ?, 2.0)",
                (b"received under schema 1",))
    raw.execute("PRAGMA user_version=1")
    raw.commit()
    raw.close()
    with SqliteOutbox(path) as box:
        assert box.peek() == (OK, OutboundMessage(1, TOPIC, b"queued under schema 1", 1,
                                                  attempts=2))
        assert box.dead_letter(1, "moved after the migration") == OK
        assert [d.payload for d in box.dead_letters()] == [b"queued under schema 1"]
        assert box.enqueue(TOPIC, b"new", 1) == 2  # ids go on where schema 1 left them
    with SqliteInbox(path) as inbox:
        assert [m.payload for _id, m in inbox.read()] == [b"received under schema 1"]
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        columns = [row[1] for row in raw.execute("PRAGMA table_info(outbox)")]
        assert columns[-2:] == ["lane", "deadline_at"]  # schema 3: the priority lane
    finally:
        raw.close()


@pytest.fixture(params=["sqlite", "memory"])
def any_outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """Both outboxes: the dead-letter operations are one interface."""
    if request.param == "memory":
        # The host lends the core its clock and its words for dead letters.
        yield MemoryOutbox(capacity=3, wall_clock=time.time, describe=reasons.dead_letter_text)
        return
    box = SqliteOutbox(db_path(tmp_path), capacity=3)
    yield box
    box.close()


def test_dead_letter_moves_the_whole_message_and_the_queue_goes_on(any_outbox: object) -> None:
    box: SqliteOutbox = any_outbox  # type: ignore[assignment]
    first = box.enqueue(TOPIC, b"\x00poison", 1)
    second = box.enqueue(TOPIC, b"next", 0)
    box.mark_attempt(first)
    box.mark_attempt(first)
    before = time.time()
    assert box.dead_letter(first, Reason.NONE, 0) == OK  # the budget spent, no failure known
    assert box.dead_letter(999, Reason.NO_PUBACK, 1) == OK  # unknown ids are ignored
    assert box.peek() == (OK, OutboundMessage(second, TOPIC, b"next", 0))
    [dead] = box.dead_letters()
    assert (dead.id, dead.topic, dead.payload, dead.qos, dead.attempts, dead.reason) == (
        first, TOPIC, b"\x00poison", 1, 2, "2 attempts without PUBACK")
    assert before - 1 <= dead.died_at <= time.time() + 1
    assert box.count() == 1 and box.dead_count() == 1
    assert box.queued() == [OutboundMessage(second, TOPIC, b"next", 0)]


def test_requeue_puts_a_dead_letter_at_the_tail_with_a_new_id_and_a_fresh_budget(
        any_outbox: object) -> None:
    box: SqliteOutbox = any_outbox  # type: ignore[assignment]
    dead_id = box.enqueue(TOPIC, b"again", 1)
    box.mark_attempt(dead_id)
    box.dead_letter(dead_id, Reason.NO_PUBACK, 10_000)
    other = box.enqueue(TOPIC, b"other", 1)
    new_id = box.requeue(dead_id)
    assert new_id > other > dead_id
    assert box.queued() == [OutboundMessage(other, TOPIC, b"other", 1),
                            OutboundMessage(new_id, TOPIC, b"again", 1, attempts=0)]
    assert box.dead_letters() == []
    with pytest.raises(ValueError, match="no dead letter with id"):
        box.requeue(dead_id)
    box.dead_letter(other, Reason.SESSION_ENDED, 0)
    box.discard(other)
    assert box.dead_letters() == [] and box.dead_count() == 0
    with pytest.raises(ValueError, match="no dead letter with id"):
        box.discard(other)


def test_requeue_into_a_full_outbox_keeps_the_dead_letter(any_outbox: object) -> None:
    box: SqliteOutbox = any_outbox  # type: ignore[assignment]
    dead_id = box.enqueue(TOPIC, b"dead", 1)
    box.dead_letter(dead_id, Reason.BAD_TOPIC, 200)
    for i in range(3):
        box.enqueue(TOPIC, f"fill {i}".encode(), 1)
    with pytest.raises((OutboxFull, OutboxFullError)):
        box.requeue(dead_id)
    assert [d.id for d in box.dead_letters()] == [dead_id]


def test_unopenable_path_is_a_one_line_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError) as info:
        SqliteOutbox(blocker / "airfsm.db")
    assert "\n" not in str(info.value) and str(blocker) in str(info.value)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        SqliteOutbox(garbage)


def test_closed_store_raises_store_error_and_the_tick_calls_answer_unavailable(
        tmp_path: Path) -> None:
    box = SqliteOutbox(db_path(tmp_path))
    message_id = box.enqueue(TOPIC, b"x", 1)
    box.close()
    box.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        box.enqueue(TOPIC, b"x", 1)
    with pytest.raises(StoreError, match="closed"):
        box.queued()
    # the controller's calls never raise: UNAVAILABLE, and why
    unavailable = OutboxStatus.UNAVAILABLE
    assert box.peek() == (unavailable, None)
    assert box.mark_attempt(message_id) == (unavailable, 0)
    assert box.ack(message_id) == unavailable
    assert box.dead_letter(message_id, Reason.NONE, 0) == unavailable
    assert "closed" in box.last_error and "\n" not in box.last_error


def test_bad_capacity() -> None:
    with pytest.raises(ValueError):
        SqliteOutbox(":memory:", capacity=0)


_WRITER = """
import sys
from airfsm.host.store import SqliteOutbox, OutboxFull
path, tag, n, capacity = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
box = SqliteOutbox(path, capacity=capacity)
sys.stdin.readline()  # start together
accepted = refused = 0
for i in range(n):
    try:
        box.enqueue("/pk/dn/" + tag, f"{tag}:{i}".encode(), 1)
        accepted += 1
    except OutboxFull:
        refused += 1
box.close()
print(accepted, refused)
"""


def _start_writers(path: Path, n: int, capacity: int) -> list[subprocess.Popen[str]]:
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), tag, str(n),
                               str(capacity)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=child_env())
             for tag in ("a", "b")]
    for p in procs:  # both are connected; release them at once
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    return procs


def _finish(procs: list[subprocess.Popen[str]]) -> list[tuple[int, int]]:
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise
        assert p.returncode == 0, err
        accepted, refused = out.split()
        results.append((int(accepted), int(refused)))
    return results


def test_two_processes_enqueue_while_the_gateway_drains(tmp_path: Path) -> None:
    path = db_path(tmp_path)  # not created yet: both writers race to create it
    n = 150
    procs = _start_writers(path, n, capacity=10_000)
    seen: dict[str, list[int]] = {"a": [], "b": []}
    ids: list[int] = []
    box: SqliteOutbox | None = None
    # the gateway side: peek/ack as rows arrive, concurrently with the writers
    while True:
        done = all(p.poll() is not None for p in procs)
        if box is None and path.exists():
            box = SqliteOutbox(path)
        if box is None:
            if done:
                break
            time.sleep(0.001)
            continue
        status, head = box.peek()
        assert status != OutboxStatus.UNAVAILABLE, box.last_error
        if head is None:
            if done:
                break
            time.sleep(0.001)
            continue
        tag, i = head.payload.decode().split(":")
        seen[tag].append(int(i))
        ids.append(head.id)
        box.ack(head.id)
    assert _finish(procs) == [(n, 0), (n, 0)]
    assert box is not None
    box.close()
    assert seen == {"a": list(range(n)), "b": list(range(n))}  # none lost, each in order
    assert ids == sorted(ids) and len(set(ids)) == 2 * n


def test_capacity_holds_under_concurrent_publishers(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    SqliteOutbox(path).close()
    procs = _start_writers(path, 80, capacity=100)
    results = _finish(procs)
    accepted = sum(a for a, _ in results)
    refused = sum(r for _, r in results)
    assert accepted == 100 and refused == 60
    with SqliteOutbox(path) as box:
        assert box.count() == 100


_KILLED = """
import sys
from airfsm.host.store import SqliteOutbox
box = SqliteOutbox(sys.argv[1])
print(box.enqueue("/pk/dn/update", b"must survive kill -9", 1), flush=True)
sys.stdin.readline()  # block until killed
"""


def test_enqueued_message_survives_sigkill(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), proc.stderr.read() if proc.stderr else line
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL
    with SqliteOutbox(path) as box:
        assert box.peek() == (OK, OutboundMessage(int(line), "/pk/dn/update",
                                                  b"must survive kill -9", 1))


# --- peek without a query -------------------------------------------------------------------

def _statements(box: SqliteOutbox) -> list[str]:
    """Every statement `box`'s connection runs from now on."""
    seen: list[str] = []
    box._db().set_trace_callback(seen.append)
    return seen


def test_an_idle_peek_runs_no_statement_until_something_is_committed(tmp_path: Path) -> None:
    box = SqliteOutbox(db_path(tmp_path), busy_timeout_ms=0)
    first = box.enqueue(TOPIC, b"one", 1)
    seen = _statements(box)
    for _ in range(100):
        assert box.peek() == (OK, OutboundMessage(first, TOPIC, b"one", 1))
    assert len(seen) == 1  # the first peek asked; the other 99 knew
    assert box.mark_attempt(first) == (OK, 1)  # a write of ours: the next peek asks again
    assert box.peek() == (OK, OutboundMessage(first, TOPIC, b"one", 1, attempts=1))
    assert box.ack(first) == OK
    assert box.peek() == (OutboxStatus.EMPTY, None)
    seen.clear()
    for _ in range(100):
        assert box.peek() == (OutboxStatus.EMPTY, None)
    assert seen == []
    box.close()


_ENQUEUE = """
import sys
from airfsm.host.store import SqliteOutbox
with SqliteOutbox(sys.argv[1]) as box:
    if sys.argv[2] == "checkpoint":  # the WAL starts again from its first frame
        box._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(box.enqueue("/pk/dn/update", sys.argv[2].encode(), 1))
"""


def test_peek_sees_what_other_processes_commit_at_once(tmp_path: Path) -> None:
    """`airfsm publish` and the bridge write into the same file: the very next peek sees it."""
    path = db_path(tmp_path)
    box = SqliteOutbox(path, busy_timeout_ms=0)
    assert box.peek() == (OutboxStatus.EMPTY, None)

    def other_process_enqueues(payload: str) -> int:
        out = subprocess.run([sys.executable, "-c", _ENQUEUE, str(path), payload],
                             capture_output=True, text=True, env=child_env(), timeout=60)
        assert out.returncode == 0, out.stderr
        return int(out.stdout)

    for payload in ("first", "checkpoint", "after the checkpoint"):
        message_id = other_process_enqueues(payload)
        assert box.peek() == (OK, OutboundMessage(message_id, TOPIC, payload.encode(), 1))
        assert box.ack(message_id) == OK
        assert box.peek() == (OutboxStatus.EMPTY, None)
    other = SqliteOutbox(path)  # another connection deletes the head: seen too
    message_id = other.enqueue(TOPIC, b"gone", 1)
    assert box.peek()[1] is not None
    other.ack(message_id)
    assert box.peek() == (OutboxStatus.EMPTY, None)
    other.close()
    box.close()


def test_without_a_commit_stamp_every_peek_asks(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the WAL index cannot be read (not Linux), peek queries each time: never stale."""
    monkeypatch.setattr(store, "_mapped_at", lambda _path: None)
    box = SqliteOutbox(db_path(tmp_path), busy_timeout_ms=0)
    other = SqliteOutbox(db_path(tmp_path))
    seen = _statements(box)
    assert box.peek() == (OutboxStatus.EMPTY, None)
    message_id = other.enqueue(TOPIC, b"x", 1)
    assert box.peek() == (OK, OutboundMessage(message_id, TOPIC, b"x", 1))
    assert len(seen) == 2
    assert box._watch is not None and box._watch.stamp() is None
    other.close()
    box.close()


# --- inbox ----------------------------------------------------------------------------------

def test_inbox_add_read_in_order(tmp_path: Path) -> None:
    with SqliteInbox(db_path(tmp_path)) as inbox:
        assert inbox.read() == [] and inbox.last_id() == 0
        ids = [inbox.add("/pk/dn/get", f"m{i}".encode(), 1000.0 + i) for i in range(5)]
        assert ids == sorted(ids)
        rows = inbox.read()
        assert [r[0] for r in rows] == ids
        assert rows[2][1] == InboundMessage("/pk/dn/get", b"m2", 1002.0)
        assert [r[0] for r in inbox.read(after_id=ids[1])] == ids[2:]
        assert [r[0] for r in inbox.read(after_id=ids[0], limit=2)] == ids[1:3]
        assert inbox.count() == 5 and inbox.last_id() == ids[-1]


def test_inbox_prunes_oldest_beyond_capacity(tmp_path: Path) -> None:
    with SqliteInbox(db_path(tmp_path), capacity=5) as inbox:
        ids = [inbox.add("/t", bytes([i]), float(i)) for i in range(8)]
        assert inbox.count() == 5
        rows = inbox.read()
        assert [r[0] for r in rows] == ids[3:]
        assert [r[1].payload for r in rows] == [bytes([i]) for i in range(3, 8)]


def test_inbox_and_outbox_share_one_file(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    with SqliteOutbox(path) as box, SqliteInbox(path) as inbox:
        box.enqueue(TOPIC, b"out", 1)
        inbox.add("/pk/dn/get", b"in", 1.0)
        assert box.count() == 1 and inbox.count() == 1


def test_inbox_json_line_for_text() -> None:
    msg = InboundMessage("/pk/dn/get", '{"set": "温度"}\n'.encode(), 1714564800.25)
    line = inbox_json_line(msg)
    assert "\n" not in line and line.isascii()
    record = json.loads(line)
    assert record == {"topic": "/pk/dn/get", "payload": '{"set": "温度"}\n',
                      "payload_encoding": "utf-8", "received_at": "2024-05-01T12:00:00.250Z"}


def test_inbox_json_line_for_binary_with_id() -> None:
    payload = b"\xff\x00\xfe\n"
    line = inbox_json_line(InboundMessage("/t", payload, 0.0), message_id=7)
    assert "\n" not in line
    record = json.loads(line)
    assert record["id"] == 7
    assert record["payload_encoding"] == "base64"
    assert base64.b64decode(record["payload"]) == payload
    assert record["received_at"] == "1970-01-01T00:00:00.000Z"


# --- data directory -------------------------------------------------------------------------

def test_default_data_dir_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert default_data_dir({"AIRFSM_DATA_DIR": "/srv/x", "XDG_STATE_HOME": "/s",
                             "HOME": "/home/u"}) == Path("/srv/x")
    assert default_data_dir({"XDG_STATE_HOME": "/s", "HOME": "/home/u"}) == Path("/s/airfsm")
    assert default_data_dir({"XDG_STATE_HOME": "relative", "HOME": "/home/u"}) == \
        Path("/home/u/.local/state/airfsm")
    assert default_data_dir({"AIRFSM_DATA_DIR": "", "HOME": "/home/u"}) == \
        Path("/home/u/.local/state/airfsm")


def test_default_data_dir_for_root_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_data_dir({}) == Path("/var/lib/airfsm")
    assert default_data_dir({"HOME": "/"}) == Path("/var/lib/airfsm")
    assert default_data_dir({"HOME": "/root"}) == Path("/root/.local/state/airfsm")


# --- status file ----------------------------------------------------------------------------

@pytest.fixture
def secret() -> Iterator[str]:
    value = "y7MTCG6Gk33Ux26bbWSpANl4OaI0bg5Q"
    log.register_secret(value)
    yield value
    log.forget_secrets()


class State(IntEnum):
    ONLINE = 6


def test_status_round_trip(tmp_path: Path) -> None:
    status = StatusFile(tmp_path)
    assert status.path == tmp_path / "status.json"
    data = {"state": "ONLINE", "since": 1714564800.5, "attempts": 0,
            "counters": {"reconnects": {"closed": 2}, "publishes_sent": 10}}
    status.write(data)
    assert StatusFile.read(status.path) == data
    assert StatusFile.read(tmp_path) == data  # the data directory works too
    assert stat.S_IMODE(os.stat(status.path).st_mode) == 0o644
    status.write({"state": State.ONLINE, "nan": float("nan"), "path": tmp_path})
    assert StatusFile.read(tmp_path) == {"state": "ONLINE", "nan": None, "path": str(tmp_path)}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temp files left


def test_status_never_contains_a_secret(tmp_path: Path, secret: str) -> None:
    status = StatusFile(tmp_path)
    status.write({
        "state": "MQTT_CONNECT",
        "last_error": f'AT+MCONFIG="dn","iot","{secret}" -> ERROR',
        "nested": {"list": [secret, ("x" + secret,)], secret: 1, "raw": secret.encode()},
    })
    text = status.path.read_text()
    assert secret not in text
    assert text.count("***") == 5
    assert StatusFile.read(tmp_path)["last_error"] == 'AT+MCONFIG="dn","iot","***" -> ERROR'


def test_status_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status = StatusFile(tmp_path)
    status.write({"state": "OLD"})

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StoreError, match="No space left"):
        status.write({"state": "NEW"})
    monkeypatch.undo()
    assert StatusFile.read(tmp_path) == {"state": "OLD"}  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # temp file cleaned up


def test_status_readers_never_see_a_torn_file(tmp_path: Path) -> None:
    status = StatusFile(tmp_path)
    status.write({"n": -1, "pad": "x" * 20000})
    stop = threading.Event()
    errors: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                StatusFile.read(tmp_path)
            except StoreError as exc:
                errors.append(str(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(300):
            status.write({"n": n, "pad": "x" * 20000})
    finally:
        stop.set()
        thread.join(timeout=10)
    assert errors == []
    assert StatusFile.read(tmp_path)["n"] == 299


def test_status_read_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no status file"):
        StatusFile.read(tmp_path)
    (tmp_path / "status.json").write_text('{"state": "ONL')
    with pytest.raises(StoreError, match="corrupt"):
        StatusFile.read(tmp_path)
    (tmp_path / "status.json").write_text("[1, 2]")
    with pytest.raises(StoreError, match="not a JSON object"):
        StatusFile.read(tmp_path / "status.json")
