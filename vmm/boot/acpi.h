// ACPI tables for a hardware-reduced x86 microVM (ACPI 6.5): RSDP (revision 2) -> XSDT ->
// {FADT -> DSDT, MADT}. See vmm/boot/platform.h for what the tables promise the guest.
//
// The table structures are public so tests can parse what was written; all are packed and
// their sizes and key offsets are pinned by static_asserts against the spec's tables.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/boot/platform.h"
#include "vmm/memory/guest_memory.h"

namespace keel::vmm::acpi {

// §5.2.5.3 Root System Description Pointer, revision 2.
struct __attribute__((packed)) Rsdp {
  char signature[8];  // "RSD PTR "
  uint8_t checksum;   // over the first 20 bytes
  char oem_id[6];
  uint8_t revision;  // 2
  uint32_t rsdt_address;
  uint32_t length;  // 36
  uint64_t xsdt_address;
  uint8_t extended_checksum;  // over all 36 bytes
  uint8_t reserved[3];
};
static_assert(sizeof(Rsdp) == 36);
static_assert(offsetof(Rsdp, xsdt_address) == 24);

// §5.2.6 System Description Table Header.
struct __attribute__((packed)) SdtHeader {
  char signature[4];
  uint32_t length;
  uint8_t revision;
  uint8_t checksum;
  char oem_id[6];
  char oem_table_id[8];
  uint32_t oem_revision;
  char creator_id[4];
  uint32_t creator_revision;
};
static_assert(sizeof(SdtHeader) == 36);

// §5.2.3.2 Generic Address Structure.
struct __attribute__((packed)) Gas {
  uint8_t space_id;  // 1 = system I/O
  uint8_t bit_width;
  uint8_t bit_offset;
  uint8_t access_size;  // 1 = byte
  uint64_t address;
};
static_assert(sizeof(Gas) == 12);

// §5.2.9 Fixed ACPI Description Table, revision 6.
struct __attribute__((packed)) Fadt {
  SdtHeader header;
  uint32_t firmware_ctrl;
  uint32_t dsdt;
  uint8_t reserved0;
  uint8_t preferred_pm_profile;
  uint16_t sci_int;
  uint32_t smi_cmd;
  uint8_t acpi_enable;
  uint8_t acpi_disable;
  uint8_t s4bios_req;
  uint8_t pstate_cnt;
  uint32_t pm1a_evt_blk;
  uint32_t pm1b_evt_blk;
  uint32_t pm1a_cnt_blk;
  uint32_t pm1b_cnt_blk;
  uint32_t pm2_cnt_blk;
  uint32_t pm_tmr_blk;
  uint32_t gpe0_blk;
  uint32_t gpe1_blk;
  uint8_t pm1_evt_len;
  uint8_t pm1_cnt_len;
  uint8_t pm2_cnt_len;
  uint8_t pm_tmr_len;
  uint8_t gpe0_blk_len;
  uint8_t gpe1_blk_len;
  uint8_t gpe1_base;
  uint8_t cst_cnt;
  uint16_t p_lvl2_lat;
  uint16_t p_lvl3_lat;
  uint16_t flush_size;
  uint16_t flush_stride;
  uint8_t duty_offset;
  uint8_t duty_width;
  uint8_t day_alrm;
  uint8_t mon_alrm;
  uint8_t century;
  uint16_t iapc_boot_arch;
  uint8_t reserved1;
  uint32_t flags;
  Gas reset_reg;
  uint8_t reset_value;
  uint16_t arm_boot_arch;
  uint8_t fadt_minor_version;
  uint64_t x_firmware_ctrl;
  uint64_t x_dsdt;
  Gas x_pm1a_evt_blk;
  Gas x_pm1b_evt_blk;
  Gas x_pm1a_cnt_blk;
  Gas x_pm1b_cnt_blk;
  Gas x_pm2_cnt_blk;
  Gas x_pm_tmr_blk;
  Gas x_gpe0_blk;
  Gas x_gpe1_blk;
  Gas sleep_control_reg;
  Gas sleep_status_reg;
  uint64_t hypervisor_vendor_id;
};
// Offsets from ACPI 6.5 Table 5.9.
static_assert(offsetof(Fadt, dsdt) == 40);
static_assert(offsetof(Fadt, iapc_boot_arch) == 109);
static_assert(offsetof(Fadt, flags) == 112);
static_assert(offsetof(Fadt, reset_reg) == 116);
static_assert(offsetof(Fadt, reset_value) == 128);
static_assert(offsetof(Fadt, fadt_minor_version) == 131);
static_assert(offsetof(Fadt, x_dsdt) == 140);
static_assert(offsetof(Fadt, sleep_control_reg) == 244);
static_assert(offsetof(Fadt, sleep_status_reg) == 256);
static_assert(offsetof(Fadt, hypervisor_vendor_id) == 268);
static_assert(sizeof(Fadt) == 276);

// FADT flags (Table 5.10) and IA-PC boot architecture flags (Table 5.11).
inline constexpr uint32_t kFadtPowerButton = 1u << 4;  // no fixed-feature power button
inline constexpr uint32_t kFadtSleepButton = 1u << 5;  // no fixed-feature sleep button
inline constexpr uint32_t kFadtResetRegSupported = 1u << 10;
inline constexpr uint32_t kFadtHwReducedAcpi = 1u << 20;
inline constexpr uint16_t kIapcVgaNotPresent = 1u << 2;
inline constexpr uint16_t kIapcMsiNotSupported = 1u << 3;
inline constexpr uint16_t kIapcPcieAspmControls = 1u << 4;
inline constexpr uint16_t kIapcCmosRtcNotPresent = 1u << 5;

// §5.2.12 Multiple APIC Description Table.
struct __attribute__((packed)) MadtHeader {
  SdtHeader header;
  uint32_t local_apic_address;
  uint32_t flags;  // bit 0 PCAT_COMPAT
};
static_assert(sizeof(MadtHeader) == 44);

enum MadtType : uint8_t {
  kMadtLocalApic = 0,
  kMadtIoApic = 1,
  kMadtInterruptOverride = 2,
  kMadtLocalApicNmi = 4,
  kMadtLocalX2Apic = 9,
  kMadtLocalX2ApicNmi = 10,
};

struct __attribute__((packed)) MadtLocalApic {  // §5.2.12.2
  uint8_t type, length;
  uint8_t processor_uid;
  uint8_t apic_id;
  uint32_t flags;  // bit 0 enabled
};
static_assert(sizeof(MadtLocalApic) == 8);

struct __attribute__((packed)) MadtIoApic {  // §5.2.12.3
  uint8_t type, length;
  uint8_t ioapic_id;
  uint8_t reserved;
  uint32_t address;
  uint32_t gsi_base;
};
static_assert(sizeof(MadtIoApic) == 12);

struct __attribute__((packed)) MadtInterruptOverride {  // §5.2.12.5
  uint8_t type, length;
  uint8_t bus;     // 0 = ISA
  uint8_t source;  // ISA IRQ
  uint32_t gsi;
  uint16_t flags;  // MPS INTI flags; 0 = conforms to the bus
};
static_assert(sizeof(MadtInterruptOverride) == 10);

struct __attribute__((packed)) MadtLocalApicNmi {  // §5.2.12.7
  uint8_t type, length;
  uint8_t processor_uid;  // 0xFF = all
  uint16_t flags;
  uint8_t lint;
};
static_assert(sizeof(MadtLocalApicNmi) == 6);

struct __attribute__((packed)) MadtLocalX2Apic {  // §5.2.12.12
  uint8_t type, length;
  uint16_t reserved;
  uint32_t x2apic_id;
  uint32_t flags;
  uint32_t processor_uid;
};
static_assert(sizeof(MadtLocalX2Apic) == 16);

struct __attribute__((packed)) MadtLocalX2ApicNmi {  // §5.2.12.13
  uint8_t type, length;
  uint16_t flags;
  uint32_t processor_uid;  // 0xFFFFFFFF = all
  uint8_t lint;
  uint8_t reserved[3];
};
static_assert(sizeof(MadtLocalX2ApicNmi) == 12);

// The IOAPIC id the MADT reports (KVM's IOAPIC id register resets to 0).
inline constexpr uint8_t kMadtIoApicId = 0;
// Alignment of every table (and the RSDP) in guest memory.
inline constexpr uint64_t kTableAlign = 16;

// The ACPI tables for `config` as they must appear at guest address `base_gpa` (the RSDP
// first). Fails (ResourceExhausted) if they need more than `max_bytes`.
absl::StatusOr<std::vector<uint8_t>> BuildTables(const PlatformConfig& config, uint64_t base_gpa,
                                                 uint64_t max_bytes);

// The DSDT alone (header included, checksummed).
std::vector<uint8_t> BuildDsdt(const PlatformConfig& config);

// Builds the tables for [layout::kAcpiRsdp, layout::kAcpiEnd) and writes them. Returns the
// end GPA of the last table. `config` must already be valid (ValidatePlatformConfig).
absl::StatusOr<uint64_t> WriteTables(const GuestMemory& mem, const PlatformConfig& config);

// Sum of `bytes` modulo 256: 0 for a correctly checksummed table.
uint8_t Checksum(const uint8_t* bytes, size_t len);

}  // namespace keel::vmm::acpi
