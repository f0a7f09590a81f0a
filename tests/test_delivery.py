"""The outbox contract under faults, in virtual time: a message leaves the queue only after its
PUBACK (deleted) or after its attempt budget (moved to the dead letters, never deleted); a
refusal backs off and probes the link; a store that refuses a write stops the sending, never
causes a resend, and never makes the tick wait.

Every test runs the controller against the simulator over an in-memory port (tests/harness.py);
the SQLite variants use the gateway's own view of the store (`GatewayOutbox`, busy_timeout 0).
"""

from __future__ import annotations

import contextlib
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from airfsm.core.codes import OutboxStatus, PubPhase, Reason, Trigger
from airfsm.core.messages import DeadLetter, OutboundMessage
from airfsm.core.outbox import MemoryOutbox
from airfsm.host import reasons
from airfsm.host.gateway import TICK_BUSY_TIMEOUT_MS, GatewayOutbox, StoreFaults
from airfsm.host.store import SqliteOutbox, db_path
from airfsm.sim import SimConfig, parse_fault
from tests.harness import SEED_DN, SEED_PK, Rig, first_occurrences, make_rig, seed_settings

UPDATE = f"/{SEED_PK}/{SEED_DN}/update"
POISON = f"/{SEED_PK}/{SEED_DN}/poison"


def gateway_outbox(tmp_path: Path, errors: list[tuple[str, str]] | None = None,
                   faults: StoreFaults | None = None) -> GatewayOutbox:
    """The outbox exactly as `airfsm run` gives it to its controller."""
    store = SqliteOutbox(db_path(tmp_path), busy_timeout_ms=TICK_BUSY_TIMEOUT_MS)
    sink = errors if errors is not None else []
    return GatewayOutbox(store, SEED_PK, SEED_DN, lambda op, exc: sink.append((op, str(exc))),
                         faults)


@pytest.fixture(params=["memory", "sqlite"])
def outbox_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def new_outbox(kind: str, tmp_path: Path) -> Any:
    if kind == "memory":  # with the host's clock and words for its dead letters
        return MemoryOutbox(wall_clock=time.time, describe=reasons.dead_letter_text)
    return gateway_outbox(tmp_path)


def dead_letters(outbox: Any) -> list[DeadLetter]:
    store = outbox.store if isinstance(outbox, GatewayOutbox) else outbox
    return list(store.dead_letters())


def online(config: SimConfig | None = None, outbox: Any = None, **settings: object) -> Rig:
    extra = {} if outbox is None else {"outbox": outbox}
    rig = make_rig(config or SimConfig(), seed_settings(**settings), **extra)
    assert rig.run_until(lambda: rig.controller.online or rig.controller.failed)
    assert rig.controller.online, reasons.status(rig.controller)
    return rig


def published(rig: Rig) -> list[bytes]:
    return [p for _t, p, _q in rig.module.published]


def queue(rig: Rig, *payloads: bytes, topic: str = "update", qos: int = 1) -> None:
    for p in payloads:
        rig.controller.publish(topic, p, qos)


def mpub_times(rig: Rig, payload: bytes) -> list[int]:
    """When the module received each AT+MPUB carrying `payload` (text mode)."""
    return [t for t, c in rig.command_times
            if c.startswith("AT+MPUB=") and c.endswith(f',"{payload.decode()}"')]


def in_flight(rig: Rig) -> Callable[[], bool]:
    return lambda: rig.controller.pub_phase == PubPhase.WAIT_PUBACK


def gaps(times: list[int]) -> list[int]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def assert_backs_off(rig: Rig, sends: list[int], extra_ms: int = 0) -> None:
    """Each retry waited at least the lower bound of its exponential, equal-jitter backoff."""
    base = rig.controller.settings.publish_backoff_base_ms
    for n, gap in enumerate(gaps(sends), start=1):
        assert gap >= extra_ms + (base << (n - 1)) // 2, (n, gaps(sends))


# ---------------------------------------------------------------------- 1. refusals


