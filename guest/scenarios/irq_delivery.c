// keeltest=irq[,src=uart|pit][,timeout_ms=N]: receive one device interrupt through the
// IOAPIC and the local APIC, with IF=1 at CPL3.
//
//   src=uart (default): COM1's transmitter-empty interrupt (IER bit 1), ISA IRQ 4.
//   src=pit: PIT channel 0 one-shot (mode 0, 20 ms), ISA IRQ 0 (usually GSI 2 by an
//            interrupt source override).
//   gsi=N: use GSI N instead of what the MADT says (to diagnose a VMM's routing).
//   keeltest: irq src=<src> irq=<n> gsi=<n> ioapic=<id> pin=<n> vector=0x<v> fired
// FAIL if nothing arrives within timeout_ms (default 1000).
#include "acpi.h"
#include "arch.h"
#include "irq.h"
#include "lib.h"
#include "printf.h"
#include "scenario.h"
#include "timer.h"
#include "uart.h"

#define PIT_CH0_PORT 0x40
#define PIT_CMD_PORT 0x43
#define PIT_ONESHOT_COUNT 23864  // 20 ms at 1.193182 MHz

static void trigger(bool pit) {
  if (pit) {
    outb(PIT_CMD_PORT, 0x30);  // channel 0, lo/hi byte, mode 0 (interrupt on terminal count)
    outb(PIT_CH0_PORT, PIT_ONESHOT_COUNT & 0xFF);
    outb(PIT_CH0_PORT, PIT_ONESHOT_COUNT >> 8);
  } else {
    outb(COM1_PORT + UART_MCR, UART_MCR_OUT2 | 0x03);  // OUT2, RTS, DTR
    outb(COM1_PORT + UART_IER, UART_IER_THRI);
  }
}

static void quiesce(bool pit) {
  if (!pit) {
    outb(COM1_PORT + UART_IER, 0);
    (void)inb(COM1_PORT + UART_IIR);
  }
}

static int run_irq(struct scenario_ctx* ctx) {
  const char* src = scenario_arg(ctx->args, "src");
  if (!src) src = "uart";
  bool pit = strcmp(src, "pit") == 0;
  if (!pit && strcmp(src, "uart") != 0)
    return scenario_fail(ctx, "src must be uart or pit, got '%s'", src);
  bool ok = true;
  uint64_t timeout_ms = scenario_arg_u64(ctx->args, "timeout_ms", 1000, &ok);
  if (!ok) return scenario_fail(ctx, "timeout_ms must be a number");

  static struct acpi_info a;
  char err[160];
  const char* e = acpi_read(&a, ctx->boot->rsdp, err, sizeof(err));
  if (e) return scenario_fail(ctx, "need the MADT for IOAPIC routing: %s", e);
  uint8_t irq = pit ? 0 : COM1_IRQ;
  uint16_t flags;
  uint32_t gsi = acpi_isa_irq_to_gsi(&a, irq, &flags);
  gsi = (uint32_t)scenario_arg_u64(ctx->args, "gsi", gsi, &ok);
  if (!ok) return scenario_fail(ctx, "gsi must be a number");
  struct gsi_route r;
  if (!irq_find_gsi(a.ioapics, a.ioapic_count, gsi, &r))
    return scenario_fail(ctx, "no IOAPIC in the MADT serves GSI %u (irq %u)", gsi, irq);
  bool active_low = (flags & 3) == 3;  // MPS INTI polarity: 11 = active low

  (void)tsc_hz();  // calibrate before the clock starts
  irq_route_gsi(&r, active_low);
  sys_set_if(1);
  trigger(pit);
  uint64_t deadline = tsc_deadline_us(timeout_ms * 1000);
  bool fired = false;
  while (!(fired = irq_take(r.vector)) && !tsc_passed(deadline)) cpu_relax();
  sys_set_if(0);
  ioapic_mask(r.ioapic_addr, r.pin);
  quiesce(pit);
  if (!fired)
    return scenario_fail(ctx,
                         "no interrupt on vector 0x%x (src=%s irq=%u gsi=%u ioapic=%u "
                         "pin=%u) within %lu ms; irq_count=%lu",
                         r.vector, src, irq, gsi, r.ioapic_id, r.pin, timeout_ms, irq_count);
  KT_LINE("irq src=%s irq=%u gsi=%u ioapic=%u pin=%u vector=0x%x fired", src, irq, gsi, r.ioapic_id,
          r.pin, r.vector);
  return SCENARIO_PASS;
}
KEEL_SCENARIO(irq, "irq", run_irq);
