/* airfsm_internal.h: what judge.c and online.c call of the controller (airfsm.c). Python twins:
 * the protocols judge.Learner and online.Online, which the Controller implements. Not for
 * applications: they use airfsm.h. */
#ifndef AIRFSM_INTERNAL_H
#define AIRFSM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airfsm.h"

/* codes.Phase, codes.PubPhase, codes.KeepalivePhase (not exported by the table: the C port's
 * own bookkeeping, the same numbers as the Python's). */
enum { PHASE_IDLE = 0, PHASE_WAIT_FINAL = 1, PHASE_WAIT_URC = 2, PHASE_WAIT_UNTIL = 3 };
enum { PUB_NONE = 0, PUB_WAIT_OK = 1, PUB_WAIT_PUBACK = 2 };
enum { KEEPALIVE_NONE = 0, KEEPALIVE_WAIT_OK = 1, KEEPALIVE_WAIT_SUBACK = 2 };
#define NO_OUTCOME (-1)
#define NO_LINK_EVENT (-1)
#define NO_ID 0u /* online.NO_ID: message ids start at 1 */

/* Twin: Controller.wants(). */
bool airfsm_wants(const airfsm_t *ctl, airfsm_log_level_t level);

/* Twin: Controller.log(). */
void airfsm_log(const airfsm_t *ctl, airfsm_log_level_t level, airfsm_log_event_t event,
                int32_t a, int32_t b, int32_t c, const uint8_t *data, size_t len);

/* Twin: Controller.emit_secret(). */
void airfsm_emit_secret(const airfsm_t *ctl, const char *secret, bool lasting);

/* Twin: Controller.take_signal(). */
void airfsm_take_signal(airfsm_t *ctl, int32_t rssi);

/* Twin: Controller.set_failure(). */
void airfsm_set_failure(airfsm_t *ctl, airfsm_fail_reason_t reason, airfsm_reason_t cause,
                        int32_t detail);

/* Twin: Controller.take_credentials(): from ctl->reply.auth. */
void airfsm_take_credentials(airfsm_t *ctl);

/* Twin: Controller.take_device_secret(): from ctl->reply.reg. */
void airfsm_take_device_secret(airfsm_t *ctl);

/* Twin: Controller.raise_link(). */
void airfsm_raise_link(airfsm_t *ctl, airfsm_trigger_t trigger);

/* Twin: Controller.send_step(). */
void airfsm_send_step(airfsm_t *ctl, const airfsm_step_t *step, airfsm_purpose_t purpose,
                      uint8_t topic);

/* Twin: Controller.send_command(): the command already in cmd_buf[:length]. */
void airfsm_send_command(airfsm_t *ctl, size_t length, uint32_t timeout_ms,
                         airfsm_purpose_t purpose);

#endif /* AIRFSM_INTERNAL_H */
