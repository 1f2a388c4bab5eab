// COM1 output (see uart.h). Each port access is a VM exit (30-35 us on PVM), so bytes go
// out 16 at a time with `rep outsb` (one exit per burst; KVM batches string I/O), and the
// line status is checked only before each burst: a 16-byte burst fits the 16550 FIFO.
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
    outsb(COM1_PORT + UART_THR, s, burst);
    s += burst;
    n -= burst;
  }
}
