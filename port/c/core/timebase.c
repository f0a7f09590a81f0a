/* timebase.c: the PRNG and the backoff of timebase.h. Python twin: airfsm/core/timebase.py. */
#include "timebase.h"

/* Twin: timebase.seed_from_text(). */
uint32_t seed_from_text(const char *text, size_t len)
{
    uint32_t seed = 0;
    size_t i;

    for (i = 0; i < len; i++) {
        seed = seed * 31u + (uint8_t)text[i];
    }
    return seed;
}

/* Twin: Xorshift32.__init__. */
void xorshift32_seed(xorshift32_t *rng, uint32_t seed)
{
    rng->state = seed != 0 ? seed : 0x2545F491u; /* zero is a fixed point: never use it */
}

/* Twin: Xorshift32.next(). */
uint32_t xorshift32_next(xorshift32_t *rng)
{
    uint32_t x = rng->state;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    rng->state = x;
    return x;
}

/* Twin: timebase.backoff_ms(). */
uint32_t backoff_ms(uint32_t attempt, uint32_t base_ms, uint32_t cap_ms, xorshift32_t *rng)
{
    uint32_t nominal = base_ms, half, doublings, i;

    if (base_ms >= cap_ms) {
        return cap_ms;
    }
    doublings = attempt > 1u ? attempt - 1u : 0u;
    if (doublings > TIMEBASE_MAX_DOUBLINGS) {
        doublings = TIMEBASE_MAX_DOUBLINGS;
    }
    for (i = 0; i < doublings; i++) {
        if (nominal >= cap_ms - nominal) { /* doubling would reach the cap (or pass it) */
            nominal = cap_ms;
            break;
        }
        nominal += nominal;
    }
    half = nominal / 2u;
    return half + xorshift32_next(rng) % (nominal - half + 1u);
}
