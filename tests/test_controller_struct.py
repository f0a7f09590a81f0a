"""The controller as the C struct it mirrors: fixed fields, buffers allocated once, one shared
transitions Machine per table, a log hook whose events are codes."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import pytest
from structlog.testing import capture_logs

from airfsm.core.codes import LogEvent, LogLevel, State, Trigger
from airfsm.core.controller import Controller
from airfsm.core.hal import LOG_OFF
from airfsm.core.table import MACHINE, shared_machine
from airfsm.host import log
from airfsm.host.serial import memory_pair
from airfsm.sim import SimConfig
from tests.harness import SEED_DS, make_rig, seed_settings


class Recorder:
    """A log hook that keeps every event it is given, as codes."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.events: list[tuple[LogLevel, LogEvent, int, int, int, bytes]] = []

    def __call__(self, ctl: Any, level: LogLevel, event: LogEvent, a: int, b: int, c: int,
                 data: bytes | bytearray | memoryview) -> None:
        self.events.append((level, event, a, b, c, bytes(data)))

    def of(self, event: LogEvent) -> list[tuple[LogLevel, LogEvent, int, int, int, bytes]]:
        return [e for e in self.events if e[1] == event]


def online_with(**kwargs: Any) -> Any:
    rig = make_rig(SimConfig(), **kwargs)
    assert rig.run_until(lambda: rig.controller.online)
    rig.controller.publish("update", b"x", qos=1)
    assert rig.run_until(lambda: rig.controller.counters.publish_acked == 1)
    return rig


def test_the_controller_and_its_sub_structs_have_fixed_fields() -> None:
    c = Controller(memory_pair()[0], seed_settings())
    for struct in (c, c.channel, c.runner, c.auth, c.session, c.counters, c.settings):
        assert not hasattr(struct, "__dict__"), type(struct).__name__
        with pytest.raises(AttributeError):
            struct.no_such_field = 1  # type: ignore[union-attr]


def test_every_buffer_is_allocated_once_and_stays() -> None:
    rig = make_rig(SimConfig())
    c = rig.controller
    buffers = [c.read_buf, c.cmd_buf, c.line_buf, c.data_buf, c.info_arena, c.auth.body]
    sizes = [len(b) for b in buffers]
    assert rig.run_until(lambda: c.online)
    for i in range(5):
        c.publish("update", b"m%d" % i, qos=1)
        rig.module.send_downlink(f"/{c.settings.identity.product_key}/"
                                 f"{c.settings.identity.device_name}/get", b"d%d" % i, rig.now)
    assert rig.run_until(lambda: c.counters.publish_acked == 5 and len(rig.inbound) == 5)
    after = [c.read_buf, c.cmd_buf, c.line_buf, c.data_buf, c.info_arena, c.auth.body]
    assert all(a is b for a, b in zip(after, buffers, strict=True))
    assert [len(b) for b in after] == sizes
    # The channel works in the controller's buffers, not in copies of its own.
    assert c.channel._line is c.line_buf and c.channel._data is c.data_buf
    assert c.channel._response.arena is c.info_arena


def test_controllers_of_one_table_share_one_machine_and_leave_it_when_closed() -> None:
    first = Controller(memory_pair()[0], seed_settings())
    second = Controller(memory_pair()[0], seed_settings())
    assert first.machine is second.machine is shared_machine(MACHINE)
    assert first.model in first.machine.models and second.model in first.machine.models
    custom = tuple(dataclasses.replace(row) for row in MACHINE)
    third = Controller(memory_pair()[0], seed_settings(), table=custom)
    assert third.machine is not first.machine and third.machine is shared_machine(custom)
    # Each model is moved on its own: a transition of one leaves the other where it was.
    assert first._fire(Trigger.DONE)
    assert first.state == State.VERSION_CHECK and first.model.fsm_state == "VERSION_CHECK"
    assert second.state == State.AUTOBAUD and second.model.fsm_state == "AUTOBAUD"
    first.close()
    first.close()  # idempotent
    assert first.model not in first.machine.models and second.model in second.machine.models


def test_without_a_hook_nothing_is_logged_and_the_machine_still_runs() -> None:
    near, _far = memory_pair()
    c = Controller(near, seed_settings())
    assert c.log_hook is None and c.log_level == LOG_OFF
    with capture_logs() as logs:
        rig = make_rig(SimConfig(), log_hook=None)
        assert rig.run_until(lambda: rig.controller.online)
    assert [e for e in logs if e.get("event") in {ev.name.lower() for ev in LogEvent}] == []


def test_the_hook_gets_codes_and_no_event_below_its_level_is_built() -> None:
    info = Recorder(LogLevel.INFO)
    online_with(log_hook=info)
    assert not info.of(LogEvent.AT_TX)  # debug: not even handed over
    assert all(e[0] >= LogLevel.INFO for e in info.events)
    states = info.of(LogEvent.STATE)
    assert [State(e[2]).name for e in states][:3] == ["AUTOBAUD", "AUTOBAUD", "VERSION_CHECK"]
    # Secrets reach the hook whatever its level: the DeviceSecret, the sign, the iotToken.
    secrets = [e[5] for e in info.of(LogEvent.SECRET)]
    assert SEED_DS.encode() in secrets and len(secrets) >= 3

    debug = Recorder(LogLevel.DEBUG)
    online_with(log_hook=debug)
    sent = [e[5] for e in debug.of(LogEvent.AT_TX)]
    assert sent[:2] == [b"AT", b"AT"] and any(s.startswith(b"AT+MPUB=") for s in sent)


def test_the_level_is_asked_each_tick_so_a_reload_takes_effect() -> None:
    hook = Recorder(LogLevel.WARNING)
    rig = online_with(log_hook=hook)
    assert not hook.of(LogEvent.AT_TX)
    hook.level = LogLevel.DEBUG  # a SIGHUP reload, say
    rig.controller.publish("update", b"y", qos=1)
    assert rig.run_until(lambda: rig.controller.counters.publish_acked == 2)
    assert any(e[5].startswith(b"AT+MPUB=") for e in hook.of(LogEvent.AT_TX))


def test_the_host_hook_renders_the_structlog_events_of_before() -> None:
    log.configure("debug", json=True, stream=io.StringIO())
    try:
        with capture_logs() as logs:
            online_with(log_hook=log.CORE_LOG)
    finally:
        log.configure("warning", json=True, stream=io.StringIO())
    names = {e["event"] for e in logs}
    assert {"state", "at_tx", "at_timeout", "step"} <= names
    tx = next(e for e in logs if e["event"] == "at_tx")
    assert tx == {"event": "at_tx", "command": "AT", "state": "AUTOBAUD", "log_level": "debug"}
    step = next(e for e in logs if e["event"] == "step")
    assert step == {"event": "step", "state": "AUTOBAUD", "step": "at", "outcome": "fail",
                    "why": "AT: no answer", "log_level": "info"}
