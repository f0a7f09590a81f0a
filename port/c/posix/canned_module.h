/* canned_module.h: an in-memory HAL whose far end answers like an Air72x that always succeeds.
 *
 * What `airfsm_bench --tick` drives the controller with: no pty, no simulator, no clock, so what
 * is timed is the controller's tick and nothing else. The answers are those of `airfsm sim`'s
 * happy path (recorded from its transcript: the same lines, the same echo), one rule per command
 * prefix; anything it does not know gets OK. It is a bench fixture, not a simulator: no faults,
 * no state beyond the HTTPDATA body it is reading. The Python twin of the idea is bench/rigs.py's
 * ScriptedLink (which plays the module once the simulator brought the controller ONLINE).
 *
 * The clock is the caller's: `now` is what millis() returns.
 */
#ifndef AIRFSM_CANNED_MODULE_H
#define AIRFSM_CANNED_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "hal.h"

#define CANNED_RX_CAPACITY 8192u /* what the module said and the controller has not read yet */
#define CANNED_LINE_CAPACITY 1536u /* one command line as received (the longest MPUB: 1169) */

typedef struct {
    uint32_t now;                           /* millis() */
    uint8_t rx[CANNED_RX_CAPACITY];         /* module -> controller, not read yet */
    size_t rx_start, rx_len;
    uint8_t line[CANNED_LINE_CAPACITY];     /* the command line being received */
    size_t line_len;
    uint32_t body_left;                     /* HTTPDATA body bytes still to come (0: commands) */
    uint32_t commands;                      /* command lines received */
    uint32_t overflows;                     /* answers that did not fit rx (a bench bug) */
} canned_module_t;

/* A module fresh from boot, the clock at `now`. */
void canned_module_init(canned_module_t *module, uint32_t now);

/* The hal_t for it (ctx = module; no reset pin, no log). */
hal_t canned_module_hal(canned_module_t *module);

/* Queue bytes as if the module had sent them (an unsolicited line, say). */
void canned_module_say(canned_module_t *module, const uint8_t *data, size_t len);

#endif /* AIRFSM_CANNED_MODULE_H */
