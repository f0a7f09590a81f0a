"""Alibaba Cloud's Alink on the gateway: the thing model (property post and its reply, property
set and service calls answered with `airfsm reply`), NTP (the clock skew in the status).

The protocol helpers are tested on their own; the rest end to end: the gateway as a real process
on a pty served by the simulator in this process, whose Alink cloud (`airfsm.sim.alink`) answers
posts and NTP requests and records what the device answered. Synchronisation polls observable
state until a deadline."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airfsm.host import alink
from airfsm.host.errors import Exit
from airfsm.host.store import SqliteOutbox, db_path
from airfsm.sim import SimServer
from airfsm.sim.alink import CODE_BAD_REQUEST, AlinkCloud
from tests.conftest import BrokerProbe, Mosquitto, start_mosquitto
from tests.harness import SEED_DN, SEED_PK
from tests.test_bridge import sim_pty  # noqa: F401, F811 (a fixture)
from tests.test_gateway import (
    DEADLINE_S,
    GatewayProcess,
    gateway_store,
    run_cli,
    wait_until,
)

POST = f"/sys/{SEED_PK}/{SEED_DN}/thing/event/property/post"
SET = f"/sys/{SEED_PK}/{SEED_DN}/thing/service/property/set"
RRPC_REQUEST = f"/sys/{SEED_PK}/{SEED_DN}/rrpc/request"
RRPC_RESPONSE = f"/sys/{SEED_PK}/{SEED_DN}/rrpc/response"


# ---------------------------------------------------------------------- the protocol


@pytest.mark.parametrize("text, value", [
    ("t=21", 21), ("t=-3", -3), ("t=21.5", 21.5), ("t=2e3", 2000.0), ("t=true", True),
    ("t=false", False), ("t=on", "on"), ('t="21"', "21"), ("t=", ""), ("t=a=b", "a=b"),
    ("t=温度", "温度"), ('t={"lat":30.5,"on":true}', {"lat": 30.5, "on": True}),
    ("t=[1,2]", [1, 2]),
])
def test_property_values_are_typed_by_their_look(text: str, value: Any) -> None:
    name, parsed = alink.parse_property(text)
    assert name == "t" and parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("text, why", [
    ("temperature", "expected NAME=VALUE"),
    ("=5", "thing-model identifier"),
    ("temp-c=5", "thing-model identifier"),
    ("a" * 51 + "=1", "thing-model identifier"),
    ("t=99999999999", "int32"),
    ("t=1e999", "finite"),
    ('t="unterminated', "JSON string"),
    ('t={"a":', "JSON object"),
    ('t=[NaN]', "JSON array"),
])
def test_bad_properties_are_refused_in_one_line(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        alink.parse_property(text)
    assert "\n" not in str(caught.value)


def test_a_property_post_is_alink_json_and_its_reply_is_matched_by_id() -> None:
    params = alink.parse_properties(["temperature=21.5", "on=true", "mode=eco"])
    payload = alink.property_post_payload(7, params)
    assert json.loads(payload) == {"id": "7", "version": "1.0", "method":
                                   "thing.event.property.post", "params": {
                                       "temperature": 21.5, "on": True, "mode": "eco"}}
    with pytest.raises(ValueError, match="given twice"):
        alink.parse_properties(["a=1", "a=2"])
    reply = alink.parse_reply(b'{"id":"7","code":460,"data":{},"message":"bad"}')
    assert reply == alink.Reply("7", 460, "bad") and not reply.accepted
    assert alink.parse_reply(b'{"code":200}') is None
    assert alink.parse_reply(b"not json") is None


def test_requests_are_classified_and_answered_on_their_reply_topic() -> None:
    request = b'{"id":"42","version":"1.0","params":{"light":1},"method":"thing.service.x"}'
    found = alink.classify(SET, request)
    assert found == alink.Classified(alink.KIND_PROPERTY_SET, "42", SET + "_reply")
    topic, payload = alink.answer_for(found, request, 200, {"ok": 1})
    assert topic == SET + "_reply"
    assert json.loads(payload) == {"id": "42", "code": 200, "data": {"ok": 1}}
    service = alink.classify(f"/sys/{SEED_PK}/{SEED_DN}/thing/service/reboot", request)
    assert service is not None and service.identifier == "reboot"
    get = alink.classify(f"/sys/{SEED_PK}/{SEED_DN}/thing/service/property/get", request)
    assert get is not None and get.reply_topic == (
        f"/sys/{SEED_PK}/{SEED_DN}/thing/service/property/get_reply")
    rrpc = alink.classify(f"/sys/{SEED_PK}/{SEED_DN}/rrpc/request/889455942124347392", b"raw")
    assert rrpc is not None and rrpc.reply_topic == (
        f"/sys/{SEED_PK}/{SEED_DN}/rrpc/response/889455942124347392")
    with pytest.raises(ValueError, match="--payload"):
        alink.answer_for(rrpc, b"raw", 200, {})  # not Alink JSON: the answer must be given
    assert alink.answer_for(rrpc, b"raw", 200, {}, b"pong")[1] == b"pong"
    assert alink.classify(f"/{SEED_PK}/{SEED_DN}/get", request) is None
    assert alink.classify(f"/sys/{SEED_PK}/{SEED_DN}/thing/service/x_reply", request) is None


def test_ntp_time_is_alibabas_formula_and_the_skew_its_difference() -> None:
    # sent at 1000 by the device's clock, the server got it at 5050 and answered at 5060 by
    # its own, the device got the answer at 1100: 100 ms round trip, 10 of them in the server
    response = b'{"deviceSendTime":"1000","serverRecvTime":5050,"serverSendTime":5060}'
    result = alink.ntp_result(response, 1100)
    assert result == alink.NtpResult(server_ms=(5050 + 5060 + 1100 - 1000) // 2,
                                     skew_ms=(5050 + 5060 + 1100 - 1000) // 2 - 1100,
                                     round_trip_ms=90)
    assert result.skew_ms == 4005
    assert alink.ntp_result(b'{"deviceSendTime":"x"}', 1) is None


def test_the_simulated_cloud_answers_posts_and_ntp_and_refuses_what_its_model_lacks() -> None:
    cloud = AlinkCloud(SEED_PK, SEED_DN, properties={"temperature": "float"})
    [(topic, reply)] = cloud.on_publish(POST, alink.property_post_payload(
        1, {"temperature": 21}), 0, 0)
    assert topic == POST + "_reply" and json.loads(reply)["code"] == 200
    [(_, reply)] = cloud.on_publish(POST, alink.property_post_payload(2, {"humidity": 1}), 0, 0)
    assert json.loads(reply)["code"] == CODE_BAD_REQUEST
    assert "humidity" in json.loads(reply)["message"]
    [(topic, ntp)] = cloud.on_publish(alink.ntp_request_topic(SEED_PK, SEED_DN),
                                      alink.ntp_request_payload(10), 0, 777)
    assert topic == alink.ntp_response_topic(SEED_PK, SEED_DN)
    assert json.loads(ntp) == {"deviceSendTime": "10", "serverRecvTime": 777,
                               "serverSendTime": 777}


# ---------------------------------------------------------------------- the CLI, no gateway


def test_publish_property_uses_the_stores_counter_for_the_id(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = gateway_store(tmp_path)
    device = ("--product-key", SEED_PK, "--device-name", SEED_DN)
    for _ in range(2):
        code, _out, err = run_cli(capsys, "publish", "--data-dir", str(data), *device,
                                  "--property", "temperature=21.5", "--property", "on=true")
        assert code == 0, err
    with SqliteOutbox(db_path(data)) as box:
        queued = box.queued()
    assert [m.topic for m in queued] == [POST, POST]
    assert [json.loads(m.payload)["id"] for m in queued] == ["1", "2"]
    assert json.loads(queued[0].payload)["params"] == {"temperature": 21.5, "on": True}


@pytest.mark.parametrize("args, why", [
    (("--property", "temp-c=1"), "thing-model identifier"),
    (("--property", "t=1", "/x/y", "z"), "give no TOPIC"),
    ((), "give TOPIC and PAYLOAD"),
])
def test_publish_property_refusals_are_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
        why: str) -> None:
    data = gateway_store(tmp_path)
    code, out, err = run_cli(capsys, "publish", "--data-dir", str(data), "--product-key",
                             SEED_PK, "--device-name", SEED_DN, *args)
    assert code == Exit.USAGE and out == ""
    assert why in err and len(err.strip().splitlines()) == 1
    with SqliteOutbox(db_path(data)) as box:
        assert box.count() == 0


def test_reply_refuses_what_is_not_a_request(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from airfsm.host.store import SqliteInbox

    data = gateway_store(tmp_path)
    with SqliteInbox(db_path(data)) as inbox:
        inbox.add(f"/{SEED_PK}/{SEED_DN}/get", b'{"id":"1"}', 1.0)
        inbox.add(SET, b'{"id":"9","params":{}}', 2.0)
    code, _, err = run_cli(capsys, "reply", "--data-dir", str(data), "1")
    assert code == Exit.USAGE and "not a request that takes a reply" in err
    code, _, err = run_cli(capsys, "reply", "--data-dir", str(data), "3")
    assert code == Exit.USAGE and "no message 3" in err
    code, _, err = run_cli(capsys, "reply", "--data-dir", str(data), "2", "--data", "{bad")
    assert code == Exit.USAGE and "--data is not JSON" in err
    code, out, err = run_cli(capsys, "reply", "--data-dir", str(data), "2", "--code", "460")
    assert code == 0, err
    with SqliteOutbox(db_path(data)) as box:
        [queued] = box.queued()
    assert queued.topic == SET + "_reply"
    assert json.loads(queued.payload) == {"id": "9", "code": 460, "data": {}}


# ---------------------------------------------------------------------- end to end


def _alink_status(g: GatewayProcess, predicate: Callable[[dict[str, Any]], bool],
                  what: str) -> dict[str, Any]:
    return dict(g.wait_status(lambda s: predicate(s.get("alink") or {}), what=what)["alink"])


def test_property_posts_are_answered_and_the_reply_shows_in_status_and_inbox(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess], capsys: pytest.CaptureFixture[str]) -> None:
    server = sims(thing_properties={"temperature": "float", "on": "bool"})
    data = gateway_store(tmp_path / "data")
    g = gateways(server.endpoint, data, "--thing-model", "true")
    g.wait_online()
    commands = server.call(lambda m, _now: list(m.commands))
    for topic in (f"/sys/{SEED_PK}/{SEED_DN}/thing/event/+/post_reply",
                  f"/sys/{SEED_PK}/{SEED_DN}/thing/service/#"):
        assert f'AT+MSUB="{topic}",0' in commands  # the thing model's subscriptions

    publish = ("publish", "--data-dir", str(data))  # pk/dn from the gateway's status file
    assert run_cli(capsys, *publish, "--property", "temperature=21.5",
                   "--property", "on=true")[0] == 0
    alink_status = _alink_status(g, lambda a: a["thing_model"]["accepted"] == 1, "accepted")
    assert alink_status["thing_model"]["last_reply"]["id"] == "1"
    assert alink_status["thing_model"]["awaiting_reply"] == 0
    posts = server.call(lambda m, _now: list(m.cloud.property_posts))
    assert posts == [("1", 200, {"temperature": 21.5, "on": True})]

    # a property the cloud's thing model does not define: refused with its code
    assert run_cli(capsys, *publish, "--property", "humidity=40")[0] == 0
    alink_status = _alink_status(g, lambda a: a["thing_model"]["rejected"] == 1, "rejected")
    rejected = alink_status["thing_model"]["last_rejected"]
    assert (rejected["id"], rejected["code"], rejected["accepted"]) == ("2", 460, False)
    assert "humidity" in rejected["message"]
    code, out, _ = run_cli(capsys, "status", "--data-dir", str(data))
    assert code == 0 and "rejected, code 460" in out and "posts accepted 1, rejected 1" in out

    _, out, _ = run_cli(capsys, "inbox", "--data-dir", str(data))
    replies = [json.loads(line) for line in out.splitlines()]
    assert [r["alink"] for r in replies] == [
        {"kind": "post_reply", "id": "1", "code": 200, "accepted": True},
        {"kind": "post_reply", "id": "2", "code": 460, "accepted": False,
         "message": replies[1]["alink"]["message"]}]
    assert g.stop() == 0


def test_property_set_and_service_calls_reach_the_inbox_and_airfsm_reply_answers_them(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess], capsys: pytest.CaptureFixture[str]) -> None:
    server = sims()
    data = gateway_store(tmp_path / "data")
    g = gateways(server.endpoint, data, "--thing-model", "true")
    g.wait_online()
    set_id = server.property_set({"light": 1})
    call_id = server.service_call("reboot", {"delay": 5})
    g.wait_status(lambda s: s["alink"]["thing_model"]["service"] == 1
                  and s["alink"]["thing_model"]["property_set"] == 1, what="both requests")
    _, out, _ = run_cli(capsys, "inbox", "--data-dir", str(data))
    lines = {json.loads(line)["alink"]["kind"]: json.loads(line) for line in out.splitlines()}
    assert lines["property_set"]["alink"] == {"kind": "property_set", "id": set_id,
                                              "reply_topic": SET + "_reply"}
    assert lines["service"]["alink"]["service"] == "reboot"

    code, _, err = run_cli(capsys, "reply", "--data-dir", str(data),
                           str(lines["property_set"]["id"]))
    assert code == 0, err
    code, _, err = run_cli(capsys, "reply", "--data-dir", str(data),
                           str(lines["service"]["id"]), "--code", "200", "--data",
                           '{"rebooting":true}')
    assert code == 0, err
    replies = wait_until(lambda: server.call(lambda m, _now: dict(m.cloud.replies))
                         if len(server.call(lambda m, _now: m.cloud.replies)) == 2 else None,
                         what="both replies in the cloud")
    assert replies[set_id] == {"id": set_id, "code": 200, "data": {}}
    assert replies[call_id] == {"id": call_id, "code": 200, "data": {"rebooting": True}}
    assert g.stop() == 0


def test_ntp_measures_the_clock_skew_and_status_shows_it(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess], capsys: pytest.CaptureFixture[str]) -> None:
    # The simulated cloud's clock runs 5 s ahead of this machine's, which the gateway uses.
    server = sims(cloud_clock_offset_ms=5_000)
    data = gateway_store(tmp_path / "data")
    g = gateways(server.endpoint, data, "--ntp", "true")
    g.wait_online()
    ntp = _alink_status(g, lambda a: a["ntp"]["skew_ms"] is not None, "the skew")["ntp"]
    assert ntp["responses"] == 1 and ntp["measured_at"].endswith("Z")
    # The formula assumes the way there and back take as long: its error is at most half the
    # round trip (plus the rounding of the halves).
    assert abs(ntp["skew_ms"] - 5_000) <= ntp["round_trip_ms"] // 2 + 1
    commands = server.call(lambda m, _now: list(m.commands))
    assert f'AT+MSUB="/ext/ntp/{SEED_PK}/{SEED_DN}/response",0' in commands
    assert server.call(lambda m, _now: m.cloud.ntp_requests) == 1
    _, out, _ = run_cli(capsys, "status", "--data-dir", str(data))
    assert "clock      skew +" in out and "local clock behind" in out
    _, out, _ = run_cli(capsys, "status", "--data-dir", str(data), "--json")
    assert json.loads(out)["alink"]["ntp"]["skew_ms"] == ntp["skew_ms"]
    assert g.stop() == 0


# ---------------------------------------------------------------------- through the bridge


def test_the_bridge_carries_requests_down_and_replies_up_with_a_real_mosquitto(
        tmp_path: Path, mosquitto: Mosquitto, sim_pty: str,  # noqa: F811
        gateways: Callable[..., GatewayProcess], capsys: pytest.CaptureFixture[str]) -> None:
    """`airfsm sim --broker` plays the cloud on one mosquitto, the gateway bridges to another:
    a property set from a cloud application reaches the local application on the bridge's down
    topic, its `_reply` on the up topic reaches the cloud; a property post's reply comes down."""
    (tmp_path / "local").mkdir()
    local = start_mosquitto(tmp_path / "local")
    prefix = f"airfsm/{SEED_DN}"
    cloud_app = BrokerProbe.connect_to(mosquitto, client_id="cloud-app")
    cloud_app.subscribe(SET + "_reply")
    app: BrokerProbe | None = None
    try:
        data = tmp_path / "data"
        g = gateways(sim_pty, data, "--bridge", local.url, "--thing-model", "true", "--rrpc",
                     "true")
        g.wait_status(lambda s: s.get("state") == "ONLINE"
                      and (s.get("bridge") or {}).get("connected") is True,
                      what="ONLINE with the bridge connected")
        app = BrokerProbe.connect_to(local, client_id="local-app")
        app.subscribe(f"{prefix}/down/#")

        request = (b'{"id":"77","version":"1.0","params":{"light":1},'
                   b'"method":"thing.service.property.set"}')
        cloud_app.publish(SET, request)
        down = f"{prefix}/down{SET}"
        assert app.wait_for(lambda: request in app.payloads(down), DEADLINE_S)
        app.publish(f"{prefix}/up{SET}_reply", b'{"id":"77","code":200,"data":{}}')
        assert cloud_app.wait_for(lambda: b'{"id":"77","code":200,"data":{}}' in
                                  cloud_app.payloads(SET + "_reply"), DEADLINE_S)

        assert run_cli(capsys, "publish", "--data-dir", str(data), "--property",
                       "temperature=20")[0] == 0
        post_reply = f"{prefix}/down{POST}_reply"
        assert app.wait_for(lambda: any(json.loads(p)["id"] == "1" and json.loads(p)["code"]
                                        == 200 for p in app.payloads(post_reply)), DEADLINE_S)
        g.wait_status(lambda s: s["alink"]["thing_model"]["accepted"] == 1, what="accepted")

        # RRPC: the request comes down, the answer on the response topic goes up through the
        # priority lane with the request's deadline
        cloud_app.subscribe(f"{RRPC_RESPONSE}/555")
        cloud_app.publish(f"{RRPC_REQUEST}/555", b"ping")
        assert app.wait_for(lambda: b"ping" in app.payloads(f"{prefix}/down{RRPC_REQUEST}/555"),
                            DEADLINE_S)
        app.publish(f"{prefix}/up{RRPC_RESPONSE}/555", b"pong")
        assert cloud_app.wait_for(lambda: b"pong" in cloud_app.payloads(f"{RRPC_RESPONSE}/555"),
                                  DEADLINE_S)
        [queued] = [e for e in g.log_events() if e.get("event") == "message_queued"
                    and e.get("topic") == f"{RRPC_RESPONSE}/555"]
        assert queued["lane"] == "priority" and queued["deadline"].endswith("Z")
        assert g.stop() == 0
    finally:
        if app is not None:
            app.close()
        cloud_app.close()
        local.stop()


