"""Wrap-safe 32-bit ms time and a portable PRNG for jitter. C twin: `port/c/core/timebase.h`.

An MCU's millisecond counter is a uint32_t that wraps every 49.7 days; a gateway that runs for
months crosses the wrap. All deadlines are therefore absolute 32-bit values and are compared by
the sign of their 32-bit difference, exactly as the C port does with `(int32_t)(a - b)`.
"""

from __future__ import annotations

MS_MASK = 0xFFFFFFFF
_HALF = 0x80000000


def ms_add(t: int, delta_ms: int) -> int:
    """`t + delta_ms` on the 32-bit clock. C: ms_add()."""
    return (t + delta_ms) & MS_MASK


def ms_diff(a: int, b: int) -> int:
    """Signed `a - b` on the 32-bit clock: positive when `a` is later than `b`. C: ms_diff()."""
    d = (a - b) & MS_MASK
    return d - (1 << 32) if d & _HALF else d


def ms_reached(now: int, deadline: int) -> bool:
    """True once `now` is at or past `deadline`. C: ms_reached()."""
    return ms_diff(now, deadline) >= 0


def ms_earliest(a: int | None, b: int | None) -> int | None:
    """The earlier of two optional deadlines (C: a flag beside each). C: ms_earliest()."""
    if a is None:
        return b
    if b is None:
        return a
    return a if ms_diff(a, b) <= 0 else b



def seed_from_text(text: str) -> int:
    """A PRNG seed from a name (the DeviceName): jitter differs between devices, so a fleet
    spreads out, yet is the same on every run of one device. C: seed_from_text()."""
    seed = 0
    for ch in text:
        seed = (seed * 31 + ord(ch)) & MS_MASK
    return seed


class Xorshift32:
    """Marsaglia's xorshift32: the same sequence in Python and in C for the same seed.

    C: xorshift32_t, xorshift32_next()."""

    def __init__(self, seed: int) -> None:
        """C: xorshift32_seed()."""
        self.state = (seed & MS_MASK) or 0x2545F491  # zero is a fixed point: never use it

    def next(self) -> int:
        """C: xorshift32_next()."""
        x = self.state
        x ^= (x << 13) & MS_MASK
        x ^= x >> 17
        x ^= (x << 5) & MS_MASK
        self.state = x
        return x


MAX_DOUBLINGS = 20  # a backoff's exponent stops growing here, wherever its cap is


def backoff_ms(attempt: int, base_ms: int, cap_ms: int, rng: Xorshift32) -> int:
    """Delay before retry number `attempt` (1 = first retry). C: backoff_ms().

    Exponential (`base * 2**(attempt-1)`, capped) with "equal jitter": half the delay is fixed,
    the other half drawn from the PRNG, so retries of many devices spread out yet never shrink
    below half the nominal delay. `base == cap` gives a fixed delay with no jitter.
    The nominal delay doubles only while it is below the cap, so no intermediate value leaves
    32 bits (a shift by attempt-1 would: 4096 << 20 is 2**32).
    """
    if base_ms >= cap_ms:
        return cap_ms
    nominal = base_ms
    for _ in range(min(max(attempt - 1, 0), MAX_DOUBLINGS)):
        if nominal >= cap_ms - nominal:  # doubling would reach the cap (or pass it)
            nominal = cap_ms
            break
        nominal += nominal
    half = nominal // 2
    return half + (rng.next() % (nominal - half + 1))
