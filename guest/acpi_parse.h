// Parsing ACPI data held in a byte buffer: the FADT fields the guest uses, and the few
// AML constructs a VMM's DSDT uses to describe devices (ACPI 6.5 §5.2.9, §19-§20, §6.4).
//
// Nothing here touches guest-physical memory or hardware, so the same code is built into
// the guest and into host unit tests (tests/guest/acpi_parse_test.cc) and a fuzz target.
// Every read is bounded by the buffer given; malformed input yields "not found", never an
// out-of-bounds access.
//
// AML is not interpreted: the functions scan for the byte patterns VMMs emit (Device(),
// Name(_HID, ...), Name(_CRS, ResourceTemplate() {...}) or a _CRS method that returns a
// buffer literal, Name(\_S5_, Package() {...})). That covers QEMU, Firecracker, Cloud
// Hypervisor and keel-vmm tables.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Generic Address Structure (§5.2.3.2).
#define ACPI_GAS_MEMORY 0
#define ACPI_GAS_IO 1
struct acpi_gas {
  uint8_t space;      // ACPI_GAS_MEMORY, ACPI_GAS_IO, ...
  uint8_t bit_width;  // register width
  uint8_t bit_offset;
  uint8_t access_size;  // 0 undefined, 1 byte, 2 word, 3 dword, 4 qword
  uint64_t address;     // 0: not present
};

struct acpi_fadt {
  bool hw_reduced;                // Flags bit 20, HW_REDUCED_ACPI
  uint64_t dsdt;                  // X_DSDT, else DSDT
  struct acpi_gas sleep_control;  // SLEEP_CONTROL_REG (ACPI 5.0+ FADTs of 244+12 bytes)
  struct acpi_gas sleep_status;   // SLEEP_STATUS_REG
};

// Reads the FADT (the whole table, header included). Fields beyond `len` stay zero.
void acpi_parse_fadt(const uint8_t* fadt, size_t len, struct acpi_fadt* out);

// --- AML --------------------------------------------------------------------------------

// PkgLength (§20.2.4). Returns the bytes it used, 0 if cut off by `end`.
size_t aml_pkg_length(const uint8_t* p, const uint8_t* end, uint32_t* len);

// NameString (§20.2.2) as text ("\_SB_.COM1"). Returns the bytes used, 0 if malformed.
size_t aml_name_string(const uint8_t* p, const uint8_t* end, char* out, size_t cap);

struct aml_device {
  char name[64];        // name path as written in the DeviceOp
  char hid[32];         // _HID as text ("" when none; EISA IDs decoded, e.g. "PNP0501")
  const uint8_t* body;  // the device's package after its name, nested devices included
  size_t body_len;
};

// Calls fn for each Device() in `aml` (a DSDT/SSDT without its 36-byte header), in table
// order.
typedef void (*aml_device_fn)(void* ctx, const struct aml_device* dev);
void aml_for_each_device(const uint8_t* aml, size_t len, aml_device_fn fn, void* ctx);

#define AML_MAX_IRQS 8
struct aml_resources {
  bool has_mem;  // first memory range (Memory32Fixed, Memory32, DWord/QWord memory)
  uint64_t mem_base, mem_len;
  int irq_count;  // interrupts of every IRQ / Extended Interrupt descriptor, in order
  uint32_t irqs[AML_MAX_IRQS];
  bool irq_level;       // of the first interrupt descriptor: level- (else edge-) triggered
  bool irq_active_low;  // of the first interrupt descriptor
};

// Decodes a resource template (§6.4: small and large descriptors up to the End Tag).
// Returns false when it is malformed.
bool aml_parse_resources(const uint8_t* buf, size_t len, struct aml_resources* out);

// Finds the device's _CRS in its body (Name(_CRS, Buffer) or a Method(_CRS) whose first
// Return is a Buffer literal; not inside nested devices) and decodes it. False if absent
// or malformed.
bool aml_device_resources(const uint8_t* body, size_t len, struct aml_resources* out);

// The first element of the \_S5_ package (SLP_TYP for soft-off, §7.4.2). False if absent.
bool aml_find_s5(const uint8_t* aml, size_t len, uint8_t* slp_typ);

#ifdef __cplusplus
}
#endif
