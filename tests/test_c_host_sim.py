"""The C controller on a host (`port/c/build/airfsm-c`) against `airfsm sim` over a real pty.

The binary is the twin of `airfsm connect` (port/c/posix/main_posix.c): the same arguments, the
DeviceSecret from AIRFSM_DEVICE_SECRET, the same exit codes. It runs here in its sanitized build
(build/asan/airfsm-c: ASan + UBSan abort it on any memory error or undefined behaviour, which
fails the test through its exit status), against the simulator's module on a pty, with the
scenarios and faults the Python connect tests use (tests/test_cli.py, tests/test_controller.py):
ONLINE, old firmware (exit 4, no HTTP command), auth 401 (exit 5, no AT+MCONFIG), a stage that
never completes (exit 6), every recoverable fault (ONLINE all the same, and the fault fired),
and a QoS1 publish acknowledged by PUBACK, through a real mosquitto too.

Each run is bounded by a deadline on the process; nothing sleeps. The fault runs go side by side
(each its own simulator and process, all idle most of the time) to keep the suite's wall time.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from airfsm.core import aliyun
from airfsm.sim import SimConfig, SimServer, parse_fault
from airfsm.sim.module import SimEvent
from tests.cport import BUILD, make, require_host_compiler
from tests.harness import SEED_DN, SEED_DS, SEED_PK

DEADLINE_S = 120  # a bound against hangs, not a performance expectation
UPDATE = f"/{SEED_PK}/{SEED_DN}/update"


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    require_host_compiler()
    make("programs")


def binary(sanitized: bool = True) -> str:
    return str(BUILD / ("asan/airfsm-c" if sanitized else "airfsm-c"))


def clean_env(secret: str | None = SEED_DS, product_secret: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFSM_")}
    if secret is not None:
        env["AIRFSM_DEVICE_SECRET"] = secret
    if product_secret is not None:
        env["AIRFSM_PRODUCT_SECRET"] = product_secret
    return env


def connect_args(port: str, *extra: str) -> list[str]:
    return ["--port", port, "--product-key", SEED_PK, "--device-name", SEED_DN, *extra]


def airfsm_c(*args: str, secret: str | None = SEED_DS,
             sanitized: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary(sanitized), *args], capture_output=True, text=True,
                          env=clean_env(secret), timeout=DEADLINE_S, stdin=subprocess.DEVNULL)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("airfsm-c: ")
    return lines[0]


@dataclass
class Run:
    """One simulator and one airfsm-c against it, what it printed and what the module saw."""

    config: SimConfig
    args: tuple[str, ...] = ()
    server: SimServer | None = None
    events: list[SimEvent] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    result: subprocess.CompletedProcess[str] | None = None
    secret: str | None = SEED_DS
    product_secret: str | None = None

    def start(self, session: Any = None) -> Run:
        self.server = SimServer(self.config, transport="pty", session=session)
        self.server.module.observer = self.events.append
        self.server.start()
        assert self.server.port_path is not None
        self.proc = subprocess.Popen([binary(), *connect_args(self.server.port_path, *self.args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=clean_env(self.secret, self.product_secret),
                                     stdin=subprocess.DEVNULL)
        return self

    def wait(self) -> Run:
        assert self.proc is not None and self.server is not None
        try:
            out, err = self.proc.communicate(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"airfsm-c did not exit within {DEADLINE_S} s:\n{err[-3000:]}")
        finally:
            self.server.stop()
        self.result = subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)
        return self

    @property
    def commands(self) -> list[str]:
        assert self.server is not None
        return list(self.server.module.commands)

    @property
    def boots(self) -> int:
        assert self.server is not None
        return self.server.module.boots

    @property
    def tx_writes(self) -> int:
        assert self.server is not None
        return self.server.tx_writes

    @property
    def tx_bytes(self) -> int:
        assert self.server is not None
        return self.server.tx_bytes

    def fired(self) -> list[str]:
        return [e.text for e in self.events if e.kind == "fault"]

    def kinds(self, kind: str) -> list[SimEvent]:
        return [e for e in self.events if e.kind == kind]


def run(config: SimConfig, *args: str) -> Run:
    return Run(config, args).start().wait()


def sim(*faults: str, **config: Any) -> SimConfig:
    return SimConfig(profile="fast", faults=[parse_fault(f) for f in faults], **config)


# --- the scenarios of the connect tests ----------------------------------------------------


def test_reaches_online_over_a_real_pty() -> None:
    r = run(sim(), "--timeout", "60")
    assert r.result is not None
    assert r.result.returncode == 0, r.result.stderr
    assert r.result.stdout.startswith("online in ")
    assert f"{SEED_PK}/{SEED_DN} via " in r.result.stdout
    assert r.server is not None and r.server.module.mqtt_state == 1
    assert r.kinds("connack") and r.kinds("grant")
    assert r.commands[-1].startswith("AT+MSUB=")  # subscribed: the last step of MQTT_CONNECT


def test_the_plain_build_reaches_online_too() -> None:
    with SimServer(sim(), transport="pty") as server:
        assert server.port_path is not None
        result = airfsm_c(*connect_args(server.port_path, "--timeout", "60"), sanitized=False)
    assert result.returncode == 0, result.stderr


def test_old_firmware_exits_4_without_any_http_command() -> None:
    r = run(sim("old-firmware"), "--timeout", "60")
    assert r.result is not None
    assert r.result.returncode == 4, r.result.stderr
    assert "older than V409" in one_line_error(r.result)
    assert "AT+CGMR" in r.commands
    assert not any(c.startswith("AT+HTTP") for c in r.commands)


def test_auth_401_exits_5_and_never_sends_mconfig() -> None:
    r = run(sim("auth=401@*"), "--timeout", "60", "--auth-attempts", "2")
    assert r.result is not None
    assert r.result.returncode == 5, r.result.stderr
    assert "401" in one_line_error(r.result)
    assert r.commands.count("AT+HTTPACTION=1") == 2
    assert not any(c.startswith("AT+MCONFIG") for c in r.commands)


def test_a_stage_that_never_completes_exits_6_naming_it() -> None:
    r = run(sim(attach_after_ms=10**9), "--timeout", "2")
    assert r.result is not None
    assert r.result.returncode == 6, r.result.stderr
    line = one_line_error(r.result)
    assert "timed out in ATTACH" in line
    assert "not attached yet" in line  # the last step failure says why


def test_unopenable_port_exits_3_with_one_line() -> None:
    result = airfsm_c(*connect_args("/dev/does-not-exist-airfsm"))
    assert result.returncode == 3
    assert "/dev/does-not-exist-airfsm" in one_line_error(result)


def test_a_port_that_vanishes_exits_3() -> None:
    asked = threading.Event()
    server = SimServer(sim(attach_after_ms=10**9), transport="pty")
    server.module.observer = lambda e: asked.set() if e.kind == "command" else None
    server.start()
    assert server.port_path is not None
    proc = subprocess.Popen([binary(), *connect_args(server.port_path, "--timeout", "60")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env(), stdin=subprocess.DEVNULL)
    try:
        assert asked.wait(DEADLINE_S), "the binary never wrote a command"
    finally:
        server.stop()  # closes both ends of the pty: the binary's reads fail (EIO, HUP)
    _out, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 3, err
    assert "the serial port vanished" in err
    assert "Traceback" not in err and "AddressSanitizer" not in err


@pytest.mark.parametrize("args, secret, words", [
    ([], SEED_DS, "--port is required"),
    (["--port", "/dev/null"], SEED_DS, "--product-key and --device-name are required"),
    (connect_args("/dev/null"), None, "AIRFSM_DEVICE_SECRET is not set"),
    (connect_args("/dev/null", "--timeout", "0"), SEED_DS, "--timeout"),
    (connect_args("/dev/null", "--timeout", "nine"), SEED_DS, "--timeout"),
    (connect_args("/dev/null", "--baud", "12345"), SEED_DS, "--baud"),
    (connect_args("/dev/null", "--qos", "2"), SEED_DS, "--qos"),
    (connect_args("/dev/null", "--publish", "no-equals-sign"), SEED_DS, "TOPIC=TEXT"),
    (connect_args("/dev/null", "--bogus"), SEED_DS, "unknown argument: --bogus"),
    (["--port", "/dev/null", "--product-key", "bad key!", "--device-name", SEED_DN], SEED_DS,
     "--product-key"),
    (connect_args("/dev/null"), 'has"quote', "AIRFSM_DEVICE_SECRET"),
])
def test_bad_arguments_exit_2_with_one_line(args: list[str], secret: str | None,
                                            words: str) -> None:
    result = airfsm_c(*args, secret=secret)
    assert result.returncode == 2, result.stderr
    assert words in one_line_error(result)


def test_a_secret_on_the_command_line_is_refused_and_never_echoed() -> None:
    for args in (["--device-secret", "S3cr3tValue1234"], ["--device-secret=S3cr3tValue1234"],
                 ["S3cr3tValue1234"]):
        result = airfsm_c(*connect_args("/dev/null", *args))
        assert result.returncode == 2
        one_line_error(result)
        assert "S3cr3tValue1234" not in result.stdout + result.stderr


def test_help_prints_the_usage_and_the_exit_codes() -> None:
    result = airfsm_c("--help")
    assert result.returncode == 0
    assert "--port PATH" in result.stdout and "AIRFSM_DEVICE_SECRET" in result.stdout
    assert "5 credentials rejected" in result.stdout


def test_debug_log_names_every_stage_and_never_a_secret() -> None:
    r = run(sim(), "--timeout", "60", "--log-level", "debug", "--publish", "update=hi")
    assert r.result is not None
    assert r.result.returncode == 0, r.result.stderr
    log = r.result.stderr
    assert "state AUTOBAUD -> VERSION_CHECK" in log  # AUTOBAUD is where it starts
    for stage in ("ATTACH", "BEARER", "HTTP_AUTH", "MQTT_CONNECT", "ONLINE"):
        assert f"-> {stage}" in log
    assert "AT+MCONFIG" in log and "AT_TX" in log  # the commands are logged ...
    (grant,) = r.kinds("grant")
    client_id, iot_id, iot_token = grant.text.split("\t")
    assert iot_id in log  # ... with what is not secret
    # ... and without what is: the secret, the sign of the auth body, the token
    sign = aliyun.auth_form(aliyun.DeviceIdentity(SEED_PK, SEED_DN, SEED_DS)).sign
    for secret in (SEED_DS, sign, iot_token):
        assert secret not in log + r.result.stdout
    assert f'"{iot_id}","***"' in log  # the token's place in AT+MCONFIG, masked


# --- issue 13: registration, the direct sign, instances, timestamps ------------------------

PRODUCT_SECRET = "Pr0ductS3cretForTheWholeProduct1"


def test_a_registering_device_keeps_its_secret_in_a_0600_file(tmp_path: Any) -> None:
    """AIRFSM_PRODUCT_SECRET and no DeviceSecret: PROVISION, the issued secret written to
    --secret-file (0600) and never logged; the next start reads it and registers no more."""
    path = tmp_path / "device_secret"
    first = Run(sim(product_secret=PRODUCT_SECRET),
                ("--timeout", "60", "--log-level", "debug", "--secret-file", str(path)),
                secret=None, product_secret=PRODUCT_SECRET).start().wait()
    assert first.result is not None and first.result.returncode == 0, first.result.stderr
    assert "-> PROVISION (REGISTER)" in first.result.stderr
    assert first.server is not None
    issued = first.server.module.device_secret
    assert path.read_text() == issued + "\n"
    assert path.stat().st_mode & 0o777 == 0o600
    for secret in (issued, PRODUCT_SECRET):
        assert secret not in first.result.stderr + first.result.stdout
    # the next start: the same cloud (registration refused now: the device is active)
    again = Run(sim(product_secret=PRODUCT_SECRET, device_activated=True,
                    device_secret=issued),
                ("--timeout", "60", "--secret-file", str(path)),
                secret=None, product_secret=PRODUCT_SECRET).start().wait()
    assert again.result is not None and again.result.returncode == 0, again.result.stderr
    assert again.server is not None and again.server.module.register_requests == 0


def test_a_refused_registration_exits_5_in_one_line(tmp_path: Any) -> None:
    r = Run(sim(product_secret=PRODUCT_SECRET, device_activated=True),
            ("--timeout", "60", "--auth-attempts", "2", "--secret-file",
             str(tmp_path / "secret")), secret=None, product_secret=PRODUCT_SECRET)
    r.start().wait()
    assert r.result is not None and r.result.returncode == 5, r.result.stderr
    assert "registers only once" in one_line_error(r.result)
    assert not (tmp_path / "secret").exists()


def test_registering_without_a_secret_file_is_refused_in_one_line() -> None:
    result = airfsm_c(*connect_args("/dev/null"), secret=None)
    assert result.returncode == 2
    assert "AIRFSM_DEVICE_SECRET is not set" in one_line_error(result)
    env_result = subprocess.run([binary(), *connect_args("/dev/null")], capture_output=True,
                                text=True, env=clean_env(None, PRODUCT_SECRET),
                                timeout=DEADLINE_S, stdin=subprocess.DEVNULL)
    assert env_result.returncode == 2
    assert "--secret-file" in one_line_error(env_result)


def test_the_direct_sign_with_timestamps_skips_the_https_pre_auth() -> None:
    r = run(sim(), "--timeout", "60", "--auth", "mqtt-sign", "--timestamps")
    assert r.result is not None and r.result.returncode == 0, r.result.stderr
    assert not any(c.startswith("AT+HTTP") for c in r.commands)
    (config,) = [c for c in r.commands if c.startswith("AT+MCONFIG=")]
    assert config.startswith(f'AT+MCONFIG="{SEED_DN}|securemode=2,signmethod=hmacmd5,'
                             "timestamp=")


def test_an_instance_device_uses_its_instance_endpoints() -> None:
    instance = "iot-06z00ax1o4qtest"
    r = run(sim(instance_id=instance), "--timeout", "60", "--instance-id", instance)
    assert r.result is not None and r.result.returncode == 0, r.result.stderr
    assert f'AT+SSLMIPSTART="{instance}.mqtt.iothub.aliyuncs.com",1883' in r.commands


# --- every recoverable fault: ONLINE all the same, and the fault really fired ---------------


@dataclass
class FaultCase:
    faults: tuple[str, ...]
    check: Callable[[Run], bool] = lambda r: True  # noqa: E731 (a default that passes)
    config: dict[str, Any] = field(default_factory=dict)
    args: tuple[str, ...] = ()


FAULT_CASES: dict[str, FaultCase] = {
    # tests/test_controller.py's seed dialect: every write split, one HTTP 601, a garbage line
    # (a bare `split` splits everything for good: no fault event, but many small writes)
    "split, 601, garbage": FaultCase(("split", "http=601@1", "garbage:AT+CSQ"),
                                     lambda r: r.commands.count("AT+HTTPACTION=1") == 2
                                     and r.tx_writes * 4 > r.tx_bytes),
    "SIM busy 3 times": FaultCase(("cme=14:AT+CPIN?@3",),
                                  lambda r: r.commands.count("AT+CPIN?") == 4),
    "version unanswered 4 times": FaultCase(("silence:AT+CGMR@4",),
                                            lambda r: r.commands.count("AT+CGMR") >= 5),
    "one auth 401": FaultCase(("auth=401@1",),
                              lambda r: r.commands.count("AT+HTTPACTION=1") == 2),
    "auth reply truncated": FaultCase(("lose=20:AT+HTTPREAD",),
                                      lambda r: r.commands.count("AT+HTTPREAD") == 2),
    "brownout in the auth reply": FaultCase(("brownout=60:AT+HTTPREAD",),
                                            lambda r: r.boots == 2),
    "HTTP refused": FaultCase(("http-error=3:AT+HTTPACTION=1",),
                              lambda r: r.commands.count("AT+HTTPACTION=1") == 2),
    "detach after HTTPACTION": FaultCase(("detach:AT+HTTPACTION",),
                                         lambda r: r.commands.count("AT+CGATT?") >= 2),
    "CONNACK refused": FaultCase(("connack=refused@1",),
                                 lambda r: sum(c.startswith("AT+MCONNECT") for c in r.commands)
                                 == 2),
    "MCONNECT ERROR": FaultCase(("error:AT+MCONNECT@1",),
                                lambda r: sum(c.startswith("AT+MCONNECT") for c in r.commands)
                                >= 2),
    "reboot at MCONNECT": FaultCase(("reboot:AT+MCONNECT@1",),
                                    lambda r: r.boots == 2),
    "TLS link refused": FaultCase(("connect-fail@1",),
                                  lambda r: sum(c.startswith("AT+SSLMIPSTART")
                                                for c in r.commands) == 2),
    "duplicate final code, URC inside": FaultCase(("dup-final:AT+CSQ",
                                                   "urc-inside:AT+CGATT?")),
    "overlong line": FaultCase(("overlong:AT+CGMR",)),
    "noisy RDY": FaultCase(("noisy-rdy@1",)),
    "slow attach": FaultCase((), lambda r: r.commands.count("AT+CGATT?") >= 2,
                             {"attach_after_ms": 3_000}),
    # publishing: a lost PUBACK is resent after its deadline, and acknowledged then
    "PUBACK lost once": FaultCase(("puback=lost@1",), lambda r: len(r.kinds("published")) == 2
                                  and len(r.kinds("puback")) == 1,
                                  args=("--publish", "update=again")),
}


def kind_of(spec: str) -> str:
    """The fault kind of a spec: `lose` of `lose=20:AT+HTTPREAD@1`."""
    return spec.split("@")[0].split(":")[0].split("=")[0]


def test_every_recoverable_fault_still_reaches_online() -> None:
    runs = {name: Run(sim(*case.faults, **case.config), ("--timeout", "90", *case.args))
            for name, case in FAULT_CASES.items()}
    for r in runs.values():
        r.start()
    problems = []
    for name, r in runs.items():
        r.wait()
        assert r.result is not None
        case = FAULT_CASES[name]
        if r.result.returncode != 0:
            problems.append(f"{name}: exit {r.result.returncode}: {r.result.stderr[-500:]}")
            continue
        fired = {kind_of(spec) for spec in r.fired()}
        wanted = {kind_of(spec) for spec in case.faults if spec != "split"}
        if not wanted <= fired:
            problems.append(f"{name}: faults {sorted(wanted - fired)} never fired")
        elif not case.check(r):
            problems.append(f"{name}: ONLINE, but not the way the fault demands: {r.commands}")
    assert not problems, "\n".join(problems)


# --- publishing ------------------------------------------------------------------------------


def test_a_qos1_message_is_published_and_acknowledged_by_puback() -> None:
    r = run(sim(), "--timeout", "60", "--publish", 'update={"n":1,"s":"a \\"quoted\\", comma"}',
            "--publish", "/b0FMK1Ga5cp/862991419835241/user/more=second")
    assert r.result is not None
    assert r.result.returncode == 0, r.result.stderr
    assert "published 2" in r.result.stdout
    assert r.server is not None
    assert r.server.module.published == [
        (UPDATE, b'{"n":1,"s":"a \\"quoted\\", comma"}', 1),
        (f"/{SEED_PK}/{SEED_DN}/user/more", b"second", 1)]
    assert [e.data for e in r.kinds("puback")] == [p for _t, p, _q in r.server.module.published]


def test_a_qos1_message_reaches_a_real_mosquitto(mosquitto: Any) -> None:
    try:
        from airfsm.sim.broker import BrokerSession
    except ImportError as exc:  # paho-mqtt is the `broker` extra
        if os.environ.get("CI") == "true":
            pytest.fail(f"paho-mqtt missing on CI: {exc}")
        pytest.skip(f"paho-mqtt not installed (pip install 'airfsm[broker]'): {exc}")
    from tests.conftest import BrokerProbe

    probe = BrokerProbe.connect_to(mosquitto, client_id="c-host-subscriber")
    try:
        probe.subscribe(f"/{SEED_PK}/{SEED_DN}/#", qos=1)
        session = BrokerSession.from_url(mosquitto.url, product_key=SEED_PK,
                                         device_name=SEED_DN)
        r = Run(sim(), ("--timeout", "60", "--publish", "update=from C via mosquitto"))
        r.start(session=session).wait()
        assert r.result is not None
        assert r.result.returncode == 0, r.result.stderr
        assert probe.wait_for(lambda: any(m.topic == UPDATE for m in probe.messages), 30)
        assert [m.payload for m in probe.messages if m.topic == UPDATE] == \
            [b"from C via mosquitto"]
        assert len(r.kinds("puback")) == 1  # the broker's PUBACK, relayed by the module
    finally:
        probe.close()


# --- the bench binary (bench/c_twin.py's contract) -----------------------------------------


def test_the_bench_binary_reports_every_c_twin_row() -> None:
    """`airfsm_bench --tick` gets a controller ONLINE against its in-memory module and times the
    tick; `--round-trip` times AT -> OK over a pty. Only that each row has a value (speed is
    `make bench`'s)."""
    from bench import c_twin

    figures = c_twin.measure(True)
    assert [f.name for f in figures] == [name for name, *_ in c_twin.ROWS]
    for f in figures:
        assert f.value is not None and f.value > 0, (f.name, f.notes)
