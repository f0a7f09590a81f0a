/* at.c: the AT channel. Python twin: airfsm/core/at.py; every function names its twin (static
 * ones before their first caller, as C wants). The digest, the receive states and the payload
 * rules are stated in at.h and, in full, in the Python module's docstring.
 *
 * One difference of form: when a truncated payload's swallowed bytes are fed again, Python calls
 * feed() on a copy of them (recursively, when a re-fed byte truncates again). Here they are moved
 * to the front of the data buffer and fed from there; a truncation during that feed puts its own
 * swallowed bytes in front of the ones still unread and goes on with both, which is the same
 * bytes in the same order, with a recursion depth of one and no second buffer. Writing into the
 * data buffer while it is being fed is safe: a payload byte is kept at an offset no later than
 * the one it was read from (memmove).
 */
#include <string.h>

#include "at.h"
#include "textparse.h"
#include "timebase.h"

#define CR 0x0Du
#define LF 0x0Au
#define NUL 0x00u
#define SP 0x20u
#define QUOTE 0x22u
#define COMMA 0x2Cu
#define COLON 0x3Au
#define PLUS 0x2Bu
#define CASE 0x20u /* ASCII letters: lower case = upper case | 0x20 */

/* Twin: at.ECHO_OFF: the command that switches the module's echo off. */
static const airfsm_text_t at_echo_off = {"ATE0", 4};

/* `text` (airfsm_text_t) at buf[start:end]'s start: Python's buf.startswith(text, start, end). */
static bool at_starts_with(const uint8_t *buf, size_t start, size_t end, const char *text,
                           size_t len)
{
    return end >= start && end - start >= len && memcmp(buf + start, text, len) == 0;
}

/* --- free functions over module text ----------------------------------------------------- */

/* Twin: at._line_end(): the first CR or LF in data[start:end], or end (two memchr()s, the
 * second bounded by the first). */
static size_t at_line_end(const uint8_t *data, size_t start, size_t end)
{
    const uint8_t *cr, *lf;
    size_t cr_at;

    if (start >= end) {
        return end;
    }
    cr = memchr(data + start, CR, end - start);
    cr_at = cr != NULL ? (size_t)(cr - data) : end;
    lf = cr_at > start ? memchr(data + start, LF, cr_at - start) : NULL;
    return lf != NULL ? (size_t)(lf - data) : cr_at;
}

/* Twin: at._msub_split(): parse a `+MSUB:` header in buf[:n] ending in `byte,`: the topic's
 * bounds in *topic_start, *topic_end; the length, or -1 when buf[:n] is no such header. */
static int32_t at_msub_split(const uint8_t *buf, size_t n, size_t *topic_start,
                             size_t *topic_end)
{
    const size_t unit = airfsm_msub_length_unit.len, head = airfsm_msub_header.len;
    size_t digits_end, digits_start, ndigits, comma, first, last;

    *topic_start = 0;
    *topic_end = 0;
    if (n < head + unit + 2) { /* at least ",<digit>" between header and unit */
        return -1;
    }
    if (!at_starts_with(buf, 0, n, airfsm_msub_header.text, head) ||
        memcmp(buf + n - unit, airfsm_msub_length_unit.text, unit) != 0) {
        return -1;
    }
    digits_end = n - unit;
    while (digits_end > head && buf[digits_end - 1] == SP) {
        digits_end--;
    }
    digits_start = digits_end;
    while (digits_start > head && textparse_is_digit(buf[digits_start - 1])) {
        digits_start--;
    }
    ndigits = digits_end - digits_start;
    if (ndigits == 0 || ndigits > AIRFSM_MAX_UINT_DIGITS) {
        return -1;
    }
    comma = digits_start - 1;
    while (comma > head && buf[comma] == SP) {
        comma--;
    }
    if (comma < head || buf[comma] != COMMA) {
        return -1;
    }
    first = head;
    while (first < comma && buf[first] == SP) {
        first++;
    }
    last = comma;
    if (first < comma && buf[first] == QUOTE) {
        /* quoted form: `"<topic>",<n> byte,` - the quote must close right before the comma */
        if (comma - first < 2 || buf[comma - 1] != QUOTE) {
            return -1;
        }
        first++;
        last = comma - 1;
    }
    *topic_start = first;
    *topic_end = last;
    return textparse_uint(buf, digits_start, digits_end);
}

/* Twin: at.msub_topic(). */
const uint8_t *at_msub_topic(const uint8_t *line, size_t len, size_t *topic_len)
{
    size_t start, end;

    if (at_msub_split(line, len, &start, &end) < 0) {
        *topic_len = 0;
        return line;
    }
    *topic_len = end - start;
    return line + start;
}

/* Twin: at.is_msub_message(). */
bool at_is_msub_message(const uint8_t *line, size_t len)
{
    size_t start, end;

    return at_msub_split(line, len, &start, &end) >= 0;
}

/* Twin: at.msub_cache_slot(). */
int at_msub_cache_slot(const uint8_t *line, size_t len)
{
    int32_t slot;

    if (!at_starts_with(line, 0, len, airfsm_msub_header.text, airfsm_msub_header.len)) {
        return -1;
    }
    slot = textparse_uint(line, airfsm_msub_header.len, len);
    return slot >= 0 && slot <= 9 ? (int)slot : -1;
}

