"""Prometheus metrics: the textfile and /metrics, parsed back with prometheus-client's own
parser, from a unit status and from a real `airfsm run` on the simulator."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airfsm.host.metrics import render
from airfsm.host.store import SqliteOutbox, db_path
from airfsm.sim import SimServer
from tests.conftest import free_port
from tests.test_gateway import DEADLINE_S, UPDATE, GatewayProcess, wait_until

parser = pytest.importorskip("prometheus_client.parser")


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, labels): value} of an exposition text (fails on a malformed one)."""
    out = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


STATUS: dict[str, Any] = {
    "running": True, "state": "ATTACH", "rssi": 24, "port_lost": False,
    "started_at": "2023-11-14T22:00:00Z", "updated_at": "2023-11-14T22:15:00Z",
    "outbox": {"queued": 3, "dead_letters": 1, "oldest_enqueued_at": "2023-11-14T22:13:00Z",
               "last_puback_at": "2023-11-14T22:14:50.500Z"},
    "counters": {"reconnects": {"mqtt_lost": 2, "port_lost": 1}, "publish_sent": 9,
                 "publish_acked": 7, "publish_retried": 2, "publish_dead": 1, "inbound": 4,
                 "gateway": {"port_reopens": 1, "module_restarts": 0}},
}


def test_the_samples_of_a_status_parse_back() -> None:
    got = parse(render(STATUS))
    assert got[("airfsm_up", ())] == 1 and got[("airfsm_online", ())] == 0
    assert got[("airfsm_state", (("state", "ATTACH"),))] == 1
    assert got[("airfsm_state", (("state", "ONLINE"),))] == 0
    assert got[("airfsm_signal_rssi", ())] == 24
    assert got[("airfsm_reconnects_total", (("cause", "mqtt_lost"),))] == 2
    assert got[("airfsm_messages_sent_total", ())] == 9
    assert got[("airfsm_messages_acked_total", ())] == 7
    assert got[("airfsm_messages_dead_total", ())] == 1
    assert got[("airfsm_outbox_queued", ())] == 3
    assert got[("airfsm_outbox_oldest_age_seconds", ())] == 120
    assert got[("airfsm_last_puback_timestamp_seconds", ())] == 1700000090.5
    assert ("airfsm_clock_skew_seconds", ()) not in got  # not measured
    alink = parse(render({**STATUS, "alink": {
        "thing_model": {"accepted": 5, "rejected": 1, "property_set": 2, "service": 0,
                        "rrpc_request": 3}, "ntp": {"skew_ms": -1_250}}}))
    assert alink[("airfsm_alink_post_replies_total", (("result", "rejected"),))] == 1
    assert alink[("airfsm_alink_requests_total", (("kind", "rrpc_request"),))] == 3
    assert alink[("airfsm_clock_skew_seconds", ())] == -1.25
    unknown = parse(render({**STATUS, "rssi": 99, "running": False}))
    assert ("airfsm_signal_rssi", ()) not in unknown  # 99: not known, not a value
    assert unknown[("airfsm_up", ())] == 0
    assert unknown[("airfsm_state", (("state", "ATTACH"),))] == 0  # a stopped gateway is nowhere


def test_a_running_gateway_writes_the_textfile_and_serves_metrics(
        tmp_path: Path, sims: Callable[..., SimServer],
        gateways: Callable[..., GatewayProcess]) -> None:
    server = sims()
    data = tmp_path / "data"
    prom = tmp_path / "textfile" / "airfsm.prom"
    prom.parent.mkdir()
    port = free_port()
    g = gateways(server.endpoint, data, "--metrics-textfile", str(prom),
                 "--metrics-listen", f"127.0.0.1:{port}")
    g.wait_online()

    def textfile() -> dict[Any, float]:
        try:
            return parse(prom.read_text())
        except FileNotFoundError:
            return {}

    got = wait_until(lambda: (m := textfile()) and m.get(("airfsm_online", ())) == 1 and m,
                     DEADLINE_S, "ONLINE in the textfile")
    assert got[("airfsm_state", (("state", "ONLINE"),))] == 1
    with SqliteOutbox(db_path(data)) as box:
        box.enqueue(UPDATE, b"counted", 1)
    wait_until(lambda: textfile().get(("airfsm_messages_acked_total", ())) == 1, DEADLINE_S,
               "the PUBACK in the textfile")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE_S) as r:
        served = parse(r.read().decode())
    assert served[("airfsm_online", ())] == 1
    assert served[("airfsm_messages_acked_total", ())] == 1
    assert not list(prom.parent.glob(".*.tmp"))  # written atomically, nothing left behind
    assert g.stop() == 0
    final = textfile()
    assert final[("airfsm_up", ())] == 0 and final[("airfsm_online", ())] == 0
