"""Fault injection for the simulator: what can go wrong, and the one-line spec that asks for it.

Spec syntax: ``KIND[=VALUE][:MATCH][@COUNT]``

* ``MATCH`` is a command prefix, compared case-insensitively with the command line as received
  (``AT+CGMR``, ``AT+SAPBR=1,1``). Without it, a command fault hits the next command(s), whatever
  they are.
* ``COUNT`` is how many times the fault fires: a positive integer (default 1) or ``*`` (always).

See `FAULT_HELP` for the list of kinds; `parse_fault` turns a spec into a `Fault`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    # Command faults: they act on the answer to a command (optionally one matching MATCH).
    SILENCE = "silence"
    ERROR = "error"
    CME = "cme"
    GARBAGE = "garbage"
    SPLIT = "split"
    REBOOT = "reboot"
    CLOSED = "closed"
    DETACH = "detach"
    ME_DETACH = "me-detach"
    HTTP_ERROR = "http-error"
    LOSE = "lose"
    BROWNOUT = "brownout"
    DUP_FINAL = "dup-final"
    URC_INSIDE = "urc-inside"
    OVERLONG = "overlong"
    CGATT_DETACH = "cgatt-detach"
    # Network faults: they act on a protocol event, not on a command line.
    HTTP = "http"
    AUTH = "auth"
    PUBACK_LOST = "puback=lost"
    PUBACK_LATE = "puback=late"
    CONNACK_REFUSED = "connack=refused"
    LOSE_DOWNLINK = "lose-downlink"
    CACHE_NOTICE = "cache-notice"
    NOISY_RDY = "noisy-rdy"
    CONNECT_FAIL = "connect-fail"
    # Module properties: permanent for the simulator's life.
    OLD_FIRMWARE = "old-firmware"
    CGATT0 = "cgatt0"


COMMAND_KINDS = frozenset({
    FaultKind.SILENCE, FaultKind.ERROR, FaultKind.CME, FaultKind.GARBAGE, FaultKind.SPLIT,
    FaultKind.REBOOT, FaultKind.CLOSED, FaultKind.DETACH, FaultKind.ME_DETACH,
    FaultKind.HTTP_ERROR, FaultKind.LOSE, FaultKind.BROWNOUT, FaultKind.DUP_FINAL,
    FaultKind.URC_INSIDE, FaultKind.OVERLONG, FaultKind.CGATT_DETACH,
})
# Kinds that take the place of the command's answer (the others decorate it).
REPLACING_KINDS = frozenset({FaultKind.SILENCE, FaultKind.ERROR, FaultKind.CME, FaultKind.REBOOT,
                             FaultKind.HTTP_ERROR})
_VALUE_KINDS = frozenset({FaultKind.CME, FaultKind.HTTP, FaultKind.AUTH, FaultKind.CGATT0,
                          FaultKind.HTTP_ERROR, FaultKind.LOSE, FaultKind.BROWNOUT,
                          FaultKind.LOSE_DOWNLINK})
# Kinds whose =VALUE may be left out (split: the piece size, default 1..3 bytes at random).
_OPTIONAL_VALUE_KINDS = frozenset({FaultKind.SPLIT})
_PERMANENT_KINDS = frozenset({FaultKind.OLD_FIRMWARE, FaultKind.CGATT0})

FAULT_HELP = """\
Fault spec: KIND[=VALUE][:MATCH][@COUNT]   (repeat --fault for several)
  MATCH  command prefix, case-insensitive (AT+CGMR, AT+SAPBR=1,1); none = any command
  COUNT  times it fires: a number (default 1) or * (always)
Command faults (act on the answer to the matching command; the echo still comes back):
  silence            no answer at all                         silence:AT+CGATT?@3
  error              ERROR instead of the answer              error:AT+SAPBR=1,1
  cme=<n>            +CME ERROR: <n> instead                  cme=14:AT+CPIN?@2
  garbage            a line of random bytes before the answer garbage:AT+CSQ
  split[=<n>]        the answer written 1-3 bytes at a time   split:AT+HTTPREAD
                     (=n: n bytes at a time, so =1 splits it  split=1:AT+CGMR
                     at every boundary; no MATCH: ALL output, split
                     for good)
  reboot:MATCH       the module reboots instead of answering  reboot:AT+MCONNECT
  closed:MATCH       CLOSED (MQTT link dropped) after answer  closed:AT+MPUB
  detach:MATCH       network detach after the answer          detach:AT+HTTPACTION
  me-detach:MATCH    detach reported only as +CGEV: ME DETACH me-detach:AT+MPUB
  http-error=<n>     ERROR: <n> instead (how HTTP refuses)    http-error=3:AT+HTTPACTION=1
  lose=<n>:MATCH     n bytes of the answer's length-counted   lose=20:AT+HTTPREAD
                     data lost on the UART (header unchanged)
  brownout=<n>:MATCH the first n bytes of the answer, then    brownout=60:AT+HTTPREAD
                     the module reboots (RDY ...)
  dup-final          the answer's final code comes twice      dup-final:AT+CSQ
  urc-inside         a URC (+CEREG: 1) between the answer's   urc-inside:AT+CGATT?
                     lines and its final code
  overlong           a 4200-byte line of noise before the     overlong:AT+CGMR
                     answer (longer than any line buffer)
  cgatt-detach:MATCH detach reported only as +CGATT: 0        cgatt-detach:AT+MPUB
