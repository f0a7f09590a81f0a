/* payload.h: what may travel inside the quoted strings of AT+MPUB="<topic>",<qos>,<retain>,"<msg>".
 * Python twin: airfsm/core/payload.py.
 *
 * The whole command is one line ended by CR and the module splits its arguments at the quotes,
 * so a CR, LF or `"` reaching the wire unescaped would end the command early or start a new one:
 * an AT-command injection. This is the one place that decides what is sent:
 *   - text mode (AT+MQTTMODE=0): printable ASCII plus CR and LF; `"` CR LF `\` are written as the
 *     module's escapes \22 \0D \0A \5C; any other byte makes the payload need hex mode;
 *   - hex mode (AT+MQTTMODE=1): the payload as uppercase hex digits, two a byte;
 *   - at most AIRFSM_MAX_PAYLOAD_TEXT bytes between the quotes (AIRFSM_MAX_PAYLOAD_HEX_RAW payload
 *     bytes in hex mode);
 *   - topics are never escaped: printable ASCII without `"`, `\`, `+`, `#`, at most
 *     AIRFSM_MAX_TOPIC characters.
 * The command is written along the generated template airfsm_mpub (table.MPUB_TEMPLATE) into the
 * caller's buffer; every written command is checked once more for CR, LF, NUL and its four quotes.
 */
#ifndef AIRFSM_PAYLOAD_H
#define AIRFSM_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airfsm_config.h"

/* Twin: payload.FORM_*: how a payload can travel (payload_form()). */
typedef enum {
    PAYLOAD_FORM_TEXT = 0,    /* escaped, between the quotes of AT+MPUB, in text mode */
    PAYLOAD_FORM_HEX = 1,     /* as hex digits, in hex mode */
    PAYLOAD_FORM_REFUSED = 2  /* in neither (over both limits) */
} payload_form_t;

/* Twin: payload.TOPIC_*: why a topic cannot be published to (payload_topic_fault()). */
typedef enum {
    PAYLOAD_TOPIC_OK = 0,
    PAYLOAD_TOPIC_EMPTY = 1,
    PAYLOAD_TOPIC_QUOTE = 2,
    PAYLOAD_TOPIC_BACKSLASH = 3,
    PAYLOAD_TOPIC_WILDCARD = 4,
    PAYLOAD_TOPIC_CHARACTER = 5, /* a control character, DEL or not ASCII */
    PAYLOAD_TOPIC_TOO_LONG = 6
} payload_topic_fault_t;

/* Twin: payload.MPUB_*: the negative returns of payload_put_mpub(). */
#define PAYLOAD_MPUB_BAD_TOPIC (-1)
#define PAYLOAD_MPUB_BAD_QOS (-2)
#define PAYLOAD_MPUB_UNSENDABLE (-3) /* cannot travel in the module's mode, or over its limit */
#define PAYLOAD_MPUB_NO_ROOM (-4)    /* the buffer cannot hold the command and its CR */
#define PAYLOAD_MPUB_UNSAFE (-5)     /* the command holds a CR, LF, NUL or a fifth quote (never) */

/* Twin: payload.MPUB_MAX: the longest command (topic and message at their limits); the
 * generated AIRFSM_LONGEST_COMMAND is at least this. */
#define PAYLOAD_MPUB_MAX                                                                       \
    (sizeof "AT+MPUB=\"" - 1 + AIRFSM_MAX_TOPIC + sizeof "\"," - 1 + 1 + sizeof ",0,\"" - 1 +    \
     AIRFSM_MAX_PAYLOAD_TEXT + sizeof "\"" - 1)

/* Twin: payload.escaped_length(): the payload's length once `"` CR LF `\` are escaped. */
size_t payload_escaped_length(const uint8_t *payload, size_t len);

/* Twin: payload._put_escaped(): write the payload escaped at out[at:] (the caller made sure it
 * fits: payload_escaped_length()); the index after it. */
size_t payload_put_escaped(uint8_t *out, size_t at, const uint8_t *payload, size_t len);

/* Twin: payload.topic_fault(): PAYLOAD_TOPIC_OK when the topic (bytes, UTF-8 if not ASCII) may
 * be published to as is, else why; *pos (may be NULL) gets the offset of the byte at fault
 * (AIRFSM_MAX_TOPIC for TOO_LONG, 0 for OK and EMPTY). The Python twin counts characters: the
 * two agree, since everything before the first fault is ASCII. */
payload_topic_fault_t payload_topic_fault(const uint8_t *topic, size_t len, size_t *pos);

/* Twin: payload._first_non_text(): the offset of the first byte text mode cannot carry; -1 when
 * there is none. */
int32_t payload_first_non_text(const uint8_t *payload, size_t len);

/* Twin: payload.payload_form(): how the payload can travel; hex_allowed false: a module
 * without hex mode. */
payload_form_t payload_form(const uint8_t *payload, size_t len, bool hex_allowed);

/* Twin: payload.qos_ok(): 0 or 1. */
static inline bool payload_qos_ok(int32_t qos) { return qos == 0 || qos == 1; }

/* Twin: payload.put_mpub(): write AT+MPUB="<topic>",<qos>,0,"<msg>" into out[:n] and return n,
 * leaving at least one byte of the `cap` for the CR the AT channel adds; or a negative
 * PAYLOAD_MPUB_* code (out then holds garbage). hex_mode says which mode the module is in: in hex
 * mode every payload goes as hex digits; in text mode one that needs hex is UNSENDABLE, as is one
 * over its mode's limit. */
int32_t payload_put_mpub(uint8_t *out, size_t cap, const uint8_t *topic, size_t topic_len,
                         const uint8_t *payload, size_t payload_len, int32_t qos, bool hex_mode);

#endif /* AIRFSM_PAYLOAD_H */
