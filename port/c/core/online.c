/* online.c: ONLINE: publishing the outbox, matching PUBACKs, the liveness probe, the keepalive
 * of old firmware, dead letters. Python twin: airfsm/core/online.py; every function names its
 * twin (static ones before their first caller). */
#include <string.h>

#include "airfsm_internal.h"
#include "judge.h"
#include "online.h"
#include "payload.h"

/* Twin: online.Session.__init__(). */
void online_init(airfsm_session_t *s, uint32_t now_ms)
{
    memset(s, 0, sizeof *s);
    s->pub_phase = PUB_NONE;
    s->pub_deadline = now_ms;
    s->pub_hold_until = now_ms;
    s->last_failure = AIRFSM_REASON_NONE;
    s->stale_until = now_ms;
    s->proof_at = now_ms;
    s->keepalive_phase = KEEPALIVE_NONE;
    s->keepalive_deadline = now_ms;
    s->next_probe_at = now_ms;
    s->dead_reason = AIRFSM_REASON_NONE;
    s->store_hold_until = now_ms;
}

/* Twin: online._store_worked(). */
static void online_store_worked(airfsm_t *ctl)
{
    airfsm_session_t *s = &ctl->session;
    if (s->store_failures) {
        airfsm_log(ctl, AIRFSM_LOG_INFO, AIRFSM_LOG_EVENT_OUTBOX_AVAILABLE,
                   (int32_t)s->store_failures, 0, 0, NULL, 0);
        s->store_failures = 0;
    }
}

/* Twin: online._store_unavailable(): leave the store alone for a growing backoff. */
static void online_store_unavailable(airfsm_t *ctl, airfsm_outbox_call_t call)
{
    airfsm_session_t *s = &ctl->session;
    airfsm_log_level_t level;
    uint32_t delay;

    s->store_failures++;
    ctl->counters.store_unavailable++;
    delay = backoff_ms(s->store_failures, AIRFSM_STORE_BACKOFF_BASE_MS,
                       AIRFSM_STORE_BACKOFF_CAP_MS, &ctl->rng);
    s->store_holding = true;
    s->store_hold_until = ms_add(ctl->now_ms, delay);
    level = s->store_failures == 1 ? AIRFSM_LOG_WARNING : AIRFSM_LOG_DEBUG;
    airfsm_log(ctl, level, AIRFSM_LOG_EVENT_OUTBOX_UNAVAILABLE, (int32_t)call,
               (int32_t)s->store_failures, (int32_t)delay, NULL, 0);
}

/* Twin: online.settle_outbox(). */
bool online_settle_outbox(airfsm_t *ctl)
{
    airfsm_session_t *s = &ctl->session;

    if (s->ack_owed == NO_ID && s->dead_owed == NO_ID) {
        return true;
    }
    if (s->store_holding) {
        return false;
    }
    if (s->ack_owed != NO_ID) {
        if (outbox_ack(&ctl->outbox, s->ack_owed) == AIRFSM_OUTBOX_STATUS_UNAVAILABLE) {
            online_store_unavailable(ctl, AIRFSM_OUTBOX_CALL_ACK);
            return false;
        }
        s->ack_owed = NO_ID;
        online_store_worked(ctl);
    }
    if (s->dead_owed != NO_ID) {
        if (outbox_dead_letter(&ctl->outbox, s->dead_owed, s->dead_reason, s->dead_detail) ==
            AIRFSM_OUTBOX_STATUS_UNAVAILABLE) {
            online_store_unavailable(ctl, AIRFSM_OUTBOX_CALL_DEAD_LETTER);
            return false;
        }
        s->dead_owed = NO_ID;
        online_store_worked(ctl);
    }
    return true;
}

/* Twin: online._finish_head(): the head is done with; the next message starts afresh. */
static void online_finish_head(airfsm_t *ctl)
{
    airfsm_session_t *s = &ctl->session;
    s->pub_phase = PUB_NONE;
    s->has_pub_message = false;
    s->pub_sends = 0;
    s->attempt_of = NO_ID;
    s->pub_failures = 0;
    s->pub_holding = false;
    s->last_failure = AIRFSM_REASON_NONE;
    s->last_failure_detail = 0;
}