Network faults:
  http=<status>      next +HTTPACTION carries that status     http=601@1
  auth=<code>        the auth server answers with that code   auth=401@*
  puback=lost        the next QoS1 PUBACK never comes         puback=lost@1
  puback=late        the next PUBACK comes 5x late            puback=late@2
  connack=refused    MCONNECT answers OK, then a bare ERROR   connack=refused@1
                     (no CLOSED; the server drops the link)
  lose-downlink=<n>  the next +MSUB payload loses n bytes on  lose-downlink=5@3
                     the UART (its header still counts them)
  cache-notice       the next downlink is kept in the cache   cache-notice@2
                     and announced as +MSUB: <slot> only
  noisy-rdy          the next boot prints line noise before   noisy-rdy@2
                     RDY, with no line break (\xff\x00RDY)
  connect-fail       the next AT+SSLMIPSTART answers OK, then  connect-fail@1
                     CONNECT FAIL (the server cannot be
                     reached)
Module properties (no MATCH, no COUNT):
  old-firmware       AT+CGMR reports AirM2M_Air72xUy_V300_LTE_AT
  cgatt0=<ms>        +CGATT: 0 until <ms> after every boot    cgatt0=20000
Firmware behaviour (choose with --firmware): before V838 the module sends no MQTT PINGREQ and
says nothing when the server closes the session: with no packet from the device within 1.5x
its keepalive the server closes it silently (V409, the default, does this; V838 does not).
"""

_COUNT = re.compile(r"[1-9][0-9]*|\*")


@dataclass(frozen=True)
class Fault:
    """One injected fault. `count` None means it fires every time."""

    kind: FaultKind
    value: int = 0  # the CME code, HTTP status, auth code or cgatt0 delay
    match: str | None = None
    count: int | None = 1

    def matches(self, line: str) -> bool:
        """Does this fault apply to command `line`? (Any command when there is no MATCH.)"""
        return self.match is None or line.upper().startswith(self.match.upper())

    def __str__(self) -> str:
        text = self.kind.value
        if self.kind in _VALUE_KINDS or (self.kind in _OPTIONAL_VALUE_KINDS and self.value):
            text += f"={self.value}"
        if self.match is not None:
            text += f":{self.match}"
        global_split = self.kind is FaultKind.SPLIT and self.match is None
        if self.kind not in _PERMANENT_KINDS and not global_split:
            text += "@*" if self.count is None else f"@{self.count}"
        return text


def parse_fault(spec: str) -> Fault:
    """Parse ``KIND[=VALUE][:MATCH][@COUNT]``; ValueError with a one-line reason if malformed."""
    text = spec.strip()
    if not text:
        raise ValueError("empty fault spec (expected KIND[=VALUE][:MATCH][@COUNT])")

    # COUNT is only recognised after the last '@' when it looks like one, so a MATCH may hold '@'.
    count: int | None = 1
    count_given = False
    head, at, tail = text.rpartition("@")
    if at and _COUNT.fullmatch(tail):
        text, count_given = head, True
        count = None if tail == "*" else int(tail)

    kind_text, colon, match_text = text.partition(":")
    match = match_text if colon else None
    if colon and not match_text:
        raise ValueError(f"fault {spec!r}: empty MATCH after ':'")

    name, eq, value_text = kind_text.partition("=")
    name = name.strip().lower()
    value = 0
    if name == "puback":
        if value_text not in ("lost", "late"):
            raise ValueError(f"fault {spec!r}: puback needs =lost or =late")
        kind = FaultKind.PUBACK_LOST if value_text == "lost" else FaultKind.PUBACK_LATE
    elif name == "connack":
        if value_text != "refused":
            raise ValueError(f"fault {spec!r}: connack needs =refused")
        kind = FaultKind.CONNACK_REFUSED
    else:
        try:
            kind = FaultKind(name)
        except ValueError:
            known = ", ".join(sorted({k.value.split("=")[0] for k in FaultKind}))
            raise ValueError(f"fault {spec!r}: unknown kind {name!r} (known: {known})") from None
        if kind in _VALUE_KINDS:
            if not eq or not value_text.isdigit():
                raise ValueError(f"fault {spec!r}: {name} needs a number, e.g. {name}=14")
            value = int(value_text)
        elif kind in _OPTIONAL_VALUE_KINDS and eq:
            if not value_text.isdigit() or not int(value_text):
                raise ValueError(f"fault {spec!r}: {name}= needs a positive number of bytes")
            value = int(value_text)
        elif eq:
            raise ValueError(f"fault {spec!r}: {name} takes no =VALUE")

    if match is not None and kind not in COMMAND_KINDS:
        raise ValueError(f"fault {spec!r}: {kind.value} is not tied to a command, drop ':MATCH'")
    if kind in _PERMANENT_KINDS:
        if count_given:
            raise ValueError(f"fault {spec!r}: {kind.value} is permanent, drop '@COUNT'")
        count = None
    if kind is FaultKind.SPLIT and match is None:
        # Without MATCH, split shapes the whole output stream for good: a count means nothing.
        if count_given and count is not None:
            raise ValueError(f"fault {spec!r}: split without MATCH applies to all output, use "
                             "'split' or 'split:AT+…@N'")
        count = None
    return Fault(kind=kind, value=value, match=match, count=count)
