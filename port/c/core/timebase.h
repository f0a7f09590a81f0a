/* timebase.h: wrap-safe 32-bit millisecond time. Python twin: airfsm/core/timebase.py.
 *
 * An MCU's millisecond counter is a uint32_t that wraps every 49.7 days. Deadlines are absolute
 * 32-bit values compared by the sign of their 32-bit difference, never by `<`.
 */
#ifndef AIRFSM_TIMEBASE_H
#define AIRFSM_TIMEBASE_H

#include <stdbool.h>
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

#endif /* AIRFSM_TIMEBASE_H */