# ---------------------------------------------------------------------- the priority lane, RRPC


def test_the_priority_lane_goes_first_survives_a_reopen_and_expires_past_its_deadline(
        tmp_path: Path) -> None:
    from airfsm.host.alink_gateway import late_reason

    path = db_path(tmp_path)
    with SqliteOutbox(path, capacity=4) as box:
        first = box.enqueue("/a/b/c", b"normal 1", 1)
        box.enqueue("/a/b/c", b"normal 2", 1)
        urgent = box.enqueue_priority(f"{RRPC_RESPONSE}/1", b"answer", 1, deadline_at=4e9)
        stale = box.enqueue_priority(f"{RRPC_RESPONSE}/2", b"too late", 1, deadline_at=100.0)
        with pytest.raises(Exception, match="outbox full"):  # the lane counts towards capacity
            box.enqueue_priority(f"{RRPC_RESPONSE}/3", b"x", 1)
    with SqliteOutbox(path, capacity=4) as box:  # durable like the rest
        _status, head = box.peek()
        assert head is not None and (head.id, head.payload) == (urgent, b"answer")
        assert box.expire_overdue(1_000.0, late_reason) == [stale]
        [dead] = box.dead_letters()
        assert dead.id == stale and dead.payload == b"too late"
        assert dead.reason.startswith("RRPC answer too late: its deadline 1970-01-01T00:01:40")
        assert "before it could be sent" in dead.reason
        assert box.expire_overdue(1_000.0, late_reason) == []  # nothing else is overdue
        box.ack(urgent)
        _status, head = box.peek()
        assert head is not None and head.id == first  # then the normal lane, oldest first


