"""Redaction: a bounded secret set, one search for all of them, applied to what is written only."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from airfsm.core import aliyun
from airfsm.core.codes import LogEvent, LogLevel
from airfsm.core.hal import LOG_OFF
from airfsm.host import log
from airfsm.host import log as log_module
from airfsm.host.redact import REDACTED, SESSION_SECRETS_KEPT, SecretSet
from airfsm.sim import SimConfig, parse_fault
from tests.harness import SEED_DN, SEED_DS, SEED_PK, make_rig

TOKENS = [f"token-{i:04d}-{'x' * 24}" for i in range(40)]


@pytest.fixture(autouse=True)
def clean_secrets() -> Iterator[None]:
    log.forget_secrets()
    yield
    log.forget_secrets()
    log.configure("warning", json=True, stream=io.StringIO())


def test_lasting_secrets_stay_and_session_secrets_rotate() -> None:
    secrets = SecretSet(session_kept=4)
    secrets.keep(SEED_DS)
    for token in TOKENS:
        secrets.rotate("dev-1", token)
    assert len(secrets) == 1 + 4
    text = " ".join([SEED_DS, *TOKENS])
    redacted = secrets.redact(text).split(" ")
    assert redacted[0] == REDACTED  # the DeviceSecret is never forgotten
    assert redacted[-4:] == [REDACTED] * 4  # the newest session secrets are hidden
    assert redacted[1:-4] == TOKENS[:-4]  # the old ones are forgotten (no longer in use)


def test_each_device_keeps_its_own_ring() -> None:
    secrets = SecretSet(session_kept=2)
    secrets.rotate("dev-1", TOKENS[0])
    for token in TOKENS[1:10]:
        secrets.rotate("dev-2", token)  # a busy neighbour does not push dev-1's token out
    assert secrets.redact(TOKENS[0]) == REDACTED
    assert len(secrets) == 1 + 2


def test_one_search_handles_overlaps_and_metacharacters() -> None:
    secrets = SecretSet()
    secrets.keep("abcd")
    secrets.keep("abcdef")  # contains the other: the longer one wins where both match
    secrets.keep("a.b*c+d?")  # regex metacharacters are literal
    assert secrets.redact("xabcdefx abcdx a.b*c+d? aXbbc") == "x***x ***x *** aXbbc"
    secrets.keep("ab")  # too short to be a secret: would hide ordinary words
    assert secrets.redact("ab") == "ab"


def test_many_devices_redact_in_one_pass() -> None:
    secrets = SecretSet()
    for i in range(1000):
        secrets.keep(f"device-secret-{i:04d}")
    assert secrets.redact("x device-secret-0999 y device-secret-0000") == "x *** y ***"
    assert secrets.redact("nothing secret here") == "nothing secret here"


def test_reauthentication_does_not_grow_the_secret_set() -> None:
    """Every re-auth brings a new iotToken; only the newest few are kept (the set used to grow
    by one per auth, for ever)."""
    auths = 8
    config = SimConfig(faults=[parse_fault(f"connack=refused@{auths - 1}")])
    rig = make_rig(config)
    assert rig.run_until(lambda: rig.controller.online)
    assert len(rig.module.issued_tokens) == auths
    # The DeviceSecret, the sign (the same every auth: nothing in it changes), the tokens kept.
    assert log.secret_count() <= 2 + SESSION_SECRETS_KEPT
    _iot_id, current = rig.module.issued_tokens[-1]
    assert log.redact(current) == REDACTED and log.redact(SEED_DS) == REDACTED


def test_only_written_events_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = log_module.redact

    def counting(text: str) -> str:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(log_module, "redact", counting)
    out = io.StringIO()
    log.configure("info", json=True, stream=out)
    log.register_secret(SEED_DS)
    logger = log.get_logger("t")
    logger.debug("at_rx", line=f"+X: {SEED_DS}" * 100)  # below the level: never built
    assert calls == []
    logger.info("at_rx", line=f"+X: {SEED_DS}")
    assert calls and SEED_DS not in out.getvalue()
    assert json.loads(out.getvalue())["line"] == f"+X: {REDACTED}"


@pytest.mark.parametrize("as_json", [True, False])
def test_tracebacks_are_redacted_in_both_renderers(as_json: bool) -> None:
    out = io.StringIO()
    log.configure("info", json=as_json, stream=out)
    log.register_secret(SEED_DS)
    try:
        raise RuntimeError(f"bad secret {SEED_DS} for {SEED_DN}")
    except RuntimeError:
        log.get_logger("t").exception("crashed")
    text = out.getvalue()
    assert "Traceback" in text and "RuntimeError" in text
    assert SEED_DS not in text and REDACTED in text


def test_the_controller_hands_its_secrets_to_the_hook_by_kind_whatever_its_level() -> None:
    events: list[tuple[LogEvent, int, bytes]] = []

    class Recorder:
        level = LOG_OFF  # wants no event: still gets the secrets

        def __call__(self, ctl: object, level: LogLevel, event: LogEvent, a: int, b: int, c: int,
                     data: bytes | bytearray | memoryview) -> None:
            events.append((event, a, bytes(data)))

    rig = make_rig(log_hook=Recorder())
    assert rig.run_until(lambda: rig.controller.online)
    _iot_id, token = rig.module.issued_tokens[-1]
    sign = aliyun.auth_params(aliyun.DeviceIdentity(SEED_PK, SEED_DN, SEED_DS))["sign"]
    assert {event for event, _a, _data in events} == {LogEvent.SECRET}
    assert events[0] == (LogEvent.SECRET, 1, SEED_DS.encode())  # the DeviceSecret: for good
    assert (LogEvent.SECRET, 0, token.encode()) in events  # session secrets: a = 0
    assert (LogEvent.SECRET, 0, sign.encode()) in events
    assert [a for _e, a, _d in events].count(1) == 1


def test_core_log_keeps_the_device_secret_and_rings_the_session_secrets() -> None:
    rig = make_rig()  # log.CORE_LOG, as the gateway, connect and demo
    assert rig.run_until(lambda: rig.controller.online)
    _iot_id, token = rig.module.issued_tokens[-1]
    assert log.redact(f"{SEED_DS} {token}") == f"{REDACTED} {REDACTED}"
    for other in TOKENS:  # many more sessions of this device
        log.register_session_secret(SEED_DN, other)
    assert log.redact(token) == token  # an old token is forgotten ...
    assert log.redact(SEED_DS) == REDACTED  # ... the DeviceSecret never


def test_a_controller_without_a_log_hook_logs_nothing() -> None:
    """Library use: no hook, no log line - so no secret can reach one."""
    out = io.StringIO()
    log.configure("debug", json=True, stream=out)
    rig = make_rig(log_hook=None)
    assert rig.run_until(lambda: rig.controller.online)
    rig.controller.publish("update", b"x", qos=1)
    assert rig.run_until(lambda: len(rig.controller.outbox) == 0)  # type: ignore[arg-type]
    assert out.getvalue() == ""
    assert log.secret_count() == 0  # nothing was handed to the redaction either
