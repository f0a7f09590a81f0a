"""Prometheus metrics of the gateway: a node_exporter textfile, and/or `/metrics` on a port.

Both come from one list of samples (`samples`, read from the status the gateway writes), so the
file and the endpoint always say the same thing:

* `metrics_textfile = "/var/lib/node_exporter/textfile/airfsm.prom"`: rewritten with the status
  file (every state change, at most every 2 s, a 30 s heartbeat), atomically (a temporary file
  in the same directory, then rename), so node_exporter's textfile collector never reads half a
  file. After the gateway stopped it says `airfsm_up 0`; after a kill -9 the file stays as it
  was, and `airfsm_last_update_timestamp_seconds` ages (alert on `time() - it > 120`).
* `metrics_listen = "127.0.0.1:9464"`: `/metrics` over HTTP by `prometheus-client` (the
  optional `metrics` extra), from its own thread, which only reads the latest samples.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

STATES = ("AUTOBAUD", "VERSION_CHECK", "ATTACH", "BEARER", "HTTP_AUTH", "MQTT_CONNECT",
          "ONLINE", "FAILED", "PROVISION")


class Family(NamedTuple):
    name: str  # a counter's without `_total`
    kind: str  # gauge or counter
    help: str


class Sample(NamedTuple):
    family: str
    labels: tuple[tuple[str, str], ...]
    value: float


FAMILIES = (
    Family("airfsm_up", "gauge", "1 while the gateway runs, 0 once it stopped"),
    Family("airfsm_online", "gauge", "1 when ONLINE with the serial port open"),
    Family("airfsm_state", "gauge", "1 for the connection machine's current state"),
    Family("airfsm_port_lost", "gauge", "1 while the serial port is gone"),
    Family("airfsm_signal_rssi", "gauge", "signal quality, +CSQ 0-31 (absent when unknown)"),
    Family("airfsm_reconnects", "counter", "state changes caused by a link loss or an "
           "escalation, by cause"),
    Family("airfsm_messages_sent", "counter", "AT+MPUB sent (attempts, retries included)"),
    Family("airfsm_messages_acked", "counter", "messages acknowledged (PUBACK, or OK for QoS 0)"),
    Family("airfsm_messages_retried", "counter", "sends of a message attempted before"),
    Family("airfsm_messages_dead", "counter", "messages moved to the dead letters"),
    Family("airfsm_messages_received", "counter", "inbound messages (+MSUB)"),
    Family("airfsm_outbox_queued", "gauge", "messages waiting in the outbox"),
    Family("airfsm_outbox_dead_letters", "gauge", "dead letters kept for an operator"),
    Family("airfsm_outbox_oldest_age_seconds", "gauge", "age of the oldest queued message"),
    Family("airfsm_last_puback_timestamp_seconds", "gauge", "Unix time of the latest PUBACK"),
    Family("airfsm_port_reopens", "counter", "times the vanished serial port was reopened"),
    Family("airfsm_module_restarts", "counter", "fresh starts after the module stopped answering"),
    Family("airfsm_alink_post_replies", "counter", "the cloud's replies to property posts, "
           "by result (accepted, rejected)"),
    Family("airfsm_alink_requests", "counter", "requests from the cloud, by kind "
           "(property_set, service, rrpc_request)"),
    Family("airfsm_clock_skew_seconds", "gauge", "the cloud's time minus the local clock, by "
           "NTP (absent until measured)"),
    Family("airfsm_start_time_seconds", "gauge", "Unix time the gateway started"),
    Family("airfsm_last_update_timestamp_seconds", "gauge", "Unix time of this update"),
)


def _unix(iso: Any) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def samples(status: Mapping[str, Any]) -> list[Sample]:
    """The metrics of a gateway status (what `Gateway.status()` returns)."""
    out: list[Sample] = []

    def add(family: str, value: Any, **labels: str) -> None:
        number = _number(value)
        if number is not None:
            out.append(Sample(family, tuple(sorted(labels.items())), number))

    running = bool(status.get("running"))
    state = status.get("state")
    port_lost = bool(status.get("port_lost") or status.get("port_lost_since"))
    add("airfsm_up", int(running))
    add("airfsm_online", int(running and state == "ONLINE" and not port_lost))
    for name in STATES:
        add("airfsm_state", int(running and state == name), state=name)
    add("airfsm_port_lost", int(port_lost))
    rssi = status.get("rssi")
    if isinstance(rssi, int) and 0 <= rssi <= 31:
        add("airfsm_signal_rssi", rssi)
    counters = status.get("counters") or {}
    for cause, count in sorted((counters.get("reconnects") or {}).items()):
        add("airfsm_reconnects", count, cause=str(cause))
    for family, key in (("airfsm_messages_sent", "publish_sent"),
                        ("airfsm_messages_acked", "publish_acked"),
                        ("airfsm_messages_retried", "publish_retried"),
                        ("airfsm_messages_dead", "publish_dead"),
                        ("airfsm_messages_received", "inbound")):
        add(family, counters.get(key, 0))
    outbox = status.get("outbox") or {}
    add("airfsm_outbox_queued", outbox.get("queued"))
    add("airfsm_outbox_dead_letters", outbox.get("dead_letters"))
    updated = _unix(status.get("updated_at"))
    oldest = _unix(outbox.get("oldest_enqueued_at"))
    if oldest is not None and updated is not None:
        add("airfsm_outbox_oldest_age_seconds", round(max(0.0, updated - oldest), 3))
    add("airfsm_last_puback_timestamp_seconds", _unix(outbox.get("last_puback_at")))
    gateway = counters.get("gateway") or {}
    add("airfsm_port_reopens", gateway.get("port_reopens", 0))
    add("airfsm_module_restarts", gateway.get("module_restarts", 0))
    section = status.get("alink") or {}
    thing = section.get("thing_model") or {}
    for result in ("accepted", "rejected"):
        add("airfsm_alink_post_replies", thing.get(result, 0), result=result)
    for kind in ("property_set", "service", "rrpc_request"):
        add("airfsm_alink_requests", thing.get(kind, 0), kind=kind)
    skew_ms = _number((section.get("ntp") or {}).get("skew_ms"))
    if skew_ms is not None:
        add("airfsm_clock_skew_seconds", skew_ms / 1000)
    add("airfsm_start_time_seconds", _unix(status.get("started_at")))
    add("airfsm_last_update_timestamp_seconds", updated)
    return out


def _sample_name(family: Family) -> str:
    return family.name + "_total" if family.kind == "counter" else family.name


def _value(number: float) -> str:
    return str(int(number)) if number == int(number) else repr(number)


def render(status: Mapping[str, Any]) -> str:
    """The Prometheus text exposition format (0.0.4) of `samples(status)`."""
    by_family: dict[str, list[Sample]] = {}
    for sample in samples(status):
        by_family.setdefault(sample.family, []).append(sample)
    lines: list[str] = []
    for family in FAMILIES:
        found = by_family.get(family.name)
        if not found:
            continue
        name = _sample_name(family)
        lines.append(f"# HELP {name} {family.help}")
        lines.append(f"# TYPE {name} {family.kind}")
        for sample in found:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels)
            lines.append(f"{name}{{{labels}}} {_value(sample.value)}" if labels
                         else f"{name} {_value(sample.value)}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def write_textfile(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically (OSError on failure; nothing half-written)."""
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp_name, 0o644)  # node_exporter runs as another user
        os.replace(tmp_name, path)
        tmp_name = ""
    finally:
        if tmp_name:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


