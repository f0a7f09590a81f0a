"""The Air72x simulator: the seed transcript byte for byte, every fault kind, pty and TCP."""

from __future__ import annotations

import json
import select
import time
from collections.abc import Callable
from typing import Any

import pytest
import serial

from airfsm.core import aliyun
from airfsm.core.timebase import MS_MASK, ms_add, ms_diff
from airfsm.sim import (
    FAULT_HELP,
    Fault,
    FaultKind,
    RecordingSession,
    SimConfig,
    SimModule,
    SimServer,
    parse_fault,
)

PK = "b0FMK1Ga5cp"
DN = "862991419835241"
SECRET = "y7MTCG6Gk33Ux26bbWSpANl4OaI0bg5Q"
IDENTITY = aliyun.DeviceIdentity(PK, DN, SECRET)
SEED_BODY = (
    b"productKey=b0FMK1Ga5cp&sign=1eb96463ad2345b6c261e2f7cc78a7a0"
    b"&clientId=862991419835241&deviceName=862991419835241"
)
AUTH_URL = "https://iot-auth.cn-shanghai.aliyuncs.com/auth/devicename"
MQTT_HOST = "b0FMK1Ga5cp.iot-as-mqtt.cn-shanghai.aliyuncs.com"
TOPIC_GET = f"/{PK}/{DN}/get"
TOPIC_UPDATE = f"/{PK}/{DN}/update"
SETTLE_MS = 100  # longer than any "fast" profile latency


class Bench:
    """A SimModule on a virtual clock, with everything it said collected."""

    def __init__(self, start_ms: int = 0, **config: Any) -> None:
        self.now = start_ms & MS_MASK
        self.module = SimModule(SimConfig(**config), self.now)
        self.said = bytearray()
        self.outputs: list[bytes] = []

    def run(self, ms: int) -> None:
        """Advance the clock by `ms`, calling output() at every deadline on the way."""
        end = ms_add(self.now, ms)
        for _ in range(100_000):
            deadline = self.module.next_deadline()
            if deadline is None or ms_diff(deadline, end) > 0:
                break
            if ms_diff(deadline, self.now) > 0:
                self.now = deadline
            data = self.module.output(self.now)
            if data:
                self.outputs.append(data)
                self.said += data
        else:
            raise AssertionError("the module never went idle")
        self.now = end

    def send(self, data: bytes) -> None:
        self.module.receive(data, self.now)

    def take(self) -> bytes:
        data = bytes(self.said)
        self.said.clear()
        return data

    def command(self, line: str, settle_ms: int = SETTLE_MS) -> bytes:
        """Send `line` + CR, let the module answer, return everything it said."""
        self.send(line.encode("latin-1") + b"\r")
        self.run(settle_ms)
        return self.take()

    def boot(self) -> bytes:
        self.run(SETTLE_MS)
        return self.take()


def echoed(line: str, *answers: str) -> bytes:
    return line.encode() + b"\r" + b"".join(f"\r\n{a}\r\n".encode() for a in answers)


def ready(**config: Any) -> Bench:
    """Booted and autobauded."""
    bench = Bench(**config)
    bench.boot()
    assert bench.command("AT").endswith(b"\r\nOK\r\n")
    return bench


def authenticate(bench: Bench, body: bytes = SEED_BODY, declared: int | None = None,
                 user_defined: str = "Content-Type: application/x-www-form-urlencoded",
                 url: str = AUTH_URL) -> bytes:
    """Bearer up (if needed), the HTTP auth exchange; returns the +HTTPACTION line."""
    if not bench.module.bearer_open:
        bench.command("AT+SAPBR=1,1")
    bench.command("AT+HTTPTERM")
    assert bench.command("AT+HTTPINIT").endswith(b"OK\r\n")
    bench.command(f'AT+HTTPPARA="URL","{url}"')
    bench.command(f'AT+HTTPPARA="USER_DEFINED","{user_defined}"')
    size = len(body) if declared is None else declared
    assert bench.command(f"AT+HTTPDATA={size},20000").endswith(b"\r\nDOWNLOAD\r\n")
    bench.send(body)
    bench.run(SETTLE_MS)
    bench.take()
    said = bench.command("AT+HTTPACTION=1")
    return said.split(b"\r\n")[-2]


def http_read(bench: Bench) -> bytes:
    said = bench.command("AT+HTTPREAD")
    header, _, rest = said.partition(b"\r\n+HTTPREAD: ")
    size_text, _, rest = rest.partition(b"\r\n")
    body = rest[: int(size_text)]
    assert rest[int(size_text):] == b"\r\nOK\r\n"
    return body


def online(**config: Any) -> Bench:
    """Authenticated, MQTT connected, subscribed to /get."""
    bench = ready(**config)
    assert authenticate(bench) == b"+HTTPACTION: 1,200,128"
    iot_id, token = bench.module.issued_tokens[-1]
    bench.command(f'AT+MCONFIG="{DN}","{iot_id}","{token}"')
    assert bench.command(f'AT+SSLMIPSTART="{MQTT_HOST}",1883').endswith(b"CONNECT OK\r\n")
    assert bench.command("AT+MCONNECT=1,300").endswith(b"CONNACK OK\r\n")
    assert bench.command(f'AT+MSUB="{TOPIC_GET}",0').endswith(b"SUBACK\r\n")
    return bench


# --- the seed transcript ----------------------------------------------------------------------


