#include "block/bounce.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace keel::block {

void CopyFromIov(const iovec* iov, size_t count, uint8_t* dst, size_t len) {
  for (size_t i = 0; i < count && len > 0; ++i) {
    size_t n = std::min(len, iov[i].iov_len);
    memcpy(dst, iov[i].iov_base, n);
    dst += n;
    len -= n;
  }
}

void CopyToIov(const iovec* iov, size_t count, const uint8_t* src, size_t len) {
  for (size_t i = 0; i < count && len > 0; ++i) {
    size_t n = std::min(len, iov[i].iov_len);
    memcpy(iov[i].iov_base, src, n);
    src += n;
    len -= n;
  }
}

void AdvanceIov(iovec** iov, uint32_t* count, size_t bytes) {
  while (*count > 0 && bytes >= (*iov)->iov_len) {
    bytes -= (*iov)->iov_len;
    ++*iov;
    --*count;
  }
  if (*count > 0 && bytes > 0) {
    (*iov)->iov_base = static_cast<uint8_t*>((*iov)->iov_base) + bytes;
    (*iov)->iov_len -= bytes;
  }
}

bool IovAligned(const iovec* iov, size_t count, uint32_t memory_alignment,
                uint32_t length_alignment) {
  const uintptr_t address_mask = memory_alignment - 1;
  const size_t length_mask = length_alignment - 1;
  for (size_t i = 0; i < count; ++i) {
    if ((reinterpret_cast<uintptr_t>(iov[i].iov_base) & address_mask) != 0 ||
        (iov[i].iov_len & length_mask) != 0) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<BouncePool> BouncePool::Create(uint32_t count, size_t bytes, size_t granule) {
  BouncePool pool;
  if (count == 0) return pool;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t unit = std::max(granule, page);
  pool.buffer_bytes_ = std::max<size_t>((bytes + unit - 1) / unit, 1) * unit;
  auto memory = Mapping::Anonymous(pool.buffer_bytes_ * count, PROT_READ | PROT_WRITE);
  if (!memory.ok()) return memory.status();
  pool.memory_ = *std::move(memory);
  pool.free_.reserve(count);
  for (uint32_t i = count; i > 0; --i) pool.free_.push_back(i - 1);
  return pool;
}

std::optional<uint32_t> BouncePool::Acquire() {
  if (free_.empty()) return std::nullopt;
  uint32_t index = free_.back();
  free_.pop_back();
  return index;
}

}  // namespace keel::block
