/* at.h: the AT channel, one command in flight over the Air72x UART. Python twin: airfsm/core/at.py
 * (its module docstring is the full statement of the digest; the order below is the same).
 *
 * The caller owns every buffer and hands them over in at_init(): a line buffer (one received
 * line, AIRFSM_LINE_CAPACITY), a data buffer (one length-counted payload, AIRFSM_DATA_CAPACITY)
 * and the info arena (a response's info lines and +HTTPREAD body as spans,
 * AIRFSM_INFO_ARENA). The channel keeps lengths beside them and allocates nothing. Nothing here
 * blocks; deadlines are wrap-safe 32-bit milliseconds (timebase.h).
 *
 * The digest of a complete line, in this fixed order (leading noise bytes - control bytes and
 * bytes >= 0x7F - are skipped for every decision):
 *   with a command in flight:
 *     1. echo      a line equal to the command: dropped; once an echo has come (the module
 *                  echoes), until the echo of the command in flight the line is digested as
 *                  with none in flight (a final code before the echo is the previous
 *                  command's); ATE0 answered OK, at_reset() or a timeout without the echo
 *                  make the channel take answers without an echo again;
 *     2. final     OK, ERROR, ERROR: n, +CME ERROR: n, +CMS ERROR: n (airfsm_final_codes): the
 *                  channel goes idle, then on_response fires;
 *     3. prompt    DOWNLOAD (airfsm_prompt_lines) when sent with expect_prompt: on_response with
 *                  AIRFSM_AT_RESULT_PROMPT; the command stays in flight for at_send_data();
 *     4. own line  `<prefix>:` or `<prefix> :` of the command (AT+CGATT? -> +CGATT) is an info
 *                  line even when the URC table has it (never a urc_only row: +HTTPACTION:,
 *                  +MSUB:);
 *   with none in flight:
 *     2'. final    stray (counted), except the first one after the OK of a command sent with
 *                  final_urc: that is the command's outcome, reported through on_urc;
 *   both:
 *     5. URC       a line starting with a prefix of the URC table: on_urc;
 *     6. the rest  an info line of the response in flight (at most AIRFSM_MAX_INFO_LINES), or a
 *                  stray line (counted).
 *   Then `+HTTPREAD: <n>` is followed by n raw bytes: the response's data when the line was
 *   step 4, else read and discarded.
 * Decided before a line end: `>` as the first byte of a line while a prompt is awaited;
 * `+MSUB: <topic>,<n> byte,<payload>` (the payload is read by length; in hex mode 2n hex digits
 * are delivered decoded); a payload is delivered when a line end (or nothing, for a stall
 * window) follows it, else it may have been part of the topic and the line goes on. A payload
 * that stalls or overruns (the wait for the LF after a `+HTTPREAD: n` line that ended in CR
 * included) is closed as truncated in at_check_timeout(): counted, reported through
 * on_truncated, dropped, and the bytes it swallowed after its first line end are fed through
 * the receiver again.
 *
 * Callbacks fire synchronously, in arrival order, after the channel's state is updated. They
 * must not call at_send()/at_send_data()/at_feed()/at_reset() (contract): they record, and the
 * caller acts after at_feed() or at_check_timeout() returns. The pointers they get (a line, a
 * payload, a header) point into the channel's buffers and are valid during the callback only.
 * The response struct is reused: reset by at_send(), untouched between a completion and the next
 * at_send(), so the caller may read it after at_feed() returns.
 */
#ifndef AIRFSM_AT_H
#define AIRFSM_AT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airfsm_config.h"

/* Twin: at.NOT_FINAL: at_final_code()'s "the line is not a final result code". */
#define AT_NOT_FINAL (-1)
/* Twin: table.URC_NONE: "no row of the URC table" (on_urc gets it for a final code passed on
 * after an OK that no FINAL row names). */
#define AT_URC_NONE (-1)

