/* hal_mps2.c: see hal_mps2.h. */
#include "hal_mps2.h"

#include "board.h"
#include "cmsdk_uart.h"

#define NVIC_ISER0 (*(volatile uint32_t *)0xe000e100u)
#define IRQ_UART0_RX 0u

static cmsdk_uart_ring_t module_rx;
static cmsdk_uart_t module_uart;

void uart0_rx_handler(void)
{
    cmsdk_uart_rx_isr(&module_uart);
}

/* A UART cannot tell that the module is gone: it never reports HAL_PORT_LOST. */
static int32_t mps2_read(void *ctx, uint8_t *buf, size_t n)
{
    return (int32_t)cmsdk_uart_read(ctx, buf, n > 0x7fffffffu ? 0x7fffffffu : n);
}

static int32_t mps2_write(void *ctx, const uint8_t *buf, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        cmsdk_uart_put(ctx, buf[i]);
    }
    return (int32_t)n;
}

static uint32_t mps2_millis(void *ctx)
{
    (void)ctx;
    return board_millis();
}

static void mps2_log(void *ctx, hal_log_level_t level, const char *line)
{
    (void)ctx;
    if (level >= HAL_LOG_INFO) {
        board_log(line);
    }
}

hal_t hal_mps2(void)
{
    hal_t hal;

    cmsdk_uart_init(&module_uart, CMSDK_UART0, &module_rx, BOARD_SYSCLK_HZ, BOARD_UART_BAUD);
    NVIC_ISER0 = 1u << IRQ_UART0_RX;
    hal.ctx = &module_uart;
    hal.uart_read = mps2_read;
    hal.uart_write = mps2_write;
    hal.millis = mps2_millis;
    hal.reset_pin = NULL; /* QEMU's board has no line to a module's RESET; a real one would
                             drive a GPIO (the CMSDK GPIO at 0x40010000) here */
    hal.log = mps2_log;
    hal.wall_clock_ms = NULL;
    return hal;
}

bool hal_mps2_rx_pending(void)
{
    return module_rx.head != module_rx.tail;
}

uint32_t hal_mps2_rx_dropped(void)
{
    return module_rx.dropped;
}
