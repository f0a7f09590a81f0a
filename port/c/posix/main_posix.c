/* airfsm-c: the C controller on a serial port, the twin of `airfsm connect` (airfsm/cli/connect.py).
 *
 *   airfsm-c --port PATH --product-key PK --device-name DN [--region R] [--timeout S]
 *            [--baud B] [--auth-attempts N] [--publish TOPIC=TEXT ...] [--qos 0|1]
 *            [--log-level LEVEL] [--instance-id ID] [--auth https|mqtt-sign]
 *            [--secret-file PATH] [--timestamps]
 *
 * Brings the module ONLINE once and exits 0, printing `online in 3.2 s: PK/DN via PATH`. With
 * --publish (repeatable) it then queues each message (a relative TOPIC is under /PK/DN/) and
 * exits 0 once every one is acknowledged (PUBACK for QoS 1, the default; AT+MPUB's OK for QoS 0),
 * printing `published N`. The DeviceSecret comes from AIRFSM_DEVICE_SECRET only: never from the
 * command line, never printed. Dynamic registration ("one type, one secret"): with
 * AIRFSM_PRODUCT_SECRET and no DeviceSecret the device registers (PROVISION) and the secret the
 * server issues is written to --secret-file (mode 0600, replaced atomically), which the next
 * start reads when AIRFSM_DEVICE_SECRET is not set. --timestamps puts the system's clock
 * (CLOCK_REALTIME) into the auth form and the direct sign.
 *
 * Exit codes are those of `airfsm connect` (airfsm/host/errors.py): 0 online (and published),
 * 2 bad arguments (one line), 3 the port cannot be opened or vanished, 4 firmware older than
 * V409, 5 the auth server rejected the device, 6 not done within --timeout, 7 the module never
 * answered AT, 1 another failure (a --publish message given up after its attempts, say). Every
 * failure is one line on stderr.
 *
 * The loop is the one a firmware runs: airfsm_tick() returns the time it next needs to run, and
 * the process sleeps in poll() until then, until the --timeout deadline, or until the module
 * sends a byte, whichever comes first. The controller's log hook (codes) is rendered to stderr
 * here, with every secret it announced (AIRFSM_LOG_EVENT_SECRET) masked wherever it appears.
 */
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "airfsm.h"
#include "hal_posix.h"
#include "timebase.h"

enum { EXIT_OK = 0, EXIT_OTHER = 1, EXIT_USAGE = 2, EXIT_PORT = 3, EXIT_FIRMWARE = 4,
       EXIT_CREDENTIALS = 5, EXIT_TIMEOUT = 6, EXIT_NO_RESPONSE = 7, EXIT_INTERNAL = 70 };

#define PROGRAM "airfsm-c"
#define MAX_PUBLISH 16
#define MAX_TIMEOUT_S 2147483.0 /* cli.common.MAX_TIMEOUT_S: the longest wrap-safe interval */
#define LASTING_SECRETS 3       /* the DeviceSecret, the ProductSecret, a registered secret */
#define SECRETS_KEPT (LASTING_SECRETS + 3) /* ... and the newest signs and iotTokens */
#define LOG_LINE_MAX 1200       /* longer lines are cut (an AT+MPUB may be 1169 bytes) */

static const char usage_text[] =
    "usage: " PROGRAM " --port PATH --product-key PK --device-name DN [--region R]\n"
    "       [--timeout S] [--baud B] [--auth-attempts N] [--publish TOPIC=TEXT ...]\n"
    "       [--qos 0|1] [--log-level debug|info|warning|error] [--instance-id ID]\n"
    "       [--auth https|mqtt-sign] [--secret-file PATH] [--timestamps]\n"
    "The DeviceSecret is read from AIRFSM_DEVICE_SECRET, else from --secret-file; with\n"
    "AIRFSM_PRODUCT_SECRET and neither, the device registers and keeps it in --secret-file.\n"
    "Exit: 0 online (and published), 2 usage, 3 port, 4 firmware older than V409,\n"
    "5 credentials rejected, 6 timeout, 7 no answer to AT.\n";

