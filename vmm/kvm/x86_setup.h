// x86 vCPU setup for boot: CPUID filtering, boot MSRs and the register state each boot
// protocol expects at its entry point.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "vmm/kvm/kvm.h"

namespace keel::vmm {

// CPUID leaf 0x40000010 (the "timing information" hypervisor leaf): EAX = TSC kHz,
// EBX = local APIC timer kHz. KVM's APIC timer runs at 1 GHz.
inline constexpr uint32_t kCpuidTimingLeaf = 0x40000010;
inline constexpr uint32_t kKvmApicTimerKhz = 1000000;

// Returns the CPUID table for vCPU `index` of `count`, from what KVM supports:
//  - leaf 0x1: initial APIC id = index, logical processor count, HTT, hypervisor bit;
//  - leaf 0x4: cores per package and threads sharing each cache level;
//  - leaves 0xB and 0x1F: one thread per core, `count` cores in one package, x2APIC id;
//  - leaf 0x80000008: core count (AMD);
//  - hypervisor leaves: KVM's, plus 0x40000010 with `tsc_khz` when it is known.
// Pure function: no KVM access, unit-tested on synthetic tables.
std::vector<CpuidEntry> FilterCpuid(std::span<const CpuidEntry> supported, uint32_t index,
                                    uint32_t count, uint32_t tsc_khz);

// Sets the MSRs firmware leaves for an OS (SYSENTER/SYSCALL targets zeroed, fast strings,
// MTRRs enabled with write-back default), skipping any this KVM cannot save.
absl::Status SetBootMsrs(Vcpu& vcpu, std::span<const uint32_t> supported_msrs);

// How the boot CPU enters the kernel.
enum class EntryMode {
  // Xen PVH: 32-bit protected mode, paging off, flat 4 GiB segments, EBX = start_info.
  kPvh32,
  // Linux x86 64-bit boot protocol: long mode with the identity page tables at
  // layout::kPml4Start, GDT at layout::kGdtStart (CS 0x10, DS 0x18), RSI = boot_params.
  kLinux64,
};

// Sets the BSP's registers for `mode`: RIP = entry, EBX/RSI = boot_info_gpa.
absl::Status SetBootRegisters(Vcpu& vcpu, EntryMode mode, uint64_t entry, uint64_t boot_info_gpa);

}  // namespace keel::vmm
