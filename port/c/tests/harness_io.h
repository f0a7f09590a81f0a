/* harness_io.h: the line protocol of the host harnesses (host only: stdio, malloc).
 *
 * A harness reads one request a line on stdin and answers one line on stdout, so a Python test can
 * pipe thousands of generated inputs through one process. Byte strings travel as "x" + hex
 * ("x" alone is the empty string, "-" is none/NULL), so any byte, NUL included, survives.
 */
#ifndef HARNESS_IO_H
#define HARNESS_IO_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

typedef struct {
    unsigned char *bytes; /* malloc'd: exactly `len` bytes (plus a NUL not counted), or NULL */
    size_t len;
} field_t;

static inline int hex_digit(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode one "x<hex>" / "-" token. Returns 0 on success, -1 on a malformed token. */
static inline int field_decode(const char *token, field_t *out)
{
    size_t hex_len, i;

    out->bytes = NULL;
    out->len = 0;
    if (strcmp(token, "-") == 0) {
        return 0;
    }
    if (token[0] != 'x') {
        return -1;
    }
    hex_len = strlen(token + 1);
    if (hex_len % 2 != 0) {
        return -1;
    }
    out->len = hex_len / 2;
    out->bytes = malloc(out->len + 1);
    if (out->bytes == NULL) {
        return -1;
    }
    for (i = 0; i < out->len; i++) {
        int hi = hex_digit(token[1 + 2 * i]), lo = hex_digit(token[2 + 2 * i]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        out->bytes[i] = (unsigned char)(hi << 4 | lo);
    }
    out->bytes[out->len] = '\0';
    return 0;
}

static inline void field_print(const void *bytes, size_t len)
{
    const unsigned char *p = bytes;
    size_t i;

    putchar('x');
    for (i = 0; i < len; i++) {
        printf("%02x", p[i]);
    }
}

/* Split `line` in place at spaces into at most `max` tokens; returns the count (max + 1 when
 * there were more, so a caller can refuse them). */
static inline size_t split(char *line, char **tokens, size_t max)
{
    size_t n = 0;
    char *p = line;

    for (;;) {
        while (*p == ' ' || *p == '\n') {
            p++;
        }
        if (*p == '\0') {
            return n;
        }
        if (n == max) {
            return max + 1;
        }
        tokens[n++] = p;
        while (*p != '\0' && *p != ' ' && *p != '\n') {
            p++;
        }
        if (*p != '\0') {
            *p++ = '\0';
        }
    }
}

#endif /* HARNESS_IO_H */
