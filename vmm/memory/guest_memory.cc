#include "vmm/memory/guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_format.h"
#include "base/status.h"
#include "vmm/layout.h"

namespace keel::vmm {

namespace {
constexpr uint64_t kPageSize = 4096;
constexpr uint64_t kHugePageSize = 2 * layout::kMiB;
}  // namespace

absl::StatusOr<GuestMemory> GuestMemory::Create(uint64_t ram_bytes,
                                                const GuestMemoryOptions& options) {
  if (ram_bytes < layout::kMinRamBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "memory %u MiB is below the %u MiB minimum", ram_bytes / layout::kMiB,
        layout::kMinRamBytes / layout::kMiB));
  }
  const uint64_t align = options.hugepages ? kHugePageSize : kPageSize;
  if (ram_bytes % align != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("memory size %u bytes is not a multiple of %u", ram_bytes, align));
  }
  std::vector<std::pair<uint64_t, uint64_t>> layout_regions;
  const uint64_t low = std::min(ram_bytes, layout::kMmioGapStart);
  layout_regions.emplace_back(0, low);
  if (ram_bytes > low) layout_regions.emplace_back(layout::kRamAbove4gStart, ram_bytes - low);

  GuestMemory mem;
  for (auto [gpa, size] : layout_regions) {
    int flags = MAP_NORESERVE;
    if (options.hugepages) flags |= MAP_HUGETLB;
    auto mapping = Mapping::Anonymous(size, PROT_READ | PROT_WRITE, flags);
    if (!mapping.ok()) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "cannot reserve %u MiB of guest memory%s: %s; ask for less memory", size / layout::kMiB,
          options.hugepages ? " in hugepages" : "", mapping.status().message()));
    }
    // Guest RAM is never worth a core dump, and must not be merged into a child on fork.
    madvise(mapping->data(), size, MADV_DONTDUMP);
    madvise(mapping->data(), size, MADV_DONTFORK);
    mem.regions_.push_back({gpa, size, mapping->data()});
    mem.mappings_.push_back(std::move(*mapping));
    mem.ram_size_ += size;
  }
  return mem;
}

absl::StatusOr<GuestMemory> GuestMemory::CreateForTest(
    const std::vector<std::pair<uint64_t, uint64_t>>& regions) {
  GuestMemory mem;
  for (auto [gpa, size] : regions) {
    if (gpa % kPageSize != 0 || size % kPageSize != 0 || size == 0) {
      return absl::InvalidArgumentError("test regions must be non-empty and page-aligned");
    }
    for (const MemoryRegion& r : mem.regions_) {
      if (gpa < r.gpa + r.size && r.gpa < gpa + size) {
        return absl::InvalidArgumentError("test regions overlap");
      }
    }
    KEEL_ASSIGN_OR_RETURN(Mapping mapping,
                          Mapping::Anonymous(size, PROT_READ | PROT_WRITE, MAP_NORESERVE));
    mem.regions_.push_back({gpa, size, mapping.data()});
    mem.mappings_.push_back(std::move(mapping));
    mem.ram_size_ += size;
  }
  std::sort(mem.regions_.begin(), mem.regions_.end(),
            [](const MemoryRegion& a, const MemoryRegion& b) { return a.gpa < b.gpa; });
  return mem;
}

uint64_t GuestMemory::end() const {
  uint64_t end = 0;
  for (const MemoryRegion& r : regions_) end = std::max(end, r.gpa + r.size);
  return end;
}

uint64_t GuestMemory::low_ram_end() const {
  uint64_t end = 0;
  for (const MemoryRegion& r : regions_) {
    if (r.gpa < layout::kMmioGapStart) end = std::max(end, r.gpa + r.size);
  }
  return end;
}

absl::Status GuestMemory::OutOfRange(uint64_t gpa, uint64_t len) {
  return absl::OutOfRangeError(absl::StrFormat(
      "guest range [%#x, +%#x) is outside guest memory", gpa, len));
}

absl::Status GuestMemory::Read(uint64_t gpa, std::span<uint8_t> out) const {
  const uint8_t* src = HostPtr(gpa, out.size());
  if (src == nullptr) return OutOfRange(gpa, out.size());
  if (!out.empty()) memcpy(out.data(), src, out.size());
  return absl::OkStatus();
}

absl::Status GuestMemory::Write(uint64_t gpa, std::span<const uint8_t> in) const {
  uint8_t* dst = HostPtr(gpa, in.size());
  if (dst == nullptr) return OutOfRange(gpa, in.size());
  if (!in.empty()) memcpy(dst, in.data(), in.size());
  return absl::OkStatus();
}

absl::Status GuestMemory::Fill(uint64_t gpa, uint8_t value, uint64_t len) const {
  uint8_t* dst = HostPtr(gpa, len);
  if (dst == nullptr) return OutOfRange(gpa, len);
  if (len != 0) memset(dst, value, len);
  return absl::OkStatus();
}

uint64_t GuestMemory::ResidentBytes() const {
  uint64_t resident = 0;
  std::vector<unsigned char> vec;
  for (const MemoryRegion& r : regions_) {
    const uint64_t pages = (r.size + kPageSize - 1) / kPageSize;
    vec.resize(pages);
    if (mincore(r.host, r.size, vec.data()) != 0) continue;
    for (unsigned char v : vec) resident += (v & 1) ? kPageSize : 0;
  }
  return resident;
}

}  // namespace keel::vmm
