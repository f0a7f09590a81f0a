/* textparse.h: the one place the tick path reads numbers and fields out of module text.
 * Python twin: airfsm/core/textparse.py.
 *
 * Every answer the module gives is ASCII: `+CGATT: 1`, `+SAPBR: 1,1,"10.0.0.2"`,
 * `+MSUB: "/t",12 byte,`. These functions work on a buffer and explicit bounds [start, end),
 * never allocate, never read outside the bounds, and report "not a number" as -1.
 */
#ifndef AIRFSM_TEXTPARSE_H
#define AIRFSM_TEXTPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airfsm_config.h"

/* textparse.MAX_UINT_DIGITS is AIRFSM_MAX_UINT_DIGITS (the generated table): a field of more
 * digits is not a count or a status, and 9 digits always fit an int32_t. */

/* Twin: textparse.is_digit(). */
static inline bool textparse_is_digit(uint8_t b) { return b >= 0x30u && b <= 0x39u; }

/* Twin: textparse.hex_value(): 0-15 for an ASCII hex digit (either case), -1 for anything else. */
int textparse_hex(uint8_t b);

/* Twin: textparse.parse_uint(): the decimal in buf[start:end], spaces allowed around it; -1 if
 * it is not exactly that (empty, a sign, a stray byte, more than AIRFSM_MAX_UINT_DIGITS). */
int32_t textparse_uint(const uint8_t *buf, size_t start, size_t end);

/* Twin: textparse.field_span(): the bounds [*first, *stop) of field `index` of `+NAME: a,b,c` in
 * line[start:end] (after the first colon, or from `start` when there is none; split at commas),
 * the spaces around it trimmed; both 0 when the line has no such field. */
void textparse_field(const uint8_t *line, size_t index, size_t start, size_t end, size_t *first,
                     size_t *stop);

/* Twin: textparse.field_uint(): field `index` of line[start:end] as an unsigned number; -1 when
 * absent or not a number (or line is NULL: Python's None). */
int32_t textparse_field_uint(const uint8_t *line, size_t index, size_t start, size_t end);

/* Twin: textparse.put_uint(): write `value` as decimal digits at out[at:], ending before `limit`
 * and within the `cap` bytes of out; the index after the last digit, or -1 when they do not fit.
 */
int32_t textparse_put_uint(uint8_t *out, size_t cap, size_t at, uint32_t value, size_t limit);

#endif /* AIRFSM_TEXTPARSE_H */