@pytest.mark.parametrize("refusal", ["error", "cme=50"])
def test_a_refused_mpub_backs_off_probes_the_link_and_never_deletes(
        refusal: str, outbox_kind: str, tmp_path: Path) -> None:
    rig = online(SimConfig(faults=[parse_fault(f"{refusal}:AT+MPUB@3")]),
                 new_outbox(outbox_kind, tmp_path))
    queue(rig, b"m0", b"m1", b"m2")
    assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
    assert published(rig) == [b"m0", b"m1", b"m2"]  # the refused one was kept, and went
    sends = mpub_times(rig, b"m0")
    assert len(sends) == 4  # three refusals, then OK
    assert_backs_off(rig, sends)
    between = [c for t, c in rig.command_times if sends[0] < t < sends[-1]]
    assert between.count("AT+MQTTSTATU") >= 3  # each refusal checked the link
    assert rig.controller.counters.publish_dead == 0
    assert dead_letters(rig.controller.outbox) == []


def test_a_module_refusing_every_mpub_for_a_while_loses_nothing() -> None:
    """The reported case: 50 queued, the module says ERROR to every MPUB for 1.5 s."""
    rig = online()
    queue(rig, *(f"m{i}".encode() for i in range(50)))
    rig.module.add_fault(parse_fault("error:AT+MPUB@*"))
    rig.run_for(1_500)
    rig.module.clear_faults()
    assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
    assert first_occurrences(published(rig)) == [f"m{i}".encode() for i in range(50)]
    assert rig.controller.counters.publish_dead == 0


def test_a_refusal_because_the_session_is_gone_reconnects() -> None:
    rig = online()
    queue(rig, b"after the reconnect")
    rig.module._close_link(announce=False)  # the session is gone without a CLOSED: MPUB ERROR
    mark = len(rig.states)
    assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
    assert ("ONLINE", "MQTT_CONNECT", "mqtt_lost") in rig.states[mark:]  # probe said 0
    assert published(rig) == [b"after the reconnect"]


# ---------------------------------------------------------------------- 2. the attempt budget


