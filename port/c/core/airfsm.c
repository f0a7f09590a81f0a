/* airfsm.c: the controller: one airfsm_tick() that runs the machine of the generated table.
 * Python twin: airfsm/core/controller.py; every function names its twin (static ones come
 * before their first caller, as C wants, so the order differs from the Python's).
 *
 * A tick reads what the UART has, feeds the AT channel, lets the channel's callbacks record what
 * happened (a step's answer, a wanted URC, a link-loss URC), turns that into at most one machine
 * event, starts the next command if the channel is idle, and returns the next deadline. Nothing
 * in here blocks or allocates. The machine is the generated airfsm_next[state][trigger] (the
 * Python drives a shared `transitions` Machine built from the same table).
 *
 * Reading order for a newcomer: airfsm_tick -> airfsm_process (apply what callbacks recorded) ->
 * airfsm_advance (send what is due) -> airfsm_on_response / airfsm_on_urc (the callbacks) ->
 * judge.c (the per-check switch) -> airfsm_enter (what entering a state resets) -> online.c
 * (the ONLINE publish / probe / keepalive loop).
 */
#include <string.h>

#include "airfsm_internal.h"
#include "judge.h"
#include "online.h"
#include "textparse.h"

#define AGE_MAX_MS 0x7FFFFFFFu /* controller.AGE_MAX_MS: 2^31-1 ms, about 24.8 days */

/* --- small helpers ---------------------------------------------------------------------------- */

/* Twin: controller.age_ms(). */
uint32_t airfsm_age_ms(uint32_t now_ms, uint32_t since_ms, bool saturated)
{
    uint32_t age = now_ms - since_ms;
    if (saturated) {
        return AGE_MAX_MS;
    }
    return age < AGE_MAX_MS ? age : AGE_MAX_MS;
}

/* Twin: Controller.wants(). */
bool airfsm_wants(const airfsm_t *ctl, airfsm_log_level_t level)
{
    return ctl->hooks.log != NULL && (int)level >= ctl->hooks.log_level;
}

/* Twin: Controller.log(). */
void airfsm_log(const airfsm_t *ctl, airfsm_log_level_t level, airfsm_log_event_t event,
                int32_t a, int32_t b, int32_t c, const uint8_t *data, size_t len)
{
    if (airfsm_wants(ctl, level)) {
        ctl->hooks.log(ctl->hooks.user, ctl, level, event, a, b, c, data, len);
    }
}

/* Twin: Controller.emit_secret(): whatever the level. */
void airfsm_emit_secret(const airfsm_t *ctl, const char *secret, bool lasting)
{
    if (ctl->hooks.log != NULL) {
        ctl->hooks.log(ctl->hooks.user, ctl, AIRFSM_LOG_ERROR, AIRFSM_LOG_EVENT_SECRET,
                       lasting ? 1 : 0, 0, 0, (const uint8_t *)secret, strlen(secret));
    }
}

/* Twin: `self.values[p] = text` (bytes). */
static void airfsm_set_text(airfsm_t *ctl, airfsm_placeholder_t p, const char *text)
{
    ctl->values[p].text = (const uint8_t *)text;
    ctl->values[p].len = strlen(text);
    ctl->values[p].is_number = false;
}

/* Twin: `self.values[p] = number` (an int). */
static void airfsm_set_number(airfsm_t *ctl, airfsm_placeholder_t p, uint32_t number)
{
    ctl->values[p].number = number;
    ctl->values[p].is_number = true;
}

/* Twin: the f-strings of aliyun.auth_url, mqtt_host, topic_get: `text` appended at out[*n]
 * within cap (NUL kept). */
static void airfsm_append(char *out, size_t cap, size_t *n, const char *text)
{
    size_t len = strlen(text);
    if (*n + len >= cap) {
        len = cap - 1 - *n;
    }
    memcpy(out + *n, text, len);
    *n += len;
    out[*n] = '\0';
}

/* Twin: DeviceIdentity.region ("" in the settings: aliyun.DEFAULT_REGION). */
static const char *airfsm_region(const airfsm_t *ctl)
{
    return ctl->settings.region[0] != '\0' ? ctl->settings.region : ALIYUN_DEFAULT_REGION;
}

/* Twin: Controller._identity(): the settings' identity, as aliyun.h takes it, with the
 * DeviceSecret signs are made with now (the one PROVISION earned, if it did). */
static aliyun_identity_t airfsm_identity(const airfsm_t *ctl)
{
    aliyun_identity_t identity;
    identity.product_key = ctl->settings.product_key;
    identity.device_name = ctl->settings.device_name;
    identity.device_secret = ctl->auth.device_secret;
    identity.region = airfsm_region(ctl);
    identity.client_id = ctl->settings.client_id;
    identity.product_secret = ctl->settings.product_secret;
    identity.instance_id = ctl->settings.instance_id;
    return identity;
}

/* Twin: Controller.signs_directly: the direct MQTT sign, not the HTTPS pre-auth. */
static bool airfsm_signs_directly(const airfsm_t *ctl)
{
    return ctl->settings.auth_mode == AIRFSM_AUTH_MODE_MQTT_SIGN;
}

/* Twin: table.expand(): write the command into out; its length, or -1 (EXPAND_FAILED) when a
 * value is over its placeholder's bound or the command would leave no byte for its CR. */
static int32_t table_expand(const airfsm_template_t *command, const airfsm_value_t *values,
                             uint8_t *out, size_t cap)
{
    size_t room = cap - 1, n = 0, k;

    for (k = 0; k < command->n_pieces; k++) {
        const airfsm_piece_t *piece = &command->pieces[k];
        const uint8_t *text;
        size_t len;
        if (piece->text == NULL) {
            const airfsm_value_t *value = &values[piece->placeholder];
            size_t bound = airfsm_placeholder_max[piece->placeholder];
            if (value->is_number) {
                size_t limit = n + bound < room ? n + bound : room;
                int32_t end = textparse_put_uint(out, cap, n, value->number, limit);
                if (end < 0) {
                    return -1;
                }
                n = (size_t)end;
                continue;
            }
            if (value->len > bound) {
                return -1;
            }
            text = value->text;
            len = value->len;
        } else {
            text = (const uint8_t *)piece->text;
            len = piece->len;
        }
        if (n + len > room) {
            return -1;
        }
        if (len > 0) {
            memcpy(out + n, text, len);
        }
        n += len;
    }
    return (int32_t)n;
}

/* Twin: Controller.step(): the current step (NULL in ONLINE and FAILED, and past the last). */
static const airfsm_step_t *airfsm_step(const airfsm_t *ctl)
{
    const airfsm_state_spec_t *spec = &airfsm_machine[ctl->state];
    if (ctl->state == AIRFSM_STATE_ONLINE || ctl->runner.index >= spec->n_steps) {
        return NULL;
    }
    return &spec->steps[ctl->runner.index];
}

/* Twin: `(state, trigger) in self.edges`. */
static bool airfsm_has_edge(const airfsm_t *ctl, airfsm_trigger_t trigger)
{
    return airfsm_next[ctl->state][trigger].dest != AIRFSM_NO_STATE;
}

/* Twin: `urc in ids` of a step's URC rows. */
static bool airfsm_urc_in(const uint8_t *ids, uint8_t n, int urc)
{
    uint8_t k;
    for (k = 0; k < n; k++) {
        if ((int)ids[k] == urc) {
            return true;
        }
    }
    return false;
}

/* --- port I/O --------------------------------------------------------------------------------- */

/* Twin: Controller._lose_port(). */
static void airfsm_lose_port(airfsm_t *ctl)
{
    ctl->port_lost = true;
    airfsm_log(ctl, AIRFSM_LOG_WARNING, AIRFSM_LOG_EVENT_PORT_LOST, 0, 0, 0, NULL, 0);
}

