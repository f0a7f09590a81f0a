"""AT channel digest throughput on mixed module output, in 512-byte chunks.

The stream is what a busy ONLINE module sends, built from one ~2 kB cycle repeated: `AT+CGATT?`
answered `+CGATT: 1` / `OK`, two `AT+MPUB` echoed and answered `OK`, an `AT+HTTPREAD` answer with
a 180-byte body (it holds CR, LF, commas and an `OK`), a bare `AT` / `OK`, and between them bursts
of URCs (`+CEREG`, `PUBACK`, `SUBACK`) and `+MSUB:` downlinks with 60-, 120- and 240-byte payloads
(JSON with commas, one with CR LF inside). About half the bytes are length-counted data, half
line text; the same stream without the payloads and the body is measured too, since line text
and length-counted data take different paths through the receiver.

Each command is `send()` to a fresh `AtChannel` just before its answer, as the controller would;
the bytes are `feed()` in 512-byte chunks, except that a chunk never runs past the final code
of a command (the module cannot answer the next command before it was sent), which makes the
mean chunk shorter (printed in the notes).

Timed: every `send()` and `feed()` of the whole stream (callbacks only count). After each run the
channel's results are checked against the stream (every response OK with its lines and body,
every URC, every payload byte for byte): a fast digest that got something wrong is a bug, not a
figure. Throughput is stream bytes / time, in MB/s (10^6 bytes), and as a multiple of the
921600- and 115200-baud line rates (10 bits a byte: 92,160 and 11,520 bytes/s).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from airfsm.core.at import AtChannel, AtResponse
from airfsm.core.codes import AtResult
from bench.figure import QUICK_RUNS, Figure, from_runs, main, runs_for

CHUNK = 512
TARGET_MB_S = 9.2  # issue 12, target 1: 100 x the 921600-baud line rate
LINE_RATE_921600 = 921_600 / 10
LINE_RATE_115200 = 115_200 / 10


@dataclass(frozen=True)
class Exchange:
    command: bytes | None  # None: unsolicited bytes (URCs, downlinks)
    data: bytes
    body: bytes = b""  # the length-counted data the answer carries (+HTTPREAD)


def _payload(size: int, seed: int, crlf: bool = False) -> bytes:
    """A JSON-ish payload of exactly `size` bytes with commas, quotes and digits in it."""
    body = bytearray(b'{"id":%d,"v":[' % seed)
    i = 0
    while len(body) < size - 2:
        body += b"%d," % ((seed * 7919 + i * 104729) % 100000)
        i += 1
    if crlf:
        body[len(body) // 2: len(body) // 2 + 2] = b"\r\n"
    del body[size - 2:]
    body += b"]}"
    return bytes(body)


def _msub(topic: bytes, payload: bytes) -> bytes:
    return b'\r\n+MSUB: "%s",%d byte,%s\r\n' % (topic, len(payload), payload)


def one_cycle(lines_only: bool = False) -> list[Exchange]:
    """One cycle of the stream (~2 kB, about half of it length-counted data); `lines_only`
    leaves out the downlinks and the HTTP body (the line-assembly part alone)."""
    topic = b"/b0FMK1Ga5cp/862991419835241/get"
    body = bytearray(_payload(180, 3))
    body[20:24] = b"\r\nOK"  # an OK inside a body must stay body
    mpub = b'AT+MPUB="/b0FMK1Ga5cp/862991419835241/update",1,0,"{\\22t\\22:21.5}"'
    urcs = b"\r\n+CEREG: 1\r\n\r\nPUBACK\r\n\r\nSUBACK\r\n"
    downlinks = [b"" if lines_only else _msub(topic, _payload(size, size, crlf=size == 120))
                 for size in (60, 240, 120)]
    cycle = [
        Exchange(b"AT+CGATT?", b"AT+CGATT?\r\r\n+CGATT: 1\r\n\r\nOK\r\n"),
        Exchange(None, urcs + downlinks[0] + downlinks[1]),
        Exchange(mpub, mpub + b"\r\r\nOK\r\n"),
        Exchange(None, b"\r\nPUBACK\r\n" + downlinks[2] + urcs),
        Exchange(mpub, mpub + b"\r\r\nOK\r\n"),
        Exchange(None, b"\r\nPUBACK\r\n"),
        Exchange(b"AT", b"AT\r\r\nOK\r\n"),
    ]
    if not lines_only:
        cycle.insert(5, Exchange(b"AT+HTTPREAD", b"AT+HTTPREAD\r\r\n+HTTPREAD: 180\r\n"
                                 + bytes(body) + b"\r\nOK\r\n", bytes(body)))
    return cycle


@dataclass
class Plan:
    """The stream cut into the calls the benchmark makes: ("send", cmd) or ("feed", chunk)."""

    calls: list[tuple[str, bytes]]
    stream_bytes: int
    chunks: int
    responses: int
    urcs: int
    payloads: list[bytes]
    bodies: list[bytes]
    data_bytes: int  # of stream_bytes, how many are length-counted (payloads, bodies)


def plan(cycles: int, lines_only: bool = False) -> Plan:
    calls: list[tuple[str, bytes]] = []
    pending = bytearray()  # unsolicited bytes not yet fed: they may share a chunk with an answer
    chunks = responses = urcs = 0
    payloads: list[bytes] = []
    bodies: list[bytes] = []

    def flush(final: bool) -> None:
        nonlocal chunks
        # Full chunks now; a short tail only when a command must be sent next (or at the end).
        while len(pending) >= CHUNK or (final and pending):
            calls.append(("feed", bytes(pending[:CHUNK])))
            del pending[:CHUNK]
            chunks += 1

    for _ in range(cycles):
        for ex in one_cycle(lines_only):
            if ex.command is None:
                pending += ex.data
                flush(final=False)
                continue
            flush(final=True)  # the module answers the next command only after it was sent
            calls.append(("send", ex.command))
            pending += ex.data
            flush(final=True)
            responses += 1
        for ex in one_cycle(lines_only):
            urcs += ex.data.count(b"\r\n+CEREG") + ex.data.count(b"\r\nPUBACK") \
                + ex.data.count(b"\r\nSUBACK") + ex.data.count(b"\r\n+MSUB")
            payloads += _payloads_in(ex.data) if ex.command is None else []
            bodies += [ex.body] if ex.body else []
    flush(final=True)
    stream = sum(len(c) for kind, c in calls if kind == "feed")
    data = sum(len(b) for b in payloads + bodies)
    return Plan(calls, stream, chunks, responses, urcs, payloads, bodies, data)


def _payloads_in(data: bytes) -> list[bytes]:
    out = []
    start = data.find(b"+MSUB:")
    while start >= 0:
        unit = data.index(b" byte,", start)
        length = int(data[data.rindex(b",", start, unit) + 1:unit])
        out.append(data[unit + 6: unit + 6 + length])
        start = data.find(b"+MSUB:", unit + 6 + length)
    return out


class _Record:
    def __init__(self) -> None:
        self.responses = 0
        self.bad = 0
        self.urcs = 0
        self.payloads: list[bytes] = []
        self.bodies: list[bytes] = []

    def on_response(self, resp: AtResponse) -> None:
        self.responses += 1
        if resp.result != AtResult.OK:
            self.bad += 1
        if resp.data:
            self.bodies.append(resp.data)

    def on_urc(self, _urc: int, line: bytes, data: bytes) -> None:
        self.urcs += 1
        if data:
            self.payloads.append(data)


def digest_once(p: Plan) -> float:
    """Digest the planned stream once; return the seconds it took. RuntimeError if wrong."""
    record = _Record()
    channel = AtChannel(lambda _data: None, record.on_response, record.on_urc)
    send, feed = channel.send, channel.feed
    # A command goes out of a buffer with room for its CR, as the controller's does.
    calls = [(kind, data if kind == "feed" else bytearray(data) + b"\r") for kind, data in p.calls]
    start = time.perf_counter()
    for kind, data in calls:
        if kind == "feed":
            feed(data, 0)
        else:
            send(data, len(data) - 1, 0, 5_000)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    problems = []
    if record.responses != p.responses or record.bad:
        problems.append(f"{record.responses} responses ({record.bad} not OK), "
                        f"expected {p.responses}")
    if record.urcs != p.urcs:
        problems.append(f"{record.urcs} URCs, expected {p.urcs}")
    if record.payloads != p.payloads:
        problems.append("+MSUB payloads differ from the stream")
    if record.bodies != p.bodies:
        problems.append("+HTTPREAD bodies differ from the stream")
    if problems:
        raise RuntimeError("the AT channel digested the stream wrongly: " + "; ".join(problems))
    return elapsed


def throughput_runs(p: Plan, runs: int) -> list[float]:
    """MB/s of `runs` digests of the plan (after one warm-up run that also checks it)."""
    digest_once(p)
    return [p.stream_bytes / digest_once(p) / 1e6 for _ in range(runs)]


def measure(smoke: bool) -> list[Figure]:
    cycles = 20 if smoke else 500  # one cycle is ~2 kB
    runs = runs_for(smoke, QUICK_RUNS)
    mixed, lines = plan(cycles), plan(cycles, lines_only=True)
    mb_s = throughput_runs(mixed, runs)
    lines_mb_s = throughput_runs(lines, runs)
    context = (f"{mixed.stream_bytes / 1e6:.2f} MB per run, "
               f"{100 * mixed.data_bytes / mixed.stream_bytes:.0f} % of it length-counted data; "
               f"{mixed.chunks} feeds of {mixed.stream_bytes / mixed.chunks:.0f} B on average; "
               f"{mixed.responses} commands, {mixed.urcs} URCs")
    fig = from_runs("at_digest.mb_per_s", "AT channel digest, mixed output, 512 B chunks", mb_s,
                    "MB/s", f">= {TARGET_MB_S}", context)
    line_fig = from_runs("at_digest.lines_mb_per_s", "AT digest, line text only (no payloads)",
                         lines_mb_s, "MB/s", None,
                         "the same stream without +MSUB payloads and the HTTP body")
    if fig.passed is False:
        ns_per_line_byte = 1e3 / line_fig.value if line_fig.value else 0.0
        fig.notes += (f"; missed: line text costs {ns_per_line_byte:.0f} ns a byte: each line "
                      "is a few Python calls (take the run, digest it, the callback) whatever "
                      "its length, while length-counted data is copied as slices")
    multiple = from_runs("at_digest.x921600", "AT digest / 921600-baud line rate",
                         [v * 1e6 / LINE_RATE_921600 for v in mb_s], "x", ">= 100",
                         "92,160 bytes/s at 10 bits a byte")
    if multiple.passed is False:
        multiple.notes += "; missed: the same runs as the MB/s row (see its reason)"
    return [
        fig,
        multiple,
        from_runs("at_digest.x115200", "AT digest / 115200-baud line rate",
                  [v * 1e6 / LINE_RATE_115200 for v in mb_s], "x", None,
                  "11,520 bytes/s at 10 bits a byte"),
        line_fig,
    ]


if __name__ == "__main__":
    sys.exit(main(measure, __doc__))
