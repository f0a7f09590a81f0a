/* startup.c: the Cortex-M3 vector table and reset handler for the MPS2 AN385 board.
 *
 * At reset the core loads the stack pointer from word 0 of the vector table and jumps to word 1.
 * reset_handler then does what a C program expects before main: copy initialised data from flash
 * to RAM and zero the rest (the symbols come from mps2_an385.ld).
 */
#include <stdint.h>

#include "board.h"

typedef void (*handler_t)(void);

/* Exceptions 1..15 (ARMv7-M), then the AN385's 32 external interrupts. */
#define EXCEPTIONS 15
#define IRQS 32

typedef struct {
    const uint32_t *initial_stack;
    handler_t handlers[EXCEPTIONS + IRQS];
} vector_table_t;

extern const uint32_t stack_top;
extern uint32_t data_load, data_start, data_end, bss_start, bss_end;

int main(void);
void reset_handler(void);
void default_handler(void);
void fault_handler(void);

/* Unclaimed interrupts land in default_handler; a device's driver defines the real one. */
void systick_handler(void) __attribute__((weak, alias("default_handler")));
void uart0_rx_handler(void) __attribute__((weak, alias("default_handler")));

__attribute__((section(".vectors"), used)) static const vector_table_t vectors = {
    &stack_top,
    {
        reset_handler,   /* 1 reset */
        fault_handler,   /* 2 NMI */
        fault_handler,   /* 3 hard fault */
        fault_handler,   /* 4 memory management fault */
        fault_handler,   /* 5 bus fault */
        fault_handler,   /* 6 usage fault */
        0, 0, 0, 0,      /* 7-10 reserved */
        default_handler, /* 11 SVCall */
        default_handler, /* 12 debug monitor */
        0,               /* 13 reserved */
        default_handler, /* 14 PendSV */
        systick_handler, /* 15 SysTick */
        /* IRQ 0: UART0 RX (QEMU hw/arm/mps2.c: UART n has RX at IRQ 2n, TX at 2n + 1). */
        uart0_rx_handler,
        default_handler, default_handler, default_handler, default_handler, default_handler,
        default_handler, default_handler, default_handler, default_handler, default_handler,
        default_handler, default_handler, default_handler, default_handler, default_handler,
        default_handler, default_handler, default_handler, default_handler, default_handler,
        default_handler, default_handler, default_handler, default_handler, default_handler,
        default_handler, default_handler, default_handler, default_handler, default_handler,
        default_handler,
    },
};

void reset_handler(void)
{
    const uint32_t *from = &data_load;
    uint32_t *to;

    for (to = &data_start; to < &data_end;) {
        *to++ = *from++;
    }
    for (to = &bss_start; to < &bss_end;) {
        *to++ = 0;
    }
    board_exit(main());
}

/* An interrupt nobody handles: say so and stop, rather than hang until a test's deadline. */
void default_handler(void)
{
    board_log("unexpected interrupt");
    board_exit(70);
}

void fault_handler(void)
{
    board_log("fault");
    board_exit(70);
}
