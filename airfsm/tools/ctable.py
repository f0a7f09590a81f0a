"""`airfsm ctable`: the Python core's tables as C, for the MCU port (`port/c/generated/`).

Two files come out, committed and checked fresh by `make test` (`airfsm ctable --check DIR`):

- `airfsm_table.h`: types, enums, `#define`d numbers and `extern` declarations only;
- `airfsm_table.c`: the one definition of every table (linked once, not copied into every
  translation unit that includes the header).

What goes into them is `EXPORTS`, near the end of this file: one entry per enum class, group of
constants or table, in header order. A `Codes` entry is an enum with its name strings, a
`Constants` entry a group of numbers and texts, a `Table` entry some data and the render function
that spells it in C (one per section, below). Every entry also gives a canonical text of its data;
the SHA-256 of those texts is the table's hash (`AIRFSM_TABLE_HASH`), so firmware can tell whether
it was built from the current table. The hash covers data, not spelling: a changed comment in the
generated C leaves it alone, a changed timeout does not.

Every number and text comes from the core that uses it: the enums from `airfsm.core.codes`, the
machine, the URC table, the template pieces and their bounds, the ONLINE commands and the
escalation rule from `airfsm.core.table`, what each check reads from `airfsm.core.judge`, the
buffer sizes and the settings' ranges from `airfsm.core.settings`, the AT channel's markers from
`airfsm.core.at`. Nothing is declared here twice: only the C spelling and the comments the C
reader gets (`PLACEHOLDER_BOUNDS`: what enforces each placeholder's maximum).

Arrays indexed by an enum use designated initializers (`[AIRFSM_STATE_BEARER] = ...`), so a C
reader sees which row is which and a reordered enum cannot shift the rows.

Reading order: the C spelling, one render function per section, the export list, then
generating, writing and checking the files.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from enum import IntEnum
from pathlib import Path
from typing import Any, Protocol

from airfsm.core import aliyun, at, payload
from airfsm.core.codes import (
    AtResult,
    AuthMode,
    Check,
    Cond,
    FailReason,
    LogEvent,
    OutboxCall,
    OutboxStatus,
    Outcome,
    Placeholder,
    Purpose,
    Reason,
    State,
    Trigger,
    UrcKind,
)
from airfsm.core.controller import IDLE_RECHECK_MS, LOST_PORT_RECHECK_MS, MAX_READ_PER_TICK
from airfsm.core.judge import ANSWERS, CheckAnswer
from airfsm.core.online import STORE_BACKOFF_MS
from airfsm.core.settings import (
    BODY_CAPACITY,
    CMD_CAPACITY,
    DATA_CAPACITY,
    INFO_ARENA,
    INFO_TEXT_MAX,
    LINE_CAPACITY,
    MAX_INFO_LINES,
    MAX_SUBSCRIPTIONS,
    OUTBOX_RING,
    READ_CHUNK,
    SETTING_RANGES,
    SettingRange,
    Settings,
)
from airfsm.core.table import (
    CONTENT_TYPE,
    ESCALATING_TRIGGERS,
    ESCALATION_BACKOFF_MS,
    ESCALATIONS_WITHOUT_BACKOFF,
    FIRMWARE_HEARTBEAT,
    KEEPALIVE_FRACTION,
    LINK_EVENTS,
    MACHINE,
    MIN_FIRMWARE,
    MPUB_PIECES,
    MPUB_TEMPLATE,
    ONLINE_STEPS,
    PLACEHOLDER_MAX,
    URCS,
    Edge,
    LinkEvent,
    Piece,
    StateSpec,
    Step,
    Urc,
    edges,
    expanded_max,
)
from airfsm.core.textparse import MAX_UINT_DIGITS
from airfsm.tools import fresh

HEADER_NAME = "airfsm_table.h"
SOURCE_NAME = "airfsm_table.c"
DEFAULT_DIR = "port/c/generated"
CHECKED_SUFFIXES = (".h", ".c")  # what --check compares: a stray .c/.h in DIR is reported too
U32_MAX = 2**32 - 1


def setting_default(name: str) -> Any:
    """The default of the Settings field `name` (a slots dataclass keeps none on the class)."""
    for f in fields(Settings):
        if f.name == name:
            return f.default
    raise KeyError(name)


def longest_auth_body() -> int:
    """The longest AT+HTTPDATA body: every identity field at its longest in characters the form
    encoding triples, the longest sign (SHA-256) and method name, a 20-digit timestamp and
    resources=mqtt (what the controller asks for)."""
    identity = aliyun.DeviceIdentity(product_key="P" * aliyun.MAX_PRODUCT_KEY_LEN,
                                     device_name="@" * aliyun.MAX_DEVICE_NAME_LEN,
                                     device_secret="s", client_id="@" * aliyun.MAX_CLIENT_ID_LEN)
    return len(aliyun.auth_form(identity, "hmacsha256", aliyun.MAX_TIMESTAMP_MS,
                                resources=True).body)


# What enforces each placeholder's maximum (table.PLACEHOLDER_MAX): comments of the C table.
PLACEHOLDER_BOUNDS: dict[Placeholder, str] = {
    Placeholder.APN: "Settings.validate",
    Placeholder.AUTH_URL: ("https://iot-auth.<region of <= 64>.aliyuncs.com/auth/devicename, "
                           "or https://<instance id of <= 64>.auth.iothub.aliyuncs.com/..."),
    Placeholder.CONTENT_TYPE: "the fixed form header",
    Placeholder.BODY_LEN: f"digits of BODY_CAPACITY (the longest auth body: "
                          f"{longest_auth_body()} bytes)",
    Placeholder.BODY_WINDOW_MS: "digits of 120000 (AT+HTTPDATA's limit, Settings.validate)",
    Placeholder.CLIENT_ID: "DeviceIdentity.validate, with mqtt-sign's |securemode=...| after it",
    Placeholder.IOT_ID: "parse_auth_reply (AT+MCONFIG takes <= 256 a field)",
    Placeholder.IOT_TOKEN: "parse_auth_reply (AT+MCONFIG takes <= 256 a field)",
    Placeholder.MQTT_HOST: "a DNS name (parse_auth_reply)",
    Placeholder.MQTT_PORT: "1-65535",
    Placeholder.KEEPALIVE_S: "digits of 240 s (Settings.validate)",
    Placeholder.SUB_TOPIC: "payload.MAX_TOPIC",
    Placeholder.SUB_QOS: "0 or 1",
    Placeholder.TOPIC: "payload.MAX_TOPIC",
    Placeholder.QOS: "0 or 1",
    Placeholder.MESSAGE: "payload.MAX_PAYLOAD_TEXT (escapes or hex digits included)",
    Placeholder.REGISTER_URL: ("https://iot-auth.<region of <= 64>.aliyuncs.com"
                               "/auth/register/device"),
}

# Every command template the port expands: the machine's steps, ONLINE's, AT+MPUB.
TEMPLATES: tuple[tuple[Piece, ...], ...] = (
    *(s.pieces for row in MACHINE for s in row.steps), *(s.pieces for s in ONLINE_STEPS),
    MPUB_PIECES)

# ====================================================================== C spelling


def snake(name: str) -> str:
    """`AtResult` -> `at_result`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def c_member(member: IntEnum) -> str:
    """`State.BEARER` -> `AIRFSM_STATE_BEARER`."""
    return f"AIRFSM_{snake(type(member).__name__).upper()}_{member.name}"


