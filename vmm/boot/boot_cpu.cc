#include "vmm/boot/boot_cpu.h"

#include <cstring>

#include "base/status.h"
#include "vmm/layout.h"

namespace keel::vmm {

namespace {

// Builds a segment descriptor (Intel SDM vol. 3A §3.4.5, Figure 3-8). `flags` holds the
// access byte in bits 0-7 and the G/DB/L/AVL nibble in bits 12-15, the layout the
// descriptor itself uses for bits 40-55.
constexpr uint64_t Descriptor(uint16_t flags, uint32_t base, uint32_t limit) {
  return ((uint64_t{base} & 0xff000000) << 32) | ((uint64_t{flags} & 0xf0ff) << 40) |
         ((uint64_t{limit} & 0x000f0000) << 32) | ((uint64_t{base} & 0x00ffffff) << 16) |
         (uint64_t{limit} & 0x0000ffff);
}

// Access bytes: present, DPL 0, code/data (S=1), plus the type nibble.
constexpr uint16_t kCodeExecRead = 0x9b;   // type 0xb: execute/read, accessed
constexpr uint16_t kDataReadWrite = 0x93;  // type 0x3: read/write, accessed
constexpr uint16_t kGranularity4k = 0x8000;
constexpr uint16_t kDefault32 = 0x4000;  // D/B
constexpr uint16_t kLongMode = 0x2000;   // L

constexpr uint64_t kPageSize = 4096;
constexpr uint64_t kPteEntries = 512;
constexpr uint64_t kPresent = 1ull << 0;
constexpr uint64_t kWritable = 1ull << 1;
constexpr uint64_t kLargePage = 1ull << 7;  // PS: a 2 MiB page in a page-directory entry
constexpr uint64_t kPageDirectories = 4;    // 4 x 1 GiB

}  // namespace

std::array<uint64_t, kBootGdtEntries> BootGdt(BootMode mode) {
  const uint16_t code_size = mode == BootMode::kLinux64 ? kLongMode : kDefault32;
  return {
      0,
      0,
      Descriptor(kGranularity4k | code_size | kCodeExecRead, 0, 0xfffff),
      Descriptor(kGranularity4k | kDefault32 | kDataReadWrite, 0, 0xfffff),
  };
}

SegmentState DecodeSegment(uint64_t d, uint16_t selector) {
  SegmentState s;
  s.selector = selector;
  s.base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000);
  const uint32_t raw_limit = static_cast<uint32_t>((d & 0xffff) | ((d >> 32) & 0xf0000));
  s.type = (d >> 40) & 0xf;
  s.s = (d >> 44) & 1;
  s.dpl = (d >> 45) & 3;
  s.present = (d >> 47) & 1;
  s.avl = (d >> 52) & 1;
  s.l = (d >> 53) & 1;
  s.db = (d >> 54) & 1;
  s.g = (d >> 55) & 1;
  s.limit = s.g ? (raw_limit << 12) | 0xfff : raw_limit;
  return s;
}

BootCpuState InitialCpuState(BootMode mode, uint64_t entry, uint64_t boot_info_gpa) {
  const auto gdt = BootGdt(mode);
  BootCpuState st;
  st.rip = entry;
  st.rsp = layout::kBootStackTop;
  st.code = DecodeSegment(gdt[kBootCodeSelector / 8], kBootCodeSelector);
  st.data = DecodeSegment(gdt[kBootDataSelector / 8], kBootDataSelector);
  st.gdt_base = layout::kGdtStart;
  st.gdt_limit = sizeof(gdt) - 1;
  st.idt_base = layout::kIdtStart;
  st.idt_limit = 0;
  if (mode == BootMode::kLinux64) {
    st.rsi = boot_info_gpa;
    st.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
    st.cr3 = layout::kPml4Start;
    st.cr4 = kCr4Pae;
    st.efer = kEferLme | kEferLma;
  } else {
    st.rbx = boot_info_gpa;
    st.cr0 = kCr0Pe | kCr0Et;
  }
  return st;
}

absl::Status WriteBootGdt(const GuestMemory& mem, BootMode mode) {
  KEEL_RETURN_IF_ERROR(mem.WriteObj(layout::kGdtStart, BootGdt(mode)));
  return mem.Fill(layout::kIdtStart, 0, 8);
}

absl::Status WriteIdentityPageTables(const GuestMemory& mem) {
  static_assert(layout::kPdpteStart >= layout::kPml4Start + kPageSize);
  static_assert(layout::kPdeStart >= layout::kPdpteStart + kPageSize);
  uint8_t* pml4 = mem.HostPtr(layout::kPml4Start, kPageSize);
  uint8_t* pdpt = mem.HostPtr(layout::kPdpteStart, kPageSize);
  uint8_t* pd = mem.HostPtr(layout::kPdeStart, kPageDirectories * kPageSize);
  if (pml4 == nullptr || pdpt == nullptr || pd == nullptr) {
    return absl::OutOfRangeError("guest RAM does not cover the boot page tables");
  }
  // Guest RAM may be reused across a reboot: rewrite every entry, not only the present ones.
  memset(pml4, 0, kPageSize);
  memset(pdpt, 0, kPageSize);
  const uint64_t pml4e = layout::kPdpteStart | kPresent | kWritable;
  memcpy(pml4, &pml4e, sizeof(pml4e));
  for (uint64_t i = 0; i < kPageDirectories; ++i) {
    const uint64_t pdpte = (layout::kPdeStart + i * kPageSize) | kPresent | kWritable;
    memcpy(pdpt + i * sizeof(uint64_t), &pdpte, sizeof(pdpte));
  }
  for (uint64_t i = 0; i < kPageDirectories * kPteEntries; ++i) {
    const uint64_t pde = (i << 21) | kPresent | kWritable | kLargePage;
    memcpy(pd + i * sizeof(uint64_t), &pde, sizeof(pde));
  }
  return absl::OkStatus();
}

}  // namespace keel::vmm
