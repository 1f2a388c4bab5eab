#include "agent/console_buffer.h"

#include <algorithm>
#include <cstddef>

namespace keel::agent {

void ConsoleBuffer::Append(uint64_t offset, const uint8_t* data, size_t size) {
  if (offset > end_) {  // a gap: what lies between was never seen
    end_ = offset;
    size_ = 0;
  }
  uint64_t skip = end_ - offset;
  if (skip >= size) return;
  data += skip;
  size -= static_cast<size_t>(skip);
  const size_t cap = capacity_;
  if (size > cap) {  // only the last `cap` bytes can be kept
    end_ += size - cap;
    data += size - cap;
    size = cap;
    size_ = 0;
  }
  Reserve(std::min(cap, size_ + size));
  const size_t room = ring_.size();
  size_t pos = static_cast<size_t>(end_ % room);
  size_t first = std::min(size, room - pos);
  std::copy(data, data + first, ring_.begin() + static_cast<std::ptrdiff_t>(pos));
  std::copy(data + first, data + size, ring_.begin());
  end_ += size;
  size_ = std::min(cap, size_ + size);
}

void ConsoleBuffer::Reserve(size_t bytes) {
  if (bytes <= ring_.size()) return;
  size_t grown = std::max<size_t>(4096, ring_.size());
  while (grown < bytes) grown *= 2;
  grown = std::min(grown, capacity_);
  Chunk held = Read(start_offset(), size_);
  ring_.assign(grown, 0);
  for (size_t i = 0; i < held.data.size(); ++i) {
    ring_[static_cast<size_t>((held.start_offset + i) % grown)] =
        static_cast<uint8_t>(held.data[i]);
  }
}

ConsoleBuffer::Chunk ConsoleBuffer::Read(uint64_t offset, size_t max_bytes) const {
  Chunk chunk;
  uint64_t start = std::clamp(offset, start_offset(), end_);
  size_t n = static_cast<size_t>(std::min<uint64_t>(end_ - start, max_bytes));
  chunk.start_offset = start;
  chunk.next_offset = start + n;
  chunk.data.resize(n);
  const size_t cap = ring_.size();
  if (cap == 0) return chunk;
  for (size_t i = 0; i < n;) {
    size_t pos = static_cast<size_t>((start + i) % cap);
    size_t run = std::min(n - i, cap - pos);
    std::copy(ring_.begin() + static_cast<std::ptrdiff_t>(pos),
              ring_.begin() + static_cast<std::ptrdiff_t>(pos + run), chunk.data.begin() + static_cast<std::ptrdiff_t>(i));
    i += run;
  }
  return chunk;
}

}  // namespace keel::agent
