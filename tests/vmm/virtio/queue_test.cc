#include "vmm/virtio/queue.h"

#include "gtest/gtest.h"
#include "tests/vmm/virtio/virtq_driver.h"

namespace keel::vmm::virtio {
namespace {

using testing::Buffer;
using testing::VirtqDriver;

constexpr uint64_t kMemSize = 1 << 20;
constexpr uint64_t kRings = 0x10000;
constexpr uint64_t kData = 0x40000;

class QueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto mem = GuestMemory::CreateForTest({{0, kMemSize}});
    ASSERT_TRUE(mem.ok());
    mem_ = std::make_unique<GuestMemory>(std::move(*mem));
    driver_ = std::make_unique<VirtqDriver>(*mem_, kRings, 16);
    ASSERT_TRUE(driver_->Attach(queue_).ok());
  }

  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<VirtqDriver> driver_;
  Queue queue_{256};
  Segment segs_[8];
  bool broken_ = false;
};

TEST_F(QueueTest, PopsPublishedChainWithSegmentsInOrder) {
  driver_->Publish(driver_->AddChain(
      {{kData, 16}, {kData + 0x1000, 512, true}, {kData + 0x2000, 1, true}}));

  auto head = queue_.PopHead(&broken_);
  ASSERT_TRUE(head.has_value());
  Chain chain = queue_.ReadChain(*head, segs_);

  EXPECT_EQ(chain.error, ChainError::kNone);
  ASSERT_EQ(chain.count, 3u);
  EXPECT_EQ(chain.readable, 16u);
  EXPECT_EQ(chain.writable, 513u);
  EXPECT_EQ(segs_[0].host, mem_->HostPtr(kData, 16));
  EXPECT_FALSE(segs_[0].writable);
  EXPECT_TRUE(segs_[1].writable);
  ASSERT_TRUE(chain.last.has_value());
  EXPECT_EQ(chain.last->host, mem_->HostPtr(kData + 0x2000, 1));
  EXPECT_FALSE(queue_.PopHead(&broken_).has_value());
  EXPECT_FALSE(broken_);
}

TEST_F(QueueTest, PushUsedPublishesIdAndLength) {
  const uint16_t head = driver_->AddChain({{kData, 64, true}});
  driver_->Publish(head);
  auto popped = queue_.PopHead(&broken_);

  queue_.PushUsed(*popped, 42);

  auto used = driver_->PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->id, head);
  EXPECT_EQ(used->len, 42u);
  EXPECT_EQ(driver_->UsedIdx(), 1);
}

TEST_F(QueueTest, IndirectTableIsFollowed) {
  driver_->Publish(driver_->AddIndirectChain(
      0x30000, {{kData, 16}, {kData + 0x100, 100, true}}));

  auto head = queue_.PopHead(&broken_);
  Chain chain = queue_.ReadChain(*head, segs_);

  EXPECT_EQ(chain.error, ChainError::kNone);
  EXPECT_EQ(chain.count, 2u);
  EXPECT_EQ(chain.writable, 100u);
}

TEST_F(QueueTest, LoopingChainIsTooLongWithoutLastSegment) {
  driver_->SetDesc(0, kData, 8, kDescFlagNext, 1);
  driver_->SetDesc(1, kData, 8, kDescFlagNext, 0);
  driver_->Publish(0);

  Chain chain = queue_.ReadChain(*queue_.PopHead(&broken_), segs_);

  EXPECT_EQ(chain.error, ChainError::kTooLong);
  EXPECT_FALSE(chain.last.has_value());
}

TEST_F(QueueTest, NextIndexOutOfRangeIsBadIndex) {
  driver_->SetDesc(0, kData, 8, kDescFlagNext, 16);
  driver_->Publish(0);

  Chain chain = queue_.ReadChain(*queue_.PopHead(&broken_), segs_);

  EXPECT_EQ(chain.error, ChainError::kBadIndex);
}

TEST_F(QueueTest, BufferOutsideMemoryIsReportedButTheWalkFindsTheEnd) {
  driver_->Publish(driver_->AddChain(
      {{kData, 16}, {kMemSize - 8, 16, true}, {kData + 0x100, 1, true}}));

  Chain chain = queue_.ReadChain(*queue_.PopHead(&broken_), segs_);

  EXPECT_EQ(chain.error, ChainError::kOutOfBounds);
  ASSERT_TRUE(chain.last.has_value());
  EXPECT_EQ(chain.last->host, mem_->HostPtr(kData + 0x100, 1));
}

TEST_F(QueueTest, AddressOverflowIsOutOfBounds) {
  driver_->Publish(driver_->AddChain({{~0ull - 4, 0x100, true}}));

  Chain chain = queue_.ReadChain(*queue_.PopHead(&broken_), segs_);

  EXPECT_EQ(chain.error, ChainError::kOutOfBounds);
  EXPECT_EQ(chain.count, 0u);
}

TEST_F(QueueTest, ReadableAfterWritableIsRejected) {
  driver_->Publish(driver_->AddChain({{kData, 16, true}, {kData + 0x100, 16}}));

  Chain chain = queue_.ReadChain(*queue_.PopHead(&broken_), segs_);

  EXPECT_EQ(chain.error, ChainError::kWritableFirst);
}

