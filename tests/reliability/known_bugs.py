"""Bugs the proofs found in the core that are not fixed yet, each with its minimal reproducer.

Each reproducer is a test in tests/test_reliability_bugs.py marked
`xfail(strict=True, reason=...)`: it fails today, and the day the bug is fixed it passes, which
a strict xfail turns into a failure - the reminder to flip its mark and delete its entry here.
Until then, the matrix, the campaign and the property tests tolerate exactly the symptom of
each entry, and only where its cause is present (`explains`): any other problem still fails
them. docs/reliability.md flags the cells a known bug touches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RunFacts:
    """What a run was, for `KnownBug.explains`."""

    faults: tuple[str, ...]  # the simulator fault specs that fired
    final_state: str
    fail_reason: str | None


@dataclass(frozen=True)
class KnownBug:
    key: str
    summary: str
    reproducer: str  # the xfail-strict test
    explains: Callable[[RunFacts, str], bool]  # is `problem`, in a run like this, this bug?


# None open. Fixed and removed: "duplicated-final" (a final code before the echo of the command
# in flight was taken for its answer; reproducer in tests/test_reliability_bugs.py).
KNOWN_BUGS: tuple[KnownBug, ...] = ()


def unexplained(facts: RunFacts, problems: list[str]) -> list[str]:
    """The problems no known bug accounts for."""
    return [p for p in problems if not any(b.explains(facts, p) for b in KNOWN_BUGS)]


def explaining(facts: RunFacts, problems: list[str]) -> list[str]:
    """The keys of the known bugs behind `problems`."""
    return sorted({b.key for b in KNOWN_BUGS for p in problems if b.explains(facts, p)})
