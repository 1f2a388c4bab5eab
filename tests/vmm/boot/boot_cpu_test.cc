#include "vmm/boot/boot_cpu.h"

#include "gtest/gtest.h"
#include "vmm/layout.h"

namespace keel::vmm {
namespace {

TEST(BootGdtTest, MatchesTheLinuxBootDescriptors) {
  const auto gdt64 = BootGdt(BootMode::kLinux64);
  const auto gdt32 = BootGdt(BootMode::kPvh32);

  EXPECT_EQ(gdt64[0], 0u);
  EXPECT_EQ(gdt64[1], 0u);
  EXPECT_EQ(gdt64[2], 0x00af9b000000ffffu);  // 64-bit code, flat
  EXPECT_EQ(gdt64[3], 0x00cf93000000ffffu);  // data, flat
  EXPECT_EQ(gdt32[2], 0x00cf9b000000ffffu);  // 32-bit code, flat
  EXPECT_EQ(gdt32[3], gdt64[3]);
}

TEST(DecodeSegmentTest, DecodesAFlat64BitCodeSegment) {
  const SegmentState s = DecodeSegment(0x00af9b000000ffff, 0x10);

  EXPECT_EQ(s.selector, 0x10);
  EXPECT_EQ(s.base, 0u);
  EXPECT_EQ(s.limit, 0xffffffffu);
  EXPECT_EQ(s.type, 0xb);
  EXPECT_EQ(s.present, 1);
  EXPECT_EQ(s.s, 1);
  EXPECT_EQ(s.dpl, 0);
  EXPECT_EQ(s.l, 1);
  EXPECT_EQ(s.db, 0);
  EXPECT_EQ(s.g, 1);
}

TEST(DecodeSegmentTest, DecodesBaseAndByteGranularLimit) {
  const SegmentState s = DecodeSegment(0x12409a345678abcd, 0x8);

  EXPECT_EQ(s.base, 0x12345678u);
  EXPECT_EQ(s.limit, 0xabcdu);
  EXPECT_EQ(s.db, 1);
  EXPECT_EQ(s.g, 0);
}

TEST(InitialCpuStateTest, Linux64EntersLongModeWithRsiAtTheZeroPage) {
  const BootCpuState st = InitialCpuState(BootMode::kLinux64, 0x1000200, layout::kZeroPage);

  EXPECT_EQ(st.rip, 0x1000200u);
  EXPECT_EQ(st.rsi, layout::kZeroPage);
  EXPECT_EQ(st.rbx, 0u);
  EXPECT_EQ(st.cr3, layout::kPml4Start);
  EXPECT_EQ(st.cr0 & (kCr0Pe | kCr0Pg), kCr0Pe | kCr0Pg);
  EXPECT_EQ(st.cr4 & kCr4Pae, kCr4Pae);
  EXPECT_EQ(st.efer, kEferLme | kEferLma);
  EXPECT_EQ(st.code.selector, kBootCodeSelector);
  EXPECT_EQ(st.code.l, 1);
  EXPECT_EQ(st.data.selector, kBootDataSelector);
  EXPECT_EQ(st.rflags, 0x2u);
  EXPECT_EQ(st.gdt_base, layout::kGdtStart);
  EXPECT_EQ(st.gdt_limit, 31);
}

TEST(InitialCpuStateTest, Pvh32EntersProtectedModeWithoutPagingAndEbxAtStartInfo) {
  const BootCpuState st = InitialCpuState(BootMode::kPvh32, 0x100000, layout::kPvhStartInfo);

  EXPECT_EQ(st.rip, 0x100000u);
  EXPECT_EQ(st.rbx, layout::kPvhStartInfo);
  EXPECT_EQ(st.cr0 & kCr0Pg, 0u);
  EXPECT_EQ(st.cr0 & kCr0Pe, kCr0Pe);
  EXPECT_EQ(st.cr4, 0u);
  EXPECT_EQ(st.efer, 0u);
  EXPECT_EQ(st.code.l, 0);
  EXPECT_EQ(st.code.db, 1);
  EXPECT_EQ(st.code.limit, 0xffffffffu);
}

}  // namespace
}  // namespace keel::vmm
