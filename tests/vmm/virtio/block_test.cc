// BlockDevice against real in-memory guest RAM, a driver laying out the virtqueue
// (virtq_driver.h), and either an in-memory backend or the real io_uring raw-file backend.
#include "vmm/virtio/block.h"

#include <cstring>
#include <string>
#include <vector>

#include "block/raw_file.h"
#include "gtest/gtest.h"
#include "tests/block/block_test_util.h"
#include "tests/vmm/virtio/memory_backend.h"
#include "tests/vmm/virtio/virtq_driver.h"

namespace keel::vmm::virtio {
namespace {

using testing::Buffer;
using testing::MemoryBackend;
using testing::TestDiskProperties;
using testing::VirtqDriver;

constexpr uint64_t kMemSize = 4 << 20;
constexpr uint64_t kRings = 0x1000;
constexpr uint64_t kHeaders = 0x10000;
constexpr uint64_t kStatus = 0x20000;
constexpr uint64_t kTables = 0x30000;
constexpr uint64_t kData = 0x100000;
constexpr uint16_t kQueueSize = 16;

class BlockDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto mem = GuestMemory::CreateForTest({{0, kMemSize}});
    ASSERT_TRUE(mem.ok());
    mem_ = std::make_unique<GuestMemory>(std::move(*mem));
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
  }

  void TearDown() override {
    if (device_ && device_->active()) device_->Reset();
  }

  // Creates and activates the device on `backend` (owned by the device afterwards).
  void Start(std::unique_ptr<block::Backend> backend, uint64_t driver_features = ~0ull,
             bool event_idx = false) {
    BlockDeviceOptions options;
    options.serial = "vol-0123";
    options.queue_size = kQueueSize;
    auto device = BlockDevice::Create(std::move(backend), options);
    ASSERT_TRUE(device.ok()) << device.status();
    device_ = std::move(*device);
    driver_ = std::make_unique<VirtqDriver>(*mem_, kRings, kQueueSize);
    ASSERT_TRUE(driver_->Attach(queue_, event_idx).ok());
    ActivateContext ctx;
    ctx.memory = mem_.get();
    ctx.features = driver_features & device_->device_features();
    ctx.queues = std::span(&queue_, 1);
    ctx.interrupt = &interrupt_;
    ctx.loop = loop_.get();
    ctx.needs_reset = [this](absl::string_view why) { needs_reset_ = std::string(why); };
    ASSERT_TRUE(device_->Activate(std::move(ctx)).ok());
  }

  MemoryBackend* StartMemory(block::Properties props = TestDiskProperties()) {
    auto backend = std::make_unique<MemoryBackend>(props);
    MemoryBackend* raw = backend.get();
    Start(std::move(backend));
    return raw;
  }

  // Publishes header (type, sector) + `data` + a status byte; returns the head.
  uint16_t Submit(uint32_t type, uint64_t sector, std::vector<Buffer> data) {
    const uint64_t header = kHeaders + 16 * uint64_t{next_};
    const uint64_t status = kStatus + next_;
    ++next_;
    EXPECT_TRUE(mem_->WriteObj(header, type).ok());
    EXPECT_TRUE(mem_->WriteObj(header + 4, uint32_t{0}).ok());
    EXPECT_TRUE(mem_->WriteObj(header + 8, sector).ok());
    EXPECT_TRUE(mem_->WriteObj(status, uint8_t{0xee}).ok());
    std::vector<Buffer> chain = {{header, 16, false}};
    chain.insert(chain.end(), data.begin(), data.end());
    chain.push_back({status, 1, true});
    const uint16_t head = driver_->AddChain(chain);
    driver_->Publish(head);
    statuses_.push_back(status);
    return head;
  }

  // Notifies the device and runs its loop until the backend has nothing in flight.
  void Run() {
    device_->ProcessQueue(0);
    for (int i = 0; i < 100 && device_->in_flight() > 0; ++i) loop_->RunOnce(10);
  }

