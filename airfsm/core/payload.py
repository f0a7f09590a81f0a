"""What may travel inside the quoted strings of `AT+MPUB="<topic>",<qos>,<retain>,"<msg>"`.

C twin: port/c/core/payload.c.

The whole command is one line ended by CR, and the module splits its arguments at the quotes, so
a CR, LF or `"` that reached the wire unescaped would end the command early or start a new one:
an AT-command injection. This module is the one place that decides what is sent, and it is
deliberately strict:

* Text mode (`AT+MQTTMODE=0`, the power-up default): the message may hold printable ASCII
  (0x20..0x7E) plus CR and LF. Four bytes are escaped as the module expects (PROTOCOL.md):
  `"` -> `\\22`, CR -> `\\0D`, LF -> `\\0A`, `\\` -> `\\5C`. Escaping `\\` is what makes the escape
  reversible: a literal `\\22` in a payload is sent as `\\5C22`.
  TAB and every other control byte are *not* in the module's escape list, so they are not sent
  in text mode at all (a module might pass them, drop them or treat them as line editing): a
  payload containing one is classified "hex".
* Hex mode (`AT+MQTTMODE=1`, a module-wide setting): the message is the payload as uppercase hex
  digits, so any byte is safe; the text is twice the payload size.
* Size: at most `MAX_PAYLOAD_TEXT` (1024) bytes between the quotes, the size PROTOCOL.md calls safe
  for V409 firmware. In text mode that counts the escapes; in hex mode it allows
  `MAX_PAYLOAD_HEX_RAW` (512) payload bytes.
* Topics are never escaped (no source says the module unescapes them), so a topic must already
  be safe: printable ASCII without `"`, `\\`, or the MQTT wildcards `+` and `#` (a publish topic
  names exactly one topic), at most `MAX_TOPIC` characters.

Every encoder result is checked once more for CR, LF and NUL before it is returned. Reading an
MPUB line back is the simulator's side (`airfsm.sim.mpub`); a relative topic is resolved by
`aliyun.resolve_topic`.
"""

from __future__ import annotations

MAX_PAYLOAD_TEXT = 1024  # bytes between the quotes, escapes included: safe for V409
MAX_PAYLOAD_HEX_RAW = MAX_PAYLOAD_TEXT // 2  # hex doubles the size
MAX_TOPIC = 128
QOS_LEVELS = (0, 1)  # Alibaba Cloud IoT supports QoS 0 and 1 only

TEXT = "text"
HEX = "hex"
REFUSE = "refuse"

_ESCAPES: dict[int, bytes] = {0x22: b"\\22", 0x0D: b"\\0D", 0x0A: b"\\0A", 0x5C: b"\\5C"}
_TEXT_BYTES = frozenset(range(0x20, 0x7F)) | {0x0D, 0x0A}
_NAMED = {0x00: "NUL", 0x09: "TAB", 0x0A: "LF", 0x0D: "CR", 0x7F: "DEL"}


def escape_mpub(payload: bytes) -> bytes:
    """`payload` with `"`, CR, LF and `\\` written as the module's `\\HH` escapes.

    Only those four bytes are touched; whether the rest may go in text mode at all is
    `classify_payload`'s decision. C: payload_escape().
    """
    out = bytearray()
    for b in payload:
        escape = _ESCAPES.get(b)
        if escape is None:
            out.append(b)
        else:
            out += escape
    return bytes(out)


def escaped_length(payload: bytes) -> int:
    """len(escape_mpub(payload)) without building it."""
    extra = sum(payload.count(bytes((b,))) for b in _ESCAPES) * 2
    return len(payload) + extra


def _describe_char(ch: str) -> str:
    code = ord(ch)
    if code in _NAMED:
        return _NAMED[code]
    if code < 0x20:
        return f"control character 0x{code:02x}"
    return f"non-ASCII character U+{code:04X}"


def check_topic(topic: str) -> str | None:
    """None when `topic` may be published to as is, else a one-line reason it may not."""
    if not topic:
        return "topic is empty"
    for pos, ch in enumerate(topic):
        code = ord(ch)
        if ch == '"':
            return f"topic contains '\"' at position {pos}"
        if ch == "\\":
            return f"topic contains '\\' at position {pos} (the module reads it as an escape)"
        if ch in "+#":
            return f"topic contains the MQTT wildcard '{ch}' at position {pos}: a publish topic " \
                   "cannot have wildcards"
        if code < 0x20 or code > 0x7E:
            return f"topic contains {_describe_char(ch)} at position {pos}"
    if len(topic) > MAX_TOPIC:
        return f"topic is {len(topic)} characters long (limit {MAX_TOPIC})"
    return None


