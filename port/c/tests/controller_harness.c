/* controller_harness.c: the C controller (core/airfsm.c) driven by a conversation on stdin, to
 * run in lockstep with the Python controller (tests/ctwin.py prints the same lines for
 * airfsm/core/controller.py; tests/test_c_lockstep.py compares them after every request).
 *
 * The controller runs on an in-memory line (the twin of airfsm.host.serial.MemoryPort: bytes
 * the module sent wait until a tick reads them; once the module end is unplugged, what waits is
 * still read, then reads and writes fail) and a host outbox through the vtable (the twin of
 * tests.reliability.subject.WatchedOutbox: the RAM ring of outbox.c, `capacity` slots, whose
 * calls can be made to fail). Byte strings are "x<hex>" (harness_io.h).
 *
 * Requests, one a line; each answer ends with a line "." :
 *   set <name> <value>        a setting (strings as x<hex>); sub <x-topic> adds a subscription
 *   defaults / validate       airfsm_settings_default() / "valid <airfsm_settings_validate()>"
 *   init <now> <reset> <capacity> [<registered> <wall>]  airfsm_init_ex() over a host outbox
 *                             of `capacity` slots (0: the RAM ring inside airfsm_t, filled by
 *                             airfsm_publish(), its calls printed all the same); reset 1: a
 *                             RESET pin pulsed by the hardware_reset hook, 2: by the HAL's
 *                             reset_pin (no hook); registered 0: no on_registered hook, 1: one
 *                             that keeps the secret, 2: one that fails to; wall 0: no
 *                             wall_clock_ms in the HAL, else it answers wall + now (Unix ms)
 *   rx <bytes>                the module sent these (dropped while unplugged)
 *   tick <now>                airfsm_tick()
 *   publish <x-topic> <qos> <bytes>   resolve the topic and enqueue (Controller.publish)
 *   stop                      airfsm_request_stop()
 *   unplug / replug <now>     the line vanishes / a new line: airfsm_replace_port()
 *   fail <call> <count>, heal the next count outbox calls (peek, mark_attempt, ack, dead_letter,
 *                             write = the three writes) refuse / all work again
 * Answer lines, as things happen:
 *   init <result>
 *   tx <state> <bytes>        a write that reached the line, with the state at the write
 *   log <level> <event> <a> <b> <c> <data>
 *   state <source> <dest> <trigger>
 *   msg <topic> <payload>
 *   reset                     the RESET pin was pulsed
 *   registered <secret>       the on_registered hook got this DeviceSecret
 *   outbox peek <id|-|unavailable>, outbox mark <id> <attempts|unavailable>,
 *   outbox ack <id>[ unavailable], outbox dead <id> <reason> <detail>[ unavailable]
 *   published <id> | refused
 *   next <deadline> <state> <step|-> <command deadline|-> <input pending 0|1>   (after tick)
 */
#include <stdbool.h>

#include "../core/airfsm.h"
#include "harness_io.h"

#define MAX_TOKENS 8
#define LINE_MAX_BYTES (1u << 20)

static airfsm_t ctl;
static airfsm_settings_t settings;
static bool initialised;

/* --- the line (MemoryPort) ----------------------------------------------------------------- */

static uint8_t *pending;
static size_t pending_head, pending_len;
static bool unplugged;

static int32_t line_read(void *ctx, uint8_t *buf, size_t n)
{
    (void)ctx;
    if (n > pending_len) {
        n = pending_len;
    }
    if (n > 0) {
        memcpy(buf, pending + pending_head, n);
        pending_head += n;
        pending_len -= n;
        return (int32_t)n;
    }
    return unplugged ? HAL_PORT_LOST : 0;
}

static int32_t line_write(void *ctx, const uint8_t *buf, size_t n)
{
    (void)ctx;
    if (unplugged) {
        return HAL_PORT_LOST;
    }
    printf("tx %d ", (int)airfsm_state(&ctl));
    field_print(buf, n);
    putchar('\n');
    return (int32_t)n;
}

