/* at_harness.c: the C AT channel (core/at.c) driven by a script on stdin, to compare with
 * airfsm/core/at.py line for line (tests/test_c_at.py runs the same script through both).
 *
 * Script lines (byte strings as harness_io.h says: "x<hex>"; numbers in decimal):
 *   urc <kind> <trigger> <urc_only> <prefix>   a row of a custom URC table for the next init
 *   init <baud> <line_cap> <data_cap> <arena_cap>
 *                                   a new channel over fresh buffers of exactly these sizes (so
 *                                   ASan sees any access past them), with the custom table
 *                                   given since the last init, else the generated one
 *   send <now> <timeout> <prompt> <final_urc> <cap> <command>
 *                                   at_send() from a buffer of exactly cap bytes
 *   data <now> <timeout> <body>     at_send_data()
 *   feed <now> <bytes>              at_feed() (from a buffer of exactly that length)
 *   tick <now>                      at_check_timeout()
 *   reset                           at_reset()
 *   find <prefix>, line <index>     at_response_find(), at_response_line()
 *   topic|ismsg|slot|final|prefix <bytes>, stall <baud>
 *                                   the free functions
 * Output: every callback as a line, as it fires
 *   write <bytes>
 *   rsp <result> <cme> <truncated> <busy> <command> <arena_used> <spans> <lines> <data_span> <data>
 *   urc <row> <line> <payload>
 *   trunc <header> <declared> <received>
 *   ign <line>
 * and after each channel event the channel's state:
 *   = busy=<0|1> deadline=<n|-> receive=<n|-> hex=<0|1> stall=<n> <the eight counters>
 */
#include <stdbool.h>

#include "../core/at.h"
#include "harness_io.h"

#define MAX_TOKENS 8
#define MAX_URCS 64

static at_channel_t channel;
static uint8_t *line_buf, *data_buf, *arena;
static uint8_t *command_buf; /* the buffer of the command last accepted (the channel reads it) */
static airfsm_urc_t custom[MAX_URCS];
static char *custom_text[MAX_URCS];
static size_t custom_count, table_count;
static airfsm_urc_t table[MAX_URCS]; /* the custom table the channel was made with */
static char *table_text[MAX_URCS];

static void on_write(void *ctx, const uint8_t *buf, size_t len)
{
    (void)ctx;
    printf("write ");
    field_print(buf, len);
    putchar('\n');
}

static void print_spans(const at_response_t *r)
{
    size_t i;

    if (r->line_count == 0) {
        printf(" -");
    }
    for (i = 0; i < r->line_count; i++) {
        printf("%s%zu:%zu", i == 0 ? " " : ",", r->line_start[i], r->line_length[i]);
    }
    if (r->line_count == 0) {
        printf(" -");
    }
    for (i = 0; i < r->line_count; i++) {
        printf(i == 0 ? " " : ",");
        field_print(r->arena + r->line_start[i], r->line_length[i]);
    }
    printf(" %zu:%zu ", r->data_start, r->data_length);
    field_print(r->arena + r->data_start, r->data_length);
}

static void on_response(void *ctx, const at_response_t *r)
{
    (void)ctx;
    printf("rsp %d %ld %d %d ", (int)r->result, (long)r->cme_error, r->truncated ? 1 : 0,
           at_busy(&channel) ? 1 : 0);
    field_print(r->command, r->command_len);
    printf(" %zu", r->arena_used);
    print_spans(r);
    putchar('\n');
}

static void on_urc(void *ctx, int urc, const uint8_t *line, size_t line_len,
                   const uint8_t *payload, size_t payload_len)
{
    (void)ctx;
    printf("urc %d ", urc);
    field_print(line, line_len);
    putchar(' ');
    field_print(payload, payload_len);
    putchar('\n');
}

static void on_truncated(void *ctx, const uint8_t *header, size_t header_len, uint32_t declared,
                         uint32_t received)
{
    (void)ctx;
    printf("trunc ");
    field_print(header, header_len);
    printf(" %lu %lu\n", (unsigned long)declared, (unsigned long)received);
}

static void on_ignored(void *ctx, const uint8_t *line, size_t line_len)
{
    (void)ctx;
    printf("ign ");
    field_print(line, line_len);
    putchar('\n');
}