typedef struct {
    const char *topic;
    const char *text;
} publish_t;

typedef struct {
    const char *port;
    const char *product_key;
    const char *device_name;
    const char *region;
    double timeout_s;
    uint32_t baud;
    uint32_t auth_attempts; /* 0: the table's */
    publish_t publish[MAX_PUBLISH];
    size_t n_publish;
    uint8_t qos;
    hal_log_level_t log_level;
    const char *instance_id;
    airfsm_auth_mode_t auth_mode;
    const char *secret_file; /* where a registered DeviceSecret is kept (NULL: not kept) */
    bool timestamps;         /* the system clock into the signs */
} options_t;

/* --- arguments ---------------------------------------------------------------------------- */

static int usage(const char *why, const char *detail)
{
    fprintf(stderr, PROGRAM ": %s%s (see " PROGRAM " --help)\n", why, detail);
    return EXIT_USAGE;
}

/* The option's name, for an error line: everything before an `=`, so a value glued to it (a
 * secret, say) is never echoed; arguments that are not options are never echoed at all. */
static const char *option_name(const char *arg, char *out, size_t cap)
{
    size_t n = strcspn(arg, "=");

    if (strncmp(arg, "--", 2) != 0) {
        return "a stray argument";
    }
    if (n >= cap) {
        n = cap - 1;
    }
    memcpy(out, arg, n);
    out[n] = '\0';
    return out;
}

static bool parse_level(const char *text, hal_log_level_t *level)
{
    static const char *const names[] = {"debug", "info", "warning", "error"};
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(text, names[i]) == 0) {
            *level = (hal_log_level_t)i;
            return true;
        }
    }
    return false;
}