TEST_F(QueueTest, MoreSegmentsThanStorageStillMeasuresTheChain) {
  std::vector<Buffer> buffers;
  for (int i = 0; i < 10; ++i) buffers.push_back({kData + 0x100 * i, 10, i > 0});
  driver_->Publish(driver_->AddChain(buffers));

  Chain chain = queue_.ReadChain(*queue_.PopHead(&broken_), segs_);

  EXPECT_EQ(chain.error, ChainError::kTooManySegments);
  EXPECT_EQ(chain.count, 8u);
  EXPECT_EQ(chain.writable, 90u);
  EXPECT_TRUE(chain.last.has_value());
}

TEST_F(QueueTest, NestedIndirectTableIsRejected) {
  driver_->SetDesc(0, 0x30000, 16, kDescFlagIndirect, 0);
  mem_->WriteObj<uint64_t>(0x30000, 0x31000).IgnoreError();
  mem_->WriteObj<uint32_t>(0x30008, 16).IgnoreError();
  mem_->WriteObj<uint16_t>(0x3000c, kDescFlagIndirect).IgnoreError();
  driver_->Publish(0);

  Chain chain = queue_.ReadChain(*queue_.PopHead(&broken_), segs_);

  EXPECT_EQ(chain.error, ChainError::kBadIndirect);
}

TEST_F(QueueTest, IndirectWithNextOrBadLengthIsRejected) {
  driver_->SetDesc(0, 0x30000, 16, kDescFlagIndirect | kDescFlagNext, 1);
  driver_->SetDesc(1, 0x30000, 15, kDescFlagIndirect, 0);
  driver_->SetDesc(2, 0x30000, 0, kDescFlagIndirect, 0);
  driver_->SetDesc(3, kMemSize - 16, 32, kDescFlagIndirect, 0);

  EXPECT_EQ(queue_.ReadChain(0, segs_).error, ChainError::kBadIndirect);
  EXPECT_EQ(queue_.ReadChain(1, segs_).error, ChainError::kBadIndirect);
  EXPECT_EQ(queue_.ReadChain(2, segs_).error, ChainError::kBadIndirect);
  EXPECT_EQ(queue_.ReadChain(3, segs_).error, ChainError::kBadIndirect);
}

TEST_F(QueueTest, LoopInsideIndirectTableIsTooLong) {
  mem_->WriteObj<uint64_t>(0x30000, kData).IgnoreError();
  mem_->WriteObj<uint32_t>(0x30008, 8).IgnoreError();
  mem_->WriteObj<uint16_t>(0x3000c, kDescFlagNext).IgnoreError();
  mem_->WriteObj<uint16_t>(0x3000e, 0).IgnoreError();  // next = itself
  driver_->SetDesc(0, 0x30000, 16, kDescFlagIndirect, 0);

  EXPECT_EQ(queue_.ReadChain(0, segs_).error, ChainError::kTooLong);
}

TEST_F(QueueTest, AvailIndexRunningAheadBreaksTheQueue) {
  driver_->SetAvailIdx(17);  // 17 chains in a 16-entry ring

  EXPECT_FALSE(queue_.PopHead(&broken_).has_value());
  EXPECT_TRUE(broken_);
}

TEST_F(QueueTest, HeadOutOfRangeBreaksTheQueue) {
  driver_->Publish(99);

  EXPECT_FALSE(queue_.PopHead(&broken_).has_value());
  EXPECT_TRUE(broken_);
}

TEST_F(QueueTest, IndicesWrapAround) {
  for (int round = 0; round < 40; ++round) {
    const uint16_t head = driver_->AddChain({{kData, 8, true}});
    driver_->Publish(head);
    auto popped = queue_.PopHead(&broken_);
    ASSERT_TRUE(popped.has_value());
    queue_.PushUsed(*popped, 8);
    ASSERT_EQ(driver_->PopUsed()->id, head);
  }
  EXPECT_EQ(driver_->UsedIdx(), 40);
}

TEST_F(QueueTest, NoInterruptFlagSuppressesInterrupts) {
  driver_->Publish(driver_->AddChain({{kData, 8, true}}));
  queue_.PushUsed(*queue_.PopHead(&broken_), 0);
  driver_->SetAvailFlags(kAvailFlagNoInterrupt);

  EXPECT_FALSE(queue_.ShouldInterrupt());
}

TEST_F(QueueTest, InterruptOnlyWhenSomethingWasPushed) {
  EXPECT_FALSE(queue_.ShouldInterrupt());
  driver_->Publish(driver_->AddChain({{kData, 8, true}}));
  queue_.PushUsed(*queue_.PopHead(&broken_), 0);

  EXPECT_TRUE(queue_.ShouldInterrupt());
  EXPECT_FALSE(queue_.ShouldInterrupt());
}