def c_uint(value: int, bits: int = 32) -> str:
    if not 0 <= value < 2**bits:
        raise ValueError(f"{value} does not fit {bits} unsigned bits")
    return f"{value}u"


def c_bool(value: bool) -> str:
    return "true" if value else "false"


def c_string(data: str | bytes) -> str:
    """A C string literal of exactly these bytes (no trigraph, nothing outside printable ASCII)."""
    raw = data.encode("ascii") if isinstance(data, str) else data
    out, previous = [], 0
    for b in raw:
        if b in b'"\\' or (b == 0x3F and previous == 0x3F):  # "??=" would be a trigraph
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03o}")
        previous = b
    return '"' + "".join(out) + '"'


def c_text(data: str | bytes) -> str:
    """An `airfsm_text_t` initializer: the bytes and their count."""
    length = len(data.encode("ascii") if isinstance(data, str) else data)
    return f"{{ {c_string(data)}, {c_uint(length, 16)} }}"


@dataclass
class Section:
    """What one export adds to the header and to the source."""

    header: list[str]
    source: list[str]


LINE_WIDTH = 100  # of the generated C, as of the Python


def heading(title: str) -> str:
    return f"/* --- {title} " + "-" * max(3, LINE_WIDTH - 11 - len(title)) + " */"


def with_comment(code: str, doc: str) -> list[str]:
    """`code  /* doc */` on one line, or the comment on the line before when that is too long."""
    line = f"{code}  /* {doc} */"
    indent = code[:len(code) - len(code.lstrip())]
    return [line] if len(line) <= LINE_WIDTH else [f"{indent}/* {doc} */", code]


def fit(start: str, rest: str) -> list[str]:
    """`start rest` on one line, or `rest` indented on the next when that is too long."""
    line = f"{start} {rest}"
    indent = start[:len(start) - len(start.lstrip())]
    return [line] if len(line) <= LINE_WIDTH else [start, f"{indent}    {rest}"]


# ====================================================================== one render per section


def render_hash(digest: bytes) -> Section:
    value = digest[:8].hex()
    return Section(
        [heading("the table's identity"),
         "/* The first 8 bytes of the SHA-256 of the canonical rendering of everything below (the",
         " * data, not its C spelling): firmware reports it to tell which table it was built from.",
         " */",
         f"#define AIRFSM_TABLE_HASH UINT64_C(0x{value})",
         f'#define AIRFSM_TABLE_HASH_HEX "{value}"',
         "/* The same number from airfsm_table.c: not AIRFSM_TABLE_HASH when a stale object was",
         " * linked. */",
         "extern const uint64_t airfsm_table_hash;"],
        ["const uint64_t airfsm_table_hash = AIRFSM_TABLE_HASH;"])


def c_enum(type_name: str, prefix: str, members: Sequence[tuple[str, int]],
           comments: dict[str, str] | None = None) -> list[str]:
    """A typedef enum plus its COUNT (one past the largest value; outside the enum, so that a
    `switch` over it needs no case for the count)."""
    comments = comments or {}
    lines = ["typedef enum {"]
    for name, value in sorted(members, key=lambda m: m[1]):
        note = f"  /* {comments[name]} */" if name in comments else ""
        lines.append(f"    {prefix}_{name} = {value},{note}")
    lines += [f"}} {type_name};", f"#define {prefix}_COUNT {max(v for _, v in members) + 1}"]
    return lines


def render_enum(enum: type[IntEnum], doc: str) -> Section:
    """The enum, `AIRFSM_<NAME>_COUNT` and `airfsm_<name>_name[]`: each member's Python name."""
    base = snake(enum.__name__)
    prefix = f"AIRFSM_{base.upper()}"
    names = f"airfsm_{base}_name[{prefix}_COUNT]"
    members = [(m.name, m.value) for m in enum]
    if min(v for _, v in members) < 0:
        raise ValueError(f"{enum.__name__}: C enums here start at 0")
    return Section(
        [f"/* {doc} (Python: {enum.__module__}.{enum.__qualname__}) */",
         *c_enum(f"airfsm_{base}_t", prefix, members),
         f"extern const char *const {names};"],
        [f"const char *const {names} = {{",
         *(f"    [{c_member(m)}] = {c_string(m.name)}," for m in enum),
         "};"])


@dataclass(frozen=True)
class Constant:
    name: str  # AIRFSM_<name> (a number) or airfsm_<name> (a text)
    value: int | str
    doc: str