/* Twin: at.AtResponse: the answer to one command, one per channel, reused.
 * Info line i is arena[line_start[i] .. line_start[i] + line_length[i]) for i < line_count; the
 * +HTTPREAD body arena[data_start .. data_start + data_length). cme_error is the number of
 * +CME ERROR: n, +CMS ERROR: n or ERROR: n (-1: none). truncated: the command's length-counted
 * data came short (and was dropped: data_length 0). command points into the caller's command
 * buffer (valid until the caller changes it). */
typedef struct {
    airfsm_at_result_t result;
    int32_t cme_error;
    const uint8_t *command;
    size_t command_len;
    bool truncated;
    uint8_t *arena;
    size_t arena_cap;
    size_t arena_used;
    size_t line_count;
    size_t line_start[AIRFSM_MAX_INFO_LINES];
    size_t line_length[AIRFSM_MAX_INFO_LINES];
    size_t data_start;
    size_t data_length;
} at_response_t;

/* Twin: AtResponse.find_line(): the index of the first info line starting with prefix; -1. */
int at_response_find(const at_response_t *response, const uint8_t *prefix, size_t prefix_len);

/* Twin: AtResponse.line_end(): where info line `index` ends in the arena. */
size_t at_response_line_end(const at_response_t *response, size_t index);

/* Twin: AtResponse.line(): info line `index` in the arena and its length in *len; for -1 or past
 * the end an empty line (*len 0). */
const uint8_t *at_response_line(const at_response_t *response, int index, size_t *len);

/* The callbacks (Python: the callables given to AtChannel), each handed the one context
 * pointer of at_config_t. */
/* write: send all len bytes to the module (the caller's UART; a lost port is the caller's). */
typedef void (*at_write_fn)(void *ctx, const uint8_t *buf, size_t len);
/* on_response: the command completed (or PROMPT). */
typedef void (*at_response_fn)(void *ctx, const at_response_t *response);
/* on_urc: urc is the row of the URC table the line matched (AT_URC_NONE: see above); line is the
 * URC line (a +MSUB: message's header) without its leading noise; payload the bytes of a
 * length-counted +MSUB message (payload_len 0 otherwise). */
typedef void (*at_urc_fn)(void *ctx, int urc, const uint8_t *line, size_t line_len,
                          const uint8_t *payload, size_t payload_len);
/* on_truncated: a length-counted payload came short: its header line, the length it declared,
 * the bytes that were read as payload. */
typedef void (*at_truncated_fn)(void *ctx, const uint8_t *header, size_t header_len,
                                uint32_t declared, uint32_t received);
/* on_ignored: a line that means nothing to anyone: the echo of the command in flight or a late
 * final code (without leading noise), a stray line (as received); valid during the call only.
 * For a log of every line received. */
typedef void (*at_line_fn)(void *ctx, const uint8_t *line, size_t line_len);

/* What at_init() takes (Python: AtChannel's arguments). */
typedef struct {
    void *ctx;                    /* handed back to every callback */
    at_write_fn write;
    at_response_fn on_response;
    at_urc_fn on_urc;
    at_truncated_fn on_truncated; /* NULL: not told */
    at_line_fn on_ignored;        /* NULL: not told */
    const airfsm_urc_t *urcs;     /* the URC table; NULL: airfsm_urcs (the generated one) */
    size_t urc_count;
    uint32_t baud;                /* the UART's rate (0 is taken as 1: Python's max(baud, 1)) */
    uint8_t *line_buf;            /* AIRFSM_LINE_CAPACITY */
    size_t line_cap;
    uint8_t *data_buf;            /* AIRFSM_DATA_CAPACITY */
    size_t data_cap;
    uint8_t *info_arena;          /* AIRFSM_INFO_ARENA */
    size_t arena_cap;
} at_config_t;

