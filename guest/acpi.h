// ACPI tables as the guest reads them (ACPI 6.5 §5.2): RSDP, XSDT (or RSDT), every table
// they list, the DSDT through the FADT, and the MADT's CPUs, IOAPICs and interrupt
// source overrides. All reads are bounds-checked: a VMM's broken tables give an error
// message, never a fault.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acpi_parse.h"

#define ACPI_MAX_TABLES 32
#define ACPI_MAX_CPUS 64
#define ACPI_MAX_IOAPICS 4
#define ACPI_MAX_OVERRIDES 16

struct acpi_table_ref {
  char sig[5];
  uint64_t addr;
  uint32_t len;
  bool checksum_ok;
};

struct acpi_cpu {
  uint32_t apic_id;
  bool enabled;         // MADT flags bit 0
  bool online_capable;  // MADT flags bit 1 (may be hot-added later)
};

struct acpi_ioapic {
  uint32_t id, addr, gsi_base;
};

struct acpi_override {  // MADT Interrupt Source Override (ISA IRQ -> GSI)
  uint8_t irq;
  uint32_t gsi;
  uint16_t flags;  // polarity bits 0-1, trigger mode bits 2-3
};

struct acpi_info {
  uint64_t rsdp;
  uint8_t rsdp_revision;
  char oem_id[7];
  bool root_is_xsdt;
  uint64_t root;  // XSDT (or RSDT) address
  // Every table found: the root, each table it lists, and the DSDT (last).
  struct acpi_table_ref tables[ACPI_MAX_TABLES];
  int table_count;
  uint64_t dsdt;
  uint32_t dsdt_len;
  bool hw_reduced;                // FADT flag HW_REDUCED_ACPI
  struct acpi_gas sleep_control;  // FADT SLEEP_CONTROL_REG (address 0: none)
  bool has_s5;                    // the DSDT names \_S5_
  uint8_t s5_slp_typ;             // its first element: SLP_TYP for soft-off
  uint32_t lapic_addr;
  struct acpi_cpu cpus[ACPI_MAX_CPUS];
  int cpu_count;
  struct acpi_ioapic ioapics[ACPI_MAX_IOAPICS];
  int ioapic_count;
  struct acpi_override overrides[ACPI_MAX_OVERRIDES];
  int override_count;
};

// Finds and reads the tables. `rsdp_hint` is the address the loader passed (0: scan the
// EBDA and 0xE0000-0xFFFFF for "RSD PTR "). Returns NULL when everything was found and
// every checksum held, else a message (in `err`) naming the first problem; *out then
// holds whatever was read before it.
const char* acpi_read(struct acpi_info* out, uint64_t rsdp_hint, char* err, size_t err_len);

// The GSI an ISA IRQ arrives on (identity unless the MADT overrides it), and the
// override's MPS INTI flags (0: bus default, i.e. ISA edge/active-high).
uint32_t acpi_isa_irq_to_gsi(const struct acpi_info* a, uint8_t irq, uint16_t* flags);

// Calls fn for each Device() in the DSDT: its name path, _HID and body (acpi_parse.h).
void acpi_dsdt_devices(const struct acpi_info* a, aml_device_fn fn, void* ctx);