def render_constants(title: str, items: Sequence[Constant]) -> Section:
    """Numbers as `#define`s (usable in array sizes), texts as `airfsm_text_t` objects."""
    header, source = [heading(title)], []
    for c in items:
        if isinstance(c.value, str):
            name = f"airfsm_{c.name.lower()}"
            header += with_comment(f"extern const airfsm_text_t {name};", c.doc)
            source += fit(f"const airfsm_text_t {name} =", f"{c_text(c.value)};")
        else:
            header += with_comment(f"#define AIRFSM_{c.name} {c_uint(c.value)}", c.doc)
    return Section(header, source)


STEP_TYPES = """\
/* One piece of a command template: literal bytes, or a placeholder whose value the port expands
 * (at most airfsm_placeholder_max[placeholder] bytes). */
typedef struct {
    const char *text;                 /* a literal: len bytes sent as they are; NULL: placeholder */
    uint16_t len;
    airfsm_placeholder_t placeholder; /* which value goes here, when text is NULL */
} airfsm_piece_t;

/* A command, pre-split: `AT+SAPBR=3,1,"APN","{apn}"` is a literal, APN, a literal. */
typedef struct {
    const airfsm_piece_t *pieces;
    uint8_t n_pieces;
} airfsm_template_t;

/* One step of a state's AT script (Python: table.Step). Pointers, then times, then the small
 * fields: no padding between them. */
typedef struct {
    const char *name;
    airfsm_template_t command;
    const uint8_t *urc_ok;            /* after OK, wait for one of these rows of airfsm_urcs ... */
    const uint8_t *urc_fail;          /* ... and fail at once on one of these */
    uint32_t timeout_ms;              /* for the final result code */
    uint32_t urc_timeout_ms;          /* for the URC */
    uint32_t poll_ms;                 /* NOT_YET: send again after this long ... */
    uint32_t settle_ms;               /* after it passes, wait this long */
    uint16_t poll_limit;              /* ... at most this many times, then FAIL */
    airfsm_check_t check;             /* how the answer is judged (airfsm_check_answers) */
    airfsm_cond_t when;               /* whether the step runs at all */
    bool prompt;                      /* answers DOWNLOAD: send the auth body, then wait for OK */
    uint8_t n_urc_ok;
    uint8_t n_urc_fail;
    bool urc_is_final;                /* one of them is a final code (MCONNECT's ERROR): the
                                         channel passes that code on as a URC (final_urc) */
    bool per_topic;                   /* sent once per subscription, {sub_topic} each topic in
                                         turn (the keepalive: the next topic each time) */
    int8_t on_fail;                   /* airfsm_trigger_t fired at once on failure, or
                                         AIRFSM_NO_TRIGGER: RETRY as the policy says */
} airfsm_step_t;

#define AIRFSM_NO_TRIGGER (-1)
#define AIRFSM_NO_STATE (-1)"""


def pieces_array(c_name: str, pieces: Sequence[Piece]) -> list[str]:
    """`static const airfsm_piece_t <c_name>[n]`: a template's pieces in order."""
    lines = [f"static const airfsm_piece_t {c_name}[{len(pieces)}] = {{"]
    for piece in pieces:
        if isinstance(piece, bytes):
            lines.append(f"    {{ .text = {c_string(piece)}, .len = {c_uint(len(piece), 16)} }},")
        else:
            lines.append(f"    {{ .placeholder = {c_member(piece)} }},")
    return [*lines, "};"]


def step_parts(c_name: str, step: Step) -> tuple[list[str], list[str]]:
    """The arrays a step points to (its pieces, its URC rows), and its initializer's fields."""
    pieces = step.pieces
    arrays = pieces_array(f"{c_name}_pieces", pieces)
    urc_lists = {}
    for kind, ids in (("urc_ok", step.urc_ok_ids), ("urc_fail", step.urc_fail_ids)):
        urc_lists[kind] = "NULL"
        if ids:
            urc_lists[kind] = f"{c_name}_{kind}"
            arrays += [f"static const uint8_t {c_name}_{kind}[{len(ids)}] = {{",
                       *(f"    {c_uint(i, 8)},  /* {URCS[i].prefix.decode('ascii')} */"
                         for i in ids), "};"]
    final = step.final_urc
    on_fail = c_member(step.on_fail) if step.on_fail is not None else "AIRFSM_NO_TRIGGER"
    return arrays, [
        f".name = {c_string(step.name)},",
        f".command = {{ {c_name}_pieces, {c_uint(len(pieces), 8)} }},",
        f".check = {c_member(step.check)}, .when = {c_member(step.when)},",
        f".timeout_ms = {c_uint(step.timeout_ms)}, .prompt = {c_bool(step.prompt)},",
        f".urc_ok = {urc_lists['urc_ok']}, .n_urc_ok = {c_uint(len(step.urc_ok), 8)},",
        f".urc_fail = {urc_lists['urc_fail']}, .n_urc_fail = {c_uint(len(step.urc_fail), 8)},",
        f".urc_timeout_ms = {c_uint(step.urc_timeout_ms)}, .urc_is_final = {c_bool(final)},",
        f".poll_ms = {c_uint(step.poll_ms)}, .poll_limit = {c_uint(step.poll_limit, 16)},",
        f".on_fail = {on_fail}, .settle_ms = {c_uint(step.settle_ms)},",
        f".per_topic = {c_bool(step.per_topic)},",
    ]


