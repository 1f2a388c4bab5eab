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
