/* airfsm_bench: the C twin's figures for bench/c_twin.py (its docstring is the contract).
 *
 *   airfsm_bench --tick                  {"idle_tick_ns": N, "one_line_tick_ns": N}
 *   airfsm_bench --round-trip PTY COUNT  {"round_trip_us": N}
 *
 * --tick brings a controller ONLINE against an in-memory module that answers every command at
 * once (posix/canned_module.c), then times airfsm_tick() with nothing to read and nothing due,
 * and with one unsolicited line (+CEREG: 1, which changes nothing in ONLINE) to digest: the
 * twins of bench/rigs.py's idle_tick_ns and one_line_tick_ns. Time stands still meanwhile (the
 * in-memory clock does not move), so no deadline falls due inside the timed loop.
 *
 * --round-trip opens the pty bench/round_trip.py's responder holds (it answers OK to every CR,
 * without echo) and times COUNT `AT` -> `OK` round trips through the AT channel over the POSIX
 * HAL, read as the controller reads: poll() on the port, then 512-byte reads until it is empty,
 * each fed to the channel. WARMUP round trips go first, as for the Python clients.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "airfsm.h"
#include "at.h"
#include "canned_module.h"
#include "hal_posix.h"

#define WARMUP 50
#define IDLE_TICKS 200000L
#define LINE_TICKS 100000L
#define ROUND_TRIP_TIMEOUT_MS 1000u
#define CONNECT_TICKS_MAX 100000L

static const uint8_t idle_line[] = "\r\n+CEREG: 1\r\n";

static int fail(const char *why)
{
    fprintf(stderr, "airfsm_bench: %s\n", why);
    return 1;
}

static uint64_t now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* --- --tick ------------------------------------------------------------------------------------ */

static airfsm_t controller; /* static: it holds every buffer (about 14 KB) */

static int bench_tick(void)
{
    static canned_module_t module;
    airfsm_settings_t settings;
    hal_t hal;
    uint64_t start;
    double idle_ns, line_ns;
    long i;

    canned_module_init(&module, 1000u);
    hal = canned_module_hal(&module);
    airfsm_settings_default(&settings);
    /* The simulator's seed device: the canned answers are those it gets. */
    strcpy(settings.product_key, "b0FMK1Ga5cp");
    strcpy(settings.device_name, "862991419835241");
    strcpy(settings.device_secret, "y7MTCG6Gk33Ux26bbWSpANl4OaI0bg5Q");
    if (airfsm_init(&controller, &settings, &hal, module.now) != AIRFSM_SETTINGS_OK) {
        return fail("airfsm_init refused the bench settings");
    }
    /* The canned module answers at once, so time only moves when the controller waits: to
     * its next deadline, as the virtual-time harness of the Python tests does. */
    for (i = 0; i < CONNECT_TICKS_MAX && !airfsm_online(&controller); i++) {
        uint32_t next = airfsm_tick(&controller, module.now);
        if (module.rx_len == 0 && next != module.now) {
            module.now = next;
        }
        if (airfsm_failed(&controller)) {
            return fail("the controller failed against the canned module");
        }
    }
    if (!airfsm_online(&controller)) {
        return fail("the controller did not get ONLINE against the canned module");
    }
    for (i = 0; i < 100; i++) { /* the last answers settle: nothing left in flight */
        (void)airfsm_tick(&controller, module.now);
    }
    if (module.rx_len != 0 || module.overflows != 0) {
        return fail("the canned module still has unread answers");
    }

    for (i = 0; i < IDLE_TICKS / 10; i++) { /* warm up */
        (void)airfsm_tick(&controller, module.now);
    }
    start = now_ns();
    for (i = 0; i < IDLE_TICKS; i++) {
        (void)airfsm_tick(&controller, module.now);
    }
    idle_ns = (double)(now_ns() - start) / (double)IDLE_TICKS;

    start = now_ns();
    for (i = 0; i < LINE_TICKS; i++) {
        canned_module_say(&module, idle_line, sizeof idle_line - 1);
        (void)airfsm_tick(&controller, module.now);
    }
    line_ns = (double)(now_ns() - start) / (double)LINE_TICKS;
    if (!airfsm_online(&controller) || module.rx_len != 0) {
        return fail("the controller left ONLINE or stopped reading during the bench");
    }
    printf("{\"idle_tick_ns\": %.1f, \"one_line_tick_ns\": %.1f}\n", idle_ns, line_ns);
    return 0;
}