def render_machine(table: Sequence[StateSpec]) -> Section:
    """Every state's steps and policy, and the machine indexed by state."""
    header = [heading("the machine: each state's AT script and retry policy (table.MACHINE)"),
              *STEP_TYPES.splitlines(), "",
              "/* Retrying a state (Python: table.Policy). */",
              "typedef struct {",
              "    uint16_t retries;             /* re-runs after a FAIL before it escalates */",
              "    uint32_t backoff_base_ms;     /* the first retry waits about this long ... */",
              "    uint32_t backoff_cap_ms;      /* ... doubling up to this (equal jitter;"
              " base == cap: fixed) */",
              "    airfsm_state_t on_exhausted;  /* where EXHAUSTED goes */",
              "    bool reset_on_exhausted;      /* send AT+RESET on the way */",
              "    uint8_t hardware_resets;      /* RESET-pin restarts before escalating */",
              "} airfsm_policy_t;",
              "",
              "/* Another way out of a state (Python: table.Branch): when instead_of would",
              "   fire and `when` holds, `trigger` fires instead (next[state][trigger] leads",
              "   to dest); the first branch whose condition holds wins (table_branch()). */",
              "typedef struct {",
              "    airfsm_trigger_t instead_of;  /* DONE or EXHAUSTED */",
              "    airfsm_cond_t when;",
              "    airfsm_trigger_t trigger;",
              "    airfsm_state_t dest;",
              "} airfsm_branch_t;",
              "",
              "/* One row of the machine (Python: table.StateSpec). */",
              "typedef struct {",
              "    const airfsm_step_t *steps;    /* run in order (NULL: none) */",
              "    uint8_t n_steps;",
              "    const airfsm_policy_t *policy; /* NULL: nothing to retry */",
              "    int8_t next;                   /* where DONE goes, or AIRFSM_NO_STATE */",
              "    const char *summary;",
              "    const airfsm_branch_t *branches; /* NULL: none */",
              "    uint8_t n_branches;",
              "} airfsm_state_spec_t;",
              "",
              f"#define AIRFSM_INITIAL_STATE {c_member(table[0].state)}",
              "extern const airfsm_state_spec_t airfsm_machine[AIRFSM_STATE_COUNT];"]
    source: list[str] = []
    rows = []
    for row in table:
        base = f"airfsm_{row.state.name.lower()}"
        names = [s.name for s in row.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"{row.state.name}: two steps share a name")
        steps_name = "NULL"
        if row.steps:
            steps_name = f"{base}_steps"
            parts = [step_parts(f"{base}_{step.name}", step) for step in row.steps]
            for arrays, _fields in parts:
                source += arrays
            source.append(f"static const airfsm_step_t {steps_name}[{len(row.steps)}] = {{")
            for _arrays, body in parts:
                source += ["    {", *(f"        {line}" for line in body), "    },"]
            source.append("};")
        policy_name = "NULL"
        if row.policy is not None:
            p = row.policy
            policy_name = f"&{base}_policy"
            source += [
                f"static const airfsm_policy_t {base}_policy = {{",
                f"    .retries = {c_uint(p.retries, 16)}, .backoff_base_ms ="
                f" {c_uint(p.backoff_base_ms)}, .backoff_cap_ms = {c_uint(p.backoff_cap_ms)},",
                f"    .on_exhausted = {c_member(p.on_exhausted)},"
                f" .reset_on_exhausted = {c_bool(p.reset_on_exhausted)},"
                f" .hardware_resets = {c_uint(p.hardware_resets, 8)},",
                "};"]
        branches_name = "NULL"
        if row.branches:
            branches_name = f"{base}_branches"
            source.append(f"static const airfsm_branch_t {branches_name}[{len(row.branches)}]"
                          " = {")
            for b in row.branches:
                source.append(f"    {{ .instead_of = {c_member(b.instead_of)}, .when ="
                              f" {c_member(b.when)}, .trigger = {c_member(b.trigger)},"
                              f" .dest = {c_member(b.dest)} }},")
            source.append("};")
        source.append("")
        nxt = c_member(row.next) if row.next is not None else "AIRFSM_NO_STATE"
        rows += [f"    [{c_member(row.state)}] = {{",
                 f"        .steps = {steps_name}, .n_steps = {c_uint(len(row.steps), 8)},",
                 f"        .policy = {policy_name}, .next = {nxt},",
                 f"        .summary = {c_string(row.summary)},",
                 f"        .branches = {branches_name},"
                 f" .n_branches = {c_uint(len(row.branches), 8)},",
                 "    },"]
    source += ["const airfsm_state_spec_t airfsm_machine[AIRFSM_STATE_COUNT] = {", *rows, "};"]
    return Section(header, source)


def render_transitions(edge_list: Sequence[Edge]) -> Section:
    """The edge list (what the transitions Machine and the diagrams are built from) and the same
    edges as next[state][trigger], the C twin's machine: one lookup per trigger."""
    lookup = {(e.source, e.trigger): e for e in edge_list}
    rows = []
    for state in State:
        rows.append(f"    [{c_member(state)}] = {{")
        for trigger in Trigger:
            edge = lookup.get((state, trigger))
            dest = c_member(edge.dest) if edge is not None else "AIRFSM_NO_STATE"
            reset = c_bool(edge is not None and edge.reset_module)
            rows.append(f"        [{c_member(trigger)}] = {{ {dest}, {reset} }},")
        rows.append("    },")
    return Section(
        [heading("transitions (table.edges)"),
         "typedef struct {",
         "    airfsm_trigger_t trigger;",
         "    airfsm_state_t source;",
         "    airfsm_state_t dest;",
         "    bool reset_module;   /* send AT+RESET on entering dest */",
         "} airfsm_edge_t;",
         f"#define AIRFSM_EDGE_COUNT {len(edge_list)}",
         "extern const airfsm_edge_t airfsm_edges[AIRFSM_EDGE_COUNT];",
         "",
         "/* next[source][trigger]: where a trigger leads; dest AIRFSM_NO_STATE: it does nothing"
         " there. */",
         "typedef struct {",
         "    int8_t dest;         /* airfsm_state_t, or AIRFSM_NO_STATE */",
         "    bool reset_module;",
         "} airfsm_next_t;",
         "extern const airfsm_next_t airfsm_next[AIRFSM_STATE_COUNT][AIRFSM_TRIGGER_COUNT];"],
        ["const airfsm_edge_t airfsm_edges[AIRFSM_EDGE_COUNT] = {",
         *(f"    {{ {c_member(e.trigger)}, {c_member(e.source)}, {c_member(e.dest)},"
           f" {c_bool(e.reset_module)} }}," for e in edge_list),
         "};",
         "",
         "const airfsm_next_t airfsm_next[AIRFSM_STATE_COUNT][AIRFSM_TRIGGER_COUNT] = {",
         *rows,
         "};"])


