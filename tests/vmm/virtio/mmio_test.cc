#include "vmm/virtio/mmio.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/vmm/virtio/virtq_driver.h"

namespace keel::vmm::virtio {
namespace {

constexpr uint64_t kMemSize = 1 << 20;
constexpr uint64_t kRings = 0x10000;

// A device with two queues that records what the transport asks of it.
class FakeDevice : public VirtioDevice {
 public:
  uint32_t device_id() const override { return 42; }
  uint64_t device_features() const override { return 1ull << 5; }
  size_t num_queues() const override { return 2; }
  uint16_t max_queue_size() const override { return 64; }
  void ReadConfig(uint64_t offset, std::span<uint8_t> data) override {
    const uint8_t config[4] = {0xde, 0xad, 0xbe, 0xef};
    ReadConfigBytes(config, offset, data);
  }
  absl::Status Activate(ActivateContext ctx) override {
    features = ctx.features;
    interrupt = ctx.interrupt;
    set_active();
    activations++;
    activated.Notify();
    return fail_activate ? absl::InternalError("refused") : absl::OkStatus();
  }
  void ProcessQueue(size_t index) override {
    processed[index]++;
  }

  std::atomic<int> activations{0};
  std::atomic<int> resets{0};
  std::atomic<int> processed[2] = {0, 0};
  uint64_t features = 0;
  VirtioInterrupt* interrupt = nullptr;
  bool fail_activate = false;
  absl::Notification activated;

 protected:
  void OnReset() override { resets++; }
};

class MmioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto mem = GuestMemory::CreateForTest({{0, kMemSize}});
    ASSERT_TRUE(mem.ok());
    mem_ = std::make_unique<GuestMemory>(std::move(*mem));
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    auto t = MmioTransport::Create(&device_, mem_.get(), &line_, loop_.get(), "fake");
    ASSERT_TRUE(t.ok()) << t.status();
    transport_ = std::move(*t);
    io_thread_ = std::thread([this] { loop_->Run(); });
  }
  void TearDown() override {
    loop_->Stop();
    io_thread_.join();
    transport_.reset();
  }

