"""What the gateway's SQLite outbox costs the tick, against the in-memory outbox.

Two controllers are brought ONLINE against the simulator in virtual time, one with the library's
`MemoryOutbox`, one with the gateway's `SqliteOutbox` (WAL, synchronous=FULL but for the DELETE
after a PUBACK, wrapped in `GatewayOutbox` exactly as `airfsm run` wraps it, in a fresh
temporary directory). Then the benchmark plays the module itself on the far end of the
in-memory port, so scripted answers cost nothing and what is timed is the controller and its
store:

* idle ONLINE tick: `tick(now)` with nothing to read and nothing due, 20,000 times;
* QoS1 publish cycle: `publish()` (enqueue) -> tick (AT+MPUB goes out) -> echo + `OK` -> tick
  -> `PUBACK` -> tick (ack: the row is deleted), 500 times.

The two run side by side, run after run; the ratios are taken run by run. Per message and per
idle tick the SQLite statements are counted with `sqlite3`'s trace callback (every statement
the store executes, BEGIN/COMMIT included); write transactions are the COMMITs plus the writes
run in autocommit mode; fsyncs are counted by running the same cycle under `strace -f -e
trace=fsync,fdatasync` between two marker system calls (when strace is installed: `make bench`
installs it as root; otherwise that row says so).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import rigs
from bench.figure import Figure, from_runs, main, not_measured, ratio_runs, runs_for

IDLE_RATIO_TARGET = "<= 1.2"
QOS1_RATIO_TARGET = "<= 1.5"
# The issue: "one transaction per message state change at most". A QoS1 message changes state
# three times in the store: enqueued, sent (attempt counted), acknowledged (deleted).
STATE_CHANGES_PER_MESSAGE = 3
FSYNC_MARK_SIGNAL = 0  # os.kill(pid, 0): a harmless system call strace can see as a marker


class StatementLog:
    """Every SQL statement the store runs (sqlite3 trace callback) and what it adds up to."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, statement: str) -> None:
        self.statements.append(" ".join(statement.split()))

    def clear(self) -> None:
        self.statements.clear()

    def write_transactions(self) -> int:
        """COMMITs, plus writes that ran outside BEGIN...COMMIT (each its own transaction)."""
        count = 0
        explicit = False
        for s in self.statements:
            verb = s.split(" ", 1)[0].upper()
            if verb == "BEGIN":
                explicit = True
            elif verb in ("COMMIT", "END"):
                explicit = False
                count += 1
            elif verb == "ROLLBACK":
                explicit = False
            elif verb in ("INSERT", "UPDATE", "DELETE", "REPLACE") and not explicit:
                count += 1
        return count

    def distinct(self, width: int = 72) -> str:
        """The different statements run, each shortened to `width` characters."""
        seen = dict.fromkeys(s if len(s) <= width else s[:width - 1] + "…"
                             for s in self.statements)
        return "; ".join(f"`{s}`" for s in seen)

    def kinds(self, per: int) -> str:
        """`2 SELECT, 1 DELETE`: what the statements were per `per` units, most frequent
        first."""
        counts = Counter(s.split(" ", 1)[0].upper() for s in self.statements)
        return ", ".join(f"{n / per:g} {verb}" for verb, n in counts.most_common())


@contextmanager
def traced_sqlite(log: StatementLog) -> Iterator[None]:
    """Trace every sqlite3 connection opened inside the block (however the store opens it)."""
    real_connect = sqlite3.connect

    def connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)  # type: ignore[arg-type]
        conn.set_trace_callback(log)
        return conn

    sqlite3.connect = connect  # type: ignore[assignment]
    try:
        yield
    finally:
        sqlite3.connect = real_connect


def _payload(i: int) -> bytes:
    return b'{"seq":%d,"temperature":21.5}' % i


def _sqlite_link(log: StatementLog | None = None) -> tuple[rigs.ScriptedLink, Callable[[], None]]:
    if log is None:
        outbox, cleanup = rigs.sqlite_outbox()
    else:
        with traced_sqlite(log):
            outbox, cleanup = rigs.sqlite_outbox()
    return rigs.online_link(outbox), cleanup


def _qos1_cycles_s(link: rigs.ScriptedLink, count: int, first: int) -> float:
    start = time.perf_counter()
    for i in range(first, first + count):
        link.qos1_cycle(_payload(i))
    return (time.perf_counter() - start) / count


def count_statements() -> tuple[float, float, str, float, str]:
    """(statements per idle tick, statements per QoS1 message, their kinds, write transactions
    per message, idle-tick kinds)."""
    log = StatementLog()
    link, cleanup = _sqlite_link(log)
    try:
        ticks, messages = 100, 50
        link.tick()
        log.clear()
        for _ in range(ticks):
            link.tick()
        idle = len(log.statements) / ticks
        idle_kinds = log.kinds(ticks) + (f": {log.distinct()}" if log.statements else "")
        log.clear()
        for i in range(messages):
            link.qos1_cycle(_payload(i))
        per_message = len(log.statements) / messages
        return (idle, per_message, log.kinds(messages), log.write_transactions() / messages,
                idle_kinds)
    finally:
        cleanup()


def fsync_probe(messages: int) -> None:
    """Run `messages` QoS1 cycles between two marker syscalls (for `strace`, see count_fsyncs)."""
    link, cleanup = _sqlite_link()
    try:
        link.qos1_cycle(_payload(0))  # the first write of a fresh database may differ
        os.kill(os.getpid(), FSYNC_MARK_SIGNAL)
        for i in range(1, messages + 1):
            link.qos1_cycle(_payload(i))
        os.kill(os.getpid(), FSYNC_MARK_SIGNAL)
    finally:
        cleanup()


