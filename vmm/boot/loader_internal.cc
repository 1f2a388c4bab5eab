#include "vmm/boot/loader_internal.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status.h"
#include "vmm/layout.h"

namespace keel::vmm::boot_internal {

std::string KernelName(const ImageReader& kernel) { return absl::StrCat("kernel ", kernel.name()); }

absl::Status WriteCmdline(const GuestMemory& mem, const std::string& cmdline, uint64_t max_chars) {
  if (cmdline.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("the kernel command line contains a NUL byte");
  }
  const uint64_t limit = std::min<uint64_t>(layout::kCmdlineMaxSize - 1, max_chars);
  if (cmdline.size() > limit) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "the kernel command line is %u bytes but at most %u fit (%s); shorten it", cmdline.size(),
        limit, limit == max_chars ? "the kernel's cmdline_size" : "Keel's command line area"));
  }
  uint8_t* dst = mem.HostPtr(layout::kCmdlineStart, cmdline.size() + 1);
  if (dst == nullptr) return absl::OutOfRangeError("guest RAM does not cover the command line");
  memcpy(dst, cmdline.data(), cmdline.size());
  dst[cmdline.size()] = 0;
  return absl::OkStatus();
}

absl::StatusOr<InitrdPlacement> LoadInitrd(const GuestMemory& mem, const ImageReader* initrd,
                                           uint64_t kernel_end, uint64_t limit) {
  if (initrd == nullptr) return InitrdPlacement{};
  const uint64_t size = initrd->size();
  if (size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("initrd ", initrd->name(), " is empty; pass a cpio archive or no initrd"));
  }
  uint64_t lowest = 0;
  if (!AlignUp(kernel_end, kPageSize, &lowest) || lowest > limit || size > limit - lowest ||
      AlignDown(limit - size, kPageSize) < lowest) {
    const uint64_t room = (lowest <= limit) ? limit - lowest : 0;
    return absl::ResourceExhaustedError(absl::StrFormat(
        "initrd %s is %u bytes but only %u bytes of guest RAM are free between the kernel "
        "(ends at %#x) and %#x; give the VM more memory or use a smaller initrd",
        initrd->name(), size, room, kernel_end, limit));
  }
  const uint64_t gpa = AlignDown(limit - size, kPageSize);
  KEEL_RETURN_IF_ERROR(ReadIntoGuest(*initrd, 0, size, mem, gpa));
  return InitrdPlacement{gpa, size};
}

}  // namespace keel::vmm::boot_internal
