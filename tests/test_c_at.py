"""The C AT channel (port/c/core/at.c) against its Python twin (airfsm/core/at.py), event for event.

A script is a channel's life as events: made over buffers of given sizes (`init`), commands sent,
bytes fed at given times, check_timeout, reset. `port/c/tests/at_harness.c` runs a script and prints
every callback as it fires (write, response with its arena spans, URC, truncation, ignored line) and
the channel's state after each event (busy, both deadlines, hex mode, the stall window and all eight
counters); `PyAt` below runs the same script through `AtChannel` and prints the same lines. The two
must be identical, line for line. The C side runs under ASan+UBSan with every buffer exactly as
large as it says, so a read or write past one fails the test.

The scripts: every test of tests/test_at.py, recorded as it runs (its exchanges split at every
byte boundary, its fuzz runs, the resync, hex and header-lookalike cases); then thousands of
generated sessions (random bytes, well-formed module lines, URCs inside responses, truncated and
overlong payloads, hex downlinks, line noise, small buffers, odd line rates and timeouts, custom
URC tables) fed in random pieces; and the free functions over module text.
"""

from __future__ import annotations

import inspect
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airfsm.core.at import (
    AtChannel,
    AtResponse,
    final_code,
    final_code_number,
    is_msub_message,
    msub_cache_slot,
    msub_topic,
    payload_stall_ms,
    response_prefix_end,
)
from airfsm.core.codes import Trigger, UrcKind
from airfsm.core.settings import DATA_CAPACITY, INFO_ARENA, LINE_CAPACITY
from airfsm.core.table import URCS, Urc
from tests import test_at
from tests.cport import PORT_C, ROOT, hexfield, make, require_host_compiler, run_script, unhexfield

MASK = 0xFFFFFFFF
CORE = ROOT / "airfsm" / "core"


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    require_host_compiler()
    make("harnesses")


# --- the script and its Python run ---------------------------------------------------------------


def init(baud: int = 115200, line: int = LINE_CAPACITY, data: int = DATA_CAPACITY,
         arena: int = INFO_ARENA, urcs: tuple[Urc, ...] | None = None) -> list[str]:
    rows = [] if urcs is None else [
        f"urc {int(u.kind)} {-1 if u.trigger is None else int(u.trigger)} {int(u.urc_only)} "
        f"{hexfield(u.prefix)}" for u in urcs]
    return [*rows, f"init {baud} {line} {data} {arena}"]


def send(now: int, timeout: int, command: bytes, prompt: bool = False, final_urc: bool = False,
         cap: int | None = None) -> str:
    cap = len(command) + 1 if cap is None else cap
    return f"send {now & MASK} {timeout} {int(prompt)} {int(final_urc)} {cap} {hexfield(command)}"


def feed(now: int, data: bytes) -> str:
    return f"feed {now & MASK} {hexfield(data)}"


def tick(now: int) -> str:
    return f"tick {now & MASK}"


def state_line(ch: AtChannel) -> str:
    deadline = "-" if ch.deadline is None else str(ch.deadline)
    receive = "-" if ch.receive_deadline is None else str(ch.receive_deadline)
    counters = (ch.lines_dropped, ch.stray_lines, ch.urcs, ch.data_dropped, ch.payloads_truncated,
                ch.msub_resplits, ch.info_lines_dropped, ch.commands_refused)
    return (f"= busy={int(ch.busy)} deadline={deadline} receive={receive} "
            f"hex={int(ch.hex_payloads_possible)} stall={ch.stall_ms} "
            + " ".join(str(c) for c in counters))


