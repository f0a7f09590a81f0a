/* airfsm.h: the controller, the public API of the C core. Python twin: airfsm/core/controller.py
 * (Controller), with airfsm/core/settings.py (Settings), counters.py (Counters), hal.py (LogHook).
 *
 * One struct, airfsm_t, holds everything a connection needs: the AT channel and its buffers, the
 * step runner, the credentials, the ONLINE session, the counters and a RAM outbox. The caller
 * allocates it (static on an MCU: see `make size` for its size) and nothing is ever allocated
 * after. The controller is driven by one call:
 *
 *     airfsm_t modem;                              // static: about 20 KB at the default sizes
 *     airfsm_settings_t s;
 *     airfsm_settings_default(&s);                 // the generated defaults
 *     strcpy(s.product_key, "a1B2c3D4e5F"); ...    // the device triple
 *     if (airfsm_init(&modem, &s, &hal, hal.millis(hal.ctx)) != AIRFSM_SETTINGS_OK) ...
 *     for (;;) {
 *         uint32_t next = airfsm_tick(&modem, hal.millis(hal.ctx));
 *         sleep_until(next);                       // or until a UART byte arrives
 *     }
 *
 * airfsm_tick() reads what the UART has, feeds the AT channel, applies what its callbacks
 * recorded as at most one machine event, starts the next command if the channel is idle, and
 * returns when it next needs to run (wrap-safe 32-bit ms; a tick earlier than that is harmless,
 * one much later only delays). Nothing blocks; every time is a wrapping uint32_t millisecond.
 *
 * Callbacks (airfsm_hooks_t) run inside airfsm_tick() and must not call airfsm_tick() or
 * airfsm_init(); they may call airfsm_publish() and airfsm_request_stop(). Every pointer they get
 * is valid during the call only.
 */
#ifndef AIRFSM_H
#define AIRFSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airfsm_config.h"
#include "aliyun.h"
#include "at.h"
#include "hal.h"
#include "outbox.h"
#include "timebase.h"

/* --- settings (twin: settings.Settings) ------------------------------------------------------ */

/* Everything a deployment chooses; validated once, by airfsm_init(). Strings are NUL-terminated
 * in fixed arrays. Where the Python default is None, C has 0 or "" (the generated table's
 * `unset` column says what stands for it). */
typedef struct {
    /* the device (Python: settings.identity, an aliyun.DeviceIdentity) */
    char product_key[AIRFSM_MAX_PRODUCT_KEY_LEN + 1];
    char device_name[AIRFSM_MAX_DEVICE_NAME_LEN + 1];
    char device_secret[AIRFSM_MAX_SECRET_LEN + 1]; /* a secret: never logged */
    char region[AIRFSM_MAX_REGION_LEN + 1];        /* "": ALIYUN_DEFAULT_REGION */
    char client_id[AIRFSM_MAX_CLIENT_ID_LEN + 1];  /* "": the device name */
    /* "One type, one secret": the product's secret, which registers the device once (PROVISION)
     * and earns its DeviceSecret; "": none (device_secret is given). A secret: never logged. */
    char product_secret[AIRFSM_MAX_SECRET_LEN + 1];
    char instance_id[AIRFSM_MAX_INSTANCE_ID_LEN + 1]; /* "": the legacy regional endpoints */

    char apn[AIRFSM_APN_MAX + 1];                  /* "" is legal: the network's default */
    aliyun_sign_method_t sign_method;              /* HTTPS auth, registration, direct sign */
    /* HTTPS: HTTP_AUTH's iotToken (the seed's way); MQTT_SIGN: the CONNECT signs itself, BEARER
     * goes straight to MQTT_CONNECT. */
    airfsm_auth_mode_t auth_mode;
    uint32_t keepalive_s;
    uint32_t baud;
    /* Topic filters subscribed to in MQTT_CONNECT, each in turn (settings.subscribe; the one
     * sub_topic of the Python is subscribe[0] with n_subscribe 1). 0: /{pk}/{dn}/get. */
    char subscribe[AIRFSM_MAX_SUBSCRIPTIONS][AIRFSM_MAX_TOPIC + 1];
    uint8_t n_subscribe;
    uint8_t sub_qos;
    char mqtt_host[AIRFSM_MAX_HOST_LEN + 1];       /* "": the auth reply's, else the region's */
    uint16_t mqtt_port;                            /* 0: the auth reply's, else 1883 */
    uint32_t body_window_ms;
    uint32_t liveness_ms;
    uint32_t silence_limit;
    uint32_t publish_timeout_ms;
    uint32_t puback_timeout_ms;
    uint32_t publish_attempts;
    uint32_t publish_backoff_base_ms;
    uint32_t publish_backoff_cap_ms;
    uint32_t auth_attempts;                        /* 0: the policy's retries + 1 */
    uint32_t token_refresh_ms;
    uint32_t watchdog_ms;                          /* 0: off */
    uint32_t outbox_poll_ms;                       /* 0: off */
    uint32_t jitter_seed;                          /* 0: derived from the device name */
} airfsm_settings_t;

