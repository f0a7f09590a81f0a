/* payload.c: MPUB escaping, hex mode, topic checks, AT+MPUB into the caller's buffer.
 * Python twin: airfsm/core/payload.py. */
#include <string.h>

#include "payload.h"

#define QUOTE 0x22u
#define CR 0x0Du
#define LF 0x0Au
#define BACKSLASH 0x5Cu

static const char hex_upper[16] = "0123456789ABCDEF";

/* Twin: payload._ESCAPES: the four bytes written as the module's \HH escapes. */
static bool payload_is_escaped(uint8_t b)
{
    return b == QUOTE || b == CR || b == LF || b == BACKSLASH;
}

/* Twin: payload._TEXT_BYTES: printable ASCII, CR and LF. */
static bool payload_is_text(uint8_t b)
{
    return (b >= 0x20u && b <= 0x7Eu) || b == CR || b == LF;
}

/* Twin: payload.escaped_length(). */
size_t payload_escaped_length(const uint8_t *payload, size_t len)
{
    size_t n = len, i;

    for (i = 0; i < len; i++) {
        if (payload_is_escaped(payload[i])) {
            n += 2;
        }
    }
    return n;
}

/* Twin: payload._put_escaped(): runs of plain bytes in one copy. */
size_t payload_put_escaped(uint8_t *out, size_t at, const uint8_t *payload, size_t len)
{
    size_t start = 0, i;

    for (i = 0; i < len; i++) {
        uint8_t b = payload[i];
        if (!payload_is_escaped(b)) {
            continue;
        }
        memcpy(out + at, payload + start, i - start);
        at += i - start;
        out[at] = '\\';
        out[at + 1] = (uint8_t)hex_upper[b >> 4];
        out[at + 2] = (uint8_t)hex_upper[b & 0x0Fu];
        at += 3;
        start = i + 1;
    }
    if (start < len) { /* (an empty payload may come as NULL) */
        memcpy(out + at, payload + start, len - start);
    }
    return at + (len - start);
}

/* Twin: payload.topic_fault(). */
payload_topic_fault_t payload_topic_fault(const uint8_t *topic, size_t len, size_t *pos)
{
    size_t i, at = 0;
    payload_topic_fault_t fault = PAYLOAD_TOPIC_OK;

    if (len == 0) {
        fault = PAYLOAD_TOPIC_EMPTY;
    }
    for (i = 0; i < len && fault == PAYLOAD_TOPIC_OK; i++) {
        uint8_t b = topic[i];
        at = i;
        if (b == QUOTE) {
            fault = PAYLOAD_TOPIC_QUOTE;
        } else if (b == BACKSLASH) {
            fault = PAYLOAD_TOPIC_BACKSLASH;
        } else if (b == '+' || b == '#') {
            fault = PAYLOAD_TOPIC_WILDCARD;
        } else if (b < 0x20u || b > 0x7Eu) {
            fault = PAYLOAD_TOPIC_CHARACTER;
        }
    }
    if (fault == PAYLOAD_TOPIC_OK && len > AIRFSM_MAX_TOPIC) {
        fault = PAYLOAD_TOPIC_TOO_LONG;
        at = AIRFSM_MAX_TOPIC;
    }
    if (fault == PAYLOAD_TOPIC_OK || fault == PAYLOAD_TOPIC_EMPTY) {
        at = 0;
    }
    if (pos != NULL) {
        *pos = at;
    }
    return fault;
}

/* Twin: payload._first_non_text(). */
int32_t payload_first_non_text(const uint8_t *payload, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (!payload_is_text(payload[i])) {
            return (int32_t)i;
        }
    }
    return -1;
}

/* Twin: payload.payload_form(). */
payload_form_t payload_form(const uint8_t *payload, size_t len, bool hex_allowed)
{
    if (payload_first_non_text(payload, len) < 0 &&
        payload_escaped_length(payload, len) <= AIRFSM_MAX_PAYLOAD_TEXT) {
        return PAYLOAD_FORM_TEXT;
    }
    if (hex_allowed && len <= AIRFSM_MAX_PAYLOAD_HEX_RAW) {
        return PAYLOAD_FORM_HEX;
    }
    return PAYLOAD_FORM_REFUSED;
}

