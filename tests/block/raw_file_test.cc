// The io_uring raw-file backend on real files, through a real io_uring, in both cache modes.
#include "block/raw_file.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>

#include <cstring>
#include <optional>

#include "base/mapping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/block/block_test_util.h"

namespace keel::block {
namespace {

using ::keel::block::testing::AllocatedBlocks;
using ::keel::block::testing::Pattern;
using ::keel::block::testing::RangeRequest;
using ::keel::block::testing::ReadFile;
using ::keel::block::testing::ReadRequest;
using ::keel::block::testing::RunToCompletion;
using ::keel::block::testing::Segments;
using ::keel::block::testing::TempDir;
using ::keel::block::testing::WaitForCompletions;
using ::keel::block::testing::WriteImage;
using ::keel::block::testing::WriteRequest;
using ::testing::Each;
using ::testing::ElementsAreArray;
using ::testing::Field;

constexpr size_t kImageBytes = 8 << 20;
constexpr size_t kKiB = 1024;

// Stand-in for guest RAM: page-aligned anonymous memory.
Mapping GuestRam(size_t bytes) {
  absl::StatusOr<Mapping> m = Mapping::Anonymous(bytes, PROT_READ | PROT_WRITE);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : Mapping();
}

std::vector<uint8_t> Bytes(const uint8_t* data, size_t size) {
  return std::vector<uint8_t>(data, data + size);
}

// What the test image holds at [offset, offset + size) before any test writes to it.
std::vector<uint8_t> ImageBytes(size_t offset, size_t size) {
  std::vector<uint8_t> all = Pattern(kImageBytes, 7);
  return Bytes(all.data() + offset, size);
}

class RawFileTest : public ::testing::TestWithParam<CacheMode> {
 protected:
  void SetUp() override { WriteImage(path_, kImageBytes, 7); }

  std::unique_ptr<Backend> Open(OpenOptions options = {}) {
    options.cache = GetParam();
    absl::StatusOr<std::unique_ptr<Backend>> backend = OpenRawFile(path_, options);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? *std::move(backend) : nullptr;
  }