/* airfsm_settings_validate() / airfsm_init(): all settings usable. */
#define AIRFSM_SETTINGS_OK (-1)
/* Otherwise they return the index of the first bad numeric setting in airfsm_settings[]
 * (airfsm_setting_t, 0 .. AIRFSM_SETTING_COUNT - 1), or one of these for the others, checked in
 * the order of Settings.validate(): */
#define AIRFSM_SETTING_IDENTITY 100    /* aliyun_identity_check() refused the device triple */
#define AIRFSM_SETTING_SIGN_METHOD 101
#define AIRFSM_SETTING_APN 102
#define AIRFSM_SETTING_SUBSCRIBE 103   /* 1-8 absolute topic filters, wildcards whole levels */
#define AIRFSM_SETTING_MQTT_HOST 104
#define AIRFSM_SETTING_AUTH_MODE 105   /* checked right after the sign method */

/* Twin: Settings(identity) with every default: the generated airfsm_settings[] defaults, the
 * default APN and sign method; the device triple empty (to be filled in). */
void airfsm_settings_default(airfsm_settings_t *s);

/* Twin: Settings.validate(): AIRFSM_SETTINGS_OK, or what is wrong first (see above). */
int airfsm_settings_validate(const airfsm_settings_t *s);

/* --- hooks (twins: LogHook, the on_message / on_state / hardware_reset callables) ------------- */

/* Twin: codes.LogLevel: Python logging's numbers. */
typedef enum {
    AIRFSM_LOG_DEBUG = 10,
    AIRFSM_LOG_INFO = 20,
    AIRFSM_LOG_WARNING = 30,
    AIRFSM_LOG_ERROR = 40
} airfsm_log_level_t;
#define AIRFSM_LOG_OFF 100 /* twin: hal.LOG_OFF: above every level, nothing is logged */

struct airfsm;

