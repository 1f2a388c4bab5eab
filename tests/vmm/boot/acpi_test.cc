// Writes the ACPI tables into guest memory and parses them back the way a guest would:
// RSDP -> XSDT -> FADT -> DSDT, XSDT -> MADT.
#include "vmm/boot/acpi.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/vmm/boot/test_util.h"
#include "vmm/boot/platform.h"
#include "vmm/layout.h"

namespace keel::vmm::acpi {
namespace {

using testing::Val;
using testing::WithVcpus;

using ::testing::HasSubstr;

class AcpiTest : public testing::GuestMemoryTest {
 protected:
  // Writes the tables for `config` and returns the RSDP.
  Rsdp Write(const PlatformConfig& config) {
    auto info = WritePlatformTables(*mem_, config);
    EXPECT_TRUE(info.ok()) << info.status();
    return Read<Rsdp>(layout::kAcpiRsdp);
  }
  // The whole table at `gpa` (its length from the header).
  std::vector<uint8_t> Table(uint64_t gpa) {
    const auto h = Read<SdtHeader>(gpa);
    std::vector<uint8_t> bytes(h.length);
    EXPECT_TRUE(mem_->Read(gpa, bytes).ok());
    return bytes;
  }
  std::vector<uint64_t> XsdtEntries(const Rsdp& rsdp) {
    const std::vector<uint8_t> xsdt = Table(rsdp.xsdt_address);
    std::vector<uint64_t> out((xsdt.size() - sizeof(SdtHeader)) / 8);
    memcpy(out.data(), xsdt.data() + sizeof(SdtHeader), out.size() * 8);
    return out;
  }
  // MADT structure counts by type.
  std::map<uint8_t, int> MadtCounts(uint64_t gpa) {
    const std::vector<uint8_t> madt = Table(gpa);
    std::map<uint8_t, int> counts;
    for (size_t off = sizeof(MadtHeader); off + 2 <= madt.size() && madt[off + 1] >= 2;
         off += madt[off + 1]) {
      ++counts[madt[off]];
    }
    return counts;
  }
};

std::string Text(const std::vector<uint8_t>& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

const PlatformConfig kTwoDevices{
    .vcpus = 2,
    .virtio_devices = {{0xd0000000, 0x1000, 5}, {0xd0001000, 0x1000, 6}},
};

TEST_F(AcpiTest, RsdpPointsToAChecksummedXsdt) {
  const Rsdp rsdp = Write(kTwoDevices);

  EXPECT_EQ(std::string(rsdp.signature, 8), "RSD PTR ");
  EXPECT_EQ(Val(rsdp.revision), 2);
  EXPECT_EQ(Val(rsdp.length), 36u);
  EXPECT_EQ(Checksum(reinterpret_cast<const uint8_t*>(&rsdp), 20), 0);
  EXPECT_EQ(Checksum(reinterpret_cast<const uint8_t*>(&rsdp), 36), 0);
  const std::vector<uint8_t> xsdt = Table(rsdp.xsdt_address);
  EXPECT_EQ(Text(xsdt).substr(0, 4), "XSDT");
  EXPECT_EQ(Checksum(xsdt.data(), xsdt.size()), 0);
  EXPECT_EQ(XsdtEntries(rsdp).size(), 2u);
}

TEST_F(AcpiTest, EveryTableIsChecksummedAlignedAndBelowTheAcpiEnd) {
  const Rsdp rsdp = Write(kTwoDevices);
  const auto entries = XsdtEntries(rsdp);
  const uint64_t dsdt = Read<Fadt>(entries[0]).x_dsdt;

  for (uint64_t gpa : {rsdp.xsdt_address, entries[0], entries[1], dsdt}) {
    const std::vector<uint8_t> t = Table(gpa);
    EXPECT_EQ(Checksum(t.data(), t.size()), 0) << Text(t).substr(0, 4);
    EXPECT_EQ(gpa % 16, 0u) << Text(t).substr(0, 4);
    EXPECT_LE(gpa + t.size(), layout::kAcpiEnd);
    EXPECT_GE(gpa, layout::kAcpiRsdp);
  }
}

TEST_F(AcpiTest, FadtIsHardwareReducedWithResetAndSleepRegisters) {
  const Rsdp rsdp = Write(kTwoDevices);

  const Fadt fadt = Read<Fadt>(XsdtEntries(rsdp)[0]);

  EXPECT_EQ(std::string(fadt.header.signature, 4), "FACP");
  EXPECT_EQ(Val(fadt.header.length), 276u);
  EXPECT_EQ(Val(fadt.header.revision), 6);
  EXPECT_NE(fadt.flags & kFadtHwReducedAcpi, 0u);
  EXPECT_NE(fadt.flags & kFadtResetRegSupported, 0u);
  EXPECT_EQ(Val(fadt.reset_reg.space_id), 1);
  EXPECT_EQ(Val(fadt.reset_reg.address), 0x64u);
  EXPECT_EQ(Val(fadt.reset_value), 0xfe);
  EXPECT_EQ(Val(fadt.sleep_control_reg.space_id), 1);
  EXPECT_EQ(Val(fadt.sleep_control_reg.bit_width), 8);
  EXPECT_EQ(Val(fadt.sleep_control_reg.address), kAcpiSleepControlPort);
  EXPECT_EQ(Val(fadt.sleep_status_reg.address), kAcpiSleepStatusPort);
  EXPECT_EQ(Val(fadt.dsdt), Val(fadt.x_dsdt));
}

TEST_F(AcpiTest, DsdtDescribesSerialVirtioDevicesAndS5) {
  const Rsdp rsdp = Write(kTwoDevices);

  const std::string dsdt = Text(Table(Read<Fadt>(XsdtEntries(rsdp)[0]).x_dsdt));

  EXPECT_EQ(dsdt.substr(0, 4), "DSDT");
  EXPECT_THAT(dsdt, HasSubstr("COM1"));
  EXPECT_THAT(dsdt, HasSubstr(std::string("\x0c\x41\xd0\x05\x01", 5)));  // EISAID PNP0501
  EXPECT_THAT(dsdt, HasSubstr("V000"));
  EXPECT_THAT(dsdt, HasSubstr("V001"));
  EXPECT_THAT(dsdt, HasSubstr("_S5_"));
  size_t hids = 0;
  for (size_t p = dsdt.find("LNRO0005"); p != std::string::npos; p = dsdt.find("LNRO0005", p + 1)) {
    ++hids;
  }
  EXPECT_EQ(hids, 2u);
  // Device 1's window: Memory32Fixed(ReadWrite, 0xd0001000, 0x1000).
  EXPECT_THAT(dsdt, HasSubstr(std::string("\x86\x09\x00\x01\x00\x10\x00\xd0\x00\x10\x00\x00", 12)));
}

class MadtTest : public AcpiTest, public ::testing::WithParamInterface<int> {};

TEST_P(MadtTest, HasOneProcessorEntryPerVcpu) {
  const int vcpus = GetParam();
  const Rsdp rsdp = Write(WithVcpus(vcpus));
  const uint64_t madt_gpa = XsdtEntries(rsdp)[1];

  const auto madt = Read<MadtHeader>(madt_gpa);
  auto counts = MadtCounts(madt_gpa);

  EXPECT_EQ(std::string(madt.header.signature, 4), "APIC");
  EXPECT_EQ(Val(madt.local_apic_address), layout::kLapicAddr);
  EXPECT_EQ(Val(madt.flags), 1u);
  EXPECT_EQ(counts[kMadtLocalApic], std::min(vcpus, 255));
  EXPECT_EQ(counts[kMadtLocalX2Apic], std::max(vcpus - 255, 0));
  EXPECT_EQ(counts[kMadtIoApic], 1);
  EXPECT_EQ(counts[kMadtInterruptOverride], 1);
  EXPECT_EQ(counts[kMadtLocalApicNmi], 1);
}

INSTANTIATE_TEST_SUITE_P(Vcpus, MadtTest, ::testing::Values(1, 4, 255, 300, kMaxPlatformVcpus));

TEST_F(AcpiTest, MadtOverridesIsaIrq0ToGsi2) {
  const Rsdp rsdp = Write(WithVcpus(1));
  const uint64_t madt = XsdtEntries(rsdp)[1];

  // 1 vCPU: header, Local APIC (8), IOAPIC (12), then the override.
  const auto ioapic = Read<MadtIoApic>(madt + sizeof(MadtHeader) + 8);
  const auto iso = Read<MadtInterruptOverride>(madt + sizeof(MadtHeader) + 8 + 12);

  EXPECT_EQ(Val(ioapic.address), layout::kIoapicAddr);
  EXPECT_EQ(Val(ioapic.gsi_base), 0u);
  EXPECT_EQ(Val(iso.type), kMadtInterruptOverride);
  EXPECT_EQ(Val(iso.source), 0);
  EXPECT_EQ(Val(iso.gsi), 2u);
}

TEST(AcpiBuildTest, FailsClearlyWhenTheTablesDoNotFit) {
  auto tables = BuildTables(WithVcpus(64), layout::kAcpiRsdp, 512);

  EXPECT_EQ(tables.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(tables.status().message(), HasSubstr("use fewer vCPUs or devices"));
}

TEST(AcpiBuildTest, RejectsAbsurdVcpuCountsBeforeAllocating) {
  EXPECT_EQ(BuildTables(WithVcpus(1 << 30), 0, 1 << 20).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildTables(WithVcpus(0), 0, 1 << 20).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Runs `iasl -d` on the tables: proof that an independent ACPI implementation parses them.
class IaslTest : public AcpiTest {
 protected:
  static bool HaveIasl() { return access("/usr/bin/iasl", X_OK) == 0; }
  // Disassembles `table` with `iasl -d` in a temporary directory and returns the .dsl text
  // ("" if iasl failed).
  static std::string Disassemble(const std::string& name, const std::vector<uint8_t>& table) {
    char tmpl[] = "/tmp/keel-acpi-XXXXXX";
    const std::filesystem::path dir = mkdtemp(tmpl);
    const std::string text = DisassembleIn(dir, name, table);
    std::filesystem::remove_all(dir);
    return text;
  }
  static std::string DisassembleIn(const std::filesystem::path& dir, const std::string& name,
                                   const std::vector<uint8_t>& table) {
    const auto dat = dir / (name + ".dat");
    std::ofstream(dat, std::ios::binary)
        .write(reinterpret_cast<const char*>(table.data()), table.size());
    const pid_t pid = fork();
    if (pid == 0) {
      // Quiet, and write the .dsl next to the input.
      if (freopen("/dev/null", "w", stdout) == nullptr) _exit(126);
      execl("/usr/bin/iasl", "iasl", "-d", dat.c_str(), nullptr);
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "";
    std::stringstream text;
    text << std::ifstream(dir / (name + ".dsl")).rdbuf();
    return text.str();
  }
};

TEST_F(IaslTest, DisassemblesEveryTable) {
  if (!HaveIasl()) GTEST_SKIP() << "iasl (acpica-tools) is not installed";
  const Rsdp rsdp = Write(kTwoDevices);
  const auto entries = XsdtEntries(rsdp);

  const std::string dsdt = Disassemble("dsdt", Table(Read<Fadt>(entries[0]).x_dsdt));
  const std::string fadt = Disassemble("facp", Table(entries[0]));
  const std::string madt = Disassemble("apic", Table(entries[1]));

  EXPECT_THAT(dsdt, HasSubstr("Device (COM1)"));
  EXPECT_THAT(dsdt, HasSubstr("EisaId (\"PNP0501\")"));
  EXPECT_THAT(dsdt, HasSubstr("Device (V001)"));
  EXPECT_THAT(dsdt, HasSubstr("\"LNRO0005\""));
  EXPECT_THAT(dsdt, HasSubstr("Memory32Fixed (ReadWrite,"));
  EXPECT_THAT(dsdt, HasSubstr("Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive"));
  EXPECT_THAT(dsdt, HasSubstr("IRQNoFlags ()"));
  EXPECT_THAT(dsdt, HasSubstr("Name (\\_S5, Package (0x02)"));
  EXPECT_THAT(fadt, HasSubstr("Hardware Reduced (V5) : 1"));
  EXPECT_THAT(fadt, HasSubstr("Address : 00000000000003C0"));
  EXPECT_THAT(madt, HasSubstr("[Local APIC NMI]"));
  EXPECT_THAT(madt, HasSubstr("[Interrupt Source Override]"));
}

TEST_F(IaslTest, PowerButtonIsAGenericEventDeviceNotifyingPwrb) {
  if (!HaveIasl()) GTEST_SKIP() << "iasl (acpica-tools) is not installed";
  PlatformConfig config = kTwoDevices;
  config.power_button_irq = 23;
  const Rsdp rsdp = Write(config);

  const std::string dsdt =
      Disassemble("dsdt", Table(Read<Fadt>(XsdtEntries(rsdp)[0]).x_dsdt));

  EXPECT_THAT(dsdt, HasSubstr("Device (GED0)"));
  EXPECT_THAT(dsdt, HasSubstr("\"ACPI0013\""));
  EXPECT_THAT(dsdt, HasSubstr("0x00000017,"));  // the interrupt: GSI 23
  EXPECT_THAT(dsdt, HasSubstr("Method (_EVT, 1, NotSerialized)"));
  EXPECT_THAT(dsdt, HasSubstr("Notify (\\_SB.PWRB, 0x80)"));
  EXPECT_THAT(dsdt, HasSubstr("Device (PWRB)"));
  EXPECT_THAT(dsdt, HasSubstr("EisaId (\"PNP0C0C\")"));
}

TEST(PlatformConfigTest, PowerButtonIrqMustBeAFreeIoapicPin) {
  PlatformConfig clash = kTwoDevices;
  clash.power_button_irq = 6;  // virtio device 1's
  PlatformConfig out_of_range = kTwoDevices;
  out_of_range.power_button_irq = 24;

  EXPECT_EQ(ValidatePlatformConfig(clash).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidatePlatformConfig(out_of_range).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(IaslTest, DisassemblesAnX2ApicMadt) {
  if (!HaveIasl()) GTEST_SKIP() << "iasl (acpica-tools) is not installed";
  const Rsdp rsdp = Write(WithVcpus(300));

  const std::string madt = Disassemble("apic", Table(XsdtEntries(rsdp)[1]));

  EXPECT_THAT(madt, HasSubstr("[Processor Local x2APIC]"));
  EXPECT_THAT(madt, HasSubstr("Processor x2Apic ID : 0000012B"));  // vCPU 299
  EXPECT_THAT(madt, HasSubstr("[Local x2APIC NMI]"));
}

}  // namespace
}  // namespace keel::vmm::acpi