  TempDir dir_;
  std::string path_ = dir_.File("disk.img");
  Mapping ram_ = GuestRam(4 << 20);
};

TEST_P(RawFileTest, PropertiesDescribeTheImage) {
  std::unique_ptr<Backend> disk = Open({.max_in_flight = 64, .max_segments = 32});
  ASSERT_NE(disk, nullptr);

  const Properties& p = disk->properties();

  EXPECT_EQ(p.size_bytes, kImageBytes);
  EXPECT_EQ(p.max_in_flight, 64u);
  EXPECT_EQ(p.max_segments, 32u);
  EXPECT_EQ(p.direct_io, GetParam() == CacheMode::kNone);
  EXPECT_FALSE(p.read_only);
  EXPECT_EQ(disk->in_flight(), 0u);
}

TEST_P(RawFileTest, MultiSegmentWriteReadsBackWithOtherSegments) {
  std::unique_ptr<Backend> disk = Open();
  ASSERT_NE(disk, nullptr);
  std::vector<uint8_t> data = Pattern(64 * kKiB, 11);
  memcpy(ram_.data(), data.data(), data.size());
  std::vector<iovec> write_iov = Segments(ram_.data(), {4 * kKiB, 32 * kKiB, 28 * kKiB});
  std::vector<iovec> read_iov = Segments(ram_.data() + (1 << 20), {16 * kKiB, 48 * kKiB});

  int64_t written = RunToCompletion(*disk, WriteRequest(1 << 20, write_iov));
  int64_t read = RunToCompletion(*disk, ReadRequest(1 << 20, read_iov));

  EXPECT_EQ(written, 64 * 1024);
  EXPECT_EQ(read, 64 * 1024);
  EXPECT_EQ(Bytes(ram_.data() + (1 << 20), data.size()), data);
  EXPECT_EQ(ReadFile(path_, 1 << 20, data.size()), data);
}

TEST_P(RawFileTest, ReadSeesTheImageContents) {
  std::unique_ptr<Backend> disk = Open();
  ASSERT_NE(disk, nullptr);
  std::vector<iovec> iov = Segments(ram_.data(), {512, 3584, 8 * kKiB});

  int64_t read = RunToCompletion(*disk, ReadRequest(kImageBytes - 12 * kKiB, iov));

  EXPECT_EQ(read, 12 * 1024);
  EXPECT_EQ(Bytes(ram_.data(), 12 * kKiB), ReadFile(path_, kImageBytes - 12 * kKiB, 12 * kKiB));
}

TEST_P(RawFileTest, ManyRequestsInFlightCompleteOnce) {
  constexpr size_t kRequests = 128;
  std::unique_ptr<Backend> disk = Open({.max_in_flight = kRequests});
  ASSERT_NE(disk, nullptr);
  std::vector<uint8_t> data = Pattern(kRequests * 4 * kKiB, 3);
  memcpy(ram_.data(), data.data(), data.size());
  std::vector<iovec> iov = Segments(ram_.data(), std::vector<size_t>(kRequests, 4 * kKiB));
  for (size_t i = 0; i < kRequests; ++i) {
    // Spread over the image, in reverse order, one segment each.
    ASSERT_EQ(disk->Submit(WriteRequest((kRequests - 1 - i) * 16 * kKiB, {iov[i]}, i)), 0);
  }
  EXPECT_EQ(disk->in_flight(), kRequests);

  disk->Kick();
  std::vector<Completion> done = WaitForCompletions(*disk, kRequests);

  ASSERT_EQ(done.size(), kRequests);
  EXPECT_THAT(done, Each(Field(&Completion::result, 4 * 1024)));
  std::vector<uint64_t> tags;
  for (const Completion& c : done) tags.push_back(c.tag);
  std::sort(tags.begin(), tags.end());
  EXPECT_EQ(tags.front(), 0u);
  EXPECT_EQ(std::unique(tags.begin(), tags.end()) - tags.begin(), static_cast<long>(kRequests));
  EXPECT_EQ(disk->in_flight(), 0u);
  EXPECT_EQ(ReadFile(path_, 0, 4 * kKiB),
            Bytes(ram_.data() + (kRequests - 1) * 4 * kKiB, 4 * kKiB));
}

TEST_P(RawFileTest, MoreThanMaxInFlightIsHandedBack) {
  std::unique_ptr<Backend> disk = Open({.max_in_flight = 2});
  ASSERT_NE(disk, nullptr);
  std::vector<iovec> iov = Segments(ram_.data(), {4 * kKiB});
  ASSERT_EQ(disk->Submit(ReadRequest(0, iov, 1)), 0);
  ASSERT_EQ(disk->Submit(ReadRequest(0, iov, 2)), 0);

  int third = disk->Submit(ReadRequest(0, iov, 3));
  disk->Kick();
  std::vector<Completion> done = WaitForCompletions(*disk, 2);
  int fourth = disk->Submit(ReadRequest(0, iov, 4));
  disk->Kick();
  std::vector<Completion> later = WaitForCompletions(*disk, 1);

  EXPECT_EQ(third, -EBUSY);
  EXPECT_EQ(done.size(), 2u);
  EXPECT_EQ(fourth, 0);
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0].tag, 4u);
}

// Guest buffers at odd addresses and with odd segment lengths: O_DIRECT cannot take them, so
// the backend bounces them; the data must be exactly right either way.
TEST_P(RawFileTest, UnalignedGuestBuffersGiveCorrectData) {
  std::unique_ptr<Backend> disk = Open();
  ASSERT_NE(disk, nullptr);
  std::vector<uint8_t> data = Pattern(8 * kKiB, 5);
  uint8_t* src = ram_.data() + 1;
  memcpy(src, data.data(), data.size());
  uint8_t* dst = ram_.data() + (1 << 20) + 3;
  std::vector<iovec> write_iov = Segments(src, {100, 4000, 92, 4000});
  std::vector<iovec> read_iov = Segments(dst, {7, 8185});

  int64_t written = RunToCompletion(*disk, WriteRequest(512, write_iov));
  int64_t read = RunToCompletion(*disk, ReadRequest(512, read_iov));

  EXPECT_EQ(written, 8192);
  EXPECT_EQ(read, 8192);
  EXPECT_EQ(ReadFile(path_, 512, data.size()), data);
  EXPECT_EQ(Bytes(dst, data.size()), data);
  EXPECT_EQ(dst[-1], 0);  // nothing written before or after the guest's buffer
  EXPECT_EQ(dst[data.size()], 0);
}