/* 0, or an exit code (EXIT_USAGE after its one line; EXIT_OK after --help). */
static int parse_args(int argc, char **argv, options_t *o, bool *help)
{
    int i;

    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        char name[40];

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *help = true;
            return EXIT_OK;
        }
        if (strcmp(arg, "--timestamps") == 0) {
            o->timestamps = true;
            continue;
        }
        if (strncmp(arg, "--device-secret", 15) == 0 || strcmp(arg, "--secret") == 0 ||
            strncmp(arg, "--secret=", 9) == 0) {
            return usage("the DeviceSecret is never given on the command line: set "
                         "AIRFSM_DEVICE_SECRET", "");
        }
        if (strncmp(arg, "--product-secret", 16) == 0) {
            return usage("the ProductSecret is never given on the command line: set "
                         "AIRFSM_PRODUCT_SECRET", "");
        }
        if (strncmp(arg, "--", 2) != 0 || strchr(arg, '=') != NULL) {
            return usage("unknown argument: ", option_name(arg, name, sizeof name));
        }
        if (strcmp(arg, "--port") != 0 && strcmp(arg, "--product-key") != 0 &&
            strcmp(arg, "--device-name") != 0 && strcmp(arg, "--region") != 0 &&
            strcmp(arg, "--timeout") != 0 && strcmp(arg, "--baud") != 0 &&
            strcmp(arg, "--auth-attempts") != 0 &&
            strcmp(arg, "--publish") != 0 && strcmp(arg, "--qos") != 0 &&
            strcmp(arg, "--log-level") != 0 && strcmp(arg, "--instance-id") != 0 &&
            strcmp(arg, "--auth") != 0 && strcmp(arg, "--secret-file") != 0) {
            return usage("unknown argument: ", option_name(arg, name, sizeof name));
        }
        if (value == NULL) {
            return usage(arg, " needs a value");
        }
        i++;
        if (strcmp(arg, "--port") == 0) {
            o->port = value;
        } else if (strcmp(arg, "--product-key") == 0) {
            o->product_key = value;
        } else if (strcmp(arg, "--device-name") == 0) {
            o->device_name = value;
        } else if (strcmp(arg, "--region") == 0) {
            o->region = value;
        } else if (strcmp(arg, "--timeout") == 0) {
            char *end;
            o->timeout_s = strtod(value, &end);
            if (*end != '\0' || !(o->timeout_s > 0 && o->timeout_s <= MAX_TIMEOUT_S)) {
                return usage("--timeout takes a number of seconds, 0 < S <= 2147483", "");
            }
        } else if (strcmp(arg, "--baud") == 0) {
            char *end;
            unsigned long baud = strtoul(value, &end, 10);
            if (*end != '\0' || baud > 4000000ul || !hal_posix_baud_supported((uint32_t)baud)) {
                return usage("--baud takes a standard rate: 9600, 19200, 38400, 57600, 115200, "
                             "230400, 460800 or 921600", "");
            }
            o->baud = (uint32_t)baud;
        } else if (strcmp(arg, "--auth-attempts") == 0) {
            char *end;
            unsigned long n = strtoul(value, &end, 10);
            if (*end != '\0' || value[0] == '-' || n < 1 || n > 100) {
                return usage("--auth-attempts takes 1-100", "");
            }
            o->auth_attempts = (uint32_t)n;
        } else if (strcmp(arg, "--publish") == 0) {
            const char *equals = strchr(value, '=');
            if (equals == NULL || equals == value) {
                return usage("--publish takes TOPIC=TEXT", "");
            }
            if (o->n_publish == MAX_PUBLISH) {
                return usage("at most 16 --publish", "");
            }
            o->publish[o->n_publish].topic = value;
            o->publish[o->n_publish].text = equals + 1;
            o->n_publish++;
        } else if (strcmp(arg, "--instance-id") == 0) {
            o->instance_id = value;
        } else if (strcmp(arg, "--secret-file") == 0) {
            o->secret_file = value;
        } else if (strcmp(arg, "--auth") == 0) {
            if (strcmp(value, "https") == 0) {
                o->auth_mode = AIRFSM_AUTH_MODE_HTTPS;
            } else if (strcmp(value, "mqtt-sign") == 0) {
                o->auth_mode = AIRFSM_AUTH_MODE_MQTT_SIGN;
            } else {
                return usage("--auth must be https or mqtt-sign", "");
            }
        } else if (strcmp(arg, "--qos") == 0) {
            if (strcmp(value, "0") != 0 && strcmp(value, "1") != 0) {
                return usage("--qos must be 0 or 1", "");
            }
            o->qos = (uint8_t)(value[0] - '0');
        } else if (!parse_level(value, &o->log_level)) {
            return usage("--log-level must be debug, info, warning or error", "");
        }
    }
    if (o->port == NULL) {
        return usage("--port is required", "");
    }
    if (o->product_key == NULL || o->device_name == NULL) {
        return usage("--product-key and --device-name are required", "");
    }
    return -1;
}

/* Copy text into a settings field of `cap` bytes (its NUL included); false if it is too long. */
static bool set_text(char *field, size_t cap, const char *text)
{
    size_t n = strlen(text);

    if (n >= cap) {
        return false;
    }
    memcpy(field, text, n + 1);
    return true;
}

/* The one line for a setting airfsm_init() refused (what it is, never a secret's value). */
static const char *settings_problem(int code, const airfsm_settings_t *s)
{
    static char line[160];

    if (code == AIRFSM_SETTING_IDENTITY) {
        aliyun_identity_t identity;
        identity.product_key = s->product_key;
        identity.device_name = s->device_name;
        identity.device_secret = s->device_secret;
        identity.region = s->region[0] != '\0' ? s->region : NULL;
        identity.client_id = s->client_id[0] != '\0' ? s->client_id : NULL;
        identity.product_secret = s->product_secret;
        identity.instance_id = s->instance_id;
        switch (aliyun_identity_check(&identity)) {
        case ALIYUN_BAD_PRODUCT_KEY:
            return "--product-key must be 1-64 letters or digits";
        case ALIYUN_BAD_DEVICE_NAME:
            return "--device-name must be 4-32 of letters, digits and _ . @ : -";
        case ALIYUN_BAD_DEVICE_SECRET:
            return "AIRFSM_DEVICE_SECRET must be printable ASCII without quotes";
        case ALIYUN_BAD_REGION:
            return "--region must be 1-64 of lowercase letters, digits and -";
        case ALIYUN_BAD_PRODUCT_SECRET:
            return "AIRFSM_PRODUCT_SECRET must be printable ASCII without quotes";
        case ALIYUN_BAD_INSTANCE_ID:
            return "--instance-id must be 1-64 letters, digits and - (e.g. iot-06z00ax1o4qxxxx)";
        default:
            return "the device identity is not usable";
        }
    }
    if (code >= 0 && code < (int)AIRFSM_SETTING_COUNT) {
        snprintf(line, sizeof line, "setting %s is out of range", airfsm_settings[code].name);
        return line;
    }
    snprintf(line, sizeof line, "the settings are not usable (code %d)", code);
    return line;
}

