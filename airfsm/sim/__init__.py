"""An Air72x module simulator speaking PROTOCOL.md's dialect, with fault injection.

`SimModule` is the pure, virtual-clock model; `SimServer` serves it over a pty or TCP.
Faults are written `KIND[=VALUE][:MATCH][@COUNT]` (see `airfsm.sim.faults` and `FAULT_HELP`).
"""

from airfsm.sim.faults import FAULT_HELP, Fault, FaultKind, parse_fault
from airfsm.sim.module import PROFILES, SimConfig, SimEvent, SimModule
from airfsm.sim.server import SimServer
from airfsm.sim.session import MqttSession, RecordingSession

__all__ = [
    "FAULT_HELP",
    "PROFILES",
    "Fault",
    "FaultKind",
    "MqttSession",
    "RecordingSession",
    "SimConfig",
    "SimEvent",
    "SimModule",
    "SimServer",
    "parse_fault",
]