static void print_optional(const char *name, bool has, uint32_t value)
{
    if (has) {
        printf(" %s=%lu", name, (unsigned long)value);
    } else {
        printf(" %s=-", name);
    }
}

static void print_state(void)
{
    uint32_t deadline = 0, receive = 0;
    bool has_deadline = at_deadline(&channel, &deadline);
    bool has_receive = at_receive_deadline(&channel, &receive);

    printf("= busy=%d", at_busy(&channel) ? 1 : 0);
    print_optional("deadline", has_deadline, deadline);
    print_optional("receive", has_receive, receive);
    printf(" hex=%d stall=%lu %lu %lu %lu %lu %lu %lu %lu %lu\n",
           at_hex_payloads_possible(&channel) ? 1 : 0, (unsigned long)channel.stall_ms,
           (unsigned long)channel.lines_dropped, (unsigned long)channel.stray_lines,
           (unsigned long)channel.urcs, (unsigned long)channel.data_dropped,
           (unsigned long)channel.payloads_truncated, (unsigned long)channel.msub_resplits,
           (unsigned long)channel.info_lines_dropped, (unsigned long)channel.commands_refused);
}

static uint32_t number(const char *token)
{
    return (uint32_t)strtoul(token, NULL, 10);
}

static void free_buffers(void)
{
    size_t i;

    free(line_buf);
    free(data_buf);
    free(arena);
    free(command_buf);
    line_buf = data_buf = arena = command_buf = NULL;
    for (i = 0; i < table_count; i++) {
        free(table_text[i]);
    }
    table_count = 0;
}

/* malloc(n) that never returns NULL for n == 0 (a zero-sized buffer is still a buffer). */
static uint8_t *exact(size_t n)
{
    uint8_t *p = malloc(n > 0 ? n : 1);
    if (p == NULL) {
        exit(2);
    }
    return p;
}

static void do_init(char **tokens)
{
    at_config_t config;
    size_t i;

    free_buffers();
    memset(&config, 0, sizeof config);
    config.ctx = NULL;
    config.write = on_write;
    config.on_response = on_response;
    config.on_urc = on_urc;
    config.on_truncated = on_truncated;
    config.on_ignored = on_ignored;
    config.baud = number(tokens[1]);
    config.line_cap = number(tokens[2]);
    config.data_cap = number(tokens[3]);
    config.arena_cap = number(tokens[4]);
    line_buf = exact(config.line_cap);
    data_buf = exact(config.data_cap);
    arena = exact(config.arena_cap);
    config.line_buf = line_buf;
    config.data_buf = data_buf;
    config.info_arena = arena;
    if (custom_count > 0) {
        for (i = 0; i < custom_count; i++) {
            table[i] = custom[i];
            table_text[i] = custom_text[i];
        }
        table_count = custom_count;
        custom_count = 0;
        config.urcs = table;
        config.urc_count = table_count;
    }
    at_init(&channel, &config);
    printf("init\n");
}

static void do_urc(char **tokens, const field_t *prefix)
{
    airfsm_urc_t *row;

    if (custom_count == MAX_URCS) {
        printf("error too many urc rows\n");
        return;
    }
    row = &custom[custom_count];
    custom_text[custom_count] = (char *)exact(prefix->len + 1);
    memcpy(custom_text[custom_count], prefix->bytes, prefix->len + 1);
    row->prefix.text = custom_text[custom_count];
    row->prefix.len = (uint16_t)prefix->len;
    row->kind = (airfsm_urc_kind_t)number(tokens[1]);
    row->trigger = (int8_t)strtol(tokens[2], NULL, 10);
    row->urc_only = number(tokens[3]) != 0;
    custom_count++;
}

static void do_send(char **tokens, const field_t *command)
{
    size_t cap = number(tokens[5]);
    uint8_t *buf = exact(cap);
    bool was_busy = at_busy(&channel);

    memcpy(buf, command->bytes, command->len < cap ? command->len : cap);
    at_send(&channel, buf, cap, command->len, number(tokens[1]), number(tokens[2]),
            number(tokens[3]) != 0, number(tokens[4]) != 0);
    if (was_busy) {
        free(buf); /* refused: the channel still reads the command in flight */
    } else {
        free(command_buf); /* the response (and the channel, if accepted) now read this one */
        command_buf = buf;
    }
}