/* --- the log hook: codes to one line each, secrets masked ---------------------------------- */

typedef struct {
    hal_t hal;
    char secrets[SECRETS_KEPT][AIRFSM_MAX_CREDENTIAL_LEN + 1]; /* the lasting ones first */
    size_t lasting;                                            /* lasting slots used */
    size_t next_secret; /* the next of the session slots to reuse */
} logger_t;

/* Twin of log.register_secret: the lasting ones (the DeviceSecret, the ProductSecret, the
 * DeviceSecret a registration issued) are kept for good, the newest others in turn. */
static void keep_secret(logger_t *logger, int32_t permanent, const uint8_t *data, size_t len)
{
    size_t slot;

    if (len == 0 || len > AIRFSM_MAX_CREDENTIAL_LEN) {
        return;
    }
    if (permanent) {
        /* the controller announces at most LASTING_SECRETS; another replaces the last */
        slot = logger->lasting < LASTING_SECRETS ? logger->lasting++ : LASTING_SECRETS - 1;
    } else {
        slot = LASTING_SECRETS + logger->next_secret;
        logger->next_secret = (logger->next_secret + 1) % (SECRETS_KEPT - LASTING_SECRETS);
    }
    memcpy(logger->secrets[slot], data, len);
    logger->secrets[slot][len] = '\0';
}

/* Append data to line as text: printable ASCII as is, anything else as \xNN, every secret the
 * logger knows as *** (twin of log.redact). */
static void add_data(const logger_t *logger, char *line, size_t cap, const uint8_t *data,
                     size_t len)
{
    size_t at = strlen(line);
    size_t i = 0;

    while (i < len && at + 5 < cap) {
        size_t s, masked = 0;
        for (s = 0; s < SECRETS_KEPT && masked == 0; s++) {
            size_t n = strlen(logger->secrets[s]);
            if (n > 0 && n <= len - i && memcmp(data + i, logger->secrets[s], n) == 0) {
                masked = n;
            }
        }
        if (masked > 0) {
            memcpy(line + at, "***", 3);
            at += 3;
            i += masked;
            continue;
        }
        if (data[i] >= 0x20 && data[i] < 0x7f && data[i] != '\\') {
            line[at++] = (char)data[i];
        } else {
            at += (size_t)snprintf(line + at, cap - at, "\\x%02x", data[i]);
        }
        i++;
    }
    line[at] = '\0';
}

static const char *name_of(const char *const *names, int32_t count, int32_t index)
{
    return index >= 0 && index < count ? names[index] : "?";
}

