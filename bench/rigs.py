"""The controllers the benchmarks measure, set up once here.

Every benchmark that drives airfsm's Python core gets its controller from this module, so when
the core moves (package layout, names) only this file follows it. Two shapes:

* `online_link()`: one controller brought ONLINE against the simulator in virtual time (the test
  harness), after which the simulator is left alone and the benchmark plays the module itself
  on the far end of the in-memory port (`ScriptedLink`). Scripted answers cost almost nothing,
  so what is timed is the controller, not the simulator.
* `device_identity(i)`: the i-th of many distinct devices (own name, own secret), for runs of
  many controllers in one process.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airfsm.core.aliyun import DeviceIdentity
from airfsm.core.controller import Controller
from airfsm.core.outbox import MemoryOutbox
from airfsm.core.settings import Settings
from airfsm.host import log, reasons
from airfsm.host.gateway import GatewayOutbox
from airfsm.host.serial import MemoryPort
from airfsm.host.store import SqliteOutbox, db_path
from airfsm.sim import SimConfig
from tests.harness import SEED_DN, SEED_DS, SEED_PK, Rig, make_rig

__all__ = ["SEED_DN", "SEED_DS", "SEED_PK", "Rig", "ScriptedLink", "SimConfig", "device_identity",
           "make_rig", "memory_outbox", "online_link", "online_rig", "redact_cost_ns",
           "registered_secrets", "sqlite_outbox"]

IDLE_LINE = b"\r\n+CEREG: 1\r\n"  # a URC that changes nothing in ONLINE: pure digest work
OK = b"\r\nOK\r\n"
PUBACK = b"\r\nPUBACK\r\n"


def device_identity(index: int) -> tuple[DeviceIdentity, SimConfig]:
    """Device number `index`: its identity and a simulator that knows its secret."""
    name = f"bench{index:06d}"
    secret = f"S{index:06d}y7MTCG6Gk33Ux26bbWSpANl4"  # 32 characters, different per device
    identity = DeviceIdentity(SEED_PK, name, secret)
    return identity, SimConfig(product_key=SEED_PK, device_name=name, device_secret=secret)


def online_rig(index: int | None = None, **controller_kwargs: Any) -> Rig:
    """A controller ONLINE against the simulator in virtual time (seed device, or device
    `index`)."""
    if index is None:
        identity = DeviceIdentity(SEED_PK, SEED_DN, SEED_DS)
        config = SimConfig()
    else:
        identity, config = device_identity(index)
    rig = make_rig(config, Settings(identity=identity), **controller_kwargs)
    if not rig.run_until(lambda: rig.controller.online):
        raise RuntimeError(f"bench rig did not get ONLINE: {reasons.status(rig.controller)}")
    rig.run_for(50)  # let the last answers settle: nothing left in flight
    return rig


@dataclass
class ScriptedLink:
    """A controller ONLINE whose module is now played by the benchmark."""

    controller: Controller
    far: MemoryPort  # the module's end: what the controller writes comes out here
    now: int

    def tick(self) -> int:
        return self.controller.tick(self.now)

    def sent(self) -> bytes:
        return self.far.drain()

    def answer(self, data: bytes) -> None:
        self.far.write(data)

    def qos1_cycle(self, payload: bytes) -> None:
        """enqueue -> AT+MPUB -> echo + OK -> PUBACK -> ack, the module played by script."""
        c = self.controller
        acked = c.counters.publish_acked
        c.publish("update", payload, qos=1)
        c.tick(self.now)  # sends AT+MPUB
        self.far.write(self.far.drain() + OK)  # the echo (command line + CR), then OK
        c.tick(self.now)  # OK: waiting for PUBACK
        self.far.write(PUBACK)
        c.tick(self.now)  # PUBACK: acknowledged, the outbox row is gone
        if c.counters.publish_acked != acked + 1:
            raise RuntimeError(f"scripted QoS1 cycle did not complete: {reasons.status(c)}")


def online_link(outbox: Any = None) -> ScriptedLink:
    """A controller ONLINE (with `outbox`, default in-memory), its module now scripted."""
    rig = online_rig(outbox=outbox)
    rig.module_port.drain()  # whatever the controller said last is not ours to answer
    rig.controller.tick(rig.now)
    return ScriptedLink(rig.controller, rig.module_port, rig.now)


def memory_outbox() -> MemoryOutbox:
    return MemoryOutbox(capacity=1_000_000)


def sqlite_outbox(directory: Path | None = None) -> tuple[GatewayOutbox, Callable[[], None]]:
    """The gateway's outbox (SQLite, WAL, synchronous=FULL) in a fresh directory, wrapped as
    `airfsm run` wraps it; and a function that removes it."""
    work = Path(tempfile.mkdtemp(prefix="airfsm-bench-", dir=directory))
    store = SqliteOutbox(db_path(work))

    def on_error(operation: str, error: str) -> None:
        raise RuntimeError(f"store {operation} failed during a benchmark: {error}")

    def cleanup() -> None:
        store.close()
        for path in sorted(work.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        work.rmdir()

    return GatewayOutbox(store, SEED_PK, SEED_DN, on_error), cleanup


def idle_tick_ns(link: ScriptedLink, ticks: int) -> float:
    """Mean cost of an idle ONLINE tick: nothing to read, nothing due (ns per tick)."""
    tick, now = link.controller.tick, link.now
    tick(now)
    start = time.perf_counter_ns()
    for _ in range(ticks):
        tick(now)
    return (time.perf_counter_ns() - start) / ticks


def one_line_tick_ns(link: ScriptedLink, ticks: int, line: bytes = IDLE_LINE) -> float:
    """Mean cost of an ONLINE tick that reads and digests one unsolicited line (ns per tick).
    Writing the line into the in-memory port is timed too (a bytearray extend, ~100 ns)."""
    tick, now, write = link.controller.tick, link.now, link.far.write
    start = time.perf_counter_ns()
    for _ in range(ticks):
        write(line)
        tick(now)
    return (time.perf_counter_ns() - start) / ticks


def registered_secrets() -> int | None:
    """How many values the logger redacts now (None if the logger does not say)."""
    count = getattr(log, "secret_count", None)
    return count() if count is not None else None


def redact_cost_ns(repeat: int = 2_000) -> float:
    """What one `log.redact` of an ordinary AT command line costs now (ns)."""
    line = 'AT+MPUB="/b0FMK1Ga5cp/862991419835241/update",1,0,"{\\22seq\\22:1}"'
    start = time.perf_counter_ns()
    for _ in range(repeat):
        log.redact(line)
    return (time.perf_counter_ns() - start) / repeat
