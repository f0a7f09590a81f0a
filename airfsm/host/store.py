"""The gateway's durable state: outbox and inbox in SQLite, and the status file.

Host-only code (the MCU port keeps its queue in RAM or flash its own way).

One database file, `<data_dir>/airfsm.db`, holds both tables; any number of processes may open
it at once (`airfsm publish` enqueues while `airfsm run` reads). It runs in WAL mode so readers
never block the writer, with `synchronous=FULL` so that a message `enqueue` has returned an id
for survives kill -9 and power loss (and so does an attempt `mark_attempt` counted: a message
that takes the power down as it is sent still runs out of attempts), and with a busy timeout so
that writers queue up instead of failing. Every commit survives kill -9; only the DELETE after a
PUBACK (`ack`) does not wait for the disk: a power cut may undo it, and the message goes once
more (at least once). The gateway's own connection never waits for a lock: its tick must never
block, so it opens the outbox with `busy_timeout_ms=0` and treats "locked" as "try again
later". `peek` asks the database only when something was committed since it last did
(`CommitWatch`), so an idle tick costs no query. The schema carries its version in
`PRAGMA user_version` (1: outbox and inbox; 2: adds the dead letters; 3: adds the
counters (Alink request ids) and the outbox's priority lane: `lane`, `deadline_at`).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import math
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

from airfsm.core.codes import OutboxStatus, Reason
from airfsm.core.messages import DeadLetter, InboundMessage, OutboundMessage
from airfsm.core.payload import check_message
from airfsm.host import reasons
from airfsm.host.redact import redact

DB_FILENAME = "airfsm.db"
STATUS_FILENAME = "status.json"
SCHEMA_VERSION = 3
BUSY_TIMEOUT_MS = 10_000  # what a CLI waits for another process's write; the gateway waits 0
DEFAULT_OUTBOX_CAPACITY = 10_000
DEFAULT_INBOX_CAPACITY = 10_000

# Schema 2: messages the gateway gave up on after their attempt budget, kept for an operator.
_DEAD_LETTER_TABLE = """CREATE TABLE IF NOT EXISTS dead_letter (
        id          INTEGER PRIMARY KEY,                -- the id it had in the outbox
        topic       TEXT    NOT NULL,
        payload     BLOB    NOT NULL,
        qos         INTEGER NOT NULL,
        enqueued_at REAL    NOT NULL,
        attempts    INTEGER NOT NULL,
        reason      TEXT    NOT NULL,
        died_at     REAL    NOT NULL
    )"""
# Schema 3: named counters that must survive restarts and be shared by every process (the
# Alink request id of `airfsm publish --property`).
_COUNTER_TABLE = """CREATE TABLE IF NOT EXISTS counter (
        name        TEXT    PRIMARY KEY,
        value       INTEGER NOT NULL
    )"""
# Schema 3, the priority lane: lane 1 is sent before lane 0 (whatever their ids), and a message
# with a deadline (Unix time) still queued after it is dead-lettered instead of sent.
# The order messages are sent in: the priority lane first, each lane oldest first.
_LANE_INDEX = "CREATE INDEX IF NOT EXISTS outbox_send_order ON outbox (lane DESC, id)"
_LANE_COLUMNS = ("ALTER TABLE outbox ADD COLUMN lane INTEGER NOT NULL DEFAULT 0",
                 "ALTER TABLE outbox ADD COLUMN deadline_at REAL", _LANE_INDEX)
PRIORITY_LANE = 1
# peek's one statement: the head in sending order (outbox_send_order), and the priority lane's
# earliest deadline, so that whether anything is overdue is known without another query.
_HEAD_QUERY = ("SELECT id, topic, payload, qos, attempts, (SELECT MIN(deadline_at) FROM outbox "
               "WHERE lane = ?1) FROM outbox ORDER BY lane DESC, id LIMIT 1")
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a late PUBACK can't
        topic       TEXT    NOT NULL,                   -- acknowledge a newer message
        payload     BLOB    NOT NULL,
        qos         INTEGER NOT NULL CHECK (qos IN (0, 1)),
        enqueued_at REAL    NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        lane        INTEGER NOT NULL DEFAULT 0,         -- 1: the priority lane (RRPC answers)
        deadline_at REAL                                -- not sent after this (Unix time)
    )""",
    """CREATE TABLE IF NOT EXISTS inbox (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        topic       TEXT    NOT NULL,
        payload     BLOB    NOT NULL,
        received_at REAL    NOT NULL
    )""",
    _DEAD_LETTER_TABLE,
    _COUNTER_TABLE,
    _LANE_INDEX,
)
# What turns version N into N+1; a fresh store runs _SCHEMA instead. Rows are never touched.
_MIGRATIONS: dict[int, tuple[str, ...]] = {1: (_DEAD_LETTER_TABLE,),
                                           2: (_COUNTER_TABLE, *_LANE_COLUMNS)}
