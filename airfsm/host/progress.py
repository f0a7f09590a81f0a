"""What the controller is doing and waiting for, in words an operator reads.

`connect` and `demo` show it as the stages pass ("ATTACH  waiting for +CGATT: 1 (poll 7/60)",
"HTTP_AUTH  auth code 401 (...), retry 2/5 in 8 s"), the gateway puts it in its status file and
in systemd's `STATUS=` line. All of them read the controller through `snapshot` and `wait_of`
below, which read only `host.reasons.status` (the controller's snapshot, in words).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airfsm.core.timebase import ms_diff
from airfsm.host import reasons

# What a step's check wants to see, by the check's name (the enum moves between core modules).
_WANTED = {
    "ATTACHED": "+CGATT: 1",
    "SIM_READY": "+CPIN: READY",
    "BEARER_QUERY": "the bearer (+SAPBR: 1,1)",
    "VERSION": "the firmware version",
    "SIGNAL": "+CSQ",
    "HTTP_STATUS": "+HTTPACTION: 1,200",
    "AUTH_REPLY": "the auth reply",
    "REGISTER_REPLY": "the register reply (deviceSecret)",
    "MQTT_STATUS": "+MQTTSTATU: 1",
    "IMEI": "the IMEI",
    "ICCID": "the ICCID",
    "OPERATOR": "the operator (+COPS)",
    "REGISTRATION": "the registration (+CEREG)",
}


def snapshot(controller: Any) -> dict[str, Any]:
    """The controller's status snapshot (no secret in it)."""
    return reasons.status(controller)


@dataclass(frozen=True)
class Wait:
    """Where the controller is and what it waits for.

    `kind` is one of: `online`, `failed`, `command` (an answer to the step's command), `urc`
    (the URC that completes the step), `poll` (the step is sent again until its answer says
    yes), `retry` (the state failed and runs again after a backoff), `backoff` (entered after a
    link loss or an escalation, waiting before it starts), `settle` (a pause between steps).
    """

    state: str
    step: str | None
    kind: str
    attempt: int
    retries: int  # re-runs of the state after a failure before it escalates
    polls: int
    poll_limit: int
    resume_in_ms: int | None  # retry / backoff / poll pause: how long until it goes on
    wanted: str | None  # what the step waits for ("+CGATT: 1")
    why: str | None  # the latest step failure, without its "STATE step: " head
    last_trigger: str | None

    def text(self) -> str:
        """The wait in a few words, without the state's name."""
        later = "" if self.resume_in_ms is None else f" in {_seconds(self.resume_in_ms)}"
        if self.kind == "poll":
            return f"waiting for {self.wanted} (poll {self.polls}/{self.poll_limit})"
        if self.kind == "retry":
            return (f"{self.why or 'failed'}, retry {self.attempt - 1}/{self.retries}"
                    f"{later}")
        if self.kind == "backoff":
            return f"after {self.last_trigger}, starting{later}"
        if self.kind == "urc":
            return f"{self.step}: waiting for {self.wanted}"
        if self.kind == "settle":
            return f"{self.step} starts{later}"
        if self.kind == "command":
            return f"{self.step}: waiting for {self.wanted or 'OK'}"
        return self.kind


def _seconds(ms: int) -> str:
    return f"{max(0, (ms + 999) // 1000)} s"


def wait_of(controller: Any, now_ms: int) -> Wait:
    """What `controller` waits for at `now_ms` (its clock, as given to `tick`)."""
    status = snapshot(controller)
    state = str(status.get("state"))
    step_name = status.get("step")
    phase_name = str(status["phase"])
    polls = int(status["polls"])
    resume_at = status["resume_at_ms"]
    trigger = status.get("last_trigger")
    row = controller.table[controller.state]
    retries = row.policy.retries if row.policy is not None else 0
    step = None
    index = int(status["step_index"])
    if 0 <= index < len(row.steps):
        step = row.steps[index]
    why = status.get("last_error")
    if isinstance(why, str) and ": " in why:
        why = why.split(": ", 1)[1]
    resume_in = None if resume_at is None else ms_diff(int(resume_at), now_ms)
    wanted = None
    if step is not None:
        wanted = (" or ".join(step.urc_ok) if phase_name == "WAIT_URC" and step.urc_ok
                  else _WANTED.get(step.check.name))
    if state == "ONLINE":
        kind = "online"
    elif state == "FAILED":
        kind = "failed"
    elif polls > 0:
        kind = "poll"
    elif phase_name == "WAIT_URC":
        kind = "urc"
    elif phase_name == "WAIT_UNTIL" and index == 0 and trigger == "retry":
        kind = "retry"
    elif phase_name == "WAIT_UNTIL" and index == 0 and trigger not in ("done", "start"):
        kind = "backoff"
    elif phase_name == "WAIT_UNTIL":
        kind = "settle"
    else:
        kind = "command"
    if kind not in ("retry", "backoff", "settle") or resume_in is None or resume_in < 0:
        resume_in = None
    return Wait(state=state, step=step_name, kind=kind, attempt=int(status.get("attempt") or 1),
                retries=retries, polls=polls, poll_limit=step.poll_limit if step else 0,
                resume_in_ms=resume_in, wanted=wanted, why=why if isinstance(why, str) else None,
                last_trigger=trigger)


__all__ = ["Wait", "snapshot", "wait_of"]