/* Twin: online._acked(): delivered; the store deletes it in settle_outbox. */
static void online_acked(airfsm_t *ctl, uint32_t id, uint8_t qos)
{
    ctl->counters.publish_acked++;
    airfsm_log(ctl, AIRFSM_LOG_INFO, AIRFSM_LOG_EVENT_PUBLISH_ACKED, (int32_t)id, qos, 0, NULL,
               0);
    ctl->session.ack_owed = id;
    online_finish_head(ctl);
}

/* Twin: online.dead_letter(): give up on the message; the rest of the queue flows on. */
static void online_dead_letter(airfsm_t *ctl, const airfsm_message_t *message,
                               airfsm_reason_t why, int32_t detail)
{
    airfsm_session_t *s = &ctl->session;
    s->dead_owed = message->id;
    s->dead_reason = why;
    s->dead_detail = detail;
    airfsm_log(ctl, AIRFSM_LOG_WARNING, AIRFSM_LOG_EVENT_PUBLISH_DEAD, (int32_t)message->id,
               (int32_t)message->attempts, 0, message->topic, message->topic_len);
    ctl->counters.publish_dead++;
    if (s->has_pub_message && s->pub_message_id == message->id && s->pub_sends) {
        /* Its OK'd sends may still be acknowledged late: keep that PUBACK from the next one. */
        s->stale_pubacks = s->pub_sends;
        s->stale_until = ms_add(ctl->now_ms, ctl->settings.puback_timeout_ms);
    }
    online_finish_head(ctl);
    (void)online_settle_outbox(ctl);
}

/* Twin: online.publish_failed(). */
void online_publish_failed(airfsm_t *ctl, airfsm_reason_t why, int32_t detail)
{
    airfsm_session_t *s = &ctl->session;
    const airfsm_settings_t *settings = &ctl->settings;
    bool budget_left = true;

    s->pub_failures++;
    if (s->attempt_of != NO_ID) {
        s->last_failure = why;
        s->last_failure_detail = detail;
        airfsm_log(ctl, AIRFSM_LOG_INFO, AIRFSM_LOG_EVENT_PUBLISH_FAILED, (int32_t)s->attempt_of,
                   (int32_t)s->attempt_no, (int32_t)settings->publish_attempts, NULL, 0);
        budget_left = s->attempt_no < settings->publish_attempts;
        s->attempt_of = NO_ID;
    }
    if (budget_left) {
        uint32_t delay = backoff_ms(s->pub_failures, settings->publish_backoff_base_ms,
                                    settings->publish_backoff_cap_ms, &ctl->rng);
        s->pub_holding = true;
        s->pub_hold_until = ms_add(ctl->now_ms, delay);
    }
}

/* Twin: online._unsendable(): why AT+MPUB cannot carry the message, from put_mpub's refusal. */
static airfsm_reason_t online_unsendable(const airfsm_message_t *message, int32_t refusal,
                                         int32_t *detail)
{
    if (refusal == PAYLOAD_MPUB_BAD_TOPIC) {
        *detail = (int32_t)message->topic_len;
        return AIRFSM_REASON_BAD_TOPIC;
    }
    if (refusal == PAYLOAD_MPUB_BAD_QOS) {
        *detail = message->qos;
        return AIRFSM_REASON_BAD_QOS;
    }
    *detail = (int32_t)message->payload_len;
    return AIRFSM_REASON_PAYLOAD_UNSENDABLE;
}