def _first_non_text(payload: bytes) -> tuple[int, int] | None:
    for offset, b in enumerate(payload):
        if b not in _TEXT_BYTES:
            return offset, b
    return None


def classify_payload(payload: bytes, *, hex_allowed: bool = True) -> tuple[str, str | None]:
    """How `payload` can be published: ("text", None), ("hex", None) or ("refuse", reason).

    "text": printable ASCII, CR and LF only, and at most MAX_PAYLOAD_TEXT bytes once escaped.
    "hex": needs hex mode (any other byte: NUL, TAB, controls, DEL, non-ASCII such as UTF-8),
    or is text whose escapes push it over the text limit while its hex form still fits; at most
    MAX_PAYLOAD_HEX_RAW bytes. With `hex_allowed=False` (a module without hex mode) such a
    payload is refused instead. The empty payload is "text".
    """
    bad = _first_non_text(payload)
    if bad is None:
        escaped = escaped_length(payload)
        if escaped <= MAX_PAYLOAD_TEXT:
            return TEXT, None
        why = (f"payload too large: {len(payload)} bytes, {escaped} once escaped "
               f"(limit {MAX_PAYLOAD_TEXT} in text mode")
        if not hex_allowed:
            return REFUSE, why + ")"
        if len(payload) <= MAX_PAYLOAD_HEX_RAW:
            return HEX, None
        return REFUSE, why + f", {MAX_PAYLOAD_HEX_RAW} bytes in hex mode)"
    offset, byte = bad
    name = _NAMED.get(byte, f"byte 0x{byte:02x}")
    if not hex_allowed:
        return REFUSE, (f"payload has {name} at offset {offset}, which cannot travel in a quoted "
                        "AT string, and hex mode is not available")
    if len(payload) > MAX_PAYLOAD_HEX_RAW:
        return REFUSE, (f"payload too large: {len(payload)} bytes with {name} at offset {offset} "
                        f"need hex mode, which carries at most {MAX_PAYLOAD_HEX_RAW} bytes")
    return HEX, None


def check_qos(qos: object) -> str | None:
    """None for a QoS the gateway can publish with, else a one-line reason."""
    if isinstance(qos, bool) or not isinstance(qos, int) or qos not in QOS_LEVELS:
        return f"qos must be 0 or 1, got {qos!r}"
    return None


def check_message(topic: object, payload: object, qos: object, *,
                  hex_allowed: bool = True) -> str | None:
    """None when (topic, payload, qos) can be published, else a one-line reason.

    What every outbox checks at enqueue time: a message refused here never reaches the head of
    a queue, where it would block everything behind it.
    """
    if not isinstance(topic, str):
        return f"topic must be a string, got {type(topic).__name__}"
    reason = check_topic(topic) or check_qos(qos)
    if reason is not None:
        return reason
    if not isinstance(payload, bytes | bytearray | memoryview):
        return f"payload must be bytes, got {type(payload).__name__}"
    return classify_payload(bytes(payload), hex_allowed=hex_allowed)[1]


def encode_mpub_command(topic: str, payload: bytes, qos: int, hex_mode: bool) -> bytes:
    """The whole `AT+MPUB="<topic>",<qos>,0,"<msg>"` line, without the terminating CR.

    `hex_mode` says which mode the module is in (`AT+MQTTMODE`): in hex mode every payload is
    sent as hex; in text mode a payload that needs hex is a ValueError, as are a bad topic, a bad
    QoS and an oversize payload. The result never holds CR, LF or NUL, and holds exactly four
    `"` (the message itself never contains one).
    """
    reason = check_topic(topic)
    if reason is not None:
        raise ValueError(f"bad topic: {reason}")
    reason = check_qos(qos)
    if reason is not None:
        raise ValueError(reason)
    if hex_mode:
        if len(payload) > MAX_PAYLOAD_HEX_RAW:
            raise ValueError(f"payload too large: {len(payload)} bytes "
                             f"(limit {MAX_PAYLOAD_HEX_RAW} in hex mode)")
        msg = payload.hex().upper().encode("ascii")
    else:
        kind, reason = classify_payload(payload, hex_allowed=False)
        if kind != TEXT:
            raise ValueError(reason or "payload cannot be sent in text mode")
        msg = escape_mpub(payload)
    command = b'AT+MPUB="' + topic.encode("ascii") + b'",' + str(qos).encode("ascii") \
        + b',0,"' + msg + b'"'
    # Defence in depth: the checks above make these impossible; the MCU twin keeps this check.
    if b"\r" in command or b"\n" in command or b"\0" in command or command.count(b'"') != 4:
        raise ValueError("internal error: unsafe MPUB command refused")
    return command
