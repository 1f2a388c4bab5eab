#include "vmm/memory/guest_memory.h"

#include <cstdint>
#include <limits>

#include "gtest/gtest.h"
#include "vmm/layout.h"

namespace keel::vmm {
namespace {

using layout::kGiB;
using layout::kMiB;

TEST(GuestMemoryTest, SmallRamIsOneRegionFromZero) {
  auto mem = GuestMemory::Create(64 * kMiB);
  ASSERT_TRUE(mem.ok()) << mem.status();

  ASSERT_EQ(mem->regions().size(), 1u);
  EXPECT_EQ(mem->regions()[0].gpa, 0u);
  EXPECT_EQ(mem->regions()[0].size, 64 * kMiB);
  EXPECT_EQ(mem->ram_size(), 64 * kMiB);
  EXPECT_EQ(mem->end(), 64 * kMiB);
}

TEST(GuestMemoryTest, LargeRamSplitsAroundTheMmioGap) {
  auto mem = GuestMemory::Create(4 * kGiB);
  ASSERT_TRUE(mem.ok()) << mem.status();

  ASSERT_EQ(mem->regions().size(), 2u);
  EXPECT_EQ(mem->regions()[0].size, layout::kMmioGapStart);
  EXPECT_EQ(mem->regions()[1].gpa, layout::kRamAbove4gStart);
  EXPECT_EQ(mem->regions()[1].size, 4 * kGiB - layout::kMmioGapStart);
  EXPECT_EQ(mem->low_ram_end(), layout::kMmioGapStart);
  EXPECT_FALSE(mem->Contains(layout::kMmioGapStart, 1));
  EXPECT_TRUE(mem->Contains(layout::kRamAbove4gStart, 4096));
}

TEST(GuestMemoryTest, RejectsTooSmallAndUnalignedSizes) {
  EXPECT_EQ(GuestMemory::Create(1 * kMiB).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GuestMemory::Create(16 * kMiB + 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GuestMemoryTest, ReadWriteRoundTrip) {
  auto mem = GuestMemory::Create(16 * kMiB);
  ASSERT_TRUE(mem.ok());
  const uint64_t value = 0x1122334455667788;

  ASSERT_TRUE(mem->WriteObj(0x1001, value).ok());
  auto back = mem->ReadObj<uint64_t>(0x1001);

  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, value);
}

TEST(GuestMemoryTest, BoundsChecksAreOverflowSafe) {
  auto mem = GuestMemory::Create(16 * kMiB);
  ASSERT_TRUE(mem.ok());
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

  EXPECT_TRUE(mem->Contains(16 * kMiB - 8, 8));
  EXPECT_TRUE(mem->Contains(16 * kMiB, 0));
  EXPECT_FALSE(mem->Contains(16 * kMiB - 8, 9));
  EXPECT_FALSE(mem->Contains(16 * kMiB, 1));
  EXPECT_FALSE(mem->Contains(8, kMax));
  EXPECT_FALSE(mem->Contains(kMax, 2));
  EXPECT_FALSE(mem->Contains(kMax - 1, kMax));
  EXPECT_EQ(mem->HostPtr(kMax, 1), nullptr);
}

TEST(GuestMemoryTest, FailedWriteChangesNothing) {
  auto mem = GuestMemory::Create(16 * kMiB);
  ASSERT_TRUE(mem.ok());
  const uint8_t data[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

  absl::Status s = mem->Write(16 * kMiB - 8, std::span(data));

  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  auto tail = mem->ReadObj<uint64_t>(16 * kMiB - 8);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, 0u);
}

TEST(GuestMemoryTest, ResidentBytesCountsTouchedPages) {
  auto mem = GuestMemory::Create(32 * kMiB);
  ASSERT_TRUE(mem.ok());
  const uint64_t before = mem->ResidentBytes();

  ASSERT_TRUE(mem->Fill(0, 0xab, 1 * kMiB).ok());

  EXPECT_GE(mem->ResidentBytes() - before, 1 * kMiB);
  EXPECT_LT(mem->ResidentBytes(), 4 * kMiB);
}

}  // namespace
}  // namespace keel::vmm
