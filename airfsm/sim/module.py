"""An Air72x LTE module (AT firmware V409 dialect) and the Alibaba Cloud endpoints behind it.

`SimModule` is the module's behaviour as a pure, time-driven object: no threads, no I/O, no wall
clock. Bytes from the MCU go in with `receive(data, now_ms)`; what the module has to say by
`now_ms` comes out of `output(now_ms)`; `next_deadline()` says when to ask again. Tests drive it
with a virtual clock; `SimServer` drives it with the wall clock over a pty or TCP. It is an
independent implementation of the module side of `PROTOCOL.md` (of the core it imports only
`timebase` and `aliyun`'s endpoints and sign; the cloud's side of the auth is `sim.cloud`), so it
can also test a C port.

How time works: every answer and URC is an event scheduled at an absolute 32-bit ms time. Events
fire in time order when the clock passes them (on `receive` or `output`), change state, and queue
bytes on the transmit FIFO (the module's UART). An event fires at its own due time even when the
caller polls late, so results never depend on how often the caller looks. The FIFO is drained by
`output()`; a split fault throttles it to 1..3 bytes (or a fixed piece size) per call with a tiny
gap, and a line being split is never interleaved with another.

Observation: `observer`, when set, is called with a `SimEvent` for everything a test may want to
check from the module's side of the line (a command received, its answer fully on the wire, a
boot, a fault firing, a token issued, a publish accepted, a PUBACK, a session up or down), each
stamped with the module's clock. It never changes what the module does.

Module behaviour worth knowing (all from PROTOCOL.md unless noted as a simulator choice):

* Boot: input is ignored for `boot_ms`; then RDY, +CFUN: 1, +CPIN: READY, SMS Ready (if
  `boot_urcs`). With `autobaud` everything is ignored until an uppercase "AT"; that "AT" starts
  the first command line. Attach (+CGATT: 1) comes `max(attach_after_ms, cgatt0 fault, profile
  attach)` after boot.
* Echo: the command line as received plus CR, before the answer, whenever echo is on, whatever
  fault hits the answer (a real module's UART driver echoes as bytes arrive). No echo of HTTPDATA
  data.
* Registration: AT+CEREG? / AT+CGREG? say 1 (home) once attached, 2 (searching) while the radio is
  on and not attached, 0 with the radio off; AT+COPS? names the operator only when attached.
* Lines that do not start with AT are answered ERROR (simulator choice). Empty lines are ignored.
  A command longer than `MAX_LINE` bytes is answered ERROR.
* One command at a time: an answer is never scheduled before the previous one went out.
* Refused MQTT credentials (stale or wrong iotToken, wrong clientId): MCONNECT answers OK, then
  `ERROR` (PROTOCOL.md's "CONNACK OK or ERROR") and `CLOSED` (the server drops the link), MQTT
  state 0. The `connack=refused` fault refuses with the bare `ERROR` only, as firmware before
  V838 does. Without MCONNECT within `connect_window_ms` of CONNECT OK the server drops: `CLOSED`.
* MQTT keepalive: from V838 (`firmware`) the module sends PINGREQ itself. Before it, the server
  closes a session that saw no packet from the device (CONNECT, SUBSCRIBE, PUBLISH ...) for 1.5x
  its keepalive, and the module does not notice: MQTTSTATU still says 1, MPUB and MSUB answer
  OK but nothing travels (no PUBACK, no SUBACK, no downlink) until AT+MIPCLOSE.
* `send_downlink` delivers only while MQTT is connected and a subscription matches (MQTT wildcards
  work); otherwise the message is dropped, as the broker does for a clean session, and it
  returns False. Subscriptions end with the link. In hex mode (AT+MQTTMODE=1) the payload goes
  out as 2n hex digits for n bytes. With AT+MQTTMSGSET=1 (or the `cache-notice` fault) it is
  kept in one of 4 cache slots (the oldest overwritten) and announced as `+MSUB: <slot>`;
  AT+MQTTMSGGET prints the cached messages as +MSUB lines, then OK.
* Auth server: HTTP 200 with a JSON code: 200 (fresh iotId/iotToken each time), 401 bad sign, 460
  bad form or wrong Content-Type, 5001 unknown product/device. Only the latest issued token (with
  the clientId that was signed) is accepted by MCONNECT. A URL with a host other than
  `iot-auth.<region>.aliyuncs.com` fails with 603 (DNS); another region's auth host says 5001.
  With `instance_id` the auth server is `<id>.auth.iothub.aliyuncs.com` (the regional one says
  5001) and the broker `<id>.mqtt.iothub.aliyuncs.com`; `broker_host` names another broker. The
  reply names the broker when the form asks (`resources=mqtt`); AT+SSLMIPSTART to any other
  host is CONNECT FAIL.
* Dynamic registration (`product_secret`): `/auth/register/device` checks the sign over
  `deviceName…productKey…random…` with the ProductSecret and issues a fresh DeviceSecret each
  time until the device first connects; after that (or with `device_activated`) it answers
  6289 (a simulator choice: the real code is undocumented), 6288 with registration off.
* The direct MQTT sign (`id|securemode=2,signmethod=…|`, `dn&pk`, the HMAC) is accepted by
  MCONNECT as the cloud checks it (`sim.cloud.verify_mqtt_sign`). With a cloud clock
  (`cloud_clock_ms`, the wall clock under `SimServer`) a timestamp in an auth form or a direct
  sign must be within `timestamp_window_ms` of it: otherwise the auth says 460 and MCONNECT
  refuses.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from airfsm.core import aliyun
from airfsm.core.timebase import MS_MASK, Xorshift32, ms_add, ms_diff, ms_reached
from airfsm.sim import cloud
from airfsm.sim.alink import AlinkCloud
from airfsm.sim.faults import REPLACING_KINDS, Fault, FaultKind
from airfsm.sim.session import MqttSession, RecordingSession

OLD_FIRMWARE = "AirM2M_Air72xUy_V300_LTE_AT"
FIRMWARE_HEARTBEAT = 838  # from this build the module keeps the MQTT session alive itself
KEEPALIVE_GRACE = (3, 2)  # the server closes after 1.5x the keepalive without a packet
CACHE_SLOTS = 4  # AT+MQTTMSGSET=1: messages kept for AT+MQTTMSGGET
BOOT_NOISE = b"\xff\x00"  # what a UART prints while the module powers up (noisy-rdy)
CONTENT_TYPE_HEADER = "Content-Type: application/x-www-form-urlencoded"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
MAX_LINE = 4096  # the module's command buffer; longer lines are answered ERROR
MAX_CREDENTIAL = 256  # AT+MCONFIG fields
OVERLONG_LINE = 4200  # the overlong fault's line: longer than any buffer a driver should have
INSIDE_URC = "+CEREG: 1"  # the urc-inside fault's URC: registration news, harmless anywhere
SPLIT_RANDOM = -1  # a split piece size: 1..3 bytes at random
CME_NOT_ALLOWED = 3
CME_OPERATION_FAILED = 767

# AT+MQTTSTATU values
MQTT_OFFLINE = 0
MQTT_CONNECTED = 1
MQTT_TCP_ONLY = 2

# +SAPBR: 1,<status> values
BEARER_CONNECTED = 1
BEARER_CLOSED = 3

# HTTP statuses the module itself reports
# The virtual cloud clock's Unix ms at the module's start (2024-01-01T00:00:00Z), without a
# wall clock given.
SIM_EPOCH_MS = 1_704_067_200_000

HTTP_NETWORK_ERROR = 601
HTTP_DNS_ERROR = 603


@dataclass(frozen=True)
class Profile:
    """Latencies in ms. "fast" keeps tests quick; "real" follows PROTOCOL.md's measurements."""

    answer_ms: int  # an ordinary OK/ERROR
    boot_ms: int  # power-on to RDY; input before that is lost
    attach_ms: int  # boot to +CGATT: 1
    reattach_ms: int  # detach (or CFUN=1) to +CGATT: 1 again
    bearer_open_ms: int  # AT+SAPBR=1,1 answers only when the bearer is up
    http_action_ms: int  # OK to +HTTPACTION
    connect_ms: int  # OK to CONNECT OK
    connack_ms: int
    suback_ms: int
    puback_ms: int
    downlink_ms: int  # send_downlink to +MSUB
    split_gap_ms: int  # between the chunks of a split answer


