"""The connection machine, declared once as data.

Everything about the machine lives in the tables below: the states, each state's AT step script,
each state's retry policy and escalation target, and the link-loss edges that can interrupt any
state. From these tables come

- the `transitions.Machine` the controllers run (`shared_machine`: one per table),
- the state and sequence diagrams (`airfsm.tools.diagram`),
- the edge list a C port compiles into a `const` array (`edges()`).

Nobody writes the list of states or edges twice. C twin: the generated
`port/c/generated/airfsm_table.h` and `.c` (`airfsm ctable`) hold the data - `Step` and `Policy`
as structs, `MACHINE` as a `const` array, the URC table, `next[state][trigger]` - and
`port/c/core/table.c` the few functions below (`expand`, `urc_id`, `link_priority`).

Reading a row: the controller runs the state's steps in order. Each step sends `command`, waits up
to `timeout_ms` for the final result code, optionally waits `urc_timeout_ms` more for one of
`urc_ok` (or fails on one of `urc_fail`), then judges the answer with `check`. A judgement is one
of `Outcome`: PASS (next step), NOT_YET (send the same step again after `poll_ms`, at most
`poll_limit` times), FAIL (retry the whole state after backoff, `retries` times, then escalate to
`on_exhausted`), REJECTED (like FAIL, but when retries run out the credentials are wrong: FAILED),
FATAL (FAILED at once: no retry can help).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airfsm.core import aliyun, payload
from airfsm.core.codes import Check, Cond, Placeholder, State, Trigger, UrcKind
from airfsm.core.settings import (
    APN_MAX,
    BODY_CAPACITY,
    BODY_WINDOW_MS,
    CMD_CAPACITY,
    MAX_KEEPALIVE_S,
    PORT_RANGE,
    QOS_RANGE,
)
from airfsm.core.textparse import put_uint

if TYPE_CHECKING:
    # Imported when a Machine is first built (`build_machine`), not with the table: the data
    # is read by programs that never run a machine (`airfsm publish`, the C generator).
    from transitions import Machine

COND_DESCRIPTIONS = {
    Cond.RESET_REQUESTED: "only after an edge that resets the module",
    Cond.RETRYING: "only when the state runs again after a failure",
    Cond.UNREGISTERED: "a ProductSecret and no DeviceSecret yet",
    Cond.DIRECT_SIGN: "auth = mqtt-sign",
}


MIN_FIRMWARE = 409  # "AirM2M_Air72xUy_V409_LTE_AT": older builds cannot do Alibaba Cloud
# From V838 the module sends MQTT PINGREQ itself and reports CLOSED when the server closes;
# before it, the controller keeps the session alive (docs/FIRMWARE.md).
FIRMWARE_HEARTBEAT = 838


# The one URC table: every unsolicited line the module sends, matched as a prefix at the start
# of a line, first match wins (so a specific prefix comes before the general one it extends). The
# AT channel reads it to tell URCs from answers (`airfsm.core.at`), the controller to act on them
# (by the row's kind and trigger), the steps to name the URCs they wait for (PROTOCOL.md "URCs").
@dataclass(frozen=True)
class Urc:
    prefix: bytes
    kind: UrcKind
    trigger: Trigger | None = None  # LINK: the link event the line raises
    # Never the answer line of a command, whatever command is in flight: AT+HTTPACTION=1 answers
    # OK and then reports +HTTPACTION as a URC; had that URC raced ahead of the OK it would
    # otherwise vanish into the response while the controller waits for it.
    urc_only: bool = False


# fmt: off
URCS: tuple[Urc, ...] = (
    # boot: the module (re)started - RDY means it lost every state it had
    Urc(b"RDY", UrcKind.LINK, Trigger.REBOOTED),
    Urc(b"+CFUN:", UrcKind.BOOT),
    Urc(b"+CPIN:", UrcKind.BOOT),
    Urc(b"SMS Ready", UrcKind.BOOT),
    # registration, attach and bearer
    Urc(b"+CGATT: 0", UrcKind.LINK, Trigger.BEARER_LOST),
    Urc(b"+CGATT:0", UrcKind.LINK, Trigger.BEARER_LOST),
    Urc(b"+CGATT:", UrcKind.NOTICE),
    Urc(b"+CGREG:", UrcKind.NOTICE),
    Urc(b"+CEREG:", UrcKind.NOTICE),
    Urc(b"+PDP DEACT", UrcKind.LINK, Trigger.BEARER_LOST),
    Urc(b"+CGEV: NW PDN DEACT", UrcKind.LINK, Trigger.BEARER_LOST),
    Urc(b"+CGEV: ME PDN DEACT", UrcKind.LINK, Trigger.BEARER_LOST),
    # 3GPP TS 27.007 +CGEV: the packet domain detached, by the module or by the network
    Urc(b"+CGEV: ME DETACH", UrcKind.LINK, Trigger.BEARER_LOST),
    Urc(b"+CGEV: NW DETACH", UrcKind.LINK, Trigger.BEARER_LOST),
    Urc(b"+CGEV:", UrcKind.NOTICE),
    Urc(b"+SAPBR 1: DEACT", UrcKind.LINK, Trigger.BEARER_LOST),
    # HTTP
    Urc(b"+HTTPACTION:", UrcKind.STEP, urc_only=True),
    # TLS/TCP link and MQTT session
    Urc(b"CONNECT OK", UrcKind.STEP),
    Urc(b"CONNECT FAIL", UrcKind.STEP),
    Urc(b"ALREADY CONNECT", UrcKind.STEP),
    Urc(b"STATE:", UrcKind.NOTICE),
    Urc(b"CLOSED", UrcKind.LINK, Trigger.MQTT_LOST),
    Urc(b"CONNACK OK", UrcKind.STEP),
    Urc(b"SUBACK", UrcKind.STEP),
    Urc(b"UNSUBACK", UrcKind.NOTICE),
    Urc(b"PUBACK", UrcKind.PUBACK),
    Urc(b"+MSUB:", UrcKind.MSUB, urc_only=True),
    # A final code is never taken for a URC by its prefix; the channel reports it as this row
    # only after the OK of a command that asked for it (AT+MCONNECT: OK, then ERROR if refused).
    Urc(b"ERROR", UrcKind.FINAL),
)
# fmt: on
URC_NONE = -1  # "no row of URCS": a line no row matches


def urc_id(prefix: bytes | str, urcs: Sequence[Urc] = URCS) -> int:
    """The index in `urcs` of the row whose prefix is exactly `prefix`; URC_NONE if none.

    C: table_urc_id()."""
    key = prefix.encode("ascii") if isinstance(prefix, str) else prefix
    for index, row in enumerate(urcs):
        if row.prefix == key:
            return index
    return URC_NONE


def _check_urcs(urcs: Sequence[Urc]) -> None:
    """Python only (no C twin)."""
    for index, row in enumerate(urcs):
        if not row.prefix:
            raise ValueError("a URC row with an empty prefix would match every line")
        if (row.kind == UrcKind.LINK) != (row.trigger is not None):
            raise ValueError(f"URC {row.prefix!r}: a LINK row raises a trigger, no other does")
        for earlier in urcs[:index]:
            if row.prefix.startswith(earlier.prefix) and earlier.kind != UrcKind.FINAL:
                raise ValueError(f"URC {row.prefix!r} can never match: {earlier.prefix!r} "
                                 "comes first")


_check_urcs(URCS)


# Command templates. A step's `command` is written with `{name}` placeholders (readable in the
# table and the diagrams); when the step is made it is split into pieces - literal bytes and
# Placeholder codes - and `expand` fills them into the controller's command buffer, each value
# at most PLACEHOLDER_MAX of its placeholder (the C header exports the bounds).
Piece = bytes | Placeholder
CONTENT_TYPE = "Content-Type: application/x-www-form-urlencoded"  # the space matters (seed)
# Each bound is what makes a longer value impossible (C comments: the generated header).
PLACEHOLDER_MAX: dict[Placeholder, int] = {
    Placeholder.APN: APN_MAX,  # Settings.validate
    Placeholder.AUTH_URL: max(len(aliyun.auth_url("r" * aliyun.MAX_REGION_LEN)),
                              len(aliyun.auth_url(instance_id="i" * aliyun.MAX_INSTANCE_ID_LEN))),
    Placeholder.CONTENT_TYPE: len(CONTENT_TYPE),
    Placeholder.BODY_LEN: len(str(BODY_CAPACITY)),  # the auth body fits BODY_CAPACITY
    Placeholder.BODY_WINDOW_MS: len(str(BODY_WINDOW_MS[1])),  # digits, Settings.validate
    # DeviceIdentity.validate (or the name's), with the direct sign's |securemode=...| after it
    Placeholder.CLIENT_ID: aliyun.MAX_MQTT_CLIENT_ID_LEN,
    Placeholder.IOT_ID: aliyun.MAX_CREDENTIAL_LEN,  # parse_auth_reply
    Placeholder.IOT_TOKEN: aliyun.MAX_CREDENTIAL_LEN,
    Placeholder.MQTT_HOST: aliyun.MAX_HOST_LEN,  # a DNS name (parse_auth_reply, instance_id)
    Placeholder.MQTT_PORT: len(str(PORT_RANGE[1])),
    Placeholder.KEEPALIVE_S: len(str(MAX_KEEPALIVE_S)),
    Placeholder.SUB_TOPIC: payload.MAX_TOPIC,  # Settings.validate
    Placeholder.SUB_QOS: len(str(QOS_RANGE[1])),
    Placeholder.TOPIC: payload.MAX_TOPIC,  # payload.put_mpub
    Placeholder.QOS: len(str(max(payload.QOS_LEVELS))),
    Placeholder.MESSAGE: payload.MAX_PAYLOAD_TEXT,  # escapes, or two hex digits a byte, included
    Placeholder.REGISTER_URL: len(aliyun.register_url("r" * aliyun.MAX_REGION_LEN)),
}
EXPAND_FAILED = -1  # expand(): a value over its bound, or no room in the buffer


def split_template(template: str) -> tuple[Piece, ...]:
    """`AT+SAPBR=3,1,"APN","{apn}"` -> (b'AT+SAPBR=3,1,"APN","', Placeholder.APN, b'"').

    ValueError for an unknown `{name}` or an unpaired brace: a table that cannot be expanded
    never gets made. C: the generated table holds the pieces.
    """
    pieces: list[Piece] = []
    rest = template
    while rest:
        open_at = rest.find("{")
        close_at = rest.find("}")
        if open_at < 0:
            if close_at >= 0:
                raise ValueError(f"template {template!r}: '}}' without '{{'")
            pieces.append(rest.encode("ascii"))
            break
        if close_at < open_at:
            raise ValueError(f"template {template!r}: unpaired brace")
        if open_at:
            pieces.append(rest[:open_at].encode("ascii"))
        name = rest[open_at + 1:close_at]
        if name.upper() not in Placeholder.__members__ or name != name.lower():
            raise ValueError(f"template {template!r}: unknown placeholder {{{name}}}")
        pieces.append(Placeholder[name.upper()])
        rest = rest[close_at + 1:]
    return tuple(pieces)


def expanded_max(pieces: Sequence[Piece]) -> int:
    """The longest command the pieces can expand to (each value at its bound).

    C: table_expanded_max()."""
    return sum(PLACEHOLDER_MAX[p] if isinstance(p, Placeholder) else len(p) for p in pieces)


def expand(pieces: Sequence[Piece], values: Sequence[bytes | int], out: bytearray) -> int:
    """Write the command into `out`; its length, or EXPAND_FAILED when a value is over its
    placeholder's bound or the command would not leave one byte of `out` for its CR.

    `values[p]` is the value of Placeholder p: bytes, or an int written as decimal digits.
    C: table_expand() (a switch on the placeholder's kind).
    """
    room = len(out) - 1  # the CR the AT channel puts after the command
    n = 0
    for piece in pieces:
        if isinstance(piece, Placeholder):
            value = values[piece]
            if isinstance(value, int):
                end = put_uint(out, n, value, min(room, n + PLACEHOLDER_MAX[piece]))
                if end < 0:
                    return EXPAND_FAILED
                n = end
                continue
            text = value
            if len(text) > PLACEHOLDER_MAX[piece]:
                return EXPAND_FAILED
        else:
            text = piece
        end = n + len(text)
        if end > room:
            return EXPAND_FAILED
        out[n:end] = text  # C: memcpy
        n = end
    return n


@dataclass(frozen=True)
class Step:
    name: str
    command: str  # a template: {apn}, {auth_url}, {body_len}, {client_id}, ... (controller fills)
    check: Check = Check.OK
    timeout_ms: int = 2_000  # for the final result code
    urc_ok: tuple[str, ...] = ()  # after OK, wait for one of these URCs
    urc_fail: tuple[str, ...] = ()  # ... and fail at once on one of these
    urc_timeout_ms: int = 0
    prompt: bool = False  # the command answers DOWNLOAD: send the auth body, then wait for OK
    poll_ms: int = 0  # NOT_YET: send again after this long ...
    poll_limit: int = 0  # ... at most this many times, then FAIL
    on_fail: Trigger | None = None  # a failure of this step fires this at once instead of RETRY
    when: Cond = Cond.ALWAYS
    settle_ms: int = 0  # after it passes, wait this long before the next step
    # Sent once for each subscription (Settings.subscriptions), {sub_topic} each topic in turn;
    # the step passes when the last one has. (The keepalive: the next topic each time.)
    per_topic: bool = False
    # Derived when the step is made (C: what the generated table holds): the command's pieces,
    # the rows of URCS that urc_ok and urc_fail name, and whether one of them is a bare final
    # code the channel must pass on after the OK rather than count as stray.
    pieces: tuple[Piece, ...] = field(init=False, repr=False, compare=False)
    urc_ok_ids: tuple[int, ...] = field(init=False, repr=False, compare=False)
    urc_fail_ids: tuple[int, ...] = field(init=False, repr=False, compare=False)
    final_urc: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """C: none: the generated table holds what this derives."""
        object.__setattr__(self, "pieces", split_template(self.command))
        ok = _urc_ids(self.name, self.urc_ok)
        fail = _urc_ids(self.name, self.urc_fail)
        object.__setattr__(self, "urc_ok_ids", ok)
        object.__setattr__(self, "urc_fail_ids", fail)
        object.__setattr__(self, "final_urc",
                           any(URCS[i].kind == UrcKind.FINAL for i in (*ok, *fail)))


def _urc_ids(step: str, names: tuple[str, ...]) -> tuple[int, ...]:
    """The URCS rows a step names; a name that is no row would never be reported to it.

    Python only (no C twin)."""
    ids = tuple(urc_id(name) for name in names)
    if URC_NONE in ids:
        raise ValueError(f"step {step}: {names[ids.index(URC_NONE)]!r} is not in URCS")
    return ids


@dataclass(frozen=True)
class Policy:
    retries: int  # re-runs of the state after a FAIL before it escalates
    backoff_base_ms: int  # first retry waits about this long ...
    backoff_cap_ms: int  # ... doubling up to this (equal jitter; base == cap: fixed)
    on_exhausted: State
    reset_on_exhausted: bool = False  # send AT+RESET on the way (the module itself is suspect)
    # Before escalating: pulse the module's RESET pin (where the board has one) and run the
    # state again, this many times. An AT command cannot reset a module that does not answer.
    hardware_resets: int = 0


@dataclass(frozen=True)
class Branch:
    """Another way out of a state: when `instead_of` (DONE or EXHAUSTED) would fire and `when`
    holds, `trigger` fires instead and leads to `dest`. An edge of its own, so the diagrams
    draw it and the C header holds it; the first branch whose condition holds wins."""

    instead_of: Trigger
    when: Cond
    trigger: Trigger
    dest: State


@dataclass(frozen=True)
class StateSpec:
    state: State
    steps: tuple[Step, ...]
    policy: Policy | None  # None: no steps to retry (ONLINE, FAILED)
    next: State | None  # where DONE goes
    summary: str
    branches: tuple[Branch, ...] = ()


# fmt: off
def https_post(url: str, reply: Check) -> tuple[Step, ...]:
    """The module's HTTPS POST of a form, as HTTP_AUTH and PROVISION both send it: `url` is the
    URL's placeholder, `reply` the check of the body AT+HTTPREAD returns."""
    return (
        # Clears an HTTP session a previous attempt left open; ERROR when none is fine.
        Step("term_stale", "AT+HTTPTERM", Check.ANY, timeout_ms=2_000),
        Step("init", "AT+HTTPINIT", Check.OK, timeout_ms=5_000),
        Step("url", f'AT+HTTPPARA="URL","{url}"', Check.OK, timeout_ms=5_000),
        Step("header", 'AT+HTTPPARA="USER_DEFINED","{content_type}"', Check.OK,
             timeout_ms=5_000),
        Step("data", "AT+HTTPDATA={body_len},{body_window_ms}", Check.OK, timeout_ms=5_000,
             prompt=True),
        Step("action", "AT+HTTPACTION=1", Check.HTTP_STATUS, timeout_ms=5_000,
             urc_ok=("+HTTPACTION:",), urc_timeout_ms=20_000),
        Step("read", "AT+HTTPREAD", reply, timeout_ms=5_000),
        Step("term", "AT+HTTPTERM", Check.ANY, timeout_ms=2_000),
    )


MACHINE: tuple[StateSpec, ...] = (
    StateSpec(
        State.AUTOBAUD,
        steps=(
            Step("reset", "AT+RESET", Check.ANY, timeout_ms=2_000, when=Cond.RESET_REQUESTED),
            # Uppercase "AT" trains the module's autobaud; no answer until it has locked on.
            Step("at", "AT", Check.OK, timeout_ms=300),
        ),
        # About one "AT" every 500 ms for 90 s: the vendor's "nothing after ~90 s" limit, then
        # "hold RESET low >= 150 ms and start over" (needs a reset pin), then give up.
        policy=Policy(retries=180, backoff_base_ms=200, backoff_cap_ms=200,
                      on_exhausted=State.FAILED, hardware_resets=3),
        next=State.VERSION_CHECK,
        summary="train the UART: AT until OK",
    ),
    StateSpec(
        State.VERSION_CHECK,
        steps=(
            Step("cgmr", "AT+CGMR", Check.VERSION, timeout_ms=2_000),
            # What the module says about itself and its network, for operators (status, as
            # `mmcli -m 0` shows it): informational checks, recorded when answered; no answer
            # fails nothing.
            Step("imei", "AT+CGSN", Check.IMEI, timeout_ms=2_000),
        ),
        policy=Policy(retries=3, backoff_base_ms=1_000, backoff_cap_ms=8_000,
                      on_exhausted=State.AUTOBAUD),
        next=State.ATTACH,
        summary="firmware V409 or newer",
    ),
    StateSpec(
        State.ATTACH,
        steps=(
            # Not attached on the first try: cycle the radio (the vendor's advice) before
            # polling again; the module re-registers from scratch. Switching it off may fail
            # harmlessly (it stays on); switching it back on must not: a radio left off would
            # only be polled for +CGATT: 1 in vain, so its failure fails the attempt (the
            # state's policy then escalates: AT+RESET, which powers the radio up again).
            Step("radio_off", "AT+CFUN=4", Check.ANY, timeout_ms=10_000, settle_ms=5_000,
                 when=Cond.RETRYING),
            Step("radio_on", "AT+CFUN=1", Check.OK, timeout_ms=10_000, when=Cond.RETRYING),
            # SIM busy or absent is polled a bounded number of times, never forever.
            Step("cpin", "AT+CPIN?", Check.SIM_READY, timeout_ms=5_000, poll_ms=1_000,
                 poll_limit=20),
            # The vendor manual has AT+CCID (a bare line) and AT+ICCID (`+ICCID: ...`); the
            # check reads either form.
            Step("iccid", "AT+CCID", Check.ICCID, timeout_ms=2_000),
            Step("csq", "AT+CSQ", Check.SIGNAL, timeout_ms=2_000),
            Step("cgatt", "AT+CGATT?", Check.ATTACHED, timeout_ms=2_000, poll_ms=2_000,
                 poll_limit=60),
            # Attached: the network it registered on, and how (EPS: an LTE Cat.1 module).
            Step("operator", "AT+COPS?", Check.OPERATOR, timeout_ms=2_000),
            Step("registration", "AT+CEREG?", Check.REGISTRATION, timeout_ms=2_000),
        ),
        policy=Policy(retries=1, backoff_base_ms=5_000, backoff_cap_ms=5_000,
                      on_exhausted=State.AUTOBAUD, reset_on_exhausted=True),
        next=State.BEARER,
        summary="SIM ready, packet domain attached (+CGATT: 1)",
    ),
    StateSpec(
        State.BEARER,
        steps=(
            Step("contype", 'AT+SAPBR=3,1,"CONTYPE","GPRS"', Check.OK, timeout_ms=5_000),
            Step("apn", 'AT+SAPBR=3,1,"APN","{apn}"', Check.OK, timeout_ms=5_000),
            Step("open", "AT+SAPBR=1,1", Check.BEARER_OPEN, timeout_ms=30_000),
            Step("query", "AT+SAPBR=2,1", Check.BEARER_QUERY, timeout_ms=5_000, poll_ms=1_000,
                 poll_limit=10),
        ),
        policy=Policy(retries=3, backoff_base_ms=1_000, backoff_cap_ms=16_000,
                      on_exhausted=State.ATTACH),
        next=State.HTTP_AUTH,
        summary="open the IP bearer (SAPBR profile 1)",
        # A device that has only its ProductSecret registers first; one that signs its MQTT
        # CONNECT itself needs no HTTPS pre-auth.
        branches=(
            Branch(Trigger.DONE, Cond.UNREGISTERED, Trigger.REGISTER, State.PROVISION),
            Branch(Trigger.DONE, Cond.DIRECT_SIGN, Trigger.DIRECT_SIGN, State.MQTT_CONNECT),
        ),
    ),
    StateSpec(
        State.HTTP_AUTH,
        steps=https_post("{auth_url}", Check.AUTH_REPLY),
        policy=Policy(retries=5, backoff_base_ms=2_000, backoff_cap_ms=60_000,
                      on_exhausted=State.BEARER),
        next=State.MQTT_CONNECT,
        summary="HTTPS pre-auth: sign -> iotId + iotToken",
    ),
    StateSpec(
        State.MQTT_CONNECT,
        steps=(
            # A half-open TCP link from a previous session would make MCONNECT fail; 767 when
            # nothing is open is expected.
            Step("close_stale", "AT+MIPCLOSE", Check.ANY, timeout_ms=5_000),
            Step("config", 'AT+MCONFIG="{client_id}","{iot_id}","{iot_token}"', Check.OK,
                 timeout_ms=5_000),
            # Inbound messages as +MSUB URCs, not kept in the module's 4-slot cache (where a
            # message arriving right after CONNACK would wait, announced as `+MSUB: <slot>`).
            # Before the link: nothing may come between CONNECT OK and MCONNECT. A firmware that
            # refuses it keeps its default; a cache notice is still read in ONLINE.
            Step("msgset", "AT+MQTTMSGSET=0", Check.ANY, timeout_ms=5_000),
            Step("tcp", 'AT+SSLMIPSTART="{mqtt_host}",{mqtt_port}', Check.OK, timeout_ms=10_000,
                 urc_ok=("CONNECT OK", "ALREADY CONNECT"), urc_fail=("CONNECT FAIL", "CLOSED"),
                 urc_timeout_ms=15_000),
            # Sent the moment CONNECT OK arrives: the server drops an idle TLS link quickly.
            # A refused CONNECT answers OK, then a bare ERROR (vendor manual, AT+MCONNECT).
            Step("connect", "AT+MCONNECT=1,{keepalive_s}", Check.OK, timeout_ms=10_000,
                 urc_ok=("CONNACK OK",), urc_fail=("ERROR", "CLOSED"), urc_timeout_ms=10_000,
                 on_fail=Trigger.TOKEN_REJECTED),
            Step("subscribe", 'AT+MSUB="{sub_topic}",{sub_qos}', Check.OK, timeout_ms=5_000,
                 urc_ok=("SUBACK",), urc_fail=("CLOSED",), urc_timeout_ms=10_000,
                 per_topic=True),
        ),
        policy=Policy(retries=5, backoff_base_ms=2_000, backoff_cap_ms=60_000,
                      on_exhausted=State.HTTP_AUTH),
        next=State.ONLINE,
        summary="TLS to the MQTT broker, CONNACK, subscribe",
        # With the direct sign there is no token to fetch again: open the bearer afresh.
        branches=(
            Branch(Trigger.EXHAUSTED, Cond.DIRECT_SIGN, Trigger.SIGN_EXHAUSTED, State.BEARER),
        ),
    ),
    StateSpec(
        State.ONLINE,
        steps=(),
        policy=None,
        next=None,
        summary="publish queue, +MSUB inbound, liveness probe",
    ),
    StateSpec(State.FAILED, steps=(), policy=None, next=None,
              summary="terminal: the reason says why"),
    # Dynamic registration: the HTTP commands of HTTP_AUTH, posting the register form (signed
    # with the ProductSecret) to /auth/register/device; the reply's deviceSecret goes to the
    # host (`on_registered`), which keeps it, so the next start skips this state. A refusal
    # (the device is already registered) is retried like an auth rejection, then FAILED.
    StateSpec(
        State.PROVISION,
        steps=https_post("{register_url}", Check.REGISTER_REPLY),
        policy=Policy(retries=5, backoff_base_ms=2_000, backoff_cap_ms=60_000,
                      on_exhausted=State.BEARER),
        next=State.HTTP_AUTH,
        summary="dynamic registration: ProductSecret -> DeviceSecret (once)",
        branches=(
            Branch(Trigger.DONE, Cond.DIRECT_SIGN, Trigger.DIRECT_SIGN, State.MQTT_CONNECT),
        ),
    ),
)

# Entering a state other than FAILED by one of these triggers (an escalation or a link loss:
# anything but DONE and RETRY) counts one escalation. The first ESCALATIONS_WITHOUT_BACKOFF of
# them since ONLINE last held for liveness_ms are immediate, later ones back off within
# ESCALATION_BACKOFF_MS, so a flapping link cannot hammer the network.
# (A branch taken instead of DONE, REGISTER or DIRECT_SIGN, is progress like DONE.)
ESCALATING_TRIGGERS = frozenset(t for t in Trigger if t not in (
    Trigger.DONE, Trigger.RETRY, Trigger.REGISTER, Trigger.DIRECT_SIGN))
ESCALATIONS_WITHOUT_BACKOFF = 1
ESCALATION_BACKOFF_MS = (1_000, 120_000)

# The liveness probe of ONLINE, in the same form as the steps so it is drawn and ported alike.
LIVENESS_PROBE = Step("probe", "AT+MQTTSTATU", Check.MQTT_STATUS, timeout_ms=5_000)
# Firmware before V838 sends no PINGREQ: the controller sends an MQTT packet itself when the
# server has acknowledged nothing for 3/4 of the keepalive. Re-sending the subscription is that
# packet: SUBSCRIBE is answered (SUBACK), so it also proves the session alive - which AT+MQTTSTATU
# cannot on such firmware, as it reports no CLOSED - and it publishes nothing into the cloud's
# topics or rules (a QoS0 publish would, and has no answer). Re-subscribing is idempotent
# (MQTT 3.1.1 3.8.4). No SUBACK within urc_timeout_ms: the session is dead (mqtt_lost). With
# several subscriptions each keepalive re-subscribes the next one: one packet is all it needs.
SESSION_KEEPALIVE = Step("keepalive", 'AT+MSUB="{sub_topic}",{sub_qos}', Check.OK,
                         timeout_ms=5_000, urc_ok=("SUBACK",), urc_timeout_ms=10_000,
                         per_topic=True)
KEEPALIVE_FRACTION = (3, 4)  # of the keepalive: leaves a quarter for a busy channel
# `+MSUB: <slot>` (the module cached a message after all): read the cache. It answers each
# message as a `+MSUB: "<topic>",<n> byte,<payload>` line, then OK (vendor AT manual
# MQTTMSGGET, and its MQTT guide's example).
CACHE_READ = Step("msgget", "AT+MQTTMSGGET", Check.OK, timeout_ms=5_000)
# The payload mode of AT+MPUB and +MSUB: hex for a payload a quoted AT string cannot carry.
HEX_MODE = Step("hex_mode", "AT+MQTTMODE=1", Check.OK, timeout_ms=5_000)
TEXT_MODE = Step("text_mode", "AT+MQTTMODE=0", Check.OK, timeout_ms=5_000)
# Shutting down: end the MQTT session politely.
DISCONNECT = Step("disconnect", "AT+MDISCONNECT", Check.ANY, timeout_ms=5_000)
# The signal, read again after each liveness probe so the status shows a fresh one (the time
# of the reading beside it), not the one ATTACH saw days ago.
SIGNAL_REFRESH = Step("signal", "AT+CSQ", Check.SIGNAL, timeout_ms=2_000)
ONLINE_STEPS = (LIVENESS_PROBE, SESSION_KEEPALIVE, CACHE_READ, HEX_MODE, TEXT_MODE, DISCONNECT,
                SIGNAL_REFRESH)
# Publishing the outbox head: not a step, since its timeout is a setting (publish_timeout_ms)
# and its message is escaped or hex-encoded as it is written (`payload.put_mpub` writes exactly
# these pieces; the C header exports them).
MPUB_TEMPLATE = 'AT+MPUB="{topic}",{qos},0,"{message}"'
MPUB_PIECES = split_template(MPUB_TEMPLATE)


@dataclass(frozen=True)
class LinkEvent:
    """An event that interrupts whatever a state is doing (a URC of URCS, the port, a timer)."""

    trigger: Trigger
    sources: tuple[State, ...]
    dest: State
    reset_module: bool  # AT+RESET on entering dest
    # Several in one tick: the highest wins, as the bigger loss implies the smaller ones (a
    # reboot loses the bearer, a lost bearer loses the MQTT session).
    priority: int


_AFTER_AUTOBAUD = (State.VERSION_CHECK, State.ATTACH, State.BEARER, State.PROVISION,
                   State.HTTP_AUTH, State.MQTT_CONNECT, State.ONLINE)
_NETWORK_STATES = (State.PROVISION, State.HTTP_AUTH, State.MQTT_CONNECT, State.ONLINE)
LINK_EVENTS: tuple[LinkEvent, ...] = (
    LinkEvent(Trigger.MQTT_LOST, (State.ONLINE,), State.MQTT_CONNECT, False, priority=1),
    LinkEvent(Trigger.BEARER_LOST, (State.BEARER, *_NETWORK_STATES), State.ATTACH, False,
              priority=2),
    LinkEvent(Trigger.REBOOTED, _AFTER_AUTOBAUD, State.AUTOBAUD, False, priority=3),
    LinkEvent(Trigger.PORT_LOST, (State.AUTOBAUD, *_AFTER_AUTOBAUD), State.AUTOBAUD, False,
              priority=4),
    LinkEvent(Trigger.WATCHDOG, (State.AUTOBAUD, *_AFTER_AUTOBAUD[:-1]), State.AUTOBAUD, True,
              priority=0),
)
# fmt: on


def _check_command_room(table: Sequence[StateSpec]) -> None:
    """Every command of the table fits the controller's command buffer, CR included.

    Python only (no C twin)."""
    for step in (*(s for row in table for s in row.steps), *ONLINE_STEPS):
        if expanded_max(step.pieces) + 1 > CMD_CAPACITY:
            raise ValueError(f"step {step.name}: its command may exceed CMD_CAPACITY")
    if expanded_max(MPUB_PIECES) + 1 > CMD_CAPACITY:
        raise ValueError("AT+MPUB may exceed CMD_CAPACITY")
    literals = tuple(p for p in MPUB_PIECES if isinstance(p, bytes))
    if literals != payload.MPUB_LITERALS or expanded_max(MPUB_PIECES) != payload.MPUB_MAX:
        raise ValueError("MPUB_TEMPLATE is not what payload.put_mpub writes")


_check_command_room(MACHINE)


def spec(state: State) -> StateSpec:
    """Python only (no C twin)."""
    return MACHINE[state]


def link_priority(trigger: Trigger) -> int:
    """How much a link event outranks others raised in the same tick (0: not a link event).

    C: table_link_priority()."""
    for event in LINK_EVENTS:
        if event.trigger == trigger:
            return event.priority
    return 0


@dataclass(frozen=True)
class Edge:
    """One edge of the machine: what the transitions Machine, the diagrams and C all use."""

    trigger: Trigger
    source: State
    dest: State
    reset_module: bool = False  # AT+RESET is sent on entering dest

    @property
    def trigger_name(self) -> str:
        """C: none: the generated trigger name table."""
        return self.trigger.name.lower()


def edges(table: Sequence[StateSpec] = MACHINE) -> list[Edge]:
    """Every edge of the machine, in a stable order, each (source, trigger) exactly once.

    C: none: the generated edge array."""
    out: list[Edge] = []
    for row in table:
        if row.next is not None:
            out.append(Edge(Trigger.DONE, row.state, row.next))
        if row.policy is not None:
            pol = row.policy
            out.append(Edge(Trigger.RETRY, row.state, row.state))
            if pol.hardware_resets:
                out.append(Edge(Trigger.HARDWARE_RESET, row.state, row.state))
            out.append(Edge(Trigger.EXHAUSTED, row.state, pol.on_exhausted,
                            pol.reset_on_exhausted))
            if _can_be_fatal(row) and pol.on_exhausted != State.FAILED:
                out.append(Edge(Trigger.FATAL, row.state, State.FAILED))
        for branch in row.branches:
            out.append(Edge(branch.trigger, row.state, branch.dest))
        for step in row.steps:
            if step.on_fail is not None and step.on_fail != Trigger.RETRY:
                dest = _ON_FAIL_DEST[step.on_fail]
                edge = Edge(step.on_fail, row.state, dest)
                if edge not in out:
                    out.append(edge)
    for event in LINK_EVENTS:
        for source in event.sources:
            if any(s.state == source for s in table):
                out.append(Edge(event.trigger, source, event.dest, event.reset_module))
    return out


# Where a step's own `on_fail` trigger leads (the step table names the trigger, this its target).
_ON_FAIL_DEST = {Trigger.TOKEN_REJECTED: State.HTTP_AUTH}


def _can_be_fatal(row: StateSpec) -> bool:
    """Some answer of the state can mean "no retry will help": old firmware, credentials or a
    registration refused for good, or a direct-sign CONNECT refused (the step that would fetch
    a fresh token, TOKEN_REJECTED, has none to fetch). C: none: used to generate the table."""
    return any(s.check in (Check.VERSION, Check.AUTH_REPLY, Check.REGISTER_REPLY)
               or s.on_fail == Trigger.TOKEN_REJECTED for s in row.steps)


def branch_for(row: StateSpec, trigger: Trigger, holds: Callable[[Cond], bool]) -> Trigger:
    """The trigger that fires when `trigger` would: the first branch of the row instead of it
    whose condition holds, else `trigger` itself. C: table_branch()."""
    for branch in row.branches:
        if branch.instead_of == trigger and holds(branch.when):
            return branch.trigger
    return trigger


def edge_table(table: Sequence[StateSpec] = MACHINE) -> dict[tuple[State, Trigger], Edge]:
    """(source, trigger) -> edge: the lookup the controller does before firing a trigger.

    C: none: the generated next[state][trigger]."""
    return {(e.source, e.trigger): e for e in edges(table)}


def build_machine(
    model: Any,
    on_change: Callable[[Any], None] | None,
    table: Sequence[StateSpec] = MACHINE,
    machine_class: type[Machine] | None = None,
    **kwargs: Any,
) -> Machine:
    """A `transitions` machine with one state per row and one transition per edge.

    Self-loops (RETRY, HARDWARE_RESET) are reflexive (`dest="="`): leaving and re-entering the
    state re-runs its script. `on_change` is called after every change with transitions'
    EventData (None: no callback; the controller acts on the change itself). `model` may be
    None: models are then added with `add_model`. `machine_class` defaults to transitions'
    Machine (the diagrams pass GraphMachine).
    Python only (no C twin).
    """
    if machine_class is None:
        from transitions import Machine as TransitionsMachine

        machine_class = TransitionsMachine
    transitions = [
        {
            "trigger": e.trigger_name,
            "source": e.source.name,
            "dest": "=" if e.source == e.dest else e.dest.name,
        }
        for e in edges(table)
    ]
    return machine_class(
        model=model,
        states=[row.state.name for row in table],
        transitions=transitions,
        initial=table[0].state.name,
        auto_transitions=False,
        send_event=True,
        after_state_change=on_change,
        model_attribute="fsm_state",
        **kwargs,
    )


# One Machine per table, shared by every controller of that table (each adds its own small
# model): building one costs ~200 us and ~40 KiB. With model_override, transitions binds on a
# model only what its class declares (`trigger`), not a method per trigger and per state: a
# model then costs under 1 KiB. The edge lookup is shared alike. Keyed by the table's id, with
# the table kept alive beside them so that the id stays its own.
_SHARED: dict[int, tuple[Sequence[StateSpec], Machine, dict[tuple[State, Trigger], Edge]]] = {}


def _shared(table: Sequence[StateSpec]) -> tuple[Machine, dict[tuple[State, Trigger], Edge]]:
    """Python only (no C twin)."""
    entry = _SHARED.get(id(table))
    if entry is None or entry[0] is not table:
        machine = build_machine(None, None, table, model_override=True)
        entry = (table, machine, edge_table(table))
        _SHARED[id(table)] = entry
    return entry[1], entry[2]


def shared_machine(table: Sequence[StateSpec] = MACHINE) -> Machine:
    """The `transitions` Machine of `table`, built the first time it is asked for, without a
    model of its own (controllers `add_model` theirs; a model must declare `trigger`). The C
    twin has no Machine: it steps `next[state][trigger]`, generated from the same edges.

    Python only (no C twin)."""
    return _shared(table)[0]


def shared_edges(table: Sequence[StateSpec] = MACHINE) -> dict[tuple[State, Trigger], Edge]:
    """`edge_table(table)`, made once per table (read only: every controller of it reads it).

    Python only (no C twin)."""
    return _shared(table)[1]
