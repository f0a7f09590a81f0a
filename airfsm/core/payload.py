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

Every command is checked once more for CR, LF and NUL once written. The tick's functions
(`put_mpub`, `payload_form`, `topic_fault`) return codes and write into the caller's buffer, as
their C twins do; `check_topic`, `classify_payload`, `check_message` and `encode_mpub_command`
word those codes for the host and library callers (ValueError, one-line reasons). Reading an
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

# payload_form(): how a payload can travel (C: payload_form_t).
FORM_TEXT = 0  # escaped, between the quotes of AT+MPUB, in text mode
FORM_HEX = 1  # as hex digits, in hex mode
FORM_REFUSED = 2  # in neither (over both limits)

# topic_fault(): why a topic cannot be published to (C: payload_topic_fault_t), and where.
TOPIC_OK = 0
TOPIC_EMPTY = 1
TOPIC_QUOTE = 2
TOPIC_BACKSLASH = 3
TOPIC_WILDCARD = 4
TOPIC_CHARACTER = 5  # a control character, DEL or not ASCII
TOPIC_TOO_LONG = 6

# put_mpub(): why no command was written (C: the negative returns of payload_put_mpub()).
MPUB_BAD_TOPIC = -1
MPUB_BAD_QOS = -2
MPUB_UNSENDABLE = -3  # the payload cannot travel in the module's mode, or is over its limit
MPUB_NO_ROOM = -4  # the buffer cannot hold the command and its CR
MPUB_UNSAFE = -5  # the written command holds a CR, LF, NUL or a fifth quote (never happens)

_MPUB_HEAD = b'AT+MPUB="'  # the literal pieces of table.MPUB_TEMPLATE
_MPUB_AFTER_TOPIC = b'",'
_MPUB_AFTER_QOS = b',0,"'
_MPUB_TAIL = b'"'
MPUB_LITERALS = (_MPUB_HEAD, _MPUB_AFTER_TOPIC, _MPUB_AFTER_QOS, _MPUB_TAIL)
# The longest command: the topic and the message at their limits (table.py checks both against
# the pieces of MPUB_TEMPLATE, and against CMD_CAPACITY).
MPUB_MAX = (len(_MPUB_HEAD) + MAX_TOPIC + len(_MPUB_AFTER_TOPIC) + 1 + len(_MPUB_AFTER_QOS)
            + MAX_PAYLOAD_TEXT + len(_MPUB_TAIL))

_ESCAPES: dict[int, bytes] = {0x22: b"\\22", 0x0D: b"\\0D", 0x0A: b"\\0A", 0x5C: b"\\5C"}
_ESCAPED = bytes(_ESCAPES)
_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\r\n"
_NAMED = {0x00: "NUL", 0x09: "TAB", 0x0A: "LF", 0x0D: "CR", 0x7F: "DEL"}
_HEX_UPPER = b"0123456789ABCDEF"


def _put_escaped(out: bytearray, at: int, payload: bytes) -> int:
    """Write `payload` escaped into out[at:], runs of plain bytes in one copy; where it ends.
    The caller made sure it fits (escaped_length). C: payload_put_escaped()."""
    start = 0
    for i, b in enumerate(payload):
        escape = _ESCAPES.get(b)
        if escape is None:
            continue
        run = i - start
        out[at:at + run] = payload[start:i]  # C: memcpy
        at += run
        out[at:at + 3] = escape
        at += 3
        start = i + 1
    run = len(payload) - start
    out[at:at + run] = payload[start:]
    return at + run


def escape_mpub(payload: bytes) -> bytes:
    """`payload` with `"`, CR, LF and `\\` written as the module's `\\HH` escapes.

    Only those four bytes are touched; whether the rest may go in text mode at all is
    `classify_payload`'s decision. Python only (the tick writes into its buffer: put_mpub).
    """
    out = bytearray(escaped_length(payload))
    _put_escaped(out, 0, payload)
    return bytes(out)


def escaped_length(payload: bytes) -> int:
    """len(escape_mpub(payload)) without building it. C: payload_escaped_length()."""
    return len(payload) + 2 * (len(payload) - len(payload.translate(None, _ESCAPED)))


def _describe_char(ch: str) -> str:
    code = ord(ch)
    if code in _NAMED:
        return _NAMED[code]
    if code < 0x20:
        return f"control character 0x{code:02x}"
    return f"non-ASCII character U+{code:04X}"


