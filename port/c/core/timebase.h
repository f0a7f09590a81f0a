/* timebase.h: wrap-safe 32-bit millisecond time and a portable PRNG for jitter.
 * Python twin: airfsm/core/timebase.py (the functions out of line are in timebase.c).
 *
 * An MCU's millisecond counter is a uint32_t that wraps every 49.7 days. Deadlines are absolute
 * 32-bit values compared by the sign of their 32-bit difference, never by `<`.
 */
#ifndef AIRFSM_TIMEBASE_H
#define AIRFSM_TIMEBASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Twin: timebase.ms_add: `t + delta_ms` on the 32-bit clock. */
static inline uint32_t ms_add(uint32_t t, uint32_t delta_ms) { return t + delta_ms; }

/* Twin: timebase.ms_diff: signed `a - b`, positive when `a` is later than `b`. The conversion of a
 * difference of 2^31 or more to int32_t is implementation-defined in C99; every compiler a port
 * meets (two's complement) gives the wrapped value, which is what is meant. */
static inline int32_t ms_diff(uint32_t a, uint32_t b) { return (int32_t)(a - b); }

/* Twin: timebase.ms_reached: true once `now` is at or past `deadline`. */
static inline bool ms_reached(uint32_t now, uint32_t deadline)
{
    return ms_diff(now, deadline) >= 0;
}

/* Twin: timebase.ms_earliest: the earlier of two optional deadlines. Python's None is a flag
 * beside each value here: returns whether there is a deadline at all, and writes it to *out
 * (untouched when there is none). */
static inline bool ms_earliest(bool has_a, uint32_t a, bool has_b, uint32_t b, uint32_t *out)
{
    if (!has_a && !has_b) {
        return false;
    }
    if (!has_a) {
        *out = b;
    } else if (!has_b) {
        *out = a;
    } else {
        *out = ms_diff(a, b) <= 0 ? a : b;
    }
    return true;
}

/* Twin: timebase.seed_from_text: a PRNG seed from a name (the DeviceName), `seed * 31 + byte`
 * over its bytes, so jitter differs between devices yet is the same on every run of one. The
 * Python twin reads code points: the two agree on ASCII, which a DeviceName is
 * (aliyun_identity_check). */
uint32_t seed_from_text(const char *text, size_t len);

/* Twin: timebase.Xorshift32: Marsaglia's xorshift32, the same sequence in Python and C. */
typedef struct {
    uint32_t state;
} xorshift32_t;

/* Twin: Xorshift32.__init__: zero is a fixed point, so it is replaced by a constant. */
void xorshift32_seed(xorshift32_t *rng, uint32_t seed);

/* Twin: Xorshift32.next. */
uint32_t xorshift32_next(xorshift32_t *rng);

/* Twin: timebase.MAX_DOUBLINGS: a backoff's exponent stops growing here, wherever its cap is. */
#define TIMEBASE_MAX_DOUBLINGS 20u

/* Twin: timebase.backoff_ms: the delay before retry number `attempt` (1 = the first retry):
 * base * 2^(attempt-1) capped at cap, with "equal jitter" (half fixed, half drawn from rng);
 * base >= cap gives cap, with no draw. No intermediate value leaves 32 bits. */
uint32_t backoff_ms(uint32_t attempt, uint32_t base_ms, uint32_t cap_ms, xorshift32_t *rng);

#endif /* AIRFSM_TIMEBASE_H */
