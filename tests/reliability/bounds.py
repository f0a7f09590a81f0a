"""How long a recovery may take, computed from the machine table's policies: no magic number.

A controller that can never be stuck is ONLINE again, with its outbox drained, after one fault
within

    bound(S) =  attempt(S)        the attempt the fault hit runs to its last deadline
              + wait(S)           S's longest retry backoff, plus one escalation backoff
              + path(AUTOBAUD)    a clean run from the very start to ONLINE (the furthest a
                                  single fault can throw it back: a reboot, a lost port)
              + online()          what ONLINE needs to notice trouble and deliver a message
              + reopen            the gateway's first wait before it reopens a vanished port

where every step counts at its deadline (a step that polls counts every poll), so the bound
holds whatever the module's latency. After a storm of faults (`quiet_bound`), the controller
may be anywhere, in the middle of any backoff: the longest attempt and the longest wait of any
state replace S's, and one refused connect (a token revoked meanwhile) costs one MQTT_CONNECT
attempt, a wait and the path from HTTP_AUTH on top.

The numbers come from `airfsm.core.table` (steps, policies, escalation backoff, the ONLINE
probe and keepalive), the controller's settings (publish and PUBACK timeouts, publish backoff,
liveness, silence limit) and two constants of ONLINE and the host (the store and reopen
backoffs).
"""

from __future__ import annotations

from dataclasses import dataclass

from airfsm.core.codes import State
from airfsm.core.online import STORE_BACKOFF_MS
from airfsm.core.settings import Settings
from airfsm.core.table import (
    CACHE_READ,
    ESCALATION_BACKOFF_MS,
    KEEPALIVE_FRACTION,
    LIVENESS_PROBE,
    MACHINE,
    SESSION_KEEPALIVE,
    SIGNAL_REFRESH,
    StateSpec,
    Step,
)
from airfsm.host.gateway import REOPEN_BACKOFF_MS

# The states a fault can hit, in machine order (FAILED is terminal: nothing recovers from it).
STATES: tuple[State, ...] = tuple(row.state for row in MACHINE if row.state != State.FAILED)


def step_ms(step: Step, topics: int = 1) -> int:
    """The longest one step can take: its final code, its URC, its settle time, every poll.
    A prompt step (AT+HTTPDATA) waits twice: for DOWNLOAD, then for OK after the body. A
    per_topic step (the subscription) is sent once for each of the `topics`."""
    answer = step.timeout_ms * (2 if step.prompt else 1) + step.urc_timeout_ms
    once = answer + step.settle_ms + step.poll_limit * (step.poll_ms + step.timeout_ms)
    return once * (topics if step.per_topic else 1)


def attempt_ms(state: State, table: tuple[StateSpec, ...] = MACHINE, topics: int = 1) -> int:
    """One attempt of `state` with every step at its deadline (conditional steps included)."""
    return sum(step_ms(step, topics) for step in table[state].steps)


def path_ms(start: State, table: tuple[StateSpec, ...] = MACHINE, topics: int = 1) -> int:
    """A clean run from `start` along DONE to ONLINE."""
    total, state = 0, start
    while state != State.ONLINE:
        total += attempt_ms(state, table, topics)
        nxt = table[state].next
        assert nxt is not None, f"{state.name} has no DONE edge towards ONLINE"
        state = nxt
    return total


def wait_ms(state: State, table: tuple[StateSpec, ...] = MACHINE) -> int:
    """The longest backoff before `state` runs again, plus one escalation backoff."""
    policy = table[state].policy
    retry = policy.backoff_cap_ms if policy is not None else 0
    return retry + ESCALATION_BACKOFF_MS[1]


def online_ms(settings: Settings) -> int:
    """What ONLINE may take to notice a dead link and deliver the message at the head.

    A silent loss is seen by the liveness probe (after `liveness_ms`, up to `silence_limit`
    unanswered commands) or, on firmware before V838, by the keepalive's missing SUBACK. A
    message may be refused or unanswered (publish timeout), lose its PUBACK (PUBACK timeout,
    then a wait for the stale one), back off (publish backoff cap) and wait for the store
    (store backoff cap) before its next send goes through."""
    num, den = KEEPALIVE_FRACTION
    keepalive = settings.keepalive_s * 1000 * num // den
    notice = settings.liveness_ms + settings.silence_limit * max(
        LIVENESS_PROBE.timeout_ms, settings.publish_timeout_ms)
    upkeep = (keepalive + step_ms(SESSION_KEEPALIVE) + step_ms(CACHE_READ)
              + step_ms(SIGNAL_REFRESH))
    deliver = (settings.publish_timeout_ms + 2 * settings.puback_timeout_ms
               + settings.publish_backoff_cap_ms + STORE_BACKOFF_MS[1])
    return notice + upkeep + deliver


REOPEN_MS = REOPEN_BACKOFF_MS[0]  # the gateway's first reopen of a vanished port waits at most this


@dataclass(frozen=True)
class Bound:
    """A bound and its terms, so the report can show how it was made."""

    attempt_ms: int
    wait_ms: int
    path_ms: int
    online_ms: int
    reopen_ms: int

    @property
    def total_ms(self) -> int:
        return self.attempt_ms + self.wait_ms + self.path_ms + self.online_ms + self.reopen_ms


def fault_bound(state: State, settings: Settings,
                table: tuple[StateSpec, ...] = MACHINE) -> Bound:
    """One fault hits `state`: ONLINE again, outbox drained, within this."""
    topics = len(settings.subscriptions())
    hit = attempt_ms(state, table, topics) if state != State.ONLINE else 0
    wait = wait_ms(state, table)
    return Bound(hit, wait, start_path_ms(settings, table, topics), online_ms(settings),
                 REOPEN_MS)


def start_path_ms(settings: Settings, table: tuple[StateSpec, ...] = MACHINE,
                  topics: int = 1) -> int:
    """A clean run from AUTOBAUD to ONLINE; a device without its DeviceSecret yet registers on
    the way (BEARER -> PROVISION -> HTTP_AUTH)."""
    register = 0 if settings.identity.registered else attempt_ms(State.PROVISION, table, topics)
    return path_ms(State.AUTOBAUD, table, topics) + register


def quiet_bound(settings: Settings, table: tuple[StateSpec, ...] = MACHINE) -> Bound:
    """Faults stop with the controller anywhere: ONLINE again, outbox drained, within this."""
    topics = len(settings.subscriptions())
    hit = max(attempt_ms(s, table, topics) for s in STATES if s != State.ONLINE)
    wait = max(wait_ms(s, table) for s in STATES)
    # A token revoked while faults raged is refused at the next connect: one more way round.
    refused = (attempt_ms(State.MQTT_CONNECT, table, topics) + wait
               + path_ms(State.HTTP_AUTH, table, topics))
    return Bound(hit, wait + refused, start_path_ms(settings, table, topics),
                 online_ms(settings), REOPEN_MS)
