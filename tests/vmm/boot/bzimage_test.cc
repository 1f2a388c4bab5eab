#include "vmm/boot/bzimage.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/vmm/boot/test_images.h"
#include "tests/vmm/boot/test_util.h"
#include "vmm/boot/e820.h"
#include "vmm/boot/linux_boot_params.h"
#include "vmm/boot/loader.h"
#include "vmm/layout.h"

namespace keel::vmm {
namespace {

using linux_boot::BootParams;
using linux_boot::kSetupHeaderOffset;
using linux_boot::SetupHeader;
using testing::BuildBzImage;
using testing::BzImageSpec;
using ::testing::HasSubstr;
using testing::Image;
using testing::Patch;
using testing::Val;

#define HDR(field) (kSetupHeaderOffset + offsetof(SetupHeader, field))

class BzImageTest : public testing::GuestMemoryTest {
 protected:
  absl::StatusOr<BootEntry> Load(const Image& image, const Image* initrd = nullptr,
                                 std::string cmdline = "console=ttyS0") {
    return GuestMemoryTest::Load("bzImage", image, initrd, std::move(cmdline));
  }
};

TEST_F(BzImageTest, LoadsARelocatableKernelAtPrefAddress) {
  const BzImageSpec spec;
  const Image image = BuildBzImage(spec);

  auto entry = Load(image);

  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->mode, BootMode::kLinux64);
  EXPECT_EQ(entry->entry, spec.pref_address + 0x200);
  EXPECT_EQ(entry->boot_info_gpa, layout::kZeroPage);
  EXPECT_EQ(entry->kernel_start, spec.pref_address);
  EXPECT_EQ(entry->kernel_end, spec.pref_address + spec.init_size);
  Image loaded(spec.pm_size);
  ASSERT_TRUE(mem_->Read(spec.pref_address, loaded).ok());
  EXPECT_EQ(loaded, Image(image.end() - spec.pm_size, image.end()));
}

TEST_F(BzImageTest, LoadsANonRelocatableKernelAt1MiBAndReservesItsRuntimeArea) {
  BzImageSpec spec;
  spec.relocatable = 0;

  auto entry = Load(BuildBzImage(spec));

  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->entry, layout::kHighMemStart + 0x200);
  EXPECT_EQ(entry->kernel_start, layout::kHighMemStart);
  EXPECT_EQ(entry->kernel_end, spec.pref_address + spec.init_size);
}

TEST_F(BzImageTest, FallsBackTo1MiBWhenPrefAddressDoesNotFit) {
  UseRam(16 * layout::kMiB);
  BzImageSpec spec;
  spec.init_size = 0x600000;

  auto entry = Load(BuildBzImage(spec));

  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->entry, layout::kHighMemStart + 0x200);
  // Runs from align_up(1 MiB, 2 MiB) = 2 MiB.
  EXPECT_EQ(entry->kernel_end, 0x200000u + spec.init_size);
}