def test_a_message_without_puback_becomes_a_dead_letter_and_the_queue_flows_on(
        outbox_kind: str, tmp_path: Path) -> None:
    rig = online(SimConfig(faults=[parse_fault("puback=lost@5")]),
                 new_outbox(outbox_kind, tmp_path))
    queue(rig, b"never acked", b"next", b"last")
    c = rig.controller
    with capture_logs() as logs:
        assert rig.run_until(lambda: len(c.outbox) == 0)
    budget = c.settings.publish_attempts
    sends = mpub_times(rig, b"never acked")
    assert len(sends) == budget == 5
    assert_backs_off(rig, sends, extra_ms=c.settings.puback_timeout_ms)
    assert published(rig)[budget:] == [b"next", b"last"]
    [dead] = dead_letters(c.outbox)
    assert (dead.id, dead.topic, dead.payload, dead.qos, dead.attempts) == (
        1, UPDATE, b"never acked", 1, budget)
    assert "5 attempts without PUBACK" in dead.reason and "no PUBACK" in dead.reason
    assert dead.died_at > 0
    warnings = [e for e in logs if e["event"] == "publish_dead"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
    assert warnings[0]["id"] == 1
    assert c.counters.publish_dead == 1 and c.counters.publish_acked == 2
    assert reasons.status(c)["counters"]["publish_dead"] == 1


def test_a_message_that_makes_the_broker_drop_the_session_cannot_reconnect_forever(
        outbox_kind: str, tmp_path: Path) -> None:
    drop = parse_fault(f'closed:AT+MPUB="{POISON}"@*')
    rig = online(SimConfig(faults=[drop]), new_outbox(outbox_kind, tmp_path))
    queue(rig, b"poison", topic="poison")
    queue(rig, b"fine", b"also fine")
    c = rig.controller
    assert rig.run_until(lambda: len(c.outbox) == 0, max_ms=3_600_000)
    poisoned = [p for t, p, _q in rig.module.published if t == POISON]
    assert poisoned == [b"poison"] * c.settings.publish_attempts
    assert c.counters.reconnects[Trigger.MQTT_LOST] == c.settings.publish_attempts
    assert [p for t, p, _q in rig.module.published if t == UPDATE] == [b"fine", b"also fine"]
    [dead] = dead_letters(c.outbox)
    assert dead.topic == POISON and "session ended" in dead.reason


def test_the_budget_survives_a_restart_of_the_gateway(tmp_path: Path) -> None:
    """Attempts are counted in the store before each send: a gateway killed mid-flight again
    and again still dead-letters the message that never gets its PUBACK."""
    rig = online(SimConfig(faults=[parse_fault("puback=lost@*")]), gateway_outbox(tmp_path))
    queue(rig, b"doomed")
    for _ in range(3):  # sent, killed before the PUBACK deadline, started afresh
        assert rig.run_until(in_flight(rig))
        rig.controller.outbox.store.close()  # type: ignore[attr-defined]
        rig = online(SimConfig(faults=[parse_fault("puback=lost@*")]),
                     gateway_outbox(tmp_path))
    assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
    [dead] = dead_letters(rig.controller.outbox)
    assert dead.attempts == rig.controller.settings.publish_attempts
    assert len(mpub_times(rig, b"doomed")) == rig.controller.settings.publish_attempts - 3


def test_a_dead_letter_requeued_gets_a_new_id_and_a_fresh_budget(tmp_path: Path) -> None:
    rig = online(SimConfig(faults=[parse_fault("puback=lost@5")]), gateway_outbox(tmp_path))
    queue(rig, b"second chance")
    assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
    store = rig.controller.outbox.store  # type: ignore[attr-defined]
    [dead] = store.dead_letters()
    new_id = store.requeue(dead.id)
    assert new_id > dead.id and store.dead_letters() == []
    assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
    assert published(rig) == [b"second chance"] * 6  # five lost PUBACKs, then one that came
    assert rig.controller.counters.publish_acked == 1


def test_a_message_the_controller_cannot_encode_is_kept_as_a_dead_letter(
        tmp_path: Path) -> None:
    """Refused at enqueue time normally; one stored behind the outbox's back is never lost."""
    store = SqliteOutbox(db_path(tmp_path))
    store.enqueue("x" * 126, b"relative: too long once resolved", 1)
    store.enqueue(UPDATE, b"behind it", 1)
    store.close()
    rig = online(outbox=gateway_outbox(tmp_path))
    assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
    assert published(rig) == [b"behind it"]
    [dead] = dead_letters(rig.controller.outbox)
    assert dead.payload == b"relative: too long once resolved" and "topic" in dead.reason


# ---------------------------------------------------------------------- 3. hex mode refused


def test_a_refused_hex_mode_switch_backs_off_then_the_message_is_a_dead_letter() -> None:
    rig = online(SimConfig(faults=[parse_fault("error:AT+MQTTMODE=1@*")]))
    binary = b"\x00\x01binary"
    queue(rig, binary, b"text behind it")
    with capture_logs() as logs:
        assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
        rig.run_for(600_000)  # and no hot loop afterwards either
    switches = [t for t, c in rig.command_times if c == "AT+MQTTMODE=1"]
    assert len(switches) == rig.controller.settings.publish_attempts
    assert_backs_off(rig, switches)
    assert published(rig) == [b"text behind it"]
    [dead] = dead_letters(rig.controller.outbox)
    assert dead.payload == binary and "AT+MQTTMODE=1 ERROR" in dead.reason
    refusals = [e for e in logs if e["event"] == "mqtt_mode_refused"]
    assert len(refusals) == len(switches) and refusals[0]["log_level"] == "warning"


def test_a_refused_switch_back_to_text_mode_while_idle_backs_off() -> None:
    rig = online(SimConfig(faults=[parse_fault("error:AT+MQTTMODE=0@*")]))
    queue(rig, b"\x00binary")
    assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
    rig.run_for(600_000)
    back = [t for t, c in rig.command_times if c == "AT+MQTTMODE=0"]
    assert 2 <= len(back) <= 30  # ten minutes, a capped backoff: a few dozen at most
    assert min(gaps(back)) >= rig.controller.settings.publish_backoff_base_ms // 2


# ---------------------------------------------------------------------- 4. the store fails


def test_a_failed_ack_is_retried_and_the_message_is_not_sent_again(tmp_path: Path) -> None:
    errors: list[tuple[str, str]] = []
    rig = online(outbox=gateway_outbox(tmp_path, errors, StoreFaults("ack=full@3")))
    queue(rig, b"acked once", b"then me")
    assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
    assert published(rig) == [b"acked once", b"then me"]  # no resend storm: one copy each
    assert [op for op, _ in errors] == ["ack"] * 3
    assert "database or disk is full" in errors[0][1]
    assert rig.controller.counters.store_unavailable == 3
    assert rig.controller.counters.publish_acked == 2


def test_a_store_refusing_every_write_stops_sending_until_it_works_again(
        tmp_path: Path) -> None:
    errors: list[tuple[str, str]] = []
    view = gateway_outbox(tmp_path, errors)
    rig = online(outbox=view)
    queue(rig, b"a", b"b")
    view._faults = StoreFaults("write=readonly@*")
    rig.run_for(60_000)
    assert published(rig) == []  # nothing sent that could not be counted
    assert 3 <= len(errors) <= 12  # backed off (250 ms doubling), not a busy loop
    assert rig.controller.online  # the link was kept meanwhile
    view._faults = None  # the filesystem is writable again
    assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
    assert published(rig) == [b"a", b"b"]


def test_a_store_that_fails_to_move_a_dead_letter_keeps_it_queued(tmp_path: Path) -> None:
    errors: list[tuple[str, str]] = []
    rig = online(SimConfig(faults=[parse_fault("puback=lost@5")]),
                 gateway_outbox(tmp_path, errors, StoreFaults("dead_letter@2")))
    queue(rig, b"doomed", b"next")
    assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
    assert [op for op, _ in errors] == ["dead_letter"] * 2
    assert [d.payload for d in dead_letters(rig.controller.outbox)] == [b"doomed"]
    assert published(rig) == [b"doomed"] * 5 + [b"next"]


@pytest.fixture
def disk_full() -> Iterator[Callable[[bool], None]]:
    """Make every write of this process to a regular file fail, for real (RLIMIT_FSIZE 0: the
    kernel answers EFBIG, and root is not exempt). Nothing else may write a file meanwhile, so
    logs go to `capture_logs` and assertions come after the limit is lifted."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def full(on: bool) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0 if on else soft, hard))

    try:
        yield full
    finally:
        full(False)


def test_a_really_full_disk_during_the_ack_costs_no_resend_and_loses_nothing(
        tmp_path: Path, disk_full: Callable[[bool], None]) -> None:
    errors: list[tuple[str, str]] = []
    rig = online(outbox=gateway_outbox(tmp_path, errors))
    queue(rig, b"in flight", b"waiting")
    with capture_logs():
        assert rig.run_until(in_flight(rig))
        disk_full(True)
        try:
            rig.run_for(30_000)  # the PUBACK comes; its DELETE fails, again and again
        finally:
            disk_full(False)
        sent_while_full = published(rig)
        assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
    assert sent_while_full == [b"in flight"]
    assert errors and {op for op, _ in errors} == {"ack"}
    assert "disk I/O error" in errors[0][1] or "full" in errors[0][1]
    assert published(rig) == [b"in flight", b"waiting"]


# ---------------------------------------------------------------------- 5. the store is locked


@contextlib.contextmanager
def write_lock_held_by_another_process(db: Path) -> Iterator[Callable[[], None]]:
    """Another process holds the database's write lock (BEGIN IMMEDIATE) until `release()`."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys\n"
         f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
         "c.execute('BEGIN IMMEDIATE')\n"
         "print('locked', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def release() -> None:
        if holder.stdin is not None and not holder.stdin.closed:
            holder.stdin.close()
        holder.wait(timeout=30)

    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        yield release
    finally:
        release()


def test_the_tick_never_waits_for_a_store_another_process_has_locked(tmp_path: Path) -> None:
    errors: list[tuple[str, str]] = []
    view = gateway_outbox(tmp_path, errors)
    busy_ms = view.store._db().execute("PRAGMA busy_timeout").fetchone()[0]
    assert busy_ms == 0  # a lock is answered at once, never waited for
    for payload in (b"in flight", b"queued"):
        view.store.enqueue(UPDATE, payload, 1)
    rig = online(outbox=view)  # the first is on its way now
    with write_lock_held_by_another_process(db_path(tmp_path)) as release:
        probes_before = rig.commands.count("AT+MQTTSTATU")
        rig.run_for(120_000)
        # Its PUBACK came; the DELETE was refused at once and is retried after a backoff;
        # meanwhile nothing is sent again and nothing after it.
        assert published(rig) == [b"in flight"]
        assert errors and {op for op, _ in errors} == {"ack"}
        assert all("locked" in why for _op, why in errors)
        assert 3 <= len(errors) <= 15  # retried on later ticks, after a backoff
        assert rig.commands.count("AT+MQTTSTATU") > probes_before  # the link was kept alive
        assert rig.controller.online
        release()  # the other process commits
        assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
    assert published(rig) == [b"in flight", b"queued"]


def test_a_sqlite_outbox_serves_a_controller_directly_through_a_locked_spell(
        tmp_path: Path) -> None:
    """Library use without the gateway: the store answers a lock with UNAVAILABLE (no
    exception), so a lock is a backoff, not an internal error."""
    store = SqliteOutbox(db_path(tmp_path), busy_timeout_ms=0)
    store.enqueue(UPDATE, b"direct", 1)
    with write_lock_held_by_another_process(db_path(tmp_path)) as release:
        rig = online(outbox=store)
        rig.run_for(30_000)
        assert rig.controller.online and rig.controller.counters.store_unavailable > 0
        assert rig.controller.counters.internal_errors == 0
        release()
        assert rig.run_until(lambda: store.count() == 0)
    assert published(rig) == [b"direct"]


def test_a_locked_sqlite_outbox_answers_unavailable_having_changed_nothing(
        tmp_path: Path) -> None:
    """The store's boundary: SQLite's "database is locked" is a code and its words, no raise."""
    store = SqliteOutbox(db_path(tmp_path), busy_timeout_ms=0)
    first = store.enqueue(UPDATE, b"one", 1)
    unavailable = OutboxStatus.UNAVAILABLE
    with write_lock_held_by_another_process(db_path(tmp_path)):
        status, head = store.peek()  # WAL: a reader never waits for the writer
        assert status == OutboxStatus.OK and head is not None and head.id == first
        assert store.mark_attempt(first) == (unavailable, 0)
        assert "locked" in store.last_error and "\n" not in store.last_error
        assert store.ack(first) == unavailable
        assert store.dead_letter(first, Reason.NO_PUBACK, 0) == unavailable
        assert store._db().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL still
    assert store.queued() == [OutboundMessage(first, UPDATE, b"one", 1)]  # nothing changed
    assert store.dead_count() == 0
    store.close()


def test_the_gateway_opens_its_stores_without_a_busy_wait(tmp_path: Path) -> None:
    from airfsm.host.config import GatewayConfig
    from airfsm.host.gateway import Gateway
    from airfsm.host.serial import memory_pair
    from tests.harness import SEED_DS

    config = GatewayConfig(port="mem", product_key=SEED_PK, device_name=SEED_DN,
                           device_secret=SEED_DS, data_dir=tmp_path)
    gateway = Gateway(config, port_opener=lambda _url, _baud: memory_pair()[0],
                      install_signals=False)
    gateway._start()
    try:
        for store in (gateway.outbox, gateway.inbox):
            assert store is not None
            assert store._db().execute("PRAGMA busy_timeout").fetchone()[0] == 0
    finally:
        gateway._release()
    with SqliteOutbox(db_path(tmp_path)) as cli_store:  # `airfsm publish` may wait politely
        assert cli_store._db().execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
