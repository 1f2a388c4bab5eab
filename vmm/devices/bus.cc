#include "vmm/devices/bus.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"

namespace keel::vmm {

absl::Status Bus::Register(uint64_t base, uint64_t size, BusDevice* device, std::string label) {
  if (size == 0 || base + size < base) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s bus: bad range %#x+%#x for %s", name_, base, size, label));
  }
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), base,
                             [](const Range& r, uint64_t b) { return r.base < b; });
  const bool overlaps_next = it != ranges_.end() && it->base < base + size;
  const bool overlaps_prev = it != ranges_.begin() && std::prev(it)->base + std::prev(it)->size > base;
  if (overlaps_next || overlaps_prev) {
    const Range& other = overlaps_next ? *it : *std::prev(it);
    return absl::AlreadyExistsError(absl::StrFormat("%s bus: %s at %#x+%#x overlaps %s", name_,
                                                    label, base, size, other.label));
  }
  ranges_.insert(it, Range{base, size, device, std::move(label)});
  return absl::OkStatus();
}

const Bus::Range* Bus::Find(uint64_t addr) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), addr,
                             [](uint64_t a, const Range& r) { return a < r.base; });
  if (it == ranges_.begin()) return nullptr;
  const Range& r = *std::prev(it);
  return addr - r.base < r.size ? &r : nullptr;
}

bool Bus::Read(uint64_t addr, std::span<uint8_t> data) const {
  const Range* r = Find(addr);
  if (r == nullptr) {
    memset(data.data(), 0xff, data.size());
    return false;
  }
  r->device->Read(addr - r->base, data);
  return true;
}

bool Bus::Write(uint64_t addr, std::span<const uint8_t> data) const {
  const Range* r = Find(addr);
  if (r == nullptr) return false;
  r->device->Write(addr - r->base, data);
  return true;
}

}  // namespace keel::vmm