static void on_log(void *user, const airfsm_t *ctx, airfsm_log_level_t level,
                   airfsm_log_event_t event, int32_t a, int32_t b, int32_t c,
                   const uint8_t *data, size_t len)
{
    logger_t *logger = user;
    hal_log_level_t hal_level = level >= AIRFSM_LOG_ERROR     ? HAL_LOG_ERROR
                                : level >= AIRFSM_LOG_WARNING ? HAL_LOG_WARNING
                                : level >= AIRFSM_LOG_INFO    ? HAL_LOG_INFO
                                                              : HAL_LOG_DEBUG;
    char line[LOG_LINE_MAX];

    if (event == AIRFSM_LOG_EVENT_SECRET) { /* never printed: only remembered, to mask it */
        keep_secret(logger, a, data, len);
        return;
    }
    switch (event) {
    case AIRFSM_LOG_EVENT_STATE:
        snprintf(line, sizeof line, "state %s -> %s (%s) after %ld ms, attempt %lu",
                 name_of(airfsm_state_name, AIRFSM_STATE_COUNT, a),
                 airfsm_state_name[airfsm_state(ctx)],
                 name_of(airfsm_trigger_name, AIRFSM_TRIGGER_COUNT, b), (long)c,
                 (unsigned long)airfsm_attempt(ctx));
        break;
    case AIRFSM_LOG_EVENT_STEP:
        snprintf(line, sizeof line, "step %s %s: %s, %s %ld", airfsm_state_name[airfsm_state(ctx)],
                 airfsm_step_name(ctx) != NULL ? airfsm_step_name(ctx) : "-",
                 name_of(airfsm_outcome_name, AIRFSM_OUTCOME_COUNT, a),
                 name_of(airfsm_reason_name, AIRFSM_REASON_COUNT, b), (long)c);
        break;
    default:
        snprintf(line, sizeof line, "%s a=%ld b=%ld c=%ld%s",
                 name_of(airfsm_log_event_name, AIRFSM_LOG_EVENT_COUNT, (int32_t)event), (long)a,
                 (long)b, (long)c, len > 0 ? " " : "");
        add_data(logger, line, sizeof line, data, len);
        break;
    }
    logger->hal.log(logger->hal.ctx, hal_level, line);
}

/* --- why it ended, in words (a few of airfsm/host/reasons.py's) ----------------------------- */

static void describe(char *out, size_t cap, airfsm_reason_t reason, int32_t detail)
{
    switch (reason) {
    case AIRFSM_REASON_FIRMWARE_TOO_OLD:
        snprintf(out, cap, "firmware V%ld is older than V%d: it cannot connect to Alibaba Cloud",
                 (long)detail, AIRFSM_MIN_FIRMWARE);
        break;
    case AIRFSM_REASON_CREDENTIALS_REJECTED:
        snprintf(out, cap, "auth server rejected the device: code %ld", (long)detail);
        break;
    case AIRFSM_REASON_AUTH_REJECTED:
        snprintf(out, cap, "auth code %ld", (long)detail);
        break;
    case AIRFSM_REASON_REGISTRATION_REFUSED:
        snprintf(out, cap, "register server refused the device: code %ld; a device registers "
                 "only once: if it did before, its stored DeviceSecret is gone - reset the "
                 "device in the console (ResetThing) or configure its device_secret",
                 (long)detail);
        break;
    case AIRFSM_REASON_SIGN_REFUSED:
        snprintf(out, cap, "the broker refused the direct MQTT sign %ld times (wrong "
                 "DeviceSecret, or a timestamp outside the server's window: check the clock)",
                 (long)detail);
        break;
    case AIRFSM_REASON_MODULE_MUTE:
        snprintf(out, cap, "the module does not answer AT");
        break;
    case AIRFSM_REASON_NOT_ATTACHED:
        snprintf(out, cap, "not attached yet (+CGATT: 0)");
        break;
    case AIRFSM_REASON_CME_ERROR:
        snprintf(out, cap, "+CME ERROR: %ld", (long)detail);
        break;
    case AIRFSM_REASON_HTTP_STATUS:
        snprintf(out, cap, "HTTP status %ld", (long)detail);
        break;
    default: { /* the generated name in lower case, words apart: "mpub error 3" */
        const char *name = name_of(airfsm_reason_name, AIRFSM_REASON_COUNT, (int32_t)reason);
        size_t i;
        for (i = 0; name[i] != '\0' && i + 1 < cap; i++) {
            out[i] = name[i] == '_' ? ' ' : (char)tolower((unsigned char)name[i]);
        }
        snprintf(out + i, cap - i, " %ld", (long)detail);
        break;
    }
    }
}