class PyAt:
    """Runs a script through airfsm.core.at and prints what at_harness.c prints."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.custom: list[Urc] = []
        self.ch: AtChannel | None = None

    def _write(self, data: memoryview) -> None:
        self.out.append(f"write {hexfield(bytes(data))}")

    def _on_response(self, r: AtResponse) -> None:
        assert self.ch is not None
        spans = ",".join(f"{r.line_start[i]}:{r.line_length[i]}" for i in range(r.line_count))
        lines = ",".join(hexfield(line) for line in r.lines)
        self.out.append(f"rsp {int(r.result)} {r.cme_error} {int(r.truncated)} {int(self.ch.busy)} "
                        f"{hexfield(bytes(r.command))} {r.arena_used} {spans or '-'} "
                        f"{lines or '-'} {r.data_start}:{r.data_length} {hexfield(r.data)}")

    def _on_urc(self, urc: int, line: bytes, payload: bytes) -> None:
        self.out.append(f"urc {urc} {hexfield(line)} {hexfield(payload)}")

    def _on_truncated(self, header: bytes, declared: int, received: int) -> None:
        self.out.append(f"trunc {hexfield(header)} {declared} {received}")

    def _on_ignored(self, line: memoryview) -> None:
        self.out.append(f"ign {hexfield(bytes(line))}")

    def run(self, script: list[str]) -> list[str]:
        for event in script:
            self.step(event.split(" "))
        return self.out

    def step(self, t: list[str]) -> None:
        op = t[0]
        if op == "urc":
            trigger = int(t[2])
            self.custom.append(Urc(unhexfield(t[4]), UrcKind(int(t[1])),
                                   None if trigger < 0 else Trigger(trigger), t[3] == "1"))
            return
        if op in ("topic", "ismsg", "slot", "final", "prefix", "stall"):
            self.out.append(free_function(op, t[1]))
            return
        if op == "init":
            urcs = tuple(self.custom) if self.custom else URCS
            self.custom = []
            self.ch = AtChannel(self._write, self._on_response, self._on_urc, urcs,
                                on_truncated=self._on_truncated, on_ignored=self._on_ignored,
                                baud=int(t[1]),
                                line_buf=bytearray(int(t[2])), data_buf=bytearray(int(t[3])),
                                info_arena=bytearray(int(t[4])))
            self.out.append("init")
        else:
            ch = self.ch
            assert ch is not None
            if op == "send":
                command, cap = unhexfield(t[6]), int(t[5])
                buf = bytearray(cap)
                buf[:min(len(command), cap)] = command[:cap]
                ch.send(buf, len(command), int(t[1]), int(t[2]), expect_prompt=t[3] == "1",
                        final_urc=t[4] == "1")
            elif op == "data":
                body = unhexfield(t[3])
                ch.send_data(body, len(body), int(t[1]), int(t[2]))
            elif op == "feed":
                ch.feed(unhexfield(t[2]), int(t[1]))
            elif op == "tick":
                ch.check_timeout(int(t[1]))
            elif op == "reset":
                ch.reset()
            elif op == "find":
                self.out.append(f"find {ch._response.find_line(unhexfield(t[1]))}")
                return
            elif op == "line":
                self.out.append(f"line {hexfield(ch._response.line(int(t[1])))}")
                return
            else:
                raise AssertionError(f"unknown event {op}")
        assert self.ch is not None
        self.out.append(state_line(self.ch))


def free_function(op: str, arg: str) -> str:
    if op == "stall":
        return f"stall {payload_stall_ms(int(arg))}"
    line = unhexfield(arg)
    if op == "topic":
        return f"topic {hexfield(msub_topic(line))}"
    if op == "ismsg":
        return f"ismsg {int(is_msub_message(line))}"
    if op == "slot":
        return f"slot {msub_cache_slot(line)}"
    if op == "final":
        index = final_code(line, 0, len(line))
        number = -1 if index < 0 else final_code_number(line, 0, len(line), index)
        return f"final {index} {number}"
    return f"prefix {response_prefix_end(line, len(line))}"


def compare(scripts: list[list[str]]) -> int:
    """Run every script through C (one process) and Python; fail on the first difference.

    Returns the number of output lines compared."""
    assert all(s and any(e.startswith("init ") for e in s) for s in scripts)
    c_out = run_script("at-harness", [event for script in scripts for event in script])
    groups: list[list[str]] = []
    for line in c_out:
        if line == "init":
            groups.append([])
        assert groups, f"output before the first init: {line}"
        groups[-1].append(line)
    assert len(groups) == len(scripts), "the harness and the scripts disagree on the sessions"
    for script, c_lines in zip(scripts, groups, strict=True):
        py_lines = PyAt().run(script)
        if c_lines != py_lines:
            at = next((i for i, (a, b) in enumerate(zip(c_lines, py_lines, strict=False))
                       if a != b), min(len(c_lines), len(py_lines)))
            shown = "\n".join(script[:200])
            pytest.fail(f"C and Python differ at output line {at}:\n  C:      "
                        f"{c_lines[at] if at < len(c_lines) else '<end>'}\n  Python: "
                        f"{py_lines[at] if at < len(py_lines) else '<end>'}\n"
                        f"context (Python): {py_lines[max(0, at - 4):at]}\nscript:\n{shown}")
    return len(c_out)


# --- every test of tests/test_at.py, recorded ---------------------------------------------------


class RecordingChannel(AtChannel):
    """An AtChannel that writes down what it is asked to do, as a script.

    Only the caller's calls are recorded: the feed() a truncation makes from inside the channel
    is the channel's own business (the C twin does it too)."""

    scripts: list[list[str]] = []

    def __init__(self, write: Any, on_response: Any, on_urc: Any, urcs: Any = URCS,
                 **kwargs: Any) -> None:
        super().__init__(write, on_response, on_urc, urcs, **kwargs)
        rows = None if urcs is URCS else tuple(urcs)
        self.script = init(self._baud, self._line_cap, self._data_cap,
                           len(self._response.arena), rows)
        self.inside = False
        RecordingChannel.scripts.append(self.script)

    def _record(self, event: str, call: Callable[[], None]) -> None:
        if self.inside:
            call()
            return
        self.script.append(event)
        self.inside = True
        try:
            call()
        finally:
            self.inside = False

    def send(self, buf: bytearray, length: int, now_ms: int, timeout_ms: int, *,
             expect_prompt: bool = False, final_urc: bool = False) -> None:
        cap = len(buf)
        command = bytes(buf[:min(length, cap)]) + b"?" * max(0, length - cap)
        timeout = min(max(timeout_ms, 0), MASK)
        self._record(send(now_ms, timeout, command, expect_prompt, final_urc, cap),
                     lambda: AtChannel.send(self, buf, length, now_ms, timeout_ms,
                                            expect_prompt=expect_prompt, final_urc=final_urc))

    def send_data(self, buf: Any, length: int, now_ms: int, timeout_ms: int) -> None:
        body = bytes(memoryview(buf)[:length])
        self._record(f"data {now_ms & MASK} {min(max(timeout_ms, 0), MASK)} {hexfield(body)}",
                     lambda: AtChannel.send_data(self, buf, length, now_ms, timeout_ms))

    def feed(self, data: bytes | bytearray, now_ms: int, length: int | None = None) -> None:
        chunk = bytes(data[:length]) if length is not None else bytes(data)
        self._record(feed(now_ms, chunk), lambda: AtChannel.feed(self, data, now_ms, length))

    def check_timeout(self, now_ms: int) -> None:
        self._record(tick(now_ms), lambda: AtChannel.check_timeout(self, now_ms))

    def reset(self) -> None:
        self._record("reset", lambda: AtChannel.reset(self))


