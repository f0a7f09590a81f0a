/* logline.c: see logline.h. */
#include "logline.h"

#include <string.h>

void logline_start(logline_t *line)
{
    line->text[0] = '\0';
    line->len = 0;
}

void logline_add(logline_t *line, const char *text)
{
    size_t n = strlen(text);

    if (n > sizeof line->text - 1 - line->len) {
        n = sizeof line->text - 1 - line->len;
    }
    memcpy(line->text + line->len, text, n);
    line->len += n;
    line->text[line->len] = '\0';
}

void logline_add_unsigned(logline_t *line, uint32_t n)
{
    char digits[11];
    size_t i = sizeof digits - 1;

    digits[i] = '\0';
    do {
        digits[--i] = (char)('0' + (int)(n % 10u));
        n /= 10u;
    } while (n > 0);
    logline_add(line, digits + i);
}

void logline_add_number(logline_t *line, int32_t n)
{
    if (n < 0) {
        logline_add(line, "-");
        logline_add_unsigned(line, 0u - (uint32_t)n);
    } else {
        logline_add_unsigned(line, (uint32_t)n);
    }
}