def test_seed_transcript_byte_exact() -> None:
    bench = Bench()
    assert bench.boot() == b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\nSMS Ready\r\n"
    assert bench.command("AT") == b"AT\r\r\nOK\r\n"
    assert bench.command("AT+CGMR") == echoed("AT+CGMR", "AirM2M_Air72xUy_V409_LTE_AT", "OK")
    assert bench.command("AT+CGATT?") == echoed("AT+CGATT?", "+CGATT: 1", "OK")
    for line in ('AT+SAPBR=3,1,"CONTYPE","GPRS"', 'AT+SAPBR=3,1,"APN","CMIOT"', "AT+SAPBR=1,1",
                 "AT+HTTPINIT", f'AT+HTTPPARA="URL","{AUTH_URL}"',
                 'AT+HTTPPARA="USER_DEFINED","Content-Type: application/x-www-form-urlencoded"'):
        assert bench.command(line) == echoed(line, "OK")

    assert aliyun.auth_body(IDENTITY) == SEED_BODY and len(SEED_BODY) == 112
    assert bench.command("AT+HTTPDATA=112,20000") == echoed("AT+HTTPDATA=112,20000", "DOWNLOAD")
    bench.send(SEED_BODY)
    bench.run(SETTLE_MS)
    assert bench.take() == b"\r\nOK\r\n"  # no echo of the data
    assert bench.command("AT+HTTPACTION=1") == echoed(
        "AT+HTTPACTION=1", "OK", "+HTTPACTION: 1,200,128")

    said = bench.command("AT+HTTPREAD")
    iot_id, token = bench.module.issued_tokens[-1]
    reply = (f'{{"code":200,"data":{{"iotId":"{iot_id}","iotToken":"{token}"}},'
             f'"message":"success"}}').encode()
    assert len(reply) == 128
    assert said == b"AT+HTTPREAD\r\r\n+HTTPREAD: 128\r\n" + reply + b"\r\nOK\r\n"
    parsed = aliyun.parse_auth_reply(reply)
    assert parsed.ok and (parsed.iot_id, parsed.iot_token) == (iot_id, token)
    assert bench.command("AT+HTTPTERM") == echoed("AT+HTTPTERM", "OK")

    mconfig = f'AT+MCONFIG="{DN}","{iot_id}","{token}"'
    assert bench.command(mconfig) == echoed(mconfig, "OK")
    start = f'AT+SSLMIPSTART="{MQTT_HOST}",1883'
    assert bench.command(start) == echoed(start, "OK", "CONNECT OK")
    assert bench.command("AT+MCONNECT=1,300") == echoed("AT+MCONNECT=1,300", "OK", "CONNACK OK")
    msub = f'AT+MSUB="{TOPIC_GET}",0'
    assert bench.command(msub) == echoed(msub, "OK", "SUBACK")
    assert bench.command("AT+MQTTMSGSET=0") == echoed("AT+MQTTMSGSET=0", "OK")
    pub0 = f'AT+MPUB="{TOPIC_UPDATE}",0,0,"test0"'
    assert bench.command(pub0) == echoed(pub0, "OK")
    pub1 = f'AT+MPUB="{TOPIC_UPDATE}",1,0,"test1"'
    assert bench.command(pub1) == echoed(pub1, "OK", "PUBACK")
    assert bench.module.published == [(TOPIC_UPDATE, b"test0", 0), (TOPIC_UPDATE, b"test1", 1)]

    assert bench.module.send_downlink(TOPIC_GET, b"server send", bench.now)
    bench.run(SETTLE_MS)
    assert bench.take() == b'\r\n+MSUB: "/b0FMK1Ga5cp/862991419835241/get",11 byte,server send\r\n'
    assert bench.module.commands[:3] == ["AT", "AT+CGMR", "AT+CGATT?"]
    assert bench.module.auth_requests == 1


def test_cgmr_quoted() -> None:
    bench = ready(cgmr_quoted=True)
    assert bench.command("AT+CGMR") == echoed(
        "AT+CGMR", '+CGMR: "AirM2M_Air72xUy_V409_LTE_AT"', "OK")


def test_crlf_terminator_and_any_split_of_input() -> None:
    bench = ready()
    for byte in b"AT+CSQ\r\n":
        bench.send(bytes([byte]))
    bench.run(SETTLE_MS)
    assert bench.take() == echoed("AT+CSQ", "+CSQ: 24,99", "OK")
    assert bench.command("AT+CPIN?") == echoed("AT+CPIN?", "+CPIN: READY", "OK")


def test_fresh_credentials_every_auth_and_deterministic() -> None:
    bench = ready()
    authenticate(bench)
    first = json.loads(http_read(bench))["data"]
    authenticate(bench)
    second = json.loads(http_read(bench))["data"]
    assert first != second
    assert bench.module.issued_tokens == [
        (first["iotId"], first["iotToken"]), (second["iotId"], second["iotToken"])]
    again = ready()
    authenticate(again)
    assert again.module.issued_tokens[0] == bench.module.issued_tokens[0]  # same seed


def test_resources_mqtt_in_reply() -> None:
    bench = ready()
    params = aliyun.auth_params(IDENTITY)
    body = (aliyun.auth_body(IDENTITY) + b"&resources=mqtt")
    assert params["sign"].encode() in body
    assert authenticate(bench, body=body).startswith(b"+HTTPACTION: 1,200,")
    reply = aliyun.parse_auth_reply(http_read(bench))
    assert reply.ok and (reply.mqtt_host, reply.mqtt_port) == (MQTT_HOST, 1883)


# --- the auth server's verdicts ---------------------------------------------------------------


def auth_code(bench: Bench) -> int:
    code = json.loads(http_read(bench))["code"]
    assert isinstance(code, int)
    return code


def test_bad_sign_is_401() -> None:
    bench = ready()
    body = SEED_BODY.replace(b"sign=1eb9", b"sign=0eb9")
    assert authenticate(bench, body=body).startswith(b"+HTTPACTION: 1,200,")
    assert auth_code(bench) == 401
    assert bench.module.issued_tokens == []


def test_declared_length_too_short_is_not_200() -> None:
    bench = ready()
    # The module takes exactly n bytes: the form it sees is cut short.
    authenticate(bench, body=SEED_BODY[:111], declared=111)
    assert auth_code(bench) != 200