def topic_fault(topic: str) -> tuple[int, int]:
    """(TOPIC_OK, 0) when `topic` may be published to as is, else a TOPIC_* code and the
    position of the character at fault. C: payload_topic_fault()."""
    if not topic:
        return TOPIC_EMPTY, 0
    for pos, ch in enumerate(topic):
        code = ord(ch)
        if ch == '"':
            return TOPIC_QUOTE, pos
        if ch == "\\":
            return TOPIC_BACKSLASH, pos
        if ch in "+#":
            return TOPIC_WILDCARD, pos
        if code < 0x20 or code > 0x7E:
            return TOPIC_CHARACTER, pos
    if len(topic) > MAX_TOPIC:
        return TOPIC_TOO_LONG, MAX_TOPIC
    return TOPIC_OK, 0


def check_topic(topic: str) -> str | None:
    """None when `topic` may be published to as is, else a one-line reason it may not.

    Python only (the words of topic_fault's codes)."""
    fault, pos = topic_fault(topic)
    if fault == TOPIC_OK:
        return None
    if fault == TOPIC_EMPTY:
        return "topic is empty"
    if fault == TOPIC_QUOTE:
        return f"topic contains '\"' at position {pos}"
    if fault == TOPIC_BACKSLASH:
        return f"topic contains '\\' at position {pos} (the module reads it as an escape)"
    if fault == TOPIC_WILDCARD:
        return f"topic contains the MQTT wildcard '{topic[pos]}' at position {pos}: a publish " \
               "topic cannot have wildcards"
    if fault == TOPIC_CHARACTER:
        return f"topic contains {_describe_char(topic[pos])} at position {pos}"
    return f"topic is {len(topic)} characters long (limit {MAX_TOPIC})"


def _first_non_text(payload: bytes) -> int:
    """The offset of the first byte text mode cannot carry; -1 when there is none.

    C: payload_first_non_text()."""
    if not payload.translate(None, _TEXT_BYTES):  # every byte text (one C-level pass)
        return -1
    for offset, b in enumerate(payload):
        if b not in _TEXT_BYTES:
            return offset
    return -1


def payload_form(payload: bytes, *, hex_allowed: bool = True) -> int:
    """How `payload` can travel: FORM_TEXT, FORM_HEX or FORM_REFUSED (the rules of
    `classify_payload`, without the words). C: payload_form()."""
    if _first_non_text(payload) < 0 and escaped_length(payload) <= MAX_PAYLOAD_TEXT:
        return FORM_TEXT
    if hex_allowed and len(payload) <= MAX_PAYLOAD_HEX_RAW:
        return FORM_HEX
    return FORM_REFUSED


def classify_payload(payload: bytes, *, hex_allowed: bool = True) -> tuple[str, str | None]:
    """How `payload` can be published: ("text", None), ("hex", None) or ("refuse", reason).

    "text": printable ASCII, CR and LF only, and at most MAX_PAYLOAD_TEXT bytes once escaped.
    "hex": needs hex mode (any other byte: NUL, TAB, controls, DEL, non-ASCII such as UTF-8),
    or is text whose escapes push it over the text limit while its hex form still fits; at most
    MAX_PAYLOAD_HEX_RAW bytes. With `hex_allowed=False` (a module without hex mode) such a
    payload is refused instead. The empty payload is "text".
    Python only (the words of payload_form's codes).
    """
    form = payload_form(payload, hex_allowed=hex_allowed)
    if form == FORM_TEXT:
        return TEXT, None
    if form == FORM_HEX:
        return HEX, None
    offset = _first_non_text(payload)
    if offset < 0:
        why = (f"payload too large: {len(payload)} bytes, {escaped_length(payload)} once "
               f"escaped (limit {MAX_PAYLOAD_TEXT} in text mode")
        if not hex_allowed:
            return REFUSE, why + ")"
        return REFUSE, why + f", {MAX_PAYLOAD_HEX_RAW} bytes in hex mode)"
    byte = payload[offset]
    name = _NAMED.get(byte, f"byte 0x{byte:02x}")
    if not hex_allowed:
        return REFUSE, (f"payload has {name} at offset {offset}, which cannot travel in a quoted "
                        "AT string, and hex mode is not available")
    return REFUSE, (f"payload too large: {len(payload)} bytes with {name} at offset {offset} "
                    f"need hex mode, which carries at most {MAX_PAYLOAD_HEX_RAW} bytes")


