// Where the guest console's bytes go.
//
// ConsoleSink is what the UART writes to. FdConsoleSink copies to file descriptors (the
// VMM's stdout, a log file); ConsoleLog keeps the most recent bytes in memory with absolute
// offsets so a controller can read the console from any offset and follow it.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace keel::vmm {

// Thread-safe.
class ConsoleSink {
 public:
  virtual ~ConsoleSink() = default;
  virtual void Write(std::span<const uint8_t> bytes) = 0;
};

// Writes to each fd (not owned). A failed or short write is dropped: the guest console never
// blocks on a vanished reader.
class FdConsoleSink : public ConsoleSink {
 public:
  explicit FdConsoleSink(std::vector<int> fds) : fds_(std::move(fds)) {}
  void Write(std::span<const uint8_t> bytes) override;

 private:
  std::vector<int> fds_;
};

// A bounded in-memory log: keeps the last `capacity` bytes; memory grows only as the guest
// writes. Offsets count every byte ever written, so a reader can tell what it missed.
class ConsoleLog : public ConsoleSink {
 public:
  explicit ConsoleLog(size_t capacity) : capacity_(capacity) {}
  void Write(std::span<const uint8_t> bytes) override;

  struct Chunk {
    uint64_t offset = 0;     // absolute offset of data[0] (>= the requested one)
    std::string data;
    uint64_t end = 0;        // absolute offset one past the newest byte
    bool truncated = false;  // bytes between the requested offset and `offset` were dropped
  };
  // Up to `max_bytes` starting at absolute `offset` (or the oldest byte kept, if later).
  Chunk Read(uint64_t offset, size_t max_bytes) const;
  uint64_t end() const;
  // Blocks until bytes past `offset` exist or `timeout` passes; returns whether they do.
  bool WaitForData(uint64_t offset, absl::Duration timeout) const;
  // After every Write, adds 1 to the eventfd `fd` (not owned; -1: none), so a follower on
  // another thread learns of new bytes without polling. Never blocks the writer.
  void SetWriteNotifier(int eventfd) { notify_fd_.store(eventfd, std::memory_order_release); }

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::string ring_ ABSL_GUARDED_BY(mu_);  // grows to capacity_, then wraps
  uint64_t end_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int> notify_fd_{-1};
};

}  // namespace keel::vmm
