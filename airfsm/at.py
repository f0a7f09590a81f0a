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
DATA          read exactly n raw bytes (they may hold CR, LF, commas, quotes, "OK" ...).
PROMPT_SPACE  a `>` prompt was just taken: swallow the one space a module sends after it.

The digest (what a complete line is), decided in `_digest`, in this fixed order
-------------------------------------------------------------------------------
With a command in flight:
  1. echo       a line equal to the command is its echo: dropped (echo on or off both work).
  2. final      `OK`, `ERROR`, `+CME ERROR: n`, `+CMS ERROR: n` (FINAL_CODES) complete the
                response: the channel goes idle, then on_response(response) fires.
  3. prompt     `DOWNLOAD` (PROMPT_LINES) when the command was sent with expect_prompt:
                on_response(PROMPT); the command stays in flight for send_data().
  4. own line   a line `<prefix>:` or `<prefix> :` where <prefix> comes from the command
                (`AT+CGATT?` -> `+CGATT`) is an info line of the response, even though
                `+CGATT:` is also in the URC table. Exception: URC_ONLY_PREFIXES (`+HTTPACTION:`,
                `+MSUB:`) are never answers, only URCs, whatever command is in flight.
With or without a command in flight:
  5. URC        a line starting with a URC_PREFIXES entry: on_urc(line, b""), without touching
                the response being assembled (URCs do arrive between a command and its OK).
  6. the rest   with a command in flight: an info line of its response (at most
                MAX_INFO_LINES kept); with none: a stray line, only counted.
Then, whatever the line was: a `+HTTPREAD: <n>` line is followed by n raw bytes. They become
the response's `data` when the line was step 4 (an answer to AT+HTTPREAD); otherwise they are
read and discarded so the stream stays in sync (a late body after a timeout must not be parsed
as lines: it could hold `OK` or `CLOSED`).

Two decisions cannot wait for a line end, because the module does not send one:
  * `>` as the first byte of a line while a prompt is awaited is the prompt (step 3; modules
    send `> ` and then wait for the body).
  * `+MSUB: <topic>,<n> byte,<payload>`: the payload follows in the same line. When a `,`
    completes `byte,` on a `+MSUB:` line, the line so far is the header; the next n bytes are
    read raw and delivered as on_urc(header, payload). The header stays in the line buffer
    meanwhile (no copy in C). Decided by shape alone: it is always a URC (step 5).

Callbacks fire synchronously, in arrival order, after the channel state is updated, so the
channel is consistent even if a callback raises. Callbacks must not send (contract): they
record, and the controller acts after feed() returns. The one AtResponse object is reused (C: a
struct); it is reset by send() and not touched between a completion and the next send(), so
the controller may read it after feed() returns. Its `lines` and `data` are fresh objects per
command (C: arrays inside the struct).

A deadline is enforced only by check_timeout(): a final code fed before check_timeout() sees
the deadline still completes the command normally.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import IntEnum

from airfsm.timebase import ms_add, ms_reached

LINE_CAPACITY = 2048
DATA_CAPACITY = 4096
MAX_INFO_LINES = 8
# Deadlines are compared by the sign of a 32-bit difference: a longer timeout would wrap.
MAX_TIMEOUT_MS = 0x7FFFFFFF
# A length field of more digits is not a length (and would not fit a uint32_t in C).
MAX_LENGTH_DIGITS = 9

_CR = 0x0D
_LF = 0x0A
_NUL = 0x00
_SP = 0x20
_QUOTE = 0x22
_COMMA = 0x2C
_COLON = 0x3A
_GT = 0x3E
_PLUS = 0x2B
_DIGIT_0 = 0x30
_DIGIT_9 = 0x39


class AtResult(IntEnum):
    OK = 0
    ERROR = 1
    CME_ERROR = 2
    TIMEOUT = 3
    PROMPT = 4


