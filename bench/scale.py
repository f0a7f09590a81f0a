"""Many controllers in one process: tick time per controller and memory per controller.

A population of N controllers, each a distinct device (its own name and DeviceSecret) with its
own simulated module over its own in-memory port, is brought ONLINE in virtual time. Then every
controller in turn does one round of ONLINE work: a QoS1 publish to its PUBACK and a downlink
delivered. Only the controllers' `tick()` calls are timed (a wrapper adds up perf_counter_ns
around each), not the simulators, so the figure is the controller's own cost; the tick time
per controller-round at N = 1000 is compared with N = 10 (the issue's target: within 1.1x).
Each population size runs in a fresh process: the process-wide state a population leaves behind
(the logger's secret set) must not leak into the next one.

Memory per controller: the same population under `tracemalloc` (30 frames), after ONLINE and one
round of work; every live allocation made with a controller frame on its stack (the controller,
its `transitions` Machine, AT channel buffers, logger, the secrets it registered) is summed and
divided by N. The simulators' and the harness's own allocations are not counted (nor what the
harness's callbacks allocate when the controller calls them: the rig's records of states and
messages, which a gateway does not keep). The notes name the source files that hold the most of
it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from airfsm.host import reasons
from bench import rigs
from bench.figure import Figure, from_runs, main, ratio_runs, runs_for

TICK_RATIO_TARGET = "<= 1.1"
MEMORY_TARGET_KIB = 20
ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tests" / "harness.py"


def _rounds_for(population: int, smoke: bool) -> int:
    """Rounds per timed run: about the same number of controller-rounds for every size."""
    return max(2, (100 if smoke else 2_000) // population)


class TickTimer:
    """Wraps each controller's tick() to add up the time spent inside it."""

    def __init__(self) -> None:
        self.ns = 0

    def wrap(self, rig: rigs.Rig) -> None:
        tick = rig.controller.tick
        clock = time.perf_counter_ns

        def timed(now_ms: int) -> int:
            start = clock()
            result = tick(now_ms)
            self.ns += clock() - start
            return result

        rig.ticker = timed


def one_round(rig: rigs.Rig, seq: int) -> None:
    """A QoS1 publish to its PUBACK, then a downlink delivered."""
    c = rig.controller
    acked, received = c.counters.publish_acked, len(rig.inbound)
    c.publish("update", b'{"seq":%d,"temperature":21.5}' % seq, qos=1)
    if not rig.run_until(lambda: c.counters.publish_acked > acked, max_ms=60_000):
        raise RuntimeError(f"publish not acknowledged: {reasons.status(c)}")
    get_topic = f"/{rig.module.config.product_key}/{rig.module.config.device_name}/get"
    rig.module.send_downlink(get_topic, b'{"method":"set","params":{"x":%d}}' % seq, rig.now)
    if not rig.run_until(lambda: len(rig.inbound) > received, max_ms=60_000):
        raise RuntimeError(f"downlink not delivered: {reasons.status(c)}")


def run_population(population: int, rounds: int, runs: int) -> dict[str, Any]:
    """In this process: per-controller tick time per round (µs) for `runs` runs."""
    fleet = [rigs.online_rig(i) for i in range(population)]
    timer = TickTimer()
    for rig in fleet:
        timer.wrap(rig)
    seq = 0
    for rig in fleet:  # warm up: every controller has published and received once
        one_round(rig, seq)
    per_round_us = []
    for _ in range(runs):
        timer.ns = 0
        for _ in range(rounds):
            seq += 1
            for rig in fleet:
                one_round(rig, seq)
        per_round_us.append(timer.ns / 1e3 / (population * rounds))
    secrets = rigs.registered_secrets()
    return {"tick_us": per_round_us, "secrets": secrets, "redact_ns": rigs.redact_cost_ns()}