def test_declared_length_too_long_times_out_with_error() -> None:
    bench = ready()
    bench.command("AT+SAPBR=1,1")
    bench.command("AT+HTTPINIT")
    assert bench.command("AT+HTTPDATA=113,1000", settle_ms=5).endswith(b"DOWNLOAD\r\n")
    bench.send(SEED_BODY)
    bench.run(990)  # the 1000 ms run from the DOWNLOAD prompt
    assert bench.take() == b""
    bench.run(20)
    assert bench.take() == b"\r\nERROR\r\n"


def test_content_type_without_space_is_460() -> None:
    bench = ready()
    authenticate(bench, user_defined="Content-Type:application/x-www-form-urlencoded")
    assert auth_code(bench) == 460


def test_unknown_device_is_5001_and_wrong_host_is_dns_error() -> None:
    bench = ready()
    other = aliyun.auth_body(aliyun.DeviceIdentity(PK, "862991419835242", SECRET))
    authenticate(bench, body=other)
    assert auth_code(bench) == 5001
    assert authenticate(bench, url="https://example.com/auth/devicename") == \
        b"+HTTPACTION: 1,603,0"


def test_http_without_bearer_is_601() -> None:
    bench = ready()
    bench.command("AT+HTTPINIT")
    bench.command(f'AT+HTTPPARA="URL","{AUTH_URL}"')
    assert bench.command("AT+HTTPACTION=1").endswith(b"+HTTPACTION: 1,601,0\r\n")


# --- MQTT -------------------------------------------------------------------------------------


def test_stale_token_is_refused() -> None:
    bench = ready()
    authenticate(bench)
    stale_id, stale_token = bench.module.issued_tokens[-1]
    authenticate(bench)  # a newer token replaces it
    bench.command(f'AT+MCONFIG="{DN}","{stale_id}","{stale_token}"')
    bench.command(f'AT+SSLMIPSTART="{MQTT_HOST}",1883')
    said = bench.command("AT+MCONNECT=1,300")
    assert said == echoed("AT+MCONNECT=1,300", "OK", "ERROR", "CLOSED")
    assert bench.module.mqtt_state == 0
    assert bench.command("AT+MQTTSTATU") == echoed("AT+MQTTSTATU", "+MQTTSTATU :0", "OK")


def test_wrong_client_id_is_refused() -> None:
    bench = ready()
    authenticate(bench)
    iot_id, token = bench.module.issued_tokens[-1]
    bench.command(f'AT+MCONFIG="someone-else","{iot_id}","{token}"')
    bench.command(f'AT+SSLMIPSTART="{MQTT_HOST}",1883')
    assert bench.command("AT+MCONNECT=1,300").endswith(b"ERROR\r\n\r\nCLOSED\r\n")


def test_mconnect_too_late_server_drops() -> None:
    bench = ready()
    authenticate(bench)
    bench.command(f'AT+SSLMIPSTART="{MQTT_HOST}",1883')
    assert bench.module.mqtt_state == 2
    bench.run(5000)
    assert bench.take() == b"\r\nCLOSED\r\n"
    assert bench.command("AT+MCONNECT=1,300") == echoed("AT+MCONNECT=1,300", "+CME ERROR: 767")


def test_sslmipstart_wrong_host_already_and_no_bearer() -> None:
    bench = ready()
    start = f'AT+SSLMIPSTART="{MQTT_HOST}",1883'
    assert bench.command(start) == echoed(start, "OK", "CONNECT FAIL")  # no bearer yet
    bench.command("AT+SAPBR=1,1")
    wrong = 'AT+SSLMIPSTART="example.com",1883'
    assert bench.command(wrong) == echoed(wrong, "OK", "CONNECT FAIL")
    assert bench.command(start).endswith(b"CONNECT OK\r\n")
    assert bench.command(start) == echoed(start, "OK", "ALREADY CONNECT")


def test_mpub_escapes_and_hex_mode() -> None:
    bench = online()
    line = f'AT+MPUB="{TOPIC_UPDATE}",0,0,"{{\\22a\\22:1,\\0D\\0Ab\\5C}}"'
    assert bench.command(line) == echoed(line, "OK")
    assert bench.module.published[-1] == (TOPIC_UPDATE, b'{"a":1,\r\nb\\}', 0)
    assert bench.command("AT+MQTTMODE=1").endswith(b"OK\r\n")
    assert bench.command(f'AT+MPUB="{TOPIC_UPDATE}",0,0,"48690A22"').endswith(b"OK\r\n")
    assert bench.module.published[-1] == (TOPIC_UPDATE, b'Hi\n"', 0)


def test_mpub_refuses_raw_quote_bad_qos_and_offline() -> None:
    bench = online()
    assert bench.command(f'AT+MPUB="{TOPIC_UPDATE}",0,0,"a"b"').endswith(b"\r\nERROR\r\n")
    assert bench.command(f'AT+MPUB="{TOPIC_UPDATE}",2,0,"x"').endswith(b"\r\nERROR\r\n")
    bench.module.drop_mqtt(bench.now)
    bench.run(SETTLE_MS)
    assert bench.take() == b"\r\nCLOSED\r\n"
    assert bench.command(f'AT+MPUB="{TOPIC_UPDATE}",0,0,"x"').endswith(b"\r\nERROR\r\n")
    assert bench.module.published == []


def test_downlink_counts_bytes_and_keeps_commas_and_crlf() -> None:
    bench = online()
    payload = b'{"a":1,\r\n"b":"x,y"}'
    assert bench.module.send_downlink(TOPIC_GET, payload, bench.now)
    bench.run(SETTLE_MS)
    assert bench.take() == (f'\r\n+MSUB: "{TOPIC_GET}",{len(payload)} byte,'.encode()
                            + payload + b"\r\n")
    assert not bench.module.send_downlink(f"/{PK}/{DN}/other", b"x", bench.now)
    bench.run(SETTLE_MS)
    assert bench.take() == b""
    assert bench.module.downlinks_dropped == 1