/* Twin: the defence-in-depth check at the end of payload.put_mpub(): no CR, LF or NUL, and
 * exactly four quotes. */
static bool payload_command_safe(const uint8_t *out, size_t n)
{
    size_t quotes = 0, i;

    for (i = 0; i < n; i++) {
        uint8_t b = out[i];
        if (b == CR || b == LF || b == 0) {
            return false;
        }
        if (b == QUOTE) {
            quotes++;
        }
    }
    return quotes == 4;
}

/* Twin: payload.put_mpub(). The literals come from the generated template airfsm_mpub (the
 * Python table checks at import that they are what put_mpub writes), so the command has one
 * source; the placeholders TOPIC, QOS and MESSAGE are written here. */
int32_t payload_put_mpub(uint8_t *out, size_t cap, const uint8_t *topic, size_t topic_len,
                         const uint8_t *payload, size_t payload_len, int32_t qos, bool hex_mode)
{
    size_t message, total = 0, n = 0, i, p;

    if (payload_topic_fault(topic, topic_len, NULL) != PAYLOAD_TOPIC_OK) {
        return PAYLOAD_MPUB_BAD_TOPIC;
    }
    if (!payload_qos_ok(qos)) {
        return PAYLOAD_MPUB_BAD_QOS;
    }
    if (hex_mode) {
        if (payload_len > AIRFSM_MAX_PAYLOAD_HEX_RAW) {
            return PAYLOAD_MPUB_UNSENDABLE;
        }
        message = 2 * payload_len;
    } else {
        if (payload_first_non_text(payload, payload_len) >= 0) {
            return PAYLOAD_MPUB_UNSENDABLE;
        }
        message = payload_escaped_length(payload, payload_len);
        if (message > AIRFSM_MAX_PAYLOAD_TEXT) {
            return PAYLOAD_MPUB_UNSENDABLE;
        }
    }
    for (p = 0; p < airfsm_mpub.n_pieces; p++) {
        const airfsm_piece_t *piece = &airfsm_mpub.pieces[p];
        if (piece->text != NULL) {
            total += piece->len;
        } else if (piece->placeholder == AIRFSM_PLACEHOLDER_TOPIC) {
            total += topic_len;
        } else if (piece->placeholder == AIRFSM_PLACEHOLDER_QOS) {
            total += 1; /* one digit: 0 or 1 */
        } else {
            total += message;
        }
    }
    if (total >= cap) {
        return PAYLOAD_MPUB_NO_ROOM;
    }
    for (p = 0; p < airfsm_mpub.n_pieces; p++) {
        const airfsm_piece_t *piece = &airfsm_mpub.pieces[p];
        if (piece->text != NULL) {
            memcpy(out + n, piece->text, piece->len);
            n += piece->len;
        } else if (piece->placeholder == AIRFSM_PLACEHOLDER_TOPIC) {
            memcpy(out + n, topic, topic_len);
            n += topic_len;
        } else if (piece->placeholder == AIRFSM_PLACEHOLDER_QOS) {
            out[n++] = (uint8_t)('0' + qos);
        } else if (hex_mode) {
            for (i = 0; i < payload_len; i++) { /* two table lookups a byte */
                out[n] = (uint8_t)hex_upper[payload[i] >> 4];
                out[n + 1] = (uint8_t)hex_upper[payload[i] & 0x0Fu];
                n += 2;
            }
        } else {
            n = payload_put_escaped(out, n, payload, payload_len);
        }
    }
    /* Defence in depth: the checks above make this impossible; it stays. */
    if (!payload_command_safe(out, n)) {
        return PAYLOAD_MPUB_UNSAFE;
    }
    return (int32_t)n;
}
