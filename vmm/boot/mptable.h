// The Intel MultiProcessor Specification 1.4 table: a floating pointer structure and a
// configuration table at layout::kEbdaStart (the first KiB of the EBDA, where guests scan
// for "_MP_"). Guests without ACPI (or booted with acpi=off) learn their CPUs, the IOAPIC
// and the interrupt routing from it.
//
// Structures are public so tests can parse what was written; sizes follow MP spec 1.4
// chapter 4 and are pinned by static_asserts.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "vmm/boot/platform.h"
#include "vmm/memory/guest_memory.h"

namespace keel::vmm::mptable {

struct __attribute__((packed)) FloatingPointer {  // §4.1
  char signature[4];                              // "_MP_"
  uint32_t config_table;                          // physical address
  uint8_t length;                                 // in 16-byte units: 1
  uint8_t spec_rev;                               // 4 = 1.4
  uint8_t checksum;
  uint8_t feature1;  // 0: a configuration table is present
  uint8_t feature2;  // bit 7 IMCRP: 0 = virtual wire mode
  uint8_t feature3[3];
};
static_assert(sizeof(FloatingPointer) == 16);

struct __attribute__((packed)) ConfigHeader {  // §4.2
  char signature[4];                           // "PCMP"
  uint16_t base_table_length;
  uint8_t spec_rev;
  uint8_t checksum;
  char oem_id[8];
  char product_id[12];
  uint32_t oem_table;
  uint16_t oem_table_size;
  uint16_t entry_count;
  uint32_t local_apic_address;
  uint16_t extended_table_length;
  uint8_t extended_table_checksum;
  uint8_t reserved;
};
static_assert(sizeof(ConfigHeader) == 44);

enum EntryType : uint8_t {
  kProcessor = 0,
  kBus = 1,
  kIoApic = 2,
  kIoInterrupt = 3,
  kLocalInterrupt = 4,
};

struct __attribute__((packed)) ProcessorEntry {  // §4.3.1
  uint8_t type;
  uint8_t apic_id;
  uint8_t apic_version;
  uint8_t cpu_flags;  // bit 0 EN, bit 1 BP
  uint32_t cpu_signature;
  uint32_t feature_flags;
  uint32_t reserved[2];
};
static_assert(sizeof(ProcessorEntry) == 20);

struct __attribute__((packed)) BusEntry {  // §4.3.2
  uint8_t type;
  uint8_t bus_id;
  char bus_type[6];  // "ISA   "
};
static_assert(sizeof(BusEntry) == 8);

struct __attribute__((packed)) IoApicEntry {  // §4.3.3
  uint8_t type;
  uint8_t id;
  uint8_t version;
  uint8_t flags;  // bit 0 EN
  uint32_t address;
};
static_assert(sizeof(IoApicEntry) == 8);

struct __attribute__((packed)) InterruptEntry {  // §4.3.4 (I/O) and §4.3.5 (local)
  uint8_t type;
  uint8_t interrupt_type;  // 0 INT, 1 NMI, 2 SMI, 3 ExtINT
  uint16_t flags;          // polarity bits 0-1, trigger mode bits 2-3; 0 = conforms to bus
  uint8_t source_bus;
  uint8_t source_irq;
  uint8_t dest_id;   // IOAPIC id (I/O) or local APIC id, 0xFF = all (local)
  uint8_t dest_pin;  // IOAPIC INTIN# (I/O) or LINTIN# (local)
};
static_assert(sizeof(InterruptEntry) == 8);

inline constexpr uint8_t kIsaBusId = 0;
inline constexpr uint8_t kApicVersion = 0x14;    // integrated local APIC
inline constexpr uint8_t kIoApicVersion = 0x11;  // the 82093AA-style IOAPIC KVM models
inline constexpr uint8_t kIntTypeInt = 0;
inline constexpr uint8_t kIntTypeNmi = 1;
inline constexpr uint8_t kIntTypeExtInt = 3;
inline constexpr uint16_t kFlagsEdgeActiveHigh = 0x1 | (0x1 << 2);

// The IOAPIC's id in the MP table: the first APIC id after the vCPUs, because MP spec 1.4
// §3.6.8 requires every APIC on the APIC bus to have a unique id.
constexpr uint8_t IoApicId(int vcpus) { return static_cast<uint8_t>(vcpus); }

// Writes the table for `config` (already validated). Returns false, writing nothing, when
// config.vcpus > kMaxMpTableVcpus. Fails if the table would reach layout::kAcpiRsdp.
absl::StatusOr<bool> WriteMpTable(const GuestMemory& mem, const PlatformConfig& config);

}  // namespace keel::vmm::mptable
