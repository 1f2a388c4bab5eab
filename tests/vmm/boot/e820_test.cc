#include "vmm/boot/e820.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmm/layout.h"

namespace keel::vmm {
namespace {

using layout::kGiB;
using layout::kMiB;

MATCHER_P3(IsEntry, addr, size, type, "") {
  return arg.addr == addr && arg.size == size && arg.type == type;
}

TEST(E820Test, SmallRamIsLowRamHoleAndHighRam) {
  auto mem = GuestMemory::Create(64 * kMiB);
  ASSERT_TRUE(mem.ok());

  const auto map = BuildE820(*mem);

  ASSERT_EQ(map.size(), 3u);
  EXPECT_THAT(map[0], IsEntry(0u, 0x9fc00u, kE820Ram));
  EXPECT_THAT(map[1], IsEntry(0x9fc00u, 0x100000u - 0x9fc00u, kE820Reserved));
  EXPECT_THAT(map[2], IsEntry(0x100000u, 64 * kMiB - 0x100000u, kE820Ram));
}

TEST(E820Test, LargeRamContinuesAbove4GiB) {
  auto mem = GuestMemory::Create(4 * kGiB);  // > 3.25 GiB: part of it moves above the gap
  ASSERT_TRUE(mem.ok());

  const auto map = BuildE820(*mem);

  ASSERT_EQ(map.size(), 4u);
  EXPECT_THAT(map[2], IsEntry(0x100000u, 0xd0000000u - 0x100000u, kE820Ram));
  EXPECT_THAT(map[3], IsEntry(4 * kGiB, 4 * kGiB - 0xd0000000u, kE820Ram));
}

TEST(E820Test, RamExactlyUpToTheGapHasNoHighEntry) {
  auto mem = GuestMemory::Create(layout::kMmioGapStart);

  ASSERT_TRUE(mem.ok());
  EXPECT_EQ(BuildE820(*mem).size(), 3u);
}

}  // namespace
}  // namespace keel::vmm