def render_escalation(rule: tuple[tuple[int, int], int, tuple[Trigger, ...]]) -> Section:
    """How link losses and escalations back off, so a flapping link cannot hammer the network."""
    (base_ms, cap_ms), free, escalating = rule
    return Section(
        [heading("escalation backoff (table.ESCALATING_TRIGGERS, ESCALATION_BACKOFF_MS)"),
         *"""\
/* Entering a state other than FAILED by a trigger marked in airfsm_trigger_escalates counts one
 * escalation. The first AIRFSM_ESCALATIONS_WITHOUT_BACKOFF of them since ONLINE last held for
 * liveness_ms are immediate; escalation n after those waits backoff_ms(n - free, base, cap). */\
""".splitlines(),
         f"#define AIRFSM_ESCALATION_BACKOFF_BASE_MS {c_uint(base_ms)}",
         f"#define AIRFSM_ESCALATION_BACKOFF_CAP_MS {c_uint(cap_ms)}",
         f"#define AIRFSM_ESCALATIONS_WITHOUT_BACKOFF {c_uint(free)}",
         "extern const bool airfsm_trigger_escalates[AIRFSM_TRIGGER_COUNT];"],
        ["const bool airfsm_trigger_escalates[AIRFSM_TRIGGER_COUNT] = {",
         *(f"    [{c_member(t)}] = {c_bool(t in escalating)}," for t in Trigger),
         "};"])


def c_text_array(name: str, count_macro: str, texts: Sequence[bytes]) -> tuple[list[str],
                                                                            list[str]]:
    """`#define <count_macro> n`, `extern const airfsm_text_t <name>[n]` and its definition."""
    return ([f"#define {count_macro} {len(texts)}",
             f"extern const airfsm_text_t {name}[{count_macro}];"],
            [f"const airfsm_text_t {name}[{count_macro}] = {{",
             *(f"    {c_text(t)}," for t in texts), "};"])


def urc_row(index: int, row: Urc) -> list[str]:
    """`[index] = { prefix, kind, trigger, urc_only },` (the index is what steps name)."""
    trigger = c_member(row.trigger) if row.trigger is not None else "AIRFSM_NO_TRIGGER"
    return fit(f"    [{index}] =", f"{{ {c_text(row.prefix)}, {c_member(row.kind)}, {trigger},"
                                   f" {c_bool(row.urc_only)} }},")


def render_urcs(urcs: Sequence[Urc]) -> Section:
    """The one URC table: what the channel tells from answers, what the controller acts on."""
    if len(urcs) > 255:
        raise ValueError("a step names URC rows as uint8_t")
    return Section(
        [heading("the URC table (table.URCS)"),
         "/* Every unsolicited line, matched as a prefix at the start of a line, first row wins",
         " * (a specific prefix comes before the general one it extends). A FINAL row names a",
         " * final code the channel passes on only after the OK of a step whose urc_is_final is",
         " * set; a step names the rows it waits for by index. */",
         "typedef struct {",
         "    airfsm_text_t prefix;",
         "    airfsm_urc_kind_t kind;",
         "    int8_t trigger;      /* LINK: the airfsm_trigger_t raised, or AIRFSM_NO_TRIGGER */",
         "    bool urc_only;       /* never the answer line of a command, whatever is in flight */",
         "} airfsm_urc_t;",
         f"#define AIRFSM_URC_COUNT {len(urcs)}",
         "extern const airfsm_urc_t airfsm_urcs[AIRFSM_URC_COUNT];"],
        ["const airfsm_urc_t airfsm_urcs[AIRFSM_URC_COUNT] = {",
         *(line for index, row in enumerate(urcs) for line in urc_row(index, row)),
         "};"])


def render_channel(tables: dict[str, Any]) -> Section:
    """What else the AT channel recognises: final result codes, prompts, the markers of the
    length-counted payloads, the commands that switch the +MSUB payload form."""
    prompt_h, prompt_c = c_text_array("airfsm_prompt_lines", "AIRFSM_PROMPT_LINE_COUNT",
                                      tables["prompt_lines"])
    finals = tables["final_codes"]
    markers = tables["markers"]
    return Section(
        [heading("the AT channel's tables (at.py)"),
         "/* Final result codes: exact lines, or (has_code) a prefix followed by a number. */",
         "typedef struct {",
         "    airfsm_text_t text;",
         "    airfsm_at_result_t result;",
         "    bool has_code;",
         "} airfsm_final_code_t;",
         f"#define AIRFSM_FINAL_CODE_COUNT {len(finals)}",
         "extern const airfsm_final_code_t airfsm_final_codes[AIRFSM_FINAL_CODE_COUNT];",
         "",
         "/* Whole-line prompts; the data prompt is one byte, taken before its line ends (the"
         " module",
         " * sends it and one space, then waits). */",
         *prompt_h,
         f"#define AIRFSM_DATA_PROMPT {c_uint(tables['data_prompt'], 8)}"
         f"  /* {chr(tables['data_prompt'])!r} */",
         "",
         "/* Markers of the length-counted payloads and the +MSUB payload form. */",
         *(f"extern const airfsm_text_t airfsm_{name};  /* {text.decode('ascii')} */"
           for name, text in markers.items())],
        ["const airfsm_final_code_t airfsm_final_codes[AIRFSM_FINAL_CODE_COUNT] = {",
         *(f"    {{ {c_text(text)}, {c_member(result)}, {c_bool(has_code)} }},"
           for text, result, has_code in finals),
         "};", "", *prompt_c, "",
         *(f"const airfsm_text_t airfsm_{name} = {c_text(text)};"
           for name, text in markers.items())])


def render_link_events(events: Sequence[LinkEvent]) -> Section:
    """Which link event wins when several are raised in one tick (their URCs are the LINK rows
    of airfsm_urcs, their edges in airfsm_next)."""
    priority = {event.trigger: event.priority for event in events}
    return Section(
        [heading("link events and their priorities (table.LINK_EVENTS)"),
         "/* A pending link event is replaced only by one of higher priority (a reboot implies a"
         " lost",
         " * bearer implies a lost session); 0: not a link event, or the lowest. */",
         "extern const uint8_t airfsm_link_priority[AIRFSM_TRIGGER_COUNT];"],
        ["const uint8_t airfsm_link_priority[AIRFSM_TRIGGER_COUNT] = {",
         *(f"    [{c_member(t)}] = {c_uint(priority.get(t, 0), 8)}," for t in Trigger),
         "};"])