class MetricsServer:
    """`/metrics` on `host:port` by prometheus-client, serving the latest samples. ImportError
    when prometheus-client is not installed; OSError when the address cannot be bound."""

    def __init__(self, listen: str) -> None:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        host, _, port = listen.rpartition(":")
        self._status: Mapping[str, Any] = {}
        gauge, counter = GaugeMetricFamily, CounterMetricFamily
        server = self

        class _Collector:
            def collect(self) -> Any:
                by_family: dict[str, list[Sample]] = {}
                for sample in samples(server._status):  # one reference, swapped by update()
                    by_family.setdefault(sample.family, []).append(sample)
                for family in FAMILIES:
                    found = by_family.get(family.name)
                    if not found:
                        continue
                    label_names = [k for k, _v in found[0].labels]
                    metric = (counter if family.kind == "counter" else gauge)(
                        family.name, family.help, labels=label_names)
                    for sample in found:
                        metric.add_metric([v for _k, v in sample.labels], sample.value)
                    yield metric

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector())
        self._http, _thread = start_http_server(int(port), addr=host.strip("[]"),
                                                registry=registry)
        self.port = int(self._http.server_port)  # the one bound (port 0: any free one)

    def update(self, status: Mapping[str, Any]) -> None:
        self._status = dict(status)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._http.shutdown()
            self._http.server_close()


__all__ = ["FAMILIES", "MetricsServer", "render", "samples", "write_textfile"]