static void do_bytes(char **tokens, const field_t *bytes)
{
    uint8_t *buf = exact(bytes->len);

    memcpy(buf, bytes->bytes, bytes->len);
    if (strcmp(tokens[0], "feed") == 0) {
        at_feed(&channel, buf, bytes->len, number(tokens[1]));
    } else {
        at_send_data(&channel, buf, bytes->len, number(tokens[1]), number(tokens[2]));
    }
    free(buf);
}

static void do_free_function(const char *name, const field_t *f)
{
    uint8_t *buf = exact(f->len);
    size_t len = f->len, out_len;
    const uint8_t *out;

    memcpy(buf, f->bytes, len);
    if (strcmp(name, "topic") == 0) {
        out = at_msub_topic(buf, len, &out_len);
        printf("topic ");
        field_print(out, out_len);
        putchar('\n');
    } else if (strcmp(name, "ismsg") == 0) {
        printf("ismsg %d\n", at_is_msub_message(buf, len) ? 1 : 0);
    } else if (strcmp(name, "slot") == 0) {
        printf("slot %d\n", at_msub_cache_slot(buf, len));
    } else if (strcmp(name, "final") == 0) {
        int index = at_final_code(buf, 0, len);
        printf("final %d %ld\n", index,
               index == AT_NOT_FINAL ? -1L : (long)at_final_code_number(buf, 0, len, index));
    } else {
        printf("prefix %zu\n", at_response_prefix_end(buf, len));
    }
    free(buf);
}

int main(void)
{
    char *text = NULL;
    size_t cap = 0;

    while (getline(&text, &cap, stdin) > 0) {
        char *tokens[MAX_TOKENS];
        field_t last;
        size_t n = split(text, tokens, MAX_TOKENS);
        const char *op = n > 0 ? tokens[0] : "";
        bool bytes_last = strcmp(op, "urc") == 0 || strcmp(op, "send") == 0 ||
                          strcmp(op, "data") == 0 || strcmp(op, "feed") == 0 ||
                          strcmp(op, "find") == 0 || strcmp(op, "topic") == 0 ||
                          strcmp(op, "ismsg") == 0 || strcmp(op, "slot") == 0 ||
                          strcmp(op, "final") == 0 || strcmp(op, "prefix") == 0;

        memset(&last, 0, sizeof last);
        if (n == 0 || n > MAX_TOKENS ||
            (bytes_last && (field_decode(tokens[n - 1], &last) != 0 || last.bytes == NULL))) {
            printf("error malformed request\n");
        } else if (strcmp(op, "urc") == 0 && n == 5) {
            do_urc(tokens, &last);
        } else if (strcmp(op, "init") == 0 && n == 5) {
            do_init(tokens);
            print_state();
        } else if (strcmp(op, "send") == 0 && n == 7) {
            do_send(tokens, &last);
            print_state();
        } else if ((strcmp(op, "data") == 0 && n == 4) || (strcmp(op, "feed") == 0 && n == 3)) {
            do_bytes(tokens, &last);
            print_state();
        } else if (strcmp(op, "tick") == 0 && n == 2) {
            at_check_timeout(&channel, number(tokens[1]));
            print_state();
        } else if (strcmp(op, "reset") == 0 && n == 1) {
            at_reset(&channel);
            print_state();
        } else if (strcmp(op, "find") == 0 && n == 2) {
            printf("find %d\n", at_response_find(&channel.response, last.bytes, last.len));
        } else if (strcmp(op, "line") == 0 && n == 2) {
            size_t len;
            const uint8_t *line = at_response_line(&channel.response,
                                                   (int)strtol(tokens[1], NULL, 10), &len);
            printf("line ");
            field_print(line, len);
            putchar('\n');
        } else if (strcmp(op, "stall") == 0 && n == 2) {
            printf("stall %lu\n", (unsigned long)at_payload_stall_ms(number(tokens[1])));
        } else if (bytes_last && n == 2) {
            do_free_function(op, &last);
        } else {
            printf("error malformed request\n");
        }
        free(last.bytes);
        fflush(stdout);
    }
    free(text);
    free_buffers();
    return 0;
}
