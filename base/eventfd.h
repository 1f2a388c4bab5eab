// EventFd: an owned Linux eventfd, used to signal between threads and to KVM
// (ioeventfd/irqfd).
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "base/fd.h"

namespace keel {

class EventFd {
 public:
  // Creates a non-blocking, close-on-exec eventfd (plus any extra EFD_* `flags`).
  static absl::StatusOr<EventFd> Create(int flags = 0);

  EventFd(EventFd&&) = default;
  EventFd& operator=(EventFd&&) = default;

  int fd() const { return fd_.get(); }

  // Adds `value` to the counter. Safe from any thread; never blocks (a counter overflow,
  // which needs 2^64-2 pending signals, is ignored).
  void Signal(uint64_t value = 1) const;

  // Reads and resets the counter; returns 0 if it was already zero.
  uint64_t Consume() const;

 private:
  explicit EventFd(ScopedFd fd) : fd_(std::move(fd)) {}
  ScopedFd fd_;
};

}  // namespace keel
