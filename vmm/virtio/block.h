// BlockDevice: virtio-blk (virtio 1.2 §5.2) on a block::Backend.
//
// One request queue. A queue notification pops every available chain, parses each
// (block_request.h), submits the valid ones to the backend and kicks it once; requests that
// need no I/O (GET_ID, refused ones) complete at once. Completions are reaped from the
// backend's eventfd on the I/O thread: status byte, used ring, then one interrupt per batch,
// as EVENT_IDX / NO_INTERRUPT allow. Data moves straight between the image and guest memory.
//
// Request state is indexed by descriptor head (a head is in flight at most once), allocated
// when the device is created: nothing allocates per request. Every chain popped is completed
// exactly once: by the backend's completion, at once when refused or handed back by the
// backend, or — after a driver reset — not at all, because the reset waits for the backend to
// finish every in-flight request and the driver has forgotten them.
//
// Features offered: SIZE_MAX, SEG_MAX, BLK_SIZE, FLUSH, TOPOLOGY, RO (read-only images),
// DISCARD and WRITE_ZEROES (when the backend supports them; not on read-only images). A driver
// that declines FLUSH gets a write-through disk: each write is followed by a backend flush
// before it completes (§5.2.5).
//
// Threading: ReadConfig on vCPU threads (the configuration is immutable); everything else on
// the VM's I/O thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "block/backend.h"
#include "vmm/virtio/block_request.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/device_stats.h"

namespace keel::vmm::virtio {

// Device feature bits (§5.2.3).
inline constexpr uint64_t kBlkFeatureSizeMax = 1ull << 1;
inline constexpr uint64_t kBlkFeatureSegMax = 1ull << 2;
inline constexpr uint64_t kBlkFeatureRo = 1ull << 5;
inline constexpr uint64_t kBlkFeatureBlkSize = 1ull << 6;
inline constexpr uint64_t kBlkFeatureFlush = 1ull << 9;
inline constexpr uint64_t kBlkFeatureTopology = 1ull << 10;
inline constexpr uint64_t kBlkFeatureDiscard = 1ull << 13;
inline constexpr uint64_t kBlkFeatureWriteZeroes = 1ull << 14;

// struct virtio_blk_config (§5.2.4), up to the secure-erase fields.
inline constexpr size_t kBlkConfigSize = 72;

struct BlockDeviceOptions {
  // GET_ID answer: up to 20 bytes, zero-padded.
  std::string serial;
  // Largest queue the driver may choose (QueueNumMax). The backend must accept at least this
  // many requests in flight (block::OpenOptions::max_in_flight).
  uint16_t queue_size = 256;
  // Largest data buffer (size_max) in bytes.
  uint32_t size_max = 1u << 20;
  // Largest DISCARD / WRITE_ZEROES range in 512-byte sectors.
  uint32_t max_discard_sectors = 1u << 22;
  uint32_t max_write_zeroes_sectors = 1u << 22;
};

// Counters for tests and stats (I/O thread).
struct BlockQueueCounters {
  uint64_t read_ops = 0;     // accepted by the backend, by type
  uint64_t write_ops = 0;
  uint64_t flush_ops = 0;
  uint64_t read_bytes = 0;
  uint64_t write_bytes = 0;
  uint64_t requests = 0;     // chains popped
  uint64_t submitted = 0;    // accepted by the backend
  uint64_t errors = 0;       // completed with a status other than OK, or without a status
  uint64_t interrupts = 0;   // used-buffer interrupts raised
  uint64_t kicks = 0;        // backend Kick() calls
};

class BlockDevice : public VirtioDevice {
 public:
  // Requires backend->properties().max_in_flight >= options.queue_size and max_segments >= 1.
  static absl::StatusOr<std::unique_ptr<BlockDevice>> Create(
      std::unique_ptr<block::Backend> backend, BlockDeviceOptions options);
  // Waits for in-flight I/O (through the backend's destructor) and stops watching it.
  ~BlockDevice() override;

  uint32_t device_id() const override { return kDeviceIdBlock; }
  uint64_t device_features() const override { return features_; }
  size_t num_queues() const override { return 1; }
  uint16_t max_queue_size() const override { return options_.queue_size; }
  void ReadConfig(uint64_t offset, std::span<uint8_t> data) override;

  absl::Status Activate(ActivateContext context) override;
  void ProcessQueue(size_t index) override;

  const BlockQueueCounters& stats() const { return stats_; }
  void GetStats(DeviceStats& stats) const override;
  size_t in_flight() const { return in_flight_count_; }

 protected:
  void OnReset() override;

 private:
  BlockDevice(std::unique_ptr<block::Backend> backend, BlockDeviceOptions options);
  // Pops, parses and submits every available chain, then re-arms notifications.
  void DrainQueue();
  void HandleChain(uint16_t head, bool* kick);
  void OnBackendReady();
  void ReapCompletions();
  // Writes `status` and returns the chain with `written` bytes.
  void Complete(uint16_t head, uint8_t* status_byte, uint8_t status, uint32_t written);
  void CompleteGetId(uint16_t head, const ParsedRequest& req);
  void MaybeInterrupt();
  void Break(absl::string_view why);

  std::unique_ptr<block::Backend> backend_;
  BlockDeviceOptions options_;
  uint64_t features_ = 0;
  uint8_t config_[kBlkConfigSize] = {};
  uint32_t seg_max_ = 0;

  // Activation state (I/O thread).
  const GuestMemory* memory_ = nullptr;
  Queue* queue_ = nullptr;
  VirtioInterrupt* interrupt_ = nullptr;
  EventLoop* loop_ = nullptr;
  std::function<void(absl::string_view)> needs_reset_;
  BlockLimits limits_;
  bool write_through_ = false;  // FLUSH not negotiated
  bool watching_ = false;
  bool broken_ = false;
  bool pending_interrupt_ = false;

  // Per descriptor head: the request in flight.
  struct Slot {
    uint8_t* status = nullptr;  // host address of the status byte
    uint32_t data_in = 0;       // device-writable data bytes (the used length - 1 on success)
    bool busy = false;
    bool sync_after = false;  // write-through: flush before completing
  };
  std::vector<Slot> slots_;
  size_t in_flight_count_ = 0;
  // Scratch for one chain (seg_max data buffers + header + status) and its iovecs.
  std::vector<Segment> segments_;
  std::vector<iovec> iov_;
  BlockQueueCounters stats_;
};

}  // namespace keel::vmm::virtio