def test_wildcard_subscription_and_session_seam() -> None:
    session = RecordingSession()
    bench = online()
    bench.module.session = session
    assert bench.command(f'AT+MSUB="/{PK}/{DN}/user/#",1').endswith(b"SUBACK\r\n")
    assert bench.module.send_downlink(f"/{PK}/{DN}/user/a/b", b"hi", bench.now)
    assert bench.command(f'AT+MPUB="{TOPIC_UPDATE}",1,1,"x"').endswith(b"PUBACK\r\n")
    assert session.calls == [("subscribe", (f"/{PK}/{DN}/user/#", 1)),
                             ("publish", (TOPIC_UPDATE, b"x", 1, True))]


def test_mipclose_and_mqttstatu() -> None:
    bench = ready()
    assert bench.command("AT+MIPCLOSE") == echoed("AT+MIPCLOSE", "+CME ERROR: 767")
    bench = online()
    assert bench.command("AT+MQTTSTATU") == echoed("AT+MQTTSTATU", "+MQTTSTATU :1", "OK")
    assert bench.command("AT+MDISCONNECT") == echoed("AT+MDISCONNECT", "OK")
    assert bench.module.mqtt_state == 2
    assert bench.command("AT+MIPCLOSE") == echoed("AT+MIPCLOSE", "OK")
    assert bench.module.mqtt_state == 0


# --- module state -----------------------------------------------------------------------------


def test_nothing_answered_before_first_uppercase_at() -> None:
    bench = Bench()
    bench.boot()
    for line in (b"at\r", b"At\r", b"hello\r", b"\r\n"):
        bench.send(line)
        bench.run(SETTLE_MS)
    assert bench.take() == b""
    assert bench.module.commands == [] and not bench.module.trained
    assert bench.command("AT+CGMR").endswith(b"\r\nOK\r\n")  # "AT" trains and starts the line
    assert bench.module.commands == ["AT+CGMR"]
    assert bench.command("at") == echoed("at", "OK")  # once trained, case does not matter


def test_input_during_boot_is_lost() -> None:
    bench = Bench(autobaud=False)
    bench.send(b"AT\r")
    bench.run(SETTLE_MS)
    assert b"OK" not in bench.take()
    assert bench.command("AT") == echoed("AT", "OK")


def test_ate0_turns_echo_off() -> None:
    bench = ready()
    assert bench.command("ATE0") == echoed("ATE0", "OK")
    assert bench.command("AT+CGATT?") == b"\r\n+CGATT: 1\r\n\r\nOK\r\n"
    assert bench.command("ATE1") == b"\r\nOK\r\n"
    assert bench.command("AT") == echoed("AT", "OK")


def test_reboot_gives_rdy_and_autobaud_again() -> None:
    bench = online()
    session = bench.module.session
    assert isinstance(session, RecordingSession) and session.connected
    bench.module.reboot(bench.now)
    assert not session.connected
    assert bench.boot() == b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\nSMS Ready\r\n"
    assert bench.command("at") == b""  # autobaud again
    assert bench.command("AT") == echoed("AT", "OK")
    assert (bench.module.mqtt_state, bench.module.bearer_open, bench.module.boots) == (0, False, 2)
    assert bench.module.subscribed == {}


def test_reset_and_cfun11_reboot() -> None:
    for command in ("AT+RESET", "AT+CFUN=1,1"):
        bench = ready()
        assert bench.command(command, settle_ms=200) == echoed(
            command, "OK", "RDY", "+CFUN: 1", "+CPIN: READY", "SMS Ready")


def test_detach_drops_bearer_and_mqtt_then_reattaches() -> None:
    bench = online()
    bench.module.detach(bench.now)
    bench.run(1)
    assert bench.take() == b"\r\n+PDP DEACT\r\n\r\n+SAPBR 1: DEACT\r\n\r\nCLOSED\r\n"
    assert not bench.module.attached and not bench.module.bearer_open
    assert bench.command("AT+CGATT?", settle_ms=5) == echoed("AT+CGATT?", "+CGATT: 0", "OK")
    bench.run(SETTLE_MS)
    assert bench.command("AT+CGATT?") == echoed("AT+CGATT?", "+CGATT: 1", "OK")
    assert bench.command("AT+SAPBR=2,1") == echoed("AT+SAPBR=2,1", '+SAPBR: 1,3,"0.0.0.0"', "OK")


def test_slow_attach() -> None:
    bench = ready(attach_after_ms=10_000)
    assert bench.command("AT+CGATT?").startswith(echoed("AT+CGATT?", "+CGATT: 0"))
    assert bench.command("AT+SAPBR=1,1") == echoed("AT+SAPBR=1,1", "ERROR")
    bench.run(10_000)
    assert bench.command("AT+CGATT?").startswith(echoed("AT+CGATT?", "+CGATT: 1"))


def test_bearer_and_http_state_errors() -> None:
    bench = ready()
    assert bench.command("AT+SAPBR=0,1") == echoed("AT+SAPBR=0,1", "+CME ERROR: 3")
    assert bench.command("AT+SAPBR=1,1") == echoed("AT+SAPBR=1,1", "OK")
    assert bench.command("AT+SAPBR=1,1") == echoed("AT+SAPBR=1,1", "ERROR")
    said = bench.command("AT+SAPBR=2,1")
    assert said.startswith(b'AT+SAPBR=2,1\r\r\n+SAPBR: 1,1,"10.') and said.endswith(b"OK\r\n")
    assert bench.command("AT+HTTPREAD") == echoed("AT+HTTPREAD", "ERROR")
    assert bench.command("AT+HTTPINIT") == echoed("AT+HTTPINIT", "OK")
    assert bench.command("AT+HTTPINIT") == echoed("AT+HTTPINIT", "ERROR")
    assert bench.command("AT+NOSUCH") == echoed("AT+NOSUCH", "ERROR")


