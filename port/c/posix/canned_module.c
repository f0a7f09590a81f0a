/* canned_module.c: see canned_module.h. */
#include "canned_module.h"

#include <string.h>

/* The auth server's reply as the simulator sends it for the seed device (128 bytes). */
#define AUTH_REPLY                                                                     \
    "{\"code\":200,\"data\":{\"iotId\":\"ZBCS8PuZPSKjRmG53h7D00f2954b00\",\"iotToken\":" \
    "\"e741804a2e71a377954d5b3c544443dd\"},\"message\":\"success\"}"

typedef struct {
    const char *prefix; /* the command line starts with this */
    bool exact;         /* ... and is nothing more */
    const char *answer; /* what follows the echo */
} canned_rule_t;

/* In the order the controller sends them on its way to ONLINE; the first match wins. */
static const canned_rule_t rules[] = {
    {"AT", true, "\r\nOK\r\n"},
    {"AT+CGMR", true, "\r\nAirM2M_Air72xUy_V409_LTE_AT\r\n\r\nOK\r\n"},
    {"AT+CGSN", true, "\r\n862991419835241\r\n\r\nOK\r\n"},
    {"AT+CPIN?", true, "\r\n+CPIN: READY\r\n\r\nOK\r\n"},
    {"AT+CCID", true, "\r\n89860123456789012345\r\n\r\nOK\r\n"},
    {"AT+ICCID", true, "\r\n+ICCID: 89860123456789012345\r\n\r\nOK\r\n"},
    {"AT+CSQ", true, "\r\n+CSQ: 24,99\r\n\r\nOK\r\n"},
    {"AT+CGATT?", true, "\r\n+CGATT: 1\r\n\r\nOK\r\n"},
    {"AT+COPS?", true, "\r\n+COPS: 0,0,\"CHINA MOBILE\",7\r\n\r\nOK\r\n"},
    {"AT+CEREG?", true, "\r\n+CEREG: 0,1\r\n\r\nOK\r\n"},
    {"AT+SAPBR=2,1", true, "\r\n+SAPBR: 1,1,\"10.33.1.66\"\r\n\r\nOK\r\n"},
    {"AT+HTTPDATA=", false, "\r\nDOWNLOAD\r\n"},
    {"AT+HTTPACTION=1", true, "\r\nOK\r\n\r\n+HTTPACTION: 1,200,128\r\n"},
    {"AT+HTTPREAD", true, "\r\n+HTTPREAD: 128\r\n" AUTH_REPLY "\r\nOK\r\n"},
    {"AT+MIPCLOSE", true, "\r\n+CME ERROR: 767\r\n"},
    {"AT+SSLMIPSTART=", false, "\r\nOK\r\n\r\nCONNECT OK\r\n"},
    {"AT+MCONNECT=", false, "\r\nOK\r\n\r\nCONNACK OK\r\n"},
    {"AT+MSUB=", false, "\r\nOK\r\n\r\nSUBACK\r\n"},
    {"AT+MQTTSTATU", true, "\r\n+MQTTSTATU :1\r\n\r\nOK\r\n"},
    {"AT+MPUB=", false, "\r\nOK\r\n\r\nPUBACK\r\n"},
};

void canned_module_init(canned_module_t *module, uint32_t now)
{
    memset(module, 0, sizeof *module);
    module->now = now;
}

void canned_module_say(canned_module_t *module, const uint8_t *data, size_t len)
{
    if (module->rx_start > 0) { /* keep the unread bytes at the front: one memmove, rarely */
        memmove(module->rx, module->rx + module->rx_start, module->rx_len);
        module->rx_start = 0;
    }
    if (len > CANNED_RX_CAPACITY - module->rx_len) {
        module->overflows++;
        return;
    }
    memcpy(module->rx + module->rx_len, data, len);
    module->rx_len += len;
}

static void say_text(canned_module_t *module, const char *text)
{
    canned_module_say(module, (const uint8_t *)text, strlen(text));
}

static uint32_t parse_uint(const uint8_t *p, size_t len)
{
    uint32_t value = 0;
    size_t i;

    for (i = 0; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
        value = value * 10u + (uint32_t)(p[i] - '0');
    }
    return value;
}

/* One command line (without its CR): echo it, then answer by the first rule that matches. */
static void answer(canned_module_t *module)
{
    const uint8_t *line = module->line;
    size_t len = module->line_len;
    size_t i;

    module->commands++;
    canned_module_say(module, line, len);
    say_text(module, "\r");
    for (i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        size_t n = strlen(rules[i].prefix);
        if (len >= n && memcmp(line, rules[i].prefix, n) == 0 && (!rules[i].exact || len == n)) {
            say_text(module, rules[i].answer);
            if (strcmp(rules[i].prefix, "AT+HTTPDATA=") == 0) {
                module->body_left = parse_uint(line + n, len - n);
            }
            return;
        }
    }
    say_text(module, "\r\nOK\r\n");
}

static int32_t canned_write(void *ctx, const uint8_t *buf, size_t n)
{
    canned_module_t *module = ctx;
    size_t i;

    for (i = 0; i < n; i++) {
        uint8_t byte = buf[i];
        if (module->body_left > 0) { /* the HTTPDATA body: no echo, OK once it is all there */
            if (--module->body_left == 0) {
                say_text(module, "\r\nOK\r\n");
            }
        } else if (byte == '\r') {
            answer(module);
            module->line_len = 0;
        } else if (byte != '\n' && module->line_len < CANNED_LINE_CAPACITY) {
            module->line[module->line_len++] = byte;
        }
    }
    return (int32_t)n;
}

static int32_t canned_read(void *ctx, uint8_t *buf, size_t n)
{
    canned_module_t *module = ctx;
    size_t take = module->rx_len < n ? module->rx_len : n;

    memcpy(buf, module->rx + module->rx_start, take);
    module->rx_start += take;
    module->rx_len -= take;
    if (module->rx_len == 0) {
        module->rx_start = 0;
    }
    return (int32_t)take;
}

static uint32_t canned_millis(void *ctx)
{
    const canned_module_t *module = ctx;
    return module->now;
}

hal_t canned_module_hal(canned_module_t *module)
{
    hal_t hal;

    hal.ctx = module;
    hal.uart_read = canned_read;
    hal.uart_write = canned_write;
    hal.millis = canned_millis;
    hal.reset_pin = NULL;
    hal.log = NULL;
    hal.wall_clock_ms = NULL;
    return hal;
}
