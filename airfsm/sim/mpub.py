"""Reading an `AT+MPUB` line back, as the module does: the inverse of `airfsm.core.payload`.

The core only ever writes MPUB commands; reading them is the simulator's side (and the tests'),
so it lives here, with `re`.
"""

from __future__ import annotations

import re

_MPUB_RE = re.compile(rb'^AT\+MPUB="([^"]*)",(\d+),(\d+),"([^"]*)"\r?$')
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


def unescape_mpub(msg: bytes) -> bytes:
    """Inverse of `payload.escape_mpub` (any `\\HH` becomes that byte). ValueError on a broken
    escape."""
    out = bytearray()
    i = 0
    while i < len(msg):
        b = msg[i]
        if b != 0x5C:
            out.append(b)
            i += 1
            continue
        digits = msg[i + 1 : i + 3]
        if len(digits) != 2 or not all(d in _HEX_DIGITS for d in digits):
            raise ValueError(f"broken escape at offset {i} of the MPUB message")
        out.append(int(digits, 16))
        i += 3
    return bytes(out)


def decode_mpub_command(command: bytes, hex_mode: bool) -> tuple[str, int, int, bytes]:
    """Parse an `AT+MPUB=...` line (as `payload.encode_mpub_command` builds it; a trailing CR is
    allowed) into (topic, qos, retain, payload). ValueError when it is not one.
    """
    m = _MPUB_RE.match(command)
    if m is None:
        raise ValueError("not an AT+MPUB=\"<topic>\",<qos>,<retain>,\"<msg>\" command")
    topic = m.group(1).decode("latin-1")
    msg = m.group(4)
    payload = bytes.fromhex(msg.decode("ascii")) if hex_mode else unescape_mpub(msg)
    return topic, int(m.group(2)), int(m.group(3)), payload