  uint32_t Read32(uint64_t offset) {
    uint32_t v = 0;
    transport_->Read(offset, std::span(reinterpret_cast<uint8_t*>(&v), 4));
    return v;
  }
  void Write32(uint64_t offset, uint32_t v) {
    transport_->Write(offset, std::span(reinterpret_cast<const uint8_t*>(&v), 4));
  }
  void Negotiate(uint64_t features) {
    Write32(kMmioStatus, kStatusAcknowledge);
    Write32(kMmioStatus, kStatusAcknowledge | kStatusDriver);
    Write32(kMmioDriverFeaturesSel, 0);
    Write32(kMmioDriverFeatures, static_cast<uint32_t>(features));
    Write32(kMmioDriverFeaturesSel, 1);
    Write32(kMmioDriverFeatures, static_cast<uint32_t>(features >> 32));
    Write32(kMmioStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  }
  void SetUpQueue(uint32_t index, uint64_t base, uint32_t size) {
    Write32(kMmioQueueSel, index);
    Write32(kMmioQueueNum, size);
    testing::VirtqDriver rings(*mem_, base, static_cast<uint16_t>(size));
    Write32(kMmioQueueDescLow, static_cast<uint32_t>(rings.desc_gpa()));
    Write32(kMmioQueueDescHigh, 0);
    Write32(kMmioQueueDriverLow, static_cast<uint32_t>(rings.avail_gpa()));
    Write32(kMmioQueueDeviceLow, static_cast<uint32_t>(rings.used_gpa()));
    Write32(kMmioQueueReady, 1);
  }
  void DriverOk() {
    Write32(kMmioStatus,
            kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }

  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<EventLoop> loop_;
  FakeDevice device_;
  CountingInterrupt line_;
  std::unique_ptr<MmioTransport> transport_;
  std::thread io_thread_;
};

TEST_F(MmioTest, IdentifiesAsVersion2Device) {
  EXPECT_EQ(Read32(kMmioMagicValue), kMmioMagic);
  EXPECT_EQ(Read32(kMmioVersion), 2u);
  EXPECT_EQ(Read32(kMmioDeviceId), 42u);
  EXPECT_EQ(Read32(kMmioVendorId), kMmioVendor);
}

TEST_F(MmioTest, OffersDeviceAndRingFeaturesInTwoHalves) {
  Write32(kMmioDeviceFeaturesSel, 0);
  const uint32_t low = Read32(kMmioDeviceFeatures);
  Write32(kMmioDeviceFeaturesSel, 1);
  const uint32_t high = Read32(kMmioDeviceFeatures);

  EXPECT_EQ(low, (1u << 5) | (1u << 28) | (1u << 29));
  EXPECT_EQ(high, 1u);  // VERSION_1
}

TEST_F(MmioTest, AcceptsOfferedModernFeatures) {
  Negotiate(kFeatureVersion1 | kFeatureEventIdx | (1ull << 5));

  EXPECT_TRUE(Read32(kMmioStatus) & kStatusFeaturesOk);
  EXPECT_EQ(transport_->driver_features(), kFeatureVersion1 | kFeatureEventIdx | (1ull << 5));
}

TEST_F(MmioTest, RefusesLegacyDrivers) {
  Negotiate(1ull << 5);

  EXPECT_FALSE(Read32(kMmioStatus) & kStatusFeaturesOk);
}

TEST_F(MmioTest, RefusesFeaturesNotOffered) {
  Negotiate(kFeatureVersion1 | (1ull << 7));

  EXPECT_FALSE(Read32(kMmioStatus) & kStatusFeaturesOk);
}

TEST_F(MmioTest, QueueSetupAndDriverOkActivateTheDevice) {
  Negotiate(kFeatureVersion1);
  Write32(kMmioQueueSel, 0);
  EXPECT_EQ(Read32(kMmioQueueNumMax), 64u);
  Write32(kMmioQueueSel, 2);
  EXPECT_EQ(Read32(kMmioQueueNumMax), 0u);  // no such queue
  SetUpQueue(0, kRings, 16);
  SetUpQueue(1, kRings + 0x4000, 16);

  DriverOk();

  ASSERT_TRUE(device_.activated.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(device_.features, kFeatureVersion1);
  EXPECT_TRUE(Read32(kMmioStatus) & kStatusDriverOk);
}

TEST_F(MmioTest, NotifyReachesTheDeviceOnTheIoThread) {
  Negotiate(kFeatureVersion1);
  SetUpQueue(0, kRings, 16);
  SetUpQueue(1, kRings + 0x4000, 16);
  DriverOk();
  ASSERT_TRUE(device_.activated.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // Activation looks at every queue once; wait for that pass before counting.
  for (int i = 0; i < 1000 && device_.processed[1] == 0; ++i) absl::SleepFor(absl::Milliseconds(2));
  const int before = device_.processed[1];

  Write32(kMmioQueueNotify, 1);

  for (int i = 0; i < 1000 && device_.processed[1] == before; ++i) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  EXPECT_EQ(device_.processed[1], before + 1);
  EXPECT_EQ(device_.processed[0], 1);
}

TEST_F(MmioTest, QueueRegistersAreFrozenOnceReady) {
  Negotiate(kFeatureVersion1);
  SetUpQueue(0, kRings, 16);

  Write32(kMmioQueueNum, 8);
  Write32(kMmioQueueDescLow, 0x5000);

  EXPECT_EQ(Read32(kMmioQueueNum), 16u);
  EXPECT_EQ(Read32(kMmioQueueDescLow), kRings);
}

TEST_F(MmioTest, RingsOutsideMemoryPutTheDeviceInNeedsReset) {
  Negotiate(kFeatureVersion1);
  SetUpQueue(0, kMemSize - 0x100, 16);

  DriverOk();

  for (int i = 0; i < 1000 && !(Read32(kMmioStatus) & kStatusNeedsReset); ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE(Read32(kMmioStatus) & kStatusNeedsReset);
  EXPECT_TRUE(Read32(kMmioInterruptStatus) & kInterruptConfigChange);
  EXPECT_EQ(device_.activations, 0);
}

TEST_F(MmioTest, ResetReturnsEverythingToInitialState) {
  Negotiate(kFeatureVersion1);
  SetUpQueue(0, kRings, 16);
  DriverOk();
  ASSERT_TRUE(device_.activated.WaitForNotificationWithTimeout(absl::Seconds(10)));
  device_.interrupt->SignalUsedBuffer();

  Write32(kMmioStatus, 0);

  EXPECT_EQ(device_.resets, 1);
  EXPECT_FALSE(device_.active());
  EXPECT_EQ(Read32(kMmioStatus), 0u);
  EXPECT_EQ(Read32(kMmioInterruptStatus), 0u);
  Write32(kMmioQueueSel, 0);
  EXPECT_EQ(Read32(kMmioQueueReady), 0u);
  EXPECT_EQ(Read32(kMmioQueueNum), 64u);
}

TEST_F(MmioTest, InterruptStatusIsAcknowledgedByTheDriver) {
  Negotiate(kFeatureVersion1);
  SetUpQueue(0, kRings, 16);
  DriverOk();
  ASSERT_TRUE(device_.activated.WaitForNotificationWithTimeout(absl::Seconds(10)));

  device_.interrupt->SignalUsedBuffer();
  EXPECT_EQ(Read32(kMmioInterruptStatus), kInterruptUsedBuffer);
  EXPECT_GE(line_.count(), 1u);
  Write32(kMmioInterruptAck, kInterruptUsedBuffer);

  EXPECT_EQ(Read32(kMmioInterruptStatus), 0u);
}

TEST_F(MmioTest, ConfigSpaceIsByteAddressable) {
  uint8_t b = 0;
  transport_->Read(kMmioConfig + 2, std::span(&b, 1));
  uint16_t past = 0xffff;
  transport_->Read(kMmioConfig + 3, std::span(reinterpret_cast<uint8_t*>(&past), 2));

  EXPECT_EQ(b, 0xbe);
  EXPECT_EQ(past, 0x00ef);
}

TEST_F(MmioTest, NarrowRegisterAccessesAreIgnored) {
  uint8_t b = 0xff;
  transport_->Read(kMmioMagicValue, std::span(&b, 1));
  const uint8_t one = 1;
  transport_->Write(kMmioStatus, std::span(&one, 1));

  EXPECT_EQ(b, 0);
  EXPECT_EQ(Read32(kMmioStatus), 0u);
}

TEST_F(MmioTest, DriverOkWithoutFeaturesOkIsIgnored) {
  Write32(kMmioStatus, kStatusAcknowledge | kStatusDriver);
  Write32(kMmioStatus, kStatusAcknowledge | kStatusDriver | kStatusDriverOk);

  EXPECT_FALSE(Read32(kMmioStatus) & kStatusDriverOk);
}

}  // namespace
}  // namespace keel::vmm::virtio
