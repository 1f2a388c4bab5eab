// Tests of the bus and the legacy devices, driven as a vCPU would drive them.
#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/console.h"
#include "vmm/devices/interrupt.h"
#include "vmm/devices/legacy.h"
#include "vmm/devices/serial.h"

namespace keel::vmm {
namespace {

class RecordingExitSink : public ExitSink {
 public:
  void RequestExit(VmExit exit) override { exits.push_back(exit); }
  std::vector<VmExit> exits;
};

class ConstantDevice : public BusDevice {
 public:
  explicit ConstantDevice(uint8_t value) : value_(value) {}
  void Read(uint64_t offset, std::span<uint8_t> data) override {
    last_offset = offset;
    for (auto& b : data) b = value_;
  }
  void Write(uint64_t offset, std::span<const uint8_t> data) override {
    last_offset = offset;
    written.assign(data.begin(), data.end());
  }
  uint64_t last_offset = ~0ull;
  std::vector<uint8_t> written;

 private:
  uint8_t value_;
};

uint8_t In8(BusDevice& d, uint64_t offset) {
  uint8_t v = 0;
  d.Read(offset, std::span(&v, 1));
  return v;
}

void Out8(BusDevice& d, uint64_t offset, uint8_t v) { d.Write(offset, std::span(&v, 1)); }

TEST(BusTest, DispatchesToTheDeviceWithOffset) {
  Bus bus("test");
  ConstantDevice a(0xaa), b(0xbb);
  ASSERT_TRUE(bus.Register(0x100, 0x10, &a, "a").ok());
  ASSERT_TRUE(bus.Register(0x110, 0x10, &b, "b").ok());
  uint8_t v = 0;

  EXPECT_TRUE(bus.Read(0x113, std::span(&v, 1)));

  EXPECT_EQ(v, 0xbb);
  EXPECT_EQ(b.last_offset, 3u);
}

TEST(BusTest, UnclaimedReadsAreAllOnes) {
  Bus bus("test");
  uint32_t v = 0;

  EXPECT_FALSE(bus.Read(0x42, std::span(reinterpret_cast<uint8_t*>(&v), 4)));

  EXPECT_EQ(v, 0xffffffffu);
}

TEST(BusTest, RejectsOverlapsEmptyAndWrappingRanges) {
  Bus bus("test");
  ConstantDevice a(0), b(0);
  ASSERT_TRUE(bus.Register(0x100, 0x10, &a, "a").ok());

  EXPECT_EQ(bus.Register(0x10f, 2, &b, "b").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(bus.Register(0xf0, 0x11, &b, "b").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(bus.Register(0x200, 0, &b, "b").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bus.Register(~0ull - 1, 4, &b, "b").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(bus.Register(0x110, 1, &b, "b").ok());
}

class SerialTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(pipe2(pipe_, O_NONBLOCK | O_CLOEXEC), 0);
    sink_ = std::make_unique<FdConsoleSink>(std::vector<int>{pipe_[1]});
    serial_ = std::make_unique<Serial8250>(&irq_, std::vector<ConsoleSink*>{sink_.get(), &log_});
  }
  void TearDown() override {
    close(pipe_[0]);
    close(pipe_[1]);
  }
  std::string Output() {
    char buf[256];
    ssize_t n = read(pipe_[0], buf, sizeof(buf));
    return n > 0 ? std::string(buf, n) : std::string();
  }

  int pipe_[2];
  std::unique_ptr<FdConsoleSink> sink_;
  ConsoleLog log_{8};
  CountingInterrupt irq_;
  std::unique_ptr<Serial8250> serial_;
};

TEST_F(SerialTest, TransmitsBytesToTheConsole) {
  Out8(*serial_, 0, 'h');
  Out8(*serial_, 0, 'i');

  EXPECT_EQ(Output(), "hi");
  EXPECT_EQ(log_.Read(0, 100).data, "hi");
  EXPECT_EQ(serial_->bytes_written(), 2u);
  EXPECT_EQ(In8(*serial_, 5) & 0x60, 0x60);  // THR empty and transmitter idle
}

TEST_F(SerialTest, DivisorLatchDoesNotTransmit) {
  Out8(*serial_, 3, 0x80);  // DLAB
  Out8(*serial_, 0, 0x01);
  Out8(*serial_, 1, 0x00);
  Out8(*serial_, 3, 0x03);

  EXPECT_EQ(Output(), "");
  EXPECT_EQ(In8(*serial_, 3), 0x03);
}

TEST_F(SerialTest, EnablingThrInterruptRaisesItAndIirReadAcknowledges) {
  Out8(*serial_, 1, 0x02);  // ETBEI

  EXPECT_EQ(irq_.count(), 1u);
  EXPECT_EQ(In8(*serial_, 2) & 0x0f, 0x02);  // THR empty pending
  EXPECT_EQ(In8(*serial_, 2) & 0x0f, 0x01);  // acknowledged by the read
}

TEST_F(SerialTest, EachTransmittedByteRaisesThrInterruptWhenEnabled) {
  Out8(*serial_, 1, 0x02);
  Out8(*serial_, 0, 'a');
  Out8(*serial_, 0, 'b');

  EXPECT_EQ(irq_.count(), 3u);
}

TEST_F(SerialTest, InputIsReadInOrderWithDataReady) {
  const uint8_t in[] = {'o', 'k'};
  serial_->QueueInput(in);

  EXPECT_EQ(In8(*serial_, 5) & 0x01, 0x01);
  EXPECT_EQ(In8(*serial_, 0), 'o');
  EXPECT_EQ(In8(*serial_, 0), 'k');
  EXPECT_EQ(In8(*serial_, 5) & 0x01, 0x00);
}

TEST_F(SerialTest, LoopbackEchoesAndMirrorsModemLines) {
  Out8(*serial_, 4, 0x10 | 0x0a);  // loop, RTS, OUT2

  EXPECT_EQ(In8(*serial_, 6) & 0xf0, 0x90);  // CTS and DCD
  Out8(*serial_, 0, 'x');
  EXPECT_EQ(In8(*serial_, 0), 'x');
  EXPECT_EQ(Output(), "");
}

TEST_F(SerialTest, WideAndOutOfRangeAccessesAreHarmless) {
  uint32_t wide = 0xffffffff;
  serial_->Read(5, std::span(reinterpret_cast<uint8_t*>(&wide), 4));
  Out8(*serial_, 9, 'z');

  EXPECT_EQ(wide & 0xffffff00, 0u);
  EXPECT_EQ(Output(), "");
}

TEST(ConsoleLogTest, KeepsTheNewestBytesWithAbsoluteOffsets) {
  ConsoleLog log(4);
  const std::string text = "abcdefg";

  log.Write(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  ConsoleLog::Chunk from_start = log.Read(0, 100);
  ConsoleLog::Chunk tail = log.Read(5, 1);

  EXPECT_EQ(from_start.data, "defg");
  EXPECT_EQ(from_start.offset, 3u);
  EXPECT_TRUE(from_start.truncated);
  EXPECT_EQ(from_start.end, 7u);
  EXPECT_EQ(tail.data, "f");
  EXPECT_FALSE(tail.truncated);
  EXPECT_EQ(log.Read(7, 10).data, "");
  EXPECT_EQ(log.Read(99, 10).offset, 7u);
}

TEST(ConsoleLogTest, WaitForDataSeesLaterWrites) {
  ConsoleLog log(16);
  const uint8_t x = 'x';

  EXPECT_FALSE(log.WaitForData(0, absl::Milliseconds(1)));
  log.Write(std::span(&x, 1));
  EXPECT_TRUE(log.WaitForData(0, absl::Milliseconds(1)));
  EXPECT_FALSE(log.WaitForData(1, absl::Milliseconds(1)));
}

TEST(I8042Test, PulseResetCommandRequestsReset) {
  RecordingExitSink sink;
  I8042 dev(&sink);

  Out8(dev, 4, 0xfe);

  ASSERT_EQ(sink.exits.size(), 1u);
  EXPECT_EQ(sink.exits[0].kind, VmExit::Kind::kReset);
  EXPECT_EQ(sink.exits[0].status, 0);
}

TEST(I8042Test, CommandByteRoundTripsThroughTheDataPort) {
  RecordingExitSink sink;
  I8042 dev(&sink);

  Out8(dev, 4, 0x60);
  Out8(dev, 0, 0x47);
  Out8(dev, 4, 0x20);

  EXPECT_EQ(In8(dev, 4) & 0x01, 0x01);  // output buffer full
  EXPECT_EQ(In8(dev, 0), 0x47);
  EXPECT_EQ(In8(dev, 4) & 0x01, 0x00);
  EXPECT_TRUE(sink.exits.empty());
}

TEST(DebugExitTest, WrittenValueBecomesTheExitStatus) {
  RecordingExitSink sink;
  DebugExit dev(&sink);
  const uint32_t value = 42;

  dev.Write(0, std::span(reinterpret_cast<const uint8_t*>(&value), 4));

  ASSERT_EQ(sink.exits.size(), 1u);
  EXPECT_EQ(sink.exits[0].kind, VmExit::Kind::kDebugExit);
  EXPECT_EQ(sink.exits[0].status, 42);
}

TEST(DebugExitTest, ValuesAbove255Saturate) {
  RecordingExitSink sink;
  DebugExit dev(&sink);
  const uint32_t value = 0x1234;

  dev.Write(0, std::span(reinterpret_cast<const uint8_t*>(&value), 4));

  ASSERT_EQ(sink.exits.size(), 1u);
  EXPECT_EQ(sink.exits[0].status, 255);
}

TEST(AcpiSleepControlTest, S5WithSleepEnablePowersOff) {
  RecordingExitSink sink;
  AcpiSleepControl dev(&sink, 5);

  Out8(dev, 0, (5 << 2));         // SLP_TYP without SLP_EN: nothing
  Out8(dev, 0, (3 << 2) | 0x20);  // another sleep state: nothing
  EXPECT_TRUE(sink.exits.empty());
  Out8(dev, 0, (5 << 2) | 0x20);

  ASSERT_EQ(sink.exits.size(), 1u);
  EXPECT_EQ(sink.exits[0].kind, VmExit::Kind::kPoweroff);
}

}  // namespace
}  // namespace keel::vmm