TEST_F(BzImageTest, BuildsTheZeroPage) {
  const BzImageSpec spec;
  const Image initrd(5000, 7);

  auto entry = Load(BuildBzImage(spec), &initrd, "root=/dev/vda");

  ASSERT_TRUE(entry.ok()) << entry.status();
  const auto bp = Read<BootParams>(layout::kZeroPage);
  // Copied from the image.
  EXPECT_EQ(Val(bp.hdr.boot_flag), 0xaa55);
  EXPECT_EQ(Val(bp.hdr.header), 0x53726448u);
  EXPECT_EQ(Val(bp.hdr.version), spec.version);
  EXPECT_EQ(Val(bp.hdr.init_size), spec.init_size);
  EXPECT_EQ(Val(bp.hdr.kernel_alignment), spec.kernel_alignment);
  EXPECT_EQ(Val(bp.hdr.handover_offset), 0x190u);
  // Set by the loader.
  EXPECT_EQ(Val(bp.hdr.type_of_loader), 0xff);
  EXPECT_EQ(Val(bp.hdr.loadflags), linux_boot::kLoadedHigh | linux_boot::kCanUseHeap);
  EXPECT_EQ(Val(bp.hdr.vid_mode), 0xffff);
  EXPECT_EQ(Val(bp.hdr.code32_start), spec.pref_address);
  EXPECT_EQ(Val(bp.hdr.cmd_line_ptr), layout::kCmdlineStart);
  EXPECT_EQ(Val(bp.ext_cmd_line_ptr), 0u);
  EXPECT_EQ(Val(bp.hdr.ramdisk_image), entry->initrd_gpa);
  EXPECT_EQ(Val(bp.hdr.ramdisk_size), 5000u);
  EXPECT_EQ(Val(bp.ext_ramdisk_image), 0u);
  EXPECT_EQ(Val(bp.hdr.setup_data), 0u);
  EXPECT_EQ(Val(bp.acpi_rsdp_addr), layout::kAcpiRsdp);
  EXPECT_EQ(Val(bp.sentinel), 0);
  const std::vector<E820Entry> e820 = BuildE820(*mem_);
  ASSERT_EQ(bp.e820_entries, e820.size());
  EXPECT_EQ(memcmp(bp.e820_table, e820.data(), e820.size() * sizeof(E820Entry)), 0);
}

TEST_F(BzImageTest, WritesThe64BitGdtAndIdentityPageTables) {
  ASSERT_TRUE(Load(BuildBzImage({})).ok());

  EXPECT_EQ(Read<uint64_t>(layout::kGdtStart + 0x10), 0x00af9b000000ffffu);
  EXPECT_EQ(Read<uint64_t>(layout::kGdtStart + 0x18), 0x00cf93000000ffffu);
  EXPECT_EQ(Read<uint64_t>(layout::kPml4Start), layout::kPdpteStart | 0x3);
  EXPECT_EQ(Read<uint64_t>(layout::kPml4Start + 8), 0u);
  EXPECT_EQ(Read<uint64_t>(layout::kPdpteStart + 3 * 8), (layout::kPdeStart + 0x3000) | 0x3);
  EXPECT_EQ(Read<uint64_t>(layout::kPdeStart), 0x83u);
  EXPECT_EQ(Read<uint64_t>(layout::kPdeStart + 2047 * 8), (2047ull << 21) | 0x83);
}

TEST_F(BzImageTest, KeepsTheInitrdBelowInitrdAddrMax) {
  BzImageSpec spec;
  spec.initrd_addr_max = 0x2ffffff;  // 48 MiB - 1
  const Image initrd(0x1800, 3);

  auto entry = Load(BuildBzImage(spec), &initrd);

  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->initrd_gpa, 0x3000000u - 0x2000);
  EXPECT_GE(entry->initrd_gpa, entry->kernel_end);
}