# The WAL-index header at the start of `<db>-shm` (https://www.sqlite.org/walformat.html): two
# 48-byte copies that every commit, by any connection of any process, rewrites; its first field
# is the wal-index version, 3007000.
_WAL_INDEX_HEADER = 96
_WAL_INDEX_VERSION = 3007000


class StoreError(Exception):
    """The store cannot do what was asked (cannot open, corrupt, locked, full): one line.
    A call that raises it changed nothing. (The controller's four calls on `SqliteOutbox` do
    not raise it: they answer OutboxStatus.UNAVAILABLE and keep its words in `last_error`.)"""


class NoStore(StoreError):
    """A store was to be opened, not created, and there is none: no gateway has run with this
    data directory (or another one was meant)."""


class OutboxFull(Exception):
    """`enqueue` refused a message because the outbox holds `capacity` messages already."""


def db_path(data_dir: str | Path) -> Path:
    """Where the outbox and inbox live inside a data directory."""
    return Path(data_dir) / DB_FILENAME


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _connect(path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS,
             create: bool = True) -> sqlite3.Connection:
    """Open (creating if needed, unless `create` is false) the database at `path`, in WAL mode,
    at the current schema. NoStore when `create` is false and there is no database.

    Opening and migrating may wait up to BUSY_TIMEOUT_MS for other processes; afterwards the
    connection waits at most `busy_timeout_ms` for a lock (0: "locked" comes back at once)."""
    if not create and not path.is_file():
        raise NoStore(f"no store at {path}: has `airfsm run` (which creates it) run with this "
                      "data directory? (give the gateway's with --data-dir, AIRFSM_DATA_DIR "
                      "or data_dir in --config)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create directory {path.parent}: {exc.strerror}") from None
    # While another process is creating the file or switching it to WAL, SQLite can answer
    # SQLITE_BUSY at once, without consulting the busy handler: retry the whole opening.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            return _connect_once(path, busy_timeout_ms)
        except sqlite3.OperationalError as exc:
            busy = "locked" in str(exc) or "busy" in str(exc)
            if not busy or time.monotonic() >= deadline:
                raise StoreError(f"cannot open store {path}: {_one_line(exc)}") from None
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {path}: {_one_line(exc)}") from None
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _connect_once(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; every write below says BEGIN itself.
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        if mode != "wal":
            raise StoreError(f"cannot open store {path}: journal mode is {mode!r}, not WAL")
        conn.execute("PRAGMA synchronous=FULL")
        _migrate(conn, path)
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        return conn
    except BaseException:
        conn.close()
        raise


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    if _user_version(conn) == SCHEMA_VERSION:
        return
    with _immediate(conn):
        version = _user_version(conn)  # again, under the lock: another process may have won
        if version > SCHEMA_VERSION:
            raise StoreError(f"store {path} has schema version {version}; this airfsm knows "
                             f"{SCHEMA_VERSION}: upgrade airfsm")
        statements: tuple[str, ...] = _SCHEMA  # a fresh store: everything at once
        if version != 0:  # an older one: each migration from its version on, rows kept
            statements = tuple(statement for step in range(version, SCHEMA_VERSION)
                               for statement in _MIGRATIONS[step])
        for statement in statements:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction taken at once (BEGIN IMMEDIATE): read-check-write inside it is
    atomic against other processes. COMMIT returns once the WAL is synced (synchronous=FULL)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class CommitWatch:
    """Whether anything was committed to the database since a stamp, without a query.

    The stamp is the WAL-index header: the first bytes of `<db>-shm`, which all of SQLite's
    connections to the file share, in every process, through a shared mapping. Every commit
    rewrites it (the frame count and checksums change; a WAL restart changes the salts), so
    equal stamps mean nothing was committed in between; a changed one may be a false alarm (a
    checkpoint, a recovery) and costs one query. Take the stamp *before* the query it vouches
    for: a commit between the two is then seen next time.

    It is read where this process's SQLite has mapped the file (found once in
    /proc/self/maps), never through a descriptor of our own: closing any descriptor of the
    file would drop the POSIX locks SQLite holds on it. SQLite keeps that mapping while a
    connection of this process has the database open, so `close()` this watch before the
    connection it was made after. Where there is no such mapping (not Linux, another
    journal mode), `stamp()` is None: no stamp vouches for anything, every peek queries."""

    def __init__(self, db: Path) -> None:
        self._header: ctypes.Array[ctypes.c_char] | None = None
        address = _mapped_at(os.path.realpath(f"{db}-shm"))
        if address is not None:
            header = (ctypes.c_char * _WAL_INDEX_HEADER).from_address(address)
            if int.from_bytes(header.raw[:4], sys.byteorder) == _WAL_INDEX_VERSION:
                self._header = header

    def stamp(self) -> bytes | None:
        return None if self._header is None else self._header.raw

    def close(self) -> None:
        self._header = None


def _mapped_at(path: str) -> int | None:
    """Where this process has mapped the start of file `path`, if it has (Linux)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.rstrip("\n").split(maxsplit=5)
                if len(fields) == 6 and fields[5] == path and int(fields[2], 16) == 0:
                    return int(fields[0].split("-", 1)[0], 16)
    except (OSError, ValueError):
        pass
    return None


class _Store:
    """Connection handling shared by the outbox and the inbox."""

    _what = "store"

    def __init__(self, path: str | Path, capacity: int,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS, create: bool = True) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        self.path = Path(path)
        self.capacity = capacity
        self.last_error = ""  # why the latest call that answered UNAVAILABLE could not work
        self._conn: sqlite3.Connection | None = _connect(self.path, busy_timeout_ms, create)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self._what} {self.path} is closed")
        return self._conn

    def _fail(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"{self._what} {self.path}: {_one_line(exc)}")

    def _unavailable(self, exc: sqlite3.Error | StoreError) -> OutboxStatus:
        """A call of the controller's failed: keep why (one line), answer UNAVAILABLE."""
        self.last_error = str(exc) if isinstance(exc, StoreError) else str(self._fail(exc))
        return OutboxStatus.UNAVAILABLE

    def count(self) -> int:
        """How many rows the table holds now."""
        try:
            return int(self._db().execute(f"SELECT COUNT(*) FROM {self._what}").fetchone()[0])
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    def close(self) -> None:
        """Close the connection; idempotent. Every later call raises StoreError."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> _Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class SqliteOutbox(_Store):
    """Messages waiting to be published, oldest first; satisfies the controller's `Outbox`.

    A row leaves the outbox only by `ack` (the gateway acks a QoS1 message on PUBACK and a QoS0
    message on OK) or by `dead_letter` (its attempt budget is spent: the row moves, whole, to
    the dead letters). So a crash, a kill -9 or a power cut at any moment loses nothing it was
    given (at-least-once). The outbox is bounded: `enqueue` refuses with OutboxFull rather than
    drop older data. `busy_timeout_ms=0` (the gateway's tick) makes every call answer "database
    is locked" at once instead of waiting for another process's write.

    The controller's calls (`peek`, `mark_attempt`, `ack`, `dead_letter`) answer an
    `OutboxStatus` and never raise: SQLite's trouble is UNAVAILABLE there, with its words in
    `last_error`. The operator's and the publisher's calls (`enqueue`, `queued`, `requeue`, ...)
    raise StoreError, one line for the CLI.
    """

    _what = "outbox"

    def __init__(self, path: str | Path, capacity: int = DEFAULT_OUTBOX_CAPACITY, *,
                 allow_hex: bool = True, busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                 create: bool = True) -> None:
        """`allow_hex=False` refuses payloads that only hex mode (AT+MQTTMODE=1) can carry;
        `create=False` opens an existing store only (NoStore otherwise)."""
        super().__init__(path, capacity, busy_timeout_ms, create)
        self.allow_hex = allow_hex
        self.lane_deadline: float | None = None  # the lane's earliest deadline at the last peek
        # peek's answer and the commit stamp it was read under: an idle tick asks again and
        # again, and while no connection has committed anything the answer stands.
        self._watch: CommitWatch | None = None  # made at the first peek (a CLI never peeks)
        self._head: OutboundMessage | None = None
        self._head_stamp: bytes | None = None

    def close(self) -> None:
        """Close the connection; idempotent. Every later call raises StoreError (the
        controller's: answers UNAVAILABLE)."""
        self._forget_head()
        if self._watch is not None:
            self._watch.close()  # before the connection: see CommitWatch
            self._watch = None
        super().close()

    def _forget_head(self) -> None:
        """A write of ours: peek asks the database again (the stamp would tell it too)."""
        self._head_stamp = None

    def __enter__(self) -> SqliteOutbox:
        return self

    def enqueue(self, topic: str, payload: bytes, qos: int) -> int:
        """Store a message durably; return its id (ids increase and are never reused).

        ValueError for a topic, QoS or payload that could never be published: refusing it here,
        at publish time, keeps a poison message from blocking the head of the queue. A topic
        without a leading `/` is stored as given (see `airfsm.core.payload.resolve_topic`).
        OutboxFull when the outbox already holds `capacity` messages; the check and the insert
        are one IMMEDIATE transaction, so concurrent publishers cannot overshoot.
        """
        reason = check_message(topic, payload, qos, hex_allowed=self.allow_hex)
        if reason is not None:
            raise ValueError(reason)
        self._forget_head()
        try:
            with _immediate(self._db()) as db:
                return self._insert(db, topic, bytes(payload), qos, time.time())
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    def enqueue_numbered(self, topic: str, qos: int, counter: str,
                         build: Callable[[int], bytes], wrap: int = 2**31 - 1) -> tuple[int, int]:
        """Take the next value of the named `counter` (1, 2, ... `wrap`, then 1 again), build the
        payload with it and queue it: one transaction, so the number is used exactly once,
        whichever process asks (the Alink request id of `airfsm publish --property`). Returns
        (message id, number). ValueError and OutboxFull as `enqueue`; the number is then not
        used up."""
        self._forget_head()
        try:
            with _immediate(self._db()) as db:
                row = db.execute(
                    "INSERT INTO counter (name, value) VALUES (?, 1) ON CONFLICT (name) DO "
                    "UPDATE SET value = value % ? + 1 RETURNING value", (counter, wrap)).fetchone()
                number = int(row[0])
                payload = build(number)
                reason = check_message(topic, payload, qos, hex_allowed=self.allow_hex)
                if reason is not None:
                    raise ValueError(reason)
                return self._insert(db, topic, payload, qos, time.time()), number
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    def _insert(self, db: sqlite3.Connection, topic: str, payload: bytes, qos: int,
                enqueued_at: float) -> int:
        """INSERT at the tail, inside the caller's IMMEDIATE transaction; OutboxFull first."""
        held = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        if held >= self.capacity:
            raise OutboxFull(f"outbox full: {held} messages waiting (capacity "
                             f"{self.capacity}); nothing was dropped, retry later")
        cur = db.execute(
            "INSERT INTO outbox (topic, payload, qos, enqueued_at) VALUES (?, ?, ?, ?)",
            (topic, payload, qos, enqueued_at))
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    def peek(self) -> tuple[OutboxStatus, OutboundMessage | None]:
        """The oldest message not yet acknowledged (of the priority lane first, while it has
        any): (OK, it), (EMPTY, None) when the outbox is empty, (UNAVAILABLE, None) when the
        store cannot say. C: outbox_peek().

        Without a query while nothing was committed since the last one, by any process (see
        CommitWatch): an idle tick costs the store nothing."""
        if self._watch is None and self._conn is not None:
            self._watch = CommitWatch(self.path)
        stamp = None if self._watch is None else self._watch.stamp()
        if stamp is None or stamp != self._head_stamp:
            try:
                row = self._db().execute(_HEAD_QUERY, (PRIORITY_LANE,)).fetchone()
            except (sqlite3.Error, StoreError) as exc:
                return self._unavailable(exc), None
            self._head = None if row is None else _outbound(row)
            self.lane_deadline = None if row is None or row[5] is None else float(row[5])
            self._head_stamp = stamp
        if self._head is None:
            return OutboxStatus.EMPTY, None
        return OutboxStatus.OK, self._head

    # ------------------------------------------------------------------ the priority lane

    def enqueue_priority(self, topic: str, payload: bytes, qos: int,
                         deadline_at: float | None = None) -> int:
        """`enqueue` into the priority lane: sent before every message of the normal lane
        (oldest first within the lane). With `deadline_at` (Unix time) a message still queued
        then is not sent any more: `expire_overdue` moves it to the dead letters. Errors as
        `enqueue` (the lane counts towards the capacity)."""
        reason = check_message(topic, payload, qos, hex_allowed=self.allow_hex)
        if reason is not None:
            raise ValueError(reason)
        self._forget_head()
        try:
            with _immediate(self._db()) as db:
                message_id = self._insert(db, topic, bytes(payload), qos, time.time())
                db.execute("UPDATE outbox SET lane = ?, deadline_at = ? WHERE id = ?",
                           (PRIORITY_LANE, deadline_at, message_id))
                return message_id
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    def overdue(self, now: float) -> bool:
        """Did the earliest deadline of the priority lane, as the latest peek saw it, pass?"""
        return self.lane_deadline is not None and self.lane_deadline < now

    def expire_overdue(self, now: float, reason: Callable[[str, int, float], str]) -> list[int]:
        """Move every priority message whose deadline is before `now` to the dead letters,
        worded by `reason(topic, attempts, deadline_at)`; return their ids. (`overdue` says,
        without a query, whether there is any.)"""
        try:
            db = self._db()
            overdue = db.execute(
                "SELECT id FROM outbox WHERE lane = ? AND deadline_at < ?",
                (PRIORITY_LANE, now)).fetchall()
            if not overdue:
                return []
            self._forget_head()
            with _immediate(db):
                rows = db.execute(
                    "SELECT id, topic, attempts, deadline_at FROM outbox WHERE lane = ? AND "
                    "deadline_at < ?", (PRIORITY_LANE, now)).fetchall()
                for message_id, topic, attempts, deadline_at in rows:
                    db.execute(
                        "INSERT INTO dead_letter (id, topic, payload, qos, enqueued_at, "
                        "attempts, reason, died_at) SELECT id, topic, payload, qos, enqueued_at, "
                        "attempts, ?, ? FROM outbox WHERE id = ?",
                        (reason(str(topic), int(attempts), float(deadline_at)), now,
                         message_id))
                    db.execute("DELETE FROM outbox WHERE id = ?", (message_id,))
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        return [int(row[0]) for row in rows]

    def queued(self, after_id: int = 0, limit: int = 100) -> list[OutboundMessage]:
        """Up to `limit` queued messages with id > `after_id`, oldest first."""
        try:
            rows = self._db().execute(
                "SELECT id, topic, payload, qos, attempts FROM outbox WHERE id > ? "
                "ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        return [_outbound(r) for r in rows]

    def oldest_enqueued_at(self) -> float | None:
        """When the oldest queued message was enqueued (Unix time), None when empty."""
        try:
            row = self._db().execute(
                "SELECT enqueued_at FROM outbox ORDER BY id LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        return None if row is None else float(row[0])

    def ack(self, message_id: int) -> OutboxStatus:
        """Delivered: delete the message for good. Unknown ids are ignored. OK, or UNAVAILABLE
        having deleted nothing. C: outbox_ack().

        The one write that does not wait for the disk (synchronous=NORMAL for its commit): a
        kill -9 cannot undo it (the WAL is written before COMMIT returns), a power cut can,
        until the next synced commit or checkpoint - and then the message is sent once more,
        which at-least-once allows. Waiting would cost an fsync per message for nothing else."""
        self._forget_head()
        try:
            db = self._db()
            db.execute("PRAGMA synchronous=NORMAL")
            try:
                db.execute("DELETE FROM outbox WHERE id = ?", (message_id,))
            finally:
                db.execute("PRAGMA synchronous=FULL")
        except (sqlite3.Error, StoreError) as exc:
            return self._unavailable(exc)
        return OutboxStatus.OK

    def mark_attempt(self, message_id: int) -> tuple[OutboxStatus, int]:
        """Count one more send attempt: (OK, the new count), (OK, 0) if the message is gone,
        (UNAVAILABLE, 0) having counted nothing. C: outbox_mark_attempt()."""
        self._forget_head()
        try:
            row = self._db().execute(
                "UPDATE outbox SET attempts = attempts + 1 WHERE id = ? RETURNING attempts",
                (message_id,)).fetchone()
        except (sqlite3.Error, StoreError) as exc:
            return self._unavailable(exc), 0
        return OutboxStatus.OK, 0 if row is None else int(row[0])

    def attempts(self, message_id: int) -> int:
        """How many send attempts `mark_attempt` has counted (0 if the message is gone)."""
        try:
            row = self._db().execute(
                "SELECT attempts FROM outbox WHERE id = ?", (message_id,)).fetchone()
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        return 0 if row is None else int(row[0])

    # ------------------------------------------------------------------ dead letters

    def dead_letter(self, message_id: int, reason: str | Reason,
                    detail: int = 0) -> OutboxStatus:
        """Move a queued message, whole, to the dead letters (one transaction: it is in exactly
        one of the two tables at any moment). Unknown ids are ignored. `reason` is the text kept
        with it, or the controller's code and detail, worded here (`reasons.dead_letter_text`).
        OK, or UNAVAILABLE having moved nothing. C: outbox_dead_letter()."""
        self._forget_head()
        try:
            with _immediate(self._db()) as db:
                if not isinstance(reason, str):
                    row = db.execute("SELECT attempts FROM outbox WHERE id = ?",
                                     (message_id,)).fetchone()
                    reason = reasons.dead_letter_text(int(row[0]) if row else 0, reason, detail)
                db.execute(
                    "INSERT INTO dead_letter (id, topic, payload, qos, enqueued_at, attempts, "
                    "reason, died_at) SELECT id, topic, payload, qos, enqueued_at, attempts, ?, ? "
                    "FROM outbox WHERE id = ?", (reason, time.time(), message_id))
                db.execute("DELETE FROM outbox WHERE id = ?", (message_id,))
        except (sqlite3.Error, StoreError) as exc:
            return self._unavailable(exc)
        return OutboxStatus.OK

    def dead_letters(self, after_id: int = 0, limit: int = 100) -> list[DeadLetter]:
        """Up to `limit` dead letters with id > `after_id`, by id (the order they were queued)."""
        try:
            rows = self._db().execute(
                "SELECT id, topic, payload, qos, attempts, reason, died_at FROM dead_letter "
                "WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        return [DeadLetter(id=int(r[0]), topic=str(r[1]), payload=bytes(r[2]), qos=int(r[3]),
                           attempts=int(r[4]), reason=str(r[5]), died_at=float(r[6]))
                for r in rows]

    def dead_count(self) -> int:
        try:
            return int(self._db().execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0])
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    def requeue(self, dead_id: int) -> int:
        """Put a dead letter back at the tail of the outbox with a fresh attempt budget; return
        its new outbox id (ids are never reused, so it cannot take a late PUBACK meant for its
        old self). ValueError when no dead letter has that id; OutboxFull when full."""
        self._forget_head()
        try:
            with _immediate(self._db()) as db:
                row = db.execute("SELECT topic, payload, qos FROM dead_letter WHERE id = ?",
                                 (dead_id,)).fetchone()
                if row is None:
                    raise ValueError(f"no dead letter with id {dead_id}")
                new_id = self._insert(db, str(row[0]), bytes(row[1]), int(row[2]), time.time())
                db.execute("DELETE FROM dead_letter WHERE id = ?", (dead_id,))
                return new_id
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    def discard(self, dead_id: int) -> None:
        """Delete a dead letter for good (an operator's decision). ValueError when unknown."""
        try:
            cur = self._db().execute("DELETE FROM dead_letter WHERE id = ?", (dead_id,))
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        if cur.rowcount == 0:
            raise ValueError(f"no dead letter with id {dead_id}")


class SqliteInbox(_Store):
    """Every inbound (`+MSUB:`) message, in arrival order.

    The inbox is a log, not a queue: reading does not consume, and once it holds `capacity`
    rows each `add` prunes the oldest so the newest `capacity` messages are kept. Readers
    (`airfsm inbox --follow`) remember the last id they saw and ask for what came after it.
    """

    _what = "inbox"

    def __init__(self, path: str | Path, capacity: int = DEFAULT_INBOX_CAPACITY, *,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS, create: bool = True) -> None:
        super().__init__(path, capacity, busy_timeout_ms, create)

    def __enter__(self) -> SqliteInbox:
        return self

    def add(self, topic: str, payload: bytes, received_at: float) -> int:
        """Store an inbound message; return its id. Prunes the oldest beyond `capacity`."""
        try:
            with _immediate(self._db()) as db:
                cur = db.execute(
                    "INSERT INTO inbox (topic, payload, received_at) VALUES (?, ?, ?)",
                    (topic, bytes(payload), float(received_at)))
                message_id = int(cur.lastrowid or 0)
                # ids are consecutive apart from pruning, so "the newest `capacity`" is an id range.
                db.execute("DELETE FROM inbox WHERE id <= ?", (message_id - self.capacity,))
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        return message_id

    def read(self, after_id: int = 0, limit: int = 100) -> list[tuple[int, InboundMessage]]:
        """Up to `limit` messages with id > `after_id`, oldest first, as (id, message)."""
        try:
            rows = self._db().execute(
                "SELECT id, topic, payload, received_at FROM inbox WHERE id > ? "
                "ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        return [(int(r[0]), InboundMessage(topic=str(r[1]), payload=bytes(r[2]),
                                           received_at=float(r[3]))) for r in rows]

    def last_id(self) -> int:
        """The id of the newest message, 0 when empty (`--follow` from now: read after this)."""
        try:
            row = self._db().execute("SELECT MAX(id) FROM inbox").fetchone()
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        return 0 if row is None or row[0] is None else int(row[0])


def _outbound(row: tuple[Any, ...]) -> OutboundMessage:
    """An outbox row (id, topic, payload, qos, attempts) as the message it holds."""
    return OutboundMessage(id=int(row[0]), topic=str(row[1]), payload=bytes(row[2]),
                           qos=int(row[3]), attempts=int(row[4]))


def iso_utc(timestamp: float) -> str:
    """Unix time as ISO-8601 UTC with milliseconds, e.g. `2024-05-01T12:00:00.250Z`."""
    text = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _json_line(message_id: int | None, topic: str, payload: bytes, **more: Any) -> str:
    """`{"id", "topic", "payload", "payload_encoding", **more}` as one pure-ASCII JSON line.

    The payload is text when it is valid UTF-8, else base64; non-ASCII text is `\\u` escaped,
    so a line can never break a terminal or a pipe.
    """
    try:
        text, encoding = payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
    record: dict[str, Any] = {} if message_id is None else {"id": message_id}
    record.update(topic=topic, payload=text, payload_encoding=encoding, **more)
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"))


def inbox_json_line(msg: InboundMessage, message_id: int | None = None, **more: Any) -> str:
    """One JSON line (no trailing newline) for an inbound message.

    `{"topic", "payload", "payload_encoding": "utf-8" | "base64", "received_at"}`, plus `"id"`
    first when given, and the `more` fields not None last (`alink`).
    """
    extra = {key: value for key, value in more.items() if value is not None}
    return _json_line(message_id, msg.topic, msg.payload, received_at=iso_utc(msg.received_at),
                      **extra)


def outbox_json_line(msg: OutboundMessage) -> str:
    """One JSON line for a queued message: id, topic, payload, payload_encoding, qos, attempts."""
    return _json_line(msg.id, msg.topic, msg.payload, qos=msg.qos, attempts=msg.attempts)


def dead_letter_json_line(dead: DeadLetter) -> str:
    """One JSON line for a dead letter: the queued fields plus reason and died_at."""
    return _json_line(dead.id, dead.topic, dead.payload, qos=dead.qos, attempts=dead.attempts,
                      reason=dead.reason, died_at=iso_utc(dead.died_at))


def _scrub(value: Any) -> Any:
    """A JSON-ready copy of `value` with every registered secret redacted from every string."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes | bytearray):
        return redact(bytes(value).decode("latin-1"))
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Enum):
        return redact(value.name)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {redact(str(k)): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    return redact(str(value))


# The parts of a status file that are JSON objects (`a.b`: b inside a), when present.
_STATUS_OBJECTS = ("device", "outbox", "inbox", "counters", "exit", "counters.reconnects",
                   "counters.at", "counters.gateway", "alink", "alink.thing_model", "alink.ntp")


class StatusFile:
    """`<data_dir>/status.json`: the gateway's state and counters, for `airfsm status`.

    Written atomically (a temporary file in the same directory, then `os.replace`), so a reader
    sees the old or the new file, never a torn one. Every string is passed through
    `airfsm.host.redact.redact` first: defence in depth, no secret can reach the file.
    `fsync=True` also survives power loss, at the cost of a flash write per update.
    """

    def __init__(self, data_dir: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(data_dir) / STATUS_FILENAME
        self.fsync = fsync

    def write(self, status: Mapping[str, Any]) -> None:
        """Replace the status file with `status` (a JSON-able mapping). StoreError on failure."""
        text = json.dumps(_scrub(status), indent=2, ensure_ascii=True, allow_nan=False) + "\n"
        directory = self.path.parent
        tmp_name: str | None = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=".status.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(text)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            os.chmod(tmp_name, 0o644)  # no secrets in it; `airfsm status` may run as anyone
            os.replace(tmp_name, self.path)
            tmp_name = None
        except OSError as exc:
            raise StoreError(f"cannot write status file {self.path}: "
                             f"{exc.strerror or _one_line(exc)}") from None
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)

    @staticmethod
    def read(path: str | Path) -> dict[str, Any]:
        """The status as a dict. `path` is the file or its data directory. StoreError when
        missing, unreadable or not a JSON object."""
        p = Path(path)
        if p.is_dir():
            p = p / STATUS_FILENAME
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise StoreError(f"no status file at {p}: is the gateway running with this "
                             "data directory?") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"cannot read status file {p}: {_one_line(exc)}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoreError(f"status file {p} is corrupt: {_one_line(exc)}") from None
        if not isinstance(data, dict):
            raise StoreError(f"status file {p} is corrupt: not a JSON object")
        for key in _STATUS_OBJECTS:  # what readers index into must be what they expect
            outer, _dot, inner = key.rpartition(".")
            holder = data.get(outer) if outer else data
            value = holder.get(inner) if isinstance(holder, dict) else None
            if value is not None and not isinstance(value, dict):
                raise StoreError(f"status file {p} is corrupt: '{key}' is not a JSON object")
        return data
