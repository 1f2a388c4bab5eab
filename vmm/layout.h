// The x86-64 guest physical memory map of a Keel VM (Firecracker-like; see DESIGN.md).
//
//   0x0000_0000 .. 0x0009_FFFF   RAM (low 640 KiB: boot structures live here)
//   0x000A_0000 .. 0x000F_FFFF   legacy hole (reported reserved in e820; ACPI tables in it)
//   0x0010_0000 .. ram_low_end   RAM (kernel, initrd at the top)
//   0xD000_0000 .. 0xFFFF_FFFF   MMIO gap: virtio-mmio devices from 0xD000_0000,
//                                IOAPIC at 0xFEC0_0000, LAPIC at 0xFEE0_0000
//   0x1_0000_0000 ..             the rest of RAM when it does not fit below the gap
#pragma once

#include <cstdint>

namespace keel::vmm::layout {

inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kMiB = 1024 * kKiB;
inline constexpr uint64_t kGiB = 1024 * kMiB;

// Boot structures in low memory.
inline constexpr uint64_t kGdtStart = 0x500;           // boot GDT (64-bit boot protocol)
inline constexpr uint64_t kIdtStart = 0x520;           // empty boot IDT
inline constexpr uint64_t kPvhStartInfo = 0x6000;      // struct hvm_start_info + memmap
inline constexpr uint64_t kZeroPage = 0x7000;          // struct boot_params
inline constexpr uint64_t kBootStackTop = 0x8ff0;      // initial RSP for the BSP
inline constexpr uint64_t kPml4Start = 0x9000;         // boot page tables (64-bit protocol)
inline constexpr uint64_t kPdpteStart = 0xa000;
inline constexpr uint64_t kPdeStart = 0xb000;          // 4 pages: identity map of 4 GiB
inline constexpr uint64_t kCmdlineStart = 0x20000;
inline constexpr uint64_t kCmdlineMaxSize = 0x10000;   // including the NUL
inline constexpr uint64_t kEbdaStart = 0x9fc00;        // MP floating pointer + table
inline constexpr uint64_t kLowRamEnd = 0xa0000;        // start of the legacy hole
inline constexpr uint64_t kLegacyHoleEnd = 0x100000;
inline constexpr uint64_t kAcpiRsdp = 0xe0000;         // RSDP, then the other ACPI tables
inline constexpr uint64_t kAcpiEnd = 0x100000;
inline constexpr uint64_t kHighMemStart = 0x100000;    // 1 MiB: where kernels load

// MMIO gap below 4 GiB.
inline constexpr uint64_t kMmioGapStart = 0xd0000000;
inline constexpr uint64_t kMmioGapEnd = 0x100000000;
inline constexpr uint64_t kVirtioMmioBase = 0xd0000000;
inline constexpr uint64_t kVirtioMmioSize = 0x1000;    // one 4 KiB window per device
inline constexpr uint64_t kIoapicAddr = 0xfec00000;
inline constexpr uint64_t kLapicAddr = 0xfee00000;
// KVM needs three pages for the TSS and one for the identity map, inside the MMIO gap.
inline constexpr uint64_t kKvmTssAddr = 0xfffbd000;
inline constexpr uint64_t kKvmIdentityMapAddr = 0xfffbc000;

inline constexpr uint64_t kRamAbove4gStart = 0x100000000;

// Interrupts (IOAPIC pins = GSIs). Virtio devices take pins 5-22 in order; the ACPI power
// button (a Generic Event Device) the last pin.
inline constexpr uint32_t kSerialIrq = 4;
inline constexpr uint32_t kFirstVirtioIrq = 5;
inline constexpr uint32_t kIoapicPins = 24;
inline constexpr uint32_t kPowerButtonIrq = 23;
inline constexpr uint32_t kMaxVirtioDevices = kPowerButtonIrq - kFirstVirtioIrq;

// The smallest RAM Keel boots: enough for boot structures, a kernel and a stack.
inline constexpr uint64_t kMinRamBytes = 16 * kMiB;

}  // namespace keel::vmm::layout
