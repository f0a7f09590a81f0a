/* cmsdk_uart.h: the Arm CMSDK APB UART (DDI 0479 chapter 4), as on the MPS2 boards.
 *
 * A byte-wide transmit holding register and a one-byte receive buffer: TXFULL/RXFULL in STATE say
 * whether each is occupied. There is no FIFO, so received bytes must be taken as they come: the
 * RX interrupt moves each into a ring that the main loop drains (cmsdk_uart_rx_isr).
 */
#ifndef MPS2_CMSDK_UART_H
#define MPS2_CMSDK_UART_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    volatile uint32_t data;      /* 0x00 read: the received byte; write: send a byte */
    volatile uint32_t state;     /* 0x04 TXFULL, RXFULL, TX/RX overrun (write 1 to clear) */
    volatile uint32_t ctrl;      /* 0x08 TX/RX enable, their interrupt enables */
    volatile uint32_t intstatus; /* 0x0c pending interrupts (write 1 to clear) */
    volatile uint32_t bauddiv;   /* 0x10 clock / baud, at least 16 */
} cmsdk_uart_regs_t;

#define CMSDK_UART0 ((cmsdk_uart_regs_t *)0x40004000u)
#define CMSDK_UART1 ((cmsdk_uart_regs_t *)0x40005000u)

/* Receive ring: a power of two, written by the interrupt, read by the main loop. The indices run
 * free and wrap at 2^32 (a multiple of the size); head - tail is the fill. One writer each, so
 * no lock is needed. */
#define CMSDK_UART_RING_SIZE 512u

typedef struct {
    volatile uint8_t bytes[CMSDK_UART_RING_SIZE];
    volatile uint32_t head;    /* written by the ISR only */
    volatile uint32_t tail;    /* written by the main loop only */
    volatile uint32_t dropped; /* bytes lost because the ring was full */
} cmsdk_uart_ring_t;

typedef struct {
    cmsdk_uart_regs_t *regs;
    cmsdk_uart_ring_t *rx; /* NULL: transmit only (the log UART) */
} cmsdk_uart_t;

/* Enable TX at `baud` from a `clock_hz` clock; with a ring, also RX and its interrupt (the
 * caller enables the interrupt's line in the NVIC). */
void cmsdk_uart_init(cmsdk_uart_t *uart, cmsdk_uart_regs_t *regs, cmsdk_uart_ring_t *rx,
                     uint32_t clock_hz, uint32_t baud);

/* Send one byte, waiting while the holding register is full. */
void cmsdk_uart_put(cmsdk_uart_t *uart, uint8_t byte);

/* The RX interrupt: clear it, move every received byte into the ring. */
void cmsdk_uart_rx_isr(cmsdk_uart_t *uart);

/* Up to n bytes from the ring (the UART must have one); how many. */
size_t cmsdk_uart_read(cmsdk_uart_t *uart, uint8_t *buf, size_t n);

#endif /* MPS2_CMSDK_UART_H */
