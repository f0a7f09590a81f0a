"""Virtual-time harness: a Controller and a SimModule joined by an in-memory port pair.

Time only moves when both sides are idle, and then straight to the earliest deadline, so a
two-minute attach takes microseconds and every run is identical.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from airfsm.core import aliyun
from airfsm.core.controller import Controller
from airfsm.core.outbox import MemoryOutbox
from airfsm.core.settings import Settings
from airfsm.core.timebase import ms_add, ms_diff, ms_earliest
from airfsm.host import log, reasons
from airfsm.host.serial import MemoryPort, memory_pair
from airfsm.sim import SimConfig, SimModule

SEED_PK = "b0FMK1Ga5cp"
SEED_DN = "862991419835241"
SEED_DS = "y7MTCG6Gk33Ux26bbWSpANl4OaI0bg5Q"


def seed_settings(**overrides: object) -> Settings:
    identity = aliyun.DeviceIdentity(SEED_PK, SEED_DN, SEED_DS)
    settings = Settings(identity=identity)
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


@dataclass
class Rig:
    controller: Controller
    module: SimModule
    module_port: MemoryPort
    now: int
    inbound: list[tuple[str, bytes]] = field(default_factory=list)
    states: list[tuple[str, str, str]] = field(default_factory=list)
    timeline: list[tuple[int, str, str, str]] = field(default_factory=list)  # (now, from, to, trig)
    command_times: list[tuple[int, str]] = field(default_factory=list)  # (now, command received)
    # What a step calls to tick the controller (None: its tick); a benchmark wraps it to time
    # or count the ticks (the controller's fields are fixed: its methods cannot be replaced).
    ticker: Callable[[int], int] | None = None

    def step(self) -> None:
        """One round: module output -> controller tick -> module input, then jump in time."""
        out = self.module.output(self.now)
        if out:
            self.module_port.write(out)
        next_c = (self.ticker or self.controller.tick)(self.now)
        sent = self.module_port.drain()
        if sent:
            known = len(self.module.commands)
            self.module.receive(sent, self.now)
            self.command_times.extend((self.now, c) for c in self.module.commands[known:])
            return  # the module may answer at once: run again without moving time
        nxt = ms_earliest(next_c, self.module.next_deadline())
        assert nxt is not None
        if ms_diff(nxt, self.now) > 0:
            self.now = nxt

    def run_until(self, done: Callable[[], bool], max_ms: int = 600_000,
                  max_rounds: int = 200_000) -> bool:
        start = self.now
        for _ in range(max_rounds):
            if done():
                return True
            if ms_diff(self.now, start) > max_ms:
                return False
            self.step()
        raise AssertionError("harness made no progress in time (livelock?)")

    def sent_at(self, command: str) -> list[int]:
        """When the module received each copy of `command`."""
        return [t for t, c in self.command_times if c == command]

    def run_for(self, ms: int) -> None:
        end = ms_add(self.now, ms)
        self.run_until(lambda: ms_diff(self.now, end) >= 0, max_ms=ms + 1)

    @property
    def commands(self) -> list[str]:
        return list(self.module.commands)


def make_rig(config: SimConfig | None = None, settings: Settings | None = None,
             start_ms: int = 0, **controller_kwargs: object) -> Rig:
    near, far = memory_pair()
    config = config or SimConfig()
    module = SimModule(config, now_ms=start_ms)
    inbound: list[tuple[str, bytes]] = []
    states: list[tuple[str, str, str]] = []
    timeline: list[tuple[int, str, str, str]] = []
    rig: Rig | None = None

    def on_state(s: object, d: object, trig: str) -> None:
        names = (getattr(s, "name", str(s)), getattr(d, "name", str(d)))
        states.append((names[0], names[1], trig))
        timeline.append((rig.now if rig is not None else start_ms, names[0], names[1], trig))

    # What a host lends the core: a clock and words for the dead letters of the RAM outbox.
    controller_kwargs.setdefault("log_hook", log.CORE_LOG)  # logs, as the gateway's
    if controller_kwargs.get("outbox") is None:
        controller_kwargs["outbox"] = MemoryOutbox(wall_clock=time.time,
                                                   describe=reasons.dead_letter_text)
    controller = Controller(
        near, settings or seed_settings(), now_ms=start_ms,
        on_message=lambda t, p: inbound.append((t, p)),
        on_state=on_state,
        **controller_kwargs,  # type: ignore[arg-type]
    )
    rig = Rig(controller, module, far, start_ms, inbound, states, timeline)
    return rig


def first_occurrences(payloads: list[bytes]) -> list[bytes]:
    """Each payload once, where it first appeared: the order at-least-once delivery promises."""
    seen: set[bytes] = set()
    out = []
    for p in payloads:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out
