"""Fuzz the AT channel through a whole controller: bytes from "the module" in any split.

`feed(data)` is the one target: `data` is cut into chunks (its first bytes say where) and
fed, a chunk a tick, to a Controller over an in-memory port, the clock moving between chunks.
Whatever arrives, the controller must not let an exception reach tick()'s guard, must write
only whole commands of its state's script (or the body after a prompt), and must keep every
buffer within its capacity (the monitors of tests/reliability/monitor.py).

tests/test_fuzz.py runs it under hypothesis in `make test`; for hours, coverage-guided:

    make fuzz                          # atheris (the `fuzz` extra), FUZZ_ARGS for libFuzzer
    python -m tests.fuzz.at_channel -max_total_time=3600
"""

from __future__ import annotations

import sys

from airfsm.core.controller import Controller
from airfsm.host import log
from airfsm.host.serial import memory_pair
from tests import observe
from tests.harness import seed_settings
from tests.reliability.monitor import LogWatch, Monitor
from tests.reliability.subject import TapPort

# Lines a module really sends, so random bytes meet the receiver's every state.
VOCABULARY = (b"\r\nOK\r\n", b"\r\nERROR\r\n", b"\r\n+CME ERROR: 14\r\n", b"\r\nERROR: 3\r\n",
              b"\r\nRDY\r\n", b"\xff\x00RDY\r\n", b"\r\n+CGATT: 1\r\n", b"\r\n+CGATT: 0\r\n",
              b"\r\nDOWNLOAD\r\n", b"> ", b"\r\nCLOSED\r\n", b"\r\nPUBACK\r\n",
              b"\r\nCONNECT OK\r\n", b"\r\nCONNACK OK\r\n", b"\r\nSUBACK\r\n",
              b"\r\n+HTTPACTION: 1,200,5\r\n", b"\r\n+HTTPREAD: 5\r\nab\r\nc\r\nOK\r\n",
              b'\r\n+MSUB: "/t",3 byte,a\r\n\r\n', b'\r\n+MSUB: "/t",2 byte,313\r\n',
              b"\r\n+MSUB: 1\r\n", b"\r\n+MQTTSTATU :1\r\n", b"\r\n+CPIN: READY\r\n",
              b"\r\n+SAPBR: 1,1,\"10.0.0.1\"\r\n", b"\r\nAirM2M_Air72xUy_V409_LTE_AT\r\n",
              b"\r\n" + b"x" * 5000 + b"\r\n", b"\x00", b"\r", b"\n")


class Target:
    def __init__(self) -> None:
        self.logs = LogWatch()
        settings = seed_settings()
        near, self.far = memory_pair()
        self.port = TapPort(near, lambda: self.controller.state.name)
        # logging as in production: every event's rendering meets the odd bytes too
        self.controller = Controller(self.port, settings, now_ms=0, log_hook=log.CORE_LOG)
        self.monitor = Monitor(settings, self.logs)
        self.now = 0

    def chunk(self, data: bytes, advance_ms: int) -> None:
        self.far.write(data)
        self.now = (self.now + advance_ms) & 0xFFFFFFFF
        self.controller.tick(self.now)
        self.far.drain()
        self.monitor.wrote(self.now, self.port.writes)
        self.port.writes = []
        self.monitor.buffers(self.now, observe.buffer_levels(self.controller))

    def problems(self) -> list[str]:
        errors = self.controller.counters.internal_errors
        return list(self.monitor.violations) + (
            [f"{errors} exception(s) in tick()"] if errors else [])


def pieces(data: bytes) -> list[tuple[bytes, int]]:
    """`data` as (chunk, ms to wait before it): a byte of each pair says how long, the next
    how many bytes follow (a vocabulary line when the length byte is odd)."""
    out: list[tuple[bytes, int]] = []
    i = 0
    while i + 1 < len(data):
        wait, size = data[i], data[i + 1]
        i += 2
        if size & 1:
            out.append((VOCABULARY[size % len(VOCABULARY)], wait * 40))
        else:
            out.append((data[i:i + size // 8], wait * 40))
            i += size // 8
    return out


def feed(data: bytes) -> list[str]:
    return feed_pieces(pieces(data))


def feed_pieces(chunks: list[tuple[bytes, int]]) -> list[str]:
    """Feed (chunk, ms to wait before it) in order; the problems found."""
    target = Target()
    for chunk, wait in chunks:
        target.chunk(chunk, wait)
    return target.problems()


def _one_input(data: bytes) -> None:
    problems = feed(data)
    if problems:
        raise AssertionError(problems[0])


def main() -> None:
    import atheris  # the `fuzz` extra: pip install -e '.[fuzz]'

    atheris.instrument_all()  # coverage feedback from every loaded module (airfsm's too)
    atheris.Setup(sys.argv, _one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