/* The receive states (Python: at._Rx, _Sink, _Prompt). Private to at.c. */
typedef enum {
    AT_RX_LINE = 0,
    AT_RX_SKIP_LINE = 1,
    AT_RX_SKIP_LF = 2,
    AT_RX_DATA = 3,
    AT_RX_HEX_TAIL = 4,
    AT_RX_MSUB_END = 5,
    AT_RX_PROMPT_SPACE = 6
} at_rx_t;

typedef enum {
    AT_SINK_NONE = 0,
    AT_SINK_RESPONSE = 1,
    AT_SINK_URC = 2,
    AT_SINK_DISCARD = 3
} at_sink_t;

typedef enum {
    AT_PROMPT_NONE = 0,
    AT_PROMPT_AWAITED = 1,
    AT_PROMPT_GIVEN = 2
} at_prompt_t;

/* Twin: at.AtChannel. Caller-allocated (a member of the controller's struct). The counters,
 * stall_ms and response are public, as in Python; everything else belongs to at.c (Python's
 * underscored attributes): read it through the functions below. */
typedef struct {
    /* the callbacks and the URC table */
    at_config_t config;
    int msub_urc;                 /* the table's MSUB row (AT_URC_NONE: none) */
    uint32_t baud;
    uint32_t stall_ms;            /* at_payload_stall_ms(baud): public, as in Python */

    /* the command in flight */
    bool active;
    const uint8_t *command;       /* the caller's command buffer */
    size_t command_len;
    size_t prefix_end;            /* its answer lines' prefix is command[2 .. prefix_end) */
    uint32_t deadline;
    at_prompt_t prompt;
    bool final_urc;
    bool final_urc_awaited;
    bool echo_seen;               /* the echo of the command in flight was dropped */
    bool echo_on;                 /* the module echoes: until the echo, no final code is ours */
    at_response_t response;

    /* the receiver */
    uint32_t now;
    at_rx_t rx;
    uint8_t *line;
    size_t line_cap;
    size_t line_len;
    bool msub_possible;
    size_t header_len;
    uint8_t *data;
    size_t data_cap;
    size_t data_len;
    uint32_t data_left;
    uint32_t data_declared;
    uint32_t data_read;
    uint32_t data_started_at;
    uint32_t data_last_at;
    uint32_t data_budget_ms;
    at_sink_t sink;
    bool hex_possible;
    bool hex_candidate;
    bool hex_payload;
    int32_t pending;              /* a payload appended to its header in line (-1: none) */
    size_t refeed_len;            /* bytes a truncated payload swallowed, at data[0..], to feed */

    /* counters (Python: the AtChannel attributes of the same names) */
    uint32_t lines_dropped;       /* lines longer than the line buffer */
    uint32_t stray_lines;         /* no command in flight, not a URC (e.g. a late OK) */
    uint32_t urcs;                /* URCs delivered */
    uint32_t data_dropped;        /* length-counted items read and discarded */
    uint32_t payloads_truncated;  /* length-counted items that came short (dropped) */
    uint32_t msub_resplits;       /* a `byte,` inside a topic first taken for the header's end */
    uint32_t info_lines_dropped;  /* info lines beyond AIRFSM_MAX_INFO_LINES or the arena */
    uint32_t commands_refused;    /* at_send()/at_send_data() refused */
} at_channel_t;

/* Twin: AtChannel.__init__: set the channel up over the caller's buffers (copied config). */
void at_init(at_channel_t *ch, const at_config_t *config);

/* Twin: AtChannel.busy: a command is in flight (including between its PROMPT and final code). */
bool at_busy(const at_channel_t *ch);

/* Twin: AtChannel.deadline: the command's deadline in *deadline; false (None) when idle. */
bool at_deadline(const at_channel_t *ch, uint32_t *deadline);

/* Twin: AtChannel.receive_deadline: when at_check_timeout() must look at the payload being read
 * (its stall window, its overrun budget, or the wait for the byte after it); false: none. */
bool at_receive_deadline(const at_channel_t *ch, uint32_t *deadline);