def test_an_rrpc_answer_is_sent_ahead_of_the_queue(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess], capsys: pytest.CaptureFixture[str]) -> None:
    # The first message's PUBACK is lost: the gateway waits for it (3 s), backs off, and
    # meanwhile the queue behind it waits; an RRPC request comes, and its answer goes first.
    server = sims("puback=lost@1")
    data = gateway_store(tmp_path / "data")
    for i in range(5):
        assert run_cli(capsys, "publish", "--data-dir", str(data), f"/{SEED_PK}/{SEED_DN}/update",
                       f"queued {i}")[0] == 0
    g = gateways(server.endpoint, data, "--rrpc", "true", "--puback-timeout-s", "3")
    g.wait_online()
    wait_until(lambda: server.call(lambda m, _now: len(m.published)) >= 1, what="a publish")
    message_id = server.rrpc_request(b'{"id":"5","version":"1.0","params":{},'
                                     b'"method":"thing.service.ping"}')
    inbox = wait_until(lambda: [json.loads(line) for line in run_cli(
        capsys, "inbox", "--data-dir", str(data))[1].splitlines()], what="the request")
    assert inbox[0]["alink"] == {"kind": "rrpc_request", "id": message_id,
                                 "reply_topic": f"{RRPC_RESPONSE}/{message_id}"}
    code, _, err = run_cli(capsys, "reply", "--data-dir", str(data), str(inbox[0]["id"]),
                           "--data", '{"pong":true}')
    assert code == 0, err
    wait_until(lambda: server.call(lambda m, _now: len(m.published)) >= 7, what="everything")
    topics = [t for t, _p, _q in server.call(lambda m, _now: list(m.published))]
    # the first message (in flight when the answer was queued, sent again after it), then the
    # answer, then the rest of the normal queue
    update = f"/{SEED_PK}/{SEED_DN}/update"
    assert topics == [update, f"{RRPC_RESPONSE}/{message_id}", update, update, update, update,
                      update]
    [answer] = server.call(lambda m, _now: list(m.cloud.rrpc_answers))
    assert json.loads(answer.payload) == {"id": "5", "code": 200, "data": {"pong": True}}
    assert g.stop() == 0


