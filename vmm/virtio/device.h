// VirtioDevice: what a virtio device implements, independent of its transport.
//
// Lifecycle (virtio 1.2 §3.1): inactive -> Activate() after the driver sets DRIVER_OK ->
// active, processing queue notifications -> Reset() when the driver writes status 0 -> back
// to inactive. A device holds guest memory, its interrupt and its queues only while active.
//
// Threading: ReadConfig/WriteConfig run on vCPU threads (the transport serializes them with
// its own lock); Activate, ProcessQueue and Reset run on the VM's I/O thread, the only thread
// that touches the queues. A device that needs its own fds watched (a tap, io_uring
// completions) registers them with `ActivateContext::loop` in Activate and removes them in
// OnReset.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "base/event_loop.h"
#include "vmm/devices/interrupt.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/device_stats.h"
#include "vmm/virtio/queue.h"

namespace keel::vmm::virtio {

// Device ids (§5).
inline constexpr uint32_t kDeviceIdNet = 1;
inline constexpr uint32_t kDeviceIdBlock = 2;

// Feature bits every device may offer; the transport handles them (§6).
inline constexpr uint64_t kFeatureIndirectDesc = 1ull << 28;
inline constexpr uint64_t kFeatureEventIdx = 1ull << 29;
inline constexpr uint64_t kFeatureVersion1 = 1ull << 32;

// Device status bits (§2.1).
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusNeedsReset = 64;
inline constexpr uint32_t kStatusFailed = 128;

// Interrupt status bits (§4.2.2, InterruptStatus).
inline constexpr uint32_t kInterruptUsedBuffer = 1;
inline constexpr uint32_t kInterruptConfigChange = 2;

// The device's line to the driver: sets the interrupt status bit and raises the edge.
// Thread-safe.
class VirtioInterrupt {
 public:
  explicit VirtioInterrupt(Interrupt* line) : line_(line) {}
  void SignalUsedBuffer() { Raise(kInterruptUsedBuffer); }
  void SignalConfigChange() { Raise(kInterruptConfigChange); }
  uint32_t status() const { return status_.load(std::memory_order_acquire); }
  void Acknowledge(uint32_t bits) { status_.fetch_and(~bits, std::memory_order_acq_rel); }
  void Clear() { status_.store(0, std::memory_order_release); }

 private:
  void Raise(uint32_t bit) {
    status_.fetch_or(bit, std::memory_order_acq_rel);
    line_->Trigger();
  }
  Interrupt* line_;  // not owned
  std::atomic<uint32_t> status_{0};
};

struct ActivateContext {
  const GuestMemory* memory;      // valid until Reset
  uint64_t features;              // negotiated (driver-accepted) features
  std::span<Queue> queues;        // activated, ready queues
  VirtioInterrupt* interrupt;     // valid until Reset
  EventLoop* loop;                // the I/O thread's loop
  // Puts the device in NEEDS_RESET (§2.1.2) after the guest broke a queue; I/O thread only.
  std::function<void(absl::string_view why)> needs_reset;
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  virtual uint32_t device_id() const = 0;
  // Device-specific features offered; the transport adds VERSION_1, EVENT_IDX and
  // INDIRECT_DESC and negotiates them.
  virtual uint64_t device_features() const = 0;
  virtual size_t num_queues() const = 0;
  virtual uint16_t max_queue_size() const { return 256; }
  // Device configuration space (§4.2.2 Config, offsets from 0x100). Out-of-range reads
  // return zeros, out-of-range writes are ignored.
  virtual void ReadConfig(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void WriteConfig(uint64_t offset, std::span<const uint8_t> data) { (void)offset, (void)data; }

  // Called once the driver set DRIVER_OK. An error puts the device in NEEDS_RESET.
  virtual absl::Status Activate(ActivateContext context) = 0;
  // The driver notified queue `index` (or the device's own fds asked for a pass).
  virtual void ProcessQueue(size_t index) = 0;
  // Returns the device to its inactive state: drops guest memory, interrupt and queues;
  // completes nothing further. Called on the I/O thread; in-flight backend work must be
  // finished or cancelled before it returns.
  void Reset() {
    OnReset();
    active_ = false;
  }
  bool active() const { return active_; }
  // Adds the device's counters to `stats` (vmm/virtio/device_stats.h). I/O thread only.
  virtual void GetStats(DeviceStats& stats) const { (void)stats; }

 protected:
  void set_active() { active_ = true; }
  virtual void OnReset() = 0;

 private:
  bool active_ = false;
};

// Copies `value`'s bytes at `offset` of a device config struct into `data` (zero-filling
// what lies outside it): the common shape of ReadConfig.
void ReadConfigBytes(std::span<const uint8_t> config, uint64_t offset, std::span<uint8_t> data);

}  // namespace keel::vmm::virtio