typedef struct {
    void *user; /* handed back to every hook */
    /* Twin: LogHook.__call__: one event as codes (airfsm_log_event_t says what a, b, c and data
     * carry); data is valid during the call only. AIRFSM_LOG_EVENT_SECRET comes whatever the
     * level: its data must never be printed (a = 1: the DeviceSecret, 0: a sign or iotToken). */
    void (*log)(void *user, const struct airfsm *ctx, airfsm_log_level_t level,
                airfsm_log_event_t event, int32_t a, int32_t b, int32_t c, const uint8_t *data,
                size_t len);
    /* Twin: LogHook.level: the lowest level wanted (AIRFSM_LOG_OFF: none). Nothing is built for
     * an event below it. May be changed in airfsm_t.hooks between ticks. */
    int log_level;
    /* Twin: on_message: an inbound +MSUB message (topic without quotes, payload decoded). */
    void (*on_message)(void *user, const uint8_t *topic, size_t topic_len, const uint8_t *payload,
                       size_t len);
    /* Twin: on_state: the machine moved (source, dest, the trigger). */
    void (*on_state)(void *user, airfsm_state_t source, airfsm_state_t dest,
                     airfsm_trigger_t trigger);
    /* Twin: hardware_reset: pulse the module's RESET pin (hold it >= 150 ms). NULL: the HAL's
     * reset_pin, asserted then released (it must hold the pulse itself), if the HAL has one;
     * neither: the board has no reset pin and the controller skips that recovery. */
    void (*hardware_reset)(void *user);
    /* Twin: on_registered: PROVISION passed, `device_secret` is what the register server issued
     * (NUL-terminated, a secret: never log it). Store it where the next start finds it (flash, a
     * 0600 file) and put it in the settings' device_secret then: the server registers a device
     * once. Return false when it could not be stored (logged; the device still connects now).
     * NULL: kept in RAM only (logged as a warning). */
    bool (*on_registered)(void *user, const char *device_secret);
} airfsm_hooks_t;

/* --- the controller's parts (twins: the sub-structs of Controller) ---------------------------- */

/* Twin: controller.StepRunner: where the current state's script is. */
typedef struct {
    uint8_t index;            /* the step of the state's script */
    uint8_t topic;            /* a per_topic step: the subscription it is sent for */
    uint8_t phase;            /* codes.Phase: IDLE, WAIT_FINAL, WAIT_URC, WAIT_UNTIL */
    uint32_t resume_at;       /* WAIT_UNTIL: a backoff or poll interval ends */
    uint32_t urc_deadline;    /* WAIT_URC: the wanted URC is due by then */
    uint32_t polls;           /* NOT_YET answers of this step so far */
    int urc_seen;             /* a wanted/failing URC that came before the final code ... */
    uint8_t urc_seen_line[AIRFSM_URC_LINE_MAX]; /* ... and its line (cut at the buffer's size) */
    size_t urc_seen_len;
    bool body_due;            /* the prompt came: the auth body goes out next */
    uint32_t body_timeout_ms; /* ... and the OK after it is due this long after it */
    int8_t outcome;           /* recorded by callbacks, applied by airfsm_process (-1: none) */
} airfsm_runner_t;

/* Twin: controller.Credentials: what HTTP_AUTH (or PROVISION) produces for MQTT_CONNECT. */
typedef struct {
    /* The DeviceSecret every sign is made with: the configured one, or the one PROVISION earned
     * ("" until then). A secret. */
    char device_secret[AIRFSM_MAX_CREDENTIAL_LEN + 1];
    uint8_t body[AIRFSM_BODY_CAPACITY]; /* the form of this HTTP_AUTH / PROVISION entry */
    size_t body_len;
    char iot_id[AIRFSM_MAX_CREDENTIAL_LEN + 1];
    char iot_token[AIRFSM_MAX_CREDENTIAL_LEN + 1]; /* the MQTT password: a secret */
    char client_id[ALIYUN_MAX_MQTT_CLIENT_ID_LEN + 1]; /* the direct sign's clientId */
    uint32_t token_at;
    bool token_stale;                              /* no token yet, or an old one */
    char reply_host[AIRFSM_MAX_HOST_LEN + 1];      /* the broker the reply named ("": none) */
    uint16_t reply_port;                           /* 0: none */
    uint32_t rejections;                           /* rejected auths since one last passed */
} airfsm_credentials_t;

