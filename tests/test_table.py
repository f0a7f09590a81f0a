"""The machine's tables agree with themselves (airfsm/core/table.py): the one URC table that the
AT channel and the controller both read, the steps that name its rows, the link events."""

from __future__ import annotations

import dataclasses

import pytest

from airfsm.core.codes import Placeholder, Trigger, UrcKind
from airfsm.core.settings import CMD_CAPACITY
from airfsm.core.table import (
    CACHE_READ,
    EXPAND_FAILED,
    LINK_EVENTS,
    LIVENESS_PROBE,
    MACHINE,
    ONLINE_STEPS,
    PLACEHOLDER_MAX,
    SESSION_KEEPALIVE,
    URC_NONE,
    URCS,
    Step,
    Urc,
    _check_command_room,
    _check_urcs,
    expand,
    expanded_max,
    link_priority,
    split_template,
    urc_id,
)

NUMBERS = {Placeholder.BODY_LEN, Placeholder.BODY_WINDOW_MS, Placeholder.MQTT_PORT,
           Placeholder.KEEPALIVE_S, Placeholder.SUB_QOS}

# What the channel (at.py URC_PREFIXES) and the controller (_LINK_URCS) each listed before the
# two became one table: the same lines are URCs, the same ones raise the same link events.
CHANNEL_PREFIXES_BEFORE = {
    b"RDY", b"+CFUN:", b"+CPIN:", b"SMS Ready", b"+CGATT:", b"+CGREG:", b"+CEREG:",
    b"+PDP DEACT", b"+CGEV:", b"+SAPBR 1: DEACT", b"+HTTPACTION:", b"CONNECT OK",
    b"CONNECT FAIL", b"ALREADY CONNECT", b"STATE:", b"CLOSED", b"CONNACK OK", b"SUBACK",
    b"UNSUBACK", b"PUBACK", b"+MSUB:"}
LINK_URCS_BEFORE = [
    (b"RDY", Trigger.REBOOTED), (b"+CGATT: 0", Trigger.BEARER_LOST),
    (b"+CGATT:0", Trigger.BEARER_LOST), (b"+PDP DEACT", Trigger.BEARER_LOST),
    (b"+SAPBR 1: DEACT", Trigger.BEARER_LOST), (b"+CGEV: NW PDN DEACT", Trigger.BEARER_LOST),
    (b"+CGEV: ME PDN DEACT", Trigger.BEARER_LOST), (b"+CGEV: ME DETACH", Trigger.BEARER_LOST),
    (b"+CGEV: NW DETACH", Trigger.BEARER_LOST), (b"CLOSED", Trigger.MQTT_LOST)]


def first_row(line: bytes) -> Urc | None:
    """The row the channel reports for `line` (first prefix match, final codes aside)."""
    return next((u for u in URCS if u.kind != UrcKind.FINAL and line.startswith(u.prefix)), None)


def test_the_urc_table_holds_what_the_channel_and_the_controller_listed_before() -> None:
    link = [(u.prefix, u.trigger) for u in URCS if u.trigger is not None]
    assert sorted(link) == sorted(LINK_URCS_BEFORE)
    for prefix, trigger in LINK_URCS_BEFORE:  # each reaches its own row, not a general one
        row = first_row(prefix + b" x")
        assert row is not None and row.trigger == trigger, prefix
    # Every line the channel took for a URC still is one, and no other line is.
    for prefix in CHANNEL_PREFIXES_BEFORE:
        assert first_row(prefix + b" 1") is not None, prefix
    for row in URCS:
        if row.kind != UrcKind.FINAL:
            assert any(row.prefix.startswith(p) for p in CHANNEL_PREFIXES_BEFORE), row.prefix
    assert {u.prefix for u in URCS if u.urc_only} == {b"+HTTPACTION:", b"+MSUB:"}


def test_every_urc_a_step_waits_for_is_a_row_of_the_table() -> None:
    steps = [s for row in MACHINE for s in row.steps]
    for step in (*steps, LIVENESS_PROBE, SESSION_KEEPALIVE, CACHE_READ):
        assert [URCS[i].prefix.decode() for i in step.urc_ok_ids] == list(step.urc_ok)
        assert [URCS[i].prefix.decode() for i in step.urc_fail_ids] == list(step.urc_fail)
    connect = next(s for s in steps if s.name == "connect")
    assert connect.final_urc  # its refusal is a bare ERROR after the OK
    assert not any(s.final_urc for s in steps if s is not connect)
    with pytest.raises(ValueError, match="not in URCS"):
        Step("x", "AT+X", urc_ok=("NO SUCH URC",))


