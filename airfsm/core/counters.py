"""What an operator sees of a controller: its counters, in the status file.

C twin: `airfsm_counters_t`, a sub-struct of the controller (`port/c/core/airfsm.h`). Its
own module so that the parts of the tick that count (`airfsm.core.online`) need not import the
controller that holds them.
"""

from __future__ import annotations

from typing import Any

from airfsm.core.codes import Trigger


class Counters:
    """What an operator wants to see in the status file. Plain ints: a C struct."""

    __slots__ = ("transitions", "reconnects", "timeouts", "publish_sent", "publish_acked",
                 "publish_retried", "publish_dead", "store_unavailable", "pubacks_ignored",
                 "inbound", "downlinks_truncated", "downlinks_cached", "keepalives", "probes",
                 "internal_errors")

    def __init__(self) -> None:
        """C: part of airfsm_init()."""
        self.transitions = 0
        self.reconnects = [0] * len(Trigger)  # by trigger (escalations and link losses)
        self.timeouts = 0
        self.publish_sent = 0
        self.publish_acked = 0
        self.publish_retried = 0  # sends of a message that had been attempted before
        self.publish_dead = 0  # messages moved to the dead letters
        self.store_unavailable = 0  # outbox calls refused (locked, disk full): retried later
        self.pubacks_ignored = 0
        self.inbound = 0
        self.downlinks_truncated = 0  # +MSUB payloads that came short: dropped
        self.downlinks_cached = 0  # cache-mode notices (`+MSUB: <slot>`), read with MQTTMSGGET
        self.keepalives = 0  # AT+MSUB sent to keep an old firmware's session alive
        self.probes = 0
        self.internal_errors = 0

    def as_dict(self) -> dict[str, Any]:
        """For status files: the reconnects by trigger name, those that happened.

        Python only (no C twin)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in self.__slots__}
        out["reconnects"] = {Trigger(i).name.lower(): n for i, n in enumerate(self.reconnects)
                             if n}
        return out
