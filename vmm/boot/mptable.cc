#include "vmm/boot/mptable.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "base/status.h"
#include "vmm/boot/acpi.h"
#include "vmm/layout.h"

namespace keel::vmm::mptable {

namespace {

constexpr uint8_t kSpecRev14 = 4;
constexpr uint8_t kCpuEnabled = 1 << 0;
constexpr uint8_t kCpuBootProcessor = 1 << 1;
constexpr uint8_t kIoApicEnabled = 1;
// CPUID-style signature (family 6) and feature flags (FPU, APIC): informational only.
constexpr uint32_t kCpuSignature = 0x600;
constexpr uint32_t kCpuFeatures = (1 << 0) | (1 << 9);
constexpr uint8_t kIsaIrqs = 16;
constexpr uint8_t kCascadeIrq = 2;
constexpr uint8_t kPitIrq = 0;
constexpr uint8_t kPitPin = 2;  // as the MADT's interrupt source override says

template <typename T>
void AppendObj(std::vector<uint8_t>& out, const T& value) {
  const auto* p = reinterpret_cast<const uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

// The entries following the configuration table header.
std::vector<uint8_t> BuildEntries(const PlatformConfig& config, uint16_t* count) {
  std::vector<uint8_t> e;
  const uint8_t ioapic = IoApicId(config.vcpus);
  *count = 0;
  for (int i = 0; i < config.vcpus; ++i, ++*count) {
    const uint8_t flags = kCpuEnabled | (i == 0 ? kCpuBootProcessor : 0);
    AppendObj(e, ProcessorEntry{kProcessor,
                                static_cast<uint8_t>(i),
                                kApicVersion,
                                flags,
                                kCpuSignature,
                                kCpuFeatures,
                                {}});
  }
  AppendObj(e, BusEntry{kBus, kIsaBusId, {'I', 'S', 'A', ' ', ' ', ' '}});
  AppendObj(e, IoApicEntry{kIoApic, ioapic, kIoApicVersion, kIoApicEnabled,
                           static_cast<uint32_t>(layout::kIoapicAddr)});
  *count += 2;
  // ISA IRQs are identity-mapped to IOAPIC pins, except the PIT on pin 2 (IRQ 2 is the
  // PIC cascade and has no ISA source).
  for (uint8_t irq = 0; irq < kIsaIrqs; ++irq) {
    if (irq == kCascadeIrq) continue;
    const uint8_t pin = irq == kPitIrq ? kPitPin : irq;
    AppendObj(e, InterruptEntry{kIoInterrupt, kIntTypeInt, 0, kIsaBusId, irq, ioapic, pin});
    ++*count;
  }
  // Virtio IRQs above the ISA range, edge-triggered and active-high like the ISA ones.
  for (const MmioDeviceInfo& d : config.virtio_devices) {
    if (d.irq < kIsaIrqs) continue;
    const auto irq = static_cast<uint8_t>(d.irq);
    AppendObj(e, InterruptEntry{kIoInterrupt, kIntTypeInt, kFlagsEdgeActiveHigh, kIsaBusId, irq,
                                ioapic, irq});
    ++*count;
  }
  // Virtual wire mode: the 8259's output on LINT0 of every CPU, NMI on LINT1.
  AppendObj(e, InterruptEntry{kLocalInterrupt, kIntTypeExtInt, 0, kIsaBusId, 0, 0xff, 0});
  AppendObj(e, InterruptEntry{kLocalInterrupt, kIntTypeNmi, 0, kIsaBusId, 0, 0xff, 1});
  *count += 2;
  return e;
}

}  // namespace

absl::StatusOr<bool> WriteMpTable(const GuestMemory& mem, const PlatformConfig& config) {
  if (config.vcpus > kMaxMpTableVcpus) return false;
  uint16_t count = 0;
  const std::vector<uint8_t> entries = BuildEntries(config, &count);

  const uint64_t fp_gpa = layout::kEbdaStart;
  const uint64_t header_gpa = fp_gpa + sizeof(FloatingPointer);
  const uint64_t length = sizeof(ConfigHeader) + entries.size();
  if (header_gpa + length > layout::kAcpiRsdp) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "the MP table for %d vCPUs needs %u bytes and would overlap the ACPI tables", config.vcpus,
        length));
  }
  ConfigHeader h{};
  memcpy(h.signature, "PCMP", 4);
  h.base_table_length = static_cast<uint16_t>(length);
  h.spec_rev = kSpecRev14;
  memcpy(h.oem_id, "KEEL    ", 8);
  memcpy(h.product_id, "KEELVMM     ", 12);
  h.entry_count = count;
  h.local_apic_address = static_cast<uint32_t>(layout::kLapicAddr);
  std::vector<uint8_t> table;
  AppendObj(table, h);
  table.insert(table.end(), entries.begin(), entries.end());
  table[offsetof(ConfigHeader, checksum)] =
      static_cast<uint8_t>(-acpi::Checksum(table.data(), table.size()));

  FloatingPointer fp{};
  memcpy(fp.signature, "_MP_", 4);
  fp.config_table = static_cast<uint32_t>(header_gpa);
  fp.length = 1;
  fp.spec_rev = kSpecRev14;
  fp.checksum =
      static_cast<uint8_t>(-acpi::Checksum(reinterpret_cast<const uint8_t*>(&fp), sizeof(fp)));

  KEEL_RETURN_IF_ERROR(mem.WriteObj(fp_gpa, fp));
  KEEL_RETURN_IF_ERROR(mem.Write(header_gpa, table));
  return true;
}

}  // namespace keel::vmm::mptable