PROFILES: dict[str, Profile] = {
    "fast": Profile(
        answer_ms=2, boot_ms=5, attach_ms=0, reattach_ms=20, bearer_open_ms=5,
        http_action_ms=20, connect_ms=15, connack_ms=5, suback_ms=5, puback_ms=5,
        downlink_ms=1, split_gap_ms=1,
    ),
    "real": Profile(
        answer_ms=20, boot_ms=2500, attach_ms=3000, reattach_ms=5000, bearer_open_ms=800,
        http_action_ms=1600, connect_ms=1400, connack_ms=250, suback_ms=300, puback_ms=300,
        downlink_ms=50, split_gap_ms=2,
    ),
    # "fast" with no think time for an answer: with `--baud` the line is the only delay of a
    # command, so a throughput benchmark measures the UART and the controller, not the module.
    "line": Profile(
        answer_ms=0, boot_ms=5, attach_ms=0, reattach_ms=20, bearer_open_ms=5,
        http_action_ms=20, connect_ms=15, connack_ms=5, suback_ms=5, puback_ms=5,
        downlink_ms=0, split_gap_ms=1,
    ),
}
PUBACK_LATE_FACTOR = 5
# The register server's answers (simulator choices: Alibaba Cloud documents the refusal of an
# active device, not its code): dynamic registration not enabled, the device already active.
REGISTER_DISABLED_CODE = 6288
REGISTER_REFUSED_CODE = 6289
TIMESTAMP_REFUSED_CODE = 460  # a timestamp outside the window: a parameter error


@dataclass
class SimConfig:
    product_key: str = "b0FMK1Ga5cp"
    device_name: str = "862991419835241"
    device_secret: str = field(default="y7MTCG6Gk33Ux26bbWSpANl4OaI0bg5Q", repr=False)
    region: str = "cn-shanghai"
    firmware: str = "AirM2M_Air72xUy_V409_LTE_AT"
    cgmr_quoted: bool = False  # bare line (seed) or '+CGMR: "…"'
    echo: bool = True  # power-up default; ATE0/ATE1 switch it
    profile: str = "fast"  # a key of PROFILES
    attach_after_ms: int = 0  # +CGATT: 0 until this long after boot (slow attach)
    boot_urcs: bool = True  # RDY, +CFUN: 1, +CPIN: READY, SMS Ready at boot
    autobaud: bool = True  # ignore everything until the first uppercase "AT"
    faults: list[Fault] = field(default_factory=list)
    seed: int = 1
    rssi: int = 24  # +CSQ: <rssi>,99
    # What the module and its SIM say about themselves (AT+CGSN, AT+CCID / AT+ICCID) and the
    # network it registers on once attached (AT+COPS?: "<operator>",<AcT>; 7 is E-UTRAN).
    imei: str = "862991419835241"
    iccid: str = "89860123456789012345"
    operator: str = "CHINA MOBILE"
    access_technology: int = 7
    connect_window_ms: int = 5000  # CONNECT OK to MCONNECT before the server drops the link
    max_publish_text: int = 1024  # bytes between the MPUB quotes (V409); 0 = no limit
    # How long an issued iotToken lets MCONNECT in (Alibaba Cloud: 7 days); 0 = for ever.
    # A session already up is not dropped when its token ages.
    token_lifetime_ms: int = 0
    # An instance (opened since mid-2021): its auth server `<id>.auth.iothub.aliyuncs.com` and
    # broker `<id>.mqtt.iothub.aliyuncs.com` are the only ones that answer for the device.
    instance_id: str | None = None
    # The broker the auth reply names when asked (`resources=mqtt`) and the only host
    # AT+SSLMIPSTART reaches; None: the instance's or the legacy regional one.
    broker_host: str | None = None
    # "One type, one secret": the product's secret; None: dynamic registration is off (the
    # register server answers 6288 to any request). The device is pre-registered under
    # `device_name`; each registration issues a fresh DeviceSecret until the device first
    # connects (activates): after that the server refuses (REGISTER_REFUSED_CODE).
    product_secret: str | None = field(default=None, repr=False)
    device_activated: bool = False  # the device has connected before (registration refused)
    # A `timestamp` in an auth form or a direct-sign clientId must be within this of the
    # cloud's clock (when the module has one: `cloud_clock_ms`), or the request is refused.
    timestamp_window_ms: int = 15 * 60_000
    # The Alink cloud (`airfsm.sim.alink`): the thing model's properties (name -> "int",
    # "float", "bool", "text"; None accepts any post), how long it waits for an RRPC answer,
    # and how far its clock is ahead of the wall clock it is given (NTP answers by it).
    thing_properties: dict[str, str] | None = None
    rrpc_timeout_ms: int = 8_000
    cloud_clock_offset_ms: int = 0


# Where the MQTT link is. AT+MQTTSTATU folds these into 0/1/2.
_LINK_IDLE = 0
_LINK_TCP_OPENING = 1
_LINK_TCP_UP = 2
_LINK_MQTT_OPENING = 3
_LINK_MQTT_UP = 4
_STATU_OF_LINK = {
    _LINK_IDLE: MQTT_OFFLINE, _LINK_TCP_OPENING: MQTT_OFFLINE, _LINK_TCP_UP: MQTT_TCP_ONLY,
    _LINK_MQTT_OPENING: MQTT_TCP_ONLY, _LINK_MQTT_UP: MQTT_CONNECTED,
}

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_HEX = "0123456789abcdef"
_COMMAND_NAME = re.compile(r"AT[+&][A-Z0-9]*")
_FIRMWARE_VERSION = re.compile(r"_V([0-9]+)")
_MPUB_ARGS = re.compile(r'"([^"]*)",([0-9]+),([0-9]+),"(.*)"', re.DOTALL)
_ESCAPE = re.compile(rb"\\([0-9A-Fa-f]{2})")


@dataclass(slots=True)
class _Event:
    due: int
    seq: int
    fire: Callable[[], None]


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One thing the module did, as its observer sees it (see the module docstring).

    kind: "command" (text: the line), "answered" (text: the command whose final result code
    has just left the UART, up to its CR), "boot", "fault" (text: the fault spec that fired),
    "grant" (text: clientId, iotId, iotToken joined by tabs), "registered" (text: the
    DeviceSecret a dynamic registration issued), "published" (text: topic,
    data: payload, number: QoS), "puback" (data: the payload it acknowledges), "connack",
    "link_down", "downlink" (text: topic, data: payload as sent).
    """

    at_ms: int
    kind: str
    text: str = ""
    data: bytes = b""
    number: int = 0


@dataclass(slots=True)
class _TxChunk:
    data: bytes
    piece: int  # 0: written whole; n > 0: n bytes a write; SPLIT_RANDOM: 1..3 at random
    answer_to: str | None = None  # the command whose final result code this chunk ends


@dataclass
class _Download:
    """AT+HTTPDATA in progress: the next `size` raw bytes are the body."""

    size: int
    body: bytearray = field(default_factory=bytearray)


@dataclass
class _Http:
    initialised: bool = False
    url: str = ""
    user_defined: str = ""
    content: str = ""
    body: bytes | None = None
    action_pending: bool = False
    response: bytes | None = None


@dataclass(frozen=True)
class _Grant:
    """What the auth server issued last: MCONNECT must present exactly this."""

    client_id: str
    iot_id: str
    iot_token: str
    issued_at: int  # module clock, for token_lifetime_ms


@dataclass
class _ArmedFault:
    fault: Fault
    remaining: int | None  # None: always


def split_args(text: str) -> list[str]:
    """Split AT arguments at commas outside quotes; quotes are removed ('"a,b",1' → ['a,b','1'])."""
    args: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            args.append("".join(current))
            current = []
        else:
            current.append(ch)
    args.append("".join(current))
    return args


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching with `+` (one level) and `#` (the rest)."""
    want = topic_filter.split("/")
    have = topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return True
        if i >= len(have) or (part != "+" and part != have[i]):
            return False
    return len(want) == len(have)


def _frame(*lines: str) -> bytes:
    """Each line as the module sends it: CR LF <line> CR LF."""
    return b"".join(b"\r\n" + line.encode("latin-1") + b"\r\n" for line in lines)


_FINAL_LINES = (b"OK", b"ERROR")
_FINAL_PREFIXES = (b"ERROR: ", b"+CME ERROR: ")


def _final_line(data: bytes) -> bytes | None:
    """The final result code `data` ends with (`\r\nOK\r\n` -> b"OK"), None if it ends with
    something else (DOWNLOAD, a URC, a cut answer)."""
    if not data.endswith(b"\r\n"):
        return None
    start = data.rfind(b"\r\n", 0, len(data) - 2)
    if start < 0:
        return None
    line = data[start + 2:-2]
    if line in _FINAL_LINES or line.startswith(_FINAL_PREFIXES):
        return line
    return None


def _lose_bytes(data: bytes, count: int) -> bytes:
    """`data` with `count` bytes from its middle gone (a UART FIFO overrun)."""
    count = min(count, len(data))
    start = (len(data) - count) // 2
    return data[:start] + data[start + count:]


def _int_arg(text: str) -> int | None:
    text = text.strip().strip('"')
    return int(text) if text.isdigit() else None


