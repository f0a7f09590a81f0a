/* main_airfsm.c: the controller as Cortex-M3 firmware for QEMU's mps2-an385 board.
 *
 * The whole C core on the MCU: the module (or `airfsm sim` on the pty QEMU maps to UART0) is
 * brought ONLINE, one QoS1 message is published, and the firmware ends once its PUBACK came,
 * through a semihosting exit whose status QEMU returns. The device's credentials, the message
 * and the time budget are compiled in from the Makefile's FIRMWARE_* variables (the build writes
 * them to build/mps2/firmware_settings.h): a test build's, not how a product keeps a secret.
 *
 * Exit status, as `airfsm connect`'s: 0 ONLINE and the message acknowledged, 4 firmware older
 * than V409, 5 credentials rejected, 6 not done within FIRMWARE_TIMEOUT_MS, 7 the module never
 * answered AT, 1 another failure, 2 the compiled-in settings are unusable. The log (UART1)
 * carries the state changes and what ended the run, as codes and names: never a command's text,
 * so no secret can reach it.
 *
 * The loop is the one every port runs: airfsm_tick() says when it next needs to run, and the
 * core sleeps (wfi) until then or until the UART's RX interrupt has put a byte in the ring.
 */
#include <stdint.h>
#include <string.h>

#include "airfsm.h"
#include "board.h"
#include "firmware_settings.h"
#include "hal_mps2.h"
#include "logline.h"
#include "timebase.h"

enum { EXIT_OK = 0, EXIT_OTHER = 1, EXIT_SETTINGS = 2, EXIT_FIRMWARE = 4,
       EXIT_CREDENTIALS = 5, EXIT_TIMEOUT = 6, EXIT_NO_RESPONSE = 7 };

static airfsm_t modem; /* every buffer of the controller: `make size` says how much */

/* The log hook: state changes and publish events, as names and numbers. AT_TX / AT_RX and the
 * other events with text are not printed at all (their data may hold a sign or a token). */
static void on_log(void *user, const airfsm_t *ctx, airfsm_log_level_t level,
                   airfsm_log_event_t event, int32_t a, int32_t b, int32_t c,
                   const uint8_t *data, size_t len)
{
    logline_t line;

    (void)user, (void)level, (void)data, (void)len;
    logline_start(&line);
    logline_add(&line, "airfsm: ");
    if (event == AIRFSM_LOG_EVENT_STATE && a >= 0 && a < AIRFSM_STATE_COUNT && b >= 0 &&
        b < AIRFSM_TRIGGER_COUNT) {
        logline_add(&line, airfsm_state_name[a]);
        logline_add(&line, " -> ");
        logline_add(&line, airfsm_state_name[airfsm_state(ctx)]);
        logline_add(&line, " (");
        logline_add(&line, airfsm_trigger_name[b]);
        logline_add(&line, ", ");
        logline_add_number(&line, c);
        logline_add(&line, " ms)");
    } else if (event == AIRFSM_LOG_EVENT_STEP && a >= 0 && a < AIRFSM_OUTCOME_COUNT && b >= 0 &&
               b < AIRFSM_REASON_COUNT) {
        logline_add(&line, "step ");
        logline_add(&line, airfsm_step_name(ctx) != NULL ? airfsm_step_name(ctx) : "-");
        logline_add(&line, ": ");
        logline_add(&line, airfsm_outcome_name[a]);
        logline_add(&line, " ");
        logline_add(&line, airfsm_reason_name[b]);
        logline_add(&line, " ");
        logline_add_number(&line, c);
    } else if (event == AIRFSM_LOG_EVENT_PUBLISH_SENT || event == AIRFSM_LOG_EVENT_PUBLISH_ACKED ||
               event == AIRFSM_LOG_EVENT_PUBLISH_FAILED) {
        logline_add(&line, airfsm_log_event_name[event]);
        logline_add(&line, " id ");
        logline_add_number(&line, a);
        logline_add(&line, event == AIRFSM_LOG_EVENT_PUBLISH_ACKED ? " qos " : " attempt ");
        logline_add_number(&line, b);
    } else {
        return; /* the rest (and everything with text) stays off the log */
    }
    board_log(line.text);
}

