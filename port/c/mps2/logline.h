/* logline.h: a log line built from pieces, without printf (the firmware links no stdio). */
#ifndef MPS2_LOGLINE_H
#define MPS2_LOGLINE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char text[160];
    size_t len;
} logline_t;

/* Start an empty line. */
void logline_start(logline_t *line);

/* Append text (cut at the line's capacity). */
void logline_add(logline_t *line, const char *text);

/* Append a number in decimal (a minus sign for a negative one). */
void logline_add_number(logline_t *line, int32_t n);
void logline_add_unsigned(logline_t *line, uint32_t n);

#endif /* MPS2_LOGLINE_H */