def test_commands_answer_in_order() -> None:
    bench = ready()
    bench.send(b"AT+SAPBR=1,1\rAT\r")  # the second waits for the slow first
    bench.run(SETTLE_MS)
    assert bench.take() == b"AT+SAPBR=1,1\rAT\r\r\nOK\r\n\r\nOK\r\n"


def test_clock_wraps() -> None:
    bench = Bench(start_ms=MS_MASK - 30)
    bench.boot()
    assert bench.command("AT") == echoed("AT", "OK")
    assert authenticate(bench) == b"+HTTPACTION: 1,200,128"
    assert bench.now < 1000  # crossed the 32-bit wrap


# --- faults -----------------------------------------------------------------------------------


def test_parse_fault_syntax() -> None:
    assert parse_fault("cme=14:AT+CPIN?@2") == Fault(FaultKind.CME, 14, "AT+CPIN?", 2)
    assert parse_fault("silence:AT+CGMR") == Fault(FaultKind.SILENCE, 0, "AT+CGMR", 1)
    assert parse_fault("auth=401@*") == Fault(FaultKind.AUTH, 401, None, None)
    assert parse_fault("puback=late@1") == Fault(FaultKind.PUBACK_LATE, 0, None, 1)
    assert parse_fault("split") == Fault(FaultKind.SPLIT, 0, None, None)
    assert parse_fault("cgatt0=5000") == Fault(FaultKind.CGATT0, 5000, None, None)
    assert parse_fault('error:AT+HTTPPARA="URL","https://a@b"@3').match == \
        'AT+HTTPPARA="URL","https://a@b"'
    for spec in ("cme=14:AT+CPIN?@2", "auth=401@*", "puback=lost@1", "old-firmware", "split"):
        assert str(parse_fault(spec)) in (spec, spec + "@1")
    for bad in ("", "bogus", "cme", "cme=x", "http=601:AT", "old-firmware@2", "puback=soon",
                "split@3", "error:", "silence=2"):
        with pytest.raises(ValueError) as info:
            parse_fault(bad)
        assert "\n" not in str(info.value)
    assert "KIND[=VALUE][:MATCH][@COUNT]" in FAULT_HELP


def faulty(*specs: str) -> Bench:
    return ready(faults=[parse_fault(s) for s in specs])


def test_fault_silence() -> None:
    bench = faulty("silence:AT+CGMR")
    assert bench.command("AT+CGMR", settle_ms=5000) == b"AT+CGMR\r"  # echo only
    assert bench.command("AT+CGMR").endswith(b"OK\r\n")  # count 1


def test_fault_error_and_cme() -> None:
    bench = faulty("error:AT+SAPBR=1,1", "cme=14:AT+CPIN?@2")
    assert bench.command("AT+SAPBR=1,1") == echoed("AT+SAPBR=1,1", "ERROR")
    assert not bench.module.bearer_open  # the command did not run
    assert bench.command("AT+CPIN?") == echoed("AT+CPIN?", "+CME ERROR: 14")
    assert bench.command("AT+CPIN?") == echoed("AT+CPIN?", "+CME ERROR: 14")
    assert bench.command("AT+CPIN?") == echoed("AT+CPIN?", "+CPIN: READY", "OK")


def test_fault_garbage() -> None:
    bench = faulty("garbage:AT+CSQ")
    said = bench.command("AT+CSQ")
    assert said.startswith(b"AT+CSQ\r\r\n") and said.endswith(b"\r\n+CSQ: 24,99\r\n\r\nOK\r\n")
    noise = said[len(b"AT+CSQ\r\r\n"):-len(b"\r\n\r\n+CSQ: 24,99\r\n\r\nOK\r\n")]
    assert 4 <= len(noise) <= 12 and b"\r" not in noise and b"\n" not in noise


def test_fault_split_one_answer() -> None:
    bench = faulty("split:AT+CGMR")
    bench.outputs.clear()
    said = bench.command("AT+CGMR")
    assert said == echoed("AT+CGMR", "AirM2M_Air72xUy_V409_LTE_AT", "OK")
    pieces = bench.outputs[1:]  # after the (unsplit) echo
    assert len(pieces) >= len(said) // 3 - 3 and all(1 <= len(p) <= 3 for p in pieces)


def test_fault_split_everything_never_interleaves() -> None:
    bench = Bench(faults=[parse_fault("split")])
    boot = bench.boot()
    assert boot.startswith(b"\r\nRDY\r\n") and all(len(p) <= 3 for p in bench.outputs)
    bench.send(b"AT\r")
    bench.module.send_downlink("/x", b"y", bench.now)  # dropped: not online
    bench.run(SETTLE_MS)
    assert bench.take() == echoed("AT", "OK")


def test_fault_http_status() -> None:
    bench = faulty("http=601@1")
    assert authenticate(bench) == b"+HTTPACTION: 1,601,0"
    assert authenticate(bench) == b"+HTTPACTION: 1,200,128"


def test_fault_auth_code() -> None:
    bench = faulty("auth=401@*")
    for _ in range(2):
        authenticate(bench)
        assert auth_code(bench) == 401
    assert bench.module.issued_tokens == []


def test_fault_old_firmware() -> None:
    bench = faulty("old-firmware")
    assert bench.command("AT+CGMR") == echoed("AT+CGMR", "AirM2M_Air72xUy_V300_LTE_AT", "OK")


def test_fault_reboot() -> None:
    bench = faulty("reboot:AT+CGATT?")
    said = bench.command("AT+CGATT?")
    assert said == echoed("AT+CGATT?", "RDY", "+CFUN: 1", "+CPIN: READY", "SMS Ready")
    assert bench.module.boots == 2 and not bench.module.trained


def test_fault_closed_after_answer() -> None:
    bench = online()
    bench.module.add_fault(parse_fault("closed:AT+MPUB"))
    line = f'AT+MPUB="{TOPIC_UPDATE}",1,0,"x"'
    assert bench.command(line) == echoed(line, "OK", "CLOSED")  # the PUBACK never comes
    assert bench.module.mqtt_state == 0