def test_a_late_rrpc_answer_is_refused_or_dead_lettered_never_sent(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess], capsys: pytest.CaptureFixture[str]) -> None:
    from airfsm.host.publish import enqueue
    from airfsm.host.store import SqliteInbox

    server = sims()
    data = gateway_store(tmp_path / "data")
    with SqliteInbox(db_path(data)) as inbox:  # a request that came a minute ago
        old = inbox.add(f"{RRPC_REQUEST}/41", b"ping", time.time() - 60)
    code, out, err = run_cli(capsys, "reply", "--data-dir", str(data), str(old),
                             "--payload", "pong")
    assert code == Exit.FAILURE and out == "" and "too late" in err
    assert len(err.strip().splitlines()) == 1
    with SqliteOutbox(db_path(data)) as box:
        assert box.count() == 0

    g = gateways(server.endpoint, data, "--rrpc", "true")
    g.wait_online()
    # queued while in time, but the gateway gets to it only after its deadline
    enqueue(data, f"{RRPC_RESPONSE}/42", b"pong", 1, priority=True, deadline_at=1.0)
    assert run_cli(capsys, "publish", "--data-dir", str(data), f"/{SEED_PK}/{SEED_DN}/update",
                   "after it")[0] == 0
    wait_until(lambda: any(t.endswith("/update") for t, _p, _q in
                           server.call(lambda m, _now: list(m.published))), what="the next one")
    assert not any("/rrpc/response/" in t for t, _p, _q in
                   server.call(lambda m, _now: list(m.published)))
    code, out, _ = run_cli(capsys, "outbox", "--data-dir", str(data), "--dead")
    [dead] = [json.loads(line) for line in out.splitlines()]
    assert dead["topic"] == f"{RRPC_RESPONSE}/42"
    assert dead["reason"].startswith("RRPC answer too late") and "not sent" in dead["reason"]
    status = g.wait_status(lambda s: s["outbox"]["dead_letters"] == 1, what="the dead letter")
    assert status["outbox"]["queued"] == 0
    assert g.stop() == 0