  uint8_t StatusOf(size_t request) {
    return mem_->ReadObj<uint8_t>(statuses_[request]).value_or(0xff);
  }

  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<VirtqDriver> driver_;
  Queue queue_{kQueueSize};
  CountingInterrupt line_;
  VirtioInterrupt interrupt_{&line_};
  std::unique_ptr<BlockDevice> device_;
  std::string needs_reset_;
  std::vector<uint64_t> statuses_;
  uint16_t next_ = 0;
};

TEST_F(BlockDeviceTest, WritesThenReadsBackThroughGuestMemory) {
  MemoryBackend* backend = StartMemory();
  std::vector<uint8_t> pattern(1024);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint8_t>(i * 7);
  ASSERT_TRUE(mem_->Write(kData, pattern).ok());

  Submit(kBlkTypeOut, 4, {{kData, 512}, {kData + 512, 512}});
  Run();
  Submit(kBlkTypeIn, 4, {{kData + 0x10000, 1024, true}});
  Run();

  EXPECT_EQ(StatusOf(0), kBlkStatusOk);
  EXPECT_EQ(StatusOf(1), kBlkStatusOk);
  EXPECT_EQ(memcmp(backend->disk().data() + 4 * 512, pattern.data(), 1024), 0);
  EXPECT_EQ(memcmp(mem_->HostPtr(kData + 0x10000, 1024), pattern.data(), 1024), 0);
  auto out = driver_->PopUsed();
  auto in = driver_->PopUsed();
  ASSERT_TRUE(out.has_value() && in.has_value());
  EXPECT_EQ(out->len, 1u);
  EXPECT_EQ(in->len, 1025u);
  EXPECT_TRUE(needs_reset_.empty());
}

TEST_F(BlockDeviceTest, BatchIsSubmittedWithOneKickAndOneInterrupt) {
  MemoryBackend* backend = StartMemory();
  for (int i = 0; i < 5; ++i) Submit(kBlkTypeIn, static_cast<uint64_t>(i), {{kData, 512, true}});

  Run();

  EXPECT_EQ(backend->kicks, 1u);
  EXPECT_EQ(backend->submitted, 5u);
  EXPECT_EQ(driver_->UsedIdx(), 5);
  EXPECT_EQ(line_.count(), 1u);
  EXPECT_EQ(interrupt_.status() & kInterruptUsedBuffer, kInterruptUsedBuffer);
}

TEST_F(BlockDeviceTest, NoInterruptWhenTheDriverSuppressesThem) {
  StartMemory();
  driver_->SetAvailFlags(kAvailFlagNoInterrupt);
  Submit(kBlkTypeIn, 0, {{kData, 512, true}});

  Run();

  EXPECT_EQ(driver_->UsedIdx(), 1);
  EXPECT_EQ(line_.count(), 0u);
}

TEST_F(BlockDeviceTest, EventIdxSuppressesInterruptsUntilUsedEvent) {
  Start(std::make_unique<MemoryBackend>(TestDiskProperties()), ~0ull, /*event_idx=*/true);
  driver_->SetUsedEvent(3);  // interrupt once the 4th chain is used
  for (int i = 0; i < 2; ++i) Submit(kBlkTypeIn, 0, {{kData, 512, true}});
  Run();
  EXPECT_EQ(line_.count(), 0u);
  for (int i = 0; i < 2; ++i) Submit(kBlkTypeIn, 0, {{kData, 512, true}});
  Run();
  EXPECT_EQ(line_.count(), 1u);
}

