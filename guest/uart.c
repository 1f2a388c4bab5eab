// COM1 output (see uart.h). Every port access is a VM exit (30-35 us on PVM): one per
// byte, as the 8250 has no batching (a string OUT does not help either: KVM passes it on one
// byte per exit, and on VMX/SVM it bypasses the fast PIO path). The line status is read
// only once per 16 bytes, before each FIFO-sized burst.
#include "uart.h"

#include "arch.h"

// True while the FIFO is known to be empty (right after uart_init), so the first burst
// (the boot banner) costs no line-status read.
static int fifo_known_empty;

void uart_init(void) {
  outb(COM1_PORT + UART_FCR, 0x07);  // enable FIFOs, clear receive and transmit
  fifo_known_empty = 1;
}

void uart_write(const char* s, size_t n) {
  while (n > 0) {
    size_t burst = n < 16 ? n : 16;
    if (!fifo_known_empty) {
      while (!(inb(COM1_PORT + UART_LSR) & UART_LSR_THRE)) cpu_relax();
    }
    fifo_known_empty = 0;
    for (size_t i = 0; i < burst; i++) outb(COM1_PORT + UART_THR, (uint8_t)s[i]);
    s += burst;
    n -= burst;
  }
}