# ---------------------------------------------------------------------- the gateway's bookkeeping


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ntp_is_asked_on_online_retried_without_an_answer_then_daily() -> None:
    from airfsm.core.messages import OutboundMessage
    from airfsm.host import log
    from airfsm.host.alink_gateway import NTP_RETRY_S, AlinkTracker

    clock = _Clock()
    wall = [1_700_000_000_000]
    tracker = AlinkTracker(SEED_PK, SEED_DN, ntp=True, ntp_interval_s=86_400,
                           logger=log.get_logger("test"), wall_ms=lambda: wall[0],
                           monotonic=clock)
    assert not tracker.ntp_request_due(online=True)  # not before the session is up
    tracker.on_online()
    assert tracker.ntp_request_due(online=True)
    assert not tracker.ntp_request_due(online=True)  # one at a time: it is still queued
    topic, payload, qos = tracker.ntp_request()
    queued = OutboundMessage(9, topic, payload, qos)
    wall[0] += 5_000  # it waited 5 s in the outbox: the time sent is the time it goes
    sent = tracker.on_sending(queued)
    assert alink.ntp_send_time(sent.payload) == 1_700_000_005_000
    tracker.on_acked(sent)
    clock.now += NTP_RETRY_S - 1
    assert not tracker.ntp_request_due(online=True)
    clock.now += 1  # no answer within a minute: asked again
    assert tracker.ntp_request_due(online=True)
    sent = tracker.on_sending(queued)
    tracker.on_acked(sent)
    # a response echoing a time we never sent is not ours
    tracker.on_inbound(alink.ntp_response_topic(SEED_PK, SEED_DN),
                       b'{"deviceSendTime":"1","serverRecvTime":2,"serverSendTime":2}', 1.0)
    assert tracker.skew_ms is None
    send = alink.ntp_send_time(sent.payload)
    assert send is not None
    response = json.dumps({"deviceSendTime": str(send), "serverRecvTime": send + 3_050,
                           "serverSendTime": send + 3_050}).encode()
    tracker.on_inbound(alink.ntp_response_topic(SEED_PK, SEED_DN), response, (send + 100) / 1000)
    assert (tracker.skew_ms, tracker.round_trip_ms) == (3_000, 100)
    assert tracker.wall_clock_ms() == wall[0] + 3_000  # the corrected clock
    clock.now += 86_400 - 1
    assert not tracker.ntp_request_due(online=True)
    clock.now += 1
    assert not tracker.ntp_request_due(online=False)  # only while ONLINE
    assert tracker.ntp_request_due(online=True)  # daily