def render_check_answers(answers: dict[Check, CheckAnswer]) -> Section:
    """For each check: the answer line it reads and which field of it."""
    rows = []
    for check in Check:
        a = answers[check]
        rows += [f"    [{c_member(check)}] = {{",
                 f"        .prefix = {c_text(a.prefix)}, .field = {a.field},"
                 f" .pass_value = {a.pass_value},",
                 f"        .token = {c_text(a.token)}, .text_field = {a.text_field},"
                 f" .in_urc = {c_bool(a.in_urc)},",
                 "    },"]
    return Section(
        [heading("what each check reads in the answer (judge.ANSWERS)"),
         "typedef struct {",
         "    airfsm_text_t prefix;   /* the line judged (len 0: none, or any line) */",
         "    int8_t field;           /* its comma-separated field read as a number"
         " (textparse), or -1 */",
         "    int32_t pass_value;     /* the number that passes; -1: any number answered */",
         "    airfsm_text_t token;    /* SIM_READY: the line must hold it; VERSION: the number"
         " follows it */",
         "    int8_t text_field;      /* a field kept as text (BEARER_QUERY: the IP), or -1 */",
         "    bool in_urc;            /* the line is the step's URC, not an info line */",
         "} airfsm_check_answer_t;",
         "extern const airfsm_check_answer_t airfsm_check_answers[AIRFSM_CHECK_COUNT];"],
        ["const airfsm_check_answer_t airfsm_check_answers[AIRFSM_CHECK_COUNT] = {", *rows, "};"])


def settings_rows(ranges: Sequence[SettingRange]) -> list[tuple[str, int, int, int, str]]:
    """(name, default, min, max, note) for each numeric setting, in the order of `Settings`;
    a default of None is 0 (unset), a missing bound the whole uint32_t range."""
    by_name = {r.name: r for r in ranges}
    rows = []
    for f in fields(Settings):
        if f.name not in by_name:
            continue
        r = by_name[f.name]
        default = f.default if isinstance(f.default, int) else 0  # None: 0, unset
        notes = [f"0: {r.unset}"] if f.default is None else []
        if r.low is None and r.high is None:
            notes.append("not checked")
        note = "; ".join(notes)
        rows.append((f.name, default, r.low or 0, U32_MAX if r.high is None else r.high, note))
    return rows


def render_settings(ranges: Sequence[SettingRange]) -> Section:
    """Each numeric setting's default and the range Settings.validate enforces."""
    rows = settings_rows(ranges)
    members = [(name.upper(), i) for i, (name, *_rest) in enumerate(rows)]
    notes = {name.upper(): note for name, _d, _lo, _hi, note in rows if note}
    return Section(
        [heading("settings: defaults and the ranges Settings.validate enforces"),
         *c_enum("airfsm_setting_t", "AIRFSM_SETTING", members, notes),
         "typedef struct {",
         "    const char *name;         /* the Settings field */",
         "    uint32_t default_value;",
         "    uint32_t min;             /* validate() refuses a value outside min..max */",
         "    uint32_t max;",
         "} airfsm_setting_range_t;",
         "extern const airfsm_setting_range_t airfsm_settings[AIRFSM_SETTING_COUNT];",
         "/* Also checked: publish_backoff_base_ms <= publish_backoff_cap_ms. */",
         "extern const airfsm_text_t airfsm_default_apn;",
         "extern const airfsm_text_t airfsm_default_sign_method;"],
        ["const airfsm_setting_range_t airfsm_settings[AIRFSM_SETTING_COUNT] = {",
         *(line for name, default, low, high, _note in rows
           for line in fit(f"    [AIRFSM_SETTING_{name.upper()}] =",
                           f"{{ {c_string(name)}, {c_uint(default)}, {c_uint(low)},"
                           f" {c_uint(high)} }},")),
         "};",
         f"const airfsm_text_t airfsm_default_apn = {c_text(setting_default('apn'))};",
         "const airfsm_text_t airfsm_default_sign_method ="
         f" {c_text(setting_default('sign_method'))};"])


def render_placeholders(limits: tuple[dict[Placeholder, int], tuple[tuple[Piece, ...], ...]]
                        ) -> Section:
    """Each placeholder's longest value (the one bounded expander refuses longer ones), and the
    longest command the templates can make of them."""
    maxima, templates = limits
    if set(maxima) != set(Placeholder) or set(PLACEHOLDER_BOUNDS) != set(Placeholder):
        raise ValueError("every placeholder has a maximum and says what enforces it")
    return Section(
        [heading("placeholders: the longest value of each (table.PLACEHOLDER_MAX)"),
         "extern const uint16_t airfsm_placeholder_max[AIRFSM_PLACEHOLDER_COUNT];",
         f"#define AIRFSM_LONGEST_COMMAND {c_uint(max(map(expanded_max, templates)))}"
         "  /* the longest expansion of any template */",
         f"#define AIRFSM_LONGEST_AUTH_BODY {c_uint(longest_auth_body())}"
         "  /* the AT+HTTPDATA body at its longest */"],
        ["const uint16_t airfsm_placeholder_max[AIRFSM_PLACEHOLDER_COUNT] = {",
         *(line for p in Placeholder
           for line in with_comment(f"    [{c_member(p)}] = {c_uint(maxima[p], 16)},",
                                    PLACEHOLDER_BOUNDS[p])),
         "};"])


def online_name(step: Step) -> str:
    """The C name of an ONLINE command: `airfsm_online_<step name>`."""
    return f"airfsm_online_{step.name}"


