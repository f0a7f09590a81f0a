"""Throughput of the tick path in virtual time: how fast the controller digests a session.

    python bench/tick_throughput.py [--sessions 50] [--messages 200]

Runs complete connect sequences (AUTOBAUD to ONLINE) and QoS1 publish bursts against the
simulator over the in-memory port, with the virtual clock, and prints ticks per second, wall
time per connect and per publish, and the time per `tick()` call. Nothing is asserted: this is
a measurement for `make bench` (numbers depend on the machine), not a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import make_rig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()

    calls = [0]  # tick() calls, counted by a wrapper that changes nothing else
    start = time.perf_counter()
    for _ in range(args.sessions):
        rig = make_rig()
        tick = rig.controller.tick

        def counted(now: int, _tick=tick) -> int:  # type: ignore[no-untyped-def]
            calls[0] += 1
            return _tick(now)

        rig.controller.tick = counted  # type: ignore[method-assign]
        assert rig.run_until(lambda: rig.controller.online)  # noqa: B023
    connect_s = time.perf_counter() - start

    rig = make_rig()
    assert rig.run_until(lambda: rig.controller.online)
    for i in range(args.messages):
        rig.controller.publish("update", f'{{"seq":{i}}}'.encode(), qos=1)
    start = time.perf_counter()
    assert rig.run_until(lambda: len(rig.controller.outbox) == 0)
    publish_s = time.perf_counter() - start

    print(f"connect AUTOBAUD->ONLINE: {connect_s / args.sessions * 1000:.2f} ms wall per session "
          f"(virtual time, simulator included), {calls[0] / args.sessions:.0f} ticks each")
    print(f"tick() incl. simulator:   {connect_s / calls[0] * 1e6:.1f} us per call, "
          f"{calls[0] / connect_s:.0f} calls/s")
    print(f"QoS1 publish:             {publish_s / args.messages * 1000:.3f} ms wall per message "
          f"(MPUB + PUBACK round trip through the simulator)")


if __name__ == "__main__":
    main()