def test_post_replies_are_matched_by_id_even_before_the_puback() -> None:
    from airfsm.core.messages import OutboundMessage
    from airfsm.host import log
    from airfsm.host.alink_gateway import AlinkTracker

    tracker = AlinkTracker(SEED_PK, SEED_DN, logger=log.get_logger("test"))
    post = OutboundMessage(12, POST, alink.property_post_payload(3, {"t": 1}), 1)
    tracker.on_sending(post)
    assert tracker.status()["thing_model"]["awaiting_reply"] == 1
    tracker.on_inbound(POST + "_reply", b'{"id":"3","code":200,"data":{}}', 5.0)
    tracker.on_acked(post)
    thing = tracker.status()["thing_model"]
    assert (thing["accepted"], thing["awaiting_reply"], thing["posts_acked"]) == (1, 0, 1)
    assert thing["last_reply"]["message_id"] == 12
    tracker.on_inbound(POST + "_reply", b'{"id":"99","code":6813,"data":{}}', 6.0)
    tracker.on_inbound(POST + "_reply", b"garbage", 7.0)
    thing = tracker.status()["thing_model"]
    assert (thing["rejected"], thing["replies_unmatched"], thing["malformed"]) == (1, 1, 1)
    assert thing["last_rejected"]["code"] == 6813 and thing["last_rejected"]["message_id"] is None
