// ConsoleBuffer: the newest console output of one VM, in a bounded ring addressed by absolute
// console offsets (byte 0 is the first byte the guest ever wrote).
//
// Appends carry the offset of their first byte, as the VMM reports it: an append that overlaps
// what is held is trimmed, one beyond the end (bytes the agent never saw) restarts the ring at
// its offset. Reads from an offset older than what is held start at the oldest byte held.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace keel::agent {

class ConsoleBuffer {
 public:
  explicit ConsoleBuffer(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  void Append(uint64_t offset, const uint8_t* data, size_t size);

  struct Chunk {
    std::string data;
    uint64_t start_offset = 0;  // offset of data[0]
    uint64_t next_offset = 0;   // start_offset + data.size()
  };
  // Up to `max_bytes` from `offset` (clamped to what is held).
  Chunk Read(uint64_t offset, size_t max_bytes) const;

  uint64_t start_offset() const { return end_ - size_; }
  uint64_t end_offset() const { return end_; }
  size_t capacity() const { return capacity_; }
  // Bytes of storage allocated so far.
  size_t allocated() const { return ring_.size(); }

 private:
  // Makes room for `bytes` (<= capacity) held at once, keeping what is held.
  void Reserve(size_t bytes);

  size_t capacity_;
  std::vector<uint8_t> ring_;  // positions are offsets modulo ring_.size()
  uint64_t end_ = 0;  // offset after the newest byte
  size_t size_ = 0;   // bytes held (<= capacity)
};

}  // namespace keel::agent
