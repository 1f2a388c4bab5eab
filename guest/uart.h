// The 8250/16550 UART on COM1 (I/O port 0x3F8, IRQ 4): the guest's console and the
// channel its test results travel on.
#pragma once

#include <stddef.h>

#define COM1_PORT 0x3F8
#define COM1_IRQ 4

// UART registers (offsets from COM1_PORT).
#define UART_THR 0          // transmit holding register (write)
#define UART_IER 1          // interrupt enable
#define UART_FCR 2          // FIFO control (write)
#define UART_IIR 2          // interrupt identification (read)
#define UART_MCR 4          // modem control
#define UART_LSR 5          // line status
#define UART_IER_THRI 0x02  // interrupt when the transmitter is empty
#define UART_MCR_OUT2 0x08  // gates the interrupt line on PC-style boards
#define UART_LSR_THRE 0x20  // transmit FIFO empty

// Enables the transmit FIFO (one port write). No baud-rate or line setup: virtual UARTs
// ignore it, and every port access costs a VM exit.
void uart_init(void);

// Writes n bytes. Not locked: callers serialise (printf.c holds the console lock).
void uart_write(const char* s, size_t n);