def memory_population(population: int) -> dict[str, Any]:
    """In this process: live memory per controller (KiB) and the files that hold it."""
    # The table imports transitions only when the first controller builds the shared Machine:
    # a module import is the process's memory, not a controller's.
    import transitions  # noqa: F401

    tracemalloc.start(30)
    fleet = [rigs.online_rig(i) for i in range(population)]
    for seq, rig in enumerate(fleet):
        one_round(rig, seq)
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    controller_frames = tracemalloc.Filter(True, "*controller.py", all_frames=True)
    # The harness's callbacks (its lists of states, timeline and messages) run under a
    # controller frame too, but they are the test rig's records, not a controller's memory.
    harness_records = tracemalloc.Filter(False, str(HARNESS))
    mine = snapshot.filter_traces([controller_frames, harness_records])
    total = sum(stat.size for stat in mine.statistics("filename"))
    by_file = [(_short(str(stat.traceback[0].filename)), stat.size / 1024 / population)
               for stat in mine.statistics("filename")[:4]]
    del fleet
    return {"kib": total / 1024 / population, "by_file": by_file}


def _short(path: str) -> str:
    for marker in ("site-packages/", "/airfsm/", "/lib/python"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return ("airfsm/" + tail) if marker == "/airfsm/" else tail
    return Path(path).name


def _in_fresh_process(*args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.scale", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=1_800)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.scale {' '.join(args)} failed: "
                           + (proc.stderr.strip().splitlines() or ["no output"])[-1])
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def measure(smoke: bool) -> list[Figure]:
    sizes = (2, 6) if smoke else (10, 100, 1000)
    runs = runs_for(smoke)
    timed = {n: _in_fresh_process("--population", str(n), "--rounds",
                                  str(_rounds_for(n, smoke)), "--runs", str(runs))
             for n in sizes}
    memory = {n: _in_fresh_process("--population", str(n), "--memory")
              for n in (sizes[0], sizes[-1])}
    small, large = sizes[0], sizes[-1]
    figures = [from_runs(f"scale.tick_us.n{n}", f"tick time per controller-round, N = {n}",
                         timed[n]["tick_us"], "µs",
                         notes=f"{timed[n]['secrets']} secrets registered for redaction"
                         if timed[n]["secrets"] is not None else "")
               for n in sizes]
    ratio = from_runs("scale.tick_ratio", f"tick time per controller, {large} / {small}",
                      ratio_runs(timed[large]["tick_us"], timed[small]["tick_us"]), "x",
                      TICK_RATIO_TARGET,
                      "a round: one QoS1 publish to PUBACK and one downlink, per controller")
    if ratio.passed is False:
        ratio.notes += (f"; missed: log.redact takes {timed[large]['redact_ns'] / 1e3:.1f} µs "
                        f"with the {timed[large]['secrets']} secrets of {large} devices "
                        f"registered vs {timed[small]['redact_ns'] / 1e3:.1f} µs with "
                        f"{timed[small]['secrets']}, and every AT command and URC line is "
                        "redacted (debug lines included, even when filtered out)")
    figures.append(ratio)
    for n in (small, large):
        fig = Figure(f"scale.memory_kib.n{n}", f"memory per controller, N = {n}",
                     memory[n]["kib"], "KiB", f"<= {MEMORY_TARGET_KIB}" if n == large else None,
                     "largest: " + ", ".join(f"{name} {kib:.1f} KiB"
                                             for name, kib in memory[n]["by_file"]))
        if fig.passed is False:
            fig.notes = "missed: " + fig.notes
            if memory[n]["by_file"][0][0].startswith("transitions/"):
                fig.notes += " (the transitions Machine each controller builds for itself)"
        figures.append(fig)
    return figures


def _child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--population", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory", action="store_true")
    args = parser.parse_args(argv)
    if args.memory:
        result = memory_population(args.population)
    else:
        result = run_population(args.population, args.rounds, args.runs)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    if "--population" in sys.argv:
        sys.exit(_child(sys.argv[1:]))
    sys.exit(main(measure, __doc__))
