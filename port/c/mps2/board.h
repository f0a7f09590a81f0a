/* board.h: the Arm MPS2 AN385 board (Cortex-M3, 25 MHz) as QEMU's `mps2-an385` models it.
 *
 *   UART0 (0x40004000, the first -serial)   the module link: hal_mps2.c drives it
 *   UART1 (0x40005000, the second -serial)  the firmware's own log: board_log()
 *   SysTick                                 a 1 ms tick: board_millis()
 *   semihosting SYS_EXIT_EXTENDED           board_exit(status): QEMU exits with `status`
 *
 * Memory map and UART registers: QEMU's hw/arm/mps2.c and hw/char/cmsdk-apb-uart.c, Arm's AN385
 * and the CMSDK technical reference manual (DDI 0479).
 */
#ifndef MPS2_BOARD_H
#define MPS2_BOARD_H

#include <stdint.h>

#define BOARD_SYSCLK_HZ 25000000u /* the FPGA's main clock: the CPU, SysTick and the UARTs */
#define BOARD_UART_BAUD 115200u

/* Clocks, the log UART, interrupts on. Call first. */
void board_init(void);

/* Milliseconds since board_init: a wrapping uint32_t (timebase.h compares it). */
uint32_t board_millis(void);

/* One line on the log UART (a line break is added). */
void board_log(const char *line);

/* Sleep until the next interrupt (the 1 ms tick at the latest). */
void board_idle(void);

/* End the firmware with `status`. Under QEMU with semihosting enabled, QEMU exits with it; on
 * a board without a debugger attached it stops here forever. */
void board_exit(int status);

/* Interrupt handlers the vector table (startup.c) names; each is weak there, defined where its
 * device lives. */
void systick_handler(void);
void uart0_rx_handler(void);

#endif /* MPS2_BOARD_H */
