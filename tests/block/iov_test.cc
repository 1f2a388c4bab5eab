// Scatter-gather helpers behind the O_DIRECT bounce path.
#include <cstring>
#include <vector>

#include "block/bounce.h"
#include "gtest/gtest.h"

namespace keel::block {
namespace {

TEST(AdvanceIovTest, SkipsWholeSegmentsAndTrimsThePartialOne) {
  uint8_t buf[64] = {};
  iovec storage[3] = {{buf, 8}, {buf + 8, 16}, {buf + 24, 40}};
  iovec* iov = storage;
  uint32_t count = 3;

  AdvanceIov(&iov, &count, 8 + 5);

  EXPECT_EQ(count, 2u);
  EXPECT_EQ(iov, &storage[1]);
  EXPECT_EQ(iov[0].iov_base, buf + 13);
  EXPECT_EQ(iov[0].iov_len, 11u);
}

TEST(AdvanceIovTest, ConsumingEverythingLeavesAnEmptyList) {
  uint8_t buf[16] = {};
  iovec storage[2] = {{buf, 8}, {buf + 8, 8}};
  iovec* iov = storage;
  uint32_t count = 2;

  AdvanceIov(&iov, &count, 16);

  EXPECT_EQ(count, 0u);
}

TEST(CopyIovTest, RoundTripsAcrossSegments) {
  uint8_t guest[10] = {};
  iovec iov[3] = {{guest, 3}, {guest + 3, 0}, {guest + 3, 7}};
  const uint8_t src[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  uint8_t back[10] = {};

  CopyToIov(iov, 3, src, 10);
  CopyFromIov(iov, 3, back, 10);

  EXPECT_EQ(memcmp(guest, src, 10), 0);
  EXPECT_EQ(memcmp(back, src, 10), 0);
}

TEST(CopyIovTest, StopsAtTheRequestedLength) {
  uint8_t guest[8] = {};
  iovec iov[2] = {{guest, 4}, {guest + 4, 4}};
  const uint8_t src[8] = {9, 9, 9, 9, 9, 9, 9, 9};

  CopyToIov(iov, 2, src, 5);

  EXPECT_EQ(guest[4], 9);
  EXPECT_EQ(guest[5], 0);
}

TEST(IovAlignedTest, ChecksEveryAddressAndLength) {
  alignas(4096) static uint8_t buf[3 * 4096];
  iovec good[2] = {{buf, 4096}, {buf + 4096, 512}};
  iovec bad_address[2] = {{buf, 4096}, {buf + 4097, 512}};
  iovec bad_length[2] = {{buf, 4000}, {buf + 4096, 512}};

  EXPECT_TRUE(IovAligned(good, 2, 512, 512));
  EXPECT_FALSE(IovAligned(bad_address, 2, 512, 512));
  EXPECT_FALSE(IovAligned(bad_length, 2, 512, 512));
  EXPECT_TRUE(IovAligned(bad_address, 2, 1, 512));  // no address constraint
}

TEST(BouncePoolTest, HandsOutEachBufferOnceAndRoundsUpTheSize) {
  absl::StatusOr<BouncePool> pool = BouncePool::Create(2, 1000, 512);
  ASSERT_TRUE(pool.ok()) << pool.status();

  std::optional<uint32_t> a = pool->Acquire();
  std::optional<uint32_t> b = pool->Acquire();
  std::optional<uint32_t> none = pool->Acquire();
  pool->Release(*a);
  std::optional<uint32_t> again = pool->Acquire();

  EXPECT_EQ(pool->buffer_bytes() % 4096, 0u);
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  EXPECT_FALSE(none);
  EXPECT_EQ(again, a);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(pool->data(*b)) % 4096, 0u);
}

}  // namespace
}  // namespace keel::block