/* Twin: Controller._write() (the channel's write callback). */
static void airfsm_write(void *context, const uint8_t *buf, size_t len)
{
    airfsm_t *ctl = context;
    if (ctl->port_lost) {
        return;
    }
    if (ctl->hal.uart_write(ctl->hal.ctx, buf, len) == HAL_PORT_LOST) {
        airfsm_lose_port(ctl);
    }
}

/* Twin: Controller._read_port(): feed the channel a chunk at a time, at most
 * AIRFSM_MAX_READ_PER_TICK bytes a tick. */
static void airfsm_read_port(airfsm_t *ctl)
{
    size_t total = 0;

    if (ctl->port_lost) {
        return;
    }
    while (total < AIRFSM_MAX_READ_PER_TICK) {
        int32_t n = ctl->hal.uart_read(ctl->hal.ctx, ctl->read_buf, sizeof ctl->read_buf);
        if (n == HAL_PORT_LOST) {
            airfsm_lose_port(ctl);
            return;
        }
        if (n <= 0) {
            return;
        }
        total += (size_t)n;
        at_feed(&ctl->channel, ctl->read_buf, (size_t)n, ctl->now_ms);
    }
}

/* --- sending ---------------------------------------------------------------------------------- */

/* Twin: Controller._send(): the command in cmd_buf[:length]. A command that did not fit
 * (length < 0) is handed over at the buffer's full length: the channel refuses it whole,
 * answering ERROR as a module answers a bad command. */
static void airfsm_send(airfsm_t *ctl, int32_t length, uint32_t timeout_ms,
                        airfsm_purpose_t purpose, bool prompt, bool final_urc)
{
    size_t n = length < 0 ? sizeof ctl->cmd_buf : (size_t)length;
    ctl->purpose = purpose;
    airfsm_log(ctl, AIRFSM_LOG_DEBUG, AIRFSM_LOG_EVENT_AT_TX, 0, 0, 0, ctl->cmd_buf, n);
    at_send(&ctl->channel, ctl->cmd_buf, sizeof ctl->cmd_buf, n, ctl->now_ms, timeout_ms, prompt,
            final_urc);
}

/* Twin: Controller.send_step(). */
void airfsm_send_step(airfsm_t *ctl, const airfsm_step_t *step, airfsm_purpose_t purpose,
                      uint8_t topic)
{
    if (step->per_topic) {
        airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_SUB_TOPIC, ctl->subscriptions[topic]);
    }
    if (purpose == AIRFSM_PURPOSE_STEP) {
        ctl->runner.urc_seen = AT_URC_NONE;
        ctl->runner.phase = PHASE_WAIT_FINAL;
    }
    if (step->prompt) {
        ctl->runner.body_timeout_ms = step->timeout_ms;
    }
    /* A step that waits for a bare final code as its URC (AT+MCONNECT: OK, then ERROR when
     * refused) asks the channel to pass that code on rather than count it stray. */
    airfsm_send(ctl, table_expand(&step->command, ctl->values, ctl->cmd_buf, sizeof ctl->cmd_buf),
                step->timeout_ms, purpose, step->prompt, step->urc_is_final);
}

/* Twin: Controller.send_command(). */
void airfsm_send_command(airfsm_t *ctl, size_t length, uint32_t timeout_ms,
                         airfsm_purpose_t purpose)
{
    airfsm_send(ctl, (int32_t)length, timeout_ms, purpose, false, false);
}

/* Twin: Controller._set_mqtt_endpoint(): the settings', else the auth reply's, else the
 * region's default. */
static void airfsm_set_mqtt_endpoint(airfsm_t *ctl)
{
    const airfsm_settings_t *s = &ctl->settings;
    const char *host = s->mqtt_host[0] != '\0'        ? s->mqtt_host
                       : ctl->auth.reply_host[0] != '\0' ? ctl->auth.reply_host
                                                        : ctl->default_host;
    uint32_t port = s->mqtt_port ? s->mqtt_port
                    : ctl->auth.reply_port ? ctl->auth.reply_port
                                           : ALIYUN_MQTT_PORT;
    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_MQTT_HOST, host);
    airfsm_set_number(ctl, AIRFSM_PLACEHOLDER_MQTT_PORT, port);
}

/* Twin: Controller._init_values(): the placeholders that come from the settings. */
static void airfsm_init_values(airfsm_t *ctl)
{
    const airfsm_settings_t *s = &ctl->settings;
    aliyun_identity_t identity = airfsm_identity(ctl);

    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_APN, s->apn);
    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_AUTH_URL, ctl->auth_url);
    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_REGISTER_URL, ctl->register_url);
    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_CONTENT_TYPE, airfsm_content_type.text);
    airfsm_set_number(ctl, AIRFSM_PLACEHOLDER_BODY_LEN, 0);
    airfsm_set_number(ctl, AIRFSM_PLACEHOLDER_BODY_WINDOW_MS, s->body_window_ms);
    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_CLIENT_ID, aliyun_client_id(&identity));
    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_IOT_ID, ctl->auth.iot_id);
    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_IOT_TOKEN, ctl->auth.iot_token);
    airfsm_set_number(ctl, AIRFSM_PLACEHOLDER_KEEPALIVE_S, s->keepalive_s);
    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_SUB_TOPIC, ctl->subscriptions[0]);
    airfsm_set_number(ctl, AIRFSM_PLACEHOLDER_SUB_QOS, s->sub_qos);
    airfsm_set_mqtt_endpoint(ctl);
}

/* Twin: Controller.wall_clock(): the HAL's wall clock (Unix ms) for a sign's timestamp; false
 * without one, or while it knows no time (0). */
static bool airfsm_wall_clock(const airfsm_t *ctl, uint64_t *now)
{
    if (ctl->hal.wall_clock_ms == NULL) {
        return false;
    }
    *now = ctl->hal.wall_clock_ms(ctl->hal.ctx);
    return *now != 0;
}

/* Twin: Controller._load_body(): the form the next AT+HTTPDATA sends (it is in auth.body
 * already: its length is what the placeholder says). */
static void airfsm_load_body(airfsm_t *ctl, size_t len)
{
    ctl->auth.body_len = len; /* BODY_CAPACITY holds the longest form */
    airfsm_set_number(ctl, AIRFSM_PLACEHOLDER_BODY_LEN, (uint32_t)len);
}

/* Twin: Controller._prepare_auth(): a fresh auth body per HTTP_AUTH entry (one HMAC),
 * timestamped when the HAL knows the time and asking for resources=mqtt; its sign is a
 * secret. */
static void airfsm_prepare_auth(airfsm_t *ctl)
{
    aliyun_identity_t identity = airfsm_identity(ctl);
    aliyun_auth_params_t params;
    airfsm_credentials_t *auth = &ctl->auth;
    uint64_t timestamp = 0;
    bool timestamped = airfsm_wall_clock(ctl, &timestamp);
    size_t len = 0;

    if (aliyun_auth_params(&identity, ctl->settings.sign_method, timestamped ? &timestamp : NULL,
                           true, &params) == ALIYUN_OK) {
        airfsm_emit_secret(ctl, params.sign, false);
        if (aliyun_form_encode(params.params, params.count, (char *)auth->body,
                               sizeof auth->body, &len) != ALIYUN_OK) {
            len = 0;
        }
    }
    airfsm_load_body(ctl, len);
    auth->iot_id[0] = '\0';
    auth->iot_token[0] = '\0';
    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_IOT_ID, auth->iot_id);
    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_IOT_TOKEN, auth->iot_token);
}

/* Twin: Controller._prepare_register(): the register form of this PROVISION entry: a fresh
 * nonce (the jitter generator, the clock and the wall clock mixed: the server wants it random,
 * not secret), signed with the ProductSecret; the sign is a secret. */