def parametrized_calls(func: Callable[..., object]) -> Iterator[dict[str, object]]:
    """Every combination of a test's @pytest.mark.parametrize arguments."""
    combos: list[dict[str, object]] = [{}]
    for mark in getattr(func, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names = mark.args[0]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        values = [v.values if hasattr(v, "values") else (v,) if len(names) == 1 else v
                  for v in mark.args[1]]
        combos = [{**combo, **dict(zip(names, value, strict=True))}
                  for combo in combos for value in values]
    yield from combos


def recorded_test_at_scripts() -> list[list[str]]:
    RecordingChannel.scripts = []
    ran = 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(test_at, "AtChannel", RecordingChannel)
        for name, func in inspect.getmembers(test_at, inspect.isfunction):
            if not name.startswith("test_") or func.__module__ != test_at.__name__:
                continue
            params = set(inspect.signature(func).parameters)
            for kwargs in parametrized_calls(func):
                assert params == set(kwargs), f"{name}: cannot call it with {kwargs}"
                func(**kwargs)
                ran += 1
    assert ran > 300  # test_at has over 400 cases with its parameters
    return RecordingChannel.scripts


def test_every_test_at_case_runs_the_same_in_c() -> None:
    scripts = recorded_test_at_scripts()
    assert len(scripts) > 5000  # the exchanges split at every byte boundary alone are more
    assert compare(scripts) > 100_000


# --- generated sessions -------------------------------------------------------------------------

COMMANDS: list[tuple[bytes, bool, bool]] = [  # (command, expect_prompt, final_urc)
    (b"AT", False, False),
    (b"AT+CGATT?", False, False),
    (b"AT+CSQ", False, False),
    (b"AT+CPIN?", False, False),
    (b"AT+CGMR", False, False),
    (b"AT+SAPBR=2,1", False, False),
    (b"AT+MQTTSTATU", False, False),
    (b"AT+HTTPREAD", False, False),
    (b"AT+HTTPACTION=1", False, False),
    (b"AT+HTTPDATA=4,1000", True, False),
    (b"AT+MPUBEX=3", True, False),
    (b"AT+MCONNECT=1,120", False, True),
    (b'AT+MSUB="/t",0', False, False),
    (b"AT+MQTTMODE=1", False, False),
    (b"at+mqttmode=0", False, False),
    (b"AT+MQTTMODE=0", False, False),
    (b"AT+MQTTMSGGET", False, False),
    (b"AT+X\r\nAT+RESET", False, False),  # refused: an injection
    (b"AT\x00", False, False),
    (b"", False, False),
    (b"ATE0", False, False),
    (b"AT+", False, False),
]

# Lines a module sends (each framed in CR LF by the generator, or not).
MODULE_LINES = [
    b"OK", b"ERROR", b"ERROR: 3", b"ERROR:601", b"ERROR: x", b"+CME ERROR: 767", b"+CMS ERROR: 500",
    b"+CME ERROR: SIM busy", b"+CME ERROR: 12345678901", b"OK ", b" OK", b"OKAY", b"ERRORS",
    b"DOWNLOAD", b"> ", b">", b"RDY", b"+CFUN: 1", b"+CPIN: READY", b"+CPIN: NOT READY",
    b"SMS Ready", b"+CGATT: 1", b"+CGATT: 0", b"+CGATT:0", b"+CSQ: 24,0", b"+CGREG: 1",
    b"+PDP DEACT", b"+CGEV: ME DETACH", b"+CGEV: NW PDN DEACT", b"+SAPBR 1: DEACT",
    b'+SAPBR: 1,1,"10.0.0.2"', b"+HTTPACTION: 1,200,128", b"+HTTPACTION:1,601,0",
    b"CONNECT OK", b"CONNECT FAIL", b"ALREADY CONNECT", b"STATE: IP", b"CLOSED", b"CONNACK OK",
    b"SUBACK", b"UNSUBACK", b"PUBACK", b"+MQTTSTATU :1", b"+MQTTSTATU: 0",
    b"AirM2M_Air72xUy_V409_LTE_AT", b'+CGMR: "AirM2M_Air724UG_V838_LTE_AT"', b"+MSUB: 0",
    b"+MSUB: 3", b"+MSUB: 12", b'+MSUB: "/t",x byte,', b'+MSUB: "/t" 3 byte,', b"+MSUB: 3 byte,",
    b"+HTTPREAD: 0", b"+HTTPREAD: x", b"+CGA: 3", b"+CGA : 2", b"hello", b"",
]
NOISE = [b"\xff\x00", b"\xf8", b"\x00\x00\xe0\xfe", b"\x1b", b"\x7f", b"\x80\x81"]
TOPICS = [b"/pk/dn/get", b"/a,b", b"/a/5 byte,x", b'/a",1 byte,b', b"", b"/t", b"x" * 40]
TRICKY = test_at.TRICKY


def random_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def payload_bytes(rng: random.Random, n: int) -> bytes:
    kind = rng.random()
    if kind < 0.3:
        return random_bytes(rng, n)
    if kind < 0.5:
        return (TRICKY * (n // len(TRICKY) + 1))[:n]
    if kind < 0.7:
        return bytes(rng.choice(b"0123456789abcdefABCDEF") for _ in range(n))
    return bytes(rng.choice(b'ab,"\r\nOK ') for _ in range(n))


def msub_piece(rng: random.Random, hex_mode: bool) -> bytes:
    """A +MSUB message: a header of some shape, a payload of its length or not, a line end or
    not."""
    topic = rng.choice(TOPICS)
    quoted = rng.random() < 0.6
    size = rng.choice([0, 1, 2, 3, 5, 11, 40, rng.randrange(200)])
    payload = payload_bytes(rng, size)
    space = rng.choice([b" ", b"", b"  "])
    head = b"+MSUB:" + space + (b'"' + topic + b'"' if quoted else topic) + b"," + \
        rng.choice([b"", b" "]) + str(size).encode() + rng.choice([b" byte,", b"byte,", b"  byte,"])
    if hex_mode and rng.random() < 0.6:
        payload = payload.hex().encode() if rng.random() < 0.5 else payload.hex().upper().encode()
    r = rng.random()
    if r < 0.15 and payload:
        payload = payload[:rng.randrange(len(payload))]  # bytes lost on the UART
    elif r < 0.25:
        payload += payload_bytes(rng, rng.randrange(1, 6))  # the topic held a header lookalike
    return head + payload + rng.choice([b"\r\n", b"\r\n", b"", b"\n", b"\r"])


def httpread_piece(rng: random.Random) -> bytes:
    size = rng.choice([1, 3, 40, 128, rng.randrange(1, 600)])
    body = payload_bytes(rng, size)
    if rng.random() < 0.15:
        body = body[:rng.randrange(size)]
    return (b"+HTTPREAD: " + str(size).encode() + rng.choice([b"\r\n", b"\n", b"\r"]) + body
            + rng.choice([b"\r\n", b"", b"\r\n\r\nOK\r\n", b"OK\r\n"]))


def stream_piece(rng: random.Random, command: bytes | None, hex_mode: bool,
                 line_cap: int) -> bytes:
    r = rng.random()
    noise = rng.choice(NOISE) if rng.random() < 0.1 else b""
    if r < 0.35:
        return b"\r\n" + noise + rng.choice(MODULE_LINES) + b"\r\n"
    if r < 0.45 and command is not None:
        return command + b"\r"  # the echo
    if r < 0.6:
        return b"\r\n" + noise + msub_piece(rng, hex_mode)
    if r < 0.68:
        return b"\r\n" + noise + httpread_piece(rng)
    if r < 0.75:
        return rng.choice(test_at.RESYNC_TOKENS)
    if r < 0.82:
        return random_bytes(rng, rng.randrange(1, 12))
    if r < 0.86:
        return b"\r\n" + b"A" * (line_cap + rng.randrange(-2, 3)) + rng.choice([b"\r\n", b""])
    if r < 0.9:
        return str(rng.choice([rng.randrange(12), rng.randrange(5000)])).encode()
    if r < 0.95:
        return b"\r\n> " if rng.random() < 0.5 else b"\r\nDOWNLOAD\r\n"
    return rng.choice([b"\r", b"\n", b",", b'"', b" byte,", b"\r\n"])


def custom_table(rng: random.Random) -> tuple[Urc, ...]:
    rows = list(URCS)
    rng.shuffle(rows)
    rows = rows[:rng.randrange(1, len(rows))]
    rows.append(Urc(rng.choice([b"", b"+FOO:", b"OK", b"+CGA"]), UrcKind.NOTICE,
                    urc_only=rng.random() < 0.5))
    rng.shuffle(rows)
    return tuple(rows)


def session(rng: random.Random) -> list[str]:
    small = rng.random() < 0.2
    line_cap = rng.randrange(0, 80) if small else LINE_CAPACITY
    data_cap = rng.randrange(0, 120) if small else DATA_CAPACITY
    arena = rng.randrange(0, 200) if small else INFO_ARENA
    baud = rng.choice([115200, 115200, 115200, 9600, 300, 1, 0, 921600, MASK])
    table = custom_table(rng) if rng.random() < 0.1 else None
    script = init(baud, line_cap, data_cap, arena, table)
    now = rng.choice([0, 1000, MASK - 3000, rng.getrandbits(32)])
    command: bytes | None = None
    hex_mode = False
    for _ in range(rng.randrange(5, 60)):
        r = rng.random()
        if r < 0.18:
            command, prompt, final = rng.choice(COMMANDS)
            timeout = rng.choice([0, 1, 50, 300, 5000, 20_000, 0x7FFFFFFF, MASK])
            cap = rng.choice([len(command) + 1] * 6 + [len(command), len(command) + 10, 0])
            script.append(send(now, timeout, command, prompt, final, cap))
            hex_mode = hex_mode or command.upper() == b"AT+MQTTMODE=1"
        elif r < 0.22:
            body = payload_bytes(rng, rng.randrange(8))
            script.append(f"data {now} {rng.choice([100, 5000])} {hexfield(body)}")
        elif r < 0.8:
            stream = b"".join(stream_piece(rng, command, hex_mode, max(line_cap, 1))
                              for _ in range(rng.randrange(1, 5)))
            cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream), rng.randrange(4))))
            start = 0
            for cut in [*cuts, len(stream)]:
                script.append(feed(now, stream[start:cut]))
                start = cut
                if rng.random() < 0.3:
                    now = (now + rng.randrange(150)) & MASK
        elif r < 0.95:
            script.append(tick(now))
        elif r < 0.97:
            script.append("reset")
            hex_mode = False
        elif r < 0.985:
            script.append(f"find {hexfield(rng.choice([b'+CSQ', b'+HTTPREAD', b'', b'A']))}")
        else:
            script.append(f"line {rng.randrange(-1, 10)}")
        step = rng.random()
        now = (now + (rng.randrange(60) if step < 0.7 else rng.randrange(400) if step < 0.95
                      else rng.choice([2**31 - 1, 2**31, 100_000]))) & MASK
    return script