// A bounced request larger than a bounce buffer goes in pieces; more bounced requests than
// buffers wait for one. Everything still completes with the right bytes.
TEST_P(RawFileTest, BouncedRequestsLargerAndMoreNumerousThanThePool) {
  constexpr size_t kRequests = 6;
  constexpr size_t kEach = 96 * kKiB;
  std::unique_ptr<Backend> disk = Open({.bounce_buffers = 2, .bounce_buffer_bytes = 16 * kKiB});
  ASSERT_NE(disk, nullptr);
  std::vector<uint8_t> data = Pattern(kRequests * kEach, 9);
  uint8_t* src = ram_.data() + 1;
  memcpy(src, data.data(), data.size());
  std::vector<iovec> iov = Segments(src, std::vector<size_t>(kRequests, kEach));
  for (size_t i = 0; i < kRequests; ++i) {
    ASSERT_EQ(disk->Submit(WriteRequest(i * kEach, {iov[i]}, i)), 0);
  }

  disk->Kick();
  std::vector<Completion> done = WaitForCompletions(*disk, kRequests);

  EXPECT_THAT(done, Each(Field(&Completion::result, static_cast<int64_t>(kEach))));
  EXPECT_EQ(ReadFile(path_, 0, data.size()), data);
}

TEST_P(RawFileTest, FlushCompletesAfterWritesAndTheDataIsInTheFile) {
  std::unique_ptr<Backend> disk = Open();
  ASSERT_NE(disk, nullptr);
  std::vector<uint8_t> data = Pattern(16 * kKiB, 21);
  memcpy(ram_.data(), data.data(), data.size());
  std::vector<iovec> iov = Segments(ram_.data(), {16 * kKiB});
  ASSERT_EQ(RunToCompletion(*disk, WriteRequest(3 << 20, iov)), 16 * 1024);

  int64_t flushed = RunToCompletion(*disk, RangeRequest(RequestType::kFlush, 0, 0, 99));

  EXPECT_EQ(flushed, 0);
  EXPECT_EQ(ReadFile(path_, 3 << 20, data.size()), data);
}

TEST_P(RawFileTest, DiscardPunchesAHoleThatReadsAsZeroes) {
  std::unique_ptr<Backend> disk = Open();
  ASSERT_NE(disk, nullptr);
  ASSERT_TRUE(disk->properties().supports_discard);
  const uint64_t before = AllocatedBlocks(path_);
  std::vector<iovec> iov = Segments(ram_.data(), {1 << 20});
  memset(ram_.data(), 0xff, 1 << 20);

  int64_t discarded = RunToCompletion(*disk, RangeRequest(RequestType::kDiscard, 1 << 20, 1 << 20));
  int64_t read = RunToCompletion(*disk, ReadRequest(1 << 20, iov));

  EXPECT_EQ(discarded, 0);
  EXPECT_EQ(read, 1 << 20);
  EXPECT_LE(AllocatedBlocks(path_), before - (1 << 20) / 512);
  EXPECT_EQ(Bytes(ram_.data(), 1 << 20), std::vector<uint8_t>(1 << 20, 0));
  EXPECT_EQ(ReadFile(path_, 2 << 20, 4096), ImageBytes(2 << 20, 4096));  // the rest is intact
  EXPECT_EQ(ReadFile(path_, (1 << 20) - 4096, 4096), ImageBytes((1 << 20) - 4096, 4096));
}

