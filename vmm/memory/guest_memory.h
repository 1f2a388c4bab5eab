// GuestMemory: the guest's RAM as host mappings, with bounds-checked access.
//
// Every access a device or loader makes to guest memory goes through this class: guest
// addresses and lengths come from a hostile guest and are checked against the regions before
// any host pointer is formed. An access must lie entirely inside one region (regions are not
// contiguous: the MMIO gap separates them).
//
// Thread-safety: the regions are fixed after creation, so every const method may be called
// from any thread. The bytes themselves are shared with the guest's vCPUs and may change at
// any time; copy before validating (read each field once).
//
// Example:
//
//   KEEL_ASSIGN_OR_RETURN(GuestMemory mem, GuestMemory::Create(256 * layout::kMiB));
//   KEEL_RETURN_IF_ERROR(mem.Write(0x7000, std::span(bytes)));
//   if (uint8_t* p = mem.HostPtr(desc.addr, desc.len)) { ... }
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/mapping.h"

namespace keel::vmm {

struct MemoryRegion {
  uint64_t gpa;    // guest physical start
  uint64_t size;   // bytes
  uint8_t* host;   // host address of gpa
};

struct GuestMemoryOptions {
  // Back the RAM with MAP_HUGETLB 2 MiB pages (needs reserved hugepages on the host).
  bool hugepages = false;
};

class GuestMemory {
 public:
  // Lays out `ram_bytes` of RAM following vmm/layout.h: from 0 up to the MMIO gap, and the
  // rest from 4 GiB. `ram_bytes` must be a multiple of 4 KiB and at least layout::kMinRamBytes.
  static absl::StatusOr<GuestMemory> Create(uint64_t ram_bytes,
                                            const GuestMemoryOptions& options = {});

  // Arbitrary regions, for tests: each {gpa, size} pair must be page-aligned and the regions
  // must not overlap.
  static absl::StatusOr<GuestMemory> CreateForTest(
      const std::vector<std::pair<uint64_t, uint64_t>>& regions);

  GuestMemory(GuestMemory&&) = default;
  GuestMemory& operator=(GuestMemory&&) = default;

  const std::vector<MemoryRegion>& regions() const { return regions_; }
  // Total RAM bytes over all regions.
  uint64_t ram_size() const { return ram_size_; }
  // One past the highest guest physical address backed by RAM.
  uint64_t end() const;
  // Bytes of RAM below the MMIO gap (the first region's size for a standard layout).
  uint64_t low_ram_end() const;

  // True if [gpa, gpa + len) lies inside one region. len == 0 is accepted at any address
  // inside a region or at its end.
  bool Contains(uint64_t gpa, uint64_t len) const { return HostPtr(gpa, len) != nullptr; }

  // Host pointer for [gpa, gpa + len) if it lies inside one region, otherwise nullptr.
  // Overflow-safe for any gpa and len. Does not allocate; suitable for the I/O hot path.
  uint8_t* HostPtr(uint64_t gpa, uint64_t len) const {
    for (const MemoryRegion& r : regions_) {
      if (gpa >= r.gpa && gpa - r.gpa <= r.size && len <= r.size - (gpa - r.gpa)) {
        return r.host + (gpa - r.gpa);
      }
    }
    return nullptr;
  }

  // Copies between guest memory and a host buffer. Fail (OutOfRange, naming the range) if
  // the range is not inside one region; nothing is copied then.
  absl::Status Read(uint64_t gpa, std::span<uint8_t> out) const;
  absl::Status Write(uint64_t gpa, std::span<const uint8_t> in) const;
  absl::Status Fill(uint64_t gpa, uint8_t value, uint64_t len) const;

  // Typed copies of trivially-copyable objects (no alignment requirement).
  template <typename T>
  absl::StatusOr<T> ReadObj(uint64_t gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    absl::Status s = Read(gpa, std::span(reinterpret_cast<uint8_t*>(&value), sizeof(T)));
    if (!s.ok()) return s;
    return value;
  }
  template <typename T>
  absl::Status WriteObj(uint64_t gpa, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T>);
    return Write(gpa, std::span(reinterpret_cast<const uint8_t*>(&value), sizeof(T)));
  }

  // Bytes of guest RAM currently resident in host memory (pages the guest or the VMM has
  // touched), from mincore(2).
  uint64_t ResidentBytes() const;

 private:
  GuestMemory() = default;
  static absl::Status OutOfRange(uint64_t gpa, uint64_t len);

  std::vector<Mapping> mappings_;
  std::vector<MemoryRegion> regions_;
  uint64_t ram_size_ = 0;
};

}  // namespace keel::vmm
