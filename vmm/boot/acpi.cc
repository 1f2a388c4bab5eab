#include "vmm/boot/acpi.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "base/status.h"
#include "vmm/boot/aml.h"
#include "vmm/layout.h"

namespace keel::vmm::acpi {

namespace {

constexpr char kOemId[] = "KEEL  ";         // 6 characters
constexpr char kOemTableId[] = "KEELVMM ";  // 8 characters
constexpr char kCreatorId[] = "KEEL";
constexpr uint8_t kDsdtRevision = 2;  // 2: AML integers are 64-bit
constexpr uint8_t kFadtRevision = 6;
constexpr uint8_t kFadtMinorRevision = 5;  // ACPI 6.5
constexpr uint8_t kMadtRevision = 5;
constexpr uint8_t kXsdtRevision = 1;
constexpr uint8_t kGasSystemIo = 1;
constexpr uint8_t kGasAccessByte = 1;
constexpr uint32_t kMadtPcatCompat = 1;
constexpr uint32_t kLapicEnabled = 1;
constexpr uint8_t kFirstX2ApicId = 255;  // ids below it use Local APIC entries (§5.2.12.12)
constexpr char kVirtioMmioHid[] = "LNRO0005";
constexpr char kSerialHid[] = "PNP0501";

template <size_t N>
void CopyId(char (&dst)[N], const char* src) {
  memcpy(dst, src, N);  // fixed-width, not NUL-terminated
}

SdtHeader MakeHeader(const char* signature, uint32_t length, uint8_t revision) {
  SdtHeader h{};
  CopyId(h.signature, signature);
  h.length = length;
  h.revision = revision;
  CopyId(h.oem_id, kOemId);
  CopyId(h.oem_table_id, kOemTableId);
  h.oem_revision = 1;
  CopyId(h.creator_id, kCreatorId);
  h.creator_revision = 1;
  return h;
}

template <typename T>
void AppendObj(std::vector<uint8_t>& out, const T& value) {
  const auto* p = reinterpret_cast<const uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

// Makes the bytes of `table` sum to zero through the byte at `checksum_offset`.
void FixChecksum(std::vector<uint8_t>& table, size_t checksum_offset) {
  table[checksum_offset] = 0;
  table[checksum_offset] = static_cast<uint8_t>(-Checksum(table.data(), table.size()));
}

// An SDT from its header and body; sets length and checksum.
std::vector<uint8_t> MakeTable(const char* signature, uint8_t revision,
                               const std::vector<uint8_t>& body) {
  std::vector<uint8_t> table;
  AppendObj(table, MakeHeader(signature, sizeof(SdtHeader) + body.size(), revision));
  table.insert(table.end(), body.begin(), body.end());
  FixChecksum(table, offsetof(SdtHeader, checksum));
  return table;
}

Gas IoPort8(uint16_t port) { return Gas{kGasSystemIo, 8, 0, kGasAccessByte, port}; }

std::vector<uint8_t> BuildFadt(uint64_t dsdt_gpa) {
  Fadt f{};
  f.header = MakeHeader("FACP", sizeof(Fadt), kFadtRevision);
  f.dsdt = static_cast<uint32_t>(dsdt_gpa);  // below 1 MiB, so both fields can hold it
  f.x_dsdt = dsdt_gpa;
  f.flags = kFadtHwReducedAcpi | kFadtResetRegSupported | kFadtPowerButton | kFadtSleepButton;
  // No VGA, no MSI (no PCI at all), no CMOS RTC; leave PCIe ASPM alone. The 8042 flag stays
  // clear: Keel's i8042 only implements the reset line, not a keyboard.
  f.iapc_boot_arch =
      kIapcVgaNotPresent | kIapcMsiNotSupported | kIapcPcieAspmControls | kIapcCmosRtcNotPresent;
  f.reset_reg = IoPort8(kAcpiResetPort);
  f.reset_value = kAcpiResetValue;
  f.fadt_minor_version = kFadtMinorRevision;
  f.sleep_control_reg = IoPort8(kAcpiSleepControlPort);
  f.sleep_status_reg = IoPort8(kAcpiSleepStatusPort);
  memcpy(&f.hypervisor_vendor_id, "KEELVMM", 8);
  std::vector<uint8_t> table;
  AppendObj(table, f);
  FixChecksum(table, offsetof(SdtHeader, checksum));
  return table;
}

std::vector<uint8_t> BuildMadt(const PlatformConfig& config) {
  std::vector<uint8_t> body;
  AppendObj(body, uint32_t{static_cast<uint32_t>(layout::kLapicAddr)});
  AppendObj(body, kMadtPcatCompat);
  for (int i = 0; i < config.vcpus; ++i) {
    const uint32_t id = static_cast<uint32_t>(i);
    if (id < kFirstX2ApicId) {
      AppendObj(body, MadtLocalApic{kMadtLocalApic, sizeof(MadtLocalApic), static_cast<uint8_t>(id),
                                    static_cast<uint8_t>(id), kLapicEnabled});
    } else {
      AppendObj(body, MadtLocalX2Apic{kMadtLocalX2Apic, sizeof(MadtLocalX2Apic), 0, id,
                                      kLapicEnabled, id});
    }
  }
  AppendObj(body, MadtIoApic{kMadtIoApic, sizeof(MadtIoApic), kMadtIoApicId, 0,
                             static_cast<uint32_t>(layout::kIoapicAddr), 0});
  // The PIT's ISA IRQ 0 arrives on IOAPIC pin 2, as on PC hardware.
  AppendObj(body, MadtInterruptOverride{kMadtInterruptOverride, sizeof(MadtInterruptOverride), 0, 0,
                                        2, 0});
  // LINT1 of every processor is the NMI input.
  AppendObj(body, MadtLocalApicNmi{kMadtLocalApicNmi, sizeof(MadtLocalApicNmi), 0xff, 0, 1});
  if (config.vcpus > kFirstX2ApicId) {
    AppendObj(body, MadtLocalX2ApicNmi{
                        kMadtLocalX2ApicNmi, sizeof(MadtLocalX2ApicNmi), 0, 0xffffffff, 1, {}});
  }
  return MakeTable("APIC", kMadtRevision, body);
}

std::vector<uint8_t> BuildXsdt(const std::vector<uint64_t>& tables) {
  std::vector<uint8_t> body;
  for (uint64_t gpa : tables) AppendObj(body, gpa);
  return MakeTable("XSDT", kXsdtRevision, body);
}

Rsdp BuildRsdp(uint64_t xsdt_gpa) {
  Rsdp r{};
  CopyId(r.signature, "RSD PTR ");
  CopyId(r.oem_id, kOemId);
  r.revision = 2;
  r.length = sizeof(Rsdp);
  r.xsdt_address = xsdt_gpa;
  const auto* bytes = reinterpret_cast<const uint8_t*>(&r);
  r.checksum = static_cast<uint8_t>(-Checksum(bytes, 20));  // ACPI 1.0 part
  r.extended_checksum = static_cast<uint8_t>(-Checksum(bytes, sizeof(Rsdp)));
  return r;
}

// Lays tables out one after another, each 16-byte aligned.
class Arena {
 public:
  explicit Arena(uint64_t base_gpa) : base_(base_gpa) {}
  uint64_t Place(const std::vector<uint8_t>& table) {
    bytes_.resize((bytes_.size() + kTableAlign - 1) & ~(kTableAlign - 1), 0);
    const uint64_t gpa = base_ + bytes_.size();
    bytes_.insert(bytes_.end(), table.begin(), table.end());
    return gpa;
  }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  uint64_t base_;
  std::vector<uint8_t> bytes_;
};

}  // namespace

uint8_t Checksum(const uint8_t* bytes, size_t len) {
  uint8_t sum = 0;
  for (size_t i = 0; i < len; ++i) sum = static_cast<uint8_t>(sum + bytes[i]);
  return sum;
}

std::vector<uint8_t> BuildDsdt(const PlatformConfig& config) {
  std::vector<aml::Bytes> devices;
  devices.push_back(aml::Device(
      "COM1", {aml::Name("_HID", aml::EisaId(kSerialHid)), aml::Name("_UID", aml::Integer(0)),
               aml::Name("_CRS", aml::ResourceTemplate({aml::Io(kDsdtSerialPort, kDsdtSerialPort, 0,
                                                                kDsdtSerialPortCount),
                                                        aml::IrqNoFlags(layout::kSerialIrq)}))}));
  for (size_t i = 0; i < config.virtio_devices.size(); ++i) {
    const MmioDeviceInfo& d = config.virtio_devices[i];
    // Exclusive, edge-triggered, active-high: how Keel raises virtio interrupts (irqfd).
    devices.push_back(aml::Device(
        absl::StrFormat("V%03u", i),
        {aml::Name("_HID", aml::String(kVirtioMmioHid)), aml::Name("_UID", aml::Integer(i)),
         aml::Name("_CRS",
                   aml::ResourceTemplate({aml::Memory32Fixed(true, static_cast<uint32_t>(d.base),
                                                             static_cast<uint32_t>(d.size)),
                                          aml::ExtendedInterrupt(d.irq, {})}))}));
  }
  if (config.power_button_irq != 0) {
    // Hardware-reduced ACPI has no fixed power button: a Generic Event Device's interrupt
    // runs _EVT, which reports the button as pressed (ACPI 6.5 §4.8.2.2.1.2: Notify 0x80).
    devices.push_back(aml::Device(
        "GED0",
        {aml::Name("_HID", aml::String("ACPI0013")), aml::Name("_UID", aml::Integer(0)),
         aml::Name("_CRS",
                   aml::ResourceTemplate({aml::ExtendedInterrupt(config.power_button_irq, {})})),
         aml::Method("_EVT", 1, {aml::Notify("\\_SB_.PWRB", 0x80)})}));
    devices.push_back(aml::Device(
        "PWRB", {aml::Name("_HID", aml::EisaId("PNP0C0C")), aml::Name("_UID", aml::Integer(0))}));
  }
  std::vector<uint8_t> body = aml::Scope("\\_SB_", devices);
  // \_S5_: SLP_TYPa, SLP_TYPb (ACPI 6.5 §7.4.2). Only SLP_TYPa reaches the hardware.
  const aml::Bytes s5 =
      aml::Name("\\_S5_", aml::Package({aml::Integer(kAcpiSleepTypeS5), aml::Integer(0)}));
  body.insert(body.end(), s5.begin(), s5.end());
  return MakeTable("DSDT", kDsdtRevision, body);
}

absl::StatusOr<std::vector<uint8_t>> BuildTables(const PlatformConfig& config, uint64_t base_gpa,
                                                 uint64_t max_bytes) {
  if (config.vcpus < 1 || config.vcpus > kMaxPlatformVcpus) {
    return absl::InvalidArgumentError(absl::StrFormat("%d vCPUs requested; Keel supports 1 to %d",
                                                      config.vcpus, kMaxPlatformVcpus));
  }
  Arena arena(base_gpa);
  arena.Place(std::vector<uint8_t>(sizeof(Rsdp)));  // filled in last
  const uint64_t dsdt = arena.Place(BuildDsdt(config));
  const uint64_t fadt = arena.Place(BuildFadt(dsdt));
  const uint64_t madt = arena.Place(BuildMadt(config));
  const uint64_t xsdt = arena.Place(BuildXsdt({fadt, madt}));
  std::vector<uint8_t>& bytes = arena.bytes();
  const Rsdp rsdp = BuildRsdp(xsdt);
  memcpy(bytes.data(), &rsdp, sizeof(rsdp));
  if (bytes.size() > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "the ACPI tables for %d vCPUs and %u devices need %u bytes but only %u fit below "
        "%#x; use fewer vCPUs or devices",
        config.vcpus, config.virtio_devices.size(), bytes.size(), max_bytes, base_gpa + max_bytes));
  }
  return std::move(bytes);
}

absl::StatusOr<uint64_t> WriteTables(const GuestMemory& mem, const PlatformConfig& config) {
  constexpr uint64_t kRoom = layout::kAcpiEnd - layout::kAcpiRsdp;
  KEEL_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, BuildTables(config, layout::kAcpiRsdp, kRoom));
  // Clear stale tables from an earlier boot of the same memory.
  KEEL_RETURN_IF_ERROR(mem.Fill(layout::kAcpiRsdp, 0, kRoom));
  KEEL_RETURN_IF_ERROR(mem.Write(layout::kAcpiRsdp, bytes));
  return layout::kAcpiRsdp + bytes.size();
}

}  // namespace keel::vmm::acpi