/* Twin: online._start_attempt(): count a new attempt in the store before anything is sent. */
static bool online_start_attempt(airfsm_t *ctl, const airfsm_message_t *message)
{
    airfsm_session_t *s = &ctl->session;
    uint32_t attempts = 0;

    if (message->attempts >= ctl->settings.publish_attempts) {
        online_dead_letter(ctl, message, s->last_failure, s->last_failure_detail);
        return false;
    }
    if (outbox_mark_attempt(&ctl->outbox, message->id, &attempts) ==
        AIRFSM_OUTBOX_STATUS_UNAVAILABLE) {
        online_store_unavailable(ctl, AIRFSM_OUTBOX_CALL_MARK_ATTEMPT);
        return false;
    }
    online_store_worked(ctl);
    if (attempts == 0) {
        return false; /* gone meanwhile (an operator's doing): look at the new head next time */
    }
    s->attempt_of = message->id;
    s->attempt_no = attempts;
    return true;
}

/* Twin: online._publish_head(): start or continue an attempt at the outbox head. */
static void online_publish_head(airfsm_t *ctl)
{
    airfsm_session_t *s = &ctl->session;
    airfsm_message_t message;
    airfsm_outbox_status_t status = outbox_peek(&ctl->outbox, &message);
    bool have = status == AIRFSM_OUTBOX_STATUS_OK, want_hex;
    int32_t n;

    if (status == AIRFSM_OUTBOX_STATUS_UNAVAILABLE) {
        online_store_unavailable(ctl, AIRFSM_OUTBOX_CALL_PEEK);
        return;
    }
    if (have && s->attempt_of != message.id && !online_start_attempt(ctl, &message)) {
        return;
    }
    want_hex = have && payload_form(message.payload, message.payload_len, true) ==
                           PAYLOAD_FORM_HEX;
    if (want_hex != s->module_hex) {
        airfsm_send_step(ctl, want_hex ? &airfsm_online_hex_mode : &airfsm_online_text_mode,
                         AIRFSM_PURPOSE_MODE, 0);
        return;
    }
    if (!have) {
        return;
    }
    n = payload_put_mpub(ctl->cmd_buf, sizeof ctl->cmd_buf, message.topic, message.topic_len,
                         message.payload, message.payload_len, message.qos, s->module_hex);
    if (n < 0) { /* refused at enqueue time normally: keep it, let others pass */
        int32_t detail;
        airfsm_reason_t why = online_unsendable(&message, n, &detail);
        online_dead_letter(ctl, &message, why, detail);
        return;
    }
    if (!s->has_pub_message || s->pub_message_id != message.id) {
        s->has_pub_message = true;
        s->pub_message_id = message.id;
        s->pub_message_qos = message.qos;
        s->pub_sends = 0;
    }
    if (s->attempt_no > 1) {
        ctl->counters.publish_retried++;
    }
    s->pub_phase = PUB_WAIT_OK;
    ctl->counters.publish_sent++;
    airfsm_log(ctl, AIRFSM_LOG_INFO, AIRFSM_LOG_EVENT_PUBLISH_SENT, (int32_t)message.id,
               (int32_t)s->attempt_no, (int32_t)ctl->settings.publish_attempts, message.topic,
               message.topic_len);
    airfsm_send_command(ctl, (size_t)n, ctl->settings.publish_timeout_ms, AIRFSM_PURPOSE_PUBLISH);
}

/* Twin: online._keepalive_needed(): firmware before V838 sends no PINGREQ. */
static bool online_keepalive_needed(const airfsm_t *ctl)
{
    return ctl->firmware_version < (int32_t)AIRFSM_FIRMWARE_HEARTBEAT;
}

/* Twin: online._keepalive_interval_ms(). */
static uint32_t online_keepalive_interval_ms(const airfsm_t *ctl)
{
    return ctl->settings.keepalive_s * 1000u * AIRFSM_KEEPALIVE_FRACTION_NUM /
           AIRFSM_KEEPALIVE_FRACTION_DEN;
}

/* Twin: online._upkeep_deadline(): when an old firmware's keepalive is next due (false: not). */
static bool online_upkeep_deadline(const airfsm_t *ctl, uint32_t *at)
{
    const airfsm_session_t *s = &ctl->session;
    if (online_keepalive_needed(ctl) && s->keepalive_phase == KEEPALIVE_NONE && !ctl->stopping) {
        *at = ms_add(s->proof_at, online_keepalive_interval_ms(ctl));
        return true;
    }
    return false;
}