static uint32_t line_millis(void *ctx)
{
    (void)ctx;
    return ctl.now_ms;
}

static uint64_t wall_base; /* 0: the HAL has no wall clock */

static uint64_t line_wall_clock(void *ctx)
{
    (void)ctx;
    return wall_base + ctl.now_ms;
}

static bool hal_pin; /* the board's RESET pin is the HAL's reset_pin */

/* The pin asserted, then released: one pulse, printed as the hook's is. */
static void line_reset_pin(void *ctx, bool asserted)
{
    (void)ctx;
    if (asserted) {
        printf("reset\n");
    }
}

static hal_t line_hal(void)
{
    hal_t hal;
    memset(&hal, 0, sizeof hal);
    hal.uart_read = line_read;
    hal.uart_write = line_write;
    hal.millis = line_millis;
    hal.reset_pin = hal_pin ? line_reset_pin : NULL;
    hal.wall_clock_ms = wall_base != 0 ? line_wall_clock : NULL;
    return hal;
}

static void line_receive(const uint8_t *bytes, size_t len)
{
    if (unplugged) {
        return;
    }
    if (pending_head > 0) {
        memmove(pending, pending + pending_head, pending_len);
        pending_head = 0;
    }
    if (pending_len + len > LINE_MAX_BYTES) {
        fprintf(stderr, "controller-harness: line buffer full\n");
        exit(2);
    }
    memcpy(pending + pending_len, bytes, len);
    pending_len += len;
}

/* --- the outbox (WatchedOutbox) ------------------------------------------------------------ */

static outbox_ring_t ring;
static airfsm_outbox_t ring_calls; /* the ring behind the printing calls */
static bool ram;                   /* the RAM ring of airfsm_t, airfsm_publish() */
static unsigned failing[4]; /* peek, mark_attempt, ack, dead_letter */

static bool refuses(int call)
{
    if (failing[call] > 0) {
        failing[call]--;
        return true;
    }
    return false;
}

static airfsm_outbox_status_t box_peek(void *store, airfsm_message_t *out)
{
    airfsm_outbox_status_t status;
    (void)store;
    if (refuses(0)) {
        printf("outbox peek unavailable\n");
        return AIRFSM_OUTBOX_STATUS_UNAVAILABLE;
    }
    status = outbox_peek(&ring_calls, out);
    if (status == AIRFSM_OUTBOX_STATUS_OK) {
        printf("outbox peek %u\n", (unsigned)out->id);
    } else {
        printf("outbox peek -\n");
    }
    return status;
}

static airfsm_outbox_status_t box_mark_attempt(void *store, uint32_t id, uint32_t *attempts)
{
    (void)store;
    if (refuses(1)) {
        printf("outbox mark %u unavailable\n", (unsigned)id);
        return AIRFSM_OUTBOX_STATUS_UNAVAILABLE;
    }
    (void)outbox_mark_attempt(&ring_calls, id, attempts);
    printf("outbox mark %u %u\n", (unsigned)id, (unsigned)*attempts);
    return AIRFSM_OUTBOX_STATUS_OK;
}

static airfsm_outbox_status_t box_ack(void *store, uint32_t id)
{
    (void)store;
    if (refuses(2)) {
        printf("outbox ack %u unavailable\n", (unsigned)id);
        return AIRFSM_OUTBOX_STATUS_UNAVAILABLE;
    }
    printf("outbox ack %u\n", (unsigned)id);
    return outbox_ack(&ring_calls, id);
}

static airfsm_outbox_status_t box_dead_letter(void *store, uint32_t id, airfsm_reason_t reason,
                                              int32_t detail)
{
    (void)store;
    if (refuses(3)) {
        printf("outbox dead %u %d %d unavailable\n", (unsigned)id, (int)reason, (int)detail);
        return AIRFSM_OUTBOX_STATUS_UNAVAILABLE;
    }
    printf("outbox dead %u %d %d\n", (unsigned)id, (int)reason, (int)detail);
    return outbox_dead_letter(&ring_calls, id, reason, detail);
}

