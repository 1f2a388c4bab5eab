#include "vmm/virtio/queue.h"

#include <atomic>
#include <cstring>

#include "absl/strings/str_format.h"

namespace keel::vmm::virtio {

namespace {

// struct virtq_desc (§2.7.5), copied out of guest memory before use.
struct Descriptor {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(Descriptor) == 16);

constexpr uint64_t kRingHeader = 4;  // flags + idx

uint16_t LoadAcquire(const uint8_t* p) {
  return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(const_cast<uint8_t*>(p)))
      .load(std::memory_order_acquire);
}

uint16_t LoadRelaxed(const uint8_t* p) {
  return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(const_cast<uint8_t*>(p)))
      .load(std::memory_order_relaxed);
}

void Store(uint8_t* p, uint16_t v, std::memory_order order) {
  std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).store(v, order);
}

// vring_need_event (§2.7.10): has the index crossed `event` going from `old` to `now`?
bool NeedEvent(uint16_t event, uint16_t now, uint16_t old) {
  return static_cast<uint16_t>(now - event - 1) < static_cast<uint16_t>(now - old);
}

}  // namespace

const char* ChainErrorName(ChainError error) {
  switch (error) {
    case ChainError::kNone: return "none";
    case ChainError::kBadIndex: return "descriptor index out of range";
    case ChainError::kTooLong: return "descriptor chain longer than the queue (loop)";
    case ChainError::kOutOfBounds: return "buffer outside guest memory";
    case ChainError::kBadIndirect: return "malformed indirect descriptor table";
    case ChainError::kWritableFirst: return "device-readable buffer after a writable one";
    case ChainError::kTooManySegments: return "too many buffers in the chain";
  }
  return "?";
}

absl::Status Queue::Activate(const GuestMemory& mem, bool event_idx) {
  if (size_ == 0 || size_ > max_size_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("queue size %u is not in 1..%u", size_, max_size_));
  }
  // Alignment requirements of §2.7 (Table "Virtqueue Part Alignment").
  if (desc_gpa_ % 16 != 0 || avail_gpa_ % 2 != 0 || used_gpa_ % 4 != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "misaligned virtqueue areas: desc %#x avail %#x used %#x", desc_gpa_, avail_gpa_,
        used_gpa_));
  }
  const uint64_t n = size_;
  uint8_t* desc = mem.HostPtr(desc_gpa_, 16 * n);
  uint8_t* avail = mem.HostPtr(avail_gpa_, kRingHeader + 2 * n + 2);
  uint8_t* used = mem.HostPtr(used_gpa_, kRingHeader + 8 * n + 2);
  if (desc == nullptr || avail == nullptr || used == nullptr) {
    return absl::OutOfRangeError(absl::StrFormat(
        "virtqueue areas outside guest memory: desc %#x avail %#x used %#x (size %u)",
        desc_gpa_, avail_gpa_, used_gpa_, size_));
  }
  mem_ = &mem;
  event_idx_ = event_idx;
  desc_ = desc;
  avail_ = avail;
  used_ = used;
  last_avail_idx_ = 0;
  avail_idx_seen_ = 0;
  used_idx_ = 0;
  published_used_idx_ = 0;
  signalled_used_idx_ = 0;
  return absl::OkStatus();
}

void Queue::Reset() {
  size_ = max_size_;
  ready_ = false;
  desc_gpa_ = avail_gpa_ = used_gpa_ = 0;
  mem_ = nullptr;
  desc_ = avail_ = used_ = nullptr;
  event_idx_ = false;
  last_avail_idx_ = avail_idx_seen_ = used_idx_ = published_used_idx_ = signalled_used_idx_ = 0;
}

uint16_t Queue::AvailIdx() const { return LoadAcquire(avail_ + 2); }

std::optional<uint16_t> Queue::PopHead(bool* broken) {
  // The driver's index is read again only when the chains it last announced are used up: the
  // cache line it lives on is the one the driver keeps writing.
  if (avail_idx_seen_ == last_avail_idx_) avail_idx_seen_ = AvailIdx();
  const uint16_t pending = static_cast<uint16_t>(avail_idx_seen_ - last_avail_idx_);
  if (pending == 0) return std::nullopt;
  if (pending > size_) {
    *broken = true;  // the driver claims more chains than the ring can hold
    return std::nullopt;
  }
  uint16_t head;
  memcpy(&head, avail_ + kRingHeader + 2 * (last_avail_idx_ % size_), 2);
  if (head >= size_) {
    *broken = true;  // cannot even be returned through the used ring
    return std::nullopt;
  }
  ++last_avail_idx_;
  return head;
}

