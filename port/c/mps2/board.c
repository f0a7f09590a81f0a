/* board.c: clocks, the log UART, SysTick and the exit. See board.h. */
#include "board.h"

#include <stddef.h>

#include "cmsdk_uart.h"

/* SysTick (ARMv7-M architecture reference manual B3.3). */
#define SYST_CSR (*(volatile uint32_t *)0xe000e010u)
#define SYST_RVR (*(volatile uint32_t *)0xe000e014u)
#define SYST_CVR (*(volatile uint32_t *)0xe000e018u)
#define SYST_CSR_ENABLE 0x1u
#define SYST_CSR_TICKINT 0x2u
#define SYST_CSR_CLKSOURCE 0x4u /* the processor clock */

/* Semihosting (Arm's semihosting specification): the operation in r0, its argument in r1,
 * `bkpt 0xab` on M-profile. */
#define SYS_EXIT_EXTENDED 0x20u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

static volatile uint32_t millis;
static cmsdk_uart_t log_uart;

void systick_handler(void)
{
    millis++;
}

void board_init(void)
{
    cmsdk_uart_init(&log_uart, CMSDK_UART1, NULL, BOARD_SYSCLK_HZ, BOARD_UART_BAUD);
    SYST_RVR = BOARD_SYSCLK_HZ / 1000u - 1u;
    SYST_CVR = 0;
    SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CLKSOURCE;
}

uint32_t board_millis(void)
{
    return millis;
}

void board_log(const char *line)
{
    if (log_uart.regs == NULL) { /* a fault before board_init: nowhere to write */
        return;
    }
    for (; *line != '\0'; line++) {
        cmsdk_uart_put(&log_uart, (uint8_t)*line);
    }
    cmsdk_uart_put(&log_uart, '\n');
}

void board_idle(void)
{
    __asm__ volatile("wfi");
}

void board_exit(int status)
{
    /* SYS_EXIT_EXTENDED takes {reason, exit code}; QEMU exits with the code. (Plain SYS_EXIT on
     * a 32-bit core carries no code: only success or failure.) */
    uint32_t block[2];
    register uint32_t op __asm__("r0") = SYS_EXIT_EXTENDED;
    register uint32_t *arg __asm__("r1") = block;

    block[0] = ADP_STOPPED_APPLICATION_EXIT;
    block[1] = (uint32_t)status;
    __asm__ volatile("bkpt 0xab" : "+r"(op) : "r"(arg) : "memory");
    for (;;) {
        board_idle(); /* no debugger took the call: stop here */
    }
}
