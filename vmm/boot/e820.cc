#include "vmm/boot/e820.h"

#include <algorithm>

#include "vmm/layout.h"

namespace keel::vmm {

std::vector<E820Entry> BuildE820(const GuestMemory& mem) {
  constexpr uint64_t kHoleStart = layout::kEbdaStart;
  constexpr uint64_t kHoleEnd = layout::kLegacyHoleEnd;
  std::vector<E820Entry> map;
  for (const MemoryRegion& r : mem.regions()) {
    const uint64_t start = r.gpa;
    const uint64_t end = r.gpa + r.size;  // GuestMemory regions never wrap
    if (start < kHoleStart) map.push_back({start, std::min(end, kHoleStart) - start, kE820Ram});
    if (end > kHoleEnd) {
      const uint64_t above = std::max(start, kHoleEnd);
      map.push_back({above, end - above, kE820Ram});
    }
  }
  map.push_back({kHoleStart, kHoleEnd - kHoleStart, kE820Reserved});
  std::sort(map.begin(), map.end(),
            [](const E820Entry& a, const E820Entry& b) { return a.addr < b.addr; });
  return map;
}

}  // namespace keel::vmm