TEST_F(BlockDeviceTest, GetIdFlushDiscardAndWriteZeroes) {
  MemoryBackend* backend = StartMemory();
  std::fill(backend->disk().begin(), backend->disk().end(), 0xab);
  const uint64_t range = kTables;
  struct {
    uint64_t sector;
    uint32_t count, flags;
  } r1{8, 8, 0}, r2{32, 8, kBlkWriteZeroesFlagUnmap};
  ASSERT_TRUE(mem_->WriteObj(range, r1).ok());
  ASSERT_TRUE(mem_->WriteObj(range + 16, r2).ok());

  Submit(kBlkTypeGetId, 0, {{kData, 20, true}});
  Submit(kBlkTypeFlush, 0, {});
  Submit(kBlkTypeDiscard, 0, {{range, 16}});
  Submit(kBlkTypeWriteZeroes, 0, {{range + 16, 16}});
  Run();

  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(StatusOf(i), kBlkStatusOk) << i;
  char id[20];
  ASSERT_TRUE(mem_->Read(kData, std::span(reinterpret_cast<uint8_t*>(id), 20)).ok());
  EXPECT_EQ(std::string(id, 8), "vol-0123");
  EXPECT_EQ(id[8], 0);
  EXPECT_EQ(backend->disk()[8 * 512], 0);
  EXPECT_EQ(backend->disk()[32 * 512 + 4095], 0);
  EXPECT_EQ(backend->disk()[16 * 512], 0xab);
  EXPECT_EQ(driver_->PopUsed()->len, 21u);
}

TEST_F(BlockDeviceTest, HostileRequestsGetErrorStatusesAndNothingCrashes) {
  StartMemory();
  Submit(kBlkTypeIn, 1 << 20, {{kData, 512, true}});     // past the end
  Submit(kBlkTypeIn, ~0ull, {{kData, 512, true}});       // overflowing sector
  Submit(kBlkTypeIn, 0, {{kData, 100, true}});           // not whole sectors
  Submit(kBlkTypeIn, 0, {{kMemSize - 256, 512, true}});  // outside guest memory
  Submit(77, 0, {});                                     // unknown type
  Run();

  EXPECT_EQ(StatusOf(0), kBlkStatusIoErr);
  EXPECT_EQ(StatusOf(1), kBlkStatusIoErr);
  EXPECT_EQ(StatusOf(2), kBlkStatusIoErr);
  EXPECT_EQ(StatusOf(3), kBlkStatusIoErr);
  EXPECT_EQ(StatusOf(4), kBlkStatusUnsupp);
  EXPECT_EQ(driver_->UsedIdx(), 5);
  EXPECT_EQ(device_->stats().errors, 5u);
  EXPECT_TRUE(needs_reset_.empty());
}

TEST_F(BlockDeviceTest, WrongHeaderSizeIsAnIoError) {
  StartMemory();
  const uint16_t head = driver_->AddChain({{kHeaders, 8}, {kData, 512, true}, {kStatus, 1, true}});
  driver_->Publish(head);
  statuses_.push_back(kStatus);

  Run();

  EXPECT_EQ(StatusOf(0), kBlkStatusIoErr);
  EXPECT_EQ(driver_->PopUsed()->len, 1u);
}

TEST_F(BlockDeviceTest, ChainWithoutStatusCompletesWithLengthZero) {
  StartMemory();
  driver_->Publish(driver_->AddChain({{kHeaders, 16}, {kData, 512}}));

  Run();

  auto used = driver_->PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->len, 0u);
  EXPECT_TRUE(needs_reset_.empty());
}

TEST_F(BlockDeviceTest, DescriptorLoopCompletesAndNeedsReset) {
  MemoryBackend* backend = StartMemory();
  driver_->SetDesc(10, kHeaders, 16, kDescFlagNext, 11);
  driver_->SetDesc(11, kData, 512, kDescFlagNext | kDescFlagWrite, 10);
  driver_->Publish(10);
  Submit(kBlkTypeIn, 0, {{kData, 512, true}});  // after the broken one: not processed

  Run();

  EXPECT_NE(needs_reset_.find("loop"), std::string::npos) << needs_reset_;
  EXPECT_EQ(driver_->UsedIdx(), 1);
  EXPECT_EQ(backend->submitted, 0u);
}

TEST_F(BlockDeviceTest, ChainLongerThanSegMaxIsAnIoError) {
  StartMemory();
  // An indirect table with the header, 300 data buffers and the status: longer than the
  // queue and than seg_max (14 for a 16-entry queue).
  std::vector<Buffer> table = {{kHeaders, 16}};
  ASSERT_TRUE(mem_->WriteObj(kHeaders, kBlkTypeIn).ok());
  for (int i = 0; i < 300; ++i) table.push_back({kData + 512 * uint64_t(i), 512, true});
  table.push_back({kStatus, 1, true});
  driver_->Publish(driver_->AddIndirectChain(kTables, table));
  statuses_.push_back(kStatus);

  Run();

  EXPECT_EQ(StatusOf(0), kBlkStatusIoErr);
  EXPECT_TRUE(needs_reset_.empty());
}

