// x86 vCPU setup for boot: CPUID filtering, boot MSRs and the register state each boot
// protocol expects at its entry point.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "vmm/boot/boot_cpu.h"
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

// Loads the boot CPU state the kernel loader computed (vmm/boot/boot_cpu.h) into `vcpu`,
// adding what only matters to KVM: a busy TSS in TR and an unusable LDTR, which the
// hardware guest-state checks require even though no boot protocol uses them.
absl::Status SetBootRegisters(Vcpu& vcpu, const BootCpuState& state);

}  // namespace keel::vmm
