// Local APIC and IOAPIC programming from CPL3 (see irq.h). Both are MMIO, reachable from
// CPL3 because the guest's page tables map the top GiB user-accessible (uncached).
#include "irq.h"

#include "acpi.h"
#include "arch.h"

volatile uint64_t irq_pending[4];
volatile uint64_t irq_count;

// Local APIC registers (Intel SDM vol. 3 §11.4.1 table 11-1).
#define LAPIC_ID 0x020
#define LAPIC_SVR 0x0F0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3E0
#define LVT_TIMER_PERIODIC (1u << 17)
#define LAPIC_DIV_BY_1 0x0B
#define LAPIC_SVR_ENABLE 0x100
#define LVT_MASKED 0x10000

// 8259A PIC data ports: writing 0xFF to both masks every legacy line (OCW1).
#define PIC1_DATA 0x21
#define PIC2_DATA 0xA1

// IOAPIC (82093AA datasheet): index register @0, data window @0x10; register 1 is the
// version (bits 23-16: highest entry), 0x10 + 2n / 0x11 + 2n redirection entry n.
#define IOAPIC_REGSEL 0x00
#define IOAPIC_WIN 0x10
#define IOAPIC_VER 0x01
#define IOREDTBL(n) (0x10 + 2 * (n))
#define IORED_ACTIVE_LOW (1u << 13)
#define IORED_MASKED (1u << 16)

uint32_t lapic_read(uint32_t reg) { return mmio_read32(LAPIC_BASE + reg); }
void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }
uint32_t lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }

void pic_mask_all(void) {
  outb(PIC1_DATA, 0xFF);
  outb(PIC2_DATA, 0xFF);
}

void irq_init(void) {
  pic_mask_all();
  lapic_write(LAPIC_LVT_LINT0, LVT_MASKED);
  lapic_write(LAPIC_SVR, LAPIC_SVR_ENABLE | SPURIOUS_VECTOR);
}

static uint32_t ioapic_read(uint64_t base, uint32_t reg) {
  mmio_write32(base + IOAPIC_REGSEL, reg);
  return mmio_read32(base + IOAPIC_WIN);
}

static void ioapic_write(uint64_t base, uint32_t reg, uint32_t v) {
  mmio_write32(base + IOAPIC_REGSEL, reg);
  mmio_write32(base + IOAPIC_WIN, v);
}

uint32_t ioapic_pins(uint64_t base) { return ((ioapic_read(base, IOAPIC_VER) >> 16) & 0xFF) + 1; }

void ioapic_route(uint64_t base, uint32_t pin, uint8_t vector, uint32_t dest, bool active_low) {
  // Mask while the two halves change, then write the low half (vector, unmasked) last.
  ioapic_write(base, IOREDTBL(pin), IORED_MASKED);
  ioapic_write(base, IOREDTBL(pin) + 1, dest << 24);
  ioapic_write(base, IOREDTBL(pin), vector | (active_low ? IORED_ACTIVE_LOW : 0));
}

void ioapic_mask(uint64_t base, uint32_t pin) { ioapic_write(base, IOREDTBL(pin), IORED_MASKED); }

bool irq_take(uint8_t vector) {
  uint64_t bit = 1ULL << (vector % 64);
  volatile uint64_t* word = &irq_pending[vector / 64];
  return (__atomic_fetch_and(word, ~bit, __ATOMIC_ACQ_REL) & bit) != 0;
}

bool irq_find_gsi(const struct acpi_ioapic* list, int count, uint32_t gsi, struct gsi_route* r) {
  static const struct acpi_ioapic fallback = {0, IOAPIC_DEFAULT_BASE, 0};
  if (count == 0) {
    list = &fallback;
    count = 1;
  }
  if (IRQ_GSI_VECTOR(gsi) >= IRQ_TIMER_VECTOR) return false;
  for (int i = 0; i < count; i++) {
    if (gsi < list[i].gsi_base || gsi - list[i].gsi_base >= ioapic_pins(list[i].addr)) continue;
    *r = (struct gsi_route){gsi, list[i].addr, list[i].id, gsi - list[i].gsi_base,
                            (uint8_t)IRQ_GSI_VECTOR(gsi)};
    return true;
  }
  return false;
}

void irq_route_gsi(const struct gsi_route* r, bool active_low) {
  irq_init();
  irq_take(r->vector);
  ioapic_route(r->ioapic_addr, r->pin, r->vector, lapic_id(), active_low);
}

void irq_timer_start(uint32_t count) {
  lapic_write(LAPIC_TIMER_DIV, LAPIC_DIV_BY_1);
  lapic_write(LAPIC_LVT_TIMER, IRQ_TIMER_VECTOR | LVT_TIMER_PERIODIC);
  lapic_write(LAPIC_TIMER_INIT, count);
}

void irq_timer_stop(void) {
  lapic_write(LAPIC_TIMER_INIT, 0);
  lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
}