/* --- --round-trip ------------------------------------------------------------------------------- */

typedef struct {
    hal_t hal;
    bool done;
    airfsm_at_result_t result;
} round_trip_t;

static void rt_write(void *ctx, const uint8_t *buf, size_t len)
{
    round_trip_t *rt = ctx;
    (void)rt->hal.uart_write(rt->hal.ctx, buf, len);
}

static void rt_response(void *ctx, const at_response_t *response)
{
    round_trip_t *rt = ctx;
    rt->done = true;
    rt->result = response->result;
}

static void rt_urc(void *ctx, int urc, const uint8_t *line, size_t line_len,
                   const uint8_t *payload, size_t payload_len)
{
    (void)ctx, (void)urc, (void)line, (void)line_len, (void)payload, (void)payload_len;
}

/* One AT -> OK: send, then poll and read until the channel completes the response. */
static int one_round_trip(round_trip_t *rt, at_channel_t *ch, hal_posix_t *port, uint8_t *cmd)
{
    uint8_t chunk[AIRFSM_READ_CHUNK];
    uint32_t now = rt->hal.millis(rt->hal.ctx);
    uint32_t deadline = now + ROUND_TRIP_TIMEOUT_MS;

    rt->done = false;
    at_send(ch, cmd, 3, 2, now, ROUND_TRIP_TIMEOUT_MS, false, false);
    while (!rt->done) {
        int32_t got;
        hal_posix_wait(port, ROUND_TRIP_TIMEOUT_MS);
        now = rt->hal.millis(rt->hal.ctx);
        while ((got = rt->hal.uart_read(rt->hal.ctx, chunk, sizeof chunk)) > 0) {
            at_feed(ch, chunk, (size_t)got, now);
        }
        if (got == HAL_PORT_LOST) {
            return fail("the responder's pty went away");
        }
        if (!rt->done && (int32_t)(now - deadline) >= 0) {
            return fail("no OK within 1 s");
        }
    }
    if (rt->result != AIRFSM_AT_RESULT_OK) {
        return fail("the responder did not answer OK");
    }
    return 0;
}

static int bench_round_trip(const char *path, long count)
{
    static uint8_t line[AIRFSM_LINE_CAPACITY], data[AIRFSM_DATA_CAPACITY];
    static uint8_t arena[AIRFSM_INFO_ARENA];
    static at_channel_t ch;
    uint8_t cmd[3] = {'A', 'T', 0};
    hal_posix_t port = {-1, "airfsm_bench", HAL_LOG_WARNING, false};
    round_trip_t rt;
    at_config_t config;
    char error[256];
    uint64_t start;
    long i;

    if (hal_posix_open(&port, path, 115200u, error, sizeof error) != 0) {
        return fail(error);
    }
    rt.hal = hal_posix(&port);
    rt.done = false;
    rt.result = AIRFSM_AT_RESULT_OK;
    memset(&config, 0, sizeof config);
    config.ctx = &rt;
    config.write = rt_write;
    config.on_response = rt_response;
    config.on_urc = rt_urc;
    config.baud = 115200u;
    config.line_buf = line;
    config.line_cap = sizeof line;
    config.data_buf = data;
    config.data_cap = sizeof data;
    config.info_arena = arena;
    config.arena_cap = sizeof arena;
    at_init(&ch, &config);
    for (i = 0; i < WARMUP; i++) {
        if (one_round_trip(&rt, &ch, &port, cmd) != 0) {
            return 1;
        }
    }
    start = now_ns();
    for (i = 0; i < count; i++) {
        if (one_round_trip(&rt, &ch, &port, cmd) != 0) {
            return 1;
        }
    }
    printf("{\"round_trip_us\": %.2f}\n", (double)(now_ns() - start) / 1000.0 / (double)count);
    hal_posix_close(&port);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--tick") == 0) {
        return bench_tick();
    }
    if (argc == 4 && strcmp(argv[1], "--round-trip") == 0) {
        char *end;
        long count = strtol(argv[3], &end, 10);
        if (*end != '\0' || count < 1 || count > 10000000L) {
            return fail("COUNT must be 1-10000000");
        }
        return bench_round_trip(argv[2], count);
    }
    fprintf(stderr, "usage: airfsm_bench --tick | --round-trip PTY COUNT\n");
    return 2;
}