static void airfsm_prepare_register(airfsm_t *ctl)
{
    aliyun_identity_t identity = airfsm_identity(ctl);
    char sign[ALIYUN_SIGN_HEX_SIZE];
    uint64_t high = xorshift32_next(&ctl->rng); /* drawn in the Python's order */
    uint64_t low = xorshift32_next(&ctl->rng) ^ ctl->now_ms;
    uint64_t wall = 0;
    size_t len = 0;

    if (!airfsm_wall_clock(ctl, &wall)) {
        wall = 0;
    }
    identity.device_secret = ctl->settings.device_secret; /* Python: settings.identity */
    if (aliyun_register_form(&identity, (high << 32 | low) ^ wall, ctl->settings.sign_method,
                             (char *)ctl->auth.body, sizeof ctl->auth.body, &len,
                             sign) == ALIYUN_OK) {
        airfsm_emit_secret(ctl, sign, false);
    } else {
        len = 0;
    }
    airfsm_load_body(ctl, len);
}

/* Twin: Controller._prepare_direct_sign(): the AT+MCONFIG triple of a direct-sign connect,
 * timestamped when the HAL knows the time; the password is a secret. */
static void airfsm_prepare_direct_sign(airfsm_t *ctl)
{
    aliyun_identity_t identity = airfsm_identity(ctl);
    airfsm_credentials_t *auth = &ctl->auth;
    aliyun_mqtt_sign_t *signed_triple = &ctl->reply.sign; /* work space, not the stack */
    uint64_t timestamp = 0;
    bool timestamped = airfsm_wall_clock(ctl, &timestamp);

    if (aliyun_mqtt_sign(&identity, ctl->settings.sign_method, timestamped ? &timestamp : NULL,
                         signed_triple) != ALIYUN_OK) {
        memset(signed_triple, 0, sizeof *signed_triple);
    }
    airfsm_emit_secret(ctl, signed_triple->password, false);
    memcpy(auth->iot_id, signed_triple->username, sizeof signed_triple->username);
    memcpy(auth->iot_token, signed_triple->password, sizeof signed_triple->password);
    memcpy(auth->client_id, signed_triple->client_id, sizeof auth->client_id);
    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_CLIENT_ID, auth->client_id);
    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_IOT_ID, auth->iot_id);
    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_IOT_TOKEN, auth->iot_token);
}

/* The registration's text for the log when no hook keeps the secret (Python's words). */
static const char NO_REGISTERED_HOOK[] =
    "no on_registered hook: the DeviceSecret is kept in memory only";

/* Twin: Controller.take_device_secret(): PROVISION passed (ctl->reply.reg): sign with this
 * DeviceSecret from now on, and hand it to the host to keep. */
void airfsm_take_device_secret(airfsm_t *ctl)
{
    const aliyun_register_reply_t *reply = &ctl->reply.reg;

    memcpy(ctl->auth.device_secret, reply->device_secret, sizeof ctl->auth.device_secret);
    ctl->auth.rejections = 0;
    if (ctl->hooks.on_registered == NULL) {
        airfsm_log(ctl, AIRFSM_LOG_WARNING, AIRFSM_LOG_EVENT_REGISTERED, 0, 0, 0,
                   (const uint8_t *)NO_REGISTERED_HOOK, sizeof NO_REGISTERED_HOOK - 1);
        return;
    }
    if (!ctl->hooks.on_registered(ctl->hooks.user, ctl->auth.device_secret)) {
        /* the host's failure to keep it: the device still connects now, but a restart would
         * find no secret (the C hook says no more than that it failed) */
        airfsm_log(ctl, AIRFSM_LOG_ERROR, AIRFSM_LOG_EVENT_REGISTERED, 0, 0, 0, NULL, 0);
        return;
    }
    airfsm_log(ctl, AIRFSM_LOG_INFO, AIRFSM_LOG_EVENT_REGISTERED, 1, 0, 0, NULL, 0);
}

/* Twin: Controller.take_credentials(): the auth passed (ctl->reply.auth): the credentials and
 * broker for MQTT_CONNECT. */
void airfsm_take_credentials(airfsm_t *ctl)
{
    airfsm_credentials_t *auth = &ctl->auth;
    const aliyun_auth_reply_t *reply = &ctl->reply.auth;

    memcpy(auth->iot_id, reply->iot_id, sizeof auth->iot_id);
    memcpy(auth->iot_token, reply->iot_token, sizeof auth->iot_token);
    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_IOT_ID, auth->iot_id);
    airfsm_set_text(ctl, AIRFSM_PLACEHOLDER_IOT_TOKEN, auth->iot_token);
    memcpy(auth->reply_host, reply->mqtt_host, sizeof auth->reply_host);
    auth->reply_port = reply->mqtt_port;
    airfsm_set_mqtt_endpoint(ctl);
    auth->token_at = ctl->now_ms;
    auth->token_stale = false;
    auth->rejections = 0;
}

/* Twin: Controller.take_signal(). */
void airfsm_take_signal(airfsm_t *ctl, int32_t rssi)
{
    ctl->rssi = rssi;
    ctl->signal_at = ctl->now_ms;
    ctl->signal_read = true;
    ctl->signal_age_saturated = false;
}

/* Twin: Controller.set_failure(). */
void airfsm_set_failure(airfsm_t *ctl, airfsm_fail_reason_t reason, airfsm_reason_t cause,
                        int32_t detail)
{
    ctl->fail_reason = reason;
    ctl->fail_cause = cause;
    ctl->fail_cause_detail = detail;
}

/* --- applying events -------------------------------------------------------------------------- */

/* Twin: Controller._wait(). */
static void airfsm_wait(airfsm_t *ctl, uint32_t delay_ms)
{
    ctl->runner.phase = PHASE_WAIT_UNTIL;
    ctl->runner.resume_at = ms_add(ctl->now_ms, delay_ms);
}

/* Twin: Controller._record(): a step's verdict, applied by airfsm_process. */
static void airfsm_record(airfsm_t *ctl, judge_t j)
{
    ctl->runner.outcome = (int8_t)j.outcome;
    ctl->runner.phase = PHASE_IDLE;
    if (j.outcome != AIRFSM_OUTCOME_PASS && j.reason != AIRFSM_REASON_NONE) {
        ctl->last_error.set = true;
        ctl->last_error.state = ctl->state;
        ctl->last_error.step = ctl->runner.index;
        ctl->last_error.reason = j.reason;
        ctl->last_error.detail = j.detail;
        airfsm_log(ctl, AIRFSM_LOG_INFO, AIRFSM_LOG_EVENT_STEP, (int32_t)j.outcome,
                   (int32_t)j.reason, j.detail, NULL, 0);
    }
}

/* Twin: Controller.raise_link(): unless a bigger one is already raised this tick. */
void airfsm_raise_link(airfsm_t *ctl, airfsm_trigger_t trigger)
{
    if (!airfsm_has_edge(ctl, trigger)) {
        return;
    }
    if (ctl->link_event == NO_LINK_EVENT ||
        airfsm_link_priority[trigger] > airfsm_link_priority[ctl->link_event]) {
        ctl->link_event = (int8_t)trigger;
    }
}

/* Twin: Controller._enter(): what entering a state resets. `trigger` is what happened (DONE,
 * EXHAUSTED, ...: it decides the bookkeeping), `taken` the edge's own trigger (a branch's:
 * what the log and on_state name). */