/* Twin: AtChannel.hex_payloads_possible: AT+MQTTMODE=1 went out, AT+MQTTMODE=0 not answered
 * OK since. */
bool at_hex_payloads_possible(const at_channel_t *ch);

/* Twin: AtChannel.send(): write the command buf[:length] and a CR (at buf[length]: the caller
 * leaves one byte of its `cap` free) and wait for its final code until now_ms + timeout_ms
 * (clamped to AIRFSM_MAX_TIMEOUT_MS). Busy: refused (counted), nothing else changes. A command
 * without room for its CR, or holding a CR, LF or NUL: refused, reported as
 * AIRFSM_AT_RESULT_ERROR through on_response. buf[:length] must not change while in flight.
 * final_urc: the first final code after its OK, with no command in flight, goes to on_urc. */
void at_send(at_channel_t *ch, uint8_t *buf, size_t cap, size_t length, uint32_t now_ms,
             uint32_t timeout_ms, bool expect_prompt, bool final_urc);

/* Twin: AtChannel.send_data(): after PROMPT, write the raw body buf[:length] (no CR) and wait
 * again for the final code; refused (counted) outside a prompt. */
void at_send_data(at_channel_t *ch, const uint8_t *buf, size_t length, uint32_t now_ms,
                  uint32_t timeout_ms);

/* Twin: AtChannel.check_timeout(): close a stalled or overrun payload (and feed what it
 * swallowed), then report AIRFSM_AT_RESULT_TIMEOUT once if the command in flight has reached
 * its deadline. */
void at_check_timeout(at_channel_t *ch, uint32_t now_ms);

/* Twin: AtChannel.reset(): forget the command in flight, any partial line or payload and hex
 * mode (the module restarted); no callback. */
void at_reset(at_channel_t *ch);

/* Twin: AtChannel.feed(): process the received bytes data[:length]; now_ms stamps the bytes of a
 * length-counted payload. */
void at_feed(at_channel_t *ch, const uint8_t *data, size_t length, uint32_t now_ms);

/* --- free functions over module text ------------------------------------------------------- */

/* Twin: at._is_noise(): a byte no module line starts with (control bytes, >= 0x7F). */
static inline bool at_is_noise(uint8_t b) { return b < 0x20u || b > 0x7Eu; }

/* Twin: at.final_code(): the index in airfsm_final_codes of the final code buf[start:end] is, or
 * AT_NOT_FINAL. */
int at_final_code(const uint8_t *buf, size_t start, size_t end);

/* Twin: at.final_code_number(): the number after final code `index` in buf[start:end] (-1). */
int32_t at_final_code_number(const uint8_t *buf, size_t start, size_t end, int index);

/* Twin: at.response_prefix_end(): where the answer lines' prefix ends in command[:length] (the
 * prefix is command[2 .. end): AT+CGATT? -> +CGATT); 0 when the command has none. */
size_t at_response_prefix_end(const uint8_t *command, size_t length);

/* Twin: at.msub_topic(): the topic of a `+MSUB: <topic>,<n> byte,` header line, without quotes,
 * as a pointer into line and *topic_len; an empty topic (*topic_len 0) when it is no header. */
const uint8_t *at_msub_topic(const uint8_t *line, size_t len, size_t *topic_len);

/* Twin: at.is_msub_message(): line is a `+MSUB: <topic>,<n> byte,` header. */
bool at_is_msub_message(const uint8_t *line, size_t len);

/* Twin: at.msub_cache_slot(): the slot of a cache-mode notice `+MSUB: <0-9>`, else -1. */
int at_msub_cache_slot(const uint8_t *line, size_t len);

/* Twin: at.payload_stall_ms(): how long a payload may pause at this rate before it is called
 * truncated (AIRFSM_PAYLOAD_STALL_CHARS character times, at least the floor). */
uint32_t at_payload_stall_ms(uint32_t baud);

#endif /* AIRFSM_AT_H */