/* Twin: connect.exit_for(): the exit code and its one line, for a run that did not succeed. */
static int exit_for(const airfsm_t *ctx, const hal_posix_t *port, const char *path, char *why,
                    size_t cap)
{
    char text[360];

    if (airfsm_failed(ctx)) {
        describe(text, sizeof text, ctx->fail_cause, ctx->fail_cause_detail);
        snprintf(why, cap, "%s", text);
        switch (airfsm_fail_reason(ctx)) {
        case AIRFSM_FAIL_REASON_FIRMWARE:
            return EXIT_FIRMWARE;
        case AIRFSM_FAIL_REASON_CREDENTIALS:
        case AIRFSM_FAIL_REASON_REGISTRATION:
            return EXIT_CREDENTIALS;
        case AIRFSM_FAIL_REASON_NO_RESPONSE:
            return EXIT_NO_RESPONSE;
        case AIRFSM_FAIL_REASON_INTERNAL:
            return EXIT_INTERNAL;
        default:
            return EXIT_OTHER;
        }
    }
    if (port->lost) {
        snprintf(why, cap, "%s: the serial port vanished", path);
        return EXIT_PORT;
    }
    {
        const char *step = airfsm_step_name(ctx);
        int n = snprintf(why, cap, "timed out in %s%s%s%s after attempt %lu",
                         airfsm_state_name[airfsm_state(ctx)], step != NULL ? " (" : "",
                         step != NULL ? step : "", step != NULL ? ")" : "",
                         (unsigned long)airfsm_attempt(ctx));
        if (ctx->last_error.set && n > 0 && (size_t)n < cap) {
            describe(text, sizeof text, ctx->last_error.reason, ctx->last_error.detail);
            snprintf(why + n, cap - (size_t)n, "; last error: %s %s", 
                     airfsm_state_name[ctx->last_error.state], text);
        }
    }
    return EXIT_TIMEOUT;
}

/* --- the registered DeviceSecret: a 0600 file (twin of airfsm/host/secret_file.py) ----------- */

/* The hook's target (NULL: none given, no hook). */
static const char *secret_path;

/* Twin: the gateway's registered_secret_keeper: write the secret to secret_path.tmp (0600),
 * flush it to the disk, rename it over secret_path; false (logged by the controller, never
 * with the secret) when any of it fails. */
static bool keep_registered_secret(void *user, const char *device_secret)
{
    char tmp[4096];
    size_t len = strlen(device_secret);
    int fd;
    bool ok;

    (void)user;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", secret_path) >= (int)sizeof tmp) {
        return false;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        return false;
    }
    ok = fchmod(fd, 0600) == 0 && write(fd, device_secret, len) == (ssize_t)len &&
         write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, secret_path) != 0) {
        (void)unlink(tmp);
        return false;
    }
    return true;
}

/* The secret a registration stored: the first line of the file into out (cap bytes, NUL
 * included); false when there is no such file, or it is empty or too long. */
static bool read_registered_secret(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL) {
        return false;
    }
    n = fread(out, 1, cap - 1, f);
    (void)fclose(f);
    out[n] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
    return out[0] != '\0' && strlen(out) < cap - 1;
}

/* The system's wall clock for the signs (Unix ms; 0: before 1970, unknown). */
static uint64_t system_wall_clock_ms(void *ctx)
{
    struct timespec ts;

    (void)ctx;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || ts.tv_sec < 0) {
        return 0;
    }
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)(ts.tv_nsec / 1000000);
}

/* --- the run ------------------------------------------------------------------------------- */

static airfsm_t controller; /* static: it holds every buffer (see `make size`) */
static logger_t logger;
static char stored_secret[AIRFSM_MAX_SECRET_LEN + 2];

