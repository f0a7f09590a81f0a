/* probe.c: AT until OK, then AT+CGMR. See probe.h. */
#include "probe.h"

#include <string.h>

#include "timebase.h"

static void log_line(const probe_t *probe, hal_log_level_t level, const char *line)
{
    if (probe->hal->log != NULL) {
        probe->hal->log(probe->hal->ctx, level, line);
    }
}

static void fail(probe_t *probe, probe_failure_t failure)
{
    probe->state = PROBE_FAILED;
    probe->failure = failure;
}

static void send(probe_t *probe, const char *command)
{
    size_t len = strlen(command);

    if (probe->hal->uart_write(probe->hal->ctx, (const uint8_t *)command, len) != (int32_t)len) {
        fail(probe, PROBE_PORT_LOST);
    }
}

void probe_start(probe_t *probe, const hal_t *hal, uint32_t now_ms, uint32_t timeout_ms)
{
    memset(probe, 0, sizeof *probe);
    probe->hal = hal;
    probe->state = PROBE_AUTOBAUD;
    probe->deadline_ms = ms_add(now_ms, timeout_ms);
    probe->next_send_ms = now_ms;
}

/* A version line is either the bare AirM2M_Air72xUy_V409_LTE_AT or +CGMR: "AirM2M_..._V409...":
 * keep the name without prefix and quotes, and the number after "_V". */
static bool take_version(probe_t *probe, const char *line)
{
    const char *v = strstr(line, "_V");
    size_t len;
    uint32_t number = 0;

    while (v != NULL && (v[2] < '0' || v[2] > '9')) {
        v = strstr(v + 1, "_V");
    }
    if (v == NULL) {
        return false;
    }
    for (v += 2; *v >= '0' && *v <= '9' && number < 100000000u; v++) {
        number = number * 10u + (uint32_t)(*v - '0');
    }
    if (strncmp(line, "+CGMR:", 6) == 0) {
        line += 6;
    }
    while (*line == ' ' || *line == '"') {
        line++;
    }
    len = strcspn(line, "\"");
    if (len > PROBE_VERSION_MAX) {
        len = PROBE_VERSION_MAX;
    }
    memcpy(probe->version, line, len);
    probe->version[len] = '\0';
    probe->version_number = number;
    return true;
}

static void on_line(probe_t *probe, uint32_t now_ms)
{
    const char *line = probe->line;

    if (probe->state == PROBE_AUTOBAUD && strcmp(line, "OK") == 0) {
        log_line(probe, HAL_LOG_INFO, "the module answered AT");
        probe->state = PROBE_VERSION;
        probe->next_send_ms = now_ms; /* AT+CGMR at once */
    } else if (probe->state == PROBE_VERSION && probe->version_number == 0 &&
               take_version(probe, line)) {
        log_line(probe, HAL_LOG_INFO, "version line received");
    } else if (probe->state == PROBE_VERSION && probe->version_number != 0 &&
               strcmp(line, "OK") == 0) {
        probe->state = PROBE_DONE;
    }
}

/* Bytes into lines: CR or LF ends one, empty lines are skipped, an overlong one is dropped. */
static void feed(probe_t *probe, const uint8_t *bytes, size_t n, uint32_t now_ms)
{
    size_t i;

    for (i = 0; i < n && (probe->state == PROBE_AUTOBAUD || probe->state == PROBE_VERSION); i++) {
        uint8_t c = bytes[i];
        if (c == '\r' || c == '\n') {
            if (probe->line_len > 0 && !probe->line_too_long) {
                probe->line[probe->line_len] = '\0';
                on_line(probe, now_ms);
            }
            probe->line_len = 0;
            probe->line_too_long = false;
        } else if (probe->line_len < PROBE_LINE_MAX) {
            probe->line[probe->line_len++] = (char)c;
        } else {
            probe->line_too_long = true;
        }
    }
}

uint32_t probe_tick(probe_t *probe, uint32_t now_ms)
{
    uint8_t buf[64];
    int32_t n;

    while (probe->state == PROBE_AUTOBAUD || probe->state == PROBE_VERSION) {
        n = probe->hal->uart_read(probe->hal->ctx, buf, sizeof buf);
        if (n == HAL_PORT_LOST) {
            fail(probe, PROBE_PORT_LOST);
        } else if (n <= 0) {
            break;
        } else {
            feed(probe, buf, (size_t)n, now_ms);
        }
    }
    if ((probe->state == PROBE_AUTOBAUD || probe->state == PROBE_VERSION) &&
        ms_reached(now_ms, probe->deadline_ms)) {
        fail(probe, probe->state == PROBE_AUTOBAUD ? PROBE_NO_RESPONSE : PROBE_NO_VERSION);
    }
    if (probe->state == PROBE_AUTOBAUD && ms_reached(now_ms, probe->next_send_ms)) {
        probe->at_sent++;
        probe->next_send_ms = ms_add(now_ms, PROBE_AT_INTERVAL_MS);
        send(probe, "AT\r");
    } else if (probe->state == PROBE_VERSION && ms_reached(now_ms, probe->next_send_ms)) {
        probe->next_send_ms = ms_add(now_ms, PROBE_CGMR_INTERVAL_MS);
        send(probe, "AT+CGMR\r");
    }
    if (probe->state != PROBE_AUTOBAUD && probe->state != PROBE_VERSION) {
        return now_ms;
    }
    return ms_diff(probe->next_send_ms, probe->deadline_ms) < 0 ? probe->next_send_ms
                                                                 : probe->deadline_ms;
}
