/* hal_mps2.h: the HAL on the MPS2 AN385 board: the module on UART0 (interrupt-driven receive
 * into a ring), SysTick milliseconds, the log on UART1. */
#ifndef MPS2_HAL_MPS2_H
#define MPS2_HAL_MPS2_H

#include "hal.h"

/* Start UART0 at 115200 8N1 with its RX interrupt and return the hal_t for it. Call after
 * board_init(). */
hal_t hal_mps2(void);

/* Whether received bytes wait in the ring (the main loop then ticks instead of sleeping). */
bool hal_mps2_rx_pending(void);

/* Bytes the RX ring had to drop since start (the main loop did not drain it in time). */
uint32_t hal_mps2_rx_dropped(void);

#endif /* MPS2_HAL_MPS2_H */
