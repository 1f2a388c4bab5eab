// Helpers for moving data between guest scatter-gather lists and aligned host buffers.
//
// O_DIRECT needs every buffer address aligned to the device's DMA alignment and every
// segment a whole number of logical blocks. Guest buffers usually are (Linux guests hand the
// device whole pages), but nothing forces a guest to be nice, so misaligned requests go
// through a BouncePool buffer instead. The pool is allocated once, at open; nothing here
// allocates on the I/O path.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "base/mapping.h"

namespace keel::block {

// Copies the first `len` bytes described by iov[0..count) to `dst`. The list must hold at
// least `len` bytes.
void CopyFromIov(const iovec* iov, size_t count, uint8_t* dst, size_t len);
// Copies `len` bytes from `src` into the start of iov[0..count).
void CopyToIov(const iovec* iov, size_t count, const uint8_t* src, size_t len);
// Drops the first `bytes` bytes of the list: whole segments are skipped (*iov and *count
// move past them) and a partly consumed one is trimmed in place.
void AdvanceIov(iovec** iov, uint32_t* count, size_t bytes);
// True if every segment starts at a multiple of `memory_alignment` and is a multiple of
// `length_alignment` bytes long (both powers of two).
bool IovAligned(const iovec* iov, size_t count, uint32_t memory_alignment,
                uint32_t length_alignment);

// A fixed set of equally sized, page-aligned buffers. Single-threaded.
class BouncePool {
 public:
  BouncePool() = default;
  // `count` buffers of `bytes` each, rounded up to a multiple of `granule` (a power of two,
  // at least the logical block size) and of the page size.
  static absl::StatusOr<BouncePool> Create(uint32_t count, size_t bytes, size_t granule);

  size_t buffer_bytes() const { return buffer_bytes_; }
  // A free buffer's index, or nullopt if all are taken.
  std::optional<uint32_t> Acquire();
  void Release(uint32_t index) { free_.push_back(index); }  // never grows: capacity reserved
  uint8_t* data(uint32_t index) const { return memory_.data() + index * buffer_bytes_; }

 private:
  Mapping memory_;
  size_t buffer_bytes_ = 0;
  std::vector<uint32_t> free_;
};

}  // namespace keel::block
