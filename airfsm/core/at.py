"""AT channel: one command in flight over the Air72x UART. C twin: `port/c/core/at.c`.

It is written so a C port can follow it line for line (model: Zephyr `subsys/modem/modem_chat.c`,
which takes its buffers from the caller too). The caller owns every buffer and hands them over
when it makes the channel: a line buffer (`line_buf`, LINE_CAPACITY), a data buffer for
length-counted payloads (`data_buf`, DATA_CAPACITY) and the arena that holds a response's info
lines and body (`info_arena`, INFO_ARENA); the channel keeps lengths beside them and never
allocates another. Nothing here blocks, sleeps, spawns a thread or raises on received bytes;
deadlines are wrap-safe 32-bit milliseconds.

Received bytes go through a small receive state machine. In LINE it does not step byte by byte:
it finds the next line end (C: memchr) and copies the run of bytes before it into the line
buffer in one slice; only the bytes that can decide something without a line end are looked at
one by one (the first byte of a line, a `,` on a line that starts with `+MSUB:`, every byte
while a `>` prompt is awaited). Length-counted data is copied as runs too. A complete line is
compared only with the final codes and URC rows its first byte can start.

Receive states (`_Rx`)
----------------------
LINE          assemble a line; CR or LF ends it; empty lines are skipped.
SKIP_LINE     the line overflowed LINE_CAPACITY: discard bytes up to the next CR/LF.
SKIP_LF       a `+HTTPREAD: <n>` line ended at CR: swallow one LF, then read the data. The
              wait for that LF is part of the payload (same stall and overrun rule): a CR
              with nothing after it for the stall window is a truncated payload.
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
  1. echo       a line equal to the command is its echo: dropped (echo on or off both work),
                passed to on_ignored (a log of the line, both directions).
                Once an echo has come, the module is known to echo, and until the echo of
                the command in flight comes, steps 2-4 and 6 do not apply (the line is
                digested as with no command in flight): a final code before the echo is the
                previous command's (a duplicated `OK`, or a late one), never this one's
                answer. `ATE0` answered OK, reset(), or a command that timed out without its
                echo make the channel take answers without an echo again.
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
  2'. final     a final code is a late answer of a command that timed out (counted stray,
                passed to on_ignored) -
                except when the last command was sent with final_urc and answered OK: then
                the first final code after it is that command's outcome, reported as a URC
                (AT+MCONNECT answers OK, then `CONNACK OK` or, refused, a bare `ERROR`).
With or without a command in flight:
  5. URC        a line starting with a prefix of the URC table (`airfsm.core.table.URCS`, the
                one table the controller reads too): on_urc(row, line, b""), without touching
                the response being assembled (URCs do arrive between a command and its OK).
  6. the rest   with a command in flight: an info line of its response (at most
                MAX_INFO_LINES kept); with none: a stray line, counted and passed to
                on_ignored.
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
the controller may read it after feed() returns. Its info lines and its data are (offset,
length) spans of the info arena; `lines` and `data` copy them out for whoever wants objects.

A deadline is enforced only by check_timeout(): a final code fed before check_timeout() sees
the deadline still completes the command normally. The caller calls check_timeout() by
`deadline` (the command's) and `receive_deadline` (the payload being read: its stall window,
its overrun budget, or the wait for the byte after it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import IntEnum

from airfsm.core.codes import AtResult, UrcKind
from airfsm.core.settings import DATA_CAPACITY, INFO_ARENA, LINE_CAPACITY, MAX_INFO_LINES
from airfsm.core.table import HEX_MODE, TEXT_MODE, URC_NONE, URCS, Urc
from airfsm.core.textparse import MAX_UINT_DIGITS, hex_value, is_digit, parse_uint
from airfsm.core.timebase import ms_add, ms_diff, ms_earliest, ms_reached

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
_PLUS = 0x2B
_TILDE = 0x7E
_CASE = 0x20  # ASCII letters: lower case = upper case | 0x20

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
NOT_FINAL = -1  # final_code(): the line is not a final result code
FinalIndex = dict[int, tuple[tuple[int, bytes, int, bool], ...]]


def _finals_by_first_byte() -> FinalIndex:
    """FINAL_CODES by the first byte of their text, in their order: (index, text, length,
    has_code). A line is compared with the few codes that can match it (C: the five are
    compared in turn). Python only (no C twin)."""
    index: FinalIndex = {}
    for i, (text, _result, has_code) in enumerate(FINAL_CODES):
        index[text[0]] = (*index.get(text[0], ()), (i, text, len(text), has_code))
    return index


_FINALS_BY_FIRST = _finals_by_first_byte()

# Whole-line prompts. The `>` prompt is not here: it is taken at its first byte, because the
# module sends `> ` and then waits, with no line end (see the module docstring).
PROMPT_LINES: tuple[bytes, ...] = (b"DOWNLOAD",)
DATA_PROMPT = 0x3E  # `>`: the prompt taken at its first byte

MSUB_HEADER = b"+MSUB:"
_MSUB_HEADER_LEN = len(MSUB_HEADER)
MSUB_LENGTH_UNIT = b"byte,"
HTTPREAD_HEADER = b"+HTTPREAD:"
_HTTPREAD_HEADER_LEN = len(HTTPREAD_HEADER)
# The payload form of +MSUB follows the module's AT+MQTTMODE, which the channel sees go by
# (the table's commands: the controller sends those steps).
HEX_MODE_ON = HEX_MODE.command.encode("ascii")
HEX_MODE_OFF = TEXT_MODE.command.encode("ascii")
ECHO_OFF = b"ATE0"  # the command that switches the module's echo off (V.25ter)
_HEX_DIGITS = b"0123456789ABCDEFabcdef"


class _Rx(IntEnum):
    """The receive states (module docstring). Private to the channel: C `static` enums."""

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
    RESPONSE = 1  # the response's data (the +HTTPREAD body)
    URC = 2  # on_urc(MSUB row, header, payload) (the +MSUB payload)
    DISCARD = 3  # counted, read and thrown away to keep the stream in sync


class _Prompt(IntEnum):
    NONE = 0
    AWAITED = 1  # sent with expect_prompt, prompt not seen yet
    GIVEN = 2  # PROMPT reported, waiting for send_data()


# The members as module constants, for the receiver: looking a member up on its Enum class costs
# ~150 ns in CPython (more than the rest of a short line's digest); a module constant, a few.
# C: the enum constants themselves.
_RX_LINE, _RX_SKIP_LINE, _RX_SKIP_LF, _RX_DATA, _RX_HEX_TAIL, _RX_MSUB_END, _RX_PROMPT_SPACE = _Rx
_SINK_NONE, _SINK_RESPONSE, _SINK_URC, _SINK_DISCARD = _Sink
_PROMPT_NONE, _PROMPT_AWAITED, _PROMPT_GIVEN = _Prompt
_OK = AtResult.OK
_ERROR = AtResult.ERROR
_PROMPT = AtResult.PROMPT
_TIMEOUT = AtResult.TIMEOUT


class AtResponse:
    """The answer to one command. One object per channel, reused (C: a struct).

    `cme_error` is the number of `+CME ERROR: n`, `+CMS ERROR: n` or `ERROR: n` (-1: none).
    Info line i is `arena[line_start[i]:line_start[i] + line_length[i]]` for i < line_count,
    the +HTTPREAD body `arena[data_start:data_start + data_length]`. `truncated` is set when
    the command's length-counted data came short (the data is then dropped: data_length 0).
    `command` is the command as the caller passed it: a view of `command_buf[:command_len]`,
    the caller's buffer, valid until the caller changes that buffer.
    """

    __slots__ = ("result", "cme_error", "command_buf", "command_len", "truncated", "arena",
                 "arena_used", "line_count", "line_start", "line_length", "data_start",
                 "data_length")

    def __init__(self, arena: bytearray) -> None:
        """C: part of at_init()."""
        self.result: AtResult = AtResult.OK
        self.cme_error: int = -1
        self.command_buf: bytes | bytearray = b""
        self.command_len = 0
        self.truncated: bool = False
        self.arena = arena
        self.arena_used = 0
        self.line_count = 0
        self.line_start = [0] * MAX_INFO_LINES
        self.line_length = [0] * MAX_INFO_LINES
        self.data_start = 0
        self.data_length = 0

    def clear(self, buf: bytes | bytearray, length: int | None = None) -> None:
        """Reset for the command buf[:length] (all of buf by default). C: at_response_clear()."""
        self.result = _OK
        self.cme_error = -1
        self.command_buf = buf
        self.command_len = len(buf) if length is None else length
        self.truncated = False
        self.arena_used = 0
        self.line_count = 0
        self.data_start = 0
        self.data_length = 0

    def find_line(self, prefix: bytes) -> int:
        """The index of the first info line that starts with `prefix`; -1 if none.

        C: at_response_find()."""
        arena = self.arena
        for i in range(self.line_count):
            start = self.line_start[i]
            if arena.startswith(prefix, start, start + self.line_length[i]):
                return i
        return -1

    @property
    def command(self) -> memoryview:
        """The command (a view, made when asked: the response keeps the buffer and a length,
        as the C struct does). C: the command and command_len fields."""
        return memoryview(self.command_buf)[:self.command_len]

    def line_end(self, index: int) -> int:
        """Where info line `index` ends in the arena. C: at_response_line_end()."""
        return self.line_start[index] + self.line_length[index]

    def line(self, index: int) -> bytes:
        """A copy of info line `index` (b"" for -1 or past the end). C: at_response_line()."""
        if not 0 <= index < self.line_count:
            return b""
        return bytes(self.arena[self.line_start[index]:self.line_end(index)])

    @property
    def lines(self) -> list[bytes]:
        """Copies of the info lines (for tests and logs; the tick reads the spans).

        Python only (no C twin)."""
        return [self.line(i) for i in range(self.line_count)]

    @property
    def data(self) -> bytes:
        """A copy of the +HTTPREAD body. Python only (no C twin)."""
        return bytes(self.arena[self.data_start:self.data_start + self.data_length])

    def __repr__(self) -> str:
        """Python only (no C twin)."""
        return (
            f"AtResponse(result={self.result.name}, cme_error={self.cme_error}, "
            f"lines={self.lines!r}, data={self.data!r}, command={bytes(self.command)!r}, "
            f"truncated={self.truncated})"
        )


def _is_noise(b: int) -> bool:
    """A byte no module line starts with: control bytes and 8-bit bytes (boot line noise).

    C: at_is_noise()."""
    return b < _SP or b > _TILDE


def _line_end(data: bytes | bytearray, start: int, end: int) -> int:
    """The first CR or LF in data[start:end], or `end`. C: two memchr()s, the second bounded
    by the first."""
    cr = data.find(_CR, start, end)
    if cr < 0:
        cr = end
    lf = data.find(_LF, start, cr)
    return lf if lf >= 0 else cr


def _msub_split(buf: bytes | bytearray, n: int) -> tuple[int, int, int]:
    """Parse a `+MSUB:` header in buf[:n] ending in `byte,`: (topic_start, topic_end, length).

    The length is the digits just before `byte,` (the last comma-separated field), so a topic
    may itself contain commas. A quoted topic must close right before that comma. length is -1
    when buf[:n] is not such a header. C: at_msub_split() (fills two out-parameters).
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

    b"" if the line is not a `+MSUB: <topic>,<n> byte,` header. C: at_msub_topic().
    """
    start, end, length = _msub_split(line, len(line))
    if length < 0:
        return b""
    return bytes(line[start:end])


def is_msub_message(line: bytes) -> bool:
    """Is `line` a `+MSUB: <topic>,<n> byte,` header (a message, possibly with an empty topic)?

    C: at_is_msub_message()."""
    return _msub_split(line, len(line))[2] >= 0


def msub_cache_slot(line: bytes) -> int:
    """The slot of a cache-mode notice `+MSUB: <0-3>` (AT+MQTTMSGSET=1), else -1.

    In cache mode the module keeps an inbound message and only says where; AT+MQTTMSGGET prints
    it (vendor AT manual, MQTTMSGSET / MQTTMSGGET). It is never a message with an empty topic.
    C: at_msub_cache_slot().
    """
    if not line.startswith(MSUB_HEADER):
        return -1
    slot = parse_uint(line, len(MSUB_HEADER), len(line))
    return slot if 0 <= slot <= 9 else -1


def final_code(buf: bytes | bytearray, start: int, end: int) -> int:
    """The index in FINAL_CODES of the final result code buf[start:end] is; NOT_FINAL if none.

    C: at_final_code()."""
    if start >= end:
        return NOT_FINAL
    n = end - start
    for index, text, t, has_code in _FINALS_BY_FIRST.get(buf[start], ()):
        if (n >= t if has_code else n == t) and buf.startswith(text, start, end):
            return index
    return NOT_FINAL


def final_code_number(buf: bytes | bytearray, start: int, end: int, index: int) -> int:
    """The number after the final code FINAL_CODES[index] in buf[start:end] (-1: none).

    C: at_final_code_number()."""
    text, _result, has_code = FINAL_CODES[index]
    return parse_uint(buf, start + len(text), end) if has_code else -1


def is_final_code(line: bytes) -> bool:
    """Is `line` one of FINAL_CODES (`OK`, `ERROR`, `ERROR: 3`, `+CME ERROR: 3`, ...)?

    Python only (no C twin)."""
    return final_code(line, 0, len(line)) != NOT_FINAL


def response_prefix_end(command: bytes | bytearray | memoryview, length: int) -> int:
    """Where the prefix of the answer lines ends in `command[:length]`: the prefix is
    command[2:end] (`AT+CGATT?` -> `+CGATT`); 0 when the command has none.

    Extended commands only (`AT+NAME...`); the name ends at the first byte that is not a
    letter, digit or underscore (`=`, `?`, end). C: at_response_prefix_end().
    """
    if (length < 4 or command[0] | _CASE != 0x61 or command[1] | _CASE != 0x74
            or command[2] != _PLUS):
        return 0
    end = 3
    while end < length:
        b = command[end]
        if not (0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A or is_digit(b) or b == 0x5F):
            break
        end += 1
    return 0 if end == 3 else end


def response_prefix(command: bytes) -> bytes:
    """The prefix the module's answer lines carry: `AT+CGATT?` -> `+CGATT`; b"" if none.

    Python only (no C twin)."""
    end = response_prefix_end(command, len(command))
    return bytes(command[2:end]) if end else b""


def _starts_with_nocase(buf: bytes | bytearray | memoryview, length: int, text: bytes) -> bool:
    """buf[:length] starts with `text`, letters compared without case. C: a short loop."""
    if length < len(text):
        return False
    for i, t in enumerate(text):
        b = buf[i]
        if b != t and not (0x41 <= t <= 0x5A and b == t | _CASE):
            return False
    return True


def payload_stall_ms(baud: int) -> int:
    """How long a payload may pause at this line rate before it is called truncated.

    C: at_payload_stall_ms()."""
    baud = max(baud, 1)
    chars_ms = (PAYLOAD_STALL_CHARS * UART_BITS_PER_CHAR * 1000 + baud - 1) // baud
    return max(PAYLOAD_STALL_FLOOR_MS, chars_ms)


Buffer = bytes | bytearray | memoryview
# A URC table's rows by the first byte of their prefix, in table order: (row, prefix, FINAL).
UrcIndex = dict[int, tuple[tuple[int, bytes, bool], ...]]
_URC_INDEXES: dict[int, tuple[Sequence[Urc], UrcIndex]] = {}


def _by_first_byte(urcs: tuple[Urc, ...]) -> UrcIndex:
    """The rows of `urcs` by the first byte of their prefix (C: the table sorted by it, or the
    plain loop): a line is compared with the few rows that can match it. Made once per table
    (kept beside it, so its id stays its own) and shared by every channel of that table."""
    cached = _URC_INDEXES.get(id(urcs))
    if cached is not None and cached[0] is urcs:
        return cached[1]
    index: UrcIndex = {}
    for i, row in enumerate(urcs):
        if row.prefix:  # an empty prefix would match every line
            first = row.prefix[0]
            index[first] = (*index.get(first, ()), (i, row.prefix, row.kind == UrcKind.FINAL))
    _URC_INDEXES[id(urcs)] = (urcs, index)
    return index
TruncatedCallback = Callable[[bytes, int, int], None]
# on_ignored(line): a line that means nothing (the echo, a stray line); valid during the call.
IgnoredCallback = Callable[[memoryview], None]
# on_urc(urc, line, payload): `urc` is the row of the URC table the line matched (URC_NONE for a
# final code that no FINAL row names), `payload` the bytes of a length-counted +MSUB message.
UrcCallback = Callable[[int, bytes, bytes], None]


class AtChannel:
    """Exactly one AT command in flight, its response assembled from the received bytes.

    C: `at_t`, set up by at_init() with the caller's buffers.
    """

    __slots__ = (
        "_write", "_on_response", "_on_urc", "_on_truncated", "_on_ignored", "_urcs",
        "_urc_only",
        "_urcs_by_first", "_msub_urc",
        "_baud", "stall_ms",
        "_active", "_command", "_command_len", "_prefix_end", "_deadline", "_prompt", "_final_urc",
        "_final_urc_awaited", "_echo_seen", "_echo_on", "_response",
        "_now", "_rx", "_line", "_line_cap", "_line_len", "_msub_possible", "_header_len",
        "_data", "_data_cap", "_data_len", "_data_left", "_data_declared", "_data_read",
        "_data_started_at", "_data_last_at", "_data_budget_ms", "_sink", "_hex_possible",
        "_hex_candidate", "_hex_payload", "_pending",
        "lines_dropped", "stray_lines", "urcs", "data_dropped", "payloads_truncated",
        "msub_resplits", "info_lines_dropped", "commands_refused",
    )

    def __init__(
        self,
        write: Callable[[memoryview], None],
        on_response: Callable[[AtResponse], None],
        on_urc: UrcCallback,
        urcs: Sequence[Urc] = URCS,
        *,
        on_truncated: TruncatedCallback | None = None,
        on_ignored: IgnoredCallback | None = None,
        baud: int = DEFAULT_BAUD,
        line_buf: bytearray | None = None,
        data_buf: bytearray | None = None,
        info_arena: bytearray | None = None,
    ) -> None:
        """The buffers are the caller's (a library user or a test may leave them to the channel:
        they are then allocated here, once). C: at_init()."""
        self._write = write
        self._on_response = on_response
        self._on_urc = on_urc
        # on_truncated(header line, declared length, bytes received) for a payload that came
        # short; the payload itself is dropped (module docstring).
        self._on_truncated = on_truncated
        # on_ignored(line) for a line that means nothing to anyone: the echo of the command in
        # flight, a late final code, a stray line (steps 1, 2' and 6; the last as received,
        # noise included). A view of the line buffer, valid during the call only. For a log of
        # every line received, as modem logs show both directions.
        self._on_ignored = on_ignored
        # The URC table: matched by prefix in order (its FINAL rows only name final codes that
        # are passed on after an OK); urc_only rows are never a command's own answer line.
        self._urcs = urcs if isinstance(urcs, tuple) else tuple(urcs)
        self._urc_only = tuple(u.prefix for u in self._urcs if u.urc_only)
        self._urcs_by_first = _by_first_byte(self._urcs)
        self._msub_urc = next((i for i, u in enumerate(self._urcs) if u.kind == UrcKind.MSUB),
                              URC_NONE)
        self._baud = max(baud, 1)
        self.stall_ms = payload_stall_ms(self._baud)

        # the command in flight
        self._active = False
        self._command: bytes | bytearray = b""  # the caller's command buffer ...
        self._command_len = 0  # ... and the command's length in it
        self._prefix_end = 0  # its answer lines' prefix (`+CGATT`) is _command[2:_prefix_end]
        self._deadline = 0
        self._prompt = _PROMPT_NONE
        self._final_urc = False  # the command in flight reports its outcome as a final URC
        self._final_urc_awaited = False  # ... it answered OK: the next final code is that
        self._echo_seen = False  # the echo of the command in flight was dropped
        # The module echoes: an echo came, and since then no ATE0, no reset, and no command
        # timed out without its echo. Until the echo, a final code is not the command's.
        self._echo_on = False
        self._response = AtResponse(info_arena if info_arena is not None
                                    else bytearray(INFO_ARENA))

        # the receiver
        self._now = 0  # the now_ms of the feed() or check_timeout() running
        self._rx = _RX_LINE
        self._line = line_buf if line_buf is not None else bytearray(LINE_CAPACITY)
        self._line_cap = len(self._line)
        self._line_len = 0
        self._msub_possible = True  # no comma has shown this line is not a +MSUB: header
        self._header_len = 0  # the header line of the payload being read, in _line[:n]
        self._data = data_buf if data_buf is not None else bytearray(DATA_CAPACITY)
        self._data_cap = len(self._data)
        self._data_len = 0  # bytes kept in _data (at most its capacity)
        self._data_left = 0  # bytes still to read in DATA
        self._data_declared = 0  # the length the header announced
        self._data_read = 0  # bytes read as payload so far (kept or not)
        self._data_started_at = 0
        self._data_last_at = 0
        self._data_budget_ms = 0
        self._sink = _SINK_NONE
        self._hex_possible = False  # AT+MQTTMODE=1 sent, AT+MQTTMODE=0 not answered OK since
        self._hex_candidate = False  # MSUB_END: the n payload bytes were all hex digits
        self._hex_payload = False  # the payload kept is 2n hex digits: deliver it decoded
        self._pending = -1  # a payload appended to its header in _line, delivered at line end

        # counters
        self.lines_dropped = 0  # lines longer than the line buffer
        self.stray_lines = 0  # no command in flight, not a URC (e.g. a late OK)
        self.urcs = 0  # URCs delivered
        self.data_dropped = 0  # length-counted items read and discarded
        self.payloads_truncated = 0  # length-counted items that came short (dropped)
        self.msub_resplits = 0  # a `byte,` inside a topic first taken for the header's end
        self.info_lines_dropped = 0  # info lines beyond MAX_INFO_LINES or the arena
        self.commands_refused = 0  # send()/send_data() refused

    # -- state -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A command is in flight (including between its PROMPT and its final code).

        C: at_busy()."""
        return self._active

    @property
    def deadline(self) -> int | None:
        """Deadline (32-bit ms) of the command in flight; None when idle. C: at_deadline()."""
        return self._deadline if self._active else None

    @property
    def receive_deadline(self) -> int | None:
        """When check_timeout() must look at the payload being read (stall, overrun, end).

        C: at_receive_deadline()."""
        rx = self._rx
        if rx == _RX_MSUB_END:
            return ms_add(self._data_last_at, self.stall_ms)
        if rx in (_RX_SKIP_LF, _RX_DATA, _RX_HEX_TAIL):  # SKIP_LF: the wait is the payload's
            return ms_earliest(ms_add(self._data_last_at, self.stall_ms),
                               ms_add(self._data_started_at, self._data_budget_ms))
        return None

    @property
    def hex_payloads_possible(self) -> bool:
        """The module may send +MSUB payloads in hex form (AT+MQTTMODE=1 went out).

        C: at_hex_payloads_possible()."""
        return self._hex_possible

    # -- transmit ----------------------------------------------------------------------------

    def send(
        self, buf: bytearray, length: int, now_ms: int, timeout_ms: int, *,
        expect_prompt: bool = False, final_urc: bool = False,
    ) -> None:
        """Write the command buf[:length] and its CR, and wait for its final code until
        now_ms + timeout_ms. C: at_send().

        The caller leaves one byte of room after the command: the CR goes to buf[length], so
        command and CR go out in one write. buf[:length] must not change while the command is
        in flight (it is what the echo is compared with).
        final_urc: the command reports its outcome after its OK as a bare final code
        (AT+MCONNECT: OK, then `CONNACK OK` or `ERROR`): the first final code that arrives
        with no command in flight after that OK goes to on_urc instead of being stray.
        """
        if self._active:
            # Precondition broken by the caller: keep the command in flight intact.
            self.commands_refused += 1
            return
        response = self._response
        response.clear(buf, min(length, len(buf)))
        self._final_urc_awaited = False
        if (length >= len(buf) or buf.find(_NUL, 0, length) >= 0 or buf.find(_CR, 0, length) >= 0
                or buf.find(_LF, 0, length) >= 0):
            # A CR/LF would end the command early and start a second one chosen by whoever
            # built this string (a NUL would cut it short in the C twin's string handling);
            # refuse it whole, and report it the way the module reports a bad command.
            self.commands_refused += 1
            response.result = _ERROR
            self._on_response(response)
            return
        if _starts_with_nocase(buf, length, HEX_MODE_ON):
            self._hex_possible = True  # the module may switch as soon as it reads this
        # State first, then write: should the write fail, the deadline still ends the wait.
        self._active = True
        self._command = buf
        self._command_len = length
        self._prefix_end = response_prefix_end(buf, length)
        self._deadline = ms_add(now_ms, _clamp_timeout(timeout_ms))
        self._prompt = _PROMPT_AWAITED if expect_prompt else _PROMPT_NONE
        self._final_urc = final_urc
        self._echo_seen = False
        buf[length] = _CR
        self._write(memoryview(buf)[:length + 1])

    def send_data(self, buf: Buffer, length: int, now_ms: int, timeout_ms: int) -> None:
        """After PROMPT: write the raw body buf[:length] (no CR) and wait again for the final
        code. C: at_send_data()."""
        if not self._active or self._prompt != _PROMPT_GIVEN:
            # Raw bytes outside a prompt would be parsed by the module as AT commands.
            self.commands_refused += 1
            return
        self._prompt = _PROMPT_NONE
        self._deadline = ms_add(now_ms, _clamp_timeout(timeout_ms))
        self._write(memoryview(buf)[:length])

    # -- time --------------------------------------------------------------------------------

    def check_timeout(self, now_ms: int) -> None:
        """Close a stalled or overrun payload, then report TIMEOUT once if the command in
        flight has reached its deadline (bytes a truncated payload swallowed come first: they
        may hold the command's final code). C: at_check_timeout()."""
        self._now = now_ms
        rx = self._rx
        if rx == _RX_MSUB_END:
            if ms_diff(now_ms, self._data_last_at) >= self.stall_ms:
                self._deliver_msub(self._data, 0, self._data_len)  # nothing followed it
                self._end_payload()
        elif rx in (_RX_SKIP_LF, _RX_DATA, _RX_HEX_TAIL):
            stalled = ms_diff(now_ms, self._data_last_at) >= self.stall_ms
            overrun = ms_diff(now_ms, self._data_started_at) >= self._data_budget_ms
            if stalled or overrun:
                self._truncate()
        if self._active and ms_reached(now_ms, self._deadline):
            self._complete(_TIMEOUT, -1)

    def reset(self) -> None:
        """Forget the command in flight and any partial line or data (no callback).

        The module restarted (or is about to): it is back in text mode, too. C: at_reset().
        """
        self._active = False
        self._command = b""
        self._command_len = 0
        self._prefix_end = 0
        self._prompt = _PROMPT_NONE
        self._final_urc = False
        self._final_urc_awaited = False
        self._hex_possible = False
        self._echo_on = False
        self._echo_seen = False
        self._line_len = 0
        self._end_payload()

    # -- receive -----------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray, now_ms: int, length: int | None = None) -> None:
        """Process the received bytes data[:length] (all of `data` by default); callbacks fire
        synchronously, in arrival order. C: at_feed().

        now_ms stamps the bytes of a length-counted payload, so check_timeout() can tell a
        payload that stalls or overruns.
        """
        self._now = now_ms
        view = memoryview(data)
        i = 0
        end = len(data) if length is None else length
        while i < end:
            rx = self._rx
            if rx == _RX_LINE:
                i = self._take_line(data, view, i, end)
                continue
            if rx == _RX_DATA:
                # C: memcpy of the run.
                take = min(self._data_left, end - i)
                self._keep(view, i, take)
                self._data_left -= take
                self._data_last_at = now_ms
                i += take
                if self._data_left == 0:
                    self._data_complete()
                continue
            if rx == _RX_SKIP_LINE:
                stop = _line_end(data, i, end)
                if stop < end:  # the line end itself starts the next line
                    self._rx = _RX_LINE
                    stop += 1
                i = stop
                continue
            b = data[i]
            if rx == _RX_HEX_TAIL:
                if hex_value(b) < 0:
                    self._truncate()  # fewer than 2n hex digits: digits were lost
                    continue  # this byte starts the next line
                self._keep(view, i, 1)
                self._data_last_at = now_ms
                i += 1
                if self._data_read == 2 * self._data_declared:
                    self._hex_payload = True
                    self._rx = _RX_MSUB_END
                continue
            if rx == _RX_MSUB_END:
                self._after_msub_payload(b)
                continue  # this byte is looked at again in the state just chosen
            if rx == _RX_SKIP_LF:
                # The CR LF after `+HTTPREAD: n` ends the header, it is not the body.
                self._rx = _RX_DATA
                if b == _LF:
                    i += 1
                continue
            # rx == PROMPT_SPACE
            self._rx = _RX_LINE
            if b == _SP:
                i += 1

    def _take_line(self, data: bytes | bytearray, view: memoryview, i: int, end: int) -> int:
        """LINE: the run of data[i:end] up to the next line end goes into the line buffer in
        one copy; the line end completes the line. Returns where the next state starts.

        At the start of a line its first byte is looked at: the CR and LF between lines are
        passed over (an empty line says nothing), and only a line that starts with `+MSUB:`
        (or with noise, or whose start is not all here yet) may be a `+MSUB:` header.
        Two things stop a run early. While a `>` prompt is awaited every byte is looked at, as
        the prompt comes without a line end. On a line that may be a `+MSUB:` header each `,`
        ends a run, since the header (and the payload right after it) may end there.
        C: at_take_line().
        """
        line_len = self._line_len
        if line_len == 0:
            b = data[i]
            while b in (_CR, _LF):  # the CR LF pairs around every module line
                i += 1
                if i == end:
                    return i
                b = data[i]
            if b == _PLUS:
                # C: memcmp when the six bytes are here
                self._msub_possible = end - i < _MSUB_HEADER_LEN or data.startswith(
                    MSUB_HEADER, i, end)
            else:
                self._msub_possible = not _SP <= b <= _TILDE  # _is_noise(), inline
        if self._prompt == _PROMPT_AWAITED:
            b = data[i]
            if b == DATA_PROMPT and self._content_start(line_len) == line_len:
                self._line_len = 0  # only noise before it
                self._give_prompt()
                self._rx = _RX_PROMPT_SPACE
                return i + 1
            stop = i if b in (_CR, _LF) else i + 1  # this byte alone
            ends_line = stop == i
        else:
            # _line_end(), inline: the hot path of the receiver
            stop = data.find(_CR, i, end)
            if stop < 0:
                stop = end
            lf = data.find(_LF, i, stop)
            if lf >= 0:
                stop = lf
            ends_line = stop < end
        at_comma = False
        if self._msub_possible:
            comma = data.find(_COMMA, i, stop)
            if comma >= 0:
                stop = comma + 1
                ends_line = False
                at_comma = True
        count = stop - i
        room = self._line_cap - line_len
        if count > room:
            # C: memcpy of what fits; the byte after it overflows the line.
            self._line[line_len:self._line_cap] = view[i:i + room]
            self._line_len = self._line_cap
            self._overflow()
            return i + room + 1
        if count:
            self._line[line_len:line_len + count] = view[i:stop]
            line_len += count
            self._line_len = line_len
        if at_comma:
            self._check_msub_header()
            return stop
        if ends_line:
            terminator = data[stop]
            self._end_line(terminator)
            stop += 1
            if (terminator == _CR and stop < end and data[stop] == _LF
                    and self._rx == _RX_LINE):
                stop += 1  # the LF of a CR LF would end an empty line: nothing to digest
        return stop

    def _overflow(self) -> None:
        """A line longer than the line buffer: dropped, and skipped up to its end.

        C: at_overflow()."""
        if self._pending >= 0:
            self._deliver_pending()  # the message was whole; the rest is too long
        self.lines_dropped += 1
        self._line_len = 0
        self._rx = _RX_SKIP_LINE

    def _content_start(self, n: int) -> int:
        """Index of the first byte of _line[:n] that is not leading noise. C: at_content_start()."""
        line = self._line
        start = 0
        while start < n and not _SP <= line[start] <= _TILDE:  # _is_noise(), inline
            start += 1
        return start

    def _end_line(self, terminator: int) -> None:
        """C: at_end_line()."""
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
        if self._rx == _RX_DATA and terminator == _CR:
            self._rx = _RX_SKIP_LF

    def _digest(self, n: int) -> None:
        """Decide what the complete line self._line[:n] is. The order is the module docstring's.

        The line's first byte (after noise) picks the few final codes and URC rows that can
        match it; a line no final code or URC starts with is not compared with any.
        C: at_digest()."""
        line = self._line
        s = 0 if _SP <= line[0] <= _TILDE else self._content_start(n)  # no noise: the usual
        first = line[s] if s < n else -1
        own = False
        answering = False
        if self._active:
            # 1. echo
            length = self._command_len
            if n - s == length and line.startswith(self._command[:length], s, n):
                self._echo_seen = True
                self._echo_on = True
                self._ignore(s, n)
                return
            # A module that echoes sends the echo before anything of the answer: until it
            # comes, what arrives is not this command's (a duplicated or late final code of
            # the one before): digested as with no command in flight.
            answering = self._echo_seen or not self._echo_on
        # 2. final result code
        final = final_code(line, s, n) if first in _FINALS_BY_FIRST else NOT_FINAL
        if final != NOT_FINAL:
            if answering:
                self._complete(FINAL_CODES[final][1], final_code_number(line, s, n, final))
            elif self._final_urc_awaited:
                # 2'. no command in flight: the outcome of the one sent with final_urc
                self._final_urc_awaited = False
                self.urcs += 1
                self._on_urc(self._match_urc(s, n, True), bytes(line[s:n]), b"")
            else:
                self.stray_lines += 1  # 2'. a late answer of a command that timed out
                self._ignore(s, n)
            return
        if answering:
            # 3. prompt
            if self._prompt == _PROMPT_AWAITED:
                for text in PROMPT_LINES:
                    if n - s == len(text) and line.startswith(text, s, n):
                        self._give_prompt()
                        return
            # 4. the command's own answer line
            own = self._is_own_line(s, n)
            if own:
                self._add_info_line(s, n)
        if not own:
            # 5. URC
            urc = self._match_urc(s, n, False) if first in self._urcs_by_first else URC_NONE
            if urc != URC_NONE:
                self.urcs += 1
                self._on_urc(urc, bytes(line[s:n]), b"")
            # 6. info line (as received) or stray
            elif answering:
                self._add_info_line(0, n)
            else:
                self.stray_lines += 1
                self._ignore(0, n)  # as received, like an info line
        # length-counted data after the line, whatever the line was
        if n - s > _HTTPREAD_HEADER_LEN and line.startswith(HTTPREAD_HEADER, s, n):
            length = parse_uint(line, s + _HTTPREAD_HEADER_LEN, n)
            if length > 0:
                if s:
                    line[0:n - s] = line[s:n]  # keep the header at the front (C: memmove)
                self._start_data(n - s, length, _SINK_RESPONSE if own else _SINK_DISCARD)

    def _ignore(self, s: int, n: int) -> None:
        """The line self._line[s:n] means nothing: tell on_ignored, if anyone listens.

        C: at_ignore()."""
        if self._on_ignored is not None:
            self._on_ignored(memoryview(self._line)[s:n])

    def _is_own_line(self, s: int, n: int) -> bool:
        """C: at_is_own_line()."""
        end = self._prefix_end
        p = end - 2
        line = self._line
        # The prefix starts with `+`: most lines are told apart before the command is sliced.
        if (end == 0 or n - s <= p or line[s] != _PLUS
                or not line.startswith(self._command[2:end], s, n)):
            return False
        after = s + p
        if not (line[after] == _COLON
                or (line[after] == _SP and n > after + 1 and line[after + 1] == _COLON)):
            return False
        return not line.startswith(self._urc_only, s, n)  # C: a loop over the urc_only rows

    def _match_urc(self, s: int, n: int, final: bool) -> int:
        """The first row of the URC table that _line[s:n] starts with: of the FINAL rows when
        `final`, else of the others. URC_NONE when none (an empty prefix never matches).
        C: at_match_urc()."""
        line = self._line
        if s >= n:
            return URC_NONE
        for index, prefix, row_final in self._urcs_by_first.get(line[s], ()):
            if row_final == final and line.startswith(prefix, s, n):
                return index
        return URC_NONE

    def _add_info_line(self, s: int, n: int) -> None:
        """Copy _line[s:n] into the info arena as the response's next line (C: memcpy)."""
        response = self._response
        at = response.arena_used
        count = n - s
        if response.line_count == MAX_INFO_LINES or at + count > len(response.arena):
            self.info_lines_dropped += 1
            return
        response.arena[at:at + count] = memoryview(self._line)[s:n]
        response.line_start[response.line_count] = at
        response.line_length[response.line_count] = count
        response.line_count += 1
        response.arena_used = at + count

    # -- length-counted payloads -------------------------------------------------------------

    def _check_msub_header(self) -> None:
        """On a `,`: is the line so far a `+MSUB: <topic>,<n> byte,` header?

        C: at_check_msub_header()."""
        n = self._line_len
        s = self._content_start(n)
        if not self._line.startswith(MSUB_HEADER, s, n):
            # Something other than noise comes first, and it is not `+MSUB:`: no later comma
            # of this line can end a header (the payload of a pending one included: its header
            # made it a +MSUB: line).
            self._msub_possible = False
            return
        if s:
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
        self._start_data(n, length, _SINK_URC)

    def _start_data(self, header_len: int, length: int, sink: _Sink) -> None:
        """C: at_start_data()."""
        if length > self._data_cap or sink == _SINK_DISCARD:
            self.data_dropped += 1
            sink = _SINK_DISCARD
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
        chars = 2 * length if sink == _SINK_URC and self._hex_possible else length
        line_ms = (2 * chars * UART_BITS_PER_CHAR * 1000 + self._baud - 1) // self._baud
        self._data_budget_ms = min(line_ms + PAYLOAD_OVERRUN_SLACK_MS + self.stall_ms,
                                   MAX_TIMEOUT_MS)
        self._rx = _RX_DATA
        if length == 0:  # `+MSUB: "/t",0 byte,`: nothing to read, but the line end decides
            self._data_complete()

    def _keep(self, view: memoryview, start: int, count: int) -> None:
        """Count `count` payload bytes and keep what fits in the data buffer (C: memcpy)."""
        room = min(count, self._data_cap - self._data_len)
        if room > 0:
            self._data[self._data_len:self._data_len + room] = view[start:start + room]
            self._data_len += room
        self._data_read += count

    def _data_complete(self) -> None:
        """C: at_data_complete()."""
        sink = self._sink
        if sink == _SINK_URC:
            n = self._data_len
            # Every byte a hex digit (C: a loop of textparse_hex(); here one C-level call).
            self._hex_candidate = (self._hex_possible and n > 0 and 2 * n <= self._data_cap
                                   and not self._data[:n].translate(None, _HEX_DIGITS))
            self._rx = _RX_MSUB_END
            return
        if sink == _SINK_RESPONSE:
            self._keep_response_data()
        self._end_payload()

    def _keep_response_data(self) -> None:
        """The +HTTPREAD body becomes the response's data: copied after its info lines in the
        arena (C: memcpy), where a URC payload read before the final code cannot touch it."""
        response = self._response
        at = response.arena_used
        n = self._data_len
        if at + n > len(response.arena):
            self.data_dropped += 1
            return
        response.arena[at:at + n] = memoryview(self._data)[:n]
        response.data_start = at
        response.data_length = n
        response.arena_used = at + n

    def _after_msub_payload(self, b: int) -> None:
        """MSUB_END: the byte after a +MSUB payload decides what the payload was.

        C: at_after_msub_payload()."""
        if self._hex_candidate and hex_value(b) >= 0:
            self._hex_candidate = False
            self._rx = _RX_HEX_TAIL  # n hex digits and more coming: the 2n-digit hex form
            return
        if b in (_CR, _LF):
            self._deliver_msub(self._data, 0, self._data_len)  # the usual case
            self._end_payload()
            return
        # Not a line end: the `byte,` may have been inside the topic. Go on with the line, the
        # payload appended to the header (C: memcpy); _end_line or a later header decides.
        header_len = self._header_len
        size = self._data_len
        self._sink = _SINK_NONE
        self._rx = _RX_LINE
        if header_len + size > self._line_cap:
            self._deliver_msub(self._data, 0, size)  # too long to be part of any header
            self._end_payload()
            return
        self._line[header_len:header_len + size] = memoryview(self._data)[:size]
        self._line_len = header_len + size
        self._msub_possible = True  # a +MSUB: line, whose later commas may end its header
        self._pending = size
        self._data_len = 0  # the data buffer is free; _hex_payload still says how to decode

    def _deliver_pending(self) -> None:
        """C: at_deliver_pending()."""
        start = self._header_len
        end = start + self._pending
        self._pending = -1
        self._deliver_msub(self._line, start, end)
        self._hex_payload = False

    def _deliver_msub(self, buf: bytearray, start: int, end: int) -> None:
        """on_urc(MSUB row, header, payload) for the payload in buf[start:end] (decoded if
        hex: the digits were checked when they came; C: a loop of textparse_hex() pairs)."""
        payload = bytes(buf[start:end])
        if self._hex_payload:
            payload = bytes.fromhex(payload[:len(payload) & ~1].decode("ascii"))
        self.urcs += 1
        self._on_urc(self._msub_urc, bytes(self._line[:self._header_len]), payload)

    def _end_payload(self) -> None:
        """Back to assembling lines; the data buffer is free again. C: at_end_payload()."""
        self._rx = _RX_LINE
        self._sink = _SINK_NONE
        self._data_len = 0
        self._data_left = 0
        self._data_read = 0
        self._hex_candidate = False
        self._hex_payload = False
        self._pending = -1

    def _truncate(self) -> None:
        """The payload came short: drop it, report it, and feed what it swallowed again.

        C: at_truncate()."""
        kept = self._data_len
        cut = _line_end(self._data, 0, kept)
        header = bytes(self._line[:self._header_len])
        declared, received = self._data_declared, self._data_read
        swallowed = bytes(self._data[cut:kept])  # C: memmove to the front, fed from there
        if self._sink == _SINK_RESPONSE:
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
        """C: at_give_prompt()."""
        self._prompt = _PROMPT_GIVEN
        self._response.result = _PROMPT
        self._on_response(self._response)

    def _complete(self, result: AtResult, cme_error: int) -> None:
        # Idle first: the controller may send the next command as soon as it learns of this.
        """C: at_complete()."""
        self._active = False
        self._prompt = _PROMPT_NONE
        ok = result == _OK
        self._final_urc_awaited = ok and self._final_urc
        if ok and _starts_with_nocase(self._command, self._command_len, HEX_MODE_OFF):
            self._hex_possible = False
        if (ok and _starts_with_nocase(self._command, self._command_len, ECHO_OFF)
                or (result == _TIMEOUT and not self._echo_seen)):
            # Echo switched off, or no echo and no answer (the module may have stopped
            # echoing): take answers without an echo again, until an echo shows it back on.
            self._echo_on = False
        if self._sink == _SINK_RESPONSE:
            # Timed out in the middle of the body: keep reading it, but it belongs to no one.
            self._sink = _SINK_DISCARD
            self.data_dropped += 1
        response = self._response
        response.result = result
        response.cme_error = cme_error
        self._on_response(response)


def _clamp_timeout(timeout_ms: int) -> int:
    """C: at_clamp_timeout()."""
    return min(max(timeout_ms, 0), MAX_TIMEOUT_MS)
