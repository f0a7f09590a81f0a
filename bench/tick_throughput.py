"""The cost of one `tick()`: idle in ONLINE, and digesting one line; and a whole connect.

A controller is brought ONLINE against the simulator in virtual time; then the benchmark plays
the module on the far end of the in-memory port and times `tick(now)` itself:

* idle ONLINE tick: nothing to read, nothing due (what every wake-up without news costs);
* one-line tick: the port holds one unsolicited line (`+CEREG: 1`, a URC that changes nothing
  in ONLINE), the tick reads it, digests it, dispatches it and returns (writing the line into
  the in-memory port is inside the timed loop: a bytearray extend, ~0.1 µs);

both with the in-memory outbox (the SQLite one is measured in outbox_cost). The connect figure
is the wall time of a whole AUTOBAUD -> ONLINE session against the simulator in virtual time,
simulator included, with the number of ticks it took in the notes: it is not a per-tick cost
(an earlier version of this file divided it by its ticks and called that one).
"""

from __future__ import annotations

import statistics
import sys
import time

from airfsm.host import reasons
from bench import rigs
from bench.figure import Figure, from_runs, main, runs_for


def connect_ms() -> tuple[float, int]:
    """Wall time of one AUTOBAUD -> ONLINE in virtual time (ms) and the ticks it took."""
    calls = 0
    rig = rigs.make_rig(rigs.SimConfig())
    tick = rig.controller.tick

    def counted(now_ms: int) -> int:
        nonlocal calls
        calls += 1
        return tick(now_ms)

    rig.ticker = counted
    start = time.perf_counter()
    if not rig.run_until(lambda: rig.controller.online):
        raise RuntimeError(f"connect did not get ONLINE: {reasons.status(rig.controller)}")
    return (time.perf_counter() - start) * 1e3, calls


def measure(smoke: bool) -> list[Figure]:
    runs = runs_for(smoke)
    ticks = 2_000 if smoke else 50_000
    link = rigs.online_link()
    idle_ns, line_ns, connects, tick_counts = [], [], [], []
    rigs.idle_tick_ns(link, ticks // 10)  # warm up
    rigs.one_line_tick_ns(link, ticks // 10)
    for _ in range(runs):
        idle_ns.append(rigs.idle_tick_ns(link, ticks))
        line_ns.append(rigs.one_line_tick_ns(link, ticks))
        ms, count = connect_ms()
        connects.append(ms)
        tick_counts.append(count)
    return [
        from_runs("tick.idle_online_us", "idle ONLINE tick (memory outbox)",
                  [ns / 1e3 for ns in idle_ns], "µs"),
        from_runs("tick.one_line_us", "ONLINE tick digesting one URC line",
                  [ns / 1e3 for ns in line_ns], "µs",
                  notes=f"line: {rigs.IDLE_LINE.strip().decode()}"),
        from_runs("tick.connect_ms", "connect AUTOBAUD -> ONLINE, virtual time", connects, "ms",
                  notes=f"{statistics.median(tick_counts):.0f} ticks, simulator included"),
    ]


if __name__ == "__main__":
    sys.exit(main(measure, __doc__))
