/* judge.h: what an answer means for the step that asked. Python twin: airfsm/core/judge.py.
 *
 * Each judgement is three small numbers: an outcome (what the controller does next), a reason
 * and a bounded detail (what an operator is told, worded at the edge). What a step learns on the
 * way (the firmware, the IMEI and ICCID, the signal, the operator and registration, the IP, the
 * HTTP status, the credentials) is written into the controller's struct. Which line and field
 * each check reads is the generated airfsm_check_answers.
 */
#ifndef AIRFSM_JUDGE_H
#define AIRFSM_JUDGE_H

#include <stddef.h>
#include <stdint.h>

#include "airfsm.h"

/* Twin: judge.Judgement: (Outcome, Reason, detail). */
typedef struct {
    airfsm_outcome_t outcome;
    airfsm_reason_t reason;
    int32_t detail;
} judge_t;

/* Twin: judge.answer_reason(): the reason for a command that did not answer OK, chosen from the
 * three given, and the number in the answer in *detail. */
airfsm_reason_t judge_answer_reason(const at_response_t *resp, airfsm_reason_t unanswered,
                                    airfsm_reason_t error, airfsm_reason_t cme_error,
                                    int32_t *detail);

/* Twin: judge.judge_answer(): the `switch (step->check)`. */
judge_t judge_answer(airfsm_t *ctl, const airfsm_step_t *step, const at_response_t *resp);

/* Twin: judge.judge_urc(): a URC the step waits for (or fails on) came. */
judge_t judge_urc(airfsm_t *ctl, const airfsm_step_t *step, int urc, const uint8_t *line,
                  size_t len);

/* Twin: judge.signal_of(): the rssi of an AT+CSQ answer, 99 when it holds none. */
int32_t judge_signal(const at_response_t *resp);

/* Twin: judge.mqtt_status(): `+MQTTSTATU :<s>` of an answer, -1 when none. */
int32_t judge_mqtt_status(const at_response_t *resp);

/* Twin: judge.firmware_version(): the number after `_V` in buf[start:end]; -1 when none. */
int32_t judge_firmware_version(const uint8_t *buf, size_t start, size_t end);

/* Twin: judge.info_text(): field `index` of buf[start:end] without its quotes, at most
 * AIRFSM_INFO_TEXT_MAX characters, into out (NUL-terminated, cap >= AIRFSM_INFO_TEXT_MAX + 1);
 * "" when absent or not printable ASCII. */
void judge_info_text(const uint8_t *buf, int index, size_t start, size_t end, char *out);

#endif /* AIRFSM_JUDGE_H */
