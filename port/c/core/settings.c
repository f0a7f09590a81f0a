/* settings.c: the controller's settings: defaults and validation. Python twin:
 * airfsm/core/settings.py (Settings, topic_filter_problem, wildcard_problem); the defaults and
 * ranges are the generated airfsm_settings[] (settings.SETTING_RANGES). */
#include <string.h>

#include "airfsm.h"
#include "payload.h"

/* Twin: settings._quotable(): printable ASCII, no quote, no backslash. */
static bool settings_quotable(const char *text)
{
    size_t i;
    for (i = 0; text[i] != '\0'; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20u || c >= 0x7Fu || c == '"' || c == '\\') {
            return false;
        }
    }
    return true;
}

/* Twin: len(text), bounded by the fixed array (its last byte is never read past). */
static size_t settings_len(const char *text, size_t cap)
{
    size_t n = 0;
    while (n < cap && text[n] != '\0') {
        n++;
    }
    return n;
}

/* Twin: settings.wildcard_problem(): `+` a whole level, `#` the whole last level. */
static bool settings_wildcards_ok(const char *topic, size_t len)
{
    size_t start = 0, i;

    while (start <= len) {
        size_t end = start;
        bool plus = false, hash = false;
        while (end < len && topic[end] != '/') {
            plus = plus || topic[end] == '+';
            hash = hash || topic[end] == '#';
            end++;
        }
        i = end - start;
        if (plus && i != 1) {
            return false;
        }
        if (hash && (i != 1 || end != len)) {
            return false;
        }
        start = end + 1;
    }
    return true;
}

/* Twin: settings.topic_filter_problem() (true: none). */
static bool settings_topic_ok(const char *topic, size_t cap)
{
    size_t len = settings_len(topic, cap);
    if (len == 0 || len > AIRFSM_MAX_TOPIC || len == cap || !settings_quotable(topic)) {
        return false;
    }
    if (topic[0] != '/') {
        return false;
    }
    return settings_wildcards_ok(topic, len);
}

/* Twin: `low <= value <= high` of the setting's row in airfsm_settings[]. */
static bool settings_in_range(airfsm_setting_t which, uint32_t value)
{
    return value >= airfsm_settings[which].min && value <= airfsm_settings[which].max;
}

/* Twin: Settings(identity) with every default. */
void airfsm_settings_default(airfsm_settings_t *s)
{
    memset(s, 0, sizeof *s);
    memcpy(s->region, ALIYUN_DEFAULT_REGION, sizeof ALIYUN_DEFAULT_REGION);
    memcpy(s->apn, airfsm_default_apn.text, airfsm_default_apn.len);
    s->sign_method = ALIYUN_HMACMD5; /* airfsm_default_sign_method */
    s->auth_mode = AIRFSM_AUTH_MODE_HTTPS;
    s->keepalive_s = airfsm_settings[AIRFSM_SETTING_KEEPALIVE_S].default_value;
    s->baud = airfsm_settings[AIRFSM_SETTING_BAUD].default_value;
    s->sub_qos = (uint8_t)airfsm_settings[AIRFSM_SETTING_SUB_QOS].default_value;
    s->mqtt_port = (uint16_t)airfsm_settings[AIRFSM_SETTING_MQTT_PORT].default_value;
    s->body_window_ms = airfsm_settings[AIRFSM_SETTING_BODY_WINDOW_MS].default_value;
    s->liveness_ms = airfsm_settings[AIRFSM_SETTING_LIVENESS_MS].default_value;
    s->silence_limit = airfsm_settings[AIRFSM_SETTING_SILENCE_LIMIT].default_value;
    s->publish_timeout_ms = airfsm_settings[AIRFSM_SETTING_PUBLISH_TIMEOUT_MS].default_value;
    s->puback_timeout_ms = airfsm_settings[AIRFSM_SETTING_PUBACK_TIMEOUT_MS].default_value;
    s->publish_attempts = airfsm_settings[AIRFSM_SETTING_PUBLISH_ATTEMPTS].default_value;
    s->publish_backoff_base_ms =
        airfsm_settings[AIRFSM_SETTING_PUBLISH_BACKOFF_BASE_MS].default_value;
    s->publish_backoff_cap_ms = airfsm_settings[AIRFSM_SETTING_PUBLISH_BACKOFF_CAP_MS].default_value;
    s->auth_attempts = airfsm_settings[AIRFSM_SETTING_AUTH_ATTEMPTS].default_value;
    s->token_refresh_ms = airfsm_settings[AIRFSM_SETTING_TOKEN_REFRESH_MS].default_value;
    s->watchdog_ms = airfsm_settings[AIRFSM_SETTING_WATCHDOG_MS].default_value;
    s->outbox_poll_ms = airfsm_settings[AIRFSM_SETTING_OUTBOX_POLL_MS].default_value;
    s->jitter_seed = airfsm_settings[AIRFSM_SETTING_JITTER_SEED].default_value;
}

