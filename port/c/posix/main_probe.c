/* at-probe: prove a HAL against a module (or `airfsm sim`): AT until OK, then AT+CGMR.
 *
 *   at-probe --port PATH [--timeout SECONDS] [--verbose]
 *
 * Prints the firmware version and exits 0. Exit codes follow `airfsm connect`: 2 bad arguments,
 * 3 the port cannot be opened or vanished, 4 firmware older than V409, 6 no version line in
 * time, 7 the module never answered AT.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hal_posix.h"
#include "probe.h"
#include "timebase.h"

enum { EXIT_OK = 0, EXIT_USAGE = 2, EXIT_PORT = 3, EXIT_FIRMWARE = 4, EXIT_TIMEOUT = 6,
       EXIT_NO_RESPONSE = 7 };

static int usage(const char *why)
{
    fprintf(stderr, "at-probe: %s\nusage: at-probe --port PATH [--timeout SECONDS] [--verbose]\n",
            why);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    double timeout_s = 30.0;
    hal_posix_t port = {-1, "at-probe", HAL_LOG_WARNING, false};
    char error[256];
    probe_t probe;
    hal_t hal;
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end;
            timeout_s = strtod(argv[++i], &end);
            if (*end != '\0' || !(timeout_s > 0 && timeout_s <= 86400)) {
                return usage("--timeout takes a number of seconds (0 < S <= 86400)");
            }
        } else if (strcmp(argv[i], "--verbose") == 0) {
            port.log_level = HAL_LOG_DEBUG;
        } else {
            return usage("unknown or incomplete argument");
        }
    }
    if (path == NULL) {
        return usage("--port is required");
    }
    if (hal_posix_open(&port, path, 115200u, error, sizeof error) != 0) {
        fprintf(stderr, "at-probe: %s\n", error);
        return EXIT_PORT;
    }
    hal = hal_posix(&port);
    probe_start(&probe, &hal, hal.millis(hal.ctx), (uint32_t)(timeout_s * 1000.0));
    for (;;) {
        uint32_t now = hal.millis(hal.ctx);
        uint32_t next = probe_tick(&probe, now);
        if (probe.state == PROBE_DONE || probe.state == PROBE_FAILED) {
            break;
        }
        now = hal.millis(hal.ctx);
        hal_posix_wait(&port, ms_reached(now, next) ? 0u : (uint32_t)ms_diff(next, now));
    }
    hal_posix_close(&port);
    switch (probe.failure) {
    case PROBE_NO_FAILURE:
        printf("module answered AT after %lu tries; firmware %s (V%lu)\n",
               (unsigned long)probe.at_sent, probe.version, (unsigned long)probe.version_number);
        if (probe.version_number < PROBE_MIN_VERSION) {
            fprintf(stderr, "at-probe: firmware older than V%u\n", PROBE_MIN_VERSION);
            return EXIT_FIRMWARE;
        }
        return EXIT_OK;
    case PROBE_PORT_LOST:
        fprintf(stderr, "at-probe: %s: the port vanished\n", path);
        return EXIT_PORT;
    case PROBE_NO_VERSION:
        fprintf(stderr, "at-probe: the module answered AT but sent no version line in time\n");
        return EXIT_TIMEOUT;
    case PROBE_NO_RESPONSE:
        break;
    }
    fprintf(stderr, "at-probe: no answer to AT after %lu tries\n", (unsigned long)probe.at_sent);
    return EXIT_NO_RESPONSE;
}
