"""The one number/field reader of the tick path."""

from __future__ import annotations

import pytest

from airfsm.core.textparse import field_span, field_uint, hex_value, parse_uint, put_uint


@pytest.mark.parametrize(("text", "value"), [
    (b"0", 0), (b" 42 ", 42), (b"999999999", 999_999_999), (b"1000000000", -1), (b"", -1),
    (b"  ", -1), (b"-1", -1), (b"1 2", -1), (b"+5", -1), (b"\xd9\xa3", -1),
])
def test_parse_uint(text: bytes, value: int) -> None:
    assert parse_uint(text, 0, len(text)) == value


def test_parse_uint_respects_its_bounds() -> None:
    buf = b"x12y"
    assert parse_uint(buf, 1, 3) == 12
    assert parse_uint(buf, 0, 3) == -1


@pytest.mark.parametrize(("line", "index", "value"), [
    (b"+CGATT: 1", 0, 1), (b"+CGATT:0", 0, 0), (b"+MQTTSTATU :1", 0, 1),
    (b'+SAPBR: 1,1,"10.0.0.2"', 1, 1), (b"+HTTPACTION: 1,200,112", 1, 200),
    (b"+HTTPACTION:1,601,0", 2, 0), (b"+CSQ: 99,99", 1, 99), (b"+CSQ: 18", 1, -1),
    (b"+CGATT: ", 0, -1), (b"12,34", 1, 34), (None, 0, -1),
])
def test_field_uint(line: bytes | None, index: int, value: int) -> None:
    assert field_uint(line, index) == value


def test_field_span_trims_spaces_and_keeps_quotes() -> None:
    line = b'+SAPBR: 1, 1 , "10.0.0.2"'
    start, end = field_span(line, 2)
    assert line[start:end] == b'"10.0.0.2"'
    assert field_span(line, 3) == (0, 0)


def test_hex_value() -> None:
    assert [hex_value(b) for b in b"09afAFgG"] == [0, 9, 10, 15, 10, 15, -1, -1]


def test_put_uint_writes_the_digits_or_refuses_what_does_not_fit() -> None:
    out = bytearray(b"..........")
    assert put_uint(out, 2, 120000, 10) == 8 and out == b"..120000.."
    assert put_uint(out, 0, 0, 10) == 1 and out[:1] == b"0"
    assert put_uint(out, 5, 123456, 10) == -1  # 6 digits at 5 end at 11 > 10
    assert put_uint(out, 9, 7, 100) == 10 and out[9:] == b"7"  # the buffer bounds it too
    assert put_uint(out, 9, 42, 100) == -1
    assert put_uint(out, 0, -1, 10) == -1
    for value in (9, 10, 99, 100, 4294967295):
        buf = bytearray(12)
        end = put_uint(buf, 1, value, 12)
        assert buf[1:end] == str(value).encode()


def test_fields_are_read_within_the_bounds_of_a_line_in_a_bigger_buffer() -> None:
    buf = b'OK\x00+SAPBR: 1,1,"10.0.0.2"\x00+CSQ: 9,9'
    start = buf.index(b"+SAPBR")
    end = buf.index(b"\x00", start)
    assert field_uint(buf, 1, start, end) == 1
    s, e = field_span(buf, 2, start, end)
    assert buf[s:e] == b'"10.0.0.2"'
    assert field_span(buf, 3, start, end) == (0, 0)  # the next line's comma is out of bounds
    assert field_uint(buf, 0, end + 1) == 9
