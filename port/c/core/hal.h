/* hal.h: what the MCU (or a host) supplies to the core. Python twin: the Port protocol
 * (airfsm/core/hal.py; airfsm/host/serial.py adapts pyserial to it) plus the clock and the hooks
 * the controller takes.
 *
 * The core never calls a driver directly: it gets a hal_t of function pointers and a context
 * pointer, so one firmware can drive two modules, and the host tests can drive an in-memory one.
 * None of the calls may block for long: the core calls them from its tick.
 *
 *   uart_read   non-blocking: copy up to n bytes that have already arrived into buf and return how
 *               many (0 when none). A UART driver fills a ring from its RX interrupt and this
 *               drains it. Returns HAL_PORT_LOST when the link is gone (a USB adapter unplugged,
 *               the pty's other end closed): an event for the machine, not a crash.
 *   uart_write  send all n bytes and return n, or HAL_PORT_LOST. It may wait for the UART to shift
 *               them out (about 87 µs a byte at 115200 baud) but not for the other side to read.
 *   millis      a free-running millisecond counter: uint32_t, wrapping every 49.7 days (compare
 *               with timebase.h, never with `<`).
 *   reset_pin   optional (NULL when the board has none): drive the module's RESET line,
 *               asserted = true holds the module in reset. The vendor asks for at least 150 ms.
 *   log         optional (NULL: no log): one line of text, no line break, never a secret.
 *   wall_clock_ms  optional (NULL: none): Unix time in ms (an RTC, SNTP, or a clock corrected by
 *               the skew learned from the server), 0 while unknown. With it the auth form and
 *               the direct MQTT sign carry a signed timestamp, so a captured sign cannot be
 *               replayed once the server's window has passed; without it nothing is timestamped.
 */
#ifndef AIRFSM_HAL_H
#define AIRFSM_HAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HAL_PORT_LOST (-1)

typedef enum {
    HAL_LOG_DEBUG = 0,
    HAL_LOG_INFO = 1,
    HAL_LOG_WARNING = 2,
    HAL_LOG_ERROR = 3
} hal_log_level_t;

typedef struct {
    void *ctx; /* handed back to every call: the driver's own state */
    int32_t (*uart_read)(void *ctx, uint8_t *buf, size_t n);
    int32_t (*uart_write)(void *ctx, const uint8_t *buf, size_t n);
    uint32_t (*millis)(void *ctx);
    void (*reset_pin)(void *ctx, bool asserted);
    void (*log)(void *ctx, hal_log_level_t level, const char *line);
    uint64_t (*wall_clock_ms)(void *ctx);
} hal_t;

#endif /* AIRFSM_HAL_H */