static const airfsm_outbox_ops_t BOX_OPS = {box_peek, box_mark_attempt, box_ack,
                                            box_dead_letter};

/* --- the hooks ----------------------------------------------------------------------------- */

static void on_log(void *user, const airfsm_t *c, airfsm_log_level_t level,
                   airfsm_log_event_t event, int32_t a, int32_t b, int32_t cc,
                   const uint8_t *data, size_t len)
{
    (void)user;
    (void)c;
    printf("log %d %d %d %d %d ", (int)level, (int)event, (int)a, (int)b, (int)cc);
    field_print(data, data != NULL ? len : 0);
    putchar('\n');
}

static void on_message(void *user, const uint8_t *topic, size_t topic_len,
                       const uint8_t *payload, size_t len)
{
    (void)user;
    printf("msg ");
    field_print(topic, topic_len);
    putchar(' ');
    field_print(payload, len);
    putchar('\n');
}

static void on_state(void *user, airfsm_state_t source, airfsm_state_t dest,
                     airfsm_trigger_t trigger)
{
    (void)user;
    printf("state %d %d %d\n", (int)source, (int)dest, (int)trigger);
}

static void on_reset(void *user)
{
    (void)user;
    printf("reset\n");
}

static bool registered_keeps; /* the on_registered hook stores the secret (else it fails) */

static bool on_registered(void *user, const char *device_secret)
{
    (void)user;
    printf("registered ");
    field_print(device_secret, strlen(device_secret));
    putchar('\n');
    return registered_keeps;
}

/* --- settings ------------------------------------------------------------------------------ */

static void copy_text(char *out, size_t cap, const field_t *f)
{
    if (f->len >= cap) {
        fprintf(stderr, "controller-harness: setting too long\n");
        exit(2);
    }
    memcpy(out, f->bytes, f->len);
    out[f->len] = '\0';
}