TEST_F(BzImageTest, RejectsAnInitrdThatOnlyFitsOverTheKernel) {
  BzImageSpec spec;
  spec.initrd_addr_max = 0x19fffff;  // just above pref_address + init_size
  const Image initrd(3 * layout::kMiB, 3);

  auto entry = Load(BuildBzImage(spec), &initrd);

  EXPECT_EQ(entry.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(entry.status().message(), HasSubstr("initrd /images/initrd"));
}

TEST_F(BzImageTest, RejectsACommandLineLongerThanCmdlineSize) {
  BzImageSpec spec;
  spec.cmdline_size = 10;

  auto too_long = Load(BuildBzImage(spec), nullptr, std::string(11, 'x'));
  auto fits = Load(BuildBzImage(spec), nullptr, std::string(10, 'x'));

  EXPECT_THAT(too_long.status().message(), HasSubstr("cmdline_size"));
  EXPECT_TRUE(fits.ok()) << fits.status();
}

TEST_F(BzImageTest, RejectsAKernelTooBigForRam) {
  BzImageSpec spec;
  spec.init_size = 0xf0000000;

  auto entry = Load(BuildBzImage(spec));

  EXPECT_EQ(entry.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(entry.status().message(), HasSubstr("give the VM more memory"));
}

using HostileBz = testing::HostileImage;

class BzImageHostileTest : public BzImageTest, public ::testing::WithParamInterface<HostileBz> {};

TEST_P(BzImageHostileTest, FailsWithAClearError) {
  Image image = BuildBzImage({});
  GetParam().patch(image);

  auto entry = Load(image);

  ASSERT_FALSE(entry.ok());
  EXPECT_THAT(entry.status().message(), HasSubstr(GetParam().error));
  EXPECT_THAT(entry.status().message(), HasSubstr("/images/bzImage"));
}

INSTANTIATE_TEST_SUITE_P(
    BzImage, BzImageHostileTest,
    ::testing::Values(
        HostileBz{"Truncated", [](Image& i) { i.resize(0x260); }, "truncated bzImage"},
        HostileBz{"NoBootFlag", [](Image& i) { Patch<uint16_t>(i, HDR(boot_flag), 0); },
                  "not a bzImage"},
        HostileBz{"NoHdrS", [](Image& i) { Patch<uint32_t>(i, HDR(header), 0); },
                  "is not a PVH ELF (no ELF header) or a bzImage (no HdrS header"},
        HostileBz{"OldProtocol", [](Image& i) { Patch<uint16_t>(i, HDR(version), 0x0206); },
                  "boot protocol 2.06"},
        HostileBz{"ZImage", [](Image& i) { Patch<uint8_t>(i, HDR(loadflags), 0); }, "zImage"},
        HostileBz{"No64BitEntry", [](Image& i) { Patch<uint16_t>(i, HDR(xloadflags), 0x2); },
                  "XLF_KERNEL_64"},
        HostileBz{"ShortHeader", [](Image& i) { Patch<uint16_t>(i, HDR(jump), 0x20eb); },
                  "setup header ending at 0x222"},
        HostileBz{"NotAJump", [](Image& i) { Patch<uint16_t>(i, HDR(jump), 0x6a90); },
                  "setup header"},
        HostileBz{"SetupSectsHuge", [](Image& i) { Patch<uint8_t>(i, HDR(setup_sects), 255); },
                  "setup_sects 255"},
        HostileBz{"SyssizeZero", [](Image& i) { Patch<uint32_t>(i, HDR(syssize), 0); },
                  "syssize 0"},
        HostileBz{"SyssizePastEof", [](Image& i) { Patch<uint32_t>(i, HDR(syssize), 0xffffffff); },
                  "syssize 4294967295"},
        HostileBz{"FileTruncatedAfterSetup", [](Image& i) { i.resize(i.size() - 1); }, "truncated"},
        HostileBz{"AlignmentNotPowerOfTwo",
                  [](Image& i) { Patch<uint32_t>(i, HDR(kernel_alignment), 0x300000); },
                  "kernel_alignment"},
        HostileBz{"AlignmentZero", [](Image& i) { Patch<uint32_t>(i, HDR(kernel_alignment), 0); },
                  "kernel_alignment"},
        HostileBz{"PrefAddressLowNotRelocatable",
                  [](Image& i) {
                    Patch<uint8_t>(i, HDR(relocatable_kernel), 0);
                    Patch<uint64_t>(i, HDR(pref_address), 0x8000);
                  },
                  "below 1 MiB"},
        HostileBz{"PrefAddressOverflowsNotRelocatable",
                  [](Image& i) {
                    Patch<uint8_t>(i, HDR(relocatable_kernel), 0);
                    Patch<uint64_t>(i, HDR(pref_address), ~0ull - 0x1000);
                  },
                  "beyond the 64-bit address space"},
        HostileBz{"PrefAddressInMmioGap",
                  [](Image& i) {
                    Patch<uint8_t>(i, HDR(relocatable_kernel), 0);
                    Patch<uint64_t>(i, HDR(pref_address), 0xd0000000);
                  },
                  "more memory"}),
    testing::HostileImageName);

}  // namespace
}  // namespace keel::vmm
