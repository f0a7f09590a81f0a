/* cmsdk_uart.c: see cmsdk_uart.h. */
#include "cmsdk_uart.h"

#define STATE_TXFULL 0x1u
#define STATE_RXFULL 0x2u
#define CTRL_TX_EN 0x1u
#define CTRL_RX_EN 0x2u
#define CTRL_RX_INTEN 0x8u
#define INT_RX 0x2u

void cmsdk_uart_init(cmsdk_uart_t *uart, cmsdk_uart_regs_t *regs, uint32_t clock_hz,
                     uint32_t baud, int rx_interrupt)
{
    uart->regs = regs;
    uart->head = uart->tail = uart->dropped = 0;
    regs->ctrl = 0;
    regs->bauddiv = clock_hz / baud; /* 217 for 115200 from 25 MHz */
    regs->intstatus = 0xfu;          /* nothing pending from before */
    regs->ctrl = CTRL_TX_EN | CTRL_RX_EN | (rx_interrupt ? CTRL_RX_INTEN : 0u);
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
    uart->regs->intstatus = INT_RX;
    while (uart->regs->state & STATE_RXFULL) {
        uint8_t byte = (uint8_t)uart->regs->data;
        uint32_t head = uart->head;
        if (head - uart->tail < CMSDK_UART_RING_SIZE) {
            uart->ring[head % CMSDK_UART_RING_SIZE] = byte;
            uart->head = head + 1u;
        } else {
            uart->dropped++;
        }
    }
}

size_t cmsdk_uart_read(cmsdk_uart_t *uart, uint8_t *buf, size_t n)
{
    size_t got = 0;
    uint32_t tail = uart->tail;

    while (got < n && tail != uart->head) {
        buf[got++] = uart->ring[tail % CMSDK_UART_RING_SIZE];
        tail++;
    }
    uart->tail = tail;
    return got;
}