TEST_P(RawFileTest, WriteZeroesKeepsTheSpaceAllocated) {
  std::unique_ptr<Backend> disk = Open();
  ASSERT_NE(disk, nullptr);
  const uint64_t before = AllocatedBlocks(path_);

  int64_t zeroed = RunToCompletion(*disk, RangeRequest(RequestType::kWriteZeroes, 512, 256 * kKiB));

  EXPECT_EQ(zeroed, 0);
  EXPECT_EQ(ReadFile(path_, 512, 256 * kKiB), std::vector<uint8_t>(256 * kKiB, 0));
  EXPECT_EQ(AllocatedBlocks(path_), before);
  EXPECT_EQ(ReadFile(path_, 0, 512), ImageBytes(0, 512));
}

TEST_P(RawFileTest, WriteZeroesWithUnmapDeallocates) {
  std::unique_ptr<Backend> disk = Open();
  ASSERT_NE(disk, nullptr);
  const uint64_t before = AllocatedBlocks(path_);
  Request request = RangeRequest(RequestType::kWriteZeroes, 1 << 20, 1 << 20);
  request.unmap = true;

  int64_t zeroed = RunToCompletion(*disk, request);

  EXPECT_EQ(zeroed, 0);
  EXPECT_EQ(ReadFile(path_, 1 << 20, 1 << 20), std::vector<uint8_t>(1 << 20, 0));
  EXPECT_LE(AllocatedBlocks(path_), before - (1 << 20) / 512);
}

TEST_P(RawFileTest, ReadOnlyImageRefusesEverythingThatWrites) {
  std::unique_ptr<Backend> disk = Open({.read_only = true});
  ASSERT_NE(disk, nullptr);
  std::vector<iovec> iov = Segments(ram_.data(), {4 * kKiB});

  int write = disk->Submit(WriteRequest(0, iov));
  int discard = disk->Submit(RangeRequest(RequestType::kDiscard, 0, 4096));
  int zeroes = disk->Submit(RangeRequest(RequestType::kWriteZeroes, 0, 4096));
  int64_t read = RunToCompletion(*disk, ReadRequest(0, iov));
  int64_t flush = RunToCompletion(*disk, RangeRequest(RequestType::kFlush, 0, 0));

  EXPECT_EQ(write, -EROFS);
  EXPECT_EQ(discard, -EROFS);
  EXPECT_EQ(zeroes, -EROFS);
  EXPECT_EQ(read, 4096);
  EXPECT_EQ(flush, 0);
  EXPECT_EQ(disk->in_flight(), 0u);
  EXPECT_EQ(ReadFile(path_, 0, 4096), ImageBytes(0, 4096));
}

TEST_P(RawFileTest, HostileRequestsAreHandedBackWithoutTouchingTheFile) {
  std::unique_ptr<Backend> disk = Open({.max_segments = 4});
  ASSERT_NE(disk, nullptr);
  std::vector<iovec> one = Segments(ram_.data(), {4 * kKiB});
  std::vector<iovec> five = Segments(ram_.data(), {512, 512, 512, 512, 512});
  std::vector<iovec> odd = Segments(ram_.data(), {100});
  std::vector<iovec> huge = {{ram_.data(), SIZE_MAX}, {ram_.data(), 4096}};

  EXPECT_EQ(disk->Submit(ReadRequest(kImageBytes, one)), -EINVAL);        // past the end
  EXPECT_EQ(disk->Submit(ReadRequest(kImageBytes - 512, one)), -EINVAL);  // straddles it
  EXPECT_EQ(disk->Submit(WriteRequest(UINT64_MAX - 511, one)), -EINVAL);  // wraps around
  EXPECT_EQ(disk->Submit(ReadRequest(100, one)), -EINVAL);                // not a sector
  EXPECT_EQ(disk->Submit(ReadRequest(0, odd)), -EINVAL);                  // not a sector
  EXPECT_EQ(disk->Submit(ReadRequest(0, {})), -EINVAL);                   // no data
  EXPECT_EQ(disk->Submit(ReadRequest(0, five)), -EINVAL);                 // > max_segments
  EXPECT_EQ(disk->Submit(WriteRequest(0, huge)), -EINVAL);                // length overflows
  EXPECT_EQ(disk->Submit(RangeRequest(RequestType::kDiscard, 0, 0)), -EINVAL);
  EXPECT_EQ(disk->Submit(RangeRequest(RequestType::kWriteZeroes, kImageBytes - 512, 1024)),
            -EINVAL);
  EXPECT_EQ(disk->Submit(RangeRequest(static_cast<RequestType>(42), 0, 512)), -EOPNOTSUPP);
  EXPECT_EQ(disk->in_flight(), 0u);
  EXPECT_EQ(ReadFile(path_, 0, 4096), ImageBytes(0, 4096));
}

