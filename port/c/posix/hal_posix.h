/* hal_posix.h: the HAL on a POSIX host: a serial device or pty in raw mode, CLOCK_MONOTONIC.
 * Python twin: SerialPort (airfsm/host/serial.py) and monotonic_ms (airfsm/host/clock.py). */
#ifndef AIRFSM_HAL_POSIX_H
#define AIRFSM_HAL_POSIX_H

#include <stddef.h>
#include <stdint.h>

#include "hal.h"

typedef struct {
    int fd;
    const char *program; /* prefix of the log lines on stderr */
    hal_log_level_t log_level; /* lines below it are not written */
    bool lost; /* a read or write returned HAL_PORT_LOST (the port vanished) */
} hal_posix_t;

/* Open `path` (a /dev/tty… device or a pty path) raw at `baud` 8N1 (115200 for an Air72x),
 * non-blocking, no modem control. Returns 0, or -1 with a one-line reason in `error`. */
int hal_posix_open(hal_posix_t *port, const char *path, uint32_t baud, char *error,
                   size_t error_size);

/* Whether hal_posix_open() can set this line rate (the standard ones, 9600 to 921600). */
bool hal_posix_baud_supported(uint32_t baud);

/* A hal_t whose calls go to `port` (its ctx is `port`). */
hal_t hal_posix(hal_posix_t *port);

/* Sleep until input arrives or `timeout_ms` passes (the select() of the Python loop). */
void hal_posix_wait(const hal_posix_t *port, uint32_t timeout_ms);

void hal_posix_close(hal_posix_t *port);

#endif /* AIRFSM_HAL_POSIX_H */
