// Interrupt: an edge a device raises towards the guest.
#pragma once

#include <atomic>
#include <cstdint>

#include "base/eventfd.h"

namespace keel::vmm {

// Thread-safe: devices trigger from vCPU threads and from the I/O thread.
class Interrupt {
 public:
  virtual ~Interrupt() = default;
  virtual void Trigger() = 0;
};

// An interrupt delivered through a KVM irqfd: the eventfd was registered on a GSI of the
// in-kernel irqchip, so a write injects an edge with no exit to userspace.
class IrqfdInterrupt : public Interrupt {
 public:
  explicit IrqfdInterrupt(EventFd eventfd) : eventfd_(std::move(eventfd)) {}
  void Trigger() override { eventfd_.Signal(); }
  int fd() const { return eventfd_.fd(); }

 private:
  EventFd eventfd_;
};

// Counts triggers; for tests.
class CountingInterrupt : public Interrupt {
 public:
  void Trigger() override { count_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> count_{0};
};

}  // namespace keel::vmm
