// Bus: dispatches guest port I/O or MMIO exits to the device that owns the address.
//
// Devices are registered before any vCPU runs; after that the bus is read-only and may be
// used from every vCPU thread at once without locking. Devices do their own locking: two
// vCPUs can access one device concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace keel::vmm {

// A device reachable through port I/O or MMIO. Offsets are relative to the registered base.
// `data` is the access (1, 2, 4 or 8 bytes, little-endian). Called on vCPU threads.
class BusDevice {
 public:
  virtual ~BusDevice() = default;
  virtual void Read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void Write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}

  // Registers `device` (not owned; must outlive the bus) for [base, base + size). Fails if
  // the range is empty, wraps around, or overlaps a registered one.
  absl::Status Register(uint64_t base, uint64_t size, BusDevice* device, std::string label);

  // Dispatches an access. Returns false if no device owns `addr` (reads are then filled with
  // 0xff, like an empty ISA bus, and writes are dropped by the caller).
  bool Read(uint64_t addr, std::span<uint8_t> data) const;
  bool Write(uint64_t addr, std::span<const uint8_t> data) const;

 private:
  struct Range {
    uint64_t base;
    uint64_t size;
    BusDevice* device;
    std::string label;
  };
  const Range* Find(uint64_t addr) const;

  std::string name_;
  std::vector<Range> ranges_;  // sorted by base, non-overlapping
};

}  // namespace keel::vmm
