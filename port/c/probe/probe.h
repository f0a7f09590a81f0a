/* probe.h: the smallest conversation with an Air72x module, to prove a HAL: send "AT\r" until the
 * module answers OK (it trains its UART on those bytes), then "AT+CGMR\r" and read the firmware
 * version. It runs on any hal_t, tick by tick, without blocking: `at-probe` runs it on a host port,
 * the mps2 smoke firmware on the board's UART.
 *
 * This is a HAL check, not the AT channel: it assembles lines and looks for OK and a version
 * line, nothing more. The controller's channel (at.c, the twin of the Python AtChannel) handles
 * echo, URCs, final codes and prompts properly.
 */
#ifndef AIRFSM_PROBE_H
#define AIRFSM_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hal.h"

typedef enum {
    PROBE_AUTOBAUD, /* sending AT until OK */
    PROBE_VERSION,  /* sent AT+CGMR, waiting for the version line and OK */
    PROBE_DONE,     /* the version is in `version` / `version_number` */
    PROBE_FAILED    /* see `failure` */
} probe_state_t;

typedef enum {
    PROBE_NO_FAILURE,
    PROBE_NO_RESPONSE, /* no OK to AT before the deadline */
    PROBE_NO_VERSION,  /* the module answered AT, but no version line before the deadline */
    PROBE_PORT_LOST    /* the HAL reported the link gone */
} probe_failure_t;

#define PROBE_LINE_MAX 128u
#define PROBE_VERSION_MAX 64u
#define PROBE_MIN_VERSION 409u       /* PROTOCOL.md: V409 or newer speaks this dialect */
#define PROBE_AT_INTERVAL_MS 500u    /* DESIGN.md: AUTOBAUD sends AT every 500 ms */
#define PROBE_CGMR_INTERVAL_MS 2000u /* AT+CGMR again when unanswered for 2 s */

typedef struct {
    const hal_t *hal;
    probe_state_t state;
    probe_failure_t failure;
    uint32_t deadline_ms;  /* give up at this time */
    uint32_t next_send_ms; /* (re)send the current command at this time */
    uint32_t at_sent;      /* how many AT it took */
    char line[PROBE_LINE_MAX + 1];
    size_t line_len;
    bool line_too_long; /* the line being assembled overflowed: ignore it */
    char version[PROBE_VERSION_MAX + 1]; /* e.g. AirM2M_Air72xUy_V409_LTE_AT */
    uint32_t version_number;             /* the digits after "_V": 409 */
} probe_t;

/* Start probing at `now_ms`; give up `timeout_ms` later. */
void probe_start(probe_t *probe, const hal_t *hal, uint32_t now_ms, uint32_t timeout_ms);

/* Read what arrived, act on it, send what is due. Returns the time of the next call it needs
 * (earlier calls are harmless); once DONE or FAILED it has nothing more to do. */
uint32_t probe_tick(probe_t *probe, uint32_t now_ms);

#endif /* AIRFSM_PROBE_H */
