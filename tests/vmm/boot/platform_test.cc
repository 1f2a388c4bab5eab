#include "vmm/boot/platform.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/vmm/boot/test_util.h"
#include "vmm/layout.h"

namespace keel::vmm {
namespace {

using testing::WithVcpus;

using ::testing::HasSubstr;

TEST(PlatformTest, WritesMpTableAndAcpi) {
  auto mem = GuestMemory::Create(16 * layout::kMiB);
  ASSERT_TRUE(mem.ok());

  auto info = WritePlatformTables(*mem, {.vcpus = 2, .virtio_devices = {{0xd0000000, 0x1000, 5}}});

  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->acpi_rsdp_gpa, layout::kAcpiRsdp);
  EXPECT_TRUE(info->mp_table);
  EXPECT_GT(info->acpi_end_gpa, layout::kAcpiRsdp);
  EXPECT_LE(info->acpi_end_gpa, layout::kAcpiEnd);
}

TEST(PlatformTest, ManyVcpusGetAcpiButNoMpTable) {
  auto mem = GuestMemory::Create(16 * layout::kMiB);
  ASSERT_TRUE(mem.ok());

  auto info = WritePlatformTables(*mem, WithVcpus(300));

  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->mp_table);
}

struct BadConfig {
  std::string name;
  PlatformConfig config;
  std::string error;
};

class PlatformValidationTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(PlatformValidationTest, RejectsWithAClearError) {
  const absl::Status s = ValidatePlatformConfig(GetParam().config);

  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr(GetParam().error));
}

INSTANTIATE_TEST_SUITE_P(
    Bad, PlatformValidationTest,
    ::testing::Values(
        BadConfig{"NoVcpus", WithVcpus(0), "0 vCPUs"},
        BadConfig{"TooManyVcpus", WithVcpus(kMaxPlatformVcpus + 1), "vCPUs requested"},
        BadConfig{"WindowBelowGap", {1, {{0x1000, 0x1000, 5}}}, "inside [0xd0000000"},
        BadConfig{"WindowOverIoapic", {1, {{0xfebff000, 0x2000, 5}}}, "below the IOAPIC"},
        BadConfig{"WindowWraps", {1, {{0xd0000000, ~0ull, 5}}}, "MMIO gap"},
        BadConfig{"EmptyWindow", {1, {{0xd0000000, 0, 5}}}, "non-empty"},
        BadConfig{"SerialIrq", {1, {{0xd0000000, 0x1000, 4}}}, "serial"},
        BadConfig{"IrqBeyondIoapic", {1, {{0xd0000000, 0x1000, 24}}}, "IOAPIC pin"},
        BadConfig{
            "SharedIrq", {1, {{0xd0000000, 0x1000, 5}, {0xd0001000, 0x1000, 5}}}, "share irq 5"},
        BadConfig{"OverlappingWindows",
                  {1, {{0xd0000000, 0x2000, 5}, {0xd0001000, 0x1000, 6}}},
                  "overlapping"}),
    [](const ::testing::TestParamInfo<BadConfig>& info) { return info.param.name; });

TEST(VirtioMmioCmdlineTest, FormatsOneDevicePerEntry) {
  EXPECT_EQ(VirtioMmioCmdline({{0xd0000000, 0x1000, 5}, {0xd0001000, 0x200000, 6}}),
            "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=2M@0xd0001000:6");
  EXPECT_EQ(VirtioMmioCmdline({{0xd0000000, 0x100, 7}}), "virtio_mmio.device=256@0xd0000000:7");
  EXPECT_EQ(VirtioMmioCmdline({}), "");
}

TEST(AcpiSleepTest, DecodesThePoweroffWrite) {
  // What Linux writes for S5: (SLP_TYP << 2) | SLP_EN.
  EXPECT_TRUE(IsAcpiPowerOffRequest((kAcpiSleepTypeS5 << 2) | 0x20));
  EXPECT_FALSE(IsAcpiPowerOffRequest(kAcpiSleepTypeS5 << 2));  // SLP_EN clear
  EXPECT_FALSE(IsAcpiPowerOffRequest((3 << 2) | 0x20));        // another sleep state
  EXPECT_FALSE(IsAcpiPowerOffRequest(kAcpiWakeStatus));
}

}  // namespace
}  // namespace keel::vmm