/* Twin: online.Session: what ONLINE keeps between ticks. */
typedef struct {
    uint8_t pub_phase;           /* codes.PubPhase */
    bool has_pub_message;        /* the head whose sends are counted (its id and QoS) */
    uint32_t pub_message_id;
    uint8_t pub_message_qos;
    uint32_t pub_deadline;       /* WAIT_PUBACK: its PUBACK is due by then */
    uint32_t pub_sends;          /* OK'd QoS1 sends of the head not yet matched to a PUBACK */
    uint32_t attempt_of;         /* the message whose attempt is under way (0: none) */
    uint32_t attempt_no;         /* ... and which attempt of it this is (1 = the first) */
    uint32_t pub_failures;       /* failed attempts in a row: the backoff exponent */
    bool pub_holding;            /* publish backoff: start nothing before pub_hold_until */
    uint32_t pub_hold_until;
    airfsm_reason_t last_failure; /* why the latest attempt failed (kept with a dead letter) */
    int32_t last_failure_detail;
    uint32_t stale_pubacks;      /* PUBACKs still owed to messages already acknowledged */
    uint32_t stale_until;        /* ... expected no later than this */
    bool module_hex;             /* its AT+MQTTMODE */
    bool cache_pending;          /* a `+MSUB: <slot>` notice came: AT+MQTTMSGGET is due */
    uint32_t proof_at;           /* the server last acknowledged a packet of ours */
    uint8_t keepalive_phase;     /* codes.KeepalivePhase */
    uint32_t keepalive_deadline;
    bool keepalive_acked;        /* the SUBACK overtook the OK */
    uint8_t keepalive_topic;     /* the subscription the next keepalive re-subscribes */
    uint32_t next_probe_at;
    bool probe_due;
    bool signal_due;             /* a probe went out: read the signal once the channel is free */
    uint32_t silence;            /* commands unanswered in a row */
    uint32_t ack_owed;           /* acknowledged, not yet deleted (0: none) */
    uint32_t dead_owed;          /* given up on, not yet moved ... */
    airfsm_reason_t dead_reason; /* ... for this reason */
    int32_t dead_detail;
    uint32_t store_failures;     /* refused calls in a row: the backoff exponent */
    bool store_holding;          /* store backoff: no call before store_hold_until */
    uint32_t store_hold_until;
} airfsm_session_t;

/* Twin: counters.Counters: what an operator sees. */
typedef struct {
    uint32_t transitions;
    uint32_t reconnects[AIRFSM_TRIGGER_COUNT]; /* by trigger (escalations and link losses) */
    uint32_t timeouts;
    uint32_t publish_sent;
    uint32_t publish_acked;
    uint32_t publish_retried;
    uint32_t publish_dead;
    uint32_t store_unavailable;
    uint32_t pubacks_ignored;
    uint32_t inbound;
    uint32_t downlinks_truncated;
    uint32_t downlinks_cached;
    uint32_t keepalives;
    uint32_t probes;
    uint32_t internal_errors;
} airfsm_counters_t;

/* The value of one template placeholder: bytes, or a number written as decimal digits. */
typedef struct {
    const uint8_t *text;
    size_t len;
    uint32_t number;
    bool is_number;
} airfsm_value_t;

/* Twin: controller.StepError: the latest step failure, as codes. */
typedef struct {
    bool set;
    airfsm_state_t state;
    uint8_t step;
    airfsm_reason_t reason;
    int32_t detail;
} airfsm_step_error_t;

/* Twin: controller.Controller: one device's connection. Caller-allocated; everything in it
 * belongs to airfsm.c (read it through the functions below; the fields are public only so the
 * struct can be allocated and inspected by tests). */
