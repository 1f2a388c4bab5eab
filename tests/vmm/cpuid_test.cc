#include <algorithm>
#include <vector>

#include "gtest/gtest.h"
#include "vmm/kvm/x86_setup.h"

namespace keel::vmm {
namespace {

std::vector<CpuidEntry> SyntheticSupported() {
  return {
      {0x0, 0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69},
      {0x1, 0, 0, 0x000906ea, 0x00010800, 0x7ffafbff, 0x0fabfbff},
      {0x4, 0, 1, 0x1c004121, 0, 0, 0},  // L1d
      {0x4, 3, 1, 0x1c03c163, 0, 0, 0},  // L3
      {0xb, 0, 1, 1, 2, 0x100, 7},
      {0xb, 1, 1, 4, 16, 0x201, 7},
      {0x40000000, 0, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d},
      {0x40000001, 0, 0, 0x01007afb, 0, 0, 0},
      {0x80000008, 0, 0, 0x3027, 0, 0x0000f0ff, 0},
  };
}

const CpuidEntry* Find(const std::vector<CpuidEntry>& t, uint32_t fn, uint32_t index = 0) {
  auto it = std::find_if(t.begin(), t.end(), [&](const CpuidEntry& e) {
    return e.function == fn && e.index == index;
  });
  return it == t.end() ? nullptr : &*it;
}

TEST(CpuidTest, Leaf1CarriesApicIdCountAndHypervisorBit) {
  auto t = FilterCpuid(SyntheticSupported(), 3, 4, 0);

  const CpuidEntry* l1 = Find(t, 0x1);
  ASSERT_NE(l1, nullptr);
  EXPECT_EQ(l1->ebx >> 24, 3u);
  EXPECT_EQ((l1->ebx >> 16) & 0xff, 4u);
  EXPECT_EQ(l1->ebx & 0xffff, 0x0800u);  // CLFLUSH size and brand kept
  EXPECT_TRUE(l1->ecx & (1u << 31));
  EXPECT_TRUE(l1->edx & (1u << 28));
}

TEST(CpuidTest, SingleVcpuHasNoHtt) {
  auto t = FilterCpuid(SyntheticSupported(), 0, 1, 0);

  EXPECT_FALSE(Find(t, 0x1)->edx & (1u << 28));
}

TEST(CpuidTest, TopologyLeafDescribesOneThreadPerCore) {
  auto t = FilterCpuid(SyntheticSupported(), 5, 6, 0);

  const CpuidEntry* smt = Find(t, 0xb, 0);
  const CpuidEntry* core = Find(t, 0xb, 1);
  const CpuidEntry* end = Find(t, 0xb, 2);
  ASSERT_NE(smt, nullptr);
  ASSERT_NE(core, nullptr);
  ASSERT_NE(end, nullptr);
  EXPECT_EQ(smt->ebx, 1u);
  EXPECT_EQ((smt->ecx >> 8) & 0xff, 1u);
  EXPECT_EQ(core->eax & 0x1f, 3u);  // 6 cores need 3 bits
  EXPECT_EQ(core->ebx, 6u);
  EXPECT_EQ((core->ecx >> 8) & 0xff, 2u);
  EXPECT_EQ((end->ecx >> 8) & 0xff, 0u);
  EXPECT_EQ(smt->edx, 5u);
  EXPECT_EQ(core->edx, 5u);
}

TEST(CpuidTest, CacheLeafSharingFollowsVcpuCount) {
  auto t = FilterCpuid(SyntheticSupported(), 0, 8, 0);

  const CpuidEntry* l1d = Find(t, 0x4, 0);
  const CpuidEntry* l3 = Find(t, 0x4, 3);
  EXPECT_EQ((l1d->eax >> 14) & 0xfff, 0u);
  EXPECT_EQ((l3->eax >> 14) & 0xfff, 7u);
  EXPECT_EQ(l1d->eax >> 26, 7u);
  EXPECT_EQ(l1d->eax & 0x3fff, 0x0121u);  // cache descriptor bits kept
}

TEST(CpuidTest, AmdCoreCount) {
  auto t = FilterCpuid(SyntheticSupported(), 0, 4, 0);

  const CpuidEntry* e = Find(t, 0x80000008);
  EXPECT_EQ(e->ecx & 0xff, 3u);
  EXPECT_EQ((e->ecx >> 12) & 0xf, 2u);
}

TEST(CpuidTest, TimingLeafAddedWhenTscKnown) {
  auto t = FilterCpuid(SyntheticSupported(), 0, 1, 2500000);

  const CpuidEntry* max = Find(t, 0x40000000);
  const CpuidEntry* timing = Find(t, kCpuidTimingLeaf);
  EXPECT_EQ(max->eax, kCpuidTimingLeaf);
  ASSERT_NE(timing, nullptr);
  EXPECT_EQ(timing->eax, 2500000u);
  EXPECT_EQ(timing->ebx, kKvmApicTimerKhz);
}

TEST(CpuidTest, NoTimingLeafWithoutTsc) {
  auto t = FilterCpuid(SyntheticSupported(), 0, 1, 0);

  EXPECT_EQ(Find(t, kCpuidTimingLeaf), nullptr);
  EXPECT_EQ(Find(t, 0x40000000)->eax, 0x40000001u);
}

}  // namespace
}  // namespace keel::vmm
