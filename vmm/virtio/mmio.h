// MmioTransport: the virtio-mmio transport, version 2 register layout (virtio 1.2 §4.2.2),
// for one device in a 4 KiB window of the MMIO gap.
//
// Register accesses arrive on vCPU threads and are serialized by one lock. Everything that
// touches the queues or the I/O thread's event loop — activation on DRIVER_OK, queue
// processing, reset — runs on the I/O thread: activation is posted to it, and a reset waits
// there for the device to stop (the driver may reuse the rings as soon as its status write
// returns). Queue notifications bypass userspace: each queue has an eventfd the VMM
// registers with KVM as an ioeventfd on QueueNotify with the queue index as datamatch.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "base/event_loop.h"
#include "base/eventfd.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/interrupt.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/device.h"

namespace keel::vmm::virtio {

// Register offsets (§4.2.2).
inline constexpr uint64_t kMmioMagicValue = 0x000;
inline constexpr uint64_t kMmioVersion = 0x004;
inline constexpr uint64_t kMmioDeviceId = 0x008;
inline constexpr uint64_t kMmioVendorId = 0x00c;
inline constexpr uint64_t kMmioDeviceFeatures = 0x010;
inline constexpr uint64_t kMmioDeviceFeaturesSel = 0x014;
inline constexpr uint64_t kMmioDriverFeatures = 0x020;
inline constexpr uint64_t kMmioDriverFeaturesSel = 0x024;
inline constexpr uint64_t kMmioQueueSel = 0x030;
inline constexpr uint64_t kMmioQueueNumMax = 0x034;
inline constexpr uint64_t kMmioQueueNum = 0x038;
inline constexpr uint64_t kMmioQueueReady = 0x044;
inline constexpr uint64_t kMmioQueueNotify = 0x050;
inline constexpr uint64_t kMmioInterruptStatus = 0x060;
inline constexpr uint64_t kMmioInterruptAck = 0x064;
inline constexpr uint64_t kMmioStatus = 0x070;
inline constexpr uint64_t kMmioQueueDescLow = 0x080;
inline constexpr uint64_t kMmioQueueDescHigh = 0x084;
inline constexpr uint64_t kMmioQueueDriverLow = 0x090;
inline constexpr uint64_t kMmioQueueDriverHigh = 0x094;
inline constexpr uint64_t kMmioQueueDeviceLow = 0x0a0;
inline constexpr uint64_t kMmioQueueDeviceHigh = 0x0a4;
inline constexpr uint64_t kMmioShmSel = 0x0ac;
inline constexpr uint64_t kMmioShmLenLow = 0x0b0;
inline constexpr uint64_t kMmioShmLenHigh = 0x0b4;
inline constexpr uint64_t kMmioShmBaseLow = 0x0b8;
inline constexpr uint64_t kMmioShmBaseHigh = 0x0bc;
inline constexpr uint64_t kMmioConfigGeneration = 0x0fc;
inline constexpr uint64_t kMmioConfig = 0x100;

inline constexpr uint32_t kMmioMagic = 0x74726976;  // "virt"
inline constexpr uint32_t kMmioVendor = 0x4c45454b; // "KEEL"

class MmioTransport : public BusDevice {
 public:
  // `device`, `memory`, `line` and `loop` are not owned and must outlive the transport.
  // `name` labels log lines ("virtio-blk vda").
  static absl::StatusOr<std::unique_ptr<MmioTransport>> Create(VirtioDevice* device,
                                                               const GuestMemory* memory,
                                                               Interrupt* line, EventLoop* loop,
                                                               std::string name);
  ~MmioTransport() override;

  // Queue-notify eventfds, one per queue, in queue order. The VMM registers each with KVM as
  // an ioeventfd at base + kMmioQueueNotify, 4 bytes, datamatch = its index.
  std::vector<int> notify_fds() const;

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  // For tests and stats.
  uint32_t status() const;
  uint64_t driver_features() const;

 private:
  MmioTransport(VirtioDevice* device, const GuestMemory* memory, Interrupt* line,
                EventLoop* loop, std::string name);
  uint32_t ReadRegister(uint64_t offset) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteRegister(uint64_t offset, uint32_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteStatus(uint32_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Queue* SelectedQueue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t OfferedFeatures() const;

  // I/O thread.
  void ActivateOnIoThread();
  void ResetOnIoThread();
  void SetNeedsReset(absl::string_view why);
  void OnNotify(size_t queue);

  VirtioDevice* device_;
  const GuestMemory* memory_;
  VirtioInterrupt interrupt_;
  EventLoop* loop_;
  std::string name_;
  std::vector<EventFd> notify_;

  mutable absl::Mutex mu_;
  uint32_t status_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t device_features_sel_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t driver_features_sel_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t driver_features_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t queue_sel_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t config_generation_ ABSL_GUARDED_BY(mu_) = 0;
  // Written by vCPU threads only while the queue is not ready and the device inactive; read
  // by the I/O thread only while active.
  std::vector<Queue> queues_;
  // I/O thread only: the device is active and its queues may be processed.
  bool running_ = false;
};

}  // namespace keel::vmm::virtio