static void airfsm_enter(airfsm_t *ctl, airfsm_state_t source, airfsm_state_t dest,
                         airfsm_trigger_t trigger, airfsm_trigger_t taken, bool reset_module)
{
    airfsm_runner_t *runner = &ctl->runner;
    uint32_t now = ctl->now_ms;
    uint32_t elapsed = airfsm_state_age_ms(ctl);

    ctl->counters.transitions++;
    if (airfsm_trigger_escalates[trigger]) {
        ctl->counters.reconnects[trigger]++;
    }
    ctl->last_trigger = (int8_t)taken;
    ctl->state = dest;
    ctl->attempt = trigger == AIRFSM_TRIGGER_RETRY ? ctl->attempt + 1 : 1;
    /* Logged with the runner still where the source state was left (its step is named). */
    airfsm_log(ctl, AIRFSM_LOG_INFO, AIRFSM_LOG_EVENT_STATE, (int32_t)source, (int32_t)taken,
               (int32_t)elapsed, NULL, 0);
    ctl->entered_at = now;
    ctl->state_age_saturated = false;
    runner->index = 0;
    runner->topic = 0;
    runner->polls = 0;
    runner->urc_seen = AT_URC_NONE;
    runner->body_due = false;
    runner->outcome = NO_OUTCOME;
    if (reset_module) {
        ctl->reset_requested = true;
    }
    if (dest == AIRFSM_STATE_AUTOBAUD && trigger != AIRFSM_TRIGGER_RETRY) {
        /* The module restarted (or is about to): it forgot the command in flight and may have
         * stopped inside a length-counted payload. Start the byte stream afresh. */
        at_reset(&ctl->channel);
        ctl->purpose = AIRFSM_PURPOSE_NONE;
    } else if (at_busy(&ctl->channel)) {
        ctl->purpose = AIRFSM_PURPOSE_DISCARD; /* its answer still comes: let it land */
    }
    if (airfsm_trigger_escalates[trigger] && dest != AIRFSM_STATE_FAILED) {
        /* Escalations and link losses back off too, or a flapping link would hammer the
         * network in a tight loop: the first is immediate, the next ones wait longer. */
        uint32_t delay = 0;
        ctl->escalations++;
        if (ctl->escalations > AIRFSM_ESCALATIONS_WITHOUT_BACKOFF) {
            delay = backoff_ms(ctl->escalations - AIRFSM_ESCALATIONS_WITHOUT_BACKOFF,
                               AIRFSM_ESCALATION_BACKOFF_BASE_MS,
                               AIRFSM_ESCALATION_BACKOFF_CAP_MS, &ctl->rng);
        }
        airfsm_wait(ctl, delay);
    } else if (trigger == AIRFSM_TRIGGER_RETRY) {
        runner->phase = PHASE_WAIT_UNTIL; /* airfsm_fail_state set resume_at to the backoff */
    } else { /* DONE, or FAILED */
        runner->phase = PHASE_IDLE;
    }
    if (source == AIRFSM_STATE_ONLINE || dest == AIRFSM_STATE_ONLINE) {
        online_reset(ctl);
    }
    if (dest == AIRFSM_STATE_ONLINE) {
        ctl->session.next_probe_at = ms_add(now, ctl->settings.liveness_ms);
    } else if (source == AIRFSM_STATE_ONLINE) {
        ctl->offline_since = now;
    }
    if (dest == AIRFSM_STATE_AUTOBAUD || dest == AIRFSM_STATE_VERSION_CHECK) {
        online_module_restarted(ctl);
    }
    if (ctl->hooks.on_state != NULL) {
        ctl->hooks.on_state(ctl->hooks.user, source, dest, taken);
    }
}

static bool airfsm_step_applies(const airfsm_t *ctl, airfsm_cond_t when);

/* Twin: table.branch_for(): the trigger that fires when `trigger` would: the first branch of
 * the state instead of it whose condition holds, else `trigger` itself. */
static airfsm_trigger_t table_branch(const airfsm_t *ctl, airfsm_trigger_t trigger)
{
    const airfsm_state_spec_t *spec = &airfsm_machine[ctl->state];
    uint8_t k;

    for (k = 0; k < spec->n_branches; k++) {
        const airfsm_branch_t *branch = &spec->branches[k];
        if (branch->instead_of == trigger && airfsm_step_applies(ctl, branch->when)) {
            return branch->trigger;
        }
    }
    return trigger;
}

/* Twin: Controller._fire(): take the edge (state, trigger) - or the branch taken instead of
 * it - if the table has it. */
static bool airfsm_fire(airfsm_t *ctl, airfsm_trigger_t trigger)
{
    airfsm_trigger_t taken = table_branch(ctl, trigger);
    const airfsm_next_t *edge = &airfsm_next[ctl->state][taken];
    if (edge->dest == AIRFSM_NO_STATE) {
        return false;
    }
    airfsm_enter(ctl, ctl->state, (airfsm_state_t)edge->dest, trigger, taken,
                 edge->reset_module);
    return true;
}

/* Twin: Controller._fail(). */
static void airfsm_fail(airfsm_t *ctl, airfsm_fail_reason_t reason, airfsm_reason_t cause,
                        int32_t detail)
{
    airfsm_set_failure(ctl, reason, cause, detail);
    if (!airfsm_fire(ctl, AIRFSM_TRIGGER_FATAL)) {
        /* a state with no FATAL edge: go there directly */
        airfsm_enter(ctl, ctl->state, AIRFSM_STATE_FAILED, AIRFSM_TRIGGER_FATAL,
                     AIRFSM_TRIGGER_FATAL, false);
    }
}

/* Twin: Controller._fail_state(): a step failed for good: retry the state after backoff, or
 * escalate. */
static void airfsm_fail_state(airfsm_t *ctl, const airfsm_step_t *step, bool rejected)
{
    const airfsm_policy_t *policy = airfsm_machine[ctl->state].policy;
    uint32_t retries;

    /* A direct-sign CONNECT that failed has no token to fetch again (TOKEN_REJECTED): the
     * state retries with a fresh sign, and a refusal counts towards giving up like an auth
     * rejection. */
    if (step->on_fail != AIRFSM_NO_TRIGGER &&
        !(step->on_fail == AIRFSM_TRIGGER_TOKEN_REJECTED && airfsm_signs_directly(ctl))) {
        (void)airfsm_fire(ctl, (airfsm_trigger_t)step->on_fail);
        return;
    }
    if (policy == NULL) {
        return;
    }
    retries = policy->retries;
    if (rejected) {
        /* Only rejections count towards giving up on the credentials: transient failures
         * (HTTP 601, an ERROR) between them neither count nor forgive one. */
        uint32_t limit = ctl->settings.auth_attempts ? ctl->settings.auth_attempts
                                                     : policy->retries + 1u;
        ctl->auth.rejections++;
        if (ctl->auth.rejections >= limit && airfsm_has_edge(ctl, AIRFSM_TRIGGER_FATAL)) {
            if (ctl->state == AIRFSM_STATE_PROVISION) {
                airfsm_fail(ctl, AIRFSM_FAIL_REASON_REGISTRATION,
                            AIRFSM_REASON_REGISTRATION_REFUSED, ctl->auth_code);
            } else if (ctl->state == AIRFSM_STATE_MQTT_CONNECT) {
                airfsm_fail(ctl, AIRFSM_FAIL_REASON_CREDENTIALS, AIRFSM_REASON_SIGN_REFUSED,
                            (int32_t)ctl->auth.rejections);
            } else {
                airfsm_fail(ctl, AIRFSM_FAIL_REASON_CREDENTIALS,
                            AIRFSM_REASON_CREDENTIALS_REJECTED, ctl->auth_code);
            }
            return;
        }
        retries = limit - 1u; /* a rejection may retry the state until the limit */
    }
    if (ctl->attempt <= retries) {
        uint32_t delay = backoff_ms(ctl->attempt, policy->backoff_base_ms,
                                    policy->backoff_cap_ms, &ctl->rng);
        ctl->runner.resume_at = ms_add(ctl->now_ms, delay);
        (void)airfsm_fire(ctl, AIRFSM_TRIGGER_RETRY);
    } else if ((ctl->hooks.hardware_reset != NULL || ctl->hal.reset_pin != NULL) &&
               ctl->hardware_resets < policy->hardware_resets) {
        ctl->hardware_resets++;
        airfsm_log(ctl, AIRFSM_LOG_WARNING, AIRFSM_LOG_EVENT_HARDWARE_RESET,
                   (int32_t)ctl->hardware_resets, (int32_t)policy->hardware_resets, 0, NULL, 0);
        if (ctl->hooks.hardware_reset != NULL) {
            ctl->hooks.hardware_reset(ctl->hooks.user);
        } else {
            ctl->hal.reset_pin(ctl->hal.ctx, true);
            ctl->hal.reset_pin(ctl->hal.ctx, false);
        }
        (void)airfsm_fire(ctl, AIRFSM_TRIGGER_HARDWARE_RESET);
    } else {
        if (policy->on_exhausted == AIRFSM_STATE_FAILED && ctl->state == AIRFSM_STATE_AUTOBAUD) {
            airfsm_set_failure(ctl, AIRFSM_FAIL_REASON_NO_RESPONSE, AIRFSM_REASON_MODULE_MUTE,
                               (int32_t)ctl->hardware_resets);
        }
        (void)airfsm_fire(ctl, AIRFSM_TRIGGER_EXHAUSTED);
    }
}

