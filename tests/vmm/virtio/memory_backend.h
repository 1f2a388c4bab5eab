// MemoryBackend: a block::Backend over a byte vector, for device tests, the fuzz target and
// the request-processing benchmark. Requests are performed at Kick() (or held until
// Release() when hold() is set) and their completions reaped through a real eventfd, so the
// device's event-loop path is exercised without a disk. Follows the Backend ownership
// contract: at most max_in_flight accepted, -EBUSY beyond, and `hand_back_errno` makes the
// next Submit hand the request back.
#pragma once

#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/eventfd.h"
#include "block/backend.h"

namespace keel::vmm::virtio::testing {

class MemoryBackend : public block::Backend {
 public:
  // `null_io`: complete every request successfully without touching data (benchmarks).
  MemoryBackend(block::Properties props, bool null_io = false)
      : props_(props), null_io_(null_io), event_(*EventFd::Create()) {
    if (!null_io_) disk_.resize(props_.size_bytes);
    pending_.reserve(props_.max_in_flight);
    done_.reserve(props_.max_in_flight);
  }

  const block::Properties& properties() const override { return props_; }
  int event_fd() const override { return event_.fd(); }

  int Submit(const block::Request& r) override {
    if (hand_back_errno != 0) {
      const int e = hand_back_errno;
      hand_back_errno = 0;
      return -e;
    }
    if (in_flight() >= props_.max_in_flight) return -EBUSY;
    Pending p{r.type, r.offset, r.length, r.tag, {}};
    if (!null_io_) p.iov.assign(r.iov.begin(), r.iov.end());
    pending_.push_back(std::move(p));
    ++submitted;
    return 0;
  }

  void Kick() override {
    ++kicks;
    if (!hold) Release();
  }

  // Performs everything submitted so far.
  void Release() {
    for (Pending& p : pending_) done_.push_back({p.tag, Perform(p)});
    pending_.clear();
    if (!done_.empty()) event_.Signal();
  }

  size_t Reap(std::span<block::Completion> out) override {
    event_.Consume();
    const size_t n = std::min(out.size(), done_.size());
    std::copy(done_.begin(), done_.begin() + static_cast<ptrdiff_t>(n), out.begin());
    done_.erase(done_.begin(), done_.begin() + static_cast<ptrdiff_t>(n));
    if (!done_.empty()) event_.Signal();
    return n;
  }

  size_t in_flight() const override { return pending_.size() + done_.size(); }

  std::vector<uint8_t>& disk() { return disk_; }

  bool hold = false;        // keep requests until Release()
  int hand_back_errno = 0;  // hand the next Submit back with -errno
  int fail_errno = 0;       // complete every request with -errno
  uint64_t submitted = 0;
  uint64_t kicks = 0;

 private:
  struct Pending {
    block::RequestType type;
    uint64_t offset, length, tag;
    std::vector<iovec> iov;
  };

  int64_t Perform(const Pending& p) {
    if (fail_errno != 0) return -fail_errno;
    uint64_t total = 0;
    for (const iovec& v : p.iov) total += v.iov_len;
    if (null_io_)
      return p.type == block::RequestType::kRead || p.type == block::RequestType::kWrite
                 ? static_cast<int64_t>(total)
                 : 0;
    uint64_t at = p.offset;
    switch (p.type) {
      case block::RequestType::kRead:
        for (const iovec& v : p.iov) {
          memcpy(v.iov_base, disk_.data() + at, v.iov_len);
          at += v.iov_len;
        }
        return static_cast<int64_t>(total);
      case block::RequestType::kWrite:
        for (const iovec& v : p.iov) {
          memcpy(disk_.data() + at, v.iov_base, v.iov_len);
          at += v.iov_len;
        }
        return static_cast<int64_t>(total);
      case block::RequestType::kDiscard:
      case block::RequestType::kWriteZeroes:
        memset(disk_.data() + p.offset, 0, p.length);
        return 0;
      case block::RequestType::kFlush:
        return 0;
    }
    return -EINVAL;
  }

  block::Properties props_;
  bool null_io_;
  EventFd event_;
  std::vector<uint8_t> disk_;
  std::vector<Pending> pending_;
  std::vector<block::Completion> done_;
};

// Properties of a small writable test disk.
inline block::Properties TestDiskProperties(uint64_t size_bytes = 1 << 20) {
  block::Properties p;
  p.size_bytes = size_bytes;
  p.logical_block_size = 512;
  p.physical_block_size = 4096;
  p.max_segments = 254;
  p.max_in_flight = 1024;
  p.supports_discard = true;
  p.supports_write_zeroes = true;
  return p;
}

}  // namespace keel::vmm::virtio::testing
