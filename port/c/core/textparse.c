/* textparse.c: numbers and fields out of module text. Python twin: airfsm/core/textparse.py. */
#include "textparse.h"

#define SP 0x20u
#define COLON 0x3Au
#define COMMA 0x2Cu
#define DIGIT_0 0x30u

/* Twin: textparse.hex_value(). */
int textparse_hex(uint8_t b)
{
    if (textparse_is_digit(b)) {
        return b - (int)DIGIT_0;
    }
    if (b >= 0x41u && b <= 0x46u) {
        return b - 0x41 + 10;
    }
    if (b >= 0x61u && b <= 0x66u) {
        return b - 0x61 + 10;
    }
    return -1;
}

/* Twin: textparse.parse_uint(). */
int32_t textparse_uint(const uint8_t *buf, size_t start, size_t end)
{
    int32_t value = 0;
    size_t i;

    while (start < end && buf[start] == SP) {
        start++;
    }
    while (end > start && buf[end - 1] == SP) {
        end--;
    }
    if (start == end || end - start > AIRFSM_MAX_UINT_DIGITS) {
        return -1;
    }
    for (i = start; i < end; i++) {
        uint8_t b = buf[i];
        if (!textparse_is_digit(b)) {
            return -1;
        }
        value = value * 10 + (int32_t)(b - DIGIT_0);
    }
    return value;
}

/* Twin: textparse.field_span(). */
void textparse_field(const uint8_t *line, size_t index, size_t start, size_t end, size_t *first,
                     size_t *stop)
{
    size_t n = end, line_start = start, i, last;

    while (start < n && line[start] != COLON) {
        start++;
    }
    if (start == n) {
        start = line_start; /* no colon: the fields start at the beginning of the line */
    } else {
        start++;
    }
    for (i = 0; i < index; i++) {
        while (start < n && line[start] != COMMA) {
            start++;
        }
        if (start == n) {
            *first = 0;
            *stop = 0;
            return;
        }
        start++;
    }
    last = start;
    while (last < n && line[last] != COMMA) {
        last++;
    }
    while (start < last && line[start] == SP) {
        start++;
    }
    while (last > start && line[last - 1] == SP) {
        last--;
    }
    *first = start;
    *stop = last;
}

/* Twin: textparse.field_uint(). */
int32_t textparse_field_uint(const uint8_t *line, size_t index, size_t start, size_t end)
{
    size_t first, stop;

    if (line == NULL) {
        return -1;
    }
    textparse_field(line, index, start, end, &first, &stop);
    return stop > first ? textparse_uint(line, first, stop) : -1;
}

/* Twin: textparse.put_uint(). */
int32_t textparse_put_uint(uint8_t *out, size_t cap, size_t at, uint32_t value, size_t limit)
{
    size_t digits = 1, end, i;
    uint32_t rest = value;

    while (rest >= 10u) {
        rest /= 10u;
        digits++;
    }
    end = at + digits;
    if (end > limit || end > cap) {
        return -1;
    }
    for (i = end; i > at; i--) {
        out[i - 1] = (uint8_t)(DIGIT_0 + value % 10u);
        value /= 10u;
    }
    return (int32_t)end;
}