class SimModule:
    """A simulated Air72x module. See the module docstring for the behaviour."""

    # Module memory: set by `_boot_module`, lost at every reboot.
    echo: bool
    _booting: bool
    _trained: bool
    _prev_byte: int
    _line: bytearray
    _line_overflow: bool
    _after_cr: bool
    _download: _Download | None
    _busy_until: int
    _cursor: int  # when the answer of the command being executed goes out
    _split_piece: int  # the split fault on the answer being built (a _TxChunk.piece)
    _dup_final_for: str | None  # dup-final armed for this command line's final code
    _urc_inside_for: str | None  # urc-inside armed likewise
    _cfun: int
    _attached: bool
    _bearer_status: int
    _bearer_ip: str
    _http: _Http
    _link: int
    _subscriptions: dict[str, int]
    _mqtt_config: tuple[str, str, str] | None
    _hex_mode: bool
    _msg_cache_mode: bool  # AT+MQTTMSGSET=1
    _msg_cache: list[tuple[str, bytes] | None]
    _msg_cache_next: int  # the slot the next cached message takes (the oldest)
    _coverage_at: int  # no network before this (attach_after_ms / the cgatt0 fault)
    _command_line: str  # the command being executed (for faults acting on its answer)
    _brownout_left: int | None  # brownout fault: answer bytes still sent before the reboot

    def __init__(
        self, config: SimConfig, now_ms: int = 0, session: MqttSession | None = None,
        cloud_clock_ms: Callable[[], int] | None = None,
        wall_clock_ms: Callable[[], int] | None = None,
    ) -> None:
        """`wall_clock_ms`: the cloud's Unix ms for NTP (None: a virtual one that starts at
        SIM_EPOCH_MS and follows the module clock)."""
        if config.profile not in PROFILES:
            raise ValueError(f"unknown profile {config.profile!r}: expected one of "
                             + ", ".join(PROFILES))
        self.config = config
        self.profile = PROFILES[config.profile]
        self.session: MqttSession = session if session is not None else RecordingSession()
        self.observer: Callable[[SimEvent], None] | None = None
        self._rng = Xorshift32(config.seed)
        self._faults = [_ArmedFault(f, f.count) for f in config.faults]

        # Observation: the test's record, kept across reboots.
        self.commands: list[str] = []
        self.published: list[tuple[str, bytes, int]] = []
        self.issued_tokens: list[tuple[str, str]] = []
        self.auth_requests = 0
        self.boots = 0
        self.downlinks_dropped = 0
        self.rx_ignored = 0  # bytes lost while booting or before autobaud

        # The cloud's memory, which a module reboot does not erase.
        self._grant: _Grant | None = None
        self.device_secret = config.device_secret  # the cloud's: a registration replaces it
        self.device_activated = config.device_activated
        self.registrations = 0  # DeviceSecrets issued by dynamic registration
        self.register_requests = 0
        # The cloud's wall clock (Unix ms), for timestamps; None: timestamps are not checked.
        self.cloud_clock_ms = cloud_clock_ms
        self.cloud = AlinkCloud(config.product_key, config.device_name,
                                properties=config.thing_properties,
                                rrpc_timeout_ms=config.rrpc_timeout_ms)
        self._wall_clock_ms = wall_clock_ms
        self._start_ms = now_ms & MS_MASK

        # The clock and the event machinery.
        self._clock = now_ms & MS_MASK  # "now" for scheduling: an event's due time while it fires
        self._seq = 0
        self._events: list[_Event] = []
        self._tx: deque[_TxChunk] = deque()
        self._hold_until: int | None = None  # split throttling: no output before this
        # Epochs: bumping one cancels every pending event that captured the old value.
        self._radio_epoch = 0
        self._bearer_epoch = 0
        self._link_epoch = 0
        self._link = _LINK_IDLE
        self._subscriptions = {}
        # The server side of the MQTT session: its keepalive and whether it is still there.
        self._keepalive_s = 0
        self._packet_seq = 0  # bumped by every packet from the device
        self.server_closed_silently = 0  # sessions the server timed out without a word
        self._server_gone = False  # the server closed the session; the module does not know
        self._boot_module()

    # --- the three calls a driver makes ---------------------------------------------------------

    def receive(self, data: bytes, now_ms: int) -> None:
        """Bytes from the MCU, in any split."""
        self._advance(now_ms)
        i = 0
        while i < len(data):
            if self._booting:
                self.rx_ignored += len(data) - i
                return
            if self._after_cr and data[i] == 0x0A:  # the LF of a CRLF terminator
                self._after_cr = False
                i += 1
                continue
            self._after_cr = False
            if self._download is not None:
                i += self._take_download(data[i:])
                continue
            byte = data[i]
            i += 1
            if not self._trained:
                self._train(byte)
            elif byte == 0x0D:
                self._after_cr = True
                self._end_of_line()
            elif len(self._line) < MAX_LINE:
                self._line.append(byte)
            else:
                self._line_overflow = True

    def output(self, now_ms: int) -> bytes:
        """Bytes due to the MCU by `now_ms`; b"" when none.

        While a split chunk is going out, each call returns one 1..3-byte piece (never glued to
        other bytes), so a driver that writes each result separately produces separate writes.
        """
        self._advance(now_ms)
        out = bytearray()
        while self._tx:
            if self._hold_until is not None:
                if not ms_reached(now_ms, self._hold_until):
                    break
                self._hold_until = None
            chunk = self._tx[0]
            if not chunk.piece:
                out += chunk.data
                self._tx.popleft()
                self._sent(chunk)
                continue
            if out:
                break  # a split piece is a write of its own: hand it over on the next call
            size = 1 + self._rng.next() % 3 if chunk.piece == SPLIT_RANDOM else chunk.piece
            out += chunk.data[:size]
            if len(chunk.data) > size:
                chunk.data = chunk.data[size:]
                if chunk.data == b"\n":
                    self._sent(chunk)  # the final code and its CR are out: it is answered
            else:
                self._tx.popleft()
                self._sent(chunk)
            self._hold_until = ms_add(now_ms, self.profile.split_gap_ms)
            break
        return bytes(out)

    def _sent(self, chunk: _TxChunk) -> None:
        """`chunk` is on the wire (but perhaps the LF that ends its last line)."""
        if chunk.answer_to is not None:
            self._observe("answered", chunk.answer_to)
            chunk.answer_to = None

    def next_deadline(self) -> int | None:
        """When `output()` next has something (absolute ms), None if idle."""
        deadline: int | None = None
        if self._tx:
            hold = self._hold_until
            deadline = hold if hold is not None and not ms_reached(self._clock, hold) \
                else self._clock
        for event in self._events:
            if deadline is None or ms_diff(event.due, deadline) < 0:
                deadline = event.due
        return deadline

    # --- control and fault injection ------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self._faults.append(_ArmedFault(fault, fault.count))

    def clear_faults(self) -> None:
        """Heal the module: no fault applies any more (e.g. a RESET pulse cured a hang)."""
        self._faults.clear()

    def send_downlink(self, topic: str, payload: bytes, now_ms: int) -> bool:
        """The cloud publishes to the device: `+MSUB: "<topic>",<n> byte,<payload>`.

        Delivered only while MQTT is connected and a subscription matches; otherwise dropped
        (counted in `downlinks_dropped`) and False is returned.
        """
        self._advance(now_ms)
        return self._deliver(topic, payload)

    def cloud_wall_ms(self) -> int:
        """The cloud's clock (Unix ms), for NTP."""
        if self._wall_clock_ms is not None:
            base = self._wall_clock_ms()
        else:
            base = SIM_EPOCH_MS + (ms_diff(self._clock, self._start_ms) & MS_MASK)
        return base + self.config.cloud_clock_offset_ms

    def property_set(self, params: dict[str, object], now_ms: int) -> str:
        """The cloud sets properties (`thing/service/property/set`); returns the request id."""
        topic, payload, request_id = self.cloud.property_set(dict(params))
        self.send_downlink(topic, payload, now_ms)
        return request_id

    def service_call(self, identifier: str, params: dict[str, object], now_ms: int) -> str:
        """The cloud calls a service (`thing/service/<identifier>`); returns the request id."""
        topic, payload, request_id = self.cloud.service_call(identifier, dict(params))
        self.send_downlink(topic, payload, now_ms)
        return request_id

    def rrpc_request(self, payload: bytes, now_ms: int, message_id: str | None = None) -> str:
        """An RRPC call (`rrpc/request/<messageId>`); the answer's timing is judged against
        `rrpc_timeout_ms` from now (`cloud.rrpc_answers`). Returns the messageId."""
        self._advance(now_ms)
        topic, message_id = self.cloud.rrpc_request(payload, self._clock, message_id)
        self._deliver(topic, payload)
        return message_id

    def _deliver(self, topic: str, payload: bytes) -> bool:
        """The cloud publishes to the device now (the clock has been advanced)."""
        if self._link != _LINK_MQTT_UP or not any(
            topic_matches(f, topic) for f in self._subscriptions
        ):
            self.downlinks_dropped += 1
            return False
        if self._server_gone:
            self.downlinks_dropped += 1  # the server closed the session: nothing comes
            return False
        self._schedule_link(ms_add(self._clock, self.profile.downlink_ms),
                            lambda: self._downlink(topic, payload))
        return True

    def _downlink(self, topic: str, payload: bytes) -> None:
        """A PUBLISH from the server reaches the module: push it as +MSUB, or cache it."""
        self._observe("downlink", topic, payload)
        cache_notice = self._take_fault({FaultKind.CACHE_NOTICE}) is not None
        if self._msg_cache_mode or cache_notice:
            slot = self._msg_cache_next
            self._msg_cache[slot] = (topic, payload)
            self._msg_cache_next = (slot + 1) % CACHE_SLOTS
            self._emit(_frame(f"+MSUB: {slot}"))
            return
        self._emit(b"\r\n" + self._msub_line(topic, payload) + b"\r\n")

    def _msub_line(self, topic: str, payload: bytes) -> bytes:
        """`+MSUB: "<topic>",<n> byte,<payload>`; in hex mode the payload as 2n hex digits."""
        header = f'+MSUB: "{topic}",{len(payload)} byte,'.encode()
        text = payload.hex().upper().encode("ascii") if self._hex_mode else payload
        lose = self._take_fault({FaultKind.LOSE_DOWNLINK})
        if lose is not None:
            text = _lose_bytes(text, lose.value)  # the header still counts them
        return header + text

    def expire_token(self) -> None:
        """The cloud forgets the issued iotToken (expiry, revocation): the next MCONNECT with it
        is refused, as Alibaba Cloud refuses a stale token."""
        self._grant = None

    def drop_mqtt(self, now_ms: int) -> None:
        """The server drops the link: CLOSED, MQTT state 0."""
        self._advance(now_ms)
        self._close_link(announce=True)

    def drop_mqtt_silently(self, now_ms: int) -> None:
        """The server closes the session and the module does not notice (firmware before V838:
        no CLOSED, MQTTSTATU still 1, nothing travels until AT+MIPCLOSE)."""
        self._advance(now_ms)
        if self._link == _LINK_MQTT_UP and not self._server_gone:
            self._server_gone = True
            self.server_closed_silently += 1
            self.session.disconnect()
            self._observe("link_down", "server closed the session silently")

    def detach(self, now_ms: int) -> None:
        """The network detaches: +CGATT: 0, bearer gone, MQTT closed; re-attach later."""
        self._advance(now_ms)
        self._radio_down(reattach_ms=self.profile.reattach_ms)

    def reboot(self, now_ms: int) -> None:
        """Power cycle: all module state lost; boot URCs and autobaud again."""
        self._advance(now_ms)
        self._boot_module()

    # --- observation ----------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        return self._attached

    @property
    def bearer_open(self) -> bool:
        return self._bearer_status == BEARER_CONNECTED

    @property
    def mqtt_state(self) -> int:
        """What AT+MQTTSTATU would say: 0 offline, 1 connected, 2 TCP up without MQTT."""
        return _STATU_OF_LINK[self._link]

    @property
    def subscribed(self) -> dict[str, int]:
        """Topic filter → QoS of every subscription acknowledged on the current link."""
        return dict(self._subscriptions)

    @property
    def trained(self) -> bool:
        """Has autobaud seen its "AT" since the last boot?"""
        return self._trained

    @property
    def booting(self) -> bool:
        return self._booting

    # --- time -----------------------------------------------------------------------------------

    def _schedule(self, due: int, fire: Callable[[], None]) -> None:
        self._seq += 1
        self._events.append(_Event(due & MS_MASK, self._seq, fire))

    def _schedule_link(self, due: int, fire: Callable[[], None]) -> None:
        """An event that is cancelled if the MQTT link closes before it is due."""
        epoch = self._link_epoch

        def guarded() -> None:
            if epoch == self._link_epoch:
                fire()

        self._schedule(due, guarded)

    def _advance(self, now_ms: int) -> None:
        """Fire every event due by `now_ms`, in time order, each at its own due time."""
        now = now_ms & MS_MASK
        while True:
            due = [e for e in self._events if ms_reached(now, e.due)]
            if not due:
                break
            event = min(due, key=lambda e: (ms_diff(e.due, now), e.seq))
            self._events.remove(event)
            self._clock = event.due
            event.fire()
        self._clock = now

    def _emit(self, data: bytes, piece: int = 0, answer_to: str | None = None) -> None:
        """Queue bytes on the UART (`piece`: how a split fault cuts them, see _TxChunk)."""
        if data:
            self._tx.append(_TxChunk(data, piece or self._split_everything(), answer_to))

    def _observe(self, kind: str, text: str = "", data: bytes = b"", number: int = 0) -> None:
        if self.observer is not None:
            self.observer(SimEvent(self._clock, kind, text, data, number))

    # --- boot and autobaud ----------------------------------------------------------------------

    def _boot_module(self) -> None:
        """Power-on (or reboot) at `self._clock`: everything the module knew is gone."""
        self._close_link(announce=False)  # the cloud sees the device vanish
        self._events.clear()  # answers and URCs of the previous life never come
        self._hold_until = None
        self.boots += 1
        self._observe("boot")
        self._booting = True
        self._trained = not self.config.autobaud
        self._prev_byte = 0
        self._line = bytearray()
        self._line_overflow = False
        self._after_cr = False
        self._download = None
        self._busy_until = self._clock
        self._cursor = self._clock
        self._split_piece = 0
        self._dup_final_for = None
        self._urc_inside_for = None
        self.echo = self.config.echo
        self._cfun = 1
        self._attached = False
        self._radio_epoch += 1
        self._bearer_status = BEARER_CLOSED
        self._bearer_ip = "0.0.0.0"
        self._bearer_epoch += 1
        self._http = _Http()
        self._mqtt_config = None
        self._hex_mode = False
        self._msg_cache_mode = False
        self._msg_cache = [None] * CACHE_SLOTS
        self._msg_cache_next = 0
        self._command_line = ""
        self._brownout_left = None
        self._coverage_at = self._clock
        self._schedule(ms_add(self._clock, self.profile.boot_ms), self._booted)

    def _booted(self) -> None:
        self._booting = False
        if self.config.boot_urcs:
            boot = _frame("RDY", "+CFUN: 1", "+CPIN: READY", "SMS Ready")
            if self._take_fault({FaultKind.NOISY_RDY}) is not None:
                boot = BOOT_NOISE + boot[2:]  # noise instead of the first line break
            self._emit(boot)
        cgatt0 = self._active_fault(FaultKind.CGATT0)
        no_coverage_ms = max(self.config.attach_after_ms, cgatt0.value if cgatt0 else 0)
        # No network before then, whatever the MCU does: cycling the radio does not help.
        self._coverage_at = ms_add(self._clock, no_coverage_ms)
        self._schedule_attach(max(no_coverage_ms, self.profile.attach_ms))

    def _schedule_attach(self, delay_ms: int) -> None:
        epoch = self._radio_epoch
        due = ms_add(self._clock, delay_ms)
        if ms_diff(self._coverage_at, due) > 0:
            due = self._coverage_at

        def attach() -> None:
            if epoch == self._radio_epoch and self._cfun == 1:
                self._attached = True

        self._schedule(due, attach)

    def _train(self, byte: int) -> None:
        """Autobaud: only an uppercase "AT" trains the UART; it starts the first command line."""
        if self._prev_byte == ord("A") and byte == ord("T"):
            self._trained = True
            self._line = bytearray(b"AT")
        else:
            self.rx_ignored += 1
            self._prev_byte = byte

    # --- command lines --------------------------------------------------------------------------

    def _end_of_line(self) -> None:
        raw = bytes(self._line)
        overflow = self._line_overflow
        self._line = bytearray()
        self._line_overflow = False
        text = raw.decode("latin-1")
        if not text.strip():
            return  # a bare CR: real modules say nothing
        self.commands.append(text)
        self._observe("command", text)
        if self.echo:
            self._emit(raw + b"\r")
        self._start_answer()
        if overflow:
            self._reply("ERROR")
        else:
            self._execute(text.strip())
        self._finish_answer()

    def _start_answer(self) -> None:
        """Answers go out one after another, each `answer_ms` after the later of now and the last
        one: a module works through its commands in order."""
        start = self._busy_until if ms_diff(self._busy_until, self._clock) > 0 else self._clock
        self._cursor = ms_add(start, self.profile.answer_ms)

    def _finish_answer(self) -> None:
        self._busy_until = self._cursor
        self._split_piece = 0

    def _execute(self, line: str) -> None:
        self._command_line = line
        replacing = self._take_fault(REPLACING_KINDS, line)
        if replacing is not None:
            if replacing.kind is FaultKind.ERROR:
                self._reply("ERROR")
            elif replacing.kind is FaultKind.CME:
                self._reply(f"+CME ERROR: {replacing.value}")
            elif replacing.kind is FaultKind.HTTP_ERROR:
                self._reply(f"ERROR: {replacing.value}")
            elif replacing.kind is FaultKind.REBOOT:
                self._later(0, self._boot_module)
            return  # SILENCE: nothing at all
        split = self._take_fault({FaultKind.SPLIT}, line, need_match=True)
        self._split_piece = 0 if split is None else split.value or SPLIT_RANDOM
        brownout = self._take_fault({FaultKind.BROWNOUT}, line)
        self._brownout_left = brownout.value if brownout is not None else None
        if self._take_fault({FaultKind.GARBAGE}, line) is not None:
            self._reply_raw(b"\r\n" + self._garbage() + b"\r\n")
        if self._take_fault({FaultKind.OVERLONG}, line) is not None:
            self._reply_raw(b"\r\n" + self._random_text(_ALNUM, OVERLONG_LINE).encode() + b"\r\n")
        # Armed until this command's final code goes out (for AT+HTTPDATA: after the body).
        if self._take_fault({FaultKind.DUP_FINAL}, line) is not None:
            self._dup_final_for = line
        if self._take_fault({FaultKind.URC_INSIDE}, line) is not None:
            self._urc_inside_for = line

        name, args = self._command_name(line)
        handler = _COMMANDS.get(name)
        if handler is None:
            self._reply("ERROR")
        else:
            handler(self, args)

        if self._take_fault({FaultKind.CLOSED}, line) is not None:
            self._later(0, lambda: self._close_link(announce=True))
        if self._take_fault({FaultKind.DETACH}, line) is not None:
            self._later(0, lambda: self._radio_down(reattach_ms=self.profile.reattach_ms))
        if self._take_fault({FaultKind.ME_DETACH}, line) is not None:
            self._later(0, lambda: self._radio_down(reattach_ms=self.profile.reattach_ms,
                                                    urcs=("+CGEV: ME DETACH",)))
        if self._take_fault({FaultKind.CGATT_DETACH}, line) is not None:
            self._later(0, lambda: self._radio_down(reattach_ms=self.profile.reattach_ms,
                                                    urcs=("+CGATT: 0",)))
        self._brownout_left = None

    @staticmethod
    def _command_name(line: str) -> tuple[str, str]:
        """('AT+SAPBR', '=1,1'), ('AT+CPIN', '?'), ('ATE0', ''); lines without AT → ('', line)."""
        upper = line.upper()
        if not upper.startswith("AT"):
            return "", line
        match = _COMMAND_NAME.match(upper)
        if match is None:
            return upper.rstrip(), ""  # basic commands (AT, ATE0, ATE1) have no arguments here
        return match.group(), line[match.end():]

    # The answer of the command being executed goes out at `_cursor`; follow-ups are relative to it.

    def _reply(self, *lines: str) -> None:
        self._reply_raw(_frame(*lines))

    def _reply_raw(self, data: bytes) -> None:
        piece = self._split_piece
        final = _final_line(data)
        answer_to = self._command_line if final is not None else None
        if final is not None and self._urc_inside_for == self._command_line:
            self._urc_inside_for = None
            cut = len(data) - len(final) - 4  # the final line's CR LF ... CR LF
            data = data[:cut] + _frame(INSIDE_URC) + data[cut:]
        duplicate = b""
        if final is not None and self._dup_final_for == self._command_line:
            self._dup_final_for = None
            duplicate = b"\r\n" + final + b"\r\n"  # right behind, but the answer is complete
        left = self._brownout_left
        if left is not None:
            # brownout: this much of the answer gets out, then the power dips and it reboots
            if left <= 0:
                return
            if len(data) > left:
                data, answer_to = data[:left], None  # cut short: no final code gets out
            self._brownout_left = left - len(data)
            if self._brownout_left <= 0:
                self._schedule(self._cursor, lambda: self._emit(data, piece, answer_to))
                self._schedule(self._cursor, self._boot_module)
                return
        self._schedule(self._cursor, lambda: self._emit(data, piece, answer_to))
        if duplicate:
            self._schedule(self._cursor, lambda: self._emit(duplicate, piece))

    def _later(self, delay_ms: int, fire: Callable[[], None]) -> None:
        self._schedule(ms_add(self._cursor, delay_ms), fire)

    def _later_link(self, delay_ms: int, fire: Callable[[], None]) -> None:
        self._schedule_link(ms_add(self._cursor, delay_ms), fire)

    def _urc(self, *lines: str) -> Callable[[], None]:
        data = _frame(*lines)
        return lambda: self._emit(data)

    # --- faults ---------------------------------------------------------------------------------

    def _take_fault(
        self, kinds: set[FaultKind] | frozenset[FaultKind], line: str | None = None,
        need_match: bool = False,
    ) -> Fault | None:
        """The first armed fault of one of `kinds` that applies (to `line`), consuming one use."""
        for armed in self._faults:
            fault = armed.fault
            if fault.kind not in kinds or armed.remaining == 0:
                continue
            if need_match and fault.match is None:
                continue
            if line is not None and not fault.matches(line):
                continue
            if armed.remaining is not None:
                armed.remaining -= 1
            self._observe("fault", str(fault))
            return fault
        return None

    def _active_fault(self, kind: FaultKind) -> Fault | None:
        """A permanent fault of `kind`, if any (not consumed)."""
        for armed in self._faults:
            if armed.fault.kind is kind and armed.remaining != 0:
                return armed.fault
        return None

    def _split_everything(self) -> int:
        """The piece size a split fault without MATCH imposes on all output (0: none)."""
        for armed in self._faults:
            if armed.fault.kind is FaultKind.SPLIT and armed.fault.match is None:
                return armed.fault.value or SPLIT_RANDOM
        return 0

    def _garbage(self) -> bytes:
        """Line noise: 4..12 random bytes, never CR or LF (so it stays one line)."""
        size = 4 + self._rng.next() % 9
        noise = bytearray()
        while len(noise) < size:
            byte = self._rng.next() & 0xFF
            if byte not in (0x0A, 0x0D):
                noise.append(byte)
        return bytes(noise)

    def _random_text(self, alphabet: str, size: int) -> str:
        return "".join(alphabet[self._rng.next() % len(alphabet)] for _ in range(size))

    # --- basic commands -------------------------------------------------------------------------

    def _cmd_at(self, args: str) -> None:
        self._reply("OK")

    def _cmd_echo_off(self, args: str) -> None:
        self.echo = False
        self._reply("OK")

    def _cmd_echo_on(self, args: str) -> None:
        self.echo = True
        self._reply("OK")

    def _cmd_cgmr(self, args: str) -> None:
        if args:
            self._reply("ERROR")
            return
        firmware = OLD_FIRMWARE if self._active_fault(FaultKind.OLD_FIRMWARE) \
            else self.config.firmware
        version = f'+CGMR: "{firmware}"' if self.config.cgmr_quoted else firmware
        self._reply(version, "OK")

    def _cmd_cpin(self, args: str) -> None:
        if args != "?":
            self._reply("ERROR")
            return
        self._reply("+CPIN: READY", "OK")

    def _cmd_csq(self, args: str) -> None:
        rssi = self.config.rssi if self._cfun == 1 else 99
        self._reply(f"+CSQ: {rssi},99", "OK")

    def _cmd_cgsn(self, args: str) -> None:
        if args not in ("", "=?"):
            self._reply("ERROR")
            return
        self._reply(*([self.config.imei] if not args else []), "OK")

    def _cmd_ccid(self, args: str) -> None:
        """AT+CCID: the ICCID as a bare line (the vendor manual)."""
        if args:
            self._reply("ERROR")
            return
        self._reply(self.config.iccid, "OK")

    def _cmd_iccid(self, args: str) -> None:
        """AT+ICCID: the same, as `+ICCID: <iccid>`."""
        if args:
            self._reply("ERROR")
            return
        self._reply(f"+ICCID: {self.config.iccid}", "OK")

    def _cmd_cops(self, args: str) -> None:
        if args != "?":
            self._reply("ERROR")  # selecting an operator is not simulated
            return
        if self._attached:
            self._reply(f'+COPS: 0,0,"{self.config.operator}",{self.config.access_technology}',
                        "OK")
        else:
            self._reply("+COPS: 0", "OK")

    def _registration(self) -> int:
        """27.007 <stat>: 1 registered (home), 2 searching, 0 not searching (radio off)."""
        if self._attached:
            return 1
        return 2 if self._cfun == 1 else 0

    def _cmd_cereg(self, args: str) -> None:
        if args != "?":
            self._reply("ERROR")  # registration URCs (AT+CEREG=<n>) are not simulated
            return
        self._reply(f"+CEREG: 0,{self._registration()}", "OK")

    def _cmd_cgreg(self, args: str) -> None:
        if args != "?":
            self._reply("ERROR")
            return
        self._reply(f"+CGREG: 0,{self._registration()}", "OK")

    def _cmd_cgatt(self, args: str) -> None:
        if args == "?":
            self._reply(f"+CGATT: {int(self._attached)}", "OK")
        elif args == "=1":
            if self._cfun == 1 and not self._attached:
                self._schedule_attach(self.profile.reattach_ms)
            self._reply("OK")
        elif args == "=0":
            self._reply("OK")
            self._later(0, lambda: self._radio_down(reattach_ms=None))
        else:
            self._reply("ERROR")

    def _cmd_cfun(self, args: str) -> None:
        mode = args.replace(" ", "")
        if mode == "?":
            self._reply(f"+CFUN: {self._cfun}", "OK")
        elif mode == "=1,1":
            self._reply("OK")
            self._later(1, self._boot_module)
        elif mode == "=1":
            self._reply("OK")
            if self._cfun != 1:
                self._cfun = 1
                self._schedule_attach(self.profile.reattach_ms)
        elif mode in ("=0", "=4"):
            self._cfun = int(mode[1:])
            self._reply("OK")
            self._later(0, lambda: self._radio_down(reattach_ms=None))
        else:
            self._reply("ERROR")

    def _cmd_reset(self, args: str) -> None:
        self._reply("OK")
        self._later(1, self._boot_module)

    # --- network --------------------------------------------------------------------------------

    def _radio_down(self, reattach_ms: int | None, urcs: tuple[str, ...] | None = None) -> None:
        """Detached from the network (by it, or by CFUN/CGATT): bearer and MQTT link go too.

        `urcs`: what the module says (default +PDP DEACT, +SAPBR 1: DEACT and CLOSED); given,
        only those lines (`+CGEV: ME DETACH`) and the link goes silently.
        """
        self._attached = False
        self._radio_epoch += 1
        if urcs is None:
            said = ["+PDP DEACT"]
            if self._bearer_status == BEARER_CONNECTED:
                said.append("+SAPBR 1: DEACT")
            self._close_bearer()
            self._emit(_frame(*said))
            self._close_link(announce=True)
        else:
            self._close_bearer()
            self._emit(_frame(*urcs))
            self._close_link(announce=False)
        if reattach_ms is not None:
            self._schedule_attach(reattach_ms)

    def _close_bearer(self) -> None:
        self._bearer_status = BEARER_CLOSED
        self._bearer_ip = "0.0.0.0"
        self._bearer_epoch += 1  # an HTTP request in flight now ends with 601

    def _cmd_sapbr(self, args: str) -> None:
        parts = split_args(args[1:]) if args.startswith("=") else []
        if len(parts) < 2 or parts[1].strip() != "1":
            self._reply("ERROR")
            return
        action = parts[0].strip()
        if action == "3" and len(parts) == 4:
            self._reply("OK")  # CONTYPE / APN: any value will do on the simulated network
        elif action == "1" and len(parts) == 2:
            if not self._attached or self._bearer_status == BEARER_CONNECTED:
                self._reply("ERROR")
                return
            # The OK comes only once the bearer is up, so this answer takes longer.
            self._cursor = ms_add(self._cursor, self.profile.bearer_open_ms)
            self._bearer_status = BEARER_CONNECTED
            self._bearer_ip = f"10.{self._rng.next() % 256}.{self._rng.next() % 256}." \
                              f"{1 + self._rng.next() % 254}"
            self._reply("OK")
        elif action == "2" and len(parts) == 2:
            self._reply(f'+SAPBR: 1,{self._bearer_status},"{self._bearer_ip}"', "OK")
        elif action == "0" and len(parts) == 2:
            if self._bearer_status != BEARER_CONNECTED:
                self._reply(f"+CME ERROR: {CME_NOT_ALLOWED}")
                return
            self._close_bearer()
            self._reply("OK")
            self._later(0, lambda: self._close_link(announce=True))
        else:
            self._reply("ERROR")

    # --- HTTP and the auth server ---------------------------------------------------------------

    def _cmd_httpinit(self, args: str) -> None:
        if args or self._http.initialised:
            self._reply("ERROR")
            return
        self._http = _Http(initialised=True)
        self._reply("OK")

    def _cmd_httpterm(self, args: str) -> None:
        # OK even when nothing was initialised (PROTOCOL.md lists only OK): it is the MCU's
        # "make sure HTTP is clean" step. A pending request's URC is cancelled.
        self._http = _Http()
        self._reply("OK")

    def _cmd_httppara(self, args: str) -> None:
        parts = split_args(args[1:]) if args.startswith("=") else []
        if not self._http.initialised or len(parts) != 2:
            self._reply("ERROR")
            return
        key, value = parts[0].strip().upper(), parts[1]
        if key == "URL":
            self._http.url = value
        elif key == "USER_DEFINED":
            self._http.user_defined = value
        elif key == "CONTENT":
            self._http.content = value
        self._reply("OK")

    def _cmd_httpdata(self, args: str) -> None:
        parts = split_args(args[1:]) if args.startswith("=") else []
        size = _int_arg(parts[0]) if len(parts) == 2 else None
        wait_ms = _int_arg(parts[1]) if len(parts) == 2 else None
        if (not self._http.initialised or size is None or wait_ms is None or size < 1
                or not 1000 <= wait_ms <= 120000):
            self._reply("ERROR")
            return
        self._reply("DOWNLOAD")
        download = _Download(size)
        self._download = download

        def timed_out() -> None:
            if self._download is download:  # the MCU sent fewer bytes than it announced
                self._download = None
                self._emit(_frame("ERROR"))

        self._later(wait_ms, timed_out)

    def _take_download(self, data: bytes) -> int:
        """Feed raw body bytes; returns how many were consumed."""
        download = self._download
        assert download is not None
        used = min(len(data), download.size - len(download.body))
        download.body += data[:used]
        if len(download.body) == download.size:
            self._download = None
            self._http.body = bytes(download.body)
            self._start_answer()
            self._reply("OK")
            self._finish_answer()
        return used

    def _cmd_httpaction(self, args: str) -> None:
        method = _int_arg(args[1:]) if args.startswith("=") else None
        if method not in (0, 1, 2) or not self._http.initialised or self._http.action_pending:
            self._reply("ERROR")
            return
        self._reply("OK")
        http = self._http
        http.action_pending = True
        http.response = None
        bearer_epoch = self._bearer_epoch
        bearer_up = self._bearer_status == BEARER_CONNECTED
        forced = self._take_fault({FaultKind.HTTP})

        def done() -> None:
            if self._http is not http:
                return  # HTTPTERM or a reboot got there first
            http.action_pending = False
            if not bearer_up or bearer_epoch != self._bearer_epoch:
                status, body = HTTP_NETWORK_ERROR, b""
            elif forced is not None:
                status, body = forced.value, b""
            else:
                status, body = self._serve_http(http, method)
            http.response = body
            self._emit(_frame(f"+HTTPACTION: {method},{status},{len(body)}"))

        self._later(self.profile.http_action_ms, done)

    def _serve_http(self, http: _Http, method: int | None) -> tuple[int, bytes]:
        """The far end of the HTTP request: (HTTP status, body)."""
        url = urlsplit(http.url)
        host = url.hostname or ""
        config = self.config
        expected = urlsplit(aliyun.auth_url(config.region, config.instance_id))
        register = urlsplit(aliyun.register_url(config.region))
        known = (host.startswith("iot-auth.") and host.endswith(".aliyuncs.com")) or (
            host.endswith(".auth." + aliyun.INSTANCE_DOMAIN))
        if not known:
            return HTTP_DNS_ERROR, b""
        if url.scheme != "https" or url.path not in (expected.path, register.path):
            return 404, b""
        if method != 1:
            return 405, b""
        if url.path == register.path:
            self.register_requests += 1
            code = 5001 if host != register.hostname else self._check_register_form(http)
            forced = self._take_fault({FaultKind.AUTH})
            return 200, self._register_reply(code if forced is None else forced.value)
        self.auth_requests += 1
        code = 5001 if host != expected.hostname else self._check_auth_form(http)
        forced = self._take_fault({FaultKind.AUTH})
        if forced is not None:
            code = forced.value
        return 200, self._auth_reply(code, http.body or b"")

    def timestamp_ok(self, text: str | None) -> bool:
        """A request's timestamp (Unix ms, as text) is within the window of the cloud's clock;
        True when none was given or the cloud has no clock."""
        if text is None or self.cloud_clock_ms is None:
            return True
        if not text.isdigit() or len(text) > 20:
            return False
        return abs(int(text) - self.cloud_clock_ms()) <= self.config.timestamp_window_ms

    def _check_register_form(self, http: _Http) -> int:
        """The register server's verdict: 200, 460 (bad form, sign), 5001 (unknown device),
        6288 (registration off), 6289 (already active)."""
        content_type_ok = (http.user_defined == CONTENT_TYPE_HEADER
                           or http.content == FORM_CONTENT_TYPE)
        if not content_type_ok or not http.body:
            return 460
        ok, reason, params = cloud.verify_register_body(http.body, self.config.product_secret)
        if params is None or not ok and reason.startswith("missing"):
            return 460
        if (params["productKey"] != self.config.product_key
                or params["deviceName"] != self.config.device_name):
            return 5001
        if self.config.product_secret is None:
            return REGISTER_DISABLED_CODE
        if not ok:
            return 460 if reason.startswith("unknown") else 401
        if self.device_activated:
            return REGISTER_REFUSED_CODE
        return 200

    def _register_reply(self, code: int) -> bytes:
        config = self.config
        data: dict[str, object] = {}
        message = "success"
        if code == 200:
            # Each registration refreshes the device's secret (the cloud keeps the last).
            self.device_secret = self._random_text(_ALNUM, 32)
            self.registrations += 1
            self._observe("registered", self.device_secret)
            data = {"productKey": config.product_key, "deviceName": config.device_name,
                    "deviceSecret": self.device_secret}
        else:
            message = {REGISTER_REFUSED_CODE: "device already active",
                       REGISTER_DISABLED_CODE: "dynamic registration is off"}.get(
                code, aliyun.AUTH_ERRORS.get(code, "error"))
        reply = {"code": code, "data": data, "message": message}
        return json.dumps(reply, separators=(",", ":")).encode("ascii")

    @property
    def broker_host(self) -> str:
        """The one MQTT host that answers: the configured one, the instance's, or legacy."""
        config = self.config
        return config.broker_host or aliyun.mqtt_host(config.product_key, config.region,
                                                      config.instance_id)

    def _check_auth_form(self, http: _Http) -> int:
        """Alibaba Cloud's verdict on the form: 200, 401, 460 or 5001."""
        content_type_ok = (http.user_defined == CONTENT_TYPE_HEADER
                           or http.content == FORM_CONTENT_TYPE)
        if not content_type_ok or not http.body:
            return 460  # without the form Content-Type the server sees no parameters
        try:
            params = cloud.parse_auth_form(http.body)
        except ValueError:
            return 460
        if any(not params.get(name) for name in cloud.REQUIRED_AUTH_PARAMS):
            return 460
        if len(params["clientId"]) > 64:
            return 460
        if (params["productKey"] != self.config.product_key
                or params["deviceName"] != self.config.device_name):
            return 5001
        ok, reason = cloud.verify_auth_body(http.body, self.device_secret)
        if not ok:
            return 460 if reason.startswith("unknown signmethod") else 401
        if not self.timestamp_ok(params.get("timestamp")):
            return TIMESTAMP_REFUSED_CODE  # a replayed (or badly clocked) request
        return 200

    def _auth_reply(self, code: int, body: bytes) -> bytes:
        if code != 200:
            message = aliyun.AUTH_ERRORS.get(code, "error")
            reply: dict[str, object] = {"code": code, "data": {}, "message": message}
        else:
            try:
                params = cloud.parse_auth_form(body)
            except ValueError:  # only when auth=200 was forced on a broken form
                params = {}
            grant = _Grant(
                client_id=params.get("clientId", self.config.device_name),
                iot_id=self._random_text(_ALNUM, 20) + "00" + self._random_text(_HEX, 6) + "00",
                iot_token=self._random_text(_HEX, 32),
                issued_at=self._clock,
            )
            self._grant = grant
            self.issued_tokens.append((grant.iot_id, grant.iot_token))
            self._observe("grant", "\t".join((grant.client_id, grant.iot_id, grant.iot_token)))
            data: dict[str, object] = {"iotId": grant.iot_id, "iotToken": grant.iot_token}
            if params.get("resources") == "mqtt":
                data["resources"] = {"mqtt": {"host": self.broker_host, "port": aliyun.MQTT_PORT}}
            reply = {"code": 200, "data": data, "message": "success"}
        return json.dumps(reply, separators=(",", ":")).encode("ascii")

    def _cmd_httpread(self, args: str) -> None:
        body = self._http.response
        if body is None:
            self._reply("ERROR")
            return
        if args.startswith("="):
            parts = split_args(args[1:])
            start = _int_arg(parts[0])
            size = _int_arg(parts[1]) if len(parts) > 1 else None
            if start is None or size is None:
                self._reply("ERROR")
                return
            body = body[start:start + size]
        # Length header, the raw bytes (may hold CR, LF, commas), then OK.
        header = _frame(f"+HTTPREAD: {len(body)}")
        lose = self._take_fault({FaultKind.LOSE}, self._command_line)
        if lose is not None:
            body = _lose_bytes(body, lose.value)  # the UART drops them; the header still counts
        self._reply_raw(header + body + b"\r\nOK\r\n")

    # --- MQTT -----------------------------------------------------------------------------------

    def _close_link(self, announce: bool) -> None:
        """The MQTT/TCP link is gone; pending link events are cancelled."""
        if self._link == _LINK_IDLE:
            return
        if self._link == _LINK_MQTT_UP and not self._server_gone:
            self.session.disconnect()
        self._server_gone = False
        self._link = _LINK_IDLE
        self._observe("link_down")
        self._link_epoch += 1
        self._subscriptions.clear()
        if announce:
            self._emit(_frame("CLOSED"))

    def _cmd_mconfig(self, args: str) -> None:
        parts = split_args(args[1:]) if args.startswith("=") else []
        if len(parts) != 3 or any(len(p) > MAX_CREDENTIAL or not p for p in parts):
            self._reply("ERROR")
            return
        self._mqtt_config = (parts[0], parts[1], parts[2])
        self._reply("OK")

    def _cmd_sslmipstart(self, args: str) -> None:
        parts = split_args(args[1:]) if args.startswith("=") else []
        if len(parts) != 2 or _int_arg(parts[1]) is None:
            self._reply("ERROR")
            return
        self._reply("OK")
        if self._link != _LINK_IDLE:
            self._later(self.profile.answer_ms, self._urc("ALREADY CONNECT"))
            return
        right_place = parts[0] == self.broker_host and _int_arg(parts[1]) == aliyun.MQTT_PORT
        unreachable = self._take_fault({FaultKind.CONNECT_FAIL}) is not None
        if not right_place or self._bearer_status != BEARER_CONNECTED or unreachable:
            self._later(self.profile.connect_ms, self._urc("CONNECT FAIL"))
            return
        self._link = _LINK_TCP_OPENING
        self._later_link(self.profile.connect_ms, self._tcp_connected)

    def _tcp_connected(self) -> None:
        self._link = _LINK_TCP_UP
        self._emit(_frame("CONNECT OK"))

        def too_slow() -> None:
            if self._link == _LINK_TCP_UP:  # no MQTT CONNECT came: the server hangs up
                self._close_link(announce=True)

        self._schedule_link(ms_add(self._clock, self.config.connect_window_ms), too_slow)

    def _credentials_accepted(self) -> bool:
        config = self._mqtt_config
        if config is not None and "|" in config[0]:
            return self._direct_sign_accepted(*config)
        grant = self._grant
        if grant is None or config != (grant.client_id, grant.iot_id, grant.iot_token):
            return False
        lifetime = self.config.token_lifetime_ms
        return not lifetime or ms_diff(self._clock, grant.issued_at) < lifetime

    def _direct_sign_accepted(self, client_id: str, username: str, password: str) -> bool:
        """A direct-sign CONNECT (`id|securemode=2,signmethod=...,timestamp=...|`, `dn&pk`,
        the HMAC): the cloud's check, through `sim.cloud`."""
        ok, _reason, timestamp = cloud.verify_mqtt_sign(
            client_id, username, password, self.config.product_key, self.config.device_name,
            self.device_secret)
        return ok and self.timestamp_ok(timestamp)

    def _cmd_mconnect(self, args: str) -> None:
        parts = split_args(args[1:]) if args.startswith("=") else []
        clean = _int_arg(parts[0]) if len(parts) == 2 else None
        keepalive = _int_arg(parts[1]) if len(parts) == 2 else None
        if clean not in (0, 1) or keepalive is None or not 30 <= keepalive <= 1200:
            self._reply("ERROR")
            return
        if self._link in (_LINK_IDLE, _LINK_TCP_OPENING):
            self._reply(f"+CME ERROR: {CME_OPERATION_FAILED}")  # no TCP link to speak MQTT on
            return
        if self._link != _LINK_TCP_UP:
            self._reply("ERROR")  # already connected or connecting
            return
        self._reply("OK")
        self._link = _LINK_MQTT_OPENING
        accepted = self._credentials_accepted()
        config = self._mqtt_config

        refused_anyway = self._take_fault({FaultKind.CONNACK_REFUSED}) is not None

        def connack() -> None:
            if refused_anyway:
                self._emit(_frame("ERROR"))  # refused; this firmware says no more ...
                self._close_link(announce=False)  # ... while the server drops the link
            elif accepted and config is not None:
                self._link = _LINK_MQTT_UP
                self._server_gone = False
                self._keepalive_s = keepalive
                self.device_activated = True  # no more dynamic registration for it
                self.session.connect(config[0], config[1], config[2], clean == 1, keepalive)
                self._emit(_frame("CONNACK OK"))
                self._observe("connack")
                self._device_packet()
            else:
                self._emit(_frame("ERROR"))  # CONNACK refused (bad username or password) ...
                self._close_link(announce=True)  # ... and the server closes the connection

        self._later_link(self.profile.connack_ms, connack)

    @property
    def firmware_version(self) -> int:
        """The number after `_V` in the firmware name AT+CGMR reports (0 if none)."""
        match = _FIRMWARE_VERSION.search(self.config.firmware)
        return int(match.group(1)) if match else 0

    def _device_packet(self) -> None:
        """The device sent the server an MQTT packet: the session's keepalive starts over.

        From V838 the module pings by itself, so the server never times the session out.
        Before, a session with no packet for 1.5x its keepalive is closed by the server, and the
        module neither notices nor reports CLOSED (vendor changelog, V838)."""
        self._packet_seq += 1
        if self.firmware_version >= FIRMWARE_HEARTBEAT or self._server_gone:
            return
        seq = self._packet_seq
        num, den = KEEPALIVE_GRACE
        grace_ms = self._keepalive_s * 1000 * num // den

        def expire() -> None:
            if seq == self._packet_seq and self._link == _LINK_MQTT_UP:
                self._server_gone = True
                self.server_closed_silently += 1
                self.session.disconnect()
                self._observe("link_down", "server closed the session silently")

        self._schedule_link(ms_add(self._clock, grace_ms), expire)

    def _cmd_msub(self, args: str) -> None:
        parts = split_args(args[1:]) if args.startswith("=") else []
        qos = _int_arg(parts[1]) if len(parts) == 2 else None
        if qos not in (0, 1) or not parts[0] or self._link != _LINK_MQTT_UP:
            self._reply("ERROR")
            return
        topic = parts[0]
        self._reply("OK")
        if self._server_gone:
            return  # SUBSCRIBE into a closed session: no SUBACK ever
        self._device_packet()

        def suback() -> None:
            self._subscriptions[topic] = qos
            self.session.subscribe(topic, qos)
            self._emit(_frame("SUBACK"))

        self._later_link(self.profile.suback_ms, suback)

    def _cmd_munsub(self, args: str) -> None:
        parts = split_args(args[1:]) if args.startswith("=") else []
        if len(parts) != 1 or not parts[0] or self._link != _LINK_MQTT_UP:
            self._reply("ERROR")
            return
        topic = parts[0]
        self._reply("OK")
        if self._server_gone:
            return
        self._device_packet()

        def unsuback() -> None:
            self._subscriptions.pop(topic, None)
            self.session.unsubscribe(topic)
            self._emit(_frame("UNSUBACK"))

        self._later_link(self.profile.suback_ms, unsuback)

    def _cmd_mqttmsgset(self, args: str) -> None:
        if args == "?":
            self._reply(f"+MQTTMSGSET: {int(self._msg_cache_mode)}", "OK")
        elif args in ("=0", "=1"):
            # 0: inbound messages pushed as +MSUB URCs (the default here); 1: cached, announced
            # as +MSUB: <slot>, read with AT+MQTTMSGGET (vendor AT manual)
            self._msg_cache_mode = args == "=1"
            self._reply("OK")
        else:
            self._reply("ERROR")

    def _cmd_mqttmsgget(self, args: str) -> None:
        if args == "?":
            self._reply(*(f"+MQTTMSGGET: {i},{'INVALID' if m is None else 'VALID'}"
                          for i, m in enumerate(self._msg_cache)), "OK")
            return
        if args:
            self._reply("ERROR")
            return
        # Every cached message, oldest first, as the +MSUB line push mode would have sent.
        lines = b""
        for k in range(CACHE_SLOTS):
            slot = (self._msg_cache_next + k) % CACHE_SLOTS
            message = self._msg_cache[slot]
            if message is not None:
                lines += b"\r\n" + self._msub_line(*message) + b"\r\n"
                self._msg_cache[slot] = None
        self._reply_raw(lines + _frame("OK"))

    def _cmd_mqttmode(self, args: str) -> None:
        if args not in ("=0", "=1"):
            self._reply("ERROR")
            return
        self._hex_mode = args == "=1"
        self._reply("OK")

    def _cmd_mpub(self, args: str) -> None:
        match = _MPUB_ARGS.fullmatch(args[1:]) if args.startswith("=") else None
        if match is None or self._link != _LINK_MQTT_UP:
            self._reply("ERROR")
            return
        topic, qos, retain, text = match.group(1), int(match.group(2)), int(match.group(3)), \
            match.group(4)
        limit = self.config.max_publish_text
        payload = self._decode_message(text)
        # A raw quote inside the message means the MCU forgot to escape it: the module's
        # argument parser would have cut the message there.
        if (not topic or qos not in (0, 1) or retain not in (0, 1) or payload is None
                or (limit and len(text) > limit)):
            self._reply("ERROR")
            return
        self._reply("OK")
        if self._server_gone:
            return  # into a session the server has closed: lost, and no PUBACK
        self._device_packet()
        self.published.append((topic, payload, qos))
        self._observe("published", topic, payload, qos)
        self.session.publish(topic, payload, qos, retain == 1)
        answers = self.cloud.on_publish(topic, payload, self._cursor, self.cloud_wall_ms())
        if qos == 0:
            self._cloud_answers(answers, 0)
            return
        if self._take_fault({FaultKind.PUBACK_LOST}) is not None:
            self._cloud_answers(answers, 0)  # the cloud got it: only the PUBACK is lost
            return
        delay = self.profile.puback_ms
        if self._take_fault({FaultKind.PUBACK_LATE}) is not None:
            delay *= PUBACK_LATE_FACTOR

        def puback() -> None:
            self._emit(_frame("PUBACK"))
            self._observe("puback", data=payload)

        self._later_link(delay, puback)
        self._cloud_answers(answers, delay)

    def _cloud_answers(self, answers: list[tuple[str, bytes]], after_ms: int) -> None:
        """What the Alink cloud says to a publish (a post_reply, an NTP response), after
        `after_ms` (the PUBACK comes first)."""
        for topic, payload in answers:
            self._later_link(after_ms, self._delivery(topic, payload))

    def _delivery(self, topic: str, payload: bytes) -> Callable[[], None]:
        def deliver() -> None:
            self._deliver(topic, payload)

        return deliver

    def _decode_message(self, text: str) -> bytes | None:
        """The MPUB message: `\\XX` hex escapes in text mode, hex digits in AT+MQTTMODE=1."""
        if '"' in text:
            return None
        raw = text.encode("latin-1")
        if self._hex_mode:
            try:
                return bytes.fromhex(text)
            except ValueError:
                return None
        return _ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), raw)

    def _cmd_mqttstatu(self, args: str) -> None:
        if args:
            self._reply("ERROR")
            return
        self._reply(f"+MQTTSTATU :{self.mqtt_state}", "OK")  # sic: space before the colon

    def _cmd_mdisconnect(self, args: str) -> None:
        if self._link == _LINK_MQTT_UP:
            if not self._server_gone:
                self.session.disconnect()
            self._server_gone = False
            self._link = _LINK_TCP_UP  # MQTT over; the TCP link stays until AT+MIPCLOSE
            self._link_epoch += 1
            self._subscriptions.clear()
        self._reply("OK")

    def _cmd_mipclose(self, args: str) -> None:
        if self._link == _LINK_IDLE:
            self._reply(f"+CME ERROR: {CME_OPERATION_FAILED}")
            return
        self._close_link(announce=False)
        self._reply("OK")