/* Twin: online._advance_upkeep(): read a cached message, keep an old firmware's session alive. */
static bool online_advance_upkeep(airfsm_t *ctl)
{
    airfsm_session_t *s = &ctl->session;

    if (ctl->stopping) {
        return false;
    }
    if (s->cache_pending) {
        s->cache_pending = false;
        airfsm_send_step(ctl, &airfsm_online_msgget, AIRFSM_PURPOSE_CACHE_READ, 0);
        return true;
    }
    if (!online_keepalive_needed(ctl) || s->keepalive_phase != KEEPALIVE_NONE) {
        return false;
    }
    if (ms_diff(ctl->now_ms, s->proof_at) < (int32_t)online_keepalive_interval_ms(ctl)) {
        return false;
    }
    ctl->counters.keepalives++;
    s->keepalive_phase = KEEPALIVE_WAIT_OK;
    s->keepalive_acked = false;
    airfsm_send_step(ctl, &airfsm_online_keepalive, AIRFSM_PURPOSE_KEEPALIVE, s->keepalive_topic);
    s->keepalive_topic = (uint8_t)((s->keepalive_topic + 1u) % ctl->n_subscriptions);
    return true;
}

/* Twin: online.advance(). */
void online_advance(airfsm_t *ctl)
{
    airfsm_session_t *s = &ctl->session;
    uint32_t now = ctl->now_ms;

    if (ctl->escalations && airfsm_state_age_ms(ctl) >= ctl->settings.liveness_ms) {
        ctl->escalations = 0; /* ONLINE has held for a while: the link is good again */
    }
    if (s->pub_phase == PUB_WAIT_PUBACK && ms_reached(now, s->pub_deadline)) {
        /* The PUBACK may still come late; on_puback copes with that. */
        ctl->counters.timeouts++;
        s->pub_phase = PUB_NONE;
        online_publish_failed(ctl, AIRFSM_REASON_NO_PUBACK,
                              (int32_t)ctl->settings.puback_timeout_ms);
        s->probe_due = true;
    }
    if (s->probe_due || ms_reached(now, s->next_probe_at)) {
        s->probe_due = false;
        s->next_probe_at = ms_add(now, ctl->settings.liveness_ms);
        ctl->counters.probes++;
        s->signal_due = true;
        airfsm_send_step(ctl, &airfsm_online_probe, AIRFSM_PURPOSE_PROBE, 0);
        return;
    }
    if (online_advance_upkeep(ctl)) {
        return;
    }
    if (s->signal_due && !ctl->stopping) {
        s->signal_due = false;
        airfsm_send_step(ctl, &airfsm_online_signal, AIRFSM_PURPOSE_SIGNAL, 0);
        return;
    }
    if (s->pub_phase != PUB_NONE) {
        return;
    }
    if (s->stale_pubacks) {
        /* A PUBACK owed to the previous message may still come: wait until it comes or can no
         * longer come, or it would be taken for this message's. */
        if (!ms_reached(now, s->stale_until)) {
            return;
        }
        s->stale_pubacks = 0;
    }
    if (ctl->stopping) {
        airfsm_send_step(ctl, &airfsm_online_disconnect, AIRFSM_PURPOSE_STOP, 0);
        return;
    }
    if (s->pub_holding || s->store_holding) {
        return; /* backing off: after a failed attempt, or from a store that refused */
    }
    if (!online_settle_outbox(ctl)) {
        return; /* a write is still owed to the store */
    }
    online_publish_head(ctl);
}