/* Queue what is left of the messages while the RAM outbox takes them; false on a refusal. */
static bool queue_messages(const options_t *o, size_t *queued)
{
    while (*queued < o->n_publish) {
        const publish_t *p = &o->publish[*queued];
        char topic[AIRFSM_MAX_TOPIC + 1];
        size_t topic_len = (size_t)(p->text - 1 - p->topic);
        int32_t id;

        if (topic_len > AIRFSM_MAX_TOPIC) {
            fprintf(stderr, PROGRAM ": --publish: the topic is longer than %d characters\n",
                    AIRFSM_MAX_TOPIC);
            return false;
        }
        memcpy(topic, p->topic, topic_len);
        topic[topic_len] = '\0';
        id = airfsm_publish(&controller, topic, (const uint8_t *)p->text, strlen(p->text),
                            o->qos);
        if (id == AIRFSM_PUBLISH_FULL) {
            return true; /* the outbox is full: the rest goes in once some are delivered */
        }
        if (id < 0) {
            fprintf(stderr, PROGRAM ": --publish %s: refused (%s)\n", topic,
                    id == AIRFSM_PUBLISH_BAD_TOPIC   ? "a topic AT+MPUB cannot carry"
                    : id == AIRFSM_PUBLISH_TOO_LONG  ? "longer than an outbox slot"
                    : id == AIRFSM_PUBLISH_UNSENDABLE ? "the payload cannot be sent"
                                                      : "refused by the outbox");
            return false;
        }
        (*queued)++;
    }
    return true;
}