TEST_F(QueueTest, AddedChainsStayUnseenUntilPublished) {
  const uint16_t a = driver_->AddChain({{kData, 8, true}});
  const uint16_t b = driver_->AddChain({{kData + 0x100, 8, true}});
  driver_->Publish(a);
  driver_->Publish(b);
  queue_.AddUsed(*queue_.PopHead(&broken_), 1);
  queue_.AddUsed(*queue_.PopHead(&broken_), 2);
  EXPECT_EQ(driver_->UsedIdx(), 0);

  queue_.PublishUsed();

  EXPECT_EQ(driver_->UsedIdx(), 2);
  auto first = driver_->PopUsed();
  auto second = driver_->PopUsed();
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_EQ(first->id, a);
  EXPECT_EQ(first->len, 1u);
  EXPECT_EQ(second->id, b);
  EXPECT_EQ(second->len, 2u);
}

TEST_F(QueueTest, InterruptingAndReArmingPublishFirst) {
  driver_->Publish(driver_->AddChain({{kData, 8, true}}));
  driver_->Publish(driver_->AddChain({{kData + 0x100, 8, true}}));
  queue_.AddUsed(*queue_.PopHead(&broken_), 0);
  EXPECT_TRUE(queue_.ShouldInterrupt());
  EXPECT_EQ(driver_->UsedIdx(), 1);  // the interrupt never announces what the driver cannot see

  queue_.AddUsed(*queue_.PopHead(&broken_), 0);
  EXPECT_FALSE(queue_.EnableNotifications());
  EXPECT_EQ(driver_->UsedIdx(), 2);  // nor does the device go idle holding completions
}

TEST_F(QueueTest, AvailIndexIsReadAgainOnceTheSeenChainsAreUsedUp) {
  driver_->Publish(driver_->AddChain({{kData, 8, true}}));
  driver_->Publish(driver_->AddChain({{kData + 0x100, 8, true}}));
  ASSERT_TRUE(queue_.PopHead(&broken_).has_value());
  // Chains announced meanwhile are found once the two seen are taken.
  driver_->Publish(driver_->AddChain({{kData + 0x200, 8, true}}));
  ASSERT_TRUE(queue_.PopHead(&broken_).has_value());
  ASSERT_TRUE(queue_.PopHead(&broken_).has_value());
  EXPECT_FALSE(queue_.PopHead(&broken_).has_value());
  EXPECT_FALSE(broken_);
  // A corrupt index is caught on the next read of it.
  driver_->SetAvailIdx(static_cast<uint16_t>(queue_.last_avail_idx() + 17));
  EXPECT_FALSE(queue_.PopHead(&broken_).has_value());
  EXPECT_TRUE(broken_);
}

TEST(QueueEventIdxTest, UsedEventDecidesInterrupts) {
  auto mem = GuestMemory::CreateForTest({{0, kMemSize}});
  VirtqDriver driver(*mem, kRings, 8);
  Queue queue(256);
  ASSERT_TRUE(driver.Attach(queue, /*event_idx=*/true).ok());
  bool broken = false;
  driver.SetUsedEvent(1);  // interrupt me when used idx passes 1, i.e. after the 2nd
  for (int i = 0; i < 3; ++i) driver.Publish(driver.AddChain({{kData, 8, true}}));

  queue.PushUsed(*queue.PopHead(&broken), 0);
  EXPECT_FALSE(queue.ShouldInterrupt());
  queue.PushUsed(*queue.PopHead(&broken), 0);
  EXPECT_TRUE(queue.ShouldInterrupt());
  queue.PushUsed(*queue.PopHead(&broken), 0);
  EXPECT_FALSE(queue.ShouldInterrupt());
}

TEST(QueueEventIdxTest, EnableNotificationsPublishesAvailEventAndSeesLateChains) {
  auto mem = GuestMemory::CreateForTest({{0, kMemSize}});
  VirtqDriver driver(*mem, kRings, 8);
  Queue queue(256);
  ASSERT_TRUE(driver.Attach(queue, true).ok());
  bool broken = false;
  driver.Publish(driver.AddChain({{kData, 8, true}}));
  queue.PopHead(&broken);

  EXPECT_FALSE(queue.EnableNotifications());
  EXPECT_EQ(driver.AvailEvent(), 1);
  driver.Publish(driver.AddChain({{kData, 8, true}}));
  EXPECT_TRUE(queue.EnableNotifications());
}

TEST(QueueActivateTest, RejectsBadSizeAlignmentAndPlacement) {
  auto mem = GuestMemory::CreateForTest({{0, kMemSize}});
  Queue queue(256);
  queue.set_desc_gpa(0x1000);
  queue.set_avail_gpa(0x2000);
  queue.set_used_gpa(0x3000);

  queue.set_size(0);
  EXPECT_FALSE(queue.Activate(*mem, false).ok());
  queue.set_size(512);
  EXPECT_FALSE(queue.Activate(*mem, false).ok());
  queue.set_size(256);
  queue.set_used_gpa(0x3002);
  EXPECT_FALSE(queue.Activate(*mem, false).ok());
  queue.set_used_gpa(kMemSize - 16);
  EXPECT_FALSE(queue.Activate(*mem, false).ok());
  queue.set_used_gpa(0x3000);
  EXPECT_TRUE(queue.Activate(*mem, false).ok());
}

}  // namespace
}  // namespace keel::vmm::virtio
