/* main_smoke.c: the smoke firmware for QEMU's mps2-an385: what at-probe does, on the Cortex-M3.
 *
 * AT on UART0 until the module (or `airfsm sim` on the pty QEMU maps there) answers OK, then
 * AT+CGMR; the outcome goes to the log UART and becomes QEMU's exit status, with at-probe's
 * codes: 0 V409 or newer, 4 older firmware, 6 no version line, 7 no answer to AT.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "hal_mps2.h"
#include "probe.h"
#include "timebase.h"

#define SMOKE_TIMEOUT_MS 30000u

/* A log line built from pieces, without printf. */
typedef struct {
    char text[160];
    size_t len;
} line_t;

static void add(line_t *line, const char *text)
{
    size_t n = strlen(text);

    if (n > sizeof line->text - 1 - line->len) {
        n = sizeof line->text - 1 - line->len;
    }
    memcpy(line->text + line->len, text, n);
    line->len += n;
    line->text[line->len] = '\0';
}

static void add_number(line_t *line, uint32_t n)
{
    char digits[11];
    size_t i = sizeof digits - 1;

    digits[i] = '\0';
    do {
        digits[--i] = (char)('0' + (int)(n % 10u));
        n /= 10u;
    } while (n > 0);
    add(line, digits + i);
}

int main(void)
{
    probe_t probe;
    hal_t hal;
    line_t line = {"", 0};

    board_init();
    board_log("smoke: mps2-an385 up, probing the module on UART0");
    hal = hal_mps2();
    probe_start(&probe, &hal, board_millis(), SMOKE_TIMEOUT_MS);
    while (probe.state == PROBE_AUTOBAUD || probe.state == PROBE_VERSION) {
        uint32_t next = probe_tick(&probe, board_millis());
        /* Sleep until the next deadline; every interrupt (a received byte, the 1 ms tick) wakes
         * the core, and a byte makes it tick at once. */
        while (!ms_reached(board_millis(), next) && !hal_mps2_rx_pending() &&
               (probe.state == PROBE_AUTOBAUD || probe.state == PROBE_VERSION)) {
            board_idle();
        }
    }

    if (probe.state == PROBE_DONE) {
        add(&line, "smoke: module answered AT after ");
        add_number(&line, probe.at_sent);
        add(&line, " tries; firmware ");
        add(&line, probe.version);
        add(&line, " (V");
        add_number(&line, probe.version_number);
        add(&line, ")");
        board_log(line.text);
        if (probe.version_number < PROBE_MIN_VERSION) {
            board_log("smoke: firmware older than V409");
            return 4;
        }
        return 0;
    }
    if (probe.failure == PROBE_NO_VERSION) {
        board_log("smoke: the module answered AT but sent no version line in time");
        return 6;
    }
    board_log("smoke: no answer to AT");
    return 7;
}