def test_fault_detach_after_answer() -> None:
    bench = online()
    bench.module.add_fault(parse_fault("detach:AT+CSQ"))
    assert bench.command("AT+CSQ", settle_ms=5) == echoed(
        "AT+CSQ", "+CSQ: 24,99", "OK", "+PDP DEACT", "+SAPBR 1: DEACT", "CLOSED")
    assert not bench.module.attached


def test_fault_puback_lost_and_late() -> None:
    bench = online(faults=[parse_fault("puback=lost@1"), parse_fault("puback=late@1")])
    line = f'AT+MPUB="{TOPIC_UPDATE}",1,0,"x"'
    assert bench.command(line, settle_ms=1000) == echoed(line, "OK")  # lost
    assert bench.command(line, settle_ms=10) == echoed(line, "OK")  # late: not yet
    bench.run(SETTLE_MS)
    assert bench.take() == b"\r\nPUBACK\r\n"
    assert bench.command(line, settle_ms=10) == echoed(line, "OK", "PUBACK")


def test_fault_cgatt0() -> None:
    bench = faulty("cgatt0=3000")
    assert b"+CGATT: 0" in bench.command("AT+CGATT?")
    bench.run(3000)
    assert b"+CGATT: 1" in bench.command("AT+CGATT?")


def test_fault_without_match_hits_next_command() -> None:
    bench = ready()
    bench.module.add_fault(parse_fault("error@2"))
    assert bench.command("AT") == echoed("AT", "ERROR")
    assert bench.command("AT+CSQ") == echoed("AT+CSQ", "ERROR")
    assert bench.command("AT") == echoed("AT", "OK")


def test_new_fault_specs_parse_and_print_back() -> None:
    assert parse_fault("connack=refused@2") == Fault(FaultKind.CONNACK_REFUSED, 0, None, 2)
    assert parse_fault("lose=20:AT+HTTPREAD") == Fault(FaultKind.LOSE, 20, "AT+HTTPREAD", 1)
    assert parse_fault("lose-downlink=5@3") == Fault(FaultKind.LOSE_DOWNLINK, 5, None, 3)
    assert parse_fault("brownout=60:AT+HTTPREAD").value == 60
    assert parse_fault("http-error=3:AT+HTTPACTION=1").kind is FaultKind.HTTP_ERROR
    for spec in ("connack=refused@2", "lose=20:AT+HTTPREAD@1", "lose-downlink=5@3",
                 "cache-notice@2", "noisy-rdy@1", "me-detach:AT+MPUB@1",
                 "http-error=3:AT+HTTPACTION=1@1", "brownout=60:AT+HTTPREAD@1"):
        assert str(parse_fault(spec)) == spec
        assert spec.split("=")[0].split(":")[0].split("@")[0] in FAULT_HELP
    for bad in ("connack", "connack=ok", "lose", "brownout=x", "noisy-rdy:AT",
                "cache-notice=3", "lose-downlink:AT+MPUB"):
        with pytest.raises(ValueError) as info:
            parse_fault(bad)
        assert "\n" not in str(info.value)


def test_fault_http_error_with_a_number() -> None:
    bench = faulty("http-error=3:AT+HTTPACTION=1")
    bench.command("AT+HTTPINIT")
    assert bench.command("AT+HTTPACTION=1") == echoed("AT+HTTPACTION=1", "ERROR: 3")


def test_fault_lose_drops_httpread_bytes_but_not_from_the_header() -> None:
    bench = faulty("lose=20:AT+HTTPREAD")
    authenticate(bench)
    said = bench.command("AT+HTTPREAD")
    header = b"\r\n+HTTPREAD: 128\r\n"
    assert said.startswith(b"AT+HTTPREAD\r" + header) and said.endswith(b"\r\nOK\r\n")
    assert len(said) == len(b"AT+HTTPREAD\r" + header) + 128 - 20 + len(b"\r\nOK\r\n")
    assert len(http_read(bench)) == 128  # once


def test_fault_brownout_cuts_the_answer_and_reboots() -> None:
    bench = faulty("brownout=40:AT+HTTPREAD")
    authenticate(bench)
    said = bench.command("AT+HTTPREAD")
    echo, header = b"AT+HTTPREAD\r", b"\r\n+HTTPREAD: 128\r\n"
    boot = b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\nSMS Ready\r\n"
    assert said.startswith(echo + header) and b"OK" not in said
    assert said[len(echo) + 40:] == boot  # 40 bytes of the answer, then the module restarted
    assert said[len(echo) + len(header):len(echo) + 40].startswith(b'{"code":200')
    assert bench.module.boots == 2 and not bench.module.trained


def test_fault_noisy_rdy_prints_noise_instead_of_the_first_line_break() -> None:
    bench = Bench(faults=[parse_fault("noisy-rdy@2")])
    assert bench.boot().startswith(b"\xff\x00RDY\r\n\r\n+CFUN: 1\r\n")
    bench.module.reboot(bench.now)
    assert bench.boot().startswith(b"\xff\x00RDY\r\n")
    bench.module.reboot(bench.now)
    assert bench.boot().startswith(b"\r\nRDY\r\n")


def test_fault_me_detach_says_only_cgev() -> None:
    bench = online()
    bench.module.add_fault(parse_fault("me-detach:AT+CSQ"))
    assert bench.command("AT+CSQ", settle_ms=5) == echoed(
        "AT+CSQ", "+CSQ: 24,99", "OK", "+CGEV: ME DETACH")
    assert not bench.module.attached and not bench.module.bearer_open
    assert bench.module.mqtt_state == 0


def test_fault_connack_refused_is_ok_then_a_bare_error() -> None:
    bench = online()
    bench.module.add_fault(parse_fault("connack=refused@1"))
    bench.module.drop_mqtt(bench.now)
    bench.take()
    bench.command("AT+MIPCLOSE")
    assert bench.command(f'AT+SSLMIPSTART="{MQTT_HOST}",1883').endswith(b"CONNECT OK\r\n")
    assert bench.command("AT+MCONNECT=1,120") == echoed("AT+MCONNECT=1,120", "OK", "ERROR")
    assert bench.module.mqtt_state == 0


