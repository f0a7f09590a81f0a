"""AT channel: one command in flight over the Air72x UART, byte-at-a-time.

This is the Python twin of `at.c`; it is written so a C port can follow it line for line
(model: Zephyr `subsys/modem/modem_chat.c`). Received bytes go through a small receive state
machine into a fixed `bytearray` line buffer (LINE_CAPACITY) and, for length-counted payloads,
a fixed data buffer (DATA_CAPACITY); both are allocated once. Nothing here blocks, sleeps,
spawns a thread or raises on received bytes; deadlines are wrap-safe 32-bit milliseconds.

Receive states (`_Rx`)
----------------------
LINE          assemble a line; CR or LF ends it; empty lines are skipped.
SKIP_LINE     the line overflowed LINE_CAPACITY: discard bytes up to the next CR/LF.
SKIP_LF       a `+HTTPREAD: <n>` line ended at CR: swallow one LF, then read the data.
DATA          read exactly n raw bytes (they may hold CR, LF, commas, quotes, "OK" ...); they
              are kept in the data buffer (its first DATA_CAPACITY bytes) whatever their sink.
HEX_TAIL      a `+MSUB:` payload of n hex digits while the module may be in hex mode
              (AT+MQTTMODE=1 sent, AT+MQTTMODE=0 not yet answered OK) went on with another hex
              digit: it is the hex form, 2n digits for n bytes; read the other n.
MSUB_END      a `+MSUB:` payload is complete; the next byte decides whether it really was one
              (see "A topic that looks like a header" below).
PROMPT_SPACE  a `>` prompt was just taken: swallow the one space a module sends after it.

The digest (what a complete line is), decided in `_digest`, in this fixed order
-------------------------------------------------------------------------------
Leading noise bytes (control bytes and bytes >= 0x7F: what a UART prints while the module
boots, e.g. `\\xff\\x00RDY`) are skipped for every decision below and dropped from the lines
it recognises; a line that ends up as a plain info line keeps its bytes as received.
With a command in flight:
  1. echo       a line equal to the command is its echo: dropped (echo on or off both work).
  2. final      `OK`, `ERROR`, `ERROR: n` (how the HTTP commands refuse), `+CME ERROR: n`,
                `+CMS ERROR: n` (FINAL_CODES) complete the response: the channel goes idle, then
                on_response(response) fires.
  3. prompt     `DOWNLOAD` (PROMPT_LINES) when the command was sent with expect_prompt:
                on_response(PROMPT); the command stays in flight for send_data().
  4. own line   a line `<prefix>:` or `<prefix> :` where <prefix> comes from the command
                (`AT+CGATT?` -> `+CGATT`) is an info line of the response, even though
                `+CGATT:` is also in the URC table. Exception: the table's urc_only rows
                (`+HTTPACTION:`, `+MSUB:`) are never answers, whatever command is in flight.
With no command in flight:
  2'. final     a final code is a late answer of a command that timed out (counted stray) -
                except when the last command was sent with final_urc and answered OK: then
                the first final code after it is that command's outcome, reported as a URC
                (AT+MCONNECT answers OK, then `CONNACK OK` or, refused, a bare `ERROR`).
With or without a command in flight:
  5. URC        a line starting with a prefix of the URC table (`airfsm.core.table.URCS`, the
                one table the controller reads too): on_urc(row, line, b""), without touching
                the response being assembled (URCs do arrive between a command and its OK).
  6. the rest   with a command in flight: an info line of its response (at most
                MAX_INFO_LINES kept); with none: a stray line, only counted.
Then, whatever the line was: a `+HTTPREAD: <n>` line is followed by n raw bytes. They become
the response's `data` when the line was step 4 (an answer to AT+HTTPREAD); otherwise they are
read and discarded so the stream stays in sync (a late body after a timeout must not be parsed
as lines: it could hold `OK` or `CLOSED`).

Decisions that cannot wait for a line end, because the module does not send one
--------------------------------------------------------------------------------
  * `>` as the first byte of a line while a prompt is awaited is the prompt (step 3; modules
    send `> ` and then wait for the body).
  * `+MSUB: <topic>,<n> byte,<payload>`: the payload follows in the same line. When a `,`
    completes `byte,` on a `+MSUB:` line, the line so far is the header; the next n bytes are
    read raw and delivered as on_urc(MSUB row, header, payload). The header stays in the line buffer
    meanwhile (no copy in C). Decided by shape alone: it is always a URC (step 5). In hex mode
    the module sends 2n hex digits for n bytes (`+MSUB: "/t",3 byte,313233`): delivered
    decoded.

A topic that looks like a header
--------------------------------
A topic may itself contain `",1 byte,`: the first `byte,` is then not the end of the header.
So a payload is delivered only when the byte after it is a line end (as the module sends
it), or when nothing follows for a stall window. Any other byte means the payload may have
been part of the topic: the payload is appended to the header in the line buffer and the line
goes on; a later `byte,` that makes a valid header wins, and if the line ends without one the
first reading stands (the payload is delivered and the rest of the line is a line of its own,
so a payload without its CR LF still works).

A payload shorter than its header says (bytes lost on the UART)
---------------------------------------------------------------
A length-counted payload that stalls (no byte for `stall_ms`: PAYLOAD_STALL_CHARS character
times at the line rate, at least PAYLOAD_STALL_FLOOR_MS for a host that sees bytes in bursts)
or that runs longer than its size allows (twice its line time plus
PAYLOAD_OVERRUN_SLACK_MS) is closed as truncated in check_timeout(): counted in
`payloads_truncated`, reported through on_truncated(header, declared, received), and dropped:
a `+MSUB:` message is never delivered, an `+HTTPREAD:` response gets no data and
`truncated = True`. A truncated payload cannot be trusted, and a half JSON command acted upon
is worse than a lost one. The bytes it swallowed after its first CR or LF (the next command's
`OK`, a `RDY` of a module that rebooted mid-body) are then fed through the receiver again, so
the channel resyncs at the next line and nothing after the damage is lost. Time is taken only
in check_timeout(), after the caller read what the port had: a late tick never looks like a
stall.

Callbacks fire synchronously, in arrival order, after the channel state is updated, so the
channel is consistent even if a callback raises. Callbacks must not send (contract): they
record, and the controller acts after feed() returns. The one AtResponse object is reused (C: a
struct); it is reset by send() and not touched between a completion and the next send(), so
the controller may read it after feed() returns. Its `lines` and `data` are fresh objects per
command (C: arrays inside the struct).

A deadline is enforced only by check_timeout(): a final code fed before check_timeout() sees
the deadline still completes the command normally. The caller calls check_timeout() by
`deadline` (the command's) and `receive_deadline` (the payload being read: its stall window,
its overrun budget, or the wait for the byte after it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import IntEnum

from airfsm.core.codes import AtResult, UrcKind
from airfsm.core.table import URC_NONE, URCS, Urc
from airfsm.core.textparse import MAX_UINT_DIGITS, hex_value, is_digit, parse_uint
from airfsm.core.timebase import ms_add, ms_diff, ms_earliest, ms_reached

LINE_CAPACITY = 2048
DATA_CAPACITY = 4096
MAX_INFO_LINES = 8
# Deadlines are compared by the sign of a 32-bit difference: a longer timeout would wrap.
MAX_TIMEOUT_MS = 0x7FFFFFFF

# The line rate decides how long a payload may pause or last (8N1: 10 bits a character).
DEFAULT_BAUD = 115200
UART_BITS_PER_CHAR = 10
# A module writes a payload from its buffer in one go: a pause of this many character times
# inside one means bytes were lost ...
PAYLOAD_STALL_CHARS = 32
# ... but a host sees the UART in bursts (USB-serial latency timers, ptys, TCP bridges), so
# never call a payload stalled sooner than this.
PAYLOAD_STALL_FLOOR_MS = 200
# A payload may take twice its line time plus this before it is called overrun (the stream
# kept flowing, so no stall, but the bytes are not all the payload's).
PAYLOAD_OVERRUN_SLACK_MS = 1_000

_CR = 0x0D
_LF = 0x0A
_NUL = 0x00
_SP = 0x20
_QUOTE = 0x22
_COMMA = 0x2C
_COLON = 0x3A
_GT = 0x3E
_PLUS = 0x2B
_TILDE = 0x7E


# Final result codes: (text, result, followed by a numeric code). Exact lines when no code.
# `ERROR: <n>` is how the HTTP commands refuse (a final answer, not an info line); `ERROR`
# itself is matched exactly first, so `ERRORS` stays an info line.
FINAL_CODES: tuple[tuple[bytes, AtResult, bool], ...] = (
    (b"OK", AtResult.OK, False),
    (b"ERROR", AtResult.ERROR, False),
    (b"ERROR:", AtResult.ERROR, True),
    (b"+CME ERROR:", AtResult.CME_ERROR, True),
    (b"+CMS ERROR:", AtResult.CME_ERROR, True),
)

# Whole-line prompts. The `>` prompt is not here: it is taken at its first byte, because the
# module sends `> ` and then waits, with no line end (see the module docstring).
PROMPT_LINES: tuple[bytes, ...] = (b"DOWNLOAD",)

MSUB_HEADER = b"+MSUB:"
MSUB_LENGTH_UNIT = b"byte,"
HTTPREAD_HEADER = b"+HTTPREAD:"
# The payload form of +MSUB follows the module's AT+MQTTMODE, which the channel sees go by.
HEX_MODE_ON = b"AT+MQTTMODE=1"
HEX_MODE_OFF = b"AT+MQTTMODE=0"


class _Rx(IntEnum):
    LINE = 0
    SKIP_LINE = 1
    SKIP_LF = 2
    DATA = 3
    HEX_TAIL = 4
    MSUB_END = 5
    PROMPT_SPACE = 6


class _Sink(IntEnum):
    """Where the bytes of the DATA state go."""

    NONE = 0
    RESPONSE = 1  # AtResponse.data (the +HTTPREAD body)
    URC = 2  # on_urc(header, payload) (the +MSUB payload)
    DISCARD = 3  # counted, read and thrown away to keep the stream in sync


class _Prompt(IntEnum):
    NONE = 0
    AWAITED = 1  # sent with expect_prompt, prompt not seen yet
    GIVEN = 2  # PROMPT reported, waiting for send_data()


class AtResponse:
    """The answer to one command. One object per channel, reused (C: a struct).

    `cme_error` is the number of `+CME ERROR: n`, `+CMS ERROR: n` or `ERROR: n` (-1: none).
    `truncated` is set when the command's length-counted data came short (the data is then
    dropped: `data` stays empty).
    """

    __slots__ = ("result", "cme_error", "lines", "data", "command", "truncated")

    def __init__(self) -> None:
        self.result: AtResult = AtResult.OK
        self.cme_error: int = -1
        self.lines: list[bytes] = []
        self.data: bytes = b""
        self.command: bytes = b""
        self.truncated: bool = False

    def __repr__(self) -> str:
        return (
            f"AtResponse(result={self.result.name}, cme_error={self.cme_error}, "
            f"lines={self.lines!r}, data={self.data!r}, command={self.command!r}, "
            f"truncated={self.truncated})"
        )




def _is_noise(b: int) -> bool:
    """A byte no module line starts with: control bytes and 8-bit bytes (boot line noise)."""
    return b < _SP or b > _TILDE



def _msub_split(buf: bytes | bytearray, n: int) -> tuple[int, int, int]:
    """Parse a `+MSUB:` header in buf[:n] ending in `byte,`: (topic_start, topic_end, length).

    The length is the digits just before `byte,` (the last comma-separated field), so a topic
    may itself contain commas. A quoted topic must close right before that comma. length is -1
    when buf[:n] is not such a header.
    """
    unit = len(MSUB_LENGTH_UNIT)
    head = len(MSUB_HEADER)
    if n < head + unit + 2:  # at least ",<digit>" between header and unit
        return 0, 0, -1
    if not buf.startswith(MSUB_HEADER, 0, n) or not buf.endswith(MSUB_LENGTH_UNIT, 0, n):
        return 0, 0, -1
    digits_end = n - unit
    while digits_end > head and buf[digits_end - 1] == _SP:
        digits_end -= 1
    digits_start = digits_end
    while digits_start > head and is_digit(buf[digits_start - 1]):
        digits_start -= 1
    ndigits = digits_end - digits_start
    if ndigits == 0 or ndigits > MAX_UINT_DIGITS:
        return 0, 0, -1
    comma = digits_start - 1
    while comma > head and buf[comma] == _SP:
        comma -= 1
    if comma < head or buf[comma] != _COMMA:
        return 0, 0, -1
    topic_start = head
    while topic_start < comma and buf[topic_start] == _SP:
        topic_start += 1
    topic_end = comma
    if topic_start < comma and buf[topic_start] == _QUOTE:
        # quoted form: `"<topic>",<n> byte,` - the quote must close right before the comma
        if comma - topic_start < 2 or buf[comma - 1] != _QUOTE:
            return 0, 0, -1
        topic_start += 1
        topic_end = comma - 1
    return topic_start, topic_end, parse_uint(buf, digits_start, digits_end)


def msub_topic(line: bytes) -> bytes:
    """The topic of a `+MSUB:` header line (as passed to on_urc), without quotes.

    b"" if the line is not a `+MSUB: <topic>,<n> byte,` header.
    """
    start, end, length = _msub_split(line, len(line))
    if length < 0:
        return b""
    return bytes(line[start:end])


def is_msub_message(line: bytes) -> bool:
    """Is `line` a `+MSUB: <topic>,<n> byte,` header (a message, possibly with an empty topic)?"""
    return _msub_split(line, len(line))[2] >= 0


def msub_cache_slot(line: bytes) -> int:
    """The slot of a cache-mode notice `+MSUB: <0-3>` (AT+MQTTMSGSET=1), else -1.

    In cache mode the module keeps an inbound message and only says where; AT+MQTTMSGGET prints
    it (vendor AT manual, MQTTMSGSET / MQTTMSGGET). It is never a message with an empty topic.
    """
    if not line.startswith(MSUB_HEADER):
        return -1
    slot = parse_uint(line, len(MSUB_HEADER), len(line))
    return slot if 0 <= slot <= 9 else -1


def is_final_code(line: bytes) -> bool:
    """Is `line` one of FINAL_CODES (`OK`, `ERROR`, `ERROR: 3`, `+CME ERROR: 3`, ...)?"""
    return _final_code(line, 0, len(line))[0] is not None


def _final_code(buf: bytes | bytearray, start: int, end: int) -> tuple[AtResult | None, int]:
    """(result, numeric code or -1) when buf[start:end] is a final result code, else None."""
    n = end - start
    for text, result, has_code in FINAL_CODES:
        t = len(text)
        if has_code:
            if n >= t and buf.startswith(text, start, end):
                return result, parse_uint(buf, start + t, end)
        elif n == t and buf.startswith(text, start, end):
            return result, -1
    return None, -1


def response_prefix(command: bytes) -> bytes:
    """The prefix the module's answer lines carry: `AT+CGATT?` -> `+CGATT`; b"" if none.

    Extended commands only (`AT+NAME...`); the name ends at the first byte that is not a
    letter, digit or underscore (`=`, `?`, end).
    """
    n = len(command)
    if n < 4 or command[0] not in b"Aa" or command[1] not in b"Tt" or command[2] != _PLUS:
        return b""
    end = 3
    while end < n:
        b = command[end]
        if not (0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A or is_digit(b) or b == 0x5F):
            break
        end += 1
    return b"" if end == 3 else bytes(command[2:end])


def payload_stall_ms(baud: int) -> int:
    """How long a payload may pause at this line rate before it is called truncated."""
    baud = max(baud, 1)
    chars_ms = (PAYLOAD_STALL_CHARS * UART_BITS_PER_CHAR * 1000 + baud - 1) // baud
    return max(PAYLOAD_STALL_FLOOR_MS, chars_ms)


TruncatedCallback = Callable[[bytes, int, int], None]
# on_urc(urc, line, payload): `urc` is the row of the URC table the line matched (URC_NONE for a
# final code that no FINAL row names), `payload` the bytes of a length-counted +MSUB message.
UrcCallback = Callable[[int, bytes, bytes], None]


class AtChannel:
    """Exactly one AT command in flight, its response assembled from the received bytes."""

    def __init__(
        self,
        write: Callable[[bytes], None],
        on_response: Callable[[AtResponse], None],
        on_urc: UrcCallback,
        urcs: Sequence[Urc] = URCS,
        *,
        on_truncated: TruncatedCallback | None = None,
        baud: int = DEFAULT_BAUD,
    ) -> None:
        self._write = write
        self._on_response = on_response
        self._on_urc = on_urc
        # on_truncated(header line, declared length, bytes received) for a payload that came
        # short; the payload itself is dropped (module docstring).
        self._on_truncated = on_truncated
        # The URC table: matched by prefix in order (its FINAL rows only name final codes that
        # are passed on after an OK); URC_ONLY rows are never a command's own answer line.
        self._urcs = tuple(urcs)
        self._urc_only = tuple(u.prefix for u in self._urcs if u.urc_only)
        self._msub_urc = next((i for i, u in enumerate(self._urcs) if u.kind == UrcKind.MSUB),
                              URC_NONE)
        self._baud = max(baud, 1)
        self.stall_ms = payload_stall_ms(self._baud)

        # the command in flight
        self._active = False
        self._command = b""
        self._prefix = b""
        self._deadline = 0
        self._prompt = _Prompt.NONE
        self._final_urc = False  # the command in flight reports its outcome as a final URC
        self._final_urc_awaited = False  # ... it answered OK: the next final code is that
        self._response = AtResponse()

        # the receiver
        self._now = 0  # the now_ms of the feed() or check_timeout() running
        self._rx = _Rx.LINE
        self._line = bytearray(LINE_CAPACITY)
        self._line_len = 0
        self._header_len = 0  # the header line of the payload being read, in _line[:n]
        self._data = bytearray(DATA_CAPACITY)
        self._data_len = 0  # bytes kept in _data (at most DATA_CAPACITY)
        self._data_left = 0  # bytes still to read in DATA
        self._data_declared = 0  # the length the header announced
        self._data_read = 0  # bytes read as payload so far (kept or not)
        self._data_started_at = 0
        self._data_last_at = 0
        self._data_budget_ms = 0
        self._sink = _Sink.NONE
        self._hex_possible = False  # AT+MQTTMODE=1 sent, AT+MQTTMODE=0 not answered OK since
        self._hex_candidate = False  # MSUB_END: the n payload bytes were all hex digits
        self._hex_payload = False  # the payload kept is 2n hex digits: deliver it decoded
        self._pending = -1  # a payload appended to its header in _line, delivered at line end

        # counters
        self.lines_dropped = 0  # lines longer than LINE_CAPACITY
        self.stray_lines = 0  # no command in flight, not a URC (e.g. a late OK)
        self.urcs = 0  # URCs delivered
        self.data_dropped = 0  # length-counted items read and discarded
        self.payloads_truncated = 0  # length-counted items that came short (dropped)
        self.msub_resplits = 0  # a `byte,` inside a topic first taken for the header's end
        self.info_lines_dropped = 0  # info lines beyond MAX_INFO_LINES
        self.commands_refused = 0  # send()/send_data() refused

    # -- state -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A command is in flight (including between its PROMPT and its final code)."""
        return self._active

    @property
    def deadline(self) -> int | None:
        """Deadline (32-bit ms) of the command in flight; None when idle."""
        return self._deadline if self._active else None

    @property
    def receive_deadline(self) -> int | None:
        """When check_timeout() must look at the payload being read (stall, overrun, end)."""
        rx = self._rx
        if rx == _Rx.MSUB_END:
            return ms_add(self._data_last_at, self.stall_ms)
        if rx in (_Rx.DATA, _Rx.HEX_TAIL):
            return ms_earliest(ms_add(self._data_last_at, self.stall_ms),
                               ms_add(self._data_started_at, self._data_budget_ms))
        return None

    @property
    def hex_payloads_possible(self) -> bool:
        """The module may send +MSUB payloads in hex form (AT+MQTTMODE=1 went out)."""
        return self._hex_possible

    # -- transmit ----------------------------------------------------------------------------

    def send(
        self, command: bytes, now_ms: int, timeout_ms: int, *, expect_prompt: bool = False,
        final_urc: bool = False,
    ) -> None:
        """Write `command` + CR and wait for its final code until now_ms + timeout_ms.

        final_urc: the command reports its outcome after its OK as a bare final code
        (AT+MCONNECT: OK, then `CONNACK OK` or `ERROR`): the first final code that arrives
        with no command in flight after that OK goes to on_urc instead of being stray.
        """
        if self._active:
            # Precondition broken by the caller: keep the command in flight intact.
            self.commands_refused += 1
            return
        command = bytes(command)
        response = self._response
        response.result = AtResult.OK
        response.cme_error = -1
        response.lines = []
        response.data = b""
        response.command = command
        response.truncated = False
        self._final_urc_awaited = False
        if _NUL in command or _CR in command or _LF in command:
            # A CR/LF would end the command early and start a second one chosen by whoever
            # built this string (a NUL would cut it short in the C twin's string handling);
            # refuse it whole, and report it the way the module reports a bad command.
            self.commands_refused += 1
            response.result = AtResult.ERROR
            self._on_response(response)
            return
        if command.upper().startswith(HEX_MODE_ON):
            self._hex_possible = True  # the module may switch as soon as it reads this
        # State first, then write: should the write raise, the deadline still ends the wait.
        self._active = True
        self._command = command
        self._prefix = response_prefix(command)
        self._deadline = ms_add(now_ms, _clamp_timeout(timeout_ms))
        self._prompt = _Prompt.AWAITED if expect_prompt else _Prompt.NONE
        self._final_urc = final_urc
        self._write(command + b"\r")

    def send_data(self, data: bytes, now_ms: int, timeout_ms: int) -> None:
        """After PROMPT: write the raw body (no CR) and wait again for the final code."""
        if not self._active or self._prompt != _Prompt.GIVEN:
            # Raw bytes outside a prompt would be parsed by the module as AT commands.
            self.commands_refused += 1
            return
        self._prompt = _Prompt.NONE
        self._deadline = ms_add(now_ms, _clamp_timeout(timeout_ms))
        self._write(bytes(data))

    # -- time --------------------------------------------------------------------------------

    def check_timeout(self, now_ms: int) -> None:
        """Close a stalled or overrun payload, then report TIMEOUT once if the command in
        flight has reached its deadline (bytes a truncated payload swallowed come first: they
        may hold the command's final code)."""
        self._now = now_ms
        rx = self._rx
        if rx == _Rx.MSUB_END:
            if ms_diff(now_ms, self._data_last_at) >= self.stall_ms:
                self._deliver_msub(self._data, 0, self._data_len)  # nothing followed it
                self._end_payload()
        elif rx in (_Rx.DATA, _Rx.HEX_TAIL):
            stalled = ms_diff(now_ms, self._data_last_at) >= self.stall_ms
            overrun = ms_diff(now_ms, self._data_started_at) >= self._data_budget_ms
            if stalled or overrun:
                self._truncate()
        if self._active and ms_reached(now_ms, self._deadline):
            self._complete(AtResult.TIMEOUT, -1)

    def reset(self) -> None:
        """Forget the command in flight and any partial line or data (no callback).

        The module restarted (or is about to): it is back in text mode, too.
        """
        self._active = False
        self._command = b""
        self._prefix = b""
        self._prompt = _Prompt.NONE
        self._final_urc = False
        self._final_urc_awaited = False
        self._hex_possible = False
        self._line_len = 0
        self._end_payload()

    # -- receive -----------------------------------------------------------------------------

    def feed(self, data: bytes, now_ms: int) -> None:
        """Process received bytes; callbacks fire synchronously, in arrival order.

        now_ms stamps the bytes of a length-counted payload, so check_timeout() can tell a
        payload that stalls or overruns.
        """
        self._now = now_ms
        i = 0
        end = len(data)
        while i < end:
            rx = self._rx
            if rx == _Rx.DATA:
                # C: memcpy of the run; in Python a slice keeps big payloads cheap.
                take = min(self._data_left, end - i)
                self._keep(data, i, take)
                self._data_left -= take
                self._data_last_at = now_ms
                i += take
                if self._data_left == 0:
                    self._data_complete()
                continue
            b = data[i]
            if rx == _Rx.HEX_TAIL:
                if hex_value(b) < 0:
                    self._truncate()  # fewer than 2n hex digits: digits were lost
                    continue  # this byte starts the next line
                self._keep(data, i, 1)
                self._data_last_at = now_ms
                i += 1
                if self._data_read == 2 * self._data_declared:
                    self._hex_payload = True
                    self._rx = _Rx.MSUB_END
                continue
            if rx == _Rx.MSUB_END:
                self._after_msub_payload(b)
                continue  # this byte is looked at again in the state just chosen
            if rx == _Rx.SKIP_LF:
                # The CR LF after `+HTTPREAD: n` ends the header, it is not the body.
                self._rx = _Rx.DATA
                if b == _LF:
                    i += 1
                continue
            if rx == _Rx.PROMPT_SPACE:
                self._rx = _Rx.LINE
                if b == _SP:
                    i += 1
                continue
            i += 1
            if b in (_CR, _LF):
                if rx == _Rx.SKIP_LINE:
                    self._rx = _Rx.LINE
                else:
                    self._end_line(b)
                continue
            if rx == _Rx.SKIP_LINE:
                continue
            # rx == LINE
            if (b == _GT and self._prompt == _Prompt.AWAITED
                    and self._content_start(self._line_len) == self._line_len):
                self._line_len = 0  # only noise before it
                self._give_prompt()
                self._rx = _Rx.PROMPT_SPACE
                continue
            if self._line_len == LINE_CAPACITY:
                if self._pending >= 0:
                    self._deliver_pending()  # the message was whole; the rest is too long
                self.lines_dropped += 1
                self._line_len = 0
                self._rx = _Rx.SKIP_LINE
                continue
            self._line[self._line_len] = b
            self._line_len += 1
            if b == _COMMA:
                self._check_msub_header()

    def _content_start(self, n: int) -> int:
        """Index of the first byte of _line[:n] that is not leading noise."""
        start = 0
        while start < n and _is_noise(self._line[start]):
            start += 1
        return start

    def _end_line(self, terminator: int) -> None:
        n = self._line_len
        self._line_len = 0
        if self._pending >= 0:
            # The payload held after its header was a whole message after all: deliver it; what
            # followed it on the line is a line of its own (C: memmove to the front).
            rest_start = self._header_len + self._pending
            self._deliver_pending()
            self._line[0:n - rest_start] = self._line[rest_start:n]
            n -= rest_start
        if n == 0:
            return  # the CR LF pairs around every module line
        self._digest(n)
        if self._rx == _Rx.DATA and terminator == _CR:
            self._rx = _Rx.SKIP_LF

    def _digest(self, n: int) -> None:
        """Decide what the complete line self._line[:n] is. The order is the module docstring's."""
        line = self._line
        s = self._content_start(n)
        own = False
        if self._active:
            command = self._command
            # 1. echo
            if n - s == len(command) and line.startswith(command, s, n):
                return
            # 2. final result code
            result, code = _final_code(line, s, n)
            if result is not None:
                self._complete(result, code)
                return
            # 3. prompt
            if self._prompt == _Prompt.AWAITED:
                for text in PROMPT_LINES:
                    if n - s == len(text) and line.startswith(text, s, n):
                        self._give_prompt()
                        return
            # 4. the command's own answer line
            own = self._is_own_line(s, n)
            if own:
                self._add_info_line(s, n)
        elif _final_code(line, s, n)[0] is not None:
            # 2'. a final code with no command in flight
            if self._final_urc_awaited:
                self._final_urc_awaited = False
                self.urcs += 1
                self._on_urc(self._match_urc(s, n, UrcKind.FINAL), bytes(line[s:n]), b"")
            else:
                self.stray_lines += 1
            return
        if not own:
            # 5. URC
            urc = self._match_urc(s, n)
            if urc != URC_NONE:
                self.urcs += 1
                self._on_urc(urc, bytes(line[s:n]), b"")
            # 6. info line (as received) or stray
            elif self._active:
                self._add_info_line(0, n)
            else:
                self.stray_lines += 1
        # length-counted data after the line, whatever the line was
        if n - s > len(HTTPREAD_HEADER) and line.startswith(HTTPREAD_HEADER, s, n):
            length = parse_uint(line, s + len(HTTPREAD_HEADER), n)
            if length > 0:
                if s:
                    line[0:n - s] = line[s:n]  # keep the header at the front (C: memmove)
                self._start_data(n - s, length, _Sink.RESPONSE if own else _Sink.DISCARD)

    def _is_own_line(self, s: int, n: int) -> bool:
        prefix = self._prefix
        p = len(prefix)
        line = self._line
        if p == 0 or n - s <= p or not line.startswith(prefix, s, n):
            return False
        after = s + p
        if not (line[after] == _COLON
                or (line[after] == _SP and n > after + 1 and line[after + 1] == _COLON)):
            return False
        return not any(line.startswith(urc, s, n) for urc in self._urc_only)

    def _match_urc(self, s: int, n: int, kind: UrcKind | None = None) -> int:
        """The first row of the URC table that _line[s:n] starts with: of the FINAL rows when
        `kind` is FINAL, else of the others. URC_NONE when none."""
        line = self._line
        for index, row in enumerate(self._urcs):
            if (row.prefix and (row.kind == UrcKind.FINAL) == (kind == UrcKind.FINAL)
                    and line.startswith(row.prefix, s, n)):
                return index
        return URC_NONE

    def _add_info_line(self, s: int, n: int) -> None:
        lines = self._response.lines
        if len(lines) < MAX_INFO_LINES:
            lines.append(bytes(self._line[s:n]))
        else:
            self.info_lines_dropped += 1

    # -- length-counted payloads -------------------------------------------------------------

    def _check_msub_header(self) -> None:
        """On a `,`: is the line so far a `+MSUB: <topic>,<n> byte,` header?"""
        n = self._line_len
        s = self._content_start(n)
        if s:
            if not self._line.startswith(MSUB_HEADER, s, n):
                return
            self._line[0:n - s] = self._line[s:n]  # drop the boot noise before it (C: memmove)
            n -= s
            self._line_len = n
        _, _, length = _msub_split(self._line, n)
        if length < 0:
            return
        if self._pending >= 0:
            # The payload taken after an earlier `byte,` was part of this longer topic.
            self._pending = -1
            self.msub_resplits += 1
        self._line_len = 0
        # The header stays in self._line[:n] until the payload is complete.
        self._start_data(n, length, _Sink.URC)

    def _start_data(self, header_len: int, length: int, sink: _Sink) -> None:
        if length > DATA_CAPACITY or sink == _Sink.DISCARD:
            self.data_dropped += 1
            sink = _Sink.DISCARD
        self._sink = sink
        self._header_len = header_len
        self._data_len = 0
        self._data_read = 0
        self._data_left = length
        self._data_declared = length
        self._hex_candidate = False
        self._hex_payload = False
        self._data_started_at = self._now
        self._data_last_at = self._now
        chars = 2 * length if sink == _Sink.URC and self._hex_possible else length
        line_ms = (2 * chars * UART_BITS_PER_CHAR * 1000 + self._baud - 1) // self._baud
        self._data_budget_ms = min(line_ms + PAYLOAD_OVERRUN_SLACK_MS + self.stall_ms,
                                   MAX_TIMEOUT_MS)
        self._rx = _Rx.DATA
        if length == 0:  # `+MSUB: "/t",0 byte,`: nothing to read, but the line end decides
            self._data_complete()

    def _keep(self, data: bytes, start: int, count: int) -> None:
        """Count `count` payload bytes and keep what fits in the data buffer."""
        room = min(count, DATA_CAPACITY - self._data_len)
        if room > 0:
            self._data[self._data_len:self._data_len + room] = data[start:start + room]
            self._data_len += room
        self._data_read += count

    def _data_complete(self) -> None:
        sink = self._sink
        if sink == _Sink.URC:
            n = self._data_len
            self._hex_candidate = (self._hex_possible and n > 0 and 2 * n <= DATA_CAPACITY
                                   and all(hex_value(self._data[i]) >= 0 for i in range(n)))
            self._rx = _Rx.MSUB_END
            return
        if sink == _Sink.RESPONSE:
            self._response.data = bytes(self._data[:self._data_len])
        self._end_payload()

    def _after_msub_payload(self, b: int) -> None:
        """MSUB_END: the byte after a +MSUB payload decides what the payload was."""
        if self._hex_candidate and hex_value(b) >= 0:
            self._hex_candidate = False
            self._rx = _Rx.HEX_TAIL  # n hex digits and more coming: the 2n-digit hex form
            return
        if b in (_CR, _LF):
            self._deliver_msub(self._data, 0, self._data_len)  # the usual case
            self._end_payload()
            return
        # Not a line end: the `byte,` may have been inside the topic. Go on with the line, the
        # payload appended to the header (C: memcpy); _end_line or a later header decides.
        header_len = self._header_len
        size = self._data_len
        self._sink = _Sink.NONE
        self._rx = _Rx.LINE
        if header_len + size > LINE_CAPACITY:
            self._deliver_msub(self._data, 0, size)  # too long to be part of any header
            self._end_payload()
            return
        self._line[header_len:header_len + size] = self._data[:size]
        self._line_len = header_len + size
        self._pending = size
        self._data_len = 0  # the data buffer is free; _hex_payload still says how to decode

    def _deliver_pending(self) -> None:
        start = self._header_len
        end = start + self._pending
        self._pending = -1
        self._deliver_msub(self._line, start, end)
        self._hex_payload = False

    def _deliver_msub(self, buf: bytearray, start: int, end: int) -> None:
        """on_urc(header, payload) for the payload in buf[start:end] (decoded if hex)."""
        payload = bytes(buf[start:end])
        if self._hex_payload:
            payload = bytes(hex_value(payload[i]) << 4 | hex_value(payload[i + 1])
                            for i in range(0, len(payload) - 1, 2))
        self.urcs += 1
        self._on_urc(self._msub_urc, bytes(self._line[:self._header_len]), payload)

    def _end_payload(self) -> None:
        """Back to assembling lines; the data buffer is free again."""
        self._rx = _Rx.LINE
        self._sink = _Sink.NONE
        self._data_len = 0
        self._data_left = 0
        self._data_read = 0
        self._hex_candidate = False
        self._hex_payload = False
        self._pending = -1

    def _truncate(self) -> None:
        """The payload came short: drop it, report it, and feed what it swallowed again."""
        kept = self._data_len
        cut = 0
        while cut < kept and self._data[cut] not in (_CR, _LF):
            cut += 1
        header = bytes(self._line[:self._header_len])
        declared, received = self._data_declared, self._data_read
        swallowed = bytes(self._data[cut:kept])  # C: memmove to the front, fed from there
        if self._sink == _Sink.RESPONSE:
            self._response.truncated = True
        self.payloads_truncated += 1
        self._line_len = 0
        self._end_payload()
        if self._on_truncated is not None:
            self._on_truncated(header, declared, received)
        if swallowed:
            self.feed(swallowed, self._now)

    # -- completion --------------------------------------------------------------------------

    def _give_prompt(self) -> None:
        self._prompt = _Prompt.GIVEN
        self._response.result = AtResult.PROMPT
        self._on_response(self._response)

    def _complete(self, result: AtResult, cme_error: int) -> None:
        # Idle first: the controller may send the next command as soon as it learns of this.
        self._active = False
        self._prompt = _Prompt.NONE
        ok = result == AtResult.OK
        self._final_urc_awaited = ok and self._final_urc
        if ok and self._command.upper().startswith(HEX_MODE_OFF):
            self._hex_possible = False
        if self._sink == _Sink.RESPONSE:
            # Timed out in the middle of the body: keep reading it, but it belongs to no one.
            self._sink = _Sink.DISCARD
            self.data_dropped += 1
        response = self._response
        response.result = result
        response.cme_error = cme_error
        self._on_response(response)


def _clamp_timeout(timeout_ms: int) -> int:
    return min(max(timeout_ms, 0), MAX_TIMEOUT_MS)