def qos_ok(qos: object) -> bool:
    """A QoS the gateway can publish with (0 or 1; a bool is not a QoS). C: a range check."""
    return not isinstance(qos, bool) and isinstance(qos, int) and qos in QOS_LEVELS


def check_qos(qos: object) -> str | None:
    """None for a QoS the gateway can publish with, else a one-line reason."""
    return None if qos_ok(qos) else f"qos must be 0 or 1, got {qos!r}"


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


def put_mpub(out: bytearray, topic: str, payload: bytes, qos: int, hex_mode: bool) -> int:
    """Write `AT+MPUB="<topic>",<qos>,0,"<msg>"` into out[:n] and return n, with at least one
    byte of `out` left for the CR; or a negative MPUB_* code (what out holds then is garbage).

    `hex_mode` says which mode the module is in (`AT+MQTTMODE`): in hex mode every payload goes
    as hex digits; in text mode a payload that needs hex is MPUB_UNSENDABLE, as is one over its
    mode's limit. A written command never holds CR, LF or NUL, and holds exactly four `"` (the
    message never contains one). C: payload_put_mpub().
    """
    if topic_fault(topic)[0] != TOPIC_OK:
        return MPUB_BAD_TOPIC
    if not qos_ok(qos):
        return MPUB_BAD_QOS
    if hex_mode:
        if len(payload) > MAX_PAYLOAD_HEX_RAW:
            return MPUB_UNSENDABLE
        message = 2 * len(payload)
    else:
        if _first_non_text(payload) >= 0:
            return MPUB_UNSENDABLE
        message = escaped_length(payload)
        if message > MAX_PAYLOAD_TEXT:
            return MPUB_UNSENDABLE
    name = topic.encode("ascii")  # the topic is printable ASCII (topic_fault)
    total = (len(_MPUB_HEAD) + len(name) + len(_MPUB_AFTER_TOPIC) + 1 + len(_MPUB_AFTER_QOS)
             + message + len(_MPUB_TAIL))
    if total >= len(out):
        return MPUB_NO_ROOM
    n = 0
    for piece in (_MPUB_HEAD, name, _MPUB_AFTER_TOPIC):  # C: memcpy each
        out[n:n + len(piece)] = piece
        n += len(piece)
    out[n] = 0x30 + qos  # one digit: 0 or 1
    n += 1
    out[n:n + len(_MPUB_AFTER_QOS)] = _MPUB_AFTER_QOS
    n += len(_MPUB_AFTER_QOS)
    if hex_mode:
        for b in payload:  # C: two table lookups a byte
            out[n] = _HEX_UPPER[b >> 4]
            out[n + 1] = _HEX_UPPER[b & 0x0F]
            n += 2
    else:
        n = _put_escaped(out, n, payload)
    out[n] = _MPUB_TAIL[0]
    n += 1
    # Defence in depth: the checks above make these impossible; the C twin keeps this check.
    if (out.find(b"\r", 0, n) >= 0 or out.find(b"\n", 0, n) >= 0 or out.find(b"\0", 0, n) >= 0
            or out.count(b'"', 0, n) != 4):
        return MPUB_UNSAFE
    return n


def encode_mpub_command(topic: str, payload: bytes, qos: int, hex_mode: bool) -> bytes:
    """The whole `AT+MPUB="<topic>",<qos>,0,"<msg>"` line, without the terminating CR, as
    `put_mpub` writes it; ValueError with a one-line reason where put_mpub refuses.

    Python only (for library callers and the tests; the tick calls put_mpub).
    """
    out = bytearray(MPUB_MAX + 1)
    n = put_mpub(out, topic, payload, qos, hex_mode)
    if n >= 0:
        return bytes(out[:n])
    if n == MPUB_BAD_TOPIC:
        raise ValueError(f"bad topic: {check_topic(topic)}")
    if n == MPUB_BAD_QOS:
        raise ValueError(check_qos(qos))
    if n == MPUB_UNSENDABLE and hex_mode:
        raise ValueError(f"payload too large: {len(payload)} bytes "
                         f"(limit {MAX_PAYLOAD_HEX_RAW} in hex mode)")
    if n == MPUB_UNSENDABLE:
        raise ValueError(classify_payload(payload, hex_allowed=False)[1]
                         or "payload cannot be sent in text mode")
    raise ValueError("internal error: unsafe MPUB command refused")
