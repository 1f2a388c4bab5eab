// ParseBlockRequest on hand-built chains over a host buffer standing in for guest memory.
#include "vmm/virtio/block_request.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace keel::vmm::virtio {
namespace {

constexpr uint64_t kCapacity = 1 << 20;

class BlockRequestTest : public ::testing::Test {
 protected:
  BlockRequestTest() : ram_(1 << 16) {
    limits_.capacity_bytes = kCapacity;
    limits_.block_size = 512;
    limits_.seg_max = 4;
    limits_.size_max = 1 << 16;
    limits_.discard = limits_.write_zeroes = true;
    limits_.max_discard_sectors = limits_.max_write_zeroes_sectors = 1024;
  }

  // A segment of `len` bytes at `offset` into the fake RAM.
  Segment Seg(size_t offset, uint32_t len, bool writable) {
    return Segment{ram_.data() + offset, len, writable};
  }
  Segment Header(uint32_t type, uint64_t sector, size_t offset = 0) {
    memcpy(ram_.data() + offset, &type, 4);
    memset(ram_.data() + offset + 4, 0, 4);
    memcpy(ram_.data() + offset + 8, &sector, 8);
    return Seg(offset, 16, false);
  }
  Segment Range(uint64_t sector, uint32_t count, uint32_t flags, size_t offset = 0x100) {
    memcpy(ram_.data() + offset, &sector, 8);
    memcpy(ram_.data() + offset + 8, &count, 4);
    memcpy(ram_.data() + offset + 12, &flags, 4);
    return Seg(offset, 16, false);
  }
  Segment Status() { return Seg(0xfff, 1, true); }

  ParsedRequest Parse(std::vector<Segment> segs, ChainError error = ChainError::kNone) {
    segs_ = std::move(segs);
    Chain c;
    c.head = 7;
    c.error = error;
    c.count = segs_.size();
    for (const Segment& s : segs_) (s.writable ? c.writable : c.readable) += s.len;
    if (!segs_.empty()) c.last = segs_.back();
    return ParseBlockRequest(c, segs_, limits_, iov_);
  }