/* Twin: Settings.validate(), check for check in its order. */
int airfsm_settings_validate(const airfsm_settings_t *s)
{
    static const airfsm_setting_t timeouts[] = {
        AIRFSM_SETTING_LIVENESS_MS, AIRFSM_SETTING_PUBLISH_TIMEOUT_MS,
        AIRFSM_SETTING_PUBACK_TIMEOUT_MS, AIRFSM_SETTING_TOKEN_REFRESH_MS,
    };
    const uint32_t timeout_values[] = {
        s->liveness_ms, s->publish_timeout_ms, s->puback_timeout_ms, s->token_refresh_ms,
    };
    aliyun_identity_t identity;
    size_t i;

    /* Every string ends inside its array (a caller's struct may hold anything). */
    if (settings_len(s->product_key, sizeof s->product_key) == sizeof s->product_key ||
        settings_len(s->device_name, sizeof s->device_name) == sizeof s->device_name ||
        settings_len(s->device_secret, sizeof s->device_secret) == sizeof s->device_secret ||
        settings_len(s->region, sizeof s->region) == sizeof s->region ||
        settings_len(s->client_id, sizeof s->client_id) == sizeof s->client_id ||
        settings_len(s->product_secret, sizeof s->product_secret) == sizeof s->product_secret ||
        settings_len(s->instance_id, sizeof s->instance_id) == sizeof s->instance_id) {
        return AIRFSM_SETTING_IDENTITY;
    }
    identity.product_key = s->product_key;
    identity.device_name = s->device_name;
    identity.device_secret = s->device_secret;
    identity.region = s->region[0] != '\0' ? s->region : NULL;
    identity.client_id = s->client_id;
    identity.product_secret = s->product_secret;
    identity.instance_id = s->instance_id;
    if (aliyun_identity_check(&identity) != ALIYUN_OK) {
        return AIRFSM_SETTING_IDENTITY;
    }
    if (aliyun_sign_method_name(s->sign_method) == NULL) {
        return AIRFSM_SETTING_SIGN_METHOD;
    }
    if (s->auth_mode != AIRFSM_AUTH_MODE_HTTPS && s->auth_mode != AIRFSM_AUTH_MODE_MQTT_SIGN) {
        return AIRFSM_SETTING_AUTH_MODE;
    }
    if (settings_len(s->apn, sizeof s->apn) > AIRFSM_APN_MAX || !settings_quotable(s->apn)) {
        return AIRFSM_SETTING_APN;
    }
    if (!settings_in_range(AIRFSM_SETTING_KEEPALIVE_S, s->keepalive_s)) {
        return AIRFSM_SETTING_KEEPALIVE_S;
    }
    if (!settings_in_range(AIRFSM_SETTING_BAUD, s->baud)) {
        return AIRFSM_SETTING_BAUD;
    }
    if (!settings_in_range(AIRFSM_SETTING_SUB_QOS, s->sub_qos)) {
        return AIRFSM_SETTING_SUB_QOS;
    }
    if (s->n_subscribe > AIRFSM_MAX_SUBSCRIPTIONS) {
        return AIRFSM_SETTING_SUBSCRIBE;
    }
    for (i = 0; i < s->n_subscribe; i++) {
        if (!settings_topic_ok(s->subscribe[i], sizeof s->subscribe[i])) {
            return AIRFSM_SETTING_SUBSCRIBE;
        }
    }
    if (settings_len(s->mqtt_host, sizeof s->mqtt_host) == sizeof s->mqtt_host ||
        !settings_quotable(s->mqtt_host)) {
        return AIRFSM_SETTING_MQTT_HOST;
    }
    if (s->mqtt_port != 0 && !settings_in_range(AIRFSM_SETTING_MQTT_PORT, s->mqtt_port)) {
        return AIRFSM_SETTING_MQTT_PORT;
    }
    for (i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        if (!settings_in_range(timeouts[i], timeout_values[i])) {
            return (int)timeouts[i];
        }
    }
    if (!settings_in_range(AIRFSM_SETTING_BODY_WINDOW_MS, s->body_window_ms)) {
        return AIRFSM_SETTING_BODY_WINDOW_MS;
    }
    if (s->auth_attempts != 0 && !settings_in_range(AIRFSM_SETTING_AUTH_ATTEMPTS,
                                                    s->auth_attempts)) {
        return AIRFSM_SETTING_AUTH_ATTEMPTS;
    }
    if (!settings_in_range(AIRFSM_SETTING_PUBLISH_ATTEMPTS, s->publish_attempts)) {
        return AIRFSM_SETTING_PUBLISH_ATTEMPTS;
    }
    if (!settings_in_range(AIRFSM_SETTING_PUBLISH_BACKOFF_BASE_MS, s->publish_backoff_base_ms) ||
        s->publish_backoff_base_ms > s->publish_backoff_cap_ms) {
        return AIRFSM_SETTING_PUBLISH_BACKOFF_BASE_MS;
    }
    if (!settings_in_range(AIRFSM_SETTING_PUBLISH_BACKOFF_CAP_MS, s->publish_backoff_cap_ms)) {
        return AIRFSM_SETTING_PUBLISH_BACKOFF_CAP_MS;
    }
    if (!settings_in_range(AIRFSM_SETTING_WATCHDOG_MS, s->watchdog_ms)) {
        return AIRFSM_SETTING_WATCHDOG_MS;
    }
    if (!settings_in_range(AIRFSM_SETTING_OUTBOX_POLL_MS, s->outbox_poll_ms)) {
        return AIRFSM_SETTING_OUTBOX_POLL_MS;
    }
    return AIRFSM_SETTINGS_OK;
}