/* Twin: Controller._process(): apply what the callbacks recorded; a link event beats the step's
 * own outcome. */
static void airfsm_process(airfsm_t *ctl)
{
    airfsm_runner_t *runner = &ctl->runner;
    const airfsm_step_t *step;
    int8_t outcome;

    if (runner->body_due) {
        /* First of all, link events included: the module is in data mode and takes every byte
         * for the body until it has them all, whatever state the controller is in by now. */
        runner->body_due = false;
        at_send_data(&ctl->channel, ctl->auth.body, ctl->auth.body_len, ctl->now_ms,
                     runner->body_timeout_ms);
    }
    if (ctl->link_event != NO_LINK_EVENT) {
        airfsm_trigger_t trigger = (airfsm_trigger_t)ctl->link_event;
        ctl->link_event = NO_LINK_EVENT;
        runner->outcome = NO_OUTCOME;
        (void)airfsm_fire(ctl, trigger);
        return;
    }
    if (runner->outcome == NO_OUTCOME) {
        return;
    }
    outcome = runner->outcome;
    runner->outcome = NO_OUTCOME;
    step = airfsm_step(ctl);
    if (step == NULL) {
        return;
    }
    switch ((airfsm_outcome_t)outcome) {
    case AIRFSM_OUTCOME_PASS:
        if (ctl->state == AIRFSM_STATE_AUTOBAUD) {
            ctl->hardware_resets = 0; /* the module answers again */
        }
        runner->polls = 0;
        runner->phase = PHASE_IDLE;
        if (step->per_topic && runner->topic + 1u < ctl->n_subscriptions) {
            runner->topic++; /* the same step again, for the next subscription */
        } else {
            runner->index++;
            runner->topic = 0;
        }
        if (step->settle_ms) {
            airfsm_wait(ctl, step->settle_ms);
        }
        break;
    case AIRFSM_OUTCOME_NOT_YET:
        runner->polls++;
        if (runner->polls > step->poll_limit) {
            airfsm_fail_state(ctl, step, false);
        } else {
            airfsm_wait(ctl, step->poll_ms);
        }
        break;
    case AIRFSM_OUTCOME_FATAL:
        (void)airfsm_fire(ctl, AIRFSM_TRIGGER_FATAL);
        break;
    default:
        airfsm_fail_state(ctl, step, outcome == AIRFSM_OUTCOME_REJECTED);
        break;
    }
}

/* Twin: Controller._check_deadlines(). */
static void airfsm_check_deadlines(airfsm_t *ctl)
{
    uint32_t now = ctl->now_ms;
    airfsm_runner_t *runner = &ctl->runner;

    if (runner->phase == PHASE_WAIT_URC && ms_reached(now, runner->urc_deadline)) {
        const airfsm_step_t *step = airfsm_step(ctl);
        judge_t j;
        ctl->counters.timeouts++;
        j.outcome = AIRFSM_OUTCOME_FAIL;
        j.reason = AIRFSM_REASON_URC_TIMEOUT;
        j.detail = step != NULL ? (int32_t)step->urc_timeout_ms : 0;
        airfsm_record(ctl, j);
    }
    online_check_deadlines(ctl);
    if (ctl->settings.watchdog_ms && ctl->state != AIRFSM_STATE_ONLINE &&
        ctl->state != AIRFSM_STATE_FAILED &&
        ms_reached(now, ms_add(ctl->offline_since, ctl->settings.watchdog_ms))) {
        ctl->offline_since = now;
        airfsm_raise_link(ctl, AIRFSM_TRIGGER_WATCHDOG);
    }
    /* Latch the ages every tick so a months-long ONLINE never wraps a 32-bit difference. */
    if (airfsm_age_ms(now, ctl->entered_at, ctl->state_age_saturated) >= AGE_MAX_MS) {
        ctl->state_age_saturated = true;
    }
    if (airfsm_age_ms(now, ctl->signal_at, ctl->signal_age_saturated) >= AGE_MAX_MS) {
        ctl->signal_age_saturated = true;
    }
    if (!ctl->auth.token_stale &&
        ms_diff(now, ctl->auth.token_at) >= (int32_t)ctl->settings.token_refresh_ms) {
        ctl->auth.token_stale = true;
    }
}

/* Twin: Controller._step_applies(): whether a step's or a branch's condition holds now. */
static bool airfsm_step_applies(const airfsm_t *ctl, airfsm_cond_t when)
{
    switch (when) {
    case AIRFSM_COND_RESET_REQUESTED:
        return ctl->reset_requested;
    case AIRFSM_COND_RETRYING:
        return ctl->attempt > 1;
    case AIRFSM_COND_UNREGISTERED:
        return ctl->auth.device_secret[0] == '\0';
    case AIRFSM_COND_DIRECT_SIGN:
        return airfsm_signs_directly(ctl);
    default:
        return true;
    }
}

/* Twin: Controller._advance(): send what is due. */
static void airfsm_advance(airfsm_t *ctl)
{
    airfsm_runner_t *runner = &ctl->runner;
    const airfsm_state_spec_t *spec;

    for (;;) { /* Python recurses once a DONE entered the next state: a loop here */
        if (ctl->state == AIRFSM_STATE_FAILED || ctl->port_lost || at_busy(&ctl->channel) ||
            ctl->stopped) {
            return;
        }
        if (ctl->stopping && ctl->state != AIRFSM_STATE_ONLINE) {
            ctl->stopped = true; /* nothing in flight that matters: no session to close */
            return;
        }
        if (ctl->link_event != NO_LINK_EVENT || runner->outcome != NO_OUTCOME) {
            return;
        }
        if (ctl->state == AIRFSM_STATE_ONLINE) {
            online_advance(ctl);
            return;
        }
        if (runner->phase == PHASE_WAIT_UNTIL) {
            if (!ms_reached(ctl->now_ms, runner->resume_at)) {
                return;
            }
            runner->phase = PHASE_IDLE;
        }
        if (runner->phase != PHASE_IDLE) {
            return;
        }
        if (ctl->state == AIRFSM_STATE_MQTT_CONNECT && runner->index == 0) {
            if (airfsm_signs_directly(ctl)) {
                airfsm_prepare_direct_sign(ctl); /* a fresh timestamp for every connect */
            } else if (ctl->auth.token_stale) {
                (void)airfsm_fire(ctl, AIRFSM_TRIGGER_TOKEN_REJECTED); /* none, or stale */
                return;
            }
        }
        if (ctl->state == AIRFSM_STATE_HTTP_AUTH && runner->index == 0) {
            airfsm_prepare_auth(ctl);
        }
        if (ctl->state == AIRFSM_STATE_PROVISION && runner->index == 0) {
            airfsm_prepare_register(ctl);
        }
        spec = &airfsm_machine[ctl->state];
        while (runner->index < spec->n_steps) {
            const airfsm_step_t *step = &spec->steps[runner->index];
            if (!airfsm_step_applies(ctl, step->when)) {
                runner->index++;
                continue;
            }
            if (step->when == AIRFSM_COND_RESET_REQUESTED) {
                ctl->reset_requested = false;
            }
            airfsm_send_step(ctl, step, AIRFSM_PURPOSE_STEP, runner->topic);
            return;
        }
        if (!airfsm_fire(ctl, AIRFSM_TRIGGER_DONE)) {
            return;
        }
        /* start the new state's first step in this same tick */
    }
}