static void set_setting(const char *name, const char *value)
{
    field_t f = {NULL, 0};
    uint32_t n = (uint32_t)strtoul(value, NULL, 10);
    airfsm_settings_t *s = &settings;

#define TEXT(field)                                                                            \
    if (strcmp(name, #field) == 0) {                                                           \
        if (field_decode(value, &f) != 0) {                                                    \
            exit(2);                                                                           \
        }                                                                                      \
        copy_text(s->field, sizeof s->field, &f);                                              \
        free(f.bytes);                                                                         \
        return;                                                                                \
    }
#define NUMBER(field, type)                                                                    \
    if (strcmp(name, #field) == 0) {                                                           \
        s->field = (type)n;                                                                    \
        return;                                                                                \
    }
    TEXT(product_key)
    TEXT(device_name)
    TEXT(device_secret)
    TEXT(region)
    TEXT(client_id)
    TEXT(product_secret)
    TEXT(instance_id)
    TEXT(apn)
    TEXT(mqtt_host)
    NUMBER(sign_method, aliyun_sign_method_t)
    NUMBER(auth_mode, airfsm_auth_mode_t)
    NUMBER(keepalive_s, uint32_t)
    NUMBER(baud, uint32_t)
    NUMBER(sub_qos, uint8_t)
    NUMBER(mqtt_port, uint16_t)
    NUMBER(body_window_ms, uint32_t)
    NUMBER(liveness_ms, uint32_t)
    NUMBER(silence_limit, uint32_t)
    NUMBER(publish_timeout_ms, uint32_t)
    NUMBER(puback_timeout_ms, uint32_t)
    NUMBER(publish_attempts, uint32_t)
    NUMBER(publish_backoff_base_ms, uint32_t)
    NUMBER(publish_backoff_cap_ms, uint32_t)
    NUMBER(auth_attempts, uint32_t)
    NUMBER(token_refresh_ms, uint32_t)
    NUMBER(watchdog_ms, uint32_t)
    NUMBER(outbox_poll_ms, uint32_t)
    NUMBER(jitter_seed, uint32_t)
#undef TEXT
#undef NUMBER
    fprintf(stderr, "controller-harness: unknown setting %s\n", name);
    exit(2);
}

/* --- requests ------------------------------------------------------------------------------ */

static void print_next(uint32_t deadline)
{
    const char *step = airfsm_step_name(&ctl);
    uint32_t command_deadline;

    printf("next %u %d %s ", (unsigned)deadline, (int)airfsm_state(&ctl), step ? step : "-");
    if (at_deadline(&ctl.channel, &command_deadline)) {
        printf("%u", (unsigned)command_deadline);
    } else {
        printf("-");
    }
    printf(" %d\n", pending_len > 0 ? 1 : 0);
}

static void publish(const char *topic_token, const char *qos_token, const char *payload_token)
{
    field_t topic = {NULL, 0}, payload = {NULL, 0};
    char resolved[AIRFSM_MAX_TOPIC + 2];
    size_t len = 0;
    int32_t id = -1;

    if (field_decode(topic_token, &topic) != 0 || field_decode(payload_token, &payload) != 0) {
        exit(2);
    }
    if (ram) {
        id = memchr(topic.bytes, 0, topic.len) != NULL
                 ? AIRFSM_PUBLISH_BAD_TOPIC
                 : airfsm_publish(&ctl, (const char *)topic.bytes, payload.bytes, payload.len,
                                  (uint8_t)strtol(qos_token, NULL, 10));
    } else if (memchr(topic.bytes, 0, topic.len) == NULL &&
        airfsm_resolve_topic(&ctl, (const char *)topic.bytes, resolved, sizeof resolved, &len)) {
        id = outbox_enqueue(&ring, (const uint8_t *)resolved, len, payload.bytes, payload.len,
                            (int32_t)strtol(qos_token, NULL, 10));
    }
    if (id > 0) {
        printf("published %d\n", (int)id);
    } else {
        printf("refused\n");
    }
    free(topic.bytes);
    free(payload.bytes);
}

static void fail(const char *call, unsigned count)
{
    if (strcmp(call, "write") == 0) {
        failing[1] += count;
        failing[2] += count;
        failing[3] += count;
    } else if (strcmp(call, "peek") == 0) {
        failing[0] += count;
    } else if (strcmp(call, "mark_attempt") == 0) {
        failing[1] += count;
    } else if (strcmp(call, "ack") == 0) {
        failing[2] += count;
    } else if (strcmp(call, "dead_letter") == 0) {
        failing[3] += count;
    }
}

static void init(uint32_t now, int reset_pin, size_t capacity, int registered, uint64_t wall)
{
    static outbox_slot_t *slots;
    static outbox_dead_t *dead;
    airfsm_hooks_t hooks;
    airfsm_outbox_t box;
    hal_t hal;
    int result;

    hal_pin = reset_pin == 2;
    wall_base = wall;
    hal = line_hal();

    ram = capacity == 0;
    if (!ram) {
        slots = calloc(capacity, sizeof *slots);
        dead = calloc(capacity, sizeof *dead);
        if (slots == NULL || dead == NULL) {
            exit(2);
        }
        outbox_ring_init(&ring, slots, dead, capacity);
        ring_calls = outbox_ring_outbox(&ring);
    }
    box.ops = &BOX_OPS;
    box.store = &ring;
    memset(&hooks, 0, sizeof hooks);
    hooks.log = on_log;
    hooks.log_level = AIRFSM_LOG_DEBUG;
    hooks.on_message = on_message;
    hooks.on_state = on_state;
    hooks.hardware_reset = reset_pin == 1 ? on_reset : NULL;
    hooks.on_registered = registered != 0 ? on_registered : NULL;
    registered_keeps = registered == 1;
    result = airfsm_init_ex(&ctl, &settings, &hal, &hooks, ram ? NULL : &box, now);
    if (ram && result == AIRFSM_SETTINGS_OK) {
        /* the same ring, its calls printed: airfsm_publish() still fills it (store == ring) */
        ring_calls = outbox_ring_outbox(&ctl.ring);
        ctl.outbox.ops = &BOX_OPS;
    }
    printf("init %d\n", result);
    initialised = result == AIRFSM_SETTINGS_OK;
}

int main(void)
{
    char *line = NULL, *tokens[MAX_TOKENS];
    size_t cap = 0;
    ssize_t got;

    pending = malloc(LINE_MAX_BYTES);
    if (pending == NULL) {
        return 2;
    }
    airfsm_settings_default(&settings);
    while ((got = getline(&line, &cap, stdin)) >= 0) {
        size_t n = split(line, tokens, MAX_TOKENS);
        const char *what = n > 0 ? tokens[0] : "";
        (void)got;
        if (n == 0) {
            continue;
        }
        if (strcmp(what, "set") == 0 && n == 3) {
            set_setting(tokens[1], tokens[2]);
        } else if (strcmp(what, "sub") == 0 && n == 2) {
            field_t f = {NULL, 0};
            if (field_decode(tokens[1], &f) != 0 || settings.n_subscribe >= AIRFSM_MAX_SUBSCRIPTIONS) {
                return 2;
            }
            copy_text(settings.subscribe[settings.n_subscribe++], AIRFSM_MAX_TOPIC + 1, &f);
            free(f.bytes);
        } else if (strcmp(what, "defaults") == 0) {
            airfsm_settings_default(&settings);
        } else if (strcmp(what, "validate") == 0) {
            printf("valid %d\n", airfsm_settings_validate(&settings));
        } else if (strcmp(what, "init") == 0 && (n == 4 || n == 6)) {
            init((uint32_t)strtoul(tokens[1], NULL, 10), (int)strtol(tokens[2], NULL, 10),
                 (size_t)strtoul(tokens[3], NULL, 10),
                 n == 6 ? (int)strtol(tokens[4], NULL, 10) : 0,
                 n == 6 ? (uint64_t)strtoull(tokens[5], NULL, 10) : 0);
        } else if (!initialised) {
            fprintf(stderr, "controller-harness: %s before a good init\n", what);
            return 2;
        } else if (strcmp(what, "rx") == 0 && n == 2) {
            field_t f = {NULL, 0};
            if (field_decode(tokens[1], &f) != 0) {
                return 2;
            }
            line_receive(f.bytes, f.len);
            free(f.bytes);
        } else if (strcmp(what, "tick") == 0 && n == 2) {
            print_next(airfsm_tick(&ctl, (uint32_t)strtoul(tokens[1], NULL, 10)));
        } else if (strcmp(what, "publish") == 0 && n == 4) {
            publish(tokens[1], tokens[2], tokens[3]);
        } else if (strcmp(what, "stop") == 0) {
            airfsm_request_stop(&ctl);
        } else if (strcmp(what, "unplug") == 0) {
            unplugged = true;
        } else if (strcmp(what, "replug") == 0 && n == 2) {
            hal_t hal = line_hal();
            unplugged = false;
            pending_head = pending_len = 0;
            airfsm_replace_port(&ctl, &hal, (uint32_t)strtoul(tokens[1], NULL, 10));
        } else if (strcmp(what, "fail") == 0 && n == 3) {
            fail(tokens[1], (unsigned)strtoul(tokens[2], NULL, 10));
        } else if (strcmp(what, "heal") == 0) {
            memset(failing, 0, sizeof failing);
        } else {
            fprintf(stderr, "controller-harness: bad request: %s\n", what);
            return 2;
        }
        printf(".\n");
        fflush(stdout);
    }
    free(line);
    free(pending);
    return 0;
}