def test_generated_sessions_run_the_same_in_c() -> None:
    rng = random.Random(0xA1272)
    scripts = [session(rng) for _ in range(3000)]
    out = compare(scripts)
    # The generator is only worth something if the sessions reach every path: check on the
    # Python side that each kind of event happened.
    events = [e for s in scripts for e in PyAt().run(s)]
    assert out == len(events)
    assert sum(e.startswith("trunc ") for e in events) > 50
    assert sum(e.startswith("urc 26 ") and not e.endswith(" x") for e in events) > 200
    for result in range(5):
        assert any(e.startswith(f"rsp {result} ") for e in events), result
    counters = [e.split(" ")[-8:] for e in events if e.startswith("= ")]
    for index, name in enumerate(("lines_dropped", "stray_lines", "urcs", "data_dropped",
                                  "payloads_truncated", "msub_resplits", "info_lines_dropped",
                                  "commands_refused")):
        assert any(int(c[index]) > 0 for c in counters), f"{name} never counted"


def test_hex_mode_downlinks_and_lookalike_topics_in_many_pieces() -> None:
    """The paths the random sessions reach least: a hex-mode downlink of 2n digits (or not),
    a topic holding `",<n> byte,`, each stream fed one byte at a time and in two pieces."""
    rng = random.Random(7919)
    scripts = []
    for _ in range(300):
        stream = b"".join(b"\r\n" + msub_piece(rng, True) for _ in range(3)) + b"\r\nPUBACK\r\n"
        base = [*init(), send(1000, 5000, b"AT+MQTTMODE=1"), feed(1000, b"\r\nOK\r\n")]
        scripts.append(base + [feed(1000, stream[i:i + 1]) for i in range(len(stream))]
                       + [tick(1300), tick(2000)])
        cut = rng.randrange(len(stream) + 1)
        scripts.append(base + [feed(1000, stream[:cut]), tick(1100), feed(1150, stream[cut:]),
                               tick(1400)])
    compare(scripts)