/* Twin: online.check_deadlines(). */
void online_check_deadlines(airfsm_t *ctl)
{
    airfsm_session_t *s = &ctl->session;
    uint32_t now = ctl->now_ms;

    /* Backoffs end here, every tick, so a long quiet spell never wraps the 32-bit difference. */
    if (s->pub_holding && ms_reached(now, s->pub_hold_until)) {
        s->pub_holding = false;
    }
    if (s->store_holding && ms_reached(now, s->store_hold_until)) {
        s->store_holding = false;
    }
    if (ctl->state == AIRFSM_STATE_ONLINE && s->keepalive_phase == KEEPALIVE_WAIT_SUBACK &&
        ms_reached(now, s->keepalive_deadline)) {
        /* The firmware would not tell us (no CLOSED before V838): the server has gone. */
        ctl->counters.timeouts++;
        s->keepalive_phase = KEEPALIVE_NONE;
        airfsm_log(ctl, AIRFSM_LOG_WARNING, AIRFSM_LOG_EVENT_KEEPALIVE_UNANSWERED,
                   (int32_t)airfsm_online_keepalive.urc_timeout_ms, 0, 0, NULL, 0);
        airfsm_raise_link(ctl, AIRFSM_TRIGGER_MQTT_LOST);
    }
}

/* Twin: `deadline = ms_earliest(deadline, t)`, into (has, deadline). */
static void online_earliest(bool *has, uint32_t *deadline, uint32_t t)
{
    *has = ms_earliest(*has, *deadline, true, t, deadline);
}

/* Twin: online.watch_deadline(). */
void online_watch_deadline(const airfsm_t *ctl, bool *has, uint32_t *deadline)
{
    const airfsm_session_t *s = &ctl->session;
    if (s->ack_owed != NO_ID || s->dead_owed != NO_ID) {
        online_earliest(has, deadline, s->store_holding ? s->store_hold_until : ctl->now_ms);
    }
    if (ctl->state == AIRFSM_STATE_ONLINE && s->keepalive_phase == KEEPALIVE_WAIT_SUBACK) {
        online_earliest(has, deadline, s->keepalive_deadline);
    }
}

/* Twin: online.send_deadline(). */
void online_send_deadline(const airfsm_t *ctl, bool *has, uint32_t *deadline)
{
    const airfsm_session_t *s = &ctl->session;
    uint32_t upkeep;

    if (s->store_holding) {
        online_earliest(has, deadline, s->store_hold_until);
    }
    online_earliest(has, deadline, s->next_probe_at);
    if (online_upkeep_deadline(ctl, &upkeep)) {
        online_earliest(has, deadline, upkeep);
    }
    if (s->pub_holding) {
        online_earliest(has, deadline, s->pub_hold_until);
    }
    if (s->pub_phase == PUB_WAIT_PUBACK) {
        online_earliest(has, deadline, s->pub_deadline);
    }
    if (s->stale_pubacks) {
        online_earliest(has, deadline, s->stale_until);
    }
    if (ctl->settings.outbox_poll_ms) {
        online_earliest(has, deadline, ms_add(ctl->now_ms, ctl->settings.outbox_poll_ms));
    }
}

/* Twin: online.reset(). */
void online_reset(airfsm_t *ctl)
{
    airfsm_session_t *s = &ctl->session;
    if (s->attempt_of != NO_ID) {
        /* Counted against the message's budget like any failed attempt, so a message that
         * makes the broker drop the session cannot cause endless reconnects. */
        online_publish_failed(ctl, AIRFSM_REASON_SESSION_ENDED, 0);
    }
    s->pub_phase = PUB_NONE;
    s->has_pub_message = false;
    s->pub_sends = 0;
    s->stale_pubacks = 0;
    s->probe_due = false;
    s->signal_due = false;
    s->silence = 0;
    s->proof_at = ctl->now_ms;
    s->keepalive_phase = KEEPALIVE_NONE;
    s->keepalive_acked = false;
}

/* Twin: online.module_restarted(). */
void online_module_restarted(airfsm_t *ctl)
{
    ctl->session.module_hex = false;
    ctl->session.cache_pending = false;
}

/* Twin: online._on_timeout_or_error(): probe; too much silence: reconnect. */
static void online_on_timeout_or_error(airfsm_t *ctl, const at_response_t *resp)
{
    airfsm_session_t *s = &ctl->session;
    if (resp->result == AIRFSM_AT_RESULT_TIMEOUT) {
        s->silence++;
        if (s->silence >= ctl->settings.silence_limit) {
            airfsm_log(ctl, AIRFSM_LOG_WARNING, AIRFSM_LOG_EVENT_MODULE_SILENT,
                       (int32_t)s->silence, 0, 0, NULL, 0);
            airfsm_raise_link(ctl, AIRFSM_TRIGGER_MQTT_LOST);
            return;
        }
    }
    s->probe_due = true;
}

