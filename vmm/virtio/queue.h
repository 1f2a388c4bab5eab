// Queue: the device side of one split virtqueue (virtio 1.2 §2.7).
//
// The driver (the guest) owns the descriptor table and the available ring; the device owns
// the used ring. Everything read from guest memory is hostile: every index is range-checked,
// every descriptor's buffer is bounds-checked through GuestMemory before a host pointer is
// formed, chains are bounded (a loop ends as kTooLong), and each descriptor is copied once
// before it is validated, so a guest rewriting it concurrently cannot pass a check with one
// value and be used with another.
//
// Threading: the transport writes the configuration fields (size, addresses) on vCPU threads
// while the queue is not ready; once Activate() succeeds, only the device's I/O thread calls
// the other methods. Nothing here allocates.
//
// Typical device loop:
//
//   bool broken = false;
//   do {
//     while (std::optional<uint16_t> head = queue.PopHead(&broken)) {
//       Chain chain = queue.ReadChain(*head, segments);
//       ... handle, then queue.PushUsed(*head, bytes_written) ...
//     }
//   } while (!broken && queue.EnableNotifications());
//   if (broken) ... NEEDS_RESET ...
//   if (queue.ShouldInterrupt()) interrupt.SignalUsed();
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "absl/status/status.h"
#include "vmm/memory/guest_memory.h"

namespace keel::vmm::virtio {

inline constexpr uint16_t kMaxQueueSize = 1024;

// Descriptor flags (virtio 1.2 §2.7.5).
inline constexpr uint16_t kDescFlagNext = 1;
inline constexpr uint16_t kDescFlagWrite = 2;
inline constexpr uint16_t kDescFlagIndirect = 4;
// Ring flags (§2.7.6, §2.7.8).
inline constexpr uint16_t kAvailFlagNoInterrupt = 1;
inline constexpr uint16_t kUsedFlagNoNotify = 1;

// One buffer of a descriptor chain, already checked to lie inside guest memory.
struct Segment {
  uint8_t* host = nullptr;
  uint32_t len = 0;
  bool writable = false;  // device-writable (VIRTQ_DESC_F_WRITE)
};

// Why a chain could not be used. The device completes such a chain with an error.
enum class ChainError : uint8_t {
  kNone,
  kBadIndex,         // a next index or head past the queue size
  kTooLong,          // more descriptors than the queue (or indirect table) holds: a loop
  kOutOfBounds,      // a buffer outside guest memory
  kBadIndirect,      // nested indirect table, INDIRECT with NEXT, bad table size/address
  kWritableFirst,    // a device-readable buffer after a device-writable one (§2.7.4.2)
  kTooManySegments,  // valid, but more buffers than the device accepts
};

const char* ChainErrorName(ChainError error);

struct Chain {
  uint16_t head = 0;
  ChainError error = ChainError::kNone;
  size_t count = 0;         // segments stored in the caller's span
  uint64_t readable = 0;    // bytes in device-readable segments
  uint64_t writable = 0;    // bytes in device-writable segments
  // The chain's final buffer, when the walk reached it with a valid descriptor even if the
  // chain as a whole is unusable: devices whose status byte ends the chain (virtio-blk) can
  // still report the error there.
  std::optional<Segment> last;
};

class Queue {
 public:
  explicit Queue(uint16_t max_size = kMaxQueueSize) : max_size_(max_size), size_(max_size) {}

  // --- Transport side (guest-written configuration) ---
  uint16_t max_size() const { return max_size_; }
  uint16_t size() const { return size_; }
  void set_size(uint16_t size) { size_ = size; }
  bool ready() const { return ready_; }
  void set_ready(bool ready) { ready_ = ready; }
  uint64_t desc_gpa() const { return desc_gpa_; }
  uint64_t avail_gpa() const { return avail_gpa_; }
  uint64_t used_gpa() const { return used_gpa_; }
  void set_desc_gpa(uint64_t gpa) { desc_gpa_ = gpa; }
  void set_avail_gpa(uint64_t gpa) { avail_gpa_ = gpa; }
  void set_used_gpa(uint64_t gpa) { used_gpa_ = gpa; }

  // Checks the size and that the three ring areas lie in guest memory with the alignment
  // §2.7 requires, and caches their host addresses. `mem` must outlive the activation.
  // `event_idx`: VIRTIO_F_EVENT_IDX was negotiated.
  absl::Status Activate(const GuestMemory& mem, bool event_idx);
  // Back to the state after device reset: not ready, addresses zero, size = max.
  void Reset();
  bool active() const { return mem_ != nullptr; }

  // --- Device side (I/O thread, after Activate) ---

  // The next available chain head, or nullopt. Sets *broken (and returns nullopt) when the
  // available ring itself is corrupt — its index ran more than a queue size ahead, or a head
  // is out of range — after which the device must stop using the queue (NEEDS_RESET).
  std::optional<uint16_t> PopHead(bool* broken);
  // Walks the chain from `head`, storing up to segments.size() buffers. Walks the whole
  // chain (bounded) even past the span's capacity so `readable`, `writable` and `last` are
  // right; reports kTooManySegments then.
  Chain ReadChain(uint16_t head, std::span<Segment> segments) const;
  // Returns a chain to the driver, `written` bytes having been written into it.
  void PushUsed(uint16_t head, uint32_t written);
  // The same in two steps, so a burst of chains is published with one index store: AddUsed
  // fills the next used element, PublishUsed makes every added one visible to the driver.
  // ShouldInterrupt and EnableNotifications publish first, so nothing added is left unseen
  // when the device interrupts or goes idle.
  void AddUsed(uint16_t head, uint32_t written);
  void PublishUsed();
  // Whether the driver asked to be interrupted for the chains pushed since the last call
  // (used_event with EVENT_IDX, else the NO_INTERRUPT flag). §2.7.7.2, §2.7.10.
  bool ShouldInterrupt();
  // Re-arms driver notifications after a processing pass (avail_event with EVENT_IDX, else
  // clears NO_NOTIFY). Returns true if more chains arrived meanwhile: process them too.
  bool EnableNotifications();
  // Asks the driver not to notify while the device is already processing (no-op with
  // EVENT_IDX, where a stale avail_event already suppresses notifications).
  void DisableNotifications();

  uint16_t last_avail_idx() const { return last_avail_idx_; }
  uint16_t used_idx() const { return used_idx_; }

 private:
  uint16_t AvailIdx() const;

  // Configuration.
  uint16_t max_size_;
  uint16_t size_;
  bool ready_ = false;
  uint64_t desc_gpa_ = 0;
  uint64_t avail_gpa_ = 0;
  uint64_t used_gpa_ = 0;

  // Activation state.
  const GuestMemory* mem_ = nullptr;
  bool event_idx_ = false;
  uint8_t* desc_ = nullptr;   // 16 * size bytes
  uint8_t* avail_ = nullptr;  // flags, idx, ring[size], used_event
  uint8_t* used_ = nullptr;   // flags, idx, ring[size] of {id, len}, avail_event
  uint16_t last_avail_idx_ = 0;
  uint16_t avail_idx_seen_ = 0;  // the driver's avail idx when last read
  uint16_t used_idx_ = 0;
  uint16_t published_used_idx_ = 0;  // the used idx the driver can see
  uint16_t signalled_used_idx_ = 0;  // used_idx when ShouldInterrupt last ran
};

}  // namespace keel::vmm::virtio
