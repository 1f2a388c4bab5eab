#include "vmm/devices/legacy.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace keel::vmm {

namespace {

uint64_t LittleEndian(std::span<const uint8_t> data) {
  uint64_t v = 0;
  for (size_t i = 0; i < data.size() && i < 8; ++i) v |= uint64_t{data[i]} << (8 * i);
  return v;
}

// i8042 commands (IBM PC/AT technical reference; the ones Linux's i8042 driver issues).
constexpr uint8_t kCmdReadCommandByte = 0x20;
constexpr uint8_t kCmdWriteCommandByte = 0x60;
constexpr uint8_t kCmdSelfTest = 0xaa;
constexpr uint8_t kCmdReadOutputPort = 0xd0;
constexpr uint8_t kCmdWriteOutputPort = 0xd1;
constexpr uint8_t kCmdPulseReset = 0xfe;

constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusSystemFlag = 0x04;
constexpr uint8_t kStatusCommand = 0x08;  // last write was to the command port

// SLP_TYP is bits 2-4 and SLP_EN bit 5 of the sleep control register (ACPI 6.4 §4.8.3.7).
constexpr uint8_t kSleepEnable = 1 << 5;

}  // namespace

void I8042::Read(uint64_t offset, std::span<uint8_t> data) {
  if (data.empty()) return;
  memset(data.data(), 0, data.size());
  absl::MutexLock lock(&mu_);
  if (offset == 0) {
    data[0] = output_ >= 0 ? static_cast<uint8_t>(output_) : 0;
    output_ = -1;
  } else if (offset == kCommandPort - kDataPort) {
    data[0] = kStatusSystemFlag | (pending_command_ ? kStatusCommand : 0) |
              (output_ >= 0 ? kStatusOutputFull : 0);
  } else {
    data[0] = 0xff;
  }
}

void I8042::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  const uint8_t value = data[0];
  bool reset = false;
  {
    absl::MutexLock lock(&mu_);
    if (offset == kCommandPort - kDataPort) {
      pending_command_ = 0;
      switch (value) {
        case kCmdReadCommandByte:
          output_ = command_byte_;
          break;
        case kCmdWriteCommandByte:
        case kCmdWriteOutputPort:
          pending_command_ = value;
          break;
        case kCmdSelfTest:
          output_ = 0x55;  // self-test passed
          break;
        case kCmdReadOutputPort:
          output_ = 0x01;  // reset line not asserted
          break;
        case kCmdPulseReset:
          reset = true;
          break;
        default:
          break;
      }
    } else if (offset == 0) {
      if (pending_command_ == kCmdWriteCommandByte) {
        command_byte_ = value;
      } else if (pending_command_ == kCmdWriteOutputPort && !(value & 0x01)) {
        reset = true;  // output port bit 0 low asserts the CPU reset line
      }
      pending_command_ = 0;
    }
  }
  if (reset) exit_->RequestExit({VmExit::Kind::kReset, 0, "guest reset through the i8042"});
}

void DebugExit::Read(uint64_t, std::span<uint8_t> data) { memset(data.data(), 0, data.size()); }

void DebugExit::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != 0) return;
  const uint64_t value = LittleEndian(data);
  const int status = value > 255 ? 255 : static_cast<int>(value);
  exit_->RequestExit({VmExit::Kind::kDebugExit, status,
                      value > 255 ? absl::StrFormat("debug-exit value %u reported as 255", value)
                                  : std::string()});
}

void AcpiSleepControl::Read(uint64_t, std::span<uint8_t> data) {
  memset(data.data(), 0, data.size());
}

void AcpiSleepControl::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != 0 || data.empty()) return;
  const uint8_t value = data[0];
  const uint8_t type = (value >> 2) & 0x7;
  if ((value & kSleepEnable) && type == s5_type_) {
    exit_->RequestExit({VmExit::Kind::kPoweroff, 0, "guest powered off (ACPI S5)"});
  }
}

void NullDevice::Read(uint64_t, std::span<uint8_t> data) { memset(data.data(), 0xff, data.size()); }

}  // namespace keel::vmm