/* --- callbacks from the AT channel ------------------------------------------------------------ */

/* Twin: Controller._log_received(): at_rx for each info line, then the final code as codes. */
static void airfsm_log_received(const airfsm_t *ctl, const at_response_t *resp)
{
    size_t i;
    for (i = 0; i < resp->line_count; i++) {
        airfsm_log(ctl, AIRFSM_LOG_DEBUG, AIRFSM_LOG_EVENT_AT_RX, 0, 0, 0,
                   resp->arena + resp->line_start[i], resp->line_length[i]);
    }
    airfsm_log(ctl, AIRFSM_LOG_DEBUG, AIRFSM_LOG_EVENT_AT_RX, (int32_t)resp->result,
               resp->cme_error, 0, NULL, 0);
}

/* Twin: Controller._on_step_response(). */
static void airfsm_on_step_response(airfsm_t *ctl, const at_response_t *resp)
{
    const airfsm_step_t *step = airfsm_step(ctl);
    airfsm_runner_t *runner = &ctl->runner;
    judge_t j;

    if (step == NULL || runner->phase != PHASE_WAIT_FINAL) {
        return;
    }
    j = judge_answer(ctl, step, resp);
    if (j.outcome != AIRFSM_OUTCOME_PASS || !(step->n_urc_ok || step->n_urc_fail)) {
        airfsm_record(ctl, j);
        return;
    }
    if (runner->urc_seen != AT_URC_NONE) { /* the URC overtook the final code */
        airfsm_record(ctl, judge_urc(ctl, step, runner->urc_seen, runner->urc_seen_line,
                                     runner->urc_seen_len));
        return;
    }
    runner->phase = PHASE_WAIT_URC;
    runner->urc_deadline = ms_add(ctl->now_ms, step->urc_timeout_ms);
}

/* Twin: Controller._on_response() (the channel's on_response callback). */
static void airfsm_on_response(void *context, const at_response_t *resp)
{
    airfsm_t *ctl = context;
    airfsm_purpose_t purpose;

    if (resp->result != AIRFSM_AT_RESULT_TIMEOUT && airfsm_wants(ctl, AIRFSM_LOG_DEBUG)) {
        airfsm_log_received(ctl, resp);
    }
    if (resp->result == AIRFSM_AT_RESULT_PROMPT) {
        /* Whatever the command is for by now, the module waits for the body: airfsm_process
         * sends it first. */
        ctl->runner.body_due = true;
        return;
    }
    purpose = ctl->purpose;
    ctl->purpose = AIRFSM_PURPOSE_NONE;
    if (resp->result == AIRFSM_AT_RESULT_TIMEOUT) {
        ctl->counters.timeouts++;
        airfsm_log(ctl, AIRFSM_LOG_INFO, AIRFSM_LOG_EVENT_AT_TIMEOUT, 0, 0, 0, resp->command,
                   resp->command_len);
    } else if (ctl->state == AIRFSM_STATE_ONLINE) {
        online_on_answered(ctl);
    }
    switch (purpose) {
    case AIRFSM_PURPOSE_STEP:
        airfsm_on_step_response(ctl, resp);
        break;
    case AIRFSM_PURPOSE_PUBLISH:
        online_on_publish_response(ctl, resp);
        break;
    case AIRFSM_PURPOSE_PROBE:
        online_on_probe_response(ctl, resp);
        break;
    case AIRFSM_PURPOSE_STOP:
        ctl->stopped = true;
        break;
    case AIRFSM_PURPOSE_KEEPALIVE:
        online_on_keepalive_response(ctl, resp);
        break;
    case AIRFSM_PURPOSE_CACHE_READ:
        online_on_cache_read_response(ctl, resp);
        break;
    case AIRFSM_PURPOSE_MODE:
        online_on_mode_response(ctl, resp);
        break;
    case AIRFSM_PURPOSE_SIGNAL:
        online_on_signal_response(ctl, resp);
        break;
    default:
        break;
    }
}

/* Twin: Controller._deliver(). */
static void airfsm_deliver(airfsm_t *ctl, const uint8_t *line, size_t len, const uint8_t *data,
                           size_t data_len)
{
    size_t topic_len = 0;
    const uint8_t *topic = at_msub_topic(line, len, &topic_len);

    ctl->counters.inbound++;
    airfsm_log(ctl, AIRFSM_LOG_INFO, AIRFSM_LOG_EVENT_INBOUND, (int32_t)data_len, 0, 0, topic,
               topic_len);
    if (ctl->hooks.on_message != NULL) {
        ctl->hooks.on_message(ctl->hooks.user, topic, topic_len, data, data_len);
    }
}

/* Twin: Controller._on_urc(): what a URC means, by its row of the URC table: a message, a
 * step's awaited URC, a PUBACK, a keepalive's SUBACK, a link loss - in that order. */
static void airfsm_on_urc(void *context, int urc, const uint8_t *line, size_t len,
                          const uint8_t *data, size_t data_len)
{
    airfsm_t *ctl = context;
    const airfsm_urc_t *row = urc != AT_URC_NONE ? &airfsm_urcs[urc] : NULL;
    const airfsm_step_t *step;
    airfsm_runner_t *runner = &ctl->runner;

    airfsm_log(ctl, AIRFSM_LOG_DEBUG, AIRFSM_LOG_EVENT_AT_RX, 0, 0, 0, line, len);
    if (row != NULL && row->kind == AIRFSM_URC_KIND_MSUB) {
        int slot = at_msub_cache_slot(line, len);
        if (slot >= 0) {
            online_cache_notice(ctl, slot);
            return;
        }
        if (!at_is_msub_message(line, len)) {
            /* Neither a message nor a cache notice: never a message with an empty topic. */
            airfsm_log(ctl, AIRFSM_LOG_WARNING, AIRFSM_LOG_EVENT_MSUB_UNPARSED, 0, 0, 0, line,
                       len);
            return;
        }
        airfsm_deliver(ctl, line, len, data, data_len);
        return;
    }
    step = airfsm_step(ctl);
    if (step != NULL && (runner->phase == PHASE_WAIT_FINAL || runner->phase == PHASE_WAIT_URC) &&
        (airfsm_urc_in(step->urc_ok, step->n_urc_ok, urc) ||
         airfsm_urc_in(step->urc_fail, step->n_urc_fail, urc))) {
        if (runner->phase == PHASE_WAIT_URC) {
            airfsm_record(ctl, judge_urc(ctl, step, urc, line, len));
        } else {
            size_t n = len < sizeof runner->urc_seen_line ? len : sizeof runner->urc_seen_line;
            runner->urc_seen = urc;
            memcpy(runner->urc_seen_line, line, n);
            runner->urc_seen_len = n;
        }
        return;
    }
    if (row == NULL) {
        airfsm_log(ctl, AIRFSM_LOG_DEBUG, AIRFSM_LOG_EVENT_URC, 0, 0, 0, line, len);
        return;
    }
    if (row->kind == AIRFSM_URC_KIND_PUBACK) {
        online_on_puback(ctl);
        return;
    }
    if (airfsm_urc_in(airfsm_online_keepalive.urc_ok, airfsm_online_keepalive.n_urc_ok, urc) &&
        online_suback_awaited(ctl)) {
        online_on_suback(ctl);
        return;
    }
    if (row->trigger != AIRFSM_NO_TRIGGER) {
        if (row->trigger == AIRFSM_TRIGGER_REBOOTED && ctl->state == AIRFSM_STATE_AUTOBAUD) {
            return; /* boot URCs are what AUTOBAUD expects */
        }
        airfsm_log(ctl, AIRFSM_LOG_INFO, AIRFSM_LOG_EVENT_LINK_URC, urc, 0, 0, line, len);
        airfsm_raise_link(ctl, (airfsm_trigger_t)row->trigger);
        return;
    }
    airfsm_log(ctl, AIRFSM_LOG_DEBUG, AIRFSM_LOG_EVENT_URC, 0, 0, 0, line, len);
}