int main(int argc, char **argv)
{
    options_t o;
    bool help = false;
    const char *secret = getenv("AIRFSM_DEVICE_SECRET");
    const char *product_secret = getenv("AIRFSM_PRODUCT_SECRET");
    hal_posix_t port = {-1, PROGRAM, HAL_LOG_WARNING, false};
    airfsm_settings_t settings;
    airfsm_hooks_t hooks;
    hal_t hal;
    char why[400];
    uint32_t start, deadline;
    size_t queued = 0;
    int code;

    memset(&o, 0, sizeof o); /* no --timeout: wait for ever, as `airfsm connect` does */
    o.baud = 115200u;
    o.qos = 1;
    o.log_level = HAL_LOG_WARNING;
    code = parse_args(argc, argv, &o, &help);
    if (help) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (code >= 0) {
        return code;
    }
    if ((secret == NULL || secret[0] == '\0') && o.secret_file != NULL &&
        read_registered_secret(o.secret_file, stored_secret, sizeof stored_secret)) {
        secret = stored_secret; /* registered before: no second registration */
    }
    if (secret == NULL) {
        secret = "";
    }
    if (product_secret == NULL) {
        product_secret = "";
    }
    if (secret[0] == '\0' && product_secret[0] == '\0') {
        return usage("AIRFSM_DEVICE_SECRET is not set", "");
    }
    if (secret[0] == '\0' && o.secret_file == NULL) {
        return usage("registering with AIRFSM_PRODUCT_SECRET needs --secret-file to keep the "
                     "DeviceSecret in (the server registers a device once)", "");
    }

    airfsm_settings_default(&settings);
    if (!set_text(settings.product_key, sizeof settings.product_key, o.product_key)) {
        return usage("--product-key must be 1-64 letters or digits", "");
    }
    if (!set_text(settings.device_name, sizeof settings.device_name, o.device_name)) {
        return usage("--device-name must be 4-32 of letters, digits and _ . @ : -", "");
    }
    if (!set_text(settings.device_secret, sizeof settings.device_secret, secret)) {
        return usage("AIRFSM_DEVICE_SECRET is too long", "");
    }
    if (o.region != NULL && !set_text(settings.region, sizeof settings.region, o.region)) {
        return usage("--region must be 1-64 of lowercase letters, digits and -", "");
    }
    if (!set_text(settings.product_secret, sizeof settings.product_secret, product_secret)) {
        return usage("AIRFSM_PRODUCT_SECRET is too long", "");
    }
    if (o.instance_id != NULL &&
        !set_text(settings.instance_id, sizeof settings.instance_id, o.instance_id)) {
        return usage("--instance-id must be 1-64 letters, digits and - (e.g. "
                     "iot-06z00ax1o4qxxxx)", "");
    }
    settings.auth_mode = o.auth_mode;
    settings.baud = o.baud;
    settings.auth_attempts = o.auth_attempts;
    code = airfsm_settings_validate(&settings);
    if (code != AIRFSM_SETTINGS_OK) {
        return usage(settings_problem(code, &settings), "");
    }

    port.log_level = o.log_level;
    if (hal_posix_open(&port, o.port, o.baud, why, sizeof why) != 0) {
        fprintf(stderr, PROGRAM ": %s\n", why);
        return EXIT_PORT;
    }
    hal = hal_posix(&port);
    if (o.timestamps) {
        hal.wall_clock_ms = system_wall_clock_ms;
    }
    logger.hal = hal;
    memset(&hooks, 0, sizeof hooks);
    hooks.user = &logger;
    hooks.log = on_log;
    secret_path = o.secret_file;
    hooks.on_registered = secret_path != NULL ? keep_registered_secret : NULL;
    hooks.log_level = o.log_level == HAL_LOG_DEBUG     ? AIRFSM_LOG_DEBUG
                      : o.log_level == HAL_LOG_INFO    ? AIRFSM_LOG_INFO
                      : o.log_level == HAL_LOG_WARNING ? AIRFSM_LOG_WARNING
                                                       : AIRFSM_LOG_ERROR;
    start = hal.millis(hal.ctx);
    code = airfsm_init_ex(&controller, &settings, &hal, &hooks, NULL, start);
    memset(&settings, 0, sizeof settings); /* the controller has its copy */
    if (code != AIRFSM_SETTINGS_OK) {
        hal_posix_close(&port);
        fprintf(stderr, PROGRAM ": the controller refused the settings (code %d)\n", code);
        return EXIT_INTERNAL;
    }
    if (!queue_messages(&o, &queued)) {
        hal_posix_close(&port);
        return EXIT_USAGE;
    }
    deadline = ms_add(start, (uint32_t)(o.timeout_s * 1000.0));

    for (;;) {
        uint32_t now = hal.millis(hal.ctx);
        uint32_t next = airfsm_tick(&controller, now);
        uint32_t wake;

        if (airfsm_online(&controller)) {
            if (!queue_messages(&o, &queued)) {
                hal_posix_close(&port);
                return EXIT_USAGE;
            }
            if (airfsm_acked_count(&controller) >= o.n_publish) {
                break;
            }
        }
        if (airfsm_counters(&controller)->publish_dead > 0) {
            break; /* a message was given up after its attempts: it will never be acknowledged */
        }
        if (airfsm_failed(&controller) || port.lost) {
            break;
        }
        now = hal.millis(hal.ctx);
        if (o.timeout_s > 0 && ms_reached(now, deadline)) {
            break;
        }
        /* Sleep until the controller's next deadline or ours, or until a byte arrives. */
        wake = next;
        if (o.timeout_s > 0 && ms_diff(deadline, wake) < 0) {
            wake = deadline;
        }
        hal_posix_wait(&port, ms_reached(now, wake) ? 0u : (uint32_t)ms_diff(wake, now));
    }
    hal_posix_close(&port);

    if (airfsm_online(&controller) && airfsm_acked_count(&controller) >= o.n_publish) {
        double elapsed = (double)(uint32_t)(hal.millis(hal.ctx) - start) / 1000.0;
        printf("online in %.1f s: %s/%s via %s\n", elapsed, o.product_key, o.device_name, o.port);
        if (o.n_publish > 0) {
            printf("published %lu\n", (unsigned long)airfsm_acked_count(&controller));
        }
        return EXIT_OK;
    }
    if (airfsm_counters(&controller)->publish_dead > 0) {
        fprintf(stderr, PROGRAM ": %lu of %lu messages given up after their attempts\n",
                (unsigned long)airfsm_counters(&controller)->publish_dead,
                (unsigned long)o.n_publish);
        return EXIT_OTHER;
    }
    code = exit_for(&controller, &port, o.port, why, sizeof why);
    if (code == EXIT_TIMEOUT && airfsm_online(&controller)) {
        snprintf(why, sizeof why, "online, but %lu of %lu messages acknowledged within --timeout",
                 (unsigned long)airfsm_acked_count(&controller), (unsigned long)o.n_publish);
    }
    fprintf(stderr, PROGRAM ": %s\n", why);
    return code;
}
