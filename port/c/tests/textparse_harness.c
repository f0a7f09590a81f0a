/* textparse_harness.c: core/textparse.c on piped requests, to compare with
 * airfsm/core/textparse.py (tests/test_c_textparse.py). One answer a request.
 *   uint <start> <end> <buf>                 -> "uint <value>"
 *   field <index> <start> <end> <line>       -> "field <first> <stop>"
 *   fielduint <index> <start> <end> <line|->  -> "fielduint <value>"
 *   hex <byte>                               -> "hex <value>"
 *   put <cap> <at> <value> <limit>           -> "put <end> <buf>" (buf: cap bytes, '.' before)
 * Byte strings are copied into buffers of exactly their length (ASan sees any read past them).
 */
#include "../core/textparse.h"
#include "harness_io.h"

#define MAX_TOKENS 6

static size_t number(const char *token) { return (size_t)strtoul(token, NULL, 10); }

int main(void)
{
    char *text = NULL;
    size_t cap = 0;

    while (getline(&text, &cap, stdin) > 0) {
        char *tokens[MAX_TOKENS];
        field_t last;
        size_t n = split(text, tokens, MAX_TOKENS);
        uint8_t *buf = NULL;
        bool bytes_last = n > 0 && (strcmp(tokens[0], "uint") == 0 ||
                                    strcmp(tokens[0], "field") == 0 ||
                                    strcmp(tokens[0], "fielduint") == 0);

        memset(&last, 0, sizeof last);
        if (n == 0 || n > MAX_TOKENS || (bytes_last && field_decode(tokens[n - 1], &last) != 0)) {
            printf("error malformed request\n");
            free(last.bytes);
            continue;
        }
        if (last.bytes != NULL) {
            buf = malloc(last.len > 0 ? last.len : 1);
            memcpy(buf, last.bytes, last.len);
        }
        if (strcmp(tokens[0], "uint") == 0 && n == 4 && buf != NULL) {
            printf("uint %ld\n", (long)textparse_uint(buf, number(tokens[1]), number(tokens[2])));
        } else if (strcmp(tokens[0], "field") == 0 && n == 5 && buf != NULL) {
            size_t first, stop;
            textparse_field(buf, number(tokens[1]), number(tokens[2]), number(tokens[3]), &first,
                            &stop);
            printf("field %zu %zu\n", first, stop);
        } else if (strcmp(tokens[0], "fielduint") == 0 && n == 5) {
            printf("fielduint %ld\n", (long)textparse_field_uint(buf, number(tokens[1]),
                                                                number(tokens[2]),
                                                                number(tokens[3])));
        } else if (strcmp(tokens[0], "hex") == 0 && n == 2) {
            printf("hex %d\n", textparse_hex((uint8_t)number(tokens[1])));
        } else if (strcmp(tokens[0], "put") == 0 && n == 5) {
            size_t out_cap = number(tokens[1]);
            uint8_t *out = malloc(out_cap > 0 ? out_cap : 1);
            int32_t end;
            memset(out, '.', out_cap);
            end = textparse_put_uint(out, out_cap, number(tokens[2]),
                                     (uint32_t)strtoul(tokens[3], NULL, 10), number(tokens[4]));
            printf("put %ld ", (long)end);
            field_print(out, out_cap);
            putchar('\n');
            free(out);
        } else {
            printf("error malformed request\n");
        }
        free(buf);
        free(last.bytes);
        fflush(stdout);
    }
    free(text);
    return 0;
}