def test_free_functions_over_module_text() -> None:
    rng = random.Random(31337)
    lines = [*MODULE_LINES, *(b"\r\n" + line for line in MODULE_LINES)]
    lines += [msub_piece(rng, rng.random() < 0.5).rstrip(b"\r\n") for _ in range(500)]
    lines += [random_bytes(rng, rng.randrange(12)) for _ in range(300)]
    lines += [b'+MSUB: "/t,1234567890 byte,', b"+MSUB:/x,0 byte,", b'+MSUB: "",2 byte,',
              b"+MSUB:", b"+MSUB: 9", b"+MSUB: 10", b"+MSUB: 2 "]
    commands = [c for c, _p, _f in COMMANDS] + [b"at+csq", b"+CGATT?", b"AT+_A1=", b"aT+x"]
    script = init()
    for line in lines:
        script += [f"{op} {hexfield(line)}" for op in ("topic", "ismsg", "slot", "final")]
    script += [f"prefix {hexfield(c)}" for c in commands + lines]
    script += [f"stall {b}" for b in (0, 1, 2, 300, 1599, 1600, 1601, 9600, 115200, MASK)]
    assert compare([script]) == len(script) + 1  # one answer each, and init's two lines


# --- the names the Python twins give their C twins ------------------------------------------------