/* Twin: online.on_publish_response(). */
void online_on_publish_response(airfsm_t *ctl, const at_response_t *resp)
{
    airfsm_session_t *s = &ctl->session;
    airfsm_reason_t why;
    int32_t detail;

    if (ctl->state != AIRFSM_STATE_ONLINE || !s->has_pub_message) {
        return;
    }
    if (resp->result != AIRFSM_AT_RESULT_OK) {
        /* Almost always the link, not the message: back off and probe; never delete it. */
        s->pub_phase = PUB_NONE;
        why = judge_answer_reason(resp, AIRFSM_REASON_MPUB_UNANSWERED, AIRFSM_REASON_MPUB_ERROR,
                                  AIRFSM_REASON_MPUB_CME_ERROR, &detail);
        online_publish_failed(ctl, why, detail);
        online_on_timeout_or_error(ctl, resp);
        return;
    }
    if (s->pub_message_qos == 0) {
        online_acked(ctl, s->pub_message_id, 0);
        return;
    }
    s->pub_sends++;
    s->pub_phase = PUB_WAIT_PUBACK;
    s->pub_deadline = ms_add(ctl->now_ms, ctl->settings.puback_timeout_ms);
}

/* Twin: online.on_mode_response(). */
void online_on_mode_response(airfsm_t *ctl, const at_response_t *resp)
{
    airfsm_session_t *s = &ctl->session;
    airfsm_reason_t why;
    int32_t detail;

    if (resp->result == AIRFSM_AT_RESULT_OK) {
        s->module_hex = !s->module_hex;
        return;
    }
    airfsm_log(ctl, AIRFSM_LOG_WARNING, AIRFSM_LOG_EVENT_MQTT_MODE_REFUSED, (int32_t)resp->result,
               resp->cme_error, (int32_t)(s->pub_failures + 1), NULL, 0);
    if (s->module_hex) {
        why = judge_answer_reason(resp, AIRFSM_REASON_TEXT_MODE_UNANSWERED,
                                  AIRFSM_REASON_TEXT_MODE_ERROR,
                                  AIRFSM_REASON_TEXT_MODE_CME_ERROR, &detail);
    } else {
        why = judge_answer_reason(resp, AIRFSM_REASON_HEX_MODE_UNANSWERED,
                                  AIRFSM_REASON_HEX_MODE_ERROR, AIRFSM_REASON_HEX_MODE_CME_ERROR,
                                  &detail);
    }
    online_publish_failed(ctl, why, detail);
    online_on_timeout_or_error(ctl, resp);
}

/* Twin: online.on_puback(): AT+MPUB carries no packet id, so be conservative. */
void online_on_puback(airfsm_t *ctl)
{
    airfsm_session_t *s = &ctl->session;

    s->proof_at = ctl->now_ms;
    if (s->stale_pubacks > 0) {
        /* Owed to a message already acknowledged, which had been sent more than once. */
        s->stale_pubacks--;
        ctl->counters.pubacks_ignored++;
        return;
    }
    if (!s->has_pub_message || s->pub_message_qos != 1 || s->pub_sends == 0) {
        ctl->counters.pubacks_ignored++;
        return;
    }
    /* Any one PUBACK proves the message arrived; hold the next one back until the PUBACKs its
     * other sends still owe come or their deadline passes. */
    s->stale_pubacks = s->pub_sends - 1;
    s->stale_until = ms_add(ctl->now_ms, ctl->settings.puback_timeout_ms);
    online_acked(ctl, s->pub_message_id, s->pub_message_qos);
}

