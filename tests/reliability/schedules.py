"""Random fault schedules, drawn the same way by hypothesis and by a seeded campaign.

`draw_schedule(choose)` builds a `Schedule` from a `Choose`: `RandomChoose` (random.Random with
a seed: the deterministic campaign whose figures go into docs/reliability.md) or hypothesis'
`st.data()` (`HypothesisChoose`: the property tests, which shrink a failing schedule to a
minimal one). What can be drawn: every simulator fault kind, on any command or on none, a few
times; the server dropping the link (loudly or silently), a detach, a reboot, a revoked token, a
vanished port, a store refusing writes; messages published and downlinks sent at any time,
also after the faults stop.

Left out on purpose, because nothing recovers from them by design (FAILED is terminal): old
firmware, and six rejected auths in a row (at most `MAX_AUTH_REJECTIONS` are drawn). Left out
because they are properties of a module, not events: `cgatt0`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from tests.reliability.driver import Event, Schedule

T = TypeVar("T")

MAX_AUTH_REJECTIONS = 3  # the controller gives up (FAILED) after 6 in a row
MAX_EVENTS = 8
MAX_MESSAGES = 6
QUIET_AT_MS = (5_000, 20 * 60_000)  # when the faults stop: 5 s to 20 min after the start

# MATCH prefixes: one command of each state's script, ONLINE's too.
COMMANDS = ("AT", "AT+RESET", "AT+CGMR", "AT+CFUN", "AT+CPIN?", "AT+CSQ", "AT+CGATT?",
            "AT+SAPBR=3", "AT+SAPBR=1,1", "AT+SAPBR=2,1", "AT+HTTPTERM", "AT+HTTPINIT",
            "AT+HTTPPARA", "AT+HTTPDATA", "AT+HTTPACTION", "AT+HTTPREAD", "AT+MIPCLOSE",
            "AT+MCONFIG", "AT+MQTTMSGSET", "AT+SSLMIPSTART", "AT+MCONNECT", "AT+MSUB",
            "AT+MPUB", "AT+MQTTSTATU", "AT+MQTTMODE", "AT+MQTTMSGGET")
# Command faults, `{}` for a number where they take one.
COMMAND_FAULTS = ("silence", "error", "cme={}", "garbage", "overlong", "split", "split=1",
                  "dup-final", "urc-inside", "reboot", "brownout={}", "closed", "detach",
                  "me-detach", "cgatt-detach", "http-error={}", "lose={}")
NETWORK_FAULTS = ("http=60{}", "puback=lost", "puback=late", "connack=refused",
                  "connect-fail", "lose-downlink={}", "cache-notice", "noisy-rdy")
AUTH_FAULTS = ("auth=401", "auth=5001", "auth=460")
ACTIONS = ("fault", "fault", "fault", "fault", "drop", "drop-silently", "detach", "reboot",
           "expire-token", "unplug", "store")
STORE_OPERATIONS = ("peek", "mark_attempt", "ack", "dead_letter", "write")


class Choose(Protocol):
    def integer(self, low: int, high: int) -> int:
        """low..high inclusive."""

    def pick(self, options: Sequence[T]) -> T: ...


class RandomChoose:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]


class HypothesisChoose:
    """Draws through hypothesis (`st.data()`), so a failing schedule shrinks."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self.data = data
        self.st = st

    def integer(self, low: int, high: int) -> int:
        value: int = self.data.draw(self.st.integers(low, high))
        return value

    def pick(self, options: Sequence[T]) -> T:
        value: T = self.data.draw(self.st.sampled_from(options))
        return value


def draw_fault_spec(choose: Choose, auth_left: int) -> tuple[str, int]:
    """A simulator fault spec and how many auth rejections it may cost."""
    family = choose.integer(0, 9)
    count = choose.integer(1, 3)
    if family == 0 and auth_left > 0:
        count = min(count, auth_left)
        return f"{choose.pick(AUTH_FAULTS)}@{count}", count
    if family <= 2:
        spec = choose.pick(NETWORK_FAULTS).replace("{}", str(choose.integer(0, 9)))
        return f"{spec}@{count}", 0
    spec = choose.pick(COMMAND_FAULTS).replace("{}", str(choose.pick((3, 50, 767, 8, 20))))
    if choose.integer(0, 3):
        spec += f":{choose.pick(COMMANDS)}"
    elif spec.startswith("split"):
        return spec, 0  # split without MATCH: all output, until the faults stop
    return f"{spec}@{count}", 0


def draw_schedule(choose: Choose) -> Schedule:
    quiet_at = choose.integer(*QUIET_AT_MS)
    events: list[Event] = []
    auth_left = MAX_AUTH_REJECTIONS
    for _ in range(choose.integer(0, MAX_EVENTS)):
        at_ms = choose.integer(0, quiet_at)
        action = choose.pick(ACTIONS)
        if action == "fault":
            spec, rejections = draw_fault_spec(choose, auth_left)
            auth_left -= rejections
            events.append(Event(at_ms, "fault", spec))
        elif action == "store":
            events.append(Event(at_ms, "store", choose.pick(STORE_OPERATIONS),
                                choose.integer(1, 20)))
        else:
            events.append(Event(at_ms, action))
    horizon = quiet_at + 60_000  # messages and downlinks go on a minute after the faults
    for n in range(choose.integer(1, MAX_MESSAGES)):
        events.append(Event(choose.integer(0, horizon), "publish", f'{{"n":{n},"at":"x"}}'))
    for n in range(choose.integer(0, 2)):
        events.append(Event(choose.integer(0, horizon), "downlink", f"down {n}"))
    events.sort(key=lambda e: e.at_ms)
    return Schedule(tuple(events), quiet_at)