def count_fsyncs(messages: int) -> tuple[float | None, str]:
    """fsync + fdatasync calls per QoS1 message, counted by strace; (None, why) without it."""
    strace = shutil.which("strace")
    if strace is None:
        return None, "not measured: strace is not installed (make bench installs it as root)"
    with tempfile.TemporaryDirectory(prefix="airfsm-fsync-") as work:
        trace = Path(work) / "trace"
        cmd = [strace, "-f", "-qq", "-e", "trace=fsync,fdatasync,kill", "-o", str(trace),
               sys.executable, "-m", "bench.outbox_cost", "--fsync-probe", str(messages)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                              cwd=Path(__file__).resolve().parent.parent)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return None, f"not measured: strace run failed ({last})"
        lines = trace.read_text().splitlines()
    marks = [i for i, line in enumerate(lines) if "kill(" in line and ", 0)" in line]
    if len(marks) < 2:
        return None, "not measured: strace did not show the probe's markers"
    between = lines[marks[0] + 1: marks[-1]]
    syncs = sum(1 for line in between if "fsync(" in line or "fdatasync(" in line)
    return syncs / messages, f"{syncs} fsync/fdatasync calls over {messages} messages (strace)"


def measure(smoke: bool) -> list[Figure]:
    runs = runs_for(smoke)
    ticks, cycles = (2_000, 50) if smoke else (20_000, 500)
    memory_link = rigs.online_link(rigs.memory_outbox())
    sqlite_link, cleanup = _sqlite_link()
    idle_mem: list[float] = []
    idle_sql: list[float] = []
    qos_mem: list[float] = []
    qos_sql: list[float] = []
    try:
        _qos1_cycles_s(memory_link, 20, 0)  # warm both up
        _qos1_cycles_s(sqlite_link, 20, 0)
        for run in range(runs):
            first = 1_000 + run * cycles
            idle_mem.append(rigs.idle_tick_ns(memory_link, ticks) / 1e3)
            idle_sql.append(rigs.idle_tick_ns(sqlite_link, ticks) / 1e3)
            qos_mem.append(_qos1_cycles_s(memory_link, cycles, first) * 1e6)
            qos_sql.append(_qos1_cycles_s(sqlite_link, cycles, first) * 1e6)
    finally:
        cleanup()

    idle_per_tick, per_message, kinds, transactions, idle_kinds = count_statements()
    fsyncs, fsync_note = count_fsyncs(20 if smoke else 200)

    idle_ratio = from_runs("outbox.idle_tick_ratio", "idle ONLINE tick, SQLite / memory outbox",
                           ratio_runs(idle_sql, idle_mem), "x", IDLE_RATIO_TARGET)
    qos_ratio = from_runs("outbox.qos1_cycle_ratio", "QoS1 cycle, SQLite / memory outbox",
                          ratio_runs(qos_sql, qos_mem), "x", QOS1_RATIO_TARGET)
    if idle_ratio.passed is False:
        idle_ratio.notes = (f"missed: every idle tick runs {idle_per_tick:g} store statements "
                            "(the statements-per-idle-tick row shows which)")
    if qos_ratio.passed is False:
        waits = (f"{fsyncs:g} fsyncs per message are waited for" if fsyncs is not None
                 else "the enqueue and the attempt wait for their fsyncs")
        qos_ratio.notes = (f"missed: {waits}: the enqueue's (a publisher is promised its "
                           "message survives a power cut) and the attempt count's (on disk "
                           "before anything is sent); the ack's DELETE does not wait. "
                           f"{per_message:g} statements ({kinds}), {transactions:g} write "
                           "transactions per message")
    figures = [
        from_runs("outbox.idle_tick_memory_us", "idle ONLINE tick, memory outbox", idle_mem,
                  "µs"),
        from_runs("outbox.idle_tick_sqlite_us", "idle ONLINE tick, SQLite outbox", idle_sql,
                  "µs"),
        idle_ratio,
        from_runs("outbox.qos1_cycle_memory_us", "QoS1 cycle, memory outbox", qos_mem, "µs",
                  notes="enqueue -> MPUB -> OK -> PUBACK -> ack, module scripted"),
        from_runs("outbox.qos1_cycle_sqlite_us", "QoS1 cycle, SQLite outbox", qos_sql, "µs"),
        qos_ratio,
        Figure("outbox.idle_tick_statements", "SQLite statements per idle ONLINE tick",
               idle_per_tick, "stmt", "<= 0", idle_kinds or "none"),
        Figure("outbox.statements_per_message", "SQLite statements per QoS1 message",
               per_message, "stmt", None, kinds),
        Figure("outbox.transactions_per_message", "SQLite write transactions per QoS1 message",
               transactions, "txn", f"<= {STATE_CHANGES_PER_MESSAGE}",
               "one per state change at most: enqueued, sent, acknowledged"),
    ]
    if fsyncs is None:
        figures.append(not_measured("outbox.fsyncs_per_message",
                                    "fsyncs per QoS1 message (SQLite)", "fsync", fsync_note))
    else:
        figures.append(Figure("outbox.fsyncs_per_message", "fsyncs per QoS1 message (SQLite)",
                              fsyncs, "fsync", None, fsync_note))
    return figures


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fsync-probe"]:
        fsync_probe(int(sys.argv[2]))
        sys.exit(0)
    sys.exit(main(measure, __doc__))