TEST_P(RawFileTest, LastBlockIsReachable) {
  std::unique_ptr<Backend> disk = Open();
  ASSERT_NE(disk, nullptr);
  const uint64_t last = kImageBytes - disk->properties().logical_block_size;
  std::vector<iovec> iov = Segments(ram_.data(), {disk->properties().logical_block_size});

  int64_t read = RunToCompletion(*disk, ReadRequest(last, iov));

  EXPECT_EQ(read, disk->properties().logical_block_size);
}

// The device may reap with a span smaller than what is ready: what it leaves behind keeps the
// eventfd readable, so waiting on it never misses a completion.
TEST_P(RawFileTest, ReapingOneAtATimeMissesNothing) {
  std::unique_ptr<Backend> disk = Open();
  ASSERT_NE(disk, nullptr);
  std::vector<iovec> iov = Segments(ram_.data(), {4 * kKiB, 4 * kKiB, 4 * kKiB});
  ASSERT_EQ(disk->Submit(ReadRequest(0, {iov[0]}, 1)), 0);
  ASSERT_EQ(disk->Submit(ReadRequest(4 * kKiB, {iov[1]}, 2)), 0);
  ASSERT_EQ(disk->Submit(ReadRequest(8 * kKiB, {iov[2]}, 3)), 0);
  disk->Kick();

  std::vector<Completion> done = WaitForCompletions(*disk, 3, /*batch=*/1);

  EXPECT_EQ(done.size(), 3u);
  EXPECT_EQ(disk->in_flight(), 0u);
  EXPECT_EQ(Bytes(ram_.data(), 12 * kKiB), ImageBytes(0, 12 * kKiB));
}

TEST_P(RawFileTest, AdoptedFdServesIo) {
  absl::StatusOr<std::unique_ptr<Backend>> disk = AdoptRawFile(
      ScopedFd(open(path_.c_str(), O_RDWR | O_CLOEXEC)), "adopted", {.cache = GetParam()});
  ASSERT_TRUE(disk.ok()) << disk.status();
  std::vector<uint8_t> data = Pattern(4 * kKiB, 33);
  memcpy(ram_.data(), data.data(), data.size());
  std::vector<iovec> iov = Segments(ram_.data(), {4 * kKiB});

  int64_t written = RunToCompletion(**disk, WriteRequest(8 * kKiB, iov));

  EXPECT_EQ(written, 4096);
  EXPECT_EQ(ReadFile(path_, 8 * kKiB, data.size()), data);
}

