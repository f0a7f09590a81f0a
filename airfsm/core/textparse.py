"""The one place the tick path reads numbers and fields out of module text. C twin: textparse.c.

Every answer the module gives is ASCII: `+CGATT: 1`, `+SAPBR: 1,1,"10.0.0.2"`,
`+MSUB: "/t",12 byte,`. These functions work on a buffer and explicit bounds, never allocate,
and report "not a number" as -1 rather than raising, so the C twin is the same loops over
`const uint8_t *`.
"""

from __future__ import annotations

# A field of more digits is not a count or a status (and would not fit a uint32_t in C).
MAX_UINT_DIGITS = 9

_SP = 0x20
_COLON = 0x3A
_COMMA = 0x2C
_DIGIT_0 = 0x30
_DIGIT_9 = 0x39


def is_digit(b: int) -> bool:
    """C: textparse_is_digit()."""
    return _DIGIT_0 <= b <= _DIGIT_9


def hex_value(b: int) -> int:
    """0-15 for an ASCII hex digit (either case), -1 for anything else. C: textparse_hex()."""
    if is_digit(b):
        return b - _DIGIT_0
    if 0x41 <= b <= 0x46:
        return b - 0x41 + 10
    if 0x61 <= b <= 0x66:
        return b - 0x61 + 10
    return -1


def parse_uint(buf: bytes | bytearray, start: int, end: int) -> int:
    """Decimal in buf[start:end], spaces allowed around it; -1 if not exactly that.

    C: textparse_uint().
    """
    while start < end and buf[start] == _SP:
        start += 1
    while end > start and buf[end - 1] == _SP:
        end -= 1
    if start == end or end - start > MAX_UINT_DIGITS:
        return -1
    value = 0
    for i in range(start, end):
        b = buf[i]
        if not is_digit(b):
            return -1
        value = value * 10 + (b - _DIGIT_0)
    return value


def field_span(line: bytes | bytearray, index: int, start: int = 0,
               end: int | None = None) -> tuple[int, int]:
    """Bounds of field `index` of `+NAME: a,b,c` in line[start:end] (after the first colon,
    split at commas), with the spaces around it trimmed; (0, 0) when the line has no such
    field. C: textparse_field()."""
    n = len(line) if end is None else end
    line_start = start
    while start < n and line[start] != _COLON:
        start += 1
    if start == n:
        start = line_start - 1  # no colon: the fields start at the beginning of the line
    start += 1
    for _ in range(index):
        while start < n and line[start] != _COMMA:
            start += 1
        if start == n:
            return 0, 0
        start += 1
    stop = start
    while stop < n and line[stop] != _COMMA:
        stop += 1
    while start < stop and line[start] == _SP:
        start += 1
    while stop > start and line[stop - 1] == _SP:
        stop -= 1
    return start, stop


def field_uint(line: bytes | bytearray | None, index: int, start: int = 0,
               end: int | None = None) -> int:
    """Field `index` of `+NAME: a,b,c` in line[start:end] as an unsigned number; -1 when
    absent or not a number. C: textparse_field_uint().
    """
    if line is None:
        return -1
    first, stop = field_span(line, index, start, end)
    return parse_uint(line, first, stop) if stop > first else -1


def put_uint(out: bytearray, at: int, value: int, limit: int) -> int:
    """Write `value` (>= 0) as decimal digits at out[at:], ending before `limit`; the index
    after the last digit, or -1 when the digits do not fit. C: textparse_put_uint()."""
    if value < 0:
        return -1
    digits = 1
    rest = value
    while rest >= 10:
        rest //= 10
        digits += 1
    end = at + digits
    if end > limit or end > len(out):
        return -1
    for i in range(end - 1, at - 1, -1):
        out[i] = _DIGIT_0 + value % 10
        value //= 10
    return end