typedef struct airfsm {
    /* given */
    airfsm_settings_t settings;  /* a copy: the caller's may go */
    hal_t hal;
    airfsm_hooks_t hooks;
    airfsm_outbox_t outbox;

    /* the buffers, and what works in them */
    uint8_t read_buf[AIRFSM_READ_CHUNK];
    uint8_t cmd_buf[AIRFSM_CMD_CAPACITY];
    uint8_t line_buf[AIRFSM_LINE_CAPACITY];
    uint8_t data_buf[AIRFSM_DATA_CAPACITY];
    uint8_t info_arena[AIRFSM_INFO_ARENA];
    airfsm_value_t values[AIRFSM_PLACEHOLDER_COUNT];
    const char *subscriptions[AIRFSM_MAX_SUBSCRIPTIONS]; /* into settings, or default_topic */
    uint8_t n_subscriptions;
    char default_topic[AIRFSM_MAX_TOPIC + 1];            /* /{pk}/{dn}/get */
    char auth_url[AIRFSM_AUTH_URL_MAX + 1];
    char register_url[AIRFSM_REGISTER_URL_MAX + 1];
    char default_host[AIRFSM_MAX_HOST_LEN + 1];          /* {pk}.iot-as-mqtt.{region}... */
    at_channel_t channel;

    /* the machine */
    xorshift32_t rng;
    uint32_t now_ms;
    uint32_t started_at;
    airfsm_state_t state;
    uint32_t entered_at;
    bool state_age_saturated;
    uint32_t attempt;
    airfsm_fail_reason_t fail_reason;
    airfsm_reason_t fail_cause;
    int32_t fail_cause_detail;
    int8_t last_trigger;             /* airfsm_trigger_t, or AIRFSM_NO_TRIGGER: "start" */
    airfsm_step_error_t last_error;
    airfsm_counters_t counters;
    uint32_t escalations;            /* link losses and escalations since ONLINE held */
    uint32_t hardware_resets;        /* RESET-pin pulses since the module last answered */
    bool reset_requested;
    uint32_t offline_since;
    int8_t link_event;               /* raised by a callback, fired by airfsm_process (-1) */
    airfsm_purpose_t purpose;        /* what the command in flight is for */
    airfsm_runner_t runner;

    /* what the steps learned */
    char firmware[AIRFSM_FIRMWARE_TEXT_MAX + 1];
    int32_t firmware_version;
    char imei[AIRFSM_INFO_TEXT_MAX + 1];
    char iccid[AIRFSM_INFO_TEXT_MAX + 1];
    char operator_name[AIRFSM_INFO_TEXT_MAX + 1];
    int32_t access_technology;       /* 27.007 <AcT> of +COPS; -1: unknown */
    int32_t registration;            /* 27.007 <stat> of +CEREG; -1: unknown */
    int32_t rssi;                    /* 0-31, 99: unknown */
    uint32_t signal_at;
    bool signal_read;
    bool signal_age_saturated;
    char ip[AIRFSM_IP_TEXT_MAX + 1];
    int32_t http_status;
    int32_t auth_code;
    airfsm_credentials_t auth;
    union {                          /* the work space of the auth (off the stack) */
        aliyun_auth_reply_t auth;    /* judge_auth's reply scan */
        aliyun_register_reply_t reg; /* judge_register's reply scan */
        aliyun_mqtt_sign_t sign;     /* airfsm_prepare_direct_sign, copied out at once */
    } reply;

    /* ONLINE and shutting down */
    airfsm_session_t session;
    bool port_lost;
    bool stopping;
    bool stopped;

    /* the RAM outbox airfsm_publish() fills (unless another outbox was given) */
    outbox_ring_t ring;
    outbox_slot_t ring_slots[AIRFSM_OUTBOX_SLOTS];
    outbox_dead_t ring_dead[AIRFSM_OUTBOX_SLOTS];
} airfsm_t;

/* --- the API ---------------------------------------------------------------------------------- */

/* Twin: Controller.__init__(port, settings): validate and copy the settings, set everything up
 * over ctx's own buffers; the first tick sends the first command. No hooks, the RAM outbox.
 * Returns AIRFSM_SETTINGS_OK, or (nothing set up) what airfsm_settings_validate() found. */
int airfsm_init(airfsm_t *ctx, const airfsm_settings_t *s, const hal_t *hal, uint32_t now_ms);

/* The same with hooks (NULL: none) and an outbox of the caller's (NULL: the RAM ring in ctx). */
int airfsm_init_ex(airfsm_t *ctx, const airfsm_settings_t *s, const hal_t *hal,
                   const airfsm_hooks_t *hooks, const airfsm_outbox_t *outbox, uint32_t now_ms);