  std::vector<uint8_t> ram_;
  std::vector<Segment> segs_;
  iovec iov_[8];
  BlockLimits limits_;
};

TEST_F(BlockRequestTest, ReadBecomesBackendReadIntoGuestBuffers) {
  ParsedRequest r =
      Parse({Header(kBlkTypeIn, 8), Seg(0x1000, 512, true), Seg(0x2000, 1024, true), Status()});

  EXPECT_EQ(r.error, RequestError::kNone);
  EXPECT_EQ(r.request.type, block::RequestType::kRead);
  EXPECT_EQ(r.request.offset, 8u * 512);
  EXPECT_EQ(r.request.tag, 7u);
  ASSERT_EQ(r.request.iov.size(), 2u);
  EXPECT_EQ(r.request.iov[0].iov_base, ram_.data() + 0x1000);
  EXPECT_EQ(r.request.iov[1].iov_len, 1024u);
  EXPECT_EQ(r.data_in, 1536u);
  EXPECT_EQ(r.status, ram_.data() + 0xfff);
}

TEST_F(BlockRequestTest, WriteTakesReadableDataAfterTheHeader) {
  ParsedRequest r = Parse({Header(kBlkTypeOut, 0), Seg(0x1000, 4096, false), Status()});

  EXPECT_EQ(r.error, RequestError::kNone);
  EXPECT_EQ(r.request.type, block::RequestType::kWrite);
  ASSERT_EQ(r.request.iov.size(), 1u);
  EXPECT_EQ(r.request.iov[0].iov_base, ram_.data() + 0x1000);
  EXPECT_EQ(r.data_in, 0u);
}

TEST_F(BlockRequestTest, FramingIsIndependentOfDescriptorBoundaries) {
  // Header and data in one buffer, the last data bytes sharing a buffer with the status.
  Header(kBlkTypeOut, 2, 0x3000);
  ParsedRequest out = Parse({Seg(0x3000, 16 + 512, false), Status()});
  ASSERT_EQ(out.error, RequestError::kNone);
  ASSERT_EQ(out.request.iov.size(), 1u);
  EXPECT_EQ(out.request.iov[0].iov_base, ram_.data() + 0x3010);
  EXPECT_EQ(out.request.iov[0].iov_len, 512u);

  Header(kBlkTypeIn, 2, 0x3000);
  ParsedRequest in = Parse({Seg(0x3000, 8, false), Seg(0x3008, 8, false), Seg(0x4000, 513, true)});
  ASSERT_EQ(in.error, RequestError::kNone);
  EXPECT_EQ(in.request.offset, 2u * 512);
  ASSERT_EQ(in.request.iov.size(), 1u);
  EXPECT_EQ(in.request.iov[0].iov_len, 512u);
  EXPECT_EQ(in.status, ram_.data() + 0x4000 + 512);
}

TEST_F(BlockRequestTest, FlushAndGetIdHaveNoBackendData) {
  EXPECT_EQ(Parse({Header(kBlkTypeFlush, 123), Status()}).request.type, block::RequestType::kFlush);
  ParsedRequest id = Parse({Header(kBlkTypeGetId, 0), Seg(0x1000, 64, true), Status()});
  EXPECT_EQ(id.error, RequestError::kNone);
  EXPECT_EQ(id.data_in, kBlkIdBytes);
}

TEST_F(BlockRequestTest, DiscardAndWriteZeroesCarryOneRange) {
  ParsedRequest d = Parse({Header(kBlkTypeDiscard, 0), Range(16, 32, 0), Status()});
  EXPECT_EQ(d.error, RequestError::kNone);
  EXPECT_EQ(d.request.type, block::RequestType::kDiscard);
  EXPECT_EQ(d.request.offset, 16u * 512);
  EXPECT_EQ(d.request.length, 32u * 512);

  ParsedRequest z =
      Parse({Header(kBlkTypeWriteZeroes, 0), Range(0, 8, kBlkWriteZeroesFlagUnmap), Status()});
  EXPECT_EQ(z.request.type, block::RequestType::kWriteZeroes);
  EXPECT_TRUE(z.request.unmap);
}

TEST_F(BlockRequestTest, HostileRangesAreIoErrors) {
  constexpr uint64_t kEnd = kCapacity / 512;
  EXPECT_EQ(Parse({Header(kBlkTypeIn, kEnd), Seg(0x1000, 512, true), Status()}).error,
            RequestError::kPastEnd);
  EXPECT_EQ(Parse({Header(kBlkTypeIn, kEnd - 1), Seg(0x1000, 1024, true), Status()}).error,
            RequestError::kPastEnd);
  EXPECT_EQ(Parse({Header(kBlkTypeOut, ~0ull), Seg(0x1000, 512, false), Status()}).error,
            RequestError::kPastEnd);
  EXPECT_EQ(Parse({Header(kBlkTypeOut, 1ull << 55), Seg(0x1000, 512, false), Status()}).error,
            RequestError::kPastEnd);
  EXPECT_EQ(Parse({Header(kBlkTypeDiscard, 0), Range(kEnd - 1, 2, 0), Status()}).error,
            RequestError::kPastEnd);
  EXPECT_EQ(Parse({Header(kBlkTypeIn, 0), Seg(0x1000, 100, true), Status()}).error,
            RequestError::kUnaligned);
  EXPECT_EQ(Parse({Header(kBlkTypeDiscard, 0), Range(0, 2048, 0), Status()}).error,
            RequestError::kTooLarge);
  EXPECT_EQ(RequestErrorStatus(RequestError::kPastEnd), kBlkStatusIoErr);
}

TEST_F(BlockRequestTest, WrongHeaderOrLayoutIsAnIoError) {
  EXPECT_EQ(Parse({Seg(0, 8, false), Seg(0x1000, 512, true), Status()}).error,
            RequestError::kHeaderSize);
  // IN with readable data, OUT with writable data, requests without data.
  EXPECT_EQ(Parse({Header(kBlkTypeIn, 0), Seg(0x1000, 512, false), Seg(0x2000, 513, true)}).error,
            RequestError::kLayout);
  EXPECT_EQ(Parse({Header(kBlkTypeOut, 0), Seg(0x1000, 513, true)}).error, RequestError::kLayout);
  EXPECT_EQ(Parse({Header(kBlkTypeIn, 0), Status()}).error, RequestError::kLayout);
  EXPECT_EQ(Parse({Header(kBlkTypeFlush, 0), Seg(0x1000, 512, false), Status()}).error,
            RequestError::kLayout);
  EXPECT_EQ(Parse({Header(kBlkTypeDiscard, 0), Seg(0x100, 8, false), Status()}).error,
            RequestError::kLayout);
  EXPECT_EQ(Parse({Header(kBlkTypeDiscard, 0), Range(0, 0, 0), Status()}).error,
            RequestError::kLayout);
  EXPECT_EQ(
      Parse({Header(kBlkTypeDiscard, 0), Range(0, 8, 0), Range(8, 8, 0, 0x200), Status()}).error,
      RequestError::kTooLarge);
}

TEST_F(BlockRequestTest, UnknownTypesFlagsAndUnnegotiatedFeaturesAreUnsupported) {
  EXPECT_EQ(Parse({Header(99, 0), Status()}).error, RequestError::kUnsupported);
  EXPECT_EQ(
      Parse({Header(kBlkTypeDiscard, 0), Range(0, 8, kBlkWriteZeroesFlagUnmap), Status()}).error,
      RequestError::kUnsupported);
  EXPECT_EQ(Parse({Header(kBlkTypeWriteZeroes, 0), Range(0, 8, 4), Status()}).error,
            RequestError::kUnsupported);
  limits_.discard = false;
  EXPECT_EQ(Parse({Header(kBlkTypeDiscard, 0), Range(0, 8, 0), Status()}).error,
            RequestError::kUnsupported);
  EXPECT_EQ(RequestErrorStatus(RequestError::kUnsupported), kBlkStatusUnsupp);
}

TEST_F(BlockRequestTest, ReadOnlyRefusesEveryWrite) {
  limits_.read_only = true;
  EXPECT_EQ(Parse({Header(kBlkTypeOut, 0), Seg(0x1000, 512, false), Status()}).error,
            RequestError::kReadOnly);
  EXPECT_EQ(Parse({Header(kBlkTypeDiscard, 0), Range(0, 8, 0), Status()}).error,
            RequestError::kReadOnly);
  EXPECT_EQ(Parse({Header(kBlkTypeWriteZeroes, 0), Range(0, 8, 0), Status()}).error,
            RequestError::kReadOnly);
  EXPECT_EQ(Parse({Header(kBlkTypeIn, 0), Seg(0x1000, 512, true), Status()}).error,
            RequestError::kNone);
}

TEST_F(BlockRequestTest, TooManyOrTooLargeBuffers) {
  EXPECT_EQ(
      Parse({Header(kBlkTypeIn, 0), Seg(0x1000, 512, true), Seg(0x1200, 512, true),
             Seg(0x1400, 512, true), Seg(0x1600, 512, true), Seg(0x1800, 512, true), Status()})
          .error,
      RequestError::kTooManySegments);
  limits_.size_max = 1024;
  EXPECT_EQ(Parse({Header(kBlkTypeIn, 0), Seg(0x1000, 2048, true), Status()}).error,
            RequestError::kTooManySegments);
}

TEST_F(BlockRequestTest, BrokenChainsAndMissingStatus) {
  EXPECT_EQ(Parse({Header(kBlkTypeIn, 0), Status()}, ChainError::kTooLong).error,
            RequestError::kBrokenChain);
  EXPECT_EQ(Parse({Header(kBlkTypeIn, 0), Status()}, ChainError::kBadIndex).error,
            RequestError::kBrokenChain);
  EXPECT_EQ(
      Parse({Header(kBlkTypeIn, 0), Seg(0x1000, 512, true), Status()}, ChainError::kOutOfBounds)
          .error,
      RequestError::kBadChain);
  ParsedRequest none = Parse({Header(kBlkTypeOut, 0), Seg(0x1000, 512, false)});
  EXPECT_EQ(none.error, RequestError::kNoStatus);
  EXPECT_EQ(none.status, nullptr);
  EXPECT_EQ(Parse({}).error, RequestError::kNoStatus);
}

}  // namespace
}  // namespace keel::vmm::virtio