def test_hex_mode_downlink_is_2n_hex_digits() -> None:
    bench = online()
    bench.command("AT+MQTTMODE=1")
    assert bench.module.send_downlink(TOPIC_GET, b"12\xff", bench.now)
    bench.run(SETTLE_MS)
    assert bench.take() == f'\r\n+MSUB: "{TOPIC_GET}",3 byte,3132FF\r\n'.encode()


def test_cache_mode_and_cache_notice_fault_keep_the_message_for_mqttmsgget() -> None:
    bench = online(faults=[parse_fault("cache-notice@1")])
    bench.module.send_downlink(TOPIC_GET, b"one", bench.now)
    bench.run(SETTLE_MS)
    assert bench.take() == b"\r\n+MSUB: 0\r\n"
    bench.module.send_downlink(TOPIC_GET, b"two", bench.now)  # the fault fired once: pushed
    bench.run(SETTLE_MS)
    assert bench.take() == f'\r\n+MSUB: "{TOPIC_GET}",3 byte,two\r\n'.encode()
    assert bench.command("AT+MQTTMSGSET=1") == echoed("AT+MQTTMSGSET=1", "OK")
    for payload in (b"three", b"four", b"five", b"six"):  # 5 cached in 4 slots
        bench.module.send_downlink(TOPIC_GET, payload, bench.now)
    bench.run(SETTLE_MS)
    assert bench.take() == b"".join(b"\r\n+MSUB: %d\r\n" % i for i in (1, 2, 3, 0))
    assert bench.command("AT+MQTTMSGGET?") == echoed(
        "AT+MQTTMSGGET?", *(f"+MQTTMSGGET: {i},VALID" for i in range(4)), "OK")
    line = '+MSUB: "{}",{} byte,{}'
    assert bench.command("AT+MQTTMSGGET") == echoed(
        "AT+MQTTMSGGET", *(line.format(TOPIC_GET, len(p), p) for p in
                           ("three", "four", "five", "six")), "OK")
    assert bench.command("AT+MQTTMSGGET") == echoed("AT+MQTTMSGGET", "OK")


def test_fault_lose_downlink_keeps_the_header_length() -> None:
    bench = online(faults=[parse_fault("lose-downlink=4")])
    bench.module.send_downlink(TOPIC_GET, b"0123456789", bench.now)
    bench.run(SETTLE_MS)
    assert bench.take() == f'\r\n+MSUB: "{TOPIC_GET}",10 byte,012789\r\n'.encode()


@pytest.mark.parametrize(("firmware", "closes"), [("AirM2M_Air72xUy_V409_LTE_AT", True),
                                                   ("AirM2M_Air724UG_V838_LTE_AT", False)])
def test_old_firmware_server_closes_an_idle_session_silently(firmware: str,
                                                             closes: bool) -> None:
    bench = online(firmware=firmware)  # MCONNECT=1,300: the server waits 450 s
    bench.run(449_000)
    bench.command(f'AT+MSUB="{TOPIC_GET}",0')  # a packet: the 450 s start over
    bench.run(449_000)
    assert bench.module.server_closed_silently == 0
    bench.run(2_000)
    assert bench.module.server_closed_silently == int(closes)
    assert bench.take() == b""  # not a word, whichever the firmware
    assert bench.module.mqtt_state == 1  # the module believes it is connected
    line = f'AT+MPUB="{TOPIC_UPDATE}",1,0,"x"'
    if closes:
        assert bench.command(line, settle_ms=1000) == echoed(line, "OK")  # no PUBACK
        assert bench.command(f'AT+MSUB="{TOPIC_GET}",0') == echoed(
            f'AT+MSUB="{TOPIC_GET}",0', "OK")  # no SUBACK
        assert not bench.module.send_downlink(TOPIC_GET, b"lost", bench.now)
        bench.command("AT+MIPCLOSE")
        assert bench.module.mqtt_state == 0
    else:
        assert bench.command(line) == echoed(line, "OK", "PUBACK")


# --- real transports --------------------------------------------------------------------------


def read_until(port: serial.SerialBase, wanted: bytes, deadline: float,
               resend: Callable[[], object] | None = None) -> bytes:
    """Read until `wanted` is seen, waiting in select(); `resend` every 200 ms if given."""
    got = bytearray()
    next_send = 0.0
    while wanted not in got:
        now = time.monotonic()
        assert now < deadline, f"timed out waiting for {wanted!r}; got {bytes(got)!r}"
        if resend is not None and now >= next_send:
            resend()
            next_send = now + 0.2
        select.select([port.fileno()], [], [], min(deadline, next_send or deadline) - now)
        got += port.read(4096)
    return bytes(got)


def autobaud(port: serial.SerialBase, deadline: float) -> None:
    read_until(port, b"\r\nOK\r\n", deadline, resend=lambda: port.write(b"AT\r"))


CGMR_EXCHANGE = b"AT+CGMR\r\r\nAirM2M_Air72xUy_V409_LTE_AT\r\n\r\nOK\r\n"


def test_over_pty() -> None:
    with SimServer(SimConfig(faults=[parse_fault("split:AT+CGMR")]), transport="pty") as server:
        assert server.port_path and server.port_path.startswith("/dev/")
        port = serial.serial_for_url(server.port_path, timeout=0)
        try:
            deadline = time.monotonic() + 10
            autobaud(port, deadline)
            writes_before = server.call(lambda m, now: server.tx_writes)
            port.write(b"AT+CGMR\r")
            assert CGMR_EXCHANGE in read_until(port, b"\r\nOK\r\n", deadline)
            # The split answer left as separate os.write calls of 1-3 bytes, not as one.
            answer_size = len(CGMR_EXCHANGE) - len(b"AT+CGMR\r")
            assert server.tx_writes - writes_before >= answer_size // 3
            assert server.send_downlink(TOPIC_GET, b"x") is False  # not online
            assert f"simulator on {server.port_path}" in server.status_line()
        finally:
            port.close()