/* Twin: Controller.tick(): do everything due at now_ms; the next time a tick is needed. */
uint32_t airfsm_tick(airfsm_t *ctx, uint32_t now_ms);

/* Twin: Controller.next_deadline(): what the last tick returned (never earlier than its now). */
uint32_t airfsm_next_deadline(const airfsm_t *ctx);

/* Why airfsm_publish() refused. */
#define AIRFSM_PUBLISH_BAD_TOPIC (-1)   /* empty, or a quote/CR/LF/NUL, or not publishable */
#define AIRFSM_PUBLISH_BAD_QOS (-2)
#define AIRFSM_PUBLISH_UNSENDABLE (-3)  /* the payload travels neither as text nor as hex */
#define AIRFSM_PUBLISH_FULL (-4)        /* the RAM outbox is full: keep it and try later */
#define AIRFSM_PUBLISH_TOO_LONG (-5)    /* longer than a RAM outbox slot */
#define AIRFSM_PUBLISH_NOT_WRITABLE (-6) /* the controller publishes from the caller's outbox */

/* Twin: Controller.publish(): queue a message in the RAM outbox for ONLINE. A relative topic
 * (no leading /) is under /{pk}/{dn}/. The message id (> 0), or an AIRFSM_PUBLISH_* code. */
int32_t airfsm_publish(airfsm_t *ctx, const char *topic, const uint8_t *data, size_t len,
                       uint8_t qos);

/* Twin: aliyun.resolve_topic(pk, dn, topic): an absolute topic as is, a relative one under
 * /{pk}/{dn}/, into out (NUL-terminated, its length in *len); false for an empty topic, one
 * with a quote, CR or LF, or one that does not fit `cap`. For a host outbox's enqueue. */
bool airfsm_resolve_topic(const airfsm_t *ctx, const char *topic, char *out, size_t cap,
                          size_t *len);

/* Twin: Controller.request_stop(): take no new message, finish the one in flight, then
 * AT+MDISCONNECT; airfsm_stopped() turns true when done. */
void airfsm_request_stop(airfsm_t *ctx);

/* Twin: Controller.replace_port(): a lost port was reopened: start over from AUTOBAUD on it. */
void airfsm_replace_port(airfsm_t *ctx, const hal_t *hal, uint32_t now_ms);

/* Twins: Controller.state, .online, .failed, .stopped, .fail_reason, .attempt. */
airfsm_state_t airfsm_state(const airfsm_t *ctx);
bool airfsm_online(const airfsm_t *ctx);
bool airfsm_failed(const airfsm_t *ctx);
bool airfsm_stopped(const airfsm_t *ctx);
airfsm_fail_reason_t airfsm_fail_reason(const airfsm_t *ctx);
uint32_t airfsm_attempt(const airfsm_t *ctx);

/* Twin: Controller.counters.publish_acked: messages delivered (PUBACK, or QoS0 OK). */
uint32_t airfsm_acked_count(const airfsm_t *ctx);

/* Twin: Controller.counters. */
const airfsm_counters_t *airfsm_counters(const airfsm_t *ctx);

/* Twin: Controller.state_age_ms(): how long the state has been held, saturating at 2^31-1. */
uint32_t airfsm_state_age_ms(const airfsm_t *ctx);

/* Twin: Controller.signal_age_ms(): how old the signal reading is; -1: never read. */
int32_t airfsm_signal_age_ms(const airfsm_t *ctx);

/* Twin: Controller.pub_phase: 0 nothing in flight, 1 AT+MPUB sent, 2 awaiting its PUBACK. */
uint8_t airfsm_pub_phase(const airfsm_t *ctx);

/* Twin: Controller.step_name(): the current step's name, NULL in ONLINE/FAILED/past the end. */
const char *airfsm_step_name(const airfsm_t *ctx);

/* Twin: controller.age_ms(): now - since on the 32-bit clock, at most 2^31-1. */
uint32_t airfsm_age_ms(uint32_t now_ms, uint32_t since_ms, bool saturated);

#endif /* AIRFSM_H */