BYTE_LAYER = ("at", "textparse", "timebase", "payload")
# The one C name that differs from the Python docstring's: the channel's struct is at_channel_t.
RENAMED = {"at_t": "at_channel_t"}
C_DEFINITION = re.compile(r"^(?:static )?(?:inline )?[a-z][\w ]*?\*?\b(\w+)\([^;]*?\)\s*\{",
                          re.M | re.S)


def test_every_c_twin_the_byte_layer_names_exists() -> None:
    """Each `C: name()` of airfsm/core/{at,textparse,timebase,payload}.py is a function, type or
    macro of port/c/core (a Python function given a twin name without a C twin fails)."""
    c_text = "".join(p.read_text() for p in sorted((PORT_C / "core").glob("*.[ch]")))
    named: set[str] = set()
    for module in BYTE_LAYER:
        for segment in re.findall(r"C: ([^.\n]*)", (CORE / f"{module}.py").read_text()):
            named |= set(re.findall(r"\b((?:at|textparse|payload|ms|xorshift32|seed|backoff)"
                                    r"_\w+)", segment))
    assert len(named) > 60
    for name in sorted(named):
        c_name = RENAMED.get(name, name)
        assert re.search(rf"\b{c_name}\b\s*[(;{{]", c_text) or \
            re.search(rf"}}\s*{c_name};", c_text), f"{name}: no C twin in port/c/core"


def test_every_c_function_of_the_byte_layer_names_its_python_twin() -> None:
    """The comment right above each function of at.c, textparse.c, timebase.c, payload.c (and the
    inline ones of their headers) says which Python it mirrors."""
    checked = 0
    for module in BYTE_LAYER:
        for suffix in (".c", ".h"):
            path = PORT_C / "core" / f"{module}{suffix}"
            text = path.read_text()
            for match in C_DEFINITION.finditer(text):
                before = text[:match.start()].rstrip()
                assert before.endswith("*/"), f"{path.name}: {match[1]} has no comment"
                comment = before[before.rindex("/*"):]
                assert "Twin" in comment or "Python" in comment, f"{path.name}: {match[1]}"
                checked += 1
    assert checked > 70