/* Twin: at.final_code(). */
int at_final_code(const uint8_t *buf, size_t start, size_t end)
{
    size_t n = end - start;
    int index;

    for (index = 0; index < AIRFSM_FINAL_CODE_COUNT; index++) {
        const airfsm_final_code_t *code = &airfsm_final_codes[index];
        size_t t = code->text.len;
        if ((code->has_code ? n >= t : n == t) &&
            memcmp(buf + start, code->text.text, t) == 0) {
            return index;
        }
    }
    return AT_NOT_FINAL;
}

/* Twin: at.final_code_number(). */
int32_t at_final_code_number(const uint8_t *buf, size_t start, size_t end, int index)
{
    const airfsm_final_code_t *code = &airfsm_final_codes[index];

    return code->has_code ? textparse_uint(buf, start + code->text.len, end) : -1;
}

/* Twin: at.response_prefix_end(). */
size_t at_response_prefix_end(const uint8_t *command, size_t length)
{
    size_t end = 3;

    if (length < 4 || (command[0] | CASE) != 0x61u || (command[1] | CASE) != 0x74u ||
        command[2] != PLUS) {
        return 0;
    }
    while (end < length) {
        uint8_t b = command[end];
        if (!((b >= 0x41u && b <= 0x5Au) || (b >= 0x61u && b <= 0x7Au) ||
              textparse_is_digit(b) || b == 0x5Fu)) {
            break;
        }
        end++;
    }
    return end == 3 ? 0 : end;
}

/* Twin: at._starts_with_nocase(): buf[:length] starts with text, letters compared without case. */
static bool at_starts_with_nocase(const uint8_t *buf, size_t length, const airfsm_text_t *text)
{
    size_t i;

    if (length < text->len) {
        return false;
    }
    for (i = 0; i < text->len; i++) {
        uint8_t b = buf[i], t = (uint8_t)text->text[i];
        if (b != t && !(t >= 0x41u && t <= 0x5Au && b == (t | CASE))) {
            return false;
        }
    }
    return true;
}

/* Twin: at.payload_stall_ms(). */
uint32_t at_payload_stall_ms(uint32_t baud)
{
    const uint32_t bits = AIRFSM_PAYLOAD_STALL_CHARS * AIRFSM_UART_BITS_PER_CHAR * 1000u;
    uint32_t chars_ms;

    if (baud < 1u) {
        baud = 1u;
    }
    chars_ms = bits / baud + (bits % baud != 0u); /* rounded up, without overflow */
    return chars_ms > AIRFSM_PAYLOAD_STALL_FLOOR_MS ? chars_ms : AIRFSM_PAYLOAD_STALL_FLOOR_MS;
}

/* Twin: at._clamp_timeout(). */
static uint32_t at_clamp_timeout(uint32_t timeout_ms)
{
    return timeout_ms > AIRFSM_MAX_TIMEOUT_MS ? AIRFSM_MAX_TIMEOUT_MS : timeout_ms;
}

/* --- the response ------------------------------------------------------------------------ */

/* Twin: AtResponse.clear(). */
static void at_response_clear(at_response_t *response, const uint8_t *command, size_t len)
{
    response->result = AIRFSM_AT_RESULT_OK;
    response->cme_error = -1;
    response->command = command;
    response->command_len = len;
    response->truncated = false;
    response->arena_used = 0;
    response->line_count = 0;
    response->data_start = 0;
    response->data_length = 0;
}