# Command name → handler. The name is "AT+XXX" (arguments follow) or a whole basic command.
_COMMANDS: dict[str, Callable[[SimModule, str], None]] = {
    "AT": SimModule._cmd_at,
    "ATE0": SimModule._cmd_echo_off,
    "ATE1": SimModule._cmd_echo_on,
    "AT+CGMR": SimModule._cmd_cgmr,
    "AT+CPIN": SimModule._cmd_cpin,
    "AT+CSQ": SimModule._cmd_csq,
    "AT+CGSN": SimModule._cmd_cgsn,
    "AT+CCID": SimModule._cmd_ccid,
    "AT+ICCID": SimModule._cmd_iccid,
    "AT+COPS": SimModule._cmd_cops,
    "AT+CEREG": SimModule._cmd_cereg,
    "AT+CGREG": SimModule._cmd_cgreg,
    "AT+CGATT": SimModule._cmd_cgatt,
    "AT+CFUN": SimModule._cmd_cfun,
    "AT+RESET": SimModule._cmd_reset,
    "AT+SAPBR": SimModule._cmd_sapbr,
    "AT+HTTPINIT": SimModule._cmd_httpinit,
    "AT+HTTPTERM": SimModule._cmd_httpterm,
    "AT+HTTPPARA": SimModule._cmd_httppara,
    "AT+HTTPDATA": SimModule._cmd_httpdata,
    "AT+HTTPACTION": SimModule._cmd_httpaction,
    "AT+HTTPREAD": SimModule._cmd_httpread,
    "AT+MCONFIG": SimModule._cmd_mconfig,
    "AT+SSLMIPSTART": SimModule._cmd_sslmipstart,
    "AT+MCONNECT": SimModule._cmd_mconnect,
    "AT+MSUB": SimModule._cmd_msub,
    "AT+MUNSUB": SimModule._cmd_munsub,
    "AT+MQTTMSGSET": SimModule._cmd_mqttmsgset,
    "AT+MQTTMSGGET": SimModule._cmd_mqttmsgget,
    "AT+MQTTMODE": SimModule._cmd_mqttmode,
    "AT+MPUB": SimModule._cmd_mpub,
    "AT+MQTTSTATU": SimModule._cmd_mqttstatu,
    "AT+MDISCONNECT": SimModule._cmd_mdisconnect,
    "AT+MIPCLOSE": SimModule._cmd_mipclose,
}