# Unsolicited lines, matched as prefixes at the start of a line (PROTOCOL.md "URCs").
URC_PREFIXES: tuple[bytes, ...] = (
    # boot: any of these means the module (re)started
    b"RDY",
    b"+CFUN:",
    b"+CPIN:",
    b"SMS Ready",
    # registration, attach and bearer
    b"+CGATT:",
    b"+CGREG:",
    b"+CEREG:",
    b"+PDP DEACT",
    b"+CGEV:",
    b"+SAPBR 1: DEACT",
    # HTTP
    b"+HTTPACTION:",
    # TLS/TCP link and MQTT session
    b"CONNECT OK",
    b"CONNECT FAIL",
    b"ALREADY CONNECT",
    b"STATE:",
    b"CLOSED",
    b"CONNACK OK",
    b"SUBACK",
    b"UNSUBACK",
    b"PUBACK",
    b"+MSUB:",
)

# Lines that are never the answer of a command, so step 4 (own prefix) must not claim them:
# AT+HTTPACTION=1 answers OK and then reports +HTTPACTION as a URC; if that URC raced ahead of
# the OK it would otherwise vanish into the response while the controller waits for the URC.
URC_ONLY_PREFIXES: tuple[bytes, ...] = (b"+HTTPACTION:", b"+MSUB:")

# Final result codes: (text, result, followed by a numeric code). Exact lines when no code.
FINAL_CODES: tuple[tuple[bytes, AtResult, bool], ...] = (
    (b"OK", AtResult.OK, False),
    (b"ERROR", AtResult.ERROR, False),
    (b"+CME ERROR:", AtResult.CME_ERROR, True),
    (b"+CMS ERROR:", AtResult.CME_ERROR, True),
)

# Whole-line prompts. The `>` prompt is not here: it is taken at its first byte, because the
# module sends `> ` and then waits, with no line end (see the module docstring).
PROMPT_LINES: tuple[bytes, ...] = (b"DOWNLOAD",)

MSUB_HEADER = b"+MSUB:"
MSUB_LENGTH_UNIT = b"byte,"
HTTPREAD_HEADER = b"+HTTPREAD:"


class _Rx(IntEnum):
    LINE = 0
    SKIP_LINE = 1
    SKIP_LF = 2
    DATA = 3
    PROMPT_SPACE = 4


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
    """The answer to one command. One object per channel, reused (C: a struct)."""

    __slots__ = ("result", "cme_error", "lines", "data", "command")

    def __init__(self) -> None:
        self.result: AtResult = AtResult.OK
        self.cme_error: int = -1
        self.lines: list[bytes] = []
        self.data: bytes = b""
        self.command: bytes = b""

    def __repr__(self) -> str:
        return (
            f"AtResponse(result={self.result.name}, cme_error={self.cme_error}, "
            f"lines={self.lines!r}, data={self.data!r}, command={self.command!r})"
        )


def _is_digit(b: int) -> bool:
    return _DIGIT_0 <= b <= _DIGIT_9


def _parse_uint(buf: bytes | bytearray, start: int, end: int) -> int:
    """Decimal in buf[start:end], spaces allowed around it; -1 if not exactly that."""
    while start < end and buf[start] == _SP:
        start += 1
    while end > start and buf[end - 1] == _SP:
        end -= 1
    if start == end or end - start > MAX_LENGTH_DIGITS:
        return -1
    value = 0
    for i in range(start, end):
        b = buf[i]
        if not _is_digit(b):
            return -1
        value = value * 10 + (b - _DIGIT_0)
    return value


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
    while digits_start > head and _is_digit(buf[digits_start - 1]):
        digits_start -= 1
    ndigits = digits_end - digits_start
    if ndigits == 0 or ndigits > MAX_LENGTH_DIGITS:
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
    return topic_start, topic_end, _parse_uint(buf, digits_start, digits_end)


def msub_topic(line: bytes) -> bytes:
    """The topic of a `+MSUB:` header line (as passed to on_urc), without quotes.

    b"" if the line is not a `+MSUB: <topic>,<n> byte,` header.
    """
    start, end, length = _msub_split(line, len(line))
    if length < 0:
        return b""
    return bytes(line[start:end])


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
        if not (0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A or _is_digit(b) or b == 0x5F):
            break
        end += 1
    return b"" if end == 3 else bytes(command[2:end])


