#include "vmm/devices/console.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace keel::vmm {

void FdConsoleSink::Write(std::span<const uint8_t> bytes) {
  for (int fd : fds_) {
    const uint8_t* p = bytes.data();
    size_t left = bytes.size();
    while (left > 0) {
      ssize_t n = ::write(fd, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
}

void ConsoleLog::Write(std::span<const uint8_t> bytes) {
  if (capacity_ == 0) return;
  {
    absl::MutexLock lock(&mu_);
    for (uint8_t b : bytes) {
      if (ring_.size() < capacity_) {
        ring_.push_back(static_cast<char>(b));
      } else {
        ring_[end_ % capacity_] = static_cast<char>(b);
      }
      ++end_;
    }
  }
  if (const int fd = notify_fd_.load(std::memory_order_acquire); fd >= 0) {
    // A non-blocking eventfd: the write cannot block; a full counter just drops the wakeup.
    const uint64_t one = 1;
    (void)!::write(fd, &one, sizeof(one));
  }
}

ConsoleLog::Chunk ConsoleLog::Read(uint64_t offset, size_t max_bytes) const {
  absl::MutexLock lock(&mu_);
  Chunk chunk;
  chunk.end = end_;
  const uint64_t oldest = end_ - ring_.size();
  chunk.offset = std::clamp(offset, oldest, end_);
  chunk.truncated = offset < oldest;
  const uint64_t n = std::min<uint64_t>(end_ - chunk.offset, max_bytes);
  chunk.data.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t at = chunk.offset + i;
    chunk.data.push_back(ring_.size() < capacity_ ? ring_[at] : ring_[at % capacity_]);
  }
  return chunk;
}

uint64_t ConsoleLog::end() const {
  absl::MutexLock lock(&mu_);
  return end_;
}

bool ConsoleLog::WaitForData(uint64_t offset, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto has_data = [this, offset]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return end_ > offset; };
  return mu_.AwaitWithTimeout(absl::Condition(&has_data), timeout);
}

}  // namespace keel::vmm
