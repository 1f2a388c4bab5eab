// The guest's physical memory map in the BIOS e820 format.
//
// Both boot paths report the same map: the Linux zero page (boot_params.e820_table) and the
// PVH hvm_start_info memmap use the same entry layout and type numbers.
//
//   [0, 0x9FC00)            RAM (boot structures live here)
//   [0x9FC00, 0x100000)     reserved: EBDA (MP table) + legacy hole (ACPI tables)
//   [0x100000, low end)     RAM
//   [4 GiB, end)            RAM, when guest memory extends above the MMIO gap
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/memory/guest_memory.h"

namespace keel::vmm {

// E820 entry types (ACPI 6.5 §15, Table 15.1 "Address Range Types").
inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;

// One e820 entry exactly as Linux boot_params.e820_table holds it (20 bytes, packed).
struct __attribute__((packed)) E820Entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
};
static_assert(sizeof(E820Entry) == 20);

// The memory map of `mem`, sorted by address: each RAM region minus the reserved range
// [layout::kEbdaStart, layout::kLegacyHoleEnd), plus one entry for that range.
std::vector<E820Entry> BuildE820(const GuestMemory& mem);

}  // namespace keel::vmm
