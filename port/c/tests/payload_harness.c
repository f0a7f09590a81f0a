/* payload_harness.c: core/payload.c on piped requests, to compare with airfsm/core/payload.py
 * (tests/test_c_payload.py). One answer a request; byte strings copied into buffers of exactly
 * their length.
 *   mpub <cap> <qos> <hex_mode> <topic> <payload> -> "mpub <n> <command>" or "mpub <code>"
 *                                                    (written into a buffer of exactly cap bytes)
 *   form <hex_allowed> <payload>                  -> "form <form>"
 *   topic <topic>                                 -> "topic <fault> <pos>"
 *   escape <payload>                              -> "escape <length> <escaped>"
 *   nontext <payload>                             -> "nontext <offset>"
 */
#include "../core/payload.h"
#include "harness_io.h"

#define MAX_TOKENS 6

static uint8_t *exact_copy(const field_t *f)
{
    uint8_t *p = malloc(f->len > 0 ? f->len : 1);
    memcpy(p, f->bytes, f->len);
    return p;
}

int main(void)
{
    char *text = NULL;
    size_t cap = 0;

    while (getline(&text, &cap, stdin) > 0) {
        char *tokens[MAX_TOKENS];
        field_t fields[2];
        size_t n = split(text, tokens, MAX_TOKENS), first, i;
        bool ok = n > 1 && n <= MAX_TOKENS;

        memset(fields, 0, sizeof fields);
        first = 1; /* the first byte string: after mpub's three numbers, form's flag */
        if (ok && strcmp(tokens[0], "mpub") == 0) {
            first = 4;
        } else if (ok && strcmp(tokens[0], "form") == 0) {
            first = 2;
        }
        for (i = first; ok && i < n && i - first < 2; i++) {
            ok = field_decode(tokens[i], &fields[i - first]) == 0 && fields[i - first].bytes;
        }
        if (!ok) {
            printf("error malformed request\n");
        } else if (strcmp(tokens[0], "mpub") == 0 && n == 6) {
            size_t out_cap = (size_t)strtoul(tokens[1], NULL, 10);
            uint8_t *out = malloc(out_cap > 0 ? out_cap : 1);
            uint8_t *topic = exact_copy(&fields[0]), *payload = exact_copy(&fields[1]);
            int32_t r = payload_put_mpub(out, out_cap, topic, fields[0].len, payload,
                                         fields[1].len, (int32_t)strtol(tokens[2], NULL, 10),
                                         strcmp(tokens[3], "1") == 0);
            if (r >= 0) {
                printf("mpub %ld ", (long)r);
                field_print(out, (size_t)r);
                putchar('\n');
            } else {
                printf("mpub %ld\n", (long)r);
            }
            free(out);
            free(topic);
            free(payload);
        } else if (strcmp(tokens[0], "form") == 0 && n == 3) {
            uint8_t *payload = exact_copy(&fields[0]);
            printf("form %d\n", (int)payload_form(payload, fields[0].len,
                                                  strcmp(tokens[1], "1") == 0));
            free(payload);
        } else if (strcmp(tokens[0], "topic") == 0 && n == 2) {
            uint8_t *topic = exact_copy(&fields[0]);
            size_t pos = 99999;
            payload_topic_fault_t fault = payload_topic_fault(topic, fields[0].len, &pos);
            printf("topic %d %zu\n", (int)fault, pos);
            free(topic);
        } else if (strcmp(tokens[0], "escape") == 0 && n == 2) {
            uint8_t *payload = exact_copy(&fields[0]);
            size_t len = payload_escaped_length(payload, fields[0].len);
            uint8_t *out = malloc(len > 0 ? len : 1);
            size_t end = payload_put_escaped(out, 0, payload, fields[0].len);
            printf("escape %zu ", len);
            field_print(out, end);
            putchar('\n');
            free(out);
            free(payload);
        } else if (strcmp(tokens[0], "nontext") == 0 && n == 2) {
            uint8_t *payload = exact_copy(&fields[0]);
            printf("nontext %ld\n", (long)payload_first_non_text(payload, fields[0].len));
            free(payload);
        } else {
            printf("error malformed request\n");
        }
        free(fields[0].bytes);
        free(fields[1].bytes);
        fflush(stdout);
    }
    free(text);
    return 0;
}