TEST_F(BlockDeviceTest, HeadReusedWhileInFlightNeedsReset) {
  MemoryBackend* backend = StartMemory();
  backend->hold = true;
  const uint16_t head = Submit(kBlkTypeIn, 0, {{kData, 512, true}});
  device_->ProcessQueue(0);
  driver_->Publish(head);  // again, while the backend still holds it

  device_->ProcessQueue(0);
  backend->Release();
  for (int i = 0; i < 10 && device_->in_flight() > 0; ++i) loop_->RunOnce(10);

  EXPECT_FALSE(needs_reset_.empty());
  EXPECT_EQ(driver_->UsedIdx(), 1);  // completed exactly once
}

TEST_F(BlockDeviceTest, BackendHandBackAndFailuresCompleteWithErrors) {
  MemoryBackend* backend = StartMemory();
  backend->hand_back_errno = EIO;
  Submit(kBlkTypeIn, 0, {{kData, 512, true}});
  Run();
  backend->fail_errno = EOPNOTSUPP;
  Submit(kBlkTypeFlush, 0, {});
  Run();
  backend->fail_errno = EIO;
  Submit(kBlkTypeOut, 0, {{kData, 512}});
  Run();

  EXPECT_EQ(StatusOf(0), kBlkStatusIoErr);
  EXPECT_EQ(StatusOf(1), kBlkStatusUnsupp);
  EXPECT_EQ(StatusOf(2), kBlkStatusIoErr);
  EXPECT_EQ(driver_->UsedIdx(), 3);
}

TEST_F(BlockDeviceTest, WithoutFlushNegotiatedWritesAreWrittenThrough) {
  auto backend = std::make_unique<MemoryBackend>(TestDiskProperties());
  MemoryBackend* raw = backend.get();
  Start(std::move(backend), ~kBlkFeatureFlush);

  Submit(kBlkTypeOut, 0, {{kData, 512}});
  Run();
  Submit(kBlkTypeIn, 0, {{kData, 512, true}});
  Run();

  EXPECT_EQ(StatusOf(0), kBlkStatusOk);
  EXPECT_EQ(StatusOf(1), kBlkStatusOk);
  EXPECT_EQ(raw->submitted, 3u);  // the write, its flush, the read
  EXPECT_EQ(driver_->UsedIdx(), 2);
}

TEST_F(BlockDeviceTest, ResetWaitsForInFlightIoAndWritesNothing) {
  MemoryBackend* backend = StartMemory();
  backend->hold = true;
  Submit(kBlkTypeIn, 0, {{kData, 512, true}});
  device_->ProcessQueue(0);
  ASSERT_EQ(device_->in_flight(), 1u);
  backend->Release();  // the kernel finished it, the device has not reaped it yet

  device_->Reset();

  EXPECT_FALSE(device_->active());
  EXPECT_EQ(backend->in_flight(), 0u);
  EXPECT_EQ(driver_->UsedIdx(), 0);
  EXPECT_EQ(StatusOf(0), 0xee);
}

TEST_F(BlockDeviceTest, ReadOnlyDiskRefusesWrites) {
  block::Properties props = TestDiskProperties();
  props.read_only = true;
  props.supports_discard = props.supports_write_zeroes = false;
  MemoryBackend* backend = StartMemory(props);
  EXPECT_TRUE(device_->device_features() & kBlkFeatureRo);
  EXPECT_FALSE(device_->device_features() & kBlkFeatureDiscard);
  struct {
    uint64_t sector;
    uint32_t count, flags;
  } range{0, 8, 0};
  ASSERT_TRUE(mem_->WriteObj(kTables, range).ok());

  Submit(kBlkTypeOut, 0, {{kData, 512}});
  Submit(kBlkTypeDiscard, 0, {{kTables, 16}});
  Submit(kBlkTypeWriteZeroes, 0, {{kTables, 16}});
  Submit(kBlkTypeIn, 0, {{kData, 512, true}});
  Run();

  EXPECT_EQ(StatusOf(0), kBlkStatusIoErr);
  EXPECT_EQ(StatusOf(1), kBlkStatusIoErr);
  EXPECT_EQ(StatusOf(2), kBlkStatusIoErr);
  EXPECT_EQ(StatusOf(3), kBlkStatusOk);
  EXPECT_EQ(backend->submitted, 1u);
}