/* Twin: AtResponse.find_line(). */
int at_response_find(const at_response_t *response, const uint8_t *prefix, size_t prefix_len)
{
    size_t i;

    for (i = 0; i < response->line_count; i++) {
        if (response->line_length[i] >= prefix_len &&
            memcmp(response->arena + response->line_start[i], prefix, prefix_len) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Twin: AtResponse.line_end(). */
size_t at_response_line_end(const at_response_t *response, size_t index)
{
    return response->line_start[index] + response->line_length[index];
}

/* Twin: AtResponse.line(): a view, not a copy. */
const uint8_t *at_response_line(const at_response_t *response, int index, size_t *len)
{
    if (index < 0 || (size_t)index >= response->line_count) {
        *len = 0;
        return response->arena;
    }
    *len = response->line_length[index];
    return response->arena + response->line_start[index];
}

/* --- the channel: set-up and state ------------------------------------------------------- */

/* Twin: AtChannel.__init__. */
void at_init(at_channel_t *ch, const at_config_t *config)
{
    size_t i;

    memset(ch, 0, sizeof *ch);
    ch->config = *config;
    if (ch->config.urcs == NULL) {
        ch->config.urcs = airfsm_urcs;
        ch->config.urc_count = AIRFSM_URC_COUNT;
    }
    ch->msub_urc = AT_URC_NONE;
    for (i = 0; i < ch->config.urc_count; i++) {
        if (ch->config.urcs[i].kind == AIRFSM_URC_KIND_MSUB) {
            ch->msub_urc = (int)i;
            break;
        }
    }
    ch->baud = config->baud > 0u ? config->baud : 1u;
    ch->stall_ms = at_payload_stall_ms(ch->baud);

    /* the command in flight */
    ch->active = false;
    ch->command = NULL;
    ch->command_len = 0;
    ch->prefix_end = 0;
    ch->deadline = 0;
    ch->prompt = AT_PROMPT_NONE;
    ch->final_urc = false;
    ch->final_urc_awaited = false;
    ch->echo_seen = false;
    ch->echo_on = false;
    ch->response.arena = config->info_arena;
    ch->response.arena_cap = config->arena_cap;
    at_response_clear(&ch->response, NULL, 0);

    /* the receiver */
    ch->now = 0;
    ch->rx = AT_RX_LINE;
    ch->line = config->line_buf;
    ch->line_cap = config->line_cap;
    ch->line_len = 0;
    ch->msub_possible = true;
    ch->header_len = 0;
    ch->data = config->data_buf;
    ch->data_cap = config->data_cap;
    ch->sink = AT_SINK_NONE;
    ch->hex_possible = false;
    ch->hex_candidate = false;
    ch->hex_payload = false;
    ch->pending = -1;
    ch->refeed_len = 0;
    /* the counters: zero (memset) */
}

/* Twin: AtChannel.busy. */
bool at_busy(const at_channel_t *ch) { return ch->active; }

/* Twin: AtChannel.deadline. */
bool at_deadline(const at_channel_t *ch, uint32_t *deadline)
{
    if (!ch->active) {
        return false;
    }
    *deadline = ch->deadline;
    return true;
}

/* Twin: AtChannel.receive_deadline. */
bool at_receive_deadline(const at_channel_t *ch, uint32_t *deadline)
{
    if (ch->rx == AT_RX_MSUB_END) {
        *deadline = ms_add(ch->data_last_at, ch->stall_ms);
        return true;
    }
    if (ch->rx == AT_RX_SKIP_LF || ch->rx == AT_RX_DATA || ch->rx == AT_RX_HEX_TAIL) {
        /* SKIP_LF: the wait for the header's LF is the payload's */
        return ms_earliest(true, ms_add(ch->data_last_at, ch->stall_ms), true,
                           ms_add(ch->data_started_at, ch->data_budget_ms), deadline);
    }
    return false;
}

/* Twin: AtChannel.hex_payloads_possible. */
bool at_hex_payloads_possible(const at_channel_t *ch) { return ch->hex_possible; }

/* --- completion (used by the receiver below) --------------------------------------------- */

/* Twin: AtChannel._give_prompt(). */
static void at_give_prompt(at_channel_t *ch)
{
    ch->prompt = AT_PROMPT_GIVEN;
    ch->response.result = AIRFSM_AT_RESULT_PROMPT;
    ch->config.on_response(ch->config.ctx, &ch->response);
}

/* Twin: AtChannel._complete(). Idle first: the caller may send the next command as soon as it
 * learns of this one's end. */
static void at_complete(at_channel_t *ch, airfsm_at_result_t result, int32_t cme_error)
{
    bool ok = result == AIRFSM_AT_RESULT_OK;

    ch->active = false;
    ch->prompt = AT_PROMPT_NONE;
    ch->final_urc_awaited = ok && ch->final_urc;
    if (ok && at_starts_with_nocase(ch->command, ch->command_len, &airfsm_hex_mode_off)) {
        ch->hex_possible = false;
    }
    if ((ok && at_starts_with_nocase(ch->command, ch->command_len, &at_echo_off)) ||
        (result == AIRFSM_AT_RESULT_TIMEOUT && !ch->echo_seen)) {
        /* Echo switched off, or no echo and no answer (the module may have stopped echoing):
         * take answers without an echo again, until an echo shows it back on. */
        ch->echo_on = false;
    }
    if (ch->sink == AT_SINK_RESPONSE) {
        /* Timed out in the middle of the body: keep reading it, but it belongs to no one. */
        ch->sink = AT_SINK_DISCARD;
        ch->data_dropped++;
    }
    ch->response.result = result;
    ch->response.cme_error = cme_error;
    ch->config.on_response(ch->config.ctx, &ch->response);
}

/* --- transmit ---------------------------------------------------------------------------- */

/* Twin: AtChannel.send(). */
void at_send(at_channel_t *ch, uint8_t *buf, size_t cap, size_t length, uint32_t now_ms,
             uint32_t timeout_ms, bool expect_prompt, bool final_urc)
{
    size_t shown = length < cap ? length : cap; /* Python: memoryview(buf)[:length] */

    if (ch->active) {
        /* Precondition broken by the caller: keep the command in flight intact. */
        ch->commands_refused++;
        return;
    }
    at_response_clear(&ch->response, buf, shown);
    ch->final_urc_awaited = false;
    if (length >= cap || memchr(buf, NUL, length) != NULL || memchr(buf, CR, length) != NULL ||
        memchr(buf, LF, length) != NULL) {
        /* A CR/LF would end the command early and start a second one chosen by whoever built
         * this string (a NUL would cut it short in string handling); refuse it whole, and
         * report it the way the module reports a bad command. */
        ch->commands_refused++;
        ch->response.result = AIRFSM_AT_RESULT_ERROR;
        ch->config.on_response(ch->config.ctx, &ch->response);
        return;
    }
    if (at_starts_with_nocase(buf, length, &airfsm_hex_mode_on)) {
        ch->hex_possible = true; /* the module may switch as soon as it reads this */
    }
    /* State first, then write: should the write fail, the deadline still ends the wait. */
    ch->active = true;
    ch->command = buf;
    ch->command_len = length;
    ch->prefix_end = at_response_prefix_end(buf, length);
    ch->deadline = ms_add(now_ms, at_clamp_timeout(timeout_ms));
    ch->prompt = expect_prompt ? AT_PROMPT_AWAITED : AT_PROMPT_NONE;
    ch->final_urc = final_urc;
    ch->echo_seen = false;
    buf[length] = CR;
    ch->config.write(ch->config.ctx, buf, length + 1);
}

/* Twin: AtChannel.send_data(). */
void at_send_data(at_channel_t *ch, const uint8_t *buf, size_t length, uint32_t now_ms,
                  uint32_t timeout_ms)
{
    if (!ch->active || ch->prompt != AT_PROMPT_GIVEN) {
        /* Raw bytes outside a prompt would be parsed by the module as AT commands. */
        ch->commands_refused++;
        return;
    }
    ch->prompt = AT_PROMPT_NONE;
    ch->deadline = ms_add(now_ms, at_clamp_timeout(timeout_ms));
    ch->config.write(ch->config.ctx, buf, length);
}

/* --- length-counted payloads ------------------------------------------------------------- */

/* Twin: AtChannel._end_payload(): back to assembling lines; the data buffer is free again. */
static void at_end_payload(at_channel_t *ch)
{
    ch->rx = AT_RX_LINE;
    ch->sink = AT_SINK_NONE;
    ch->data_len = 0;
    ch->data_left = 0;
    ch->data_read = 0;
    ch->hex_candidate = false;
    ch->hex_payload = false;
    ch->pending = -1;
}

/* Twin: AtChannel._deliver_msub(): on_urc(MSUB row, header, payload) for the payload in
 * buf[start:end], decoded in place if hex (the digits were checked when they came: pairs of
 * textparse_hex(); the decoded bytes take the first half of the digits' place). */
static void at_deliver_msub(at_channel_t *ch, uint8_t *buf, size_t start, size_t end)
{
    size_t len = end - start, i;

    if (ch->hex_payload) {
        len /= 2;
        for (i = 0; i < len; i++) {
            buf[start + i] = (uint8_t)(textparse_hex(buf[start + 2 * i]) << 4 |
                                       textparse_hex(buf[start + 2 * i + 1]));
        }
    }
    ch->urcs++;
    ch->config.on_urc(ch->config.ctx, ch->msub_urc, ch->line, ch->header_len, buf + start, len);
}

/* Twin: AtChannel._deliver_pending(). */
static void at_deliver_pending(at_channel_t *ch)
{
    size_t start = ch->header_len, end = start + (size_t)ch->pending;

    ch->pending = -1;
    at_deliver_msub(ch, ch->line, start, end);
    ch->hex_payload = false;
}

/* Twin: AtChannel._keep_response_data(): the +HTTPREAD body becomes the response's data, copied
 * after its info lines in the arena, where a URC payload read before the final code cannot
 * touch it. */
static void at_keep_response_data(at_channel_t *ch)
{
    at_response_t *response = &ch->response;
    size_t at = response->arena_used, n = ch->data_len;

    if (at + n > response->arena_cap) {
        ch->data_dropped++;
        return;
    }
    memcpy(response->arena + at, ch->data, n);
    response->data_start = at;
    response->data_length = n;
    response->arena_used = at + n;
}

/* Twin: AtChannel._data_complete(). */
static void at_data_complete(at_channel_t *ch)
{
    if (ch->sink == AT_SINK_URC) {
        size_t n = ch->data_len, i;
        bool all_hex = ch->hex_possible && n > 0 && 2 * n <= ch->data_cap;
        for (i = 0; all_hex && i < n; i++) { /* every byte a hex digit */
            all_hex = textparse_hex(ch->data[i]) >= 0;
        }
        ch->hex_candidate = all_hex;
        ch->rx = AT_RX_MSUB_END;
        return;
    }
    if (ch->sink == AT_SINK_RESPONSE) {
        at_keep_response_data(ch);
    }
    at_end_payload(ch);
}

/* Twin: AtChannel._start_data(). */
static void at_start_data(at_channel_t *ch, size_t header_len, uint32_t length, at_sink_t sink)
{
    uint64_t chars, line_ms, budget;

    if (length > ch->data_cap || sink == AT_SINK_DISCARD) {
        ch->data_dropped++;
        sink = AT_SINK_DISCARD;
    }
    ch->sink = sink;
    ch->header_len = header_len;
    ch->data_len = 0;
    ch->data_read = 0;
    ch->data_left = length;
    ch->data_declared = length;
    ch->hex_candidate = false;
    ch->hex_payload = false;
    ch->data_started_at = ch->now;
    ch->data_last_at = ch->now;
    chars = (sink == AT_SINK_URC && ch->hex_possible ? 2u : 1u) * (uint64_t)length;
    line_ms = (2u * chars * AIRFSM_UART_BITS_PER_CHAR * 1000u + ch->baud - 1u) / ch->baud;
    budget = line_ms + AIRFSM_PAYLOAD_OVERRUN_SLACK_MS + ch->stall_ms;
    ch->data_budget_ms = budget < AIRFSM_MAX_TIMEOUT_MS ? (uint32_t)budget : AIRFSM_MAX_TIMEOUT_MS;
    ch->rx = AT_RX_DATA;
    if (length == 0) { /* `+MSUB: "/t",0 byte,`: nothing to read, but the line end decides */
        at_data_complete(ch);
    }
}

/* Twin: AtChannel._keep(): count `count` payload bytes and keep what fits in the data buffer
 * (memmove: when swallowed bytes are fed again, they are read from the data buffer itself). */
static void at_keep(at_channel_t *ch, const uint8_t *from, size_t count)
{
    size_t room = ch->data_cap - ch->data_len;

    if (count < room) {
        room = count;
    }
    if (room > 0) {
        memmove(ch->data + ch->data_len, from, room);
        ch->data_len += room;
    }
    ch->data_read += (uint32_t)count;
}

/* Twin: AtChannel._truncate(): the payload came short: drop it, report it, and leave what it
 * swallowed after its first line end at the front of the data buffer (refeed_len bytes) for
 * the caller to feed again (Python feeds it from here). */
static void at_truncate(at_channel_t *ch)
{
    size_t kept = ch->data_len, cut = at_line_end(ch->data, 0, kept), header_len = ch->header_len;
    uint32_t declared = ch->data_declared, received = ch->data_read;

    if (ch->sink == AT_SINK_RESPONSE) {
        ch->response.truncated = true;
    }
    ch->payloads_truncated++;
    ch->line_len = 0;
    at_end_payload(ch);
    memmove(ch->data, ch->data + cut, kept - cut);
    ch->refeed_len = kept - cut;
    if (ch->config.on_truncated != NULL) {
        ch->config.on_truncated(ch->config.ctx, ch->line, header_len, declared, received);
    }
}

/* --- the receiver ------------------------------------------------------------------------ */

/* Twin: AtChannel._content_start(): the first byte of line[:n] that is not leading noise. */
static size_t at_content_start(const at_channel_t *ch, size_t n)
{
    size_t start = 0;

    while (start < n && at_is_noise(ch->line[start])) {
        start++;
    }
    return start;
}

/* Twin: AtChannel._overflow(): a line longer than the line buffer: dropped, skipped to its end. */
static void at_overflow(at_channel_t *ch)
{
    if (ch->pending >= 0) {
        at_deliver_pending(ch); /* the message was whole; the rest is too long */
    }
    ch->lines_dropped++;
    ch->line_len = 0;
    ch->rx = AT_RX_SKIP_LINE;
}

/* Twin: AtChannel._match_urc(): the first row of the URC table line[s:n] starts with, of the
 * FINAL rows when `final`, else of the others; AT_URC_NONE when none (an empty prefix never
 * matches). Python indexes the rows by their first byte: the same first row in table order. */
static int at_match_urc(const at_channel_t *ch, size_t s, size_t n, bool final)
{
    size_t i;

    if (s >= n) {
        return AT_URC_NONE;
    }
    for (i = 0; i < ch->config.urc_count; i++) {
        const airfsm_urc_t *row = &ch->config.urcs[i];
        if (row->prefix.len > 0 && (row->kind == AIRFSM_URC_KIND_FINAL) == final &&
            at_starts_with(ch->line, s, n, row->prefix.text, row->prefix.len)) {
            return (int)i;
        }
    }
    return AT_URC_NONE;
}

/* Twin: AtChannel._is_own_line(). */
static bool at_is_own_line(const at_channel_t *ch, size_t s, size_t n)
{
    const uint8_t *line = ch->line;
    size_t p = ch->prefix_end > 2 ? ch->prefix_end - 2 : 0, after, i;

    if (p == 0 || n - s <= p || memcmp(line + s, ch->command + 2, p) != 0) {
        return false;
    }
    after = s + p;
    if (!(line[after] == COLON ||
          (line[after] == SP && n > after + 1 && line[after + 1] == COLON))) {
        return false;
    }
    for (i = 0; i < ch->config.urc_count; i++) {
        const airfsm_urc_t *row = &ch->config.urcs[i];
        if (row->urc_only && at_starts_with(line, s, n, row->prefix.text, row->prefix.len)) {
            return false;
        }
    }
    return true;
}

/* Twin: AtChannel._ignore(): the line ch->line[s:n] means nothing: tell on_ignored. */
static void at_ignore(at_channel_t *ch, size_t s, size_t n)
{
    if (ch->config.on_ignored != NULL) {
        ch->config.on_ignored(ch->config.ctx, ch->line + s, n - s);
    }
}

/* Twin: AtChannel._add_info_line(): line[s:n] into the info arena as the next line. */
static void at_add_info_line(at_channel_t *ch, size_t s, size_t n)
{
    at_response_t *response = &ch->response;
    size_t at = response->arena_used, count = n - s;

    if (response->line_count == AIRFSM_MAX_INFO_LINES || at + count > response->arena_cap) {
        ch->info_lines_dropped++;
        return;
    }
    memcpy(response->arena + at, ch->line + s, count);
    response->line_start[response->line_count] = at;
    response->line_length[response->line_count] = count;
    response->line_count++;
    response->arena_used = at + count;
}

/* Twin: AtChannel._digest(): what the complete line line[:n] is, in the order of at.h. Python
 * looks at the codes and URC rows of the line's first byte only; here they are compared in
 * turn (the same first match). */
static void at_digest(at_channel_t *ch, size_t n)
{
    uint8_t *line = ch->line;
    size_t s = at_content_start(ch, n), i;
    bool own = false, answering = false;
    int final, urc;

    if (ch->active) {
        /* 1. echo */
        if (n - s == ch->command_len && memcmp(line + s, ch->command, ch->command_len) == 0) {
            ch->echo_seen = true;
            ch->echo_on = true;
            at_ignore(ch, s, n);
            return;
        }
        /* A module that echoes sends the echo before anything of the answer: until it comes,
         * what arrives is not this command's (a duplicated or late final code of the one
         * before): digested as with no command in flight. */
        answering = ch->echo_seen || !ch->echo_on;
    }
    /* 2. final result code */
    final = at_final_code(line, s, n);
    if (final != AT_NOT_FINAL) {
        if (answering) {
            at_complete(ch, airfsm_final_codes[final].result,
                        at_final_code_number(line, s, n, final));
        } else if (ch->final_urc_awaited) {
            /* 2'. no command in flight: the outcome of the one sent with final_urc */
            ch->final_urc_awaited = false;
            ch->urcs++;
            ch->config.on_urc(ch->config.ctx, at_match_urc(ch, s, n, true), line + s, n - s,
                              NULL, 0);
        } else {
            ch->stray_lines++; /* 2'. a late answer of a command that timed out */
            at_ignore(ch, s, n);
        }
        return;
    }
    if (answering) {
        /* 3. prompt */
        if (ch->prompt == AT_PROMPT_AWAITED) {
            for (i = 0; i < AIRFSM_PROMPT_LINE_COUNT; i++) {
                const airfsm_text_t *text = &airfsm_prompt_lines[i];
                if (n - s == text->len && memcmp(line + s, text->text, text->len) == 0) {
                    at_give_prompt(ch);
                    return;
                }
            }
        }
        /* 4. the command's own answer line */
        own = at_is_own_line(ch, s, n);
        if (own) {
            at_add_info_line(ch, s, n);
        }
    }
    if (!own) {
        /* 5. URC */
        urc = at_match_urc(ch, s, n, false);
        if (urc != AT_URC_NONE) {
            ch->urcs++;
            ch->config.on_urc(ch->config.ctx, urc, line + s, n - s, NULL, 0);
        } else if (answering) {
            /* 6. info line (as received) or stray */
            at_add_info_line(ch, 0, n);
        } else {
            ch->stray_lines++;
            at_ignore(ch, 0, n); /* as received, like an info line */
        }
    }
    /* length-counted data after the line, whatever the line was */
    if (n - s > airfsm_httpread_header.len &&
        memcmp(line + s, airfsm_httpread_header.text, airfsm_httpread_header.len) == 0) {
        int32_t length = textparse_uint(line, s + airfsm_httpread_header.len, n);
        if (length > 0) {
            if (s > 0) {
                memmove(line, line + s, n - s); /* keep the header at the front */
            }
            at_start_data(ch, n - s, (uint32_t)length,
                          own ? AT_SINK_RESPONSE : AT_SINK_DISCARD);
        }
    }
}

/* Twin: AtChannel._end_line(). */
static void at_end_line(at_channel_t *ch, uint8_t terminator)
{
    size_t n = ch->line_len;

    ch->line_len = 0;
    if (ch->pending >= 0) {
        /* The payload held after its header was a whole message after all: deliver it; what
         * followed it on the line is a line of its own. */
        size_t rest_start = ch->header_len + (size_t)ch->pending;
        at_deliver_pending(ch);
        memmove(ch->line, ch->line + rest_start, n - rest_start);
        n -= rest_start;
    }
    if (n == 0) {
        return; /* the CR LF pairs around every module line */
    }
    at_digest(ch, n);
    if (ch->rx == AT_RX_DATA && terminator == CR) {
        ch->rx = AT_RX_SKIP_LF;
    }
}

/* Twin: AtChannel._check_msub_header(): on a `,`: is the line so far a `+MSUB: <topic>,<n> byte,`
 * header? */
static void at_check_msub_header(at_channel_t *ch)
{
    size_t n = ch->line_len, s = at_content_start(ch, n), topic_start, topic_end;
    int32_t length;

    if (!at_starts_with(ch->line, s, n, airfsm_msub_header.text, airfsm_msub_header.len)) {
        /* Something other than noise comes first, and it is not `+MSUB:`: no later comma of
         * this line can end a header (the payload of a pending one included). */
        ch->msub_possible = false;
        return;
    }
    if (s > 0) {
        memmove(ch->line, ch->line + s, n - s); /* drop the boot noise before it */
        n -= s;
        ch->line_len = n;
    }
    length = at_msub_split(ch->line, n, &topic_start, &topic_end);
    if (length < 0) {
        return;
    }
    if (ch->pending >= 0) {
        /* The payload taken after an earlier `byte,` was part of this longer topic. */
        ch->pending = -1;
        ch->msub_resplits++;
    }
    ch->line_len = 0;
    /* The header stays in line[:n] until the payload is complete. */
    at_start_data(ch, n, (uint32_t)length, AT_SINK_URC);
}

/* Twin: AtChannel._after_msub_payload(): MSUB_END: the byte after a +MSUB payload decides what
 * the payload was. */
static void at_after_msub_payload(at_channel_t *ch, uint8_t b)
{
    size_t header_len, size;

    if (ch->hex_candidate && textparse_hex(b) >= 0) {
        ch->hex_candidate = false;
        ch->rx = AT_RX_HEX_TAIL; /* n hex digits and more coming: the 2n-digit hex form */
        return;
    }
    if (b == CR || b == LF) {
        at_deliver_msub(ch, ch->data, 0, ch->data_len); /* the usual case */
        at_end_payload(ch);
        return;
    }
    /* Not a line end: the `byte,` may have been inside the topic. Go on with the line, the
     * payload appended to the header; at_end_line or a later header decides. */
    header_len = ch->header_len;
    size = ch->data_len;
    ch->sink = AT_SINK_NONE;
    ch->rx = AT_RX_LINE;
    if (header_len + size > ch->line_cap) {
        at_deliver_msub(ch, ch->data, 0, size); /* too long to be part of any header */
        at_end_payload(ch);
        return;
    }
    memcpy(ch->line + header_len, ch->data, size);
    ch->line_len = header_len + size;
    ch->msub_possible = true; /* a +MSUB: line, whose later commas may end its header */
    ch->pending = (int32_t)size;
    ch->data_len = 0; /* the data buffer is free; hex_payload still says how to decode */
}

/* Twin: AtChannel._take_line(): LINE: the run of data[i:end] up to the next line end goes into
 * the line buffer in one copy; the line end completes the line. Returns where the next state
 * starts. While a `>` prompt is awaited every byte is looked at; on a line that may be a
 * `+MSUB:` header each `,` ends a run. */
static size_t at_take_line(at_channel_t *ch, const uint8_t *data, size_t i, size_t end)
{
    size_t stop, count, room;
    bool ends_line, at_comma = false;

    if (ch->line_len == 0) {
        /* The first byte of a line: the CR and LF between lines are passed over, and only a
         * line that starts with +MSUB: (or with noise, or not all here yet) may be a header. */
        uint8_t b = data[i];
        while (b == CR || b == LF) { /* the CR LF pairs around every module line */
            i++;
            if (i == end) {
                return i;
            }
            b = data[i];
        }
        if (b == PLUS) {
            ch->msub_possible = end - i < airfsm_msub_header.len ||
                                memcmp(data + i, airfsm_msub_header.text,
                                       airfsm_msub_header.len) == 0;
        } else {
            ch->msub_possible = at_is_noise(b);
        }
    }
    if (ch->prompt == AT_PROMPT_AWAITED) {
        uint8_t b = data[i];
        if (b == AIRFSM_DATA_PROMPT && at_content_start(ch, ch->line_len) == ch->line_len) {
            ch->line_len = 0; /* only noise before it */
            at_give_prompt(ch);
            ch->rx = AT_RX_PROMPT_SPACE;
            return i + 1;
        }
        stop = (b == CR || b == LF) ? i : i + 1; /* this byte alone */
        ends_line = stop == i;
    } else {
        stop = at_line_end(data, i, end);
        ends_line = stop < end;
    }
    if (ch->msub_possible && stop > i) {
        const uint8_t *comma = memchr(data + i, COMMA, stop - i);
        if (comma != NULL) {
            stop = (size_t)(comma - data) + 1;
            ends_line = false;
            at_comma = true;
        }
    }
    count = stop - i;
    room = ch->line_cap - ch->line_len;
    if (count > room) {
        /* what fits; the byte after it overflows the line */
        memcpy(ch->line + ch->line_len, data + i, room);
        ch->line_len = ch->line_cap;
        at_overflow(ch);
        return i + room + 1;
    }
    if (count > 0) {
        memcpy(ch->line + ch->line_len, data + i, count);
        ch->line_len += count;
    }
    if (at_comma) {
        at_check_msub_header(ch);
        return stop;
    }
    if (ends_line) {
        uint8_t terminator = data[stop];
        at_end_line(ch, terminator);
        stop++;
        if (terminator == CR && stop < end && data[stop] == LF && ch->rx == AT_RX_LINE) {
            stop++; /* the LF of a CR LF would end an empty line: nothing to digest */
        }
    }
    return stop;
}

static void at_run(at_channel_t *ch, const uint8_t *data, size_t end);

/* Feed the bytes a truncated payload swallowed (Python: the feed() at the end of _truncate). */
static void at_refeed(at_channel_t *ch)
{
    size_t len = ch->refeed_len;

    if (len > 0) {
        ch->refeed_len = 0;
        at_run(ch, ch->data, len);
    }
}

/* Twin: the loop of AtChannel.feed(): data[:end] through the receive states. data is the
 * caller's bytes, or the data buffer itself when swallowed bytes are fed again. */
static void at_run(at_channel_t *ch, const uint8_t *data, size_t end)
{
    const bool refeeding = data == ch->data;
    const uint32_t now_ms = ch->now;
    size_t i = 0;

    while (i < end) {
        at_rx_t rx = ch->rx;
        uint8_t b;
        if (rx == AT_RX_LINE) {
            i = at_take_line(ch, data, i, end);
            continue;
        }
        if (rx == AT_RX_DATA) {
            size_t take = end - i < ch->data_left ? end - i : ch->data_left;
            at_keep(ch, data + i, take);
            ch->data_left -= (uint32_t)take;
            ch->data_last_at = now_ms;
            i += take;
            if (ch->data_left == 0) {
                at_data_complete(ch);
            }
            continue;
        }
        if (rx == AT_RX_SKIP_LINE) {
            size_t stop = at_line_end(data, i, end);
            if (stop < end) { /* the line end itself starts the next line */
                ch->rx = AT_RX_LINE;
                stop++;
            }
            i = stop;
            continue;
        }
        b = data[i];
        if (rx == AT_RX_HEX_TAIL) {
            if (textparse_hex(b) < 0) {
                at_truncate(ch); /* fewer than 2n hex digits: digits were lost */
                if (refeeding) {
                    /* Its swallowed bytes first, then the rest of these: one run. */
                    size_t swallowed = ch->refeed_len;
                    ch->refeed_len = 0;
                    memmove(ch->data + swallowed, ch->data + i, end - i);
                    end = swallowed + (end - i);
                    i = 0;
                } else {
                    at_refeed(ch);
                }
                continue; /* this byte starts the next line */
            }
            at_keep(ch, data + i, 1);
            ch->data_last_at = now_ms;
            i++;
            if (ch->data_read == 2u * ch->data_declared) {
                ch->hex_payload = true;
                ch->rx = AT_RX_MSUB_END;
            }
            continue;
        }
        if (rx == AT_RX_MSUB_END) {
            at_after_msub_payload(ch, b);
            continue; /* this byte is looked at again in the state just chosen */
        }
        if (rx == AT_RX_SKIP_LF) {
            /* The CR LF after `+HTTPREAD: n` ends the header, it is not the body. */
            ch->rx = AT_RX_DATA;
            if (b == LF) {
                i++;
            }
            continue;
        }
        /* rx == AT_RX_PROMPT_SPACE */
        ch->rx = AT_RX_LINE;
        if (b == SP) {
            i++;
        }
    }
}

/* Twin: AtChannel.feed(). */
void at_feed(at_channel_t *ch, const uint8_t *data, size_t length, uint32_t now_ms)
{
    ch->now = now_ms;
    at_run(ch, data, length);
}

/* --- time -------------------------------------------------------------------------------- */

/* Twin: AtChannel.check_timeout(): bytes a truncated payload swallowed come first, as they may
 * hold the command's final code. */
void at_check_timeout(at_channel_t *ch, uint32_t now_ms)
{
    at_rx_t rx = ch->rx;

    ch->now = now_ms;
    if (rx == AT_RX_MSUB_END) {
        if (ms_diff(now_ms, ch->data_last_at) >= (int32_t)ch->stall_ms) {
            at_deliver_msub(ch, ch->data, 0, ch->data_len); /* nothing followed it */
            at_end_payload(ch);
        }
    } else if (rx == AT_RX_SKIP_LF || rx == AT_RX_DATA || rx == AT_RX_HEX_TAIL) {
        bool stalled = ms_diff(now_ms, ch->data_last_at) >= (int32_t)ch->stall_ms;
        bool overrun = ms_diff(now_ms, ch->data_started_at) >= (int32_t)ch->data_budget_ms;
        if (stalled || overrun) {
            at_truncate(ch);
            at_refeed(ch);
        }
    }
    if (ch->active && ms_reached(now_ms, ch->deadline)) {
        at_complete(ch, AIRFSM_AT_RESULT_TIMEOUT, -1);
    }
}

/* Twin: AtChannel.reset(). */
void at_reset(at_channel_t *ch)
{
    ch->active = false;
    ch->command = NULL;
    ch->command_len = 0;
    ch->prefix_end = 0;
    ch->prompt = AT_PROMPT_NONE;
    ch->final_urc = false;
    ch->final_urc_awaited = false;
    ch->hex_possible = false;
    ch->echo_on = false;
    ch->echo_seen = false;
    ch->line_len = 0;
    at_end_payload(ch);
}
