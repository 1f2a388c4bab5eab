#include "vmm/boot/platform.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status.h"
#include "vmm/boot/acpi.h"
#include "vmm/boot/mptable.h"
#include "vmm/layout.h"

namespace keel::vmm {

namespace {

absl::Status CheckDevice(const MmioDeviceInfo& d, size_t index) {
  const std::string what =
      absl::StrFormat("virtio device %u [%#x, +%#x) irq %u", index, d.base, d.size, d.irq);
  if (d.size == 0 || d.base < layout::kMmioGapStart || d.base > layout::kIoapicAddr ||
      d.size > layout::kIoapicAddr - d.base) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: the window must be non-empty and inside [%#x, %#x), the MMIO gap below the IOAPIC",
        what, layout::kMmioGapStart, layout::kIoapicAddr));
  }
  if (d.irq < layout::kFirstVirtioIrq || d.irq >= layout::kIoapicPins ||
      d.irq == layout::kSerialIrq) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: the irq must be an IOAPIC pin in [%u, %u) other than the serial port's %u", what,
        layout::kFirstVirtioIrq, layout::kIoapicPins, layout::kSerialIrq));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidatePlatformConfig(const PlatformConfig& config) {
  if (config.vcpus < 1 || config.vcpus > kMaxPlatformVcpus) {
    return absl::InvalidArgumentError(absl::StrFormat("%d vCPUs requested; Keel supports 1 to %d",
                                                      config.vcpus, kMaxPlatformVcpus));
  }
  const auto& devs = config.virtio_devices;
  if (config.power_button_irq != 0 &&
      (config.power_button_irq < layout::kFirstVirtioIrq ||
       config.power_button_irq >= layout::kIoapicPins)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "power button irq %u must be an IOAPIC pin in [%u, %u)", config.power_button_irq,
        layout::kFirstVirtioIrq, layout::kIoapicPins));
  }
  for (size_t i = 0; i < devs.size(); ++i) {
    KEEL_RETURN_IF_ERROR(CheckDevice(devs[i], i));
    if (devs[i].irq == config.power_button_irq) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "virtio device %u and the power button share irq %u", i, devs[i].irq));
    }
    for (size_t j = 0; j < i; ++j) {
      if (devs[i].irq == devs[j].irq) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "virtio devices %u and %u share irq %u; each needs its own", j, i, devs[i].irq));
      }
      // Both windows are inside the gap, so the ends cannot overflow.
      if (devs[i].base < devs[j].base + devs[j].size &&
          devs[j].base < devs[i].base + devs[i].size) {
        return absl::InvalidArgumentError(
            absl::StrFormat("virtio devices %u and %u have overlapping MMIO windows", j, i));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PlatformInfo> WritePlatformTables(const GuestMemory& mem,
                                                 const PlatformConfig& config) {
  KEEL_RETURN_IF_ERROR(ValidatePlatformConfig(config));
  PlatformInfo info;
  KEEL_ASSIGN_OR_RETURN(info.mp_table, mptable::WriteMpTable(mem, config));
  KEEL_ASSIGN_OR_RETURN(info.acpi_end_gpa, acpi::WriteTables(mem, config));
  info.acpi_rsdp_gpa = layout::kAcpiRsdp;
  return info;
}

std::string VirtioMmioCmdline(const std::vector<MmioDeviceInfo>& devices) {
  // Linux virtio_mmio "device=<size>@<baseaddr>:<irq>"; size is parsed by memparse().
  auto size = [](uint64_t bytes) {
    if (bytes % layout::kMiB == 0) return absl::StrCat(bytes / layout::kMiB, "M");
    if (bytes % layout::kKiB == 0) return absl::StrCat(bytes / layout::kKiB, "K");
    return absl::StrCat(bytes);
  };
  return absl::StrJoin(devices, " ", [&](std::string* out, const MmioDeviceInfo& d) {
    absl::StrAppend(out, "virtio_mmio.device=", size(d.size),
                    absl::StrFormat("@%#x:%u", d.base, d.irq));
  });
}

}  // namespace keel::vmm
