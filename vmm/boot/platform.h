// Platform description tables for the guest: the MP table (MP spec 1.4) and ACPI (6.x:
// RSDP, XSDT, FADT, MADT, DSDT), so guests find their vCPUs, the IOAPIC, the serial port
// and the virtio-mmio devices without probing.
//
// The ACPI platform is "hardware-reduced" (ACPI 6.5 §4.1): no PM1/GPE blocks, no SCI. Two
// fixed I/O registers make reboot and poweroff work, and the VMM must implement them:
//
//   reset:  FADT RESET_REG = system I/O port 0x64 (the i8042 command port), RESET_VALUE 0xFE
//           (the i8042 "pulse reset line" command). Linux's default reboot path writes it.
//   sleep:  FADT SLEEP_CONTROL_REG = 8-bit port kAcpiSleepControlPort; `poweroff` writes
//           (SLP_TYP << 2) | SLP_EN there, with SLP_TYP = kAcpiSleepTypeS5 from the DSDT's
//           \_S5_ package (ACPI 6.5 §4.8.3.7). SLEEP_STATUS_REG = kAcpiSleepStatusPort: the
//           guest writes WAK_STS (0x80) to clear it first; reading it may return 0.
//           IsAcpiPowerOffRequest() decodes a byte written to the control port.
//
// Example:
//
//   PlatformConfig platform{.vcpus = 2, .virtio_devices = {{0xd0000000, 0x1000, 5}}};
//   KEEL_ASSIGN_OR_RETURN(PlatformInfo info, WritePlatformTables(mem, platform));
//   boot.acpi_rsdp_gpa = info.acpi_rsdp_gpa;
//   boot.cmdline += " " + VirtioMmioCmdline(platform.virtio_devices);  // see below
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vmm/memory/guest_memory.h"

namespace keel::vmm {

// One virtio-mmio transport window and its interrupt (an IOAPIC pin = GSI, edge-triggered).
struct MmioDeviceInfo {
  uint64_t base = 0;
  uint64_t size = 0;
  uint32_t irq = 0;
};

struct PlatformConfig {
  int vcpus = 1;  // APIC id of vCPU i is i
  std::vector<MmioDeviceInfo> virtio_devices;
  // The IOAPIC pin of the ACPI power button, or 0 for none. The DSDT then has a Generic
  // Event Device (ACPI0013, ACPI 6.5 §5.6.9) with this edge-triggered interrupt whose _EVT
  // notifies a power button device (PNP0C0C) with 0x80 "pressed": an edge on the pin asks
  // the guest to shut down cleanly.
  uint32_t power_button_irq = 0;
};

inline constexpr int kMaxPlatformVcpus = 4096;
// The MP table can only describe 8-bit APIC ids below the broadcast id 0xFF, one of which
// the IOAPIC takes: with more vCPUs there is no MP table (ACPI's MADT still lists them all).
inline constexpr int kMaxMpTableVcpus = 254;

// ACPI fixed hardware Keel implements (see the file comment).
inline constexpr uint16_t kAcpiResetPort = 0x64;
inline constexpr uint8_t kAcpiResetValue = 0xfe;
inline constexpr uint16_t kAcpiSleepControlPort = 0x3c0;
inline constexpr uint16_t kAcpiSleepStatusPort = 0x3c1;
inline constexpr uint8_t kAcpiSleepTypeS5 = 5;     // \_S5_ SLP_TYP
inline constexpr uint8_t kAcpiSleepTypeShift = 2;  // SLP_TYPx: bits 2-4
inline constexpr uint8_t kAcpiSleepTypeMask = 0x7 << 2;
inline constexpr uint8_t kAcpiSleepEnable = 1 << 5;  // SLP_EN
inline constexpr uint8_t kAcpiWakeStatus = 1 << 7;   // WAK_STS, in the status register

// True if `value`, written to kAcpiSleepControlPort, asks the platform to enter S5 (off).
constexpr bool IsAcpiPowerOffRequest(uint8_t value) {
  return (value & kAcpiSleepEnable) != 0 &&
         ((value & kAcpiSleepTypeMask) >> kAcpiSleepTypeShift) == kAcpiSleepTypeS5;
}

// The legacy COM1 port the DSDT describes (the VMM's 8250 UART).
inline constexpr uint16_t kDsdtSerialPort = 0x3f8;
inline constexpr uint8_t kDsdtSerialPortCount = 8;

struct PlatformInfo {
  uint64_t acpi_rsdp_gpa = 0;  // pass to BootConfig::acpi_rsdp_gpa
  uint64_t acpi_end_gpa = 0;   // one past the last ACPI table byte
  bool mp_table = false;       // false when vcpus > kMaxMpTableVcpus
};

// Checks vCPU count and devices: windows inside the MMIO gap below the IOAPIC and not
// overlapping, IRQs distinct IOAPIC pins in [layout::kFirstVirtioIrq, layout::kIoapicPins)
// other than the serial IRQ.
absl::Status ValidatePlatformConfig(const PlatformConfig& config);

// Validates `config`, then writes the MP table at layout::kEbdaStart (when vcpus allow) and
// the ACPI tables from layout::kAcpiRsdp. Tables are rebuilt from scratch on every call.
absl::StatusOr<PlatformInfo> WritePlatformTables(const GuestMemory& mem,
                                                 const PlatformConfig& config);

// The kernel command-line fragment announcing the devices to Linux's virtio_mmio driver
// ("virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=..."), for kernels without ACPI.
// A Linux kernel that also reads the DSDT is then told about each device twice, and the
// second registration cannot claim the already-claimed MMIO window (expect a failed-probe
// message); pass this only to guests that do not use the ACPI tables.
std::string VirtioMmioCmdline(const std::vector<MmioDeviceInfo>& devices);

}  // namespace keel::vmm