TEST_P(RawFileTest, LocksImageUntilDestroyed) {
  std::unique_ptr<Backend> disk = Open();
  ASSERT_NE(disk, nullptr);

  absl::StatusOr<std::unique_ptr<Backend>> while_open = OpenRawFile(path_, {.read_only = true});
  disk.reset();
  absl::StatusOr<std::unique_ptr<Backend>> after = OpenRawFile(path_, {});

  EXPECT_EQ(while_open.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(after.ok()) << after.status();
}

// Destroying a backend with requests queued, in the kernel, and waiting for a bounce buffer
// must return only when the kernel holds none of them: the guest RAM is unmapped right after.
TEST_P(RawFileTest, TeardownWithRequestsInFlightIsSafe) {
  std::unique_ptr<Backend> disk =
      Open({.max_in_flight = 64, .bounce_buffers = 1, .bounce_buffer_bytes = 4 * kKiB});
  ASSERT_NE(disk, nullptr);
  std::vector<iovec> aligned = Segments(ram_.data(), std::vector<size_t>(32, 64 * kKiB));
  std::vector<iovec> unaligned =
      Segments(ram_.data() + (2 << 20) + 1, std::vector<size_t>(16, 32 * kKiB));
  for (size_t i = 0; i < aligned.size(); ++i) {
    ASSERT_EQ(disk->Submit(ReadRequest(i * 64 * kKiB, {aligned[i]}, i)), 0);
  }
  for (size_t i = 0; i < unaligned.size(); ++i) {
    ASSERT_EQ(disk->Submit(WriteRequest(i * 32 * kKiB, {unaligned[i]}, 100 + i)), 0);
  }
  disk->Kick();
  ASSERT_EQ(disk->Submit(RangeRequest(RequestType::kFlush, 0, 0, 999)), 0);  // never kicked

  disk.reset();
  ram_.Reset();

  absl::StatusOr<std::unique_ptr<Backend>> reopened = OpenRawFile(path_, {.cache = GetParam()});
  EXPECT_TRUE(reopened.ok()) << reopened.status();  // the lock went with the fd
}

// tmpfs punches holes but refuses FALLOC_FL_ZERO_RANGE; ramfs refuses both. Write-zeroes
// falls back to writing zeroes there (and remembers), discard is not offered on ramfs.
TEST(RawFileFallbackTest, WriteZeroesWritesWhereZeroRangeIsRefused) {
  TempDir shm("/dev/shm");  // tmpfs
  const std::string path = shm.File("d.img");
  WriteImage(path, 1 << 20, 4);
  absl::StatusOr<std::unique_ptr<Backend>> disk = OpenRawFile(path, {});
  ASSERT_TRUE(disk.ok()) << disk.status();

  int64_t first =
      RunToCompletion(**disk, RangeRequest(RequestType::kWriteZeroes, 4096, 300 * kKiB));
  int64_t second =
      RunToCompletion(**disk, RangeRequest(RequestType::kWriteZeroes, 512 * kKiB, 8 * kKiB));

  EXPECT_EQ(first, 0);
  EXPECT_EQ(second, 0);
  EXPECT_EQ(ReadFile(path, 4096, 300 * kKiB), std::vector<uint8_t>(300 * kKiB, 0));
  EXPECT_EQ(ReadFile(path, 512 * kKiB, 8 * kKiB), std::vector<uint8_t>(8 * kKiB, 0));
  EXPECT_NE(ReadFile(path, 0, 4096), std::vector<uint8_t>(4096, 0));
}

TEST(RawFileFallbackTest, RamfsRefusesDiscardAndWritesZeroesEvenWhenUnmapIsAllowed) {
  testing::RamfsDir ramfs;
  if (!ramfs.ok()) GTEST_SKIP() << "mounting ramfs needs root";
  WriteImage(ramfs.File("d.img"), 1 << 20, 4);
  absl::StatusOr<std::unique_ptr<Backend>> disk = OpenRawFile(ramfs.File("d.img"), {});
  ASSERT_TRUE(disk.ok()) << disk.status();
  Request unmap = RangeRequest(RequestType::kWriteZeroes, 64 * kKiB, 64 * kKiB);
  unmap.unmap = true;

  int discard = (*disk)->Submit(RangeRequest(RequestType::kDiscard, 0, 4096));
  int64_t zeroed = RunToCompletion(**disk, unmap);

  EXPECT_EQ(discard, -EOPNOTSUPP);
  EXPECT_EQ(zeroed, 0);
  EXPECT_EQ(ReadFile(ramfs.File("d.img"), 64 * kKiB, 64 * kKiB),
            std::vector<uint8_t>(64 * kKiB, 0));
}

// A block device with 4 KiB logical blocks: geometry comes from the device's ioctls, and
// 512-byte-aligned requests are refused instead of read-modified-written.
class BlockDeviceTest : public ::testing::TestWithParam<CacheMode> {
 protected:
  void SetUp() override {
    WriteImage(backing_, kImageBytes, 8);
    loop_.emplace(backing_, 4096);
    if (!loop_->ok()) GTEST_SKIP() << "loop devices unavailable: " << loop_->error();
  }
  absl::StatusOr<std::unique_ptr<Backend>> Open() {
    return OpenRawFile(loop_->path(), {.cache = GetParam()});
  }

  TempDir dir_;
  std::string backing_ = dir_.File("backing.img");
  std::optional<testing::LoopDevice> loop_;
  Mapping ram_ = GuestRam(1 << 20);
};

TEST_P(BlockDeviceTest, GeometryComesFromTheDevice) {
  absl::StatusOr<std::unique_ptr<Backend>> disk = Open();
  ASSERT_TRUE(disk.ok()) << disk.status();

  const Properties& p = (*disk)->properties();

  EXPECT_EQ(p.size_bytes, kImageBytes);
  EXPECT_EQ(p.logical_block_size, 4096u);
  EXPECT_GE(p.physical_block_size, 4096u);
  EXPECT_TRUE(p.supports_discard);  // the loop driver punches holes in its backing file
}

TEST_P(BlockDeviceTest, WholeBlocksRoundTripAndPartialBlocksAreRefused) {
  absl::StatusOr<std::unique_ptr<Backend>> disk = Open();
  ASSERT_TRUE(disk.ok()) << disk.status();
  std::vector<uint8_t> data = Pattern(16 * kKiB, 12);
  memcpy(ram_.data() + 512, data.data(), data.size());  // sector-aligned, not block-aligned
  std::vector<iovec> iov = Segments(ram_.data() + 512, {8 * kKiB, 8 * kKiB});
  std::vector<iovec> sector = Segments(ram_.data(), {512});

  int64_t written = RunToCompletion(**disk, WriteRequest(64 * kKiB, iov));
  int64_t flushed = RunToCompletion(**disk, RangeRequest(RequestType::kFlush, 0, 0));
  int partial = (*disk)->Submit(ReadRequest(512, sector));

  EXPECT_EQ(written, 16 * 1024);
  EXPECT_EQ(flushed, 0);
  EXPECT_EQ(partial, -EINVAL);
  EXPECT_EQ(ReadFile(backing_, 64 * kKiB, data.size()), data);
}

TEST_P(BlockDeviceTest, WriteZeroesReadsBackAsZeroes) {
  absl::StatusOr<std::unique_ptr<Backend>> disk = Open();
  ASSERT_TRUE(disk.ok()) << disk.status();
  Request unmap = RangeRequest(RequestType::kWriteZeroes, 1 << 20, 64 * kKiB);
  unmap.unmap = true;

  int64_t zeroed = RunToCompletion(**disk, RangeRequest(RequestType::kWriteZeroes, 0, 64 * kKiB));
  int64_t unmapped = RunToCompletion(**disk, unmap);

  EXPECT_EQ(zeroed, 0);
  EXPECT_EQ(unmapped, 0);
  EXPECT_EQ(ReadFile(loop_->path(), 0, 64 * kKiB), std::vector<uint8_t>(64 * kKiB, 0));
  EXPECT_EQ(ReadFile(loop_->path(), 1 << 20, 64 * kKiB), std::vector<uint8_t>(64 * kKiB, 0));
}

INSTANTIATE_TEST_SUITE_P(CacheModes, BlockDeviceTest,
                         ::testing::Values(CacheMode::kWriteback, CacheMode::kNone),
                         [](const ::testing::TestParamInfo<CacheMode>& info) {
                           return info.param == CacheMode::kNone ? "None" : "Writeback";
                         });

INSTANTIATE_TEST_SUITE_P(CacheModes, RawFileTest,
                         ::testing::Values(CacheMode::kWriteback, CacheMode::kNone),
                         [](const ::testing::TestParamInfo<CacheMode>& info) {
                           return info.param == CacheMode::kNone ? "None" : "Writeback";
                         });

}  // namespace
}  // namespace keel::block
