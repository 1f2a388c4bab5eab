#include "vmm/kvm/x86_setup.h"

#include <linux/kvm.h>

#include <algorithm>
#include <bit>

#include "base/log.h"
#include "base/status.h"

namespace keel::vmm {

namespace {

// Number of bits needed to hold ids 0..n-1 (n >= 1).
uint32_t IdBits(uint32_t n) { return n <= 1 ? 0 : std::bit_width(n - 1); }

// Extended topology leaf (0xB / 0x1F) subleaf `level` for one thread per core.
// Intel SDM vol. 2A, CPUID leaf 0BH: ECX[15:8] level type (1 = SMT, 2 = core).
CpuidEntry TopologyEntry(uint32_t leaf, uint32_t level, uint32_t index, uint32_t count) {
  CpuidEntry e{};
  e.function = leaf;
  e.index = level;
  e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  e.edx = index;  // x2APIC id
  switch (level) {
    case 0:  // SMT: one thread per core, so no bits to shift for the next level
      e.eax = 0;
      e.ebx = 1;
      e.ecx = (1u << 8) | level;
      break;
    case 1:  // core: `count` cores in the package
      e.eax = IdBits(count);
      e.ebx = count;
      e.ecx = (2u << 8) | level;
      break;
    default:  // invalid level terminates the enumeration
      e.ecx = level;
      break;
  }
  return e;
}

constexpr uint32_t kHypervisorBit = 1u << 31;  // CPUID.1:ECX[31]
constexpr uint32_t kHttBit = 1u << 28;         // CPUID.1:EDX[28]

}  // namespace

std::vector<CpuidEntry> FilterCpuid(std::span<const CpuidEntry> supported, uint32_t index,
                                    uint32_t count, uint32_t tsc_khz) {
  std::vector<CpuidEntry> out;
  out.reserve(supported.size() + 4);
  const uint32_t pow2_count = std::bit_ceil(std::max(count, 1u));
  bool have_0x1f = false;
  bool have_0xb = false;
  bool have_hypervisor = false;
  for (CpuidEntry e : supported) {
    switch (e.function) {
      case 0x1:
        e.ebx = (e.ebx & 0x0000ffff) | (std::min(pow2_count, 255u) << 16) | (index << 24);
        e.ecx |= kHypervisorBit;
        if (count > 1) {
          e.edx |= kHttBit;
        } else {
          e.edx &= ~kHttBit;
        }
        break;
      case 0x4: {
        // EAX[31:26]: addressable core ids per package - 1; EAX[25:14]: addressable
        // logical processors sharing this cache - 1 (one per core for L1/L2).
        const uint32_t level = (e.eax >> 5) & 0x7;
        const uint32_t sharing = level >= 3 ? std::min(pow2_count, 4096u) - 1 : 0;
        e.eax = (e.eax & 0x3fff) | (sharing << 14) | ((std::min(pow2_count, 64u) - 1) << 26);
        break;
      }
      case 0xb:
        have_0xb = true;
        continue;  // replaced below
      case 0x1f:
        have_0x1f = true;
        continue;  // replaced below
      case 0x40000000:
        have_hypervisor = true;
        if (tsc_khz != 0) e.eax = std::max(e.eax, kCpuidTimingLeaf);
        break;
      case 0x80000008:
        // ECX[7:0]: cores - 1; ECX[15:12]: APIC id bits for the core id (AMD APM vol. 3).
        e.ecx = (e.ecx & ~0xf0ffu) | ((count - 1) & 0xff) | (IdBits(count) << 12);
        break;
      default:
        break;
    }
    out.push_back(e);
  }
  for (uint32_t leaf : {0xbu, 0x1fu}) {
    if ((leaf == 0xb && !have_0xb) || (leaf == 0x1f && !have_0x1f)) continue;
    for (uint32_t level = 0; level < 3; ++level) {
      out.push_back(TopologyEntry(leaf, level, index, count));
    }
  }
  if (have_hypervisor && tsc_khz != 0) {
    CpuidEntry timing{};
    timing.function = kCpuidTimingLeaf;
    timing.eax = tsc_khz;
    timing.ebx = kKvmApicTimerKhz;
    out.push_back(timing);
  }
  return out;
}

absl::Status SetBootMsrs(Vcpu& vcpu, std::span<const uint32_t> supported_msrs) {
  // What a firmware leaves behind for an OS; the KVM API doc and Intel SDM vol. 4 name them.
  constexpr MsrValue kBootMsrs[] = {
      {0x174, 0},               // IA32_SYSENTER_CS
      {0x175, 0},               // IA32_SYSENTER_ESP
      {0x176, 0},               // IA32_SYSENTER_EIP
      {0xc0000081, 0},          // STAR
      {0xc0000082, 0},          // LSTAR
      {0xc0000083, 0},          // CSTAR
      {0xc0000084, 0},          // SYSCALL_MASK
      {0xc0000102, 0},          // KERNEL_GS_BASE
      {0x1a0, 1},               // IA32_MISC_ENABLE: fast string operations
      {0x2ff, (1u << 11) | 6},  // MTRRdefType: MTRRs enabled, default type write-back
  };
  std::vector<MsrValue> msrs;
  for (const MsrValue& m : kBootMsrs) {
    const bool listed =
        std::find(supported_msrs.begin(), supported_msrs.end(), m.index) != supported_msrs.end();
    // MISC_ENABLE and MTRRdefType are emulated MSRs that are not always listed.
    if (listed || m.index == 0x1a0 || m.index == 0x2ff) msrs.push_back(m);
  }
  // Set one at a time so an MSR this KVM flavour refuses is skipped, not fatal.
  for (const MsrValue& m : msrs) {
    absl::Status s = vcpu.SetMsrs(std::span(&m, 1));
    if (!s.ok()) KEEL_LOG(DEBUG) << "skipping boot MSR: " << s.message();
  }
  return absl::OkStatus();
}

absl::Status SetBootRegisters(Vcpu& vcpu, const BootCpuState& state) {
  KEEL_ASSIGN_OR_RETURN(SpecialRegisters sregs, vcpu.GetSpecialRegisters());
  sregs.cs = state.code;
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = state.data;
  SegmentState tss{};
  tss.limit = 0x67;
  tss.type = 0xb;  // busy 32/64-bit TSS
  tss.present = 1;
  sregs.tr = tss;
  sregs.ldt = SegmentState{};  // not present: unusable
  sregs.gdt = {state.gdt_base, state.gdt_limit};
  sregs.idt = {state.idt_base, state.idt_limit};
  sregs.cr0 = state.cr0;
  sregs.cr3 = state.cr3;
  sregs.cr4 = state.cr4;
  sregs.efer = state.efer;
  KEEL_RETURN_IF_ERROR(vcpu.SetSpecialRegisters(sregs));
  Registers regs{};
  regs.rip = state.rip;
  regs.rsp = state.rsp;
  regs.rbp = state.rsp;
  regs.rflags = state.rflags;
  regs.rsi = state.rsi;
  regs.rbx = state.rbx;
  return vcpu.SetRegisters(regs);
}

}  // namespace keel::vmm
