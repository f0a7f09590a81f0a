/* main_smoke.c: the smoke firmware for QEMU's mps2-an385: what at-probe does, on the Cortex-M3.
 *
 * AT on UART0 until the module (or `airfsm sim` on the pty QEMU maps there) answers OK, then
 * AT+CGMR; the outcome goes to the log UART and becomes QEMU's exit status, with at-probe's
 * codes: 0 V409 or newer, 4 older firmware, 6 no version line, 7 no answer to AT.
 */
#include <stdint.h>

#include "board.h"
#include "hal_mps2.h"
#include "logline.h"
#include "probe.h"
#include "timebase.h"

#define SMOKE_TIMEOUT_MS 30000u

int main(void)
{
    probe_t probe;
    hal_t hal;
    logline_t line;

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

    logline_start(&line);
    if (probe.state == PROBE_DONE) {
        logline_add(&line, "smoke: module answered AT after ");
        logline_add_unsigned(&line, probe.at_sent);
        logline_add(&line, " tries; firmware ");
        logline_add(&line, probe.version);
        logline_add(&line, " (V");
        logline_add_unsigned(&line, probe.version_number);
        logline_add(&line, ")");
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
