"""The time base: wrap-safe 32-bit arithmetic, the host clock, seeds and backoff."""

from __future__ import annotations

from airfsm.core.timebase import (
    MS_MASK,
    Xorshift32,
    backoff_ms,
    ms_add,
    ms_diff,
    ms_reached,
    seed_from_text,
)
from airfsm.host.clock import monotonic_ms


def test_differences_across_the_wrap() -> None:
    before = MS_MASK - 10
    after = ms_add(before, 30)
    assert after == 19
    assert ms_diff(after, before) == 30 and ms_diff(before, after) == -30
    assert ms_reached(after, before) and not ms_reached(before, after)


def test_host_clock_is_32_bit_and_monotonic() -> None:
    a = monotonic_ms()
    b = monotonic_ms()
    assert 0 <= a <= MS_MASK and ms_diff(b, a) >= 0


def test_seed_is_per_device_and_reproducible() -> None:
    assert seed_from_text("862991419835241") == seed_from_text("862991419835241")
    assert seed_from_text("862991419835241") != seed_from_text("862991419835242")
    assert 0 <= seed_from_text("x" * 1000) <= MS_MASK


def test_backoff_stays_within_half_and_full_nominal() -> None:
    rng = Xorshift32(seed_from_text("dev"))
    for attempt in range(1, 12):
        nominal = min(60_000, 2_000 << (attempt - 1))
        assert nominal // 2 <= backoff_ms(attempt, 2_000, 60_000, rng) <= nominal
    assert backoff_ms(5, 500, 500, rng) == 500  # base == cap: fixed, no jitter


class U32(int):
    """An int that fails where the C twin's uint32_t arithmetic would wrap."""

    def _checked(self, value: int) -> U32:
        if not 0 <= value <= MS_MASK:
            raise OverflowError(f"{value} does not fit 32 bits")
        return U32(value)

    def __lshift__(self, other: int) -> U32:  # type: ignore[override]
        return self._checked(int(self) << int(other))

    def __add__(self, other: int) -> U32:  # type: ignore[override]
        return self._checked(int(self) + int(other))

    def __mul__(self, other: int) -> U32:  # type: ignore[override]
        return self._checked(int(self) * int(other))

    def __sub__(self, other: int) -> U32:  # type: ignore[override]
        return self._checked(int(self) - int(other))


def test_backoff_never_leaves_32_bits_for_a_base_of_4096_ms_or_more() -> None:
    """Regression: `base << (attempt-1)` was 2**32 for base 4096 at attempt 21 (C wraps)."""
    rng = Xorshift32(7)
    for base in (4096, 60_000, 1 << 30):
        cap = U32(2**31 - 1)
        for attempt in (1, 2, 12, 21, 22, 40, 1000):
            delay = backoff_ms(attempt, U32(base), cap, rng)
            nominal = min(int(cap), base << min(attempt - 1, 20))
            assert nominal // 2 <= delay <= nominal, (base, attempt)