/* Twin: Controller._on_ignored_line(): at_rx for a line that means nothing: the echo of a
 * command, a late final code, a stray line. */
static void airfsm_on_ignored_line(void *context, const uint8_t *line, size_t len)
{
    airfsm_log(context, AIRFSM_LOG_DEBUG, AIRFSM_LOG_EVENT_AT_RX, 0, 0, 0, line, len);
}

/* Twin: Controller._on_truncated(): a length-counted payload came short. */
static void airfsm_on_truncated(void *context, const uint8_t *header, size_t header_len,
                                uint32_t declared, uint32_t received)
{
    airfsm_t *ctl = context;
    if (header_len >= 5 && memcmp(header, "+MSUB", 5) == 0) {
        ctl->counters.downlinks_truncated++;
    }
    airfsm_log(ctl, AIRFSM_LOG_WARNING, AIRFSM_LOG_EVENT_PAYLOAD_TRUNCATED, (int32_t)declared,
               (int32_t)received, 0, header, header_len);
}

/* --- the tick and the public API -------------------------------------------------------------- */

/* Twin: Controller.next_deadline(). Deadlines that act whatever the channel does, then those of
 * what is due to be sent, which count only while the channel is idle. */
uint32_t airfsm_next_deadline(const airfsm_t *ctl)
{
    uint32_t now = ctl->now_ms, deadline = now, t;
    bool has = false;

    if (ctl->state == AIRFSM_STATE_FAILED) {
        return ms_add(now, AIRFSM_IDLE_RECHECK_MS);
    }
    if (ctl->port_lost) {
        return ms_add(now, AIRFSM_LOST_PORT_RECHECK_MS);
    }
    if (at_deadline(&ctl->channel, &t)) {
        has = ms_earliest(has, deadline, true, t, &deadline);
    }
    if (at_receive_deadline(&ctl->channel, &t)) {
        has = ms_earliest(has, deadline, true, t, &deadline);
    }
    online_watch_deadline(ctl, &has, &deadline);
    if (ctl->state != AIRFSM_STATE_ONLINE) {
        if (ctl->runner.phase == PHASE_WAIT_URC) {
            has = ms_earliest(has, deadline, true, ctl->runner.urc_deadline, &deadline);
        }
        if (ctl->settings.watchdog_ms) {
            has = ms_earliest(has, deadline, true,
                              ms_add(ctl->offline_since, ctl->settings.watchdog_ms), &deadline);
        }
    }
    if (!at_busy(&ctl->channel)) {
        if (ctl->state == AIRFSM_STATE_ONLINE) {
            online_send_deadline(ctl, &has, &deadline);
        } else if (ctl->runner.phase == PHASE_WAIT_UNTIL) {
            has = ms_earliest(has, deadline, true, ctl->runner.resume_at, &deadline);
        }
    }
    (void)ms_earliest(has, deadline, true, ms_add(now, AIRFSM_IDLE_RECHECK_MS), &deadline);
    return ms_diff(deadline, now) < 0 ? now : deadline;
}

/* Twin: Controller.tick(). */
uint32_t airfsm_tick(airfsm_t *ctx, uint32_t now_ms)
{
    ctx->now_ms = now_ms;
    airfsm_read_port(ctx);
    at_check_timeout(&ctx->channel, ctx->now_ms);
    airfsm_check_deadlines(ctx);
    airfsm_process(ctx);
    (void)online_settle_outbox(ctx);
    airfsm_advance(ctx);
    airfsm_process(ctx); /* a refused command answers at once: apply that too */
    airfsm_advance(ctx);
    return airfsm_next_deadline(ctx);
}

/* Twin: Controller.__init__(). */
int airfsm_init_ex(airfsm_t *ctx, const airfsm_settings_t *s, const hal_t *hal,
                   const airfsm_hooks_t *hooks, const airfsm_outbox_t *outbox, uint32_t now_ms)
{
    int problem = airfsm_settings_validate(s);
    at_config_t config;
    size_t n = 0, k;

    if (problem != AIRFSM_SETTINGS_OK) {
        return problem;
    }
    memset(ctx, 0, sizeof *ctx);
    ctx->settings = *s;
    ctx->hal = *hal;
    if (hooks != NULL) {
        ctx->hooks = *hooks;
    } else {
        ctx->hooks.log_level = AIRFSM_LOG_OFF;
    }
    outbox_ring_init(&ctx->ring, ctx->ring_slots, ctx->ring_dead, AIRFSM_OUTBOX_SLOTS);
    ctx->outbox = outbox != NULL ? *outbox : outbox_ring_outbox(&ctx->ring);

    /* The topics a per_topic step subscribes to, each in turn. */
    if (s->n_subscribe == 0) {
        airfsm_append(ctx->default_topic, sizeof ctx->default_topic, &n, "/");
        airfsm_append(ctx->default_topic, sizeof ctx->default_topic, &n, s->product_key);
        airfsm_append(ctx->default_topic, sizeof ctx->default_topic, &n, "/");
        airfsm_append(ctx->default_topic, sizeof ctx->default_topic, &n, s->device_name);
        airfsm_append(ctx->default_topic, sizeof ctx->default_topic, &n, "/get");
        ctx->subscriptions[0] = ctx->default_topic;
        ctx->n_subscriptions = 1;
    } else {
        for (k = 0; k < s->n_subscribe; k++) {
            ctx->subscriptions[k] = ctx->settings.subscribe[k];
        }
        ctx->n_subscriptions = s->n_subscribe;
    }
    /* aliyun.auth_url(region, instance_id), aliyun.register_url(region),
     * aliyun.mqtt_host(product_key, region, instance_id): an instance's own endpoints, else the
     * legacy regional ones (registration is always the region's) */
    n = 0;
    if (s->instance_id[0] != '\0') {
        airfsm_append(ctx->auth_url, sizeof ctx->auth_url, &n, "https://");
        airfsm_append(ctx->auth_url, sizeof ctx->auth_url, &n, s->instance_id);
        airfsm_append(ctx->auth_url, sizeof ctx->auth_url, &n, ".auth." ALIYUN_INSTANCE_DOMAIN);
    } else {
        airfsm_append(ctx->auth_url, sizeof ctx->auth_url, &n, "https://iot-auth.");
        airfsm_append(ctx->auth_url, sizeof ctx->auth_url, &n, airfsm_region(ctx));
        airfsm_append(ctx->auth_url, sizeof ctx->auth_url, &n, ".aliyuncs.com");
    }
    airfsm_append(ctx->auth_url, sizeof ctx->auth_url, &n, "/auth/devicename");
    n = 0;
    airfsm_append(ctx->register_url, sizeof ctx->register_url, &n, "https://iot-auth.");
    airfsm_append(ctx->register_url, sizeof ctx->register_url, &n, airfsm_region(ctx));
    airfsm_append(ctx->register_url, sizeof ctx->register_url, &n,
                  ".aliyuncs.com/auth/register/device");
    n = 0;
    if (s->instance_id[0] != '\0') {
        airfsm_append(ctx->default_host, sizeof ctx->default_host, &n, s->instance_id);
        airfsm_append(ctx->default_host, sizeof ctx->default_host, &n,
                      ".mqtt." ALIYUN_INSTANCE_DOMAIN);
    } else {
        airfsm_append(ctx->default_host, sizeof ctx->default_host, &n, s->product_key);
        airfsm_append(ctx->default_host, sizeof ctx->default_host, &n, ".iot-as-mqtt.");
        airfsm_append(ctx->default_host, sizeof ctx->default_host, &n, airfsm_region(ctx));
        airfsm_append(ctx->default_host, sizeof ctx->default_host, &n, ".aliyuncs.com");
    }

    memset(&config, 0, sizeof config);
    config.ctx = ctx;
    config.write = airfsm_write;
    config.on_response = airfsm_on_response;
    config.on_urc = airfsm_on_urc;
    config.on_truncated = airfsm_on_truncated;
    config.on_ignored = airfsm_on_ignored_line;
    config.baud = s->baud;
    config.line_buf = ctx->line_buf;
    config.line_cap = sizeof ctx->line_buf;
    config.data_buf = ctx->data_buf;
    config.data_cap = sizeof ctx->data_buf;
    config.info_arena = ctx->info_arena;
    config.arena_cap = sizeof ctx->info_arena;
    at_init(&ctx->channel, &config);

    xorshift32_seed(&ctx->rng, s->jitter_seed != 0
                                   ? s->jitter_seed
                                   : seed_from_text(s->device_name, strlen(s->device_name)));
    ctx->now_ms = now_ms;
    ctx->started_at = now_ms;

    ctx->state = AIRFSM_INITIAL_STATE;
    ctx->entered_at = now_ms;
    ctx->attempt = 1;
    ctx->fail_reason = AIRFSM_FAIL_REASON_NONE;
    ctx->fail_cause = AIRFSM_REASON_NONE;
    ctx->last_trigger = AIRFSM_NO_TRIGGER; /* "start" */
    ctx->offline_since = now_ms;
    ctx->link_event = NO_LINK_EVENT;
    ctx->purpose = AIRFSM_PURPOSE_NONE;
    ctx->runner.phase = PHASE_IDLE;
    ctx->runner.resume_at = now_ms;
    ctx->runner.urc_deadline = now_ms;
    ctx->runner.urc_seen = AT_URC_NONE;
    ctx->runner.outcome = NO_OUTCOME;

    ctx->access_technology = -1;
    ctx->registration = -1;
    ctx->rssi = 99;
    ctx->signal_at = now_ms;
    ctx->auth.token_at = now_ms;
    ctx->auth.token_stale = true; /* no token yet */
    memcpy(ctx->auth.device_secret, s->device_secret, sizeof s->device_secret);

    online_init(&ctx->session, now_ms);
    airfsm_init_values(ctx);
    airfsm_emit_secret(ctx, s->device_secret, true);
    if (s->product_secret[0] != '\0') {
        airfsm_emit_secret(ctx, s->product_secret, true);
    }
    return AIRFSM_SETTINGS_OK;
}