def test_every_link_trigger_of_the_urc_table_is_a_link_event_ranked_by_its_loss() -> None:
    events = {e.trigger for e in LINK_EVENTS}
    assert {u.trigger for u in URCS if u.trigger is not None} <= events
    ranked = [Trigger.PORT_LOST, Trigger.REBOOTED, Trigger.BEARER_LOST, Trigger.MQTT_LOST,
              Trigger.WATCHDOG]
    assert [link_priority(t) for t in ranked] == [4, 3, 2, 1, 0]
    assert link_priority(Trigger.DONE) == 0


def test_a_urc_table_that_could_not_work_is_refused() -> None:
    with pytest.raises(ValueError, match="empty prefix"):
        _check_urcs((Urc(b"", UrcKind.NOTICE),))
    with pytest.raises(ValueError, match="can never match"):
        _check_urcs((Urc(b"+CGATT:", UrcKind.NOTICE), Urc(b"+CGATT: 0", UrcKind.NOTICE)))
    with pytest.raises(ValueError, match="LINK"):
        _check_urcs((Urc(b"CLOSED", UrcKind.NOTICE, Trigger.MQTT_LOST),))
    assert urc_id("CLOSED") == urc_id(b"CLOSED") != URC_NONE
    assert urc_id(b"CLOSE") == URC_NONE


# ---------------------------------------------------------------------- command templates

# One value per placeholder at its bound, as text and as the value the controller holds.
AT_BOUND: dict[Placeholder, bytes | int] = {
    p: (10 ** PLACEHOLDER_MAX[p] - 1 if p in NUMBERS else b"v" * PLACEHOLDER_MAX[p])
    for p in Placeholder}


def as_text(values: dict[Placeholder, bytes | int]) -> dict[str, str]:
    return {p.name.lower(): (str(v) if isinstance(v, int) else v.decode()) for p, v in
            values.items()}


def test_every_template_splits_into_pieces_and_expands_as_format_map_did() -> None:
    values: dict[Placeholder, bytes | int] = {
        p: (7 if p in NUMBERS else p.name.lower().encode() + b"-x") for p in Placeholder}
    steps = [s for row in MACHINE for s in row.steps] + list(ONLINE_STEPS)
    assert any(isinstance(p, Placeholder) for s in steps for p in s.pieces)
    for step in steps:
        out = bytearray(CMD_CAPACITY)
        n = expand(step.pieces, [values[p] for p in Placeholder], out)
        assert n >= 0 and out[:n] == step.command.format_map(as_text(values)).encode(), step.name
        # At every bound at once it still fits the command buffer, with room for the CR.
        n = expand(step.pieces, [AT_BOUND[p] for p in Placeholder], out)
        assert 0 <= n == expanded_max(step.pieces) < CMD_CAPACITY, step.name


def test_expand_refuses_a_value_over_its_bound_and_a_command_without_room() -> None:
    pieces = split_template('AT+SAPBR=3,1,"APN","{apn}"')
    assert pieces == (b'AT+SAPBR=3,1,"APN","', Placeholder.APN, b'"')
    values: list[bytes | int] = [AT_BOUND[p] for p in Placeholder]
    out = bytearray(CMD_CAPACITY)
    assert expand(pieces, values, out) == 20 + 64 + 1
    values[Placeholder.APN] = b"a" * 65
    assert expand(pieces, values, out) == EXPAND_FAILED
    values[Placeholder.APN] = b"cmnet"
    assert expand(pieces, values, bytearray(26)) == EXPAND_FAILED  # 26 bytes, no room for CR
    small = bytearray(27)
    assert expand(pieces, values, small) == 26 and small[:26] == b'AT+SAPBR=3,1,"APN","cmnet"'
    data = split_template("AT+HTTPDATA={body_len},{body_window_ms}")
    values[Placeholder.BODY_LEN] = 10 ** PLACEHOLDER_MAX[Placeholder.BODY_LEN]  # one digit more
    assert expand(data, values, out) == EXPAND_FAILED


@pytest.mark.parametrize("template", ["AT+X={nope}", "AT+X={APN}", "AT+X={apn", "AT+X=apn}",
                                      "AT+X=}{apn"])
def test_a_template_that_cannot_be_expanded_is_refused_when_the_step_is_made(
        template: str) -> None:
    with pytest.raises(ValueError, match="template"):
        Step("x", template)


def test_a_table_whose_command_may_not_fit_the_command_buffer_is_refused() -> None:
    long = Step("long", "AT+X=" + "x" * (CMD_CAPACITY - 5))
    row = MACHINE[0]
    with pytest.raises(ValueError, match="CMD_CAPACITY"):
        _check_command_room((dataclasses.replace(row, steps=(long,)),))
    _check_command_room(MACHINE)
