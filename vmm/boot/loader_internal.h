// Pieces shared by the PVH and bzImage loaders. Not part of the public boot API.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vmm/boot/image_reader.h"
#include "vmm/memory/guest_memory.h"

namespace keel::vmm::boot_internal {

inline constexpr uint64_t kPageSize = 4096;

// Overflow-safe alignment helpers; `align` must be a power of two. AlignUp fails (returns
// false) if the result would not fit in 64 bits.
constexpr uint64_t AlignDown(uint64_t v, uint64_t align) { return v & ~(align - 1); }
inline bool AlignUp(uint64_t v, uint64_t align, uint64_t* out) {
  if (v > UINT64_MAX - (align - 1)) return false;
  *out = (v + align - 1) & ~(align - 1);
  return true;
}

// Checks that `cmdline` fits layout::kCmdlineMaxSize (with its NUL) and `max_chars`
// (without it), then writes it NUL-terminated at layout::kCmdlineStart.
absl::Status WriteCmdline(const GuestMemory& mem, const std::string& cmdline, uint64_t max_chars);

struct InitrdPlacement {
  uint64_t gpa = 0;
  uint64_t size = 0;
};

// Reads `initrd` (nullable: no initrd) page-aligned as high as possible below `limit`
// (exclusive), above `kernel_end`, inside one guest memory region.
absl::StatusOr<InitrdPlacement> LoadInitrd(const GuestMemory& mem, const ImageReader* initrd,
                                           uint64_t kernel_end, uint64_t limit);

// "kernel <name>": the prefix of every kernel error message.
std::string KernelName(const ImageReader& kernel);

}  // namespace keel::vmm::boot_internal