/* Twin: Controller.__init__() with no hooks and the RAM outbox. */
int airfsm_init(airfsm_t *ctx, const airfsm_settings_t *s, const hal_t *hal, uint32_t now_ms)
{
    return airfsm_init_ex(ctx, s, hal, NULL, NULL, now_ms);
}

/* Twin: aliyun.resolve_topic(). */
bool airfsm_resolve_topic(const airfsm_t *ctx, const char *topic, char *out, size_t cap,
                          size_t *len)
{
    size_t i, n = 0;

    if (topic == NULL || topic[0] == '\0') {
        return false;
    }
    for (i = 0; topic[i] != '\0'; i++) {
        if (topic[i] == '"' || topic[i] == '\r' || topic[i] == '\n') {
            return false;
        }
        if (i >= cap) {
            return false;
        }
    }
    out[0] = '\0';
    if (topic[0] != '/') {
        airfsm_append(out, cap, &n, "/");
        airfsm_append(out, cap, &n, ctx->settings.product_key);
        airfsm_append(out, cap, &n, "/");
        airfsm_append(out, cap, &n, ctx->settings.device_name);
        airfsm_append(out, cap, &n, "/");
    }
    if (n + i >= cap) {
        return false;
    }
    airfsm_append(out, cap, &n, topic);
    *len = n;
    return true;
}

/* Twin: Controller.publish(). */
int32_t airfsm_publish(airfsm_t *ctx, const char *topic, const uint8_t *data, size_t len,
                       uint8_t qos)
{
    char resolved[AIRFSM_MAX_TOPIC + 2]; /* one more than a topic may be: too long is refused */
    size_t topic_len = 0;
    int32_t id;

    if (ctx->outbox.store != &ctx->ring) {
        return AIRFSM_PUBLISH_NOT_WRITABLE;
    }
    if (!airfsm_resolve_topic(ctx, topic, resolved, sizeof resolved, &topic_len)) {
        return AIRFSM_PUBLISH_BAD_TOPIC;
    }
    id = outbox_enqueue(&ctx->ring, (const uint8_t *)resolved, topic_len, data, len, qos);
    switch (id) {
    case OUTBOX_BAD_TOPIC:
        return AIRFSM_PUBLISH_BAD_TOPIC;
    case OUTBOX_BAD_QOS:
        return AIRFSM_PUBLISH_BAD_QOS;
    case OUTBOX_UNSENDABLE:
        return AIRFSM_PUBLISH_UNSENDABLE;
    case OUTBOX_FULL:
        return AIRFSM_PUBLISH_FULL;
    case OUTBOX_TOO_LONG:
        return AIRFSM_PUBLISH_TOO_LONG;
    default:
        return id;
    }
}

/* Twin: Controller.request_stop(). */
void airfsm_request_stop(airfsm_t *ctx)
{
    ctx->stopping = true;
    if (ctx->state != AIRFSM_STATE_ONLINE && !at_busy(&ctx->channel)) {
        ctx->stopped = true;
    }
}

/* Twin: Controller.replace_port(). */
void airfsm_replace_port(airfsm_t *ctx, const hal_t *hal, uint32_t now_ms)
{
    ctx->hal = *hal;
    ctx->port_lost = false;
    ctx->now_ms = now_ms;
    at_reset(&ctx->channel);
    ctx->purpose = AIRFSM_PURPOSE_NONE;
    (void)airfsm_fire(ctx, AIRFSM_TRIGGER_PORT_LOST);
}

/* Twin: Controller.state. */
airfsm_state_t airfsm_state(const airfsm_t *ctx)
{
    return ctx->state;
}

/* Twin: Controller.online. */
bool airfsm_online(const airfsm_t *ctx)
{
    return ctx->state == AIRFSM_STATE_ONLINE;
}

/* Twin: Controller.failed. */
bool airfsm_failed(const airfsm_t *ctx)
{
    return ctx->state == AIRFSM_STATE_FAILED;
}

/* Twin: Controller.stopped. */
bool airfsm_stopped(const airfsm_t *ctx)
{
    return ctx->stopped;
}

/* Twin: Controller.fail_reason. */
airfsm_fail_reason_t airfsm_fail_reason(const airfsm_t *ctx)
{
    return ctx->fail_reason;
}

/* Twin: Controller.attempt. */
uint32_t airfsm_attempt(const airfsm_t *ctx)
{
    return ctx->attempt;
}

/* Twin: Controller.counters.publish_acked. */
uint32_t airfsm_acked_count(const airfsm_t *ctx)
{
    return ctx->counters.publish_acked;
}

/* Twin: Controller.counters. */
const airfsm_counters_t *airfsm_counters(const airfsm_t *ctx)
{
    return &ctx->counters;
}

/* Twin: Controller.state_age_ms(). */
uint32_t airfsm_state_age_ms(const airfsm_t *ctx)
{
    return airfsm_age_ms(ctx->now_ms, ctx->entered_at, ctx->state_age_saturated);
}

/* Twin: Controller.signal_age_ms(). */
int32_t airfsm_signal_age_ms(const airfsm_t *ctx)
{
    if (!ctx->signal_read) {
        return -1;
    }
    return (int32_t)airfsm_age_ms(ctx->now_ms, ctx->signal_at, ctx->signal_age_saturated);
}

/* Twin: Controller.pub_phase: where the publish of the outbox head is (codes.PubPhase). */
uint8_t airfsm_pub_phase(const airfsm_t *ctx)
{
    return ctx->session.pub_phase;
}

/* Twin: Controller.step_name(). */
const char *airfsm_step_name(const airfsm_t *ctx)
{
    const airfsm_step_t *step = airfsm_step(ctx);
    return step != NULL ? step->name : NULL;
}
