// VirtqDriver: the guest side of a split virtqueue, for tests. Lays out the descriptor
// table and rings in real (test) guest memory and plays the driver: adds chains, publishes
// them, reads the used ring back. Also writes deliberately broken chains.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/queue.h"

namespace keel::vmm::virtio::testing {

struct Buffer {
  uint64_t gpa;
  uint32_t len;
  bool writable = false;
};

struct UsedElem {
  uint32_t id;
  uint32_t len;
};

class VirtqDriver {
 public:
  // Rings at `base` (desc), then avail, then used, each suitably aligned.
  VirtqDriver(const GuestMemory& mem, uint64_t base, uint16_t size)
      : mem_(mem), size_(size), desc_(base), avail_(base + 16ull * size),
        used_((avail_ + 6 + 2ull * size + 3) & ~3ull) {
    mem_.Fill(base, 0, used_ + 6 + 8ull * size - base).IgnoreError();
  }

  uint64_t desc_gpa() const { return desc_; }
  uint64_t avail_gpa() const { return avail_; }
  uint64_t used_gpa() const { return used_; }
  uint16_t size() const { return size_; }

  // Points `queue` at these rings and activates it.
  absl::Status Attach(Queue& queue, bool event_idx = false) const {
    queue.set_size(size_);
    queue.set_desc_gpa(desc_);
    queue.set_avail_gpa(avail_);
    queue.set_used_gpa(used_);
    queue.set_ready(true);
    return queue.Activate(mem_, event_idx);
  }

  // Writes descriptor `index` directly.
  void SetDesc(uint16_t index, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    WriteDesc(desc_, index, addr, len, flags, next);
  }

  // Adds a chain of `buffers` using descriptors from the next free slot; returns its head.
  uint16_t AddChain(const std::vector<Buffer>& buffers) {
    const uint16_t head = next_desc_;
    for (size_t i = 0; i < buffers.size(); ++i) {
      const bool last = i + 1 == buffers.size();
      const uint16_t index = static_cast<uint16_t>((head + i) % size_);
      SetDesc(index, buffers[i].gpa, buffers[i].len,
              static_cast<uint16_t>((last ? 0 : kDescFlagNext) |
                                    (buffers[i].writable ? kDescFlagWrite : 0)),
              static_cast<uint16_t>((index + 1) % size_));
    }
    next_desc_ = static_cast<uint16_t>((head + buffers.size()) % size_);
    return head;
  }

  // Writes `buffers` as an indirect table at `table_gpa` and adds one descriptor for it.
  uint16_t AddIndirectChain(uint64_t table_gpa, const std::vector<Buffer>& buffers) {
    for (size_t i = 0; i < buffers.size(); ++i) {
      const bool last = i + 1 == buffers.size();
      WriteDesc(table_gpa, static_cast<uint16_t>(i), buffers[i].gpa, buffers[i].len,
                static_cast<uint16_t>((last ? 0 : kDescFlagNext) |
                                      (buffers[i].writable ? kDescFlagWrite : 0)),
                static_cast<uint16_t>(i + 1));
    }
    const uint16_t head = next_desc_;
    SetDesc(head, table_gpa, static_cast<uint32_t>(16 * buffers.size()), kDescFlagIndirect, 0);
    next_desc_ = static_cast<uint16_t>((head + 1) % size_);
    return head;
  }

  // Puts `head` in the available ring and publishes it.
  void Publish(uint16_t head) {
    const uint16_t idx = AvailIdx();
    Write16(avail_ + 4 + 2ull * (idx % size_), head);
    Write16(avail_ + 2, static_cast<uint16_t>(idx + 1));
  }
  void SetAvailIdx(uint16_t idx) { Write16(avail_ + 2, idx); }
  uint16_t AvailIdx() const { return Read16(avail_ + 2); }
  void SetAvailFlags(uint16_t flags) { Write16(avail_, flags); }
  void SetUsedEvent(uint16_t v) { Write16(avail_ + 4 + 2ull * size_, v); }
  uint16_t AvailEvent() const { return Read16(used_ + 4 + 8ull * size_); }
  uint16_t UsedFlags() const { return Read16(used_); }

  uint16_t UsedIdx() const { return Read16(used_ + 2); }
  // The next used element not yet consumed by this driver, if any.
  std::optional<UsedElem> PopUsed() {
    if (last_used_ == UsedIdx()) return std::nullopt;
    UsedElem e{};
    mem_.Read(used_ + 4 + 8ull * (last_used_ % size_),
              std::span(reinterpret_cast<uint8_t*>(&e), sizeof(e)))
        .IgnoreError();
    ++last_used_;
    return e;
  }

 private:
  void WriteDesc(uint64_t table, uint16_t index, uint64_t addr, uint32_t len, uint16_t flags,
                 uint16_t next) {
    uint8_t d[16];
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
    mem_.Write(table + 16ull * index, d).IgnoreError();
  }
  void Write16(uint64_t gpa, uint16_t v) { mem_.WriteObj(gpa, v).IgnoreError(); }
  uint16_t Read16(uint64_t gpa) const { return mem_.ReadObj<uint16_t>(gpa).value_or(0xffff); }

  const GuestMemory& mem_;
  uint16_t size_;
  uint64_t desc_, avail_, used_;
  uint16_t next_desc_ = 0;
  uint16_t last_used_ = 0;
};

}  // namespace keel::vmm::virtio::testing
