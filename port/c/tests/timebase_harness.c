/* timebase_harness.c: core/timebase.h/.c on piped requests, to compare with
 * airfsm/core/timebase.py (tests/test_c_timebase.py). One answer a request.
 *   seed <text>                          -> "seed <n>"
 *   rng <seed> <count>                   -> "rng <state> <v1> ... <vcount>"
 *   backoff <seed> <base> <cap> <a1> ... -> "backoff <d1> ... <state>" (one generator for all)
 *   earliest <has_a> <a> <has_b> <b>     -> "earliest <n|->"
 *   time <a> <b>                         -> "time <ms_add(a,b)> <ms_diff(a,b)> <ms_reached(a,b)>"
 */
#include "../core/timebase.h"
#include "harness_io.h"

#define MAX_TOKENS 72

static uint32_t number(const char *token) { return (uint32_t)strtoul(token, NULL, 10); }

int main(void)
{
    char *text = NULL;
    size_t cap = 0;

    while (getline(&text, &cap, stdin) > 0) {
        char *tokens[MAX_TOKENS];
        size_t n = split(text, tokens, MAX_TOKENS), i;
        xorshift32_t rng;

        if (n == 0 || n > MAX_TOKENS) {
            printf("error malformed request\n");
        } else if (strcmp(tokens[0], "seed") == 0 && n == 2) {
            field_t name;
            if (field_decode(tokens[1], &name) != 0 || name.bytes == NULL) {
                printf("error malformed request\n");
            } else {
                char *exact = malloc(name.len > 0 ? name.len : 1);
                memcpy(exact, name.bytes, name.len);
                printf("seed %lu\n", (unsigned long)seed_from_text(exact, name.len));
                free(exact);
            }
            free(name.bytes);
        } else if (strcmp(tokens[0], "rng") == 0 && n == 3) {
            uint32_t count = number(tokens[2]);
            xorshift32_seed(&rng, number(tokens[1]));
            printf("rng %lu", (unsigned long)rng.state);
            for (i = 0; i < count; i++) {
                printf(" %lu", (unsigned long)xorshift32_next(&rng));
            }
            putchar('\n');
        } else if (strcmp(tokens[0], "backoff") == 0 && n >= 4) {
            xorshift32_seed(&rng, number(tokens[1]));
            printf("backoff");
            for (i = 4; i < n; i++) {
                printf(" %lu", (unsigned long)backoff_ms(number(tokens[i]), number(tokens[2]),
                                                         number(tokens[3]), &rng));
            }
            printf(" %lu\n", (unsigned long)rng.state);
        } else if (strcmp(tokens[0], "earliest") == 0 && n == 5) {
            uint32_t out = 0;
            if (ms_earliest(number(tokens[1]) != 0, number(tokens[2]), number(tokens[3]) != 0,
                            number(tokens[4]), &out)) {
                printf("earliest %lu\n", (unsigned long)out);
            } else {
                printf("earliest -\n");
            }
        } else if (strcmp(tokens[0], "time") == 0 && n == 3) {
            uint32_t a = number(tokens[1]), b = number(tokens[2]);
            printf("time %lu %ld %d\n", (unsigned long)ms_add(a, b), (long)ms_diff(a, b),
                   ms_reached(a, b) ? 1 : 0);
        } else {
            printf("error malformed request\n");
        }
        fflush(stdout);
    }
    free(text);
    return 0;
}