def render_online(commands: tuple[tuple[Step, ...], tuple[Piece, ...]]) -> Section:
    """ONLINE's own commands: probe, keepalive, cache read, mode switch, disconnect, publish."""
    steps, mpub = commands
    source: list[str] = []
    for step in steps:
        name = online_name(step)
        arrays, body = step_parts(name, step)
        source += [*arrays, f"const airfsm_step_t {name} = {{",
                   *(f"    {line}" for line in body), "};", ""]
    source += [*pieces_array("airfsm_mpub_pieces", mpub),
               f"const airfsm_template_t airfsm_mpub = {{ airfsm_mpub_pieces,"
               f" {c_uint(len(mpub), 8)} }};"]
    return Section(
        [heading("ONLINE's commands (table.ONLINE_STEPS, table.MPUB_TEMPLATE)"),
         *(f"extern const airfsm_step_t {online_name(step)};  /* {step.command} */"
           for step in steps),
         f"/* {MPUB_TEMPLATE}: its timeout is the publish_timeout_ms",
         " * setting; the message is escaped (text mode) or hex digits (hex mode), as",
         " * payload.put_mpub writes it. */",
         "extern const airfsm_template_t airfsm_mpub;"],
        source)


# ====================================================================== what to export


class Export(Protocol):
    def canonical(self) -> str: ...

    def render(self) -> Section: ...


@dataclass(frozen=True)
class Codes:
    """An enum class, with name strings."""

    enum: type[IntEnum]
    doc: str

    def canonical(self) -> str:
        return f"codes {self.enum.__name__}: {[(m.name, m.value) for m in self.enum]!r}"

    def render(self) -> Section:
        return render_enum(self.enum, self.doc)


@dataclass(frozen=True)
class Constants:
    """A group of constants under one heading."""

    title: str
    items: tuple[Constant, ...]

    def canonical(self) -> str:
        return "\n".join(f"constant {c.name}={c.value!r}" for c in self.items)

    def render(self) -> Section:
        return render_constants(self.title, self.items)


@dataclass(frozen=True)
class Table:
    """Some data and the function that spells it in C."""

    name: str
    render_data: Callable[[Any], Section]
    data: Any

    def canonical(self) -> str:
        return f"table {self.name}: {self.data!r}"

    def render(self) -> Section:
        return self.render_data(self.data)


# Header order: the enums first (the structs use them), the machine before ONLINE's commands
# (it defines airfsm_step_t). Switching to a module of the core is a change of one entry.
EXPORTS: tuple[Export, ...] = (
    Codes(State, "the machine's states"),
    Codes(Trigger, "what moves the machine"),
    Codes(Outcome, "a judgement of a step's answer"),
    Codes(Check, "how a step's answer is judged"),
    Codes(Cond, "when a step runs at all"),
    Codes(AtResult, "how a command ended"),
    Codes(UrcKind, "what a row of the URC table is to the controller"),
    Codes(Purpose, "what the command in flight is for"),
    Codes(FailReason, "why the machine is in FAILED"),
    Codes(Reason, "why something failed (with a bounded detail)"),
    Codes(LogEvent, "what the controller reports through its log hook"),
    Codes(OutboxCall, "which outbox call was refused"),
    Codes(OutboxStatus, "what an outbox call returns"),
    Codes(Placeholder, "what a command template's placeholder stands for"),
    Codes(AuthMode, "how the device proves itself to the broker (Settings.auth_mode)"),
    Constants("firmware (table.py)", (
        Constant("MIN_FIRMWARE", MIN_FIRMWARE, "older builds cannot do Alibaba Cloud: FATAL"),
        Constant("FIRMWARE_HEARTBEAT", FIRMWARE_HEARTBEAT,
                 "from this build the module sends PINGREQ itself"),
    )),
    Constants("buffers and the work of one tick (settings.py, controller.py)", (
        Constant("LINE_CAPACITY", LINE_CAPACITY, "one received line"),
        Constant("DATA_CAPACITY", DATA_CAPACITY, "one length-counted payload"),
        Constant("MAX_INFO_LINES", MAX_INFO_LINES, "info lines kept of one response"),
        Constant("INFO_ARENA", INFO_ARENA, "a response's info lines and +HTTPREAD body"),
        Constant("READ_CHUNK", READ_CHUNK, "bytes asked of the port at a time"),
        Constant("MAX_READ_PER_TICK", MAX_READ_PER_TICK, "the rest waits for the next tick"),
        Constant("CMD_CAPACITY", CMD_CAPACITY, "one command and its CR"),
        Constant("BODY_CAPACITY", BODY_CAPACITY, "the HTTP body: the auth or register form"),
        Constant("OUTBOX_RING", OUTBOX_RING, "messages the RAM outbox holds (and dead letters)"),
        Constant("INFO_TEXT_MAX", INFO_TEXT_MAX,
                 "IMEI, ICCID, operator: text kept of each (a longer answer is cut)"),
        Constant("MAX_SUBSCRIPTIONS", MAX_SUBSCRIPTIONS,
                 "topics subscribed to, one per_topic step each"),
    )),
    Constants("publish limits (payload.py)", (
        Constant("MAX_PAYLOAD_TEXT", payload.MAX_PAYLOAD_TEXT,
                 "bytes between AT+MPUB's quotes, escapes included"),
        Constant("MAX_PAYLOAD_HEX_RAW", payload.MAX_PAYLOAD_HEX_RAW,
                 "payload bytes in hex mode (two digits each)"),
        Constant("MAX_TOPIC", payload.MAX_TOPIC, "characters of a topic"),
        Constant("MAX_QOS", max(payload.QOS_LEVELS), "Alibaba Cloud takes QoS 0 and 1"),
    )),
    Constants("timing (at.py, table.py, controller.py, online.py)", (
        Constant("MAX_TIMEOUT_MS", at.MAX_TIMEOUT_MS, "longer would wrap a 32-bit deadline"),
        Constant("DEFAULT_BAUD", at.DEFAULT_BAUD, "the module's UART rate"),
        Constant("UART_BITS_PER_CHAR", at.UART_BITS_PER_CHAR, "8N1"),
        Constant("PAYLOAD_STALL_CHARS", at.PAYLOAD_STALL_CHARS,
                 "a pause of this many character times truncates a payload ..."),
        Constant("PAYLOAD_STALL_FLOOR_MS", at.PAYLOAD_STALL_FLOOR_MS, "... but never sooner"),
        Constant("PAYLOAD_OVERRUN_SLACK_MS", at.PAYLOAD_OVERRUN_SLACK_MS,
                 "a payload may take twice its line time plus this"),
        Constant("MAX_UINT_DIGITS", MAX_UINT_DIGITS, "digits of a number in an answer"),
        Constant("KEEPALIVE_FRACTION_NUM", KEEPALIVE_FRACTION[0],
                 "keepalive sent after num/den of keepalive_s without an answer"),
        Constant("KEEPALIVE_FRACTION_DEN", KEEPALIVE_FRACTION[1], "(firmware before V838)"),
        Constant("IDLE_RECHECK_MS", IDLE_RECHECK_MS, "the longest sleep a tick asks for"),
        Constant("LOST_PORT_RECHECK_MS", LOST_PORT_RECHECK_MS,
                 "a lost port: look again this soon"),
        Constant("STORE_BACKOFF_BASE_MS", STORE_BACKOFF_MS[0], "an outbox that refused a call"),
        Constant("STORE_BACKOFF_CAP_MS", STORE_BACKOFF_MS[1], "... is left alone this long"),
        Constant("CONTENT_TYPE", CONTENT_TYPE, "the auth POST's header (the space matters)"),
    )),
    Table("machine", render_machine, MACHINE),
    Table("edges", render_transitions, tuple(edges(MACHINE))),
    Table("escalation", render_escalation,
          (ESCALATION_BACKOFF_MS, ESCALATIONS_WITHOUT_BACKOFF, tuple(sorted(ESCALATING_TRIGGERS)))),
    Table("urcs", render_urcs, URCS),
    Table("channel", render_channel, {
        "final_codes": at.FINAL_CODES,
        "prompt_lines": at.PROMPT_LINES,
        "data_prompt": at.DATA_PROMPT,
        "markers": {"msub_header": at.MSUB_HEADER, "msub_length_unit": at.MSUB_LENGTH_UNIT,
                    "httpread_header": at.HTTPREAD_HEADER, "hex_mode_on": at.HEX_MODE_ON,
                    "hex_mode_off": at.HEX_MODE_OFF},
    }),
    Table("link events", render_link_events, LINK_EVENTS),
    Table("check answers", render_check_answers, ANSWERS),
    Table("settings", render_settings, SETTING_RANGES),
    Table("placeholders", render_placeholders, (PLACEHOLDER_MAX, TEMPLATES)),
    Table("online", render_online, (ONLINE_STEPS, MPUB_PIECES)),
)