/* Copy a compiled-in text into a settings field; false if it does not fit. */
static bool set_text(char *field, size_t cap, const char *text)
{
    size_t n = strlen(text);

    if (n >= cap) {
        return false;
    }
    memcpy(field, text, n + 1);
    return true;
}

static int finish(const char *what, int status)
{
    logline_t line;

    logline_start(&line);
    logline_add(&line, "airfsm: ");
    logline_add(&line, what);
    logline_add(&line, "; exit ");
    logline_add_number(&line, status);
    logline_add(&line, " (state ");
    logline_add(&line, airfsm_state_name[airfsm_state(&modem)]);
    logline_add(&line, ", RX ring dropped ");
    logline_add_unsigned(&line, hal_mps2_rx_dropped());
    logline_add(&line, ")");
    board_log(line.text);
    return status;
}

int main(void)
{
    static const char message[] = FIRMWARE_MESSAGE;
    airfsm_settings_t settings;
    airfsm_hooks_t hooks;
    hal_t hal;
    uint32_t deadline;
    int32_t id;
    bool said_online = false;

    board_init();
    board_log("airfsm: mps2-an385 up, table " AIRFSM_TABLE_HASH_HEX);
    hal = hal_mps2();

    airfsm_settings_default(&settings);
    if (!set_text(settings.product_key, sizeof settings.product_key, FIRMWARE_PRODUCT_KEY) ||
        !set_text(settings.device_name, sizeof settings.device_name, FIRMWARE_DEVICE_NAME) ||
        !set_text(settings.device_secret, sizeof settings.device_secret,
                  FIRMWARE_DEVICE_SECRET) ||
        !set_text(settings.region, sizeof settings.region, FIRMWARE_REGION)) {
        return finish("a compiled-in credential is too long", EXIT_SETTINGS);
    }
    memset(&hooks, 0, sizeof hooks);
    hooks.log = on_log;
    hooks.log_level = AIRFSM_LOG_INFO;
    if (airfsm_init_ex(&modem, &settings, &hal, &hooks, NULL, board_millis()) !=
        AIRFSM_SETTINGS_OK) {
        return finish("the compiled-in settings are unusable", EXIT_SETTINGS);
    }
    memset(&settings, 0, sizeof settings); /* the controller keeps its own copy */
    id = airfsm_publish(&modem, FIRMWARE_TOPIC, (const uint8_t *)message, sizeof message - 1, 1);
    if (id < 0) {
        return finish("the compiled-in message was refused", EXIT_SETTINGS);
    }
    deadline = ms_add(board_millis(), FIRMWARE_TIMEOUT_MS);

    for (;;) {
        uint32_t next = airfsm_tick(&modem, board_millis());

        if (airfsm_online(&modem) && !said_online) {
            said_online = true;
            board_log("airfsm: ONLINE");
        }
        if (airfsm_acked_count(&modem) >= 1) {
            return finish("ONLINE, message acknowledged (PUBACK)", EXIT_OK);
        }
        if (airfsm_failed(&modem)) {
            switch (airfsm_fail_reason(&modem)) {
            case AIRFSM_FAIL_REASON_FIRMWARE:
                return finish("FAILED: firmware older than V409", EXIT_FIRMWARE);
            case AIRFSM_FAIL_REASON_CREDENTIALS:
                return finish("FAILED: the auth server rejected the device", EXIT_CREDENTIALS);
            case AIRFSM_FAIL_REASON_NO_RESPONSE:
                return finish("FAILED: the module never answered AT", EXIT_NO_RESPONSE);
            default:
                return finish("FAILED", EXIT_OTHER);
            }
        }
        if (ms_reached(board_millis(), deadline)) {
            return finish("timed out", EXIT_TIMEOUT);
        }
        /* Sleep until the controller's deadline (or ours); a received byte or the 1 ms SysTick
         * wakes the core, and a byte in the ring makes it tick at once. */
        while (!ms_reached(board_millis(), next) && !ms_reached(board_millis(), deadline) &&
               !hal_mps2_rx_pending()) {
            board_idle();
        }
    }
}
