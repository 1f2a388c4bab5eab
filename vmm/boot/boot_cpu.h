// What the boot vCPU must look like when it enters the kernel, and the boot-time GDT and
// page tables the loaders write into guest memory.
//
// The loaders (vmm/boot/loader.h) return a BootEntry; InitialCpuState() turns it into plain
// register values, so the KVM code only copies fields into kvm_regs / kvm_sregs:
//
//   kPvh32   (PVH boot ABI, Xen docs/misc/pvh.pandoc): 32-bit protected mode, paging off,
//            flat 4 GiB CS (32-bit code) and DS/ES/SS/FS/GS, EBX = hvm_start_info GPA,
//            EFLAGS = 0x2 (interrupts off).
//   kLinux64 (Linux boot protocol "64-bit Boot Protocol", boot.rst): long mode with the
//            identity map of the first 4 GiB at layout::kPml4Start, CS = __BOOT_CS (0x10,
//            64-bit code), DS/ES/SS = __BOOT_DS (0x18), RSI = zero page, interrupts off.
//
// Not described here because they are KVM details: TR must be a busy TSS (type 11) and LDTR
// unusable for the VMX guest-state checks; the LAPIC, MSRs and CPUID are set separately.
#pragma once

#include <array>
#include <cstdint>

#include "absl/status/status.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/x86_state.h"

namespace keel::vmm {

enum class BootMode {
  kPvh32,    // PVH ELF: 32-bit entry, paging off, EBX = hvm_start_info
  kLinux64,  // bzImage: 64-bit entry at load address + 0x200, RSI = boot_params
};

// Selectors of the boot GDT (boot.rst: __BOOT_CS and __BOOT_DS).
inline constexpr uint16_t kBootCodeSelector = 0x10;
inline constexpr uint16_t kBootDataSelector = 0x18;
inline constexpr int kBootGdtEntries = 4;  // null, null, code, data

// x86 control-register and EFER bits used at boot (Intel SDM vol. 3A §2.5, §2.2.1).
inline constexpr uint64_t kCr0Pe = 1ull << 0;
inline constexpr uint64_t kCr0Et = 1ull << 4;
inline constexpr uint64_t kCr0Pg = 1ull << 31;
inline constexpr uint64_t kCr4Pae = 1ull << 5;
inline constexpr uint64_t kEferLme = 1ull << 8;
inline constexpr uint64_t kEferLma = 1ull << 10;

struct BootCpuState {
  uint64_t rip = 0, rsp = 0, rflags = 0x2;
  uint64_t rsi = 0, rbx = 0;  // boot_params (kLinux64) or hvm_start_info (kPvh32)
  uint64_t cr0 = 0, cr3 = 0, cr4 = 0, efer = 0;
  SegmentState code;  // CS
  SegmentState data;  // DS, ES, FS, GS, SS
  uint64_t gdt_base = 0;
  uint16_t gdt_limit = 0;
  uint64_t idt_base = 0;  // an empty IDT: any exception before the kernel's IDT is fatal
  uint16_t idt_limit = 0;
};

// The GDT written for `mode` (descriptor 2 is a 64-bit code segment for kLinux64 and a
// 32-bit one for kPvh32; descriptor 3 is flat read/write data).
std::array<uint64_t, kBootGdtEntries> BootGdt(BootMode mode);

// Decodes a code/data descriptor into the hidden state KVM wants.
SegmentState DecodeSegment(uint64_t descriptor, uint16_t selector);

// Register state for entering a kernel at `entry` with boot info at `boot_info_gpa`.
BootCpuState InitialCpuState(BootMode mode, uint64_t entry, uint64_t boot_info_gpa);

// Writes BootGdt(mode) at layout::kGdtStart and zeroes the boot IDT at layout::kIdtStart.
absl::Status WriteBootGdt(const GuestMemory& mem, BootMode mode);

// Writes identity page tables for [0, 4 GiB) with 2 MiB pages: PML4 at layout::kPml4Start,
// one PDPT at layout::kPdpteStart, four page directories from layout::kPdeStart.
absl::Status WriteIdentityPageTables(const GuestMemory& mem);

}  // namespace keel::vmm
