/* cmsdk_uart.c: see cmsdk_uart.h. */
#include "cmsdk_uart.h"

#define STATE_TXFULL 0x1u
#define STATE_RXFULL 0x2u
#define CTRL_TX_EN 0x1u
#define CTRL_RX_EN 0x2u
#define CTRL_RX_INTEN 0x8u
#define INT_RX 0x2u

void cmsdk_uart_init(cmsdk_uart_t *uart, cmsdk_uart_regs_t *regs, cmsdk_uart_ring_t *rx,
                     uint32_t clock_hz, uint32_t baud)
{
    uart->regs = regs;
    uart->rx = rx;
    if (rx != NULL) {
        rx->head = rx->tail = rx->dropped = 0;
    }
    regs->ctrl = 0;
    regs->bauddiv = clock_hz / baud; /* 217 for 115200 from 25 MHz */
    regs->intstatus = 0xfu;          /* nothing pending from before */
    regs->ctrl = CTRL_TX_EN | (rx != NULL ? CTRL_RX_EN | CTRL_RX_INTEN : 0u);
}

void cmsdk_uart_put(cmsdk_uart_t *uart, uint8_t byte)
{
    while (uart->regs->state & STATE_TXFULL) {
    }
    uart->regs->data = byte;
}

void cmsdk_uart_rx_isr(cmsdk_uart_t *uart)
{
    /* Clear first: a byte that lands after the loop below raises the interrupt again. */
    cmsdk_uart_ring_t *rx = uart->rx;

    uart->regs->intstatus = INT_RX;
    while (uart->regs->state & STATE_RXFULL) {
        uint8_t byte = (uint8_t)uart->regs->data;
        uint32_t head = rx->head;
        if (head - rx->tail < CMSDK_UART_RING_SIZE) {
            rx->bytes[head % CMSDK_UART_RING_SIZE] = byte;
            rx->head = head + 1u;
        } else {
            rx->dropped++;
        }
    }
}

size_t cmsdk_uart_read(cmsdk_uart_t *uart, uint8_t *buf, size_t n)
{
    cmsdk_uart_ring_t *rx = uart->rx;
    size_t got = 0;
    uint32_t tail = rx->tail;

    while (got < n && tail != rx->head) {
        buf[got++] = rx->bytes[tail % CMSDK_UART_RING_SIZE];
        tail++;
    }
    rx->tail = tail;
    return got;
}
