"""Fuzzing under hypothesis: the AT channel (through a controller), inbound +MSUB with odd
bytes, injection attempts in everything that reaches an AT command, and the configuration, the
environment and the command line (one line and a non-zero exit, never a traceback).

Injection is judged on the bytes the simulator receives: every command the controller writes
must be one whole command of its state's script (tests/reliability/monitor.py), and what was
published must reach the cloud byte for byte.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airfsm.cli import main
from airfsm.core import aliyun
from airfsm.core.settings import Settings
from airfsm.host.config import ConfigError, load_config
from airfsm.sim import SimConfig
from tests.conftest import hypothesis_examples
from tests.fuzz.at_channel import VOCABULARY, feed, feed_pieces
from tests.harness import SEED_DN, SEED_DS, SEED_PK, seed_settings
from tests.reliability.driver import Event, Run, logs_into
from tests.reliability.monitor import LogWatch

INJECTIONS = ('"', '\r', '\n', '\r\nAT+RESET\r', '",1,0,"x"\rAT+RESET\r', "\x00", "\\",
              "\\22", "\xff", "\udcff", "A" * 4100, "\r\nOK\r\n", "AT+CFUN=0")
HOSTILE = st.one_of(st.sampled_from(INJECTIONS),
                    st.lists(st.sampled_from(INJECTIONS), min_size=1, max_size=3).map("".join),
                    st.text(max_size=40))


# ---------------------------------------------------------------------- the AT channel


@settings(max_examples=hypothesis_examples(300))
@given(st.binary(max_size=600))
def test_random_bytes_and_interleaved_lines_never_break_the_controller(data: bytes) -> None:
    assert feed(data) == []


@settings(max_examples=hypothesis_examples(150))
@given(st.lists(st.tuples(st.one_of(st.sampled_from(VOCABULARY), st.binary(max_size=30)),
                          st.integers(0, 255)), max_size=60))
def test_valid_lines_in_any_order_and_split_never_break_it(
        chunks: list[tuple[bytes, int]]) -> None:
    assert feed_pieces([(chunk, wait * 10) for chunk, wait in chunks]) == []


# ---------------------------------------------------------------------- an online controller


def _online(settings: Settings | None = None, config: SimConfig | None = None) -> Run:
    logs = LogWatch()
    run = Run(config or SimConfig(), settings or seed_settings(), logs=logs)
    assert run.run_until(lambda: run.online, 600_000), run.subject.status()
    return run


@settings(max_examples=hypothesis_examples(60))
@given(suffix=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
       payloads=st.lists(st.binary(max_size=700), min_size=1, max_size=4))
def test_inbound_msub_with_odd_bytes_arrives_whole_or_not_at_all(
        suffix: str, payloads: list[bytes]) -> None:
    base = f"/{SEED_PK}/{SEED_DN}/"
    with logs_into(LogWatch()):
        run = _online(seed_settings(sub_topic=base + "#"))
        topic = base + suffix.replace("/", "_")
        for payload in payloads:
            run.module.send_downlink(topic, payload, run.now)
            run.run_for(2_000)
    delivered = run.inbound
    assert all(t == topic and p in payloads for t, p in delivered)
    # nothing the module sent whole is lost (only a payload over the data buffer may be)
    assert [p for _t, p in delivered] == [p for p in payloads if len(p) <= 4096]
    assert run.violations() == []


@settings(max_examples=hypothesis_examples(80))
@given(topic=HOSTILE, payload=st.one_of(HOSTILE.map(lambda t: t.encode("utf-8",
                                                                       "surrogateescape")),
                                        st.binary(max_size=600)))
def test_a_hostile_topic_or_payload_is_refused_or_travels_byte_for_byte(
        topic: str, payload: bytes) -> None:
    with logs_into(LogWatch()):
        run = _online()
        accepted = run.publish(payload, 1, topic if topic.startswith("/") else f"/{topic}")
        assert run.run_until(run.settled, 600_000)
    assert run.violations() == []  # every command written was one of ONLINE's, whole
    if accepted:
        assert run.module.published[-1][1] == payload
    assert "AT+RESET" not in run.module.commands and "AT+CFUN=0" not in run.module.commands


@settings(max_examples=hypothesis_examples(60))
@given(apn=HOSTILE, client_id=HOSTILE)
def test_a_hostile_apn_or_client_id_is_refused_or_never_injects(apn: str,
                                                                client_id: str) -> None:
    identity = aliyun.DeviceIdentity(SEED_PK, SEED_DN, SEED_DS, client_id=client_id or None)
    settings_ = Settings(identity=identity, apn=apn)
    try:
        settings_.validate()
    except ValueError as exc:
        assert "\n" not in str(exc) and SEED_DS not in str(exc)
        return
    with logs_into(LogWatch()):
        run = Run(SimConfig(), settings_)
        run.run_until(lambda: run.online, 120_000)
    assert run.violations() == []
    assert run.module.commands.count("AT+RESET") == 0
    assert all(c.startswith("AT") for c in run.module.commands)


# ---------------------------------------------------------------------- config, env, CLI


KEYS = ("port", "product_key", "device_name", "device_secret", "region", "apn", "baud",
        "client_id", "sign_method", "log_level", "inbox", "outbox_capacity", "keepalive_s",
        "watchdog_s", "liveness_s", "puback_timeout_s", "silence_limit", "publish_attempts",
        "shutdown_grace_s", "timeout_s", "bogus-key")
VALUES = st.one_of(HOSTILE, st.integers(-2**70, 2**70).map(str), st.sampled_from(
    ("nan", "inf", "-1", "0", "1e309", "", "none", "true", "115200", "9" * 30)))


@settings(max_examples=hypothesis_examples(150))
@given(file_values=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6),
       raw=st.one_of(st.none(), st.text(max_size=80)),
       env_values=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4))
def test_a_config_file_and_environment_load_or_fail_in_one_line(
        tmp_path_factory: pytest.TempPathFactory, file_values: dict[str, str],
        raw: str | None, env_values: dict[str, str]) -> None:
    path = tmp_path_factory.mktemp("config") / "airfsm.toml"
    text = raw if raw is not None else "".join(
        f"{k} = {v}\n" if v.lstrip("-").isdigit() else f"{k} = {_toml_string(v)}\n"
        for k, v in file_values.items())
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    env = {f"AIRFSM_{k.upper()}": v for k, v in env_values.items() if "\x00" not in v}
    try:
        load_config(path, env, {})
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message


def _toml_string(value: str) -> str:
    escaped = "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}"
                      for c in value if ord(c) < 0xD800 or ord(c) > 0xDFFF)
    return f'"{escaped}"'


COMMANDS = (("sign", "--product-key", "--device-name"), ("publish", "--data-dir", "--qos"),
            ("inbox", "--data-dir", "--after", "--last"),
            ("outbox", "--data-dir", "--retry", "--discard"), ("status", "--data-dir"),
            ("connect", "--port", "--timeout", "--baud", "--apn"))


@settings(max_examples=hypothesis_examples(150))
@given(command=st.sampled_from(COMMANDS), data=st.data())
def test_cli_arguments_and_environment_end_in_one_line_never_a_traceback(
        tmp_path_factory: pytest.TempPathFactory, command: tuple[str, ...],
        data: st.DataObject) -> None:
    name, *flags = command
    workdir = tmp_path_factory.mktemp("cli")
    argv = [name]
    for flag in data.draw(st.lists(st.sampled_from(flags), max_size=3)):
        value = data.draw(VALUES)
        argv += [flag, str(workdir / "data") if flag == "--data-dir" else value]
    argv += data.draw(st.lists(HOSTILE, max_size=2))
    if name == "connect":
        argv += ["--port", str(workdir / "no-such-tty"), "--product-key", SEED_PK,
                 "--device-name", SEED_DN, "--timeout", "1"]
    env = {f"AIRFSM_{k.upper()}": v for k, v in
           data.draw(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3)).items()}
    env["AIRFSM_DATA_DIR"] = str(workdir / "data")
    env = {k: v for k, v in env.items() if "\x00" not in v and "\udcff" not in v}
    out, err = io.StringIO(), io.StringIO()
    with _environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([a for a in argv if "\x00" not in a])
        except SystemExit as exc:  # argparse's own --help/--version (not drawn)
            code = int(exc.code or 0)
    text = err.getvalue()
    assert "Traceback" not in text
    if code != 0:
        assert len(text.strip().splitlines()) == 1, text
    assert SEED_DS not in text + out.getvalue()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> object:
    saved = {k: v for k, v in os.environ.items() if k.startswith("AIRFSM_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield None
    finally:
        for key in [k for k in os.environ if k.startswith("AIRFSM_")]:
            del os.environ[key]
        os.environ.update(saved)


def test_the_fuzz_target_reaches_every_receive_state() -> None:
    # a fixed input for the atheris target: one of everything, then noise
    data = b"".join(bytes((1, 2 * i + 1)) for i in range(len(VOCABULARY))) + bytes(range(256))
    assert feed(data) == []
    assert Path(__file__).with_name("fuzz").joinpath("at_channel.py").exists()
    assert Event(0, "publish").action == "publish"


def test_a_usage_error_never_prints_a_raw_line_break_from_an_argument() -> None:
    for hostile in ("\r", "\n", "x\ny"):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["inbox", hostile])
        assert code != 0
        text = err.getvalue()
        assert text.endswith("\n") and "\r" not in text and text.count("\n") == 1, repr(text)