Chain Queue::ReadChain(uint16_t head, std::span<Segment> segments) const {
  Chain chain;
  chain.head = head;
  auto fail = [&](ChainError e) {
    if (chain.error == ChainError::kNone) chain.error = e;
  };
  if (head >= size_) {
    chain.error = ChainError::kBadIndex;
    return chain;
  }
  const uint8_t* table = desc_;
  uint32_t table_size = size_;
  bool indirect = false;
  bool seen_writable = false;
  uint32_t visited = 0;
  uint16_t index = head;
  while (true) {
    if (++visited > table_size) {
      chain.error = ChainError::kTooLong;
      chain.last.reset();
      return chain;
    }
    Descriptor d;
    memcpy(&d, table + 16 * uint64_t{index}, sizeof(d));
    if (d.flags & kDescFlagIndirect) {
      // §2.7.5.3.1: no nested tables, no NEXT alongside INDIRECT, whole descriptors only.
      const uint8_t* t = nullptr;
      const bool ok = !indirect && !(d.flags & kDescFlagNext) && d.len != 0 && d.len % 16 == 0 &&
                      d.len / 16 <= kMaxQueueSize &&
                      (t = mem_->HostPtr(d.addr, d.len)) != nullptr;
      if (!ok) {
        chain.error = ChainError::kBadIndirect;
        chain.last.reset();
        return chain;
      }
      table = t;
      table_size = d.len / 16;
      indirect = true;
      visited = 0;
      index = 0;
      continue;
    }
    Segment seg;
    seg.len = d.len;
    seg.writable = (d.flags & kDescFlagWrite) != 0;
    seg.host = mem_->HostPtr(d.addr, d.len);
    if (seg.host == nullptr) {
      fail(ChainError::kOutOfBounds);
    } else {
      if (!seg.writable && seen_writable) fail(ChainError::kWritableFirst);
      seen_writable |= seg.writable;
      (seg.writable ? chain.writable : chain.readable) += seg.len;
      if (chain.count < segments.size()) {
        segments[chain.count++] = seg;
      } else {
        fail(ChainError::kTooManySegments);
      }
    }
    if (!(d.flags & kDescFlagNext)) {
      if (seg.host != nullptr) chain.last = seg;
      return chain;
    }
    if (d.next >= table_size) {
      chain.error = ChainError::kBadIndex;
      chain.last.reset();
      return chain;
    }
    index = d.next;
  }
}

void Queue::AddUsed(uint16_t head, uint32_t written) {
  // struct virtq_used_elem { le32 id; le32 len; } (§2.7.8)
  uint8_t* elem = used_ + kRingHeader + 8 * static_cast<uint64_t>(used_idx_ % size_);
  const uint32_t id = head;
  memcpy(elem, &id, 4);
  memcpy(elem + 4, &written, 4);
  ++used_idx_;
}

void Queue::PublishUsed() {
  if (published_used_idx_ == used_idx_) return;
  // The elements must be visible before the index that publishes them (§2.7.8.2).
  Store(used_ + 2, used_idx_, std::memory_order_release);
  published_used_idx_ = used_idx_;
}

void Queue::PushUsed(uint16_t head, uint32_t written) {
  AddUsed(head, written);
  PublishUsed();
}

bool Queue::ShouldInterrupt() {
  PublishUsed();
  // Order our used-index store before reading the driver's suppression state (§2.7.10).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const uint16_t old = signalled_used_idx_;
  signalled_used_idx_ = used_idx_;
  if (old == used_idx_) return false;
  if (event_idx_) {
    const uint16_t used_event = LoadRelaxed(avail_ + kRingHeader + 2 * uint64_t{size_});
    return NeedEvent(used_event, used_idx_, old);
  }
  return !(LoadRelaxed(avail_) & kAvailFlagNoInterrupt);
}

bool Queue::EnableNotifications() {
  PublishUsed();  // the driver may be waiting for these before it posts more
  if (event_idx_) {
    // avail_event: notify me once you publish past what I have consumed (§2.7.10).
    Store(used_ + kRingHeader + 8 * uint64_t{size_}, last_avail_idx_, std::memory_order_relaxed);
  } else {
    Store(used_, 0, std::memory_order_relaxed);
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  avail_idx_seen_ = AvailIdx();
  return avail_idx_seen_ != last_avail_idx_;
}

void Queue::DisableNotifications() {
  if (!event_idx_) Store(used_, kUsedFlagNoNotify, std::memory_order_relaxed);
}

}  // namespace keel::vmm::virtio