TEST_F(BlockDeviceTest, ConfigSpaceDescribesTheDisk) {
  StartMemory(TestDiskProperties(8 << 20));
  uint8_t config[kBlkConfigSize];

  device_->ReadConfig(0, config);

  auto u32 = [&](size_t at) {
    uint32_t v;
    memcpy(&v, config + at, 4);
    return v;
  };
  uint64_t capacity;
  memcpy(&capacity, config, 8);
  EXPECT_EQ(capacity, (8u << 20) / 512);
  EXPECT_EQ(u32(8), 1u << 20);         // size_max
  EXPECT_EQ(u32(12), kQueueSize - 2);  // seg_max
  EXPECT_EQ(u32(20), 512u);            // blk_size
  EXPECT_EQ(config[24], 3);            // physical_block_exp: 4096 / 512
  EXPECT_EQ(u32(36), 1u << 22);        // max_discard_sectors
  EXPECT_EQ(u32(40), 1u);              // max_discard_seg
  EXPECT_EQ(u32(44), 1u);              // discard_sector_alignment
  EXPECT_EQ(u32(52), 1u);              // max_write_zeroes_seg
  EXPECT_EQ(config[56], 1);            // write_zeroes_may_unmap
}

TEST_F(BlockDeviceTest, CreateRefusesABackendSmallerThanTheQueue) {
  block::Properties props = TestDiskProperties();
  props.max_in_flight = 8;
  BlockDeviceOptions options;
  options.queue_size = 16;
  EXPECT_FALSE(BlockDevice::Create(std::make_unique<MemoryBackend>(props), options).ok());
}

// The real io_uring backend on a temporary file, in both cache modes.
class BlockDeviceRawFileTest : public BlockDeviceTest,
                               public ::testing::WithParamInterface<block::CacheMode> {};

TEST_P(BlockDeviceRawFileTest, WritesReachTheImageAndReadBack) {
  block::testing::TempDir dir;
  const std::string path = dir.File("disk.img");
  block::testing::WriteImage(path, 1 << 20, 1);
  block::OpenOptions options;
  options.cache = GetParam();
  options.max_in_flight = kQueueSize;
  auto backend = block::OpenRawFile(path, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  Start(std::move(*backend));
  std::vector<uint8_t> pattern(8192);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint8_t>(i * 13 + 1);
  ASSERT_TRUE(mem_->Write(kData + 1, pattern).ok());  // unaligned: bounced with cache=none

  Submit(kBlkTypeOut, 16, {{kData + 1, 4096}, {kData + 4097, 4096}});
  Submit(kBlkTypeFlush, 0, {});
  Run();
  Submit(kBlkTypeIn, 16, {{kData + 0x20000, 8192, true}});
  Run();

  EXPECT_EQ(StatusOf(0), kBlkStatusOk);
  EXPECT_EQ(StatusOf(1), kBlkStatusOk);
  EXPECT_EQ(StatusOf(2), kBlkStatusOk);
  EXPECT_EQ(block::testing::ReadFile(path, 16 * 512, 8192), pattern);
  EXPECT_EQ(memcmp(mem_->HostPtr(kData + 0x20000, 8192), pattern.data(), 8192), 0);
}

INSTANTIATE_TEST_SUITE_P(CacheModes, BlockDeviceRawFileTest,
                         ::testing::Values(block::CacheMode::kWriteback, block::CacheMode::kNone));

}  // namespace
}  // namespace keel::vmm::virtio