def test_over_tcp() -> None:
    with SimServer(transport="tcp") as server:
        assert server.port_url and server.port_url.startswith("socket://127.0.0.1:")
        port = serial.serial_for_url(server.port_url, timeout=0)
        try:
            deadline = time.monotonic() + 10
            autobaud(port, deadline)
            port.write(b"AT+CGMR\r")
            assert CGMR_EXCHANGE in read_until(port, b"\r\nOK\r\n", deadline)
            server.reboot()
            read_until(port, b"\r\nRDY\r\n", deadline)
            assert server.call(lambda m, now: m.boots) == 2
        finally:
            port.close()


# --- faults and observation added for the reliability proofs ----------------------------------


def test_fault_split_with_a_piece_size_writes_that_many_bytes_at_a_time() -> None:
    bench = faulty("split=1:AT+CGMR")
    bench.outputs.clear()
    said = bench.command("AT+CGMR")
    assert said == echoed("AT+CGMR", "AirM2M_Air72xUy_V409_LTE_AT", "OK")
    answer = said[len(b"AT+CGMR\r"):]
    assert bench.outputs[1:] == [bytes((b,)) for b in answer]  # every boundary is a write
    assert str(parse_fault("split=1:AT+CGMR")) == "split=1:AT+CGMR@1"
    assert str(parse_fault("split=2")) == "split=2"
    for bad in ("split=0", "split=x"):
        with pytest.raises(ValueError):
            parse_fault(bad)


def test_fault_dup_final_sends_the_final_code_twice() -> None:
    bench = faulty("dup-final:AT+CSQ")
    assert bench.command("AT+CSQ") == echoed("AT+CSQ", "+CSQ: 24,99", "OK", "OK")
    assert bench.command("AT+CSQ") == echoed("AT+CSQ", "+CSQ: 24,99", "OK")  # once


def test_fault_dup_final_of_httpdata_doubles_the_ok_after_the_body() -> None:
    bench = faulty("dup-final:AT+HTTPDATA")
    bench.command("AT+HTTPINIT")
    assert bench.command("AT+HTTPDATA=4,20000") == echoed("AT+HTTPDATA=4,20000", "DOWNLOAD")
    bench.send(b"abcd")
    bench.run(SETTLE_MS)
    assert bench.take() == b"\r\nOK\r\n\r\nOK\r\n"


def test_fault_urc_inside_puts_a_urc_before_the_final_code() -> None:
    bench = faulty("urc-inside:AT+CGATT?")
    assert bench.command("AT+CGATT?") == echoed("AT+CGATT?", "+CGATT: 1", "+CEREG: 1", "OK")


def test_fault_overlong_sends_a_line_longer_than_any_buffer() -> None:
    bench = faulty("overlong:AT+CGMR")
    said = bench.command("AT+CGMR")
    lines = said.split(b"\r\n")
    assert max(len(line) for line in lines) == 4200
    assert said.endswith(b"\r\nAirM2M_Air72xUy_V409_LTE_AT\r\n\r\nOK\r\n")


def test_fault_cgatt_detach_says_only_cgatt_0() -> None:
    bench = online()
    bench.module.add_fault(parse_fault("cgatt-detach:AT+CSQ"))
    assert bench.command("AT+CSQ", settle_ms=5) == echoed(
        "AT+CSQ", "+CSQ: 24,99", "OK", "+CGATT: 0")
    assert not bench.module.attached and bench.module.mqtt_state == 0


def test_fault_connect_fail_refuses_the_next_tls_link() -> None:
    bench = online()
    bench.module.add_fault(parse_fault("connect-fail@1"))
    bench.command("AT+MIPCLOSE")
    line = f'AT+SSLMIPSTART="{MQTT_HOST}",1883'
    assert bench.command(line) == echoed(line, "OK", "CONNECT FAIL")
    assert bench.command(line).endswith(b"CONNECT OK\r\n")


def test_a_token_older_than_its_lifetime_is_refused_at_connect() -> None:
    bench = online(token_lifetime_ms=60_000)
    iot_id, token = bench.module.issued_tokens[-1]
    bench.run(60_000)
    assert bench.module.mqtt_state == 1  # the session that is up stays up
    bench.command("AT+MIPCLOSE")
    bench.command(f'AT+MCONFIG="{DN}","{iot_id}","{token}"')
    bench.command(f'AT+SSLMIPSTART="{MQTT_HOST}",1883')
    assert bench.command("AT+MCONNECT=1,120") == echoed("AT+MCONNECT=1,120", "OK", "ERROR",
                                                        "CLOSED")


def test_the_observer_sees_commands_answers_on_the_wire_boots_faults_and_pubacks() -> None:
    bench = online()
    events: list[Any] = []
    bench.module.observer = events.append
    bench.module.add_fault(parse_fault("split:AT+CSQ"))
    bench.send(b"AT+CSQ\r")
    sent_at = bench.now
    bench.run(SETTLE_MS)
    kinds = [(e.kind, e.text) for e in events]
    assert kinds[:3] == [("command", "AT+CSQ"), ("fault", "split:AT+CSQ@1"),
                         ("answered", "AT+CSQ")]
    assert events[2].at_ms > sent_at  # split: the last byte leaves some ms later
    events.clear()
    line = f'AT+MPUB="{TOPIC_UPDATE}",1,0,"x"'
    bench.command(line)
    assert [(e.kind, e.data) for e in events] == [
        ("command", b""), ("published", b"x"), ("answered", b""), ("puback", b"x")]
    events.clear()
    bench.module.reboot(bench.now)
    assert [e.kind for e in events] == ["link_down", "boot"]