/* Twin: online.on_probe_response(). */
void online_on_probe_response(airfsm_t *ctl, const at_response_t *resp)
{
    int32_t status;

    if (ctl->state != AIRFSM_STATE_ONLINE) {
        return;
    }
    if (resp->result == AIRFSM_AT_RESULT_TIMEOUT) {
        online_on_timeout_or_error(ctl, resp);
        return;
    }
    status = judge_mqtt_status(resp);
    if (status != 1) {
        airfsm_log(ctl, AIRFSM_LOG_INFO, AIRFSM_LOG_EVENT_PROBE, status, 0, 0, NULL, 0);
        airfsm_raise_link(ctl, AIRFSM_TRIGGER_MQTT_LOST);
    }
}

/* Twin: online.on_signal_response(). */
void online_on_signal_response(airfsm_t *ctl, const at_response_t *resp)
{
    if (ctl->state != AIRFSM_STATE_ONLINE) {
        return;
    }
    if (resp->result == AIRFSM_AT_RESULT_OK) {
        airfsm_take_signal(ctl, judge_signal(resp));
    } else if (resp->result == AIRFSM_AT_RESULT_TIMEOUT) {
        online_on_timeout_or_error(ctl, resp);
    }
}

/* Twin: online.on_answered(). */
void online_on_answered(airfsm_t *ctl)
{
    ctl->session.silence = 0;
}

/* Twin: online.cache_notice(). */
void online_cache_notice(airfsm_t *ctl, int slot)
{
    ctl->counters.downlinks_cached++;
    airfsm_log(ctl, AIRFSM_LOG_INFO, AIRFSM_LOG_EVENT_DOWNLINK_CACHED, slot, 0, 0, NULL, 0);
    ctl->session.cache_pending = true;
}

/* Twin: online.on_keepalive_response(). */
void online_on_keepalive_response(airfsm_t *ctl, const at_response_t *resp)
{
    airfsm_session_t *s = &ctl->session;

    if (ctl->state != AIRFSM_STATE_ONLINE || s->keepalive_phase != KEEPALIVE_WAIT_OK) {
        return;
    }
    if (resp->result == AIRFSM_AT_RESULT_OK) {
        if (s->keepalive_acked) {
            online_on_suback(ctl);
            return;
        }
        s->keepalive_phase = KEEPALIVE_WAIT_SUBACK;
        s->keepalive_deadline = ms_add(ctl->now_ms, airfsm_online_keepalive.urc_timeout_ms);
        return;
    }
    s->keepalive_phase = KEEPALIVE_NONE;
    if (resp->result == AIRFSM_AT_RESULT_TIMEOUT) {
        online_on_timeout_or_error(ctl, resp);
        return;
    }
    /* The module will not even send SUBSCRIBE: there is no session to keep. */
    airfsm_log(ctl, AIRFSM_LOG_WARNING, AIRFSM_LOG_EVENT_KEEPALIVE_REFUSED, (int32_t)resp->result,
               resp->cme_error, 0, NULL, 0);
    airfsm_raise_link(ctl, AIRFSM_TRIGGER_MQTT_LOST);
}

/* Twin: online.suback_awaited(). */
bool online_suback_awaited(const airfsm_t *ctl)
{
    return ctl->session.keepalive_phase != KEEPALIVE_NONE;
}

/* Twin: online.on_suback(). */
void online_on_suback(airfsm_t *ctl)
{
    airfsm_session_t *s = &ctl->session;
    if (s->keepalive_phase == KEEPALIVE_WAIT_OK) {
        s->keepalive_acked = true; /* the SUBACK overtook the OK */
        return;
    }
    s->keepalive_phase = KEEPALIVE_NONE;
    s->proof_at = ctl->now_ms;
}

/* Twin: online.on_cache_read_response(). */
void online_on_cache_read_response(airfsm_t *ctl, const at_response_t *resp)
{
    if (ctl->state == AIRFSM_STATE_ONLINE && resp->result != AIRFSM_AT_RESULT_OK) {
        airfsm_log(ctl, AIRFSM_LOG_WARNING, AIRFSM_LOG_EVENT_CACHE_READ_FAILED,
                   (int32_t)resp->result, resp->cme_error, 0, NULL, 0);
        online_on_timeout_or_error(ctl, resp);
    }
}
