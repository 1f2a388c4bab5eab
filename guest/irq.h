// Interrupts for the guest's CPL3 drivers: the local APIC, the IOAPIC, and the record the
// CPL0 stubs keep (isr.S).
//
// Model: a device interrupt runs a ~6-instruction CPL0 stub that sets the vector's bit
// in irq_pending, bumps irq_count and EOIs the local APIC; the driver at CPL3 then sees
// the bit (irq_take) and does the work at native speed. IOAPIC entries are always
// programmed edge-triggered so the early EOI cannot re-raise a still-asserted line.
// Vectors: GSI g uses IRQ_GSI_VECTOR(g).
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define LAPIC_BASE 0xFEE00000ULL
#define IOAPIC_DEFAULT_BASE 0xFEC00000ULL
#define IRQ_GSI_VECTOR(gsi) (0x30 + (gsi))

// Written by the CPL0 stubs; read (and cleared) at CPL3.
extern volatile uint64_t irq_pending[4];
extern volatile uint64_t irq_count;

// Masks the legacy PICs and the local APIC's LINT0, and software-enables the local APIC
// with spurious vector 255. Idempotent; call on each CPU that takes interrupts.
// Masks every line of both 8259A PICs (OCW1). They are never initialised, so their
// vector base is whatever reset left (0 under KVM): an unmasked line would reach the CPU
// through LINT0 (ExtINT after reset) as vector 0-15, i.e. as an exception.
void pic_mask_all(void);
void irq_init(void);

uint32_t lapic_read(uint32_t reg);
void lapic_write(uint32_t reg, uint32_t value);
// The calling CPU's local APIC ID.
uint32_t lapic_id(void);

// Routes IOAPIC input `pin` (of the IOAPIC at `base`) to `vector` on the CPU with
// `dest_apic_id`, fixed delivery, edge-triggered; active-low if `active_low`. Unmasked.
void ioapic_route(uint64_t base, uint32_t pin, uint8_t vector, uint32_t dest_apic_id,
                  bool active_low);
void ioapic_mask(uint64_t base, uint32_t pin);
// How many redirection entries the IOAPIC at `base` has.
uint32_t ioapic_pins(uint64_t base);

// Clears and returns the vector's pending bit.
bool irq_take(uint8_t vector);

// Where a GSI arrives: the IOAPIC serving it, the pin, and the vector the guest uses
// (IRQ_GSI_VECTOR(gsi)).
struct gsi_route {
  uint32_t gsi;
  uint64_t ioapic_addr;
  uint32_t ioapic_id, pin;
  uint8_t vector;
};
struct acpi_ioapic;

// Finds the IOAPIC (of `count` from the MADT) whose pins cover `gsi`. With count == 0
// (no ACPI tables) assumes one IOAPIC at IOAPIC_DEFAULT_BASE from GSI 0. False if none
// serves it or the vector would leave the device range.
bool irq_find_gsi(const struct acpi_ioapic* ioapics, int count, uint32_t gsi,
                  struct gsi_route* out);

// irq_init() on this CPU, clears a stale pending bit, and unmasks the route (edge,
// `active_low` polarity) to this CPU's local APIC.
void irq_route_gsi(const struct gsi_route* r, bool active_low);

// A periodic local APIC timer interrupt on `vector` every `count` timer ticks (divide by
// 1; KVM's APIC timer runs at 1 GHz, so 10000000 is ~10 ms). Drivers waiting in
// sys_wait_irq use it to wake up for their deadlines. irq_timer_stop() masks it.
#define IRQ_TIMER_VECTOR 0xF0
void irq_timer_start(uint32_t count);
void irq_timer_stop(void);