# ====================================================================== the files


def table_hash(exports: Sequence[Export] = EXPORTS) -> bytes:
    """SHA-256 of every export's canonical text (the firmware keeps its first 8 bytes)."""
    text = "\n".join(export.canonical() for export in exports)
    return hashlib.sha256(text.encode("utf-8")).digest()


def generate(exports: Sequence[Export] = EXPORTS) -> dict[str, str]:
    """Both files, name -> text (deterministic: the same table gives the same bytes)."""
    sections = [render_hash(table_hash(exports)), *(export.render() for export in exports)]
    header = [
        "/* airfsm_table.h - the machine table of the Python reference (airfsm/core) for the C"
        " port.",
        " * Generated by `airfsm ctable` (make ctable): do not edit; `make test` checks it is"
        " fresh.",
        " * Declarations only: the definitions are in airfsm_table.c. */",
        "#ifndef AIRFSM_TABLE_H",
        "#define AIRFSM_TABLE_H",
        "",
        "#include <stdbool.h>",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        "/* Bytes of known length (no strlen needed); text is NUL-terminated as well. */",
        "typedef struct {",
        "    const char *text;",
        "    uint16_t len;",
        "} airfsm_text_t;",
        "",
    ]
    source = [
        "/* airfsm_table.c - generated by `airfsm ctable` from airfsm/core: do not edit. The one",
        " * definition of every table declared in airfsm_table.h. */",
        '#include "airfsm_table.h"',
        "",
    ]
    for section in sections:
        header += [*section.header, ""]
        if section.source:
            source += [*section.source, ""]
    header.append("#endif /* AIRFSM_TABLE_H */")
    return {HEADER_NAME: "\n".join(header) + "\n", SOURCE_NAME: "\n".join(source).rstrip() + "\n"}


def run(out: Path, check_dir: Path | None, stdout: Any = None, stderr: Any = None) -> int:
    """The `airfsm ctable` command: 0 written / up to date, 1 stale or failed."""
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    files = generate()
    if check_dir is not None:
        if not check_dir.is_dir():
            print(f"airfsm ctable: {check_dir}: not a folder", file=stderr)
            return 1
        problems = fresh.stale(check_dir, files, CHECKED_SUFFIXES)
        for problem in problems:
            print(f"airfsm ctable: {problem}", file=stderr)
        if problems:
            print("airfsm ctable: the C table is stale: run `make ctable` and commit "
                  f"{check_dir}", file=stderr)
            return 1
        print(f"{check_dir}: the C table is up to date (hash {table_hash()[:8].hex()})",
              file=stdout)
        return 0
    try:
        written = fresh.write_changed(out, files)
    except OSError as exc:
        print(f"airfsm ctable: cannot write {out}: {exc.strerror or exc}", file=stderr)
        return 1
    for path in written:
        print(f"wrote {path}", file=stdout)
    return 0


def cmd_ctable(args: argparse.Namespace, env: dict[str, str]) -> int:
    return run(Path(args.out), Path(args.check) if args.check else None)


def register(sub: Any) -> None:
    p = sub.add_parser("ctable", help="write the machine table as C for an MCU port "
                                      f"({HEADER_NAME}, {SOURCE_NAME})")
    p.add_argument("--out", default=DEFAULT_DIR,
                   help=f"folder to write both files to (default {DEFAULT_DIR}/)")
    p.add_argument("--check", metavar="DIR", default=None,
                   help="write nothing: exit 1 naming each file of DIR that the table no longer "
                        "gives")
    p.set_defaults(handler=cmd_ctable)
