/* online.h: ONLINE: publishing the outbox, matching PUBACKs, the liveness probe, the keepalive
 * of old firmware, dead letters. Python twin: airfsm/core/online.py (its module docstring states
 * the publishing rules, the store's and the upkeep's in full).
 *
 * Functions over the controller struct and its session sub-struct, called by the controller's
 * tick: online_advance() when the channel is idle in ONLINE, the online_on_* handlers when an
 * answer or a URC for them came, online_settle_outbox() every tick, online_watch_deadline() and
 * online_send_deadline() for the next deadline. Nothing here blocks or builds text.
 */
#ifndef AIRFSM_ONLINE_H
#define AIRFSM_ONLINE_H

#include <stdbool.h>
#include <stdint.h>

#include "airfsm.h"

/* Twin: online.Session.__init__(). */
void online_init(airfsm_session_t *s, uint32_t now_ms);

/* Twin: online.advance(): ONLINE with the channel idle: send what is due. */
void online_advance(airfsm_t *ctl);

/* Twin: online.check_deadlines(): backoffs end, an unanswered keepalive ends the session. */
void online_check_deadlines(airfsm_t *ctl);

/* Twin: online.watch_deadline(): the earliest of *deadline (has: whether there is one) and what
 * acts whatever the channel does. */
void online_watch_deadline(const airfsm_t *ctl, bool *has, uint32_t *deadline);

/* Twin: online.send_deadline(): ... and when ONLINE is next due to send (channel idle). */
void online_send_deadline(const airfsm_t *ctl, bool *has, uint32_t *deadline);

/* Twin: online.reset(): the MQTT session started or ended. */
void online_reset(airfsm_t *ctl);

/* Twin: online.module_restarted(): back in text mode, its cache empty. */
void online_module_restarted(airfsm_t *ctl);

/* Twin: online.settle_outbox(): the store writes owed; true when nothing is owed any more. */
bool online_settle_outbox(airfsm_t *ctl);

/* The handlers of answers and URCs (twins: the online.on_* functions of the same names). */
void online_on_publish_response(airfsm_t *ctl, const at_response_t *resp);
void online_on_mode_response(airfsm_t *ctl, const at_response_t *resp);
void online_on_puback(airfsm_t *ctl);
void online_on_probe_response(airfsm_t *ctl, const at_response_t *resp);
void online_on_signal_response(airfsm_t *ctl, const at_response_t *resp);
void online_on_answered(airfsm_t *ctl);
void online_cache_notice(airfsm_t *ctl, int slot);
void online_on_keepalive_response(airfsm_t *ctl, const at_response_t *resp);
bool online_suback_awaited(const airfsm_t *ctl);
void online_on_suback(airfsm_t *ctl);
void online_on_cache_read_response(airfsm_t *ctl, const at_response_t *resp);

/* Twin: online.publish_failed(). */
void online_publish_failed(airfsm_t *ctl, airfsm_reason_t why, int32_t detail);

#endif /* AIRFSM_ONLINE_H */