class AtChannel:
    """Exactly one AT command in flight, its response assembled from the received bytes."""

    def __init__(
        self,
        write: Callable[[bytes], None],
        on_response: Callable[[AtResponse], None],
        on_urc: Callable[[bytes, bytes], None],
        urc_prefixes: Sequence[bytes] = URC_PREFIXES,
    ) -> None:
        self._write = write
        self._on_response = on_response
        self._on_urc = on_urc
        # an empty prefix would match every line
        self._urc_prefixes: tuple[bytes, ...] = tuple(bytes(p) for p in urc_prefixes if p)

        # the command in flight
        self._active = False
        self._command = b""
        self._prefix = b""
        self._deadline = 0
        self._prompt = _Prompt.NONE
        self._response = AtResponse()

        # the receiver
        self._rx = _Rx.LINE
        self._line = bytearray(LINE_CAPACITY)
        self._line_len = 0
        self._data = bytearray(DATA_CAPACITY)
        self._data_len = 0
        self._data_left = 0
        self._sink = _Sink.NONE

        # counters
        self.lines_dropped = 0  # lines longer than LINE_CAPACITY
        self.stray_lines = 0  # no command in flight, not a URC (e.g. a late OK)
        self.urcs = 0  # URCs delivered
        self.data_dropped = 0  # length-counted items read and discarded
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

    # -- transmit ----------------------------------------------------------------------------

    def send(
        self, command: bytes, now_ms: int, timeout_ms: int, *, expect_prompt: bool = False
    ) -> None:
        """Write `command` + CR and wait for its final code until now_ms + timeout_ms."""
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
        if _NUL in command or _CR in command or _LF in command:
            # A CR/LF would end the command early and start a second one chosen by whoever
            # built this string (a NUL would cut it short in the C twin's string handling);
            # refuse it whole, and report it the way the module reports a bad command.
            self.commands_refused += 1
            response.result = AtResult.ERROR
            self._on_response(response)
            return
        # State first, then write: should the write raise, the deadline still ends the wait.
        self._active = True
        self._command = command
        self._prefix = response_prefix(command)
        self._deadline = ms_add(now_ms, _clamp_timeout(timeout_ms))
        self._prompt = _Prompt.AWAITED if expect_prompt else _Prompt.NONE
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
        """Report TIMEOUT once if the command in flight has reached its deadline."""
        if self._active and ms_reached(now_ms, self._deadline):
            self._complete(AtResult.TIMEOUT, -1)

    def reset(self) -> None:
        """Forget the command in flight and any partial line or data (no callback)."""
        self._active = False
        self._command = b""
        self._prefix = b""
        self._prompt = _Prompt.NONE
        self._rx = _Rx.LINE
        self._line_len = 0
        self._data_len = 0
        self._data_left = 0
        self._sink = _Sink.NONE

    # -- receive -----------------------------------------------------------------------------

    def feed(self, data: bytes, now_ms: int) -> None:
        """Process received bytes; callbacks fire synchronously, in arrival order.

        now_ms is part of the interface for symmetry with check_timeout(); the receiver does
        not need it (deadlines are enforced only by check_timeout()).
        """
        i = 0
        end = len(data)
        while i < end:
            rx = self._rx
            if rx == _Rx.DATA:
                # C: memcpy of the run; in Python a slice keeps big payloads cheap.
                take = min(self._data_left, end - i)
                if self._sink != _Sink.DISCARD:
                    self._data[self._data_len : self._data_len + take] = data[i : i + take]
                    self._data_len += take
                self._data_left -= take
                i += take
                if self._data_left == 0:
                    self._end_data()
                continue
            b = data[i]
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
            if b == _GT and self._line_len == 0 and self._prompt == _Prompt.AWAITED:
                self._give_prompt()
                self._rx = _Rx.PROMPT_SPACE
                continue
            if self._line_len == LINE_CAPACITY:
                self.lines_dropped += 1
                self._line_len = 0
                self._rx = _Rx.SKIP_LINE
                continue
            self._line[self._line_len] = b
            self._line_len += 1
            if b == _COMMA:
                self._check_msub_header()

    def _end_line(self, terminator: int) -> None:
        n = self._line_len
        self._line_len = 0
        if n == 0:
            return  # the CR LF pairs around every module line
        self._digest(n)
        if self._rx == _Rx.DATA and terminator == _CR:
            self._rx = _Rx.SKIP_LF

    def _digest(self, n: int) -> None:
        """Decide what the complete line self._line[:n] is. The order is the module docstring's."""
        line = self._line
        own = False
        if self._active:
            command = self._command
            # 1. echo
            if n == len(command) and line.startswith(command, 0, n):
                return
            # 2. final result code
            for text, result, has_code in FINAL_CODES:
                t = len(text)
                if has_code:
                    if n >= t and line.startswith(text, 0, n):
                        self._complete(result, _parse_uint(line, t, n))
                        return
                elif n == t and line.startswith(text, 0, n):
                    self._complete(result, -1)
                    return
            # 3. prompt
            if self._prompt == _Prompt.AWAITED:
                for text in PROMPT_LINES:
                    if n == len(text) and line.startswith(text, 0, n):
                        self._give_prompt()
                        return
            # 4. the command's own answer line
            own = self._is_own_line(n)
            if own:
                self._add_info_line(n)
        if not own:
            # 5. URC
            if self._is_urc(n):
                self.urcs += 1
                self._on_urc(bytes(line[:n]), b"")
            # 6. info line or stray
            elif self._active:
                self._add_info_line(n)
            else:
                self.stray_lines += 1
        # length-counted data after the line, whatever the line was
        if n > len(HTTPREAD_HEADER) and line.startswith(HTTPREAD_HEADER, 0, n):
            length = _parse_uint(line, len(HTTPREAD_HEADER), n)
            if length > 0:
                self._start_data(length, _Sink.RESPONSE if own else _Sink.DISCARD)

    def _is_own_line(self, n: int) -> bool:
        prefix = self._prefix
        p = len(prefix)
        if p == 0 or n <= p or not self._line.startswith(prefix, 0, n):
            return False
        line = self._line
        if not (line[p] == _COLON or (line[p] == _SP and n > p + 1 and line[p + 1] == _COLON)):
            return False
        return not any(line.startswith(urc, 0, n) for urc in URC_ONLY_PREFIXES)

    def _is_urc(self, n: int) -> bool:
        return any(self._line.startswith(prefix, 0, n) for prefix in self._urc_prefixes)

    def _add_info_line(self, n: int) -> None:
        lines = self._response.lines
        if len(lines) < MAX_INFO_LINES:
            lines.append(bytes(self._line[:n]))
        else:
            self.info_lines_dropped += 1

    def _check_msub_header(self) -> None:
        """On a `,`: is the line so far a `+MSUB: <topic>,<n> byte,` header?"""
        n = self._line_len
        _, _, length = _msub_split(self._line, n)
        if length < 0:
            return
        # The header stays in self._line[:n] until the payload is complete.
        if length == 0:
            self._line_len = 0
            self.urcs += 1
            self._on_urc(bytes(self._line[:n]), b"")
            return
        self._start_data(length, _Sink.URC)

    def _start_data(self, length: int, sink: _Sink) -> None:
        if length > DATA_CAPACITY or sink == _Sink.DISCARD:
            self.data_dropped += 1
            sink = _Sink.DISCARD
        self._sink = sink
        self._data_len = 0
        self._data_left = length
        self._rx = _Rx.DATA

    def _end_data(self) -> None:
        sink = self._sink
        header_len = self._line_len
        self._sink = _Sink.NONE
        self._rx = _Rx.LINE
        self._line_len = 0
        if sink == _Sink.RESPONSE:
            self._response.data = bytes(self._data[: self._data_len])
        elif sink == _Sink.URC:
            self.urcs += 1
            self._on_urc(bytes(self._line[:header_len]), bytes(self._data[: self._data_len]))

    # -- completion --------------------------------------------------------------------------

    def _give_prompt(self) -> None:
        self._prompt = _Prompt.GIVEN
        self._response.result = AtResult.PROMPT
        self._on_response(self._response)

    def _complete(self, result: AtResult, cme_error: int) -> None:
        # Idle first: the controller may send the next command as soon as it learns of this.
        self._active = False
        self._prompt = _Prompt.NONE
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
