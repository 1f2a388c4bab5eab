// Vcpu methods: KVM_RUN and register access (see kvm.h).
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "base/status.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/kvm_abi.h"

namespace keel::vmm {

namespace {

using kvm_abi::Ioctl;

SegmentState FromKvm(const kvm_segment& s) {
  return {s.base, s.limit, s.selector, s.type, s.present, s.dpl, s.db, s.s, s.l, s.g, s.avl};
}

kvm_segment ToKvm(const SegmentState& s) {
  kvm_segment k{};
  k.base = s.base;
  k.limit = s.limit;
  k.selector = s.selector;
  k.type = s.type;
  k.present = s.present;
  k.dpl = s.dpl;
  k.db = s.db;
  k.s = s.s;
  k.l = s.l;
  k.g = s.g;
  k.avl = s.avl;
  k.unusable = s.present ? 0 : 1;
  return k;
}

const char* ExitReasonName(uint32_t reason) {
  switch (reason) {
    case KVM_EXIT_UNKNOWN: return "UNKNOWN";
    case KVM_EXIT_EXCEPTION: return "EXCEPTION";
    case KVM_EXIT_DEBUG: return "DEBUG";
    case KVM_EXIT_IRQ_WINDOW_OPEN: return "IRQ_WINDOW_OPEN";
    case KVM_EXIT_SET_TPR: return "SET_TPR";
    case KVM_EXIT_TPR_ACCESS: return "TPR_ACCESS";
    case KVM_EXIT_NMI: return "NMI";
    case KVM_EXIT_X86_RDMSR: return "X86_RDMSR";
    case KVM_EXIT_X86_WRMSR: return "X86_WRMSR";
    default: return "other";
  }
}

}  // namespace

absl::StatusOr<VcpuExit> Vcpu::Run() {
  VcpuExit exit;
  if (ioctl(fd_.get(), KVM_RUN, 0) < 0) {
    if (errno == EINTR || errno == EAGAIN) {
      exit.kind = VcpuExit::Kind::kInterrupted;
      return exit;
    }
    return ErrnoError(errno, "KVM_RUN on vCPU ", id_);
  }
  kvm_run* r = run();
  switch (r->exit_reason) {
    case KVM_EXIT_IO:
      exit.kind = VcpuExit::Kind::kIo;
      exit.addr = r->io.port;
      exit.size = r->io.size;
      exit.count = r->io.count;
      exit.is_write = r->io.direction == KVM_EXIT_IO_OUT;
      exit.data = reinterpret_cast<uint8_t*>(r) + r->io.data_offset;
      break;
    case KVM_EXIT_MMIO:
      exit.kind = VcpuExit::Kind::kMmio;
      exit.addr = r->mmio.phys_addr;
      exit.size = r->mmio.len;
      exit.is_write = r->mmio.is_write != 0;
      exit.data = r->mmio.data;
      break;
    case KVM_EXIT_HLT:
      exit.kind = VcpuExit::Kind::kHlt;
      break;
    case KVM_EXIT_SHUTDOWN:
      exit.kind = VcpuExit::Kind::kShutdown;
      exit.detail = "triple fault (KVM_EXIT_SHUTDOWN)";
      break;
    case KVM_EXIT_INTR:
      exit.kind = VcpuExit::Kind::kInterrupted;
      break;
    case KVM_EXIT_SYSTEM_EVENT:
      if (r->system_event.type == KVM_SYSTEM_EVENT_RESET) {
        exit.kind = VcpuExit::Kind::kSystemReset;
      } else if (r->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
        exit.kind = VcpuExit::Kind::kSystemShutdown;
      } else {
        exit.kind = VcpuExit::Kind::kUnknown;
        exit.detail = absl::StrFormat("system event type %u", r->system_event.type);
      }
      break;
    case KVM_EXIT_FAIL_ENTRY:
      exit.kind = VcpuExit::Kind::kFailEntry;
      exit.detail = absl::StrFormat("KVM_EXIT_FAIL_ENTRY, hardware reason %#x",
                                    r->fail_entry.hardware_entry_failure_reason);
      break;
    case KVM_EXIT_INTERNAL_ERROR: {
      exit.kind = VcpuExit::Kind::kInternalError;
      const uint32_t suberror = r->internal.suberror;
      const char* what = suberror == KVM_INTERNAL_ERROR_EMULATION     ? "emulation failure"
                         : suberror == KVM_INTERNAL_ERROR_SIMUL_EX    ? "simultaneous exceptions"
                         : suberror == KVM_INTERNAL_ERROR_DELIVERY_EV ? "event delivery failure"
                                                                      : "internal error";
      exit.detail = absl::StrFormat("KVM_EXIT_INTERNAL_ERROR: %s (suberror %u)", what, suberror);
      break;
    }
    default:
      exit.kind = VcpuExit::Kind::kUnknown;
      exit.detail = absl::StrFormat("unexpected KVM exit reason %u (%s)", r->exit_reason,
                                    ExitReasonName(r->exit_reason));
      break;
  }
  return exit;
}

void Vcpu::SetImmediateExit(bool value) {
  // kvm_run is shared with the kernel; a plain store may be reordered or elided.
  std::atomic_ref<uint8_t>(run()->immediate_exit).store(value ? 1 : 0, std::memory_order_seq_cst);
}

absl::StatusOr<Registers> Vcpu::GetRegisters() const {
  kvm_regs k{};
  if (Ioctl(fd_.get(), KVM_GET_REGS, &k) < 0) return ErrnoError(errno, "KVM_GET_REGS");
  return Registers{k.rax, k.rbx, k.rcx, k.rdx, k.rsi, k.rdi, k.rsp, k.rbp, k.r8,  k.r9,
                   k.r10, k.r11, k.r12, k.r13, k.r14, k.r15, k.rip, k.rflags};
}

absl::Status Vcpu::SetRegisters(const Registers& r) {
  kvm_regs k{};
  k.rax = r.rax; k.rbx = r.rbx; k.rcx = r.rcx; k.rdx = r.rdx;
  k.rsi = r.rsi; k.rdi = r.rdi; k.rsp = r.rsp; k.rbp = r.rbp;
  k.r8 = r.r8; k.r9 = r.r9; k.r10 = r.r10; k.r11 = r.r11;
  k.r12 = r.r12; k.r13 = r.r13; k.r14 = r.r14; k.r15 = r.r15;
  k.rip = r.rip; k.rflags = r.rflags;
  if (Ioctl(fd_.get(), KVM_SET_REGS, &k) < 0) return ErrnoError(errno, "KVM_SET_REGS");
  return absl::OkStatus();
}

absl::StatusOr<SpecialRegisters> Vcpu::GetSpecialRegisters() const {
  kvm_sregs k{};
  if (Ioctl(fd_.get(), KVM_GET_SREGS, &k) < 0) return ErrnoError(errno, "KVM_GET_SREGS");
  SpecialRegisters s{};
  s.cs = FromKvm(k.cs); s.ds = FromKvm(k.ds); s.es = FromKvm(k.es); s.fs = FromKvm(k.fs);
  s.gs = FromKvm(k.gs); s.ss = FromKvm(k.ss); s.tr = FromKvm(k.tr); s.ldt = FromKvm(k.ldt);
  s.gdt = {k.gdt.base, k.gdt.limit};
  s.idt = {k.idt.base, k.idt.limit};
  s.cr0 = k.cr0; s.cr2 = k.cr2; s.cr3 = k.cr3; s.cr4 = k.cr4; s.cr8 = k.cr8;
  s.efer = k.efer;
  s.apic_base = k.apic_base;
  return s;
}

absl::Status Vcpu::SetSpecialRegisters(const SpecialRegisters& s) {
  // Start from the current state so fields Keel does not model (interrupt bitmap) stay.
  kvm_sregs k{};
  if (Ioctl(fd_.get(), KVM_GET_SREGS, &k) < 0) return ErrnoError(errno, "KVM_GET_SREGS");
  k.cs = ToKvm(s.cs); k.ds = ToKvm(s.ds); k.es = ToKvm(s.es); k.fs = ToKvm(s.fs);
  k.gs = ToKvm(s.gs); k.ss = ToKvm(s.ss); k.tr = ToKvm(s.tr); k.ldt = ToKvm(s.ldt);
  k.gdt.base = s.gdt.base; k.gdt.limit = s.gdt.limit;
  k.idt.base = s.idt.base; k.idt.limit = s.idt.limit;
  k.cr0 = s.cr0; k.cr2 = s.cr2; k.cr3 = s.cr3; k.cr4 = s.cr4; k.cr8 = s.cr8;
  k.efer = s.efer;
  k.apic_base = s.apic_base;
  if (Ioctl(fd_.get(), KVM_SET_SREGS, &k) < 0) return ErrnoError(errno, "KVM_SET_SREGS");
  return absl::OkStatus();
}

absl::Status Vcpu::SetCpuid(std::span<const CpuidEntry> entries) {
  constexpr size_t kMax = 256;
  if (entries.size() > kMax) {
    return absl::InvalidArgumentError(absl::StrFormat("%u CPUID entries exceed KVM's %u",
                                                      entries.size(), kMax));
  }
  auto cpuid = std::make_unique<kvm_abi::Cpuid2<kMax>>();
  cpuid->header.nent = static_cast<uint32_t>(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const CpuidEntry& e = entries[i];
    kvm_cpuid_entry2& k = cpuid->entries[i];
    k.function = e.function;
    k.index = e.index;
    k.flags = e.flags;
    k.eax = e.eax; k.ebx = e.ebx; k.ecx = e.ecx; k.edx = e.edx;
  }
  if (Ioctl(fd_.get(), kvm_abi::kSetCpuid2, cpuid.get()) < 0) return ErrnoError(errno, "KVM_SET_CPUID2");
  return absl::OkStatus();
}

absl::Status Vcpu::SetMsrs(std::span<const MsrValue> msrs) {
  constexpr size_t kMax = 64;
  if (msrs.size() > kMax) {
    return absl::InvalidArgumentError(absl::StrFormat("at most %u MSRs per call", kMax));
  }
  kvm_abi::Msrs<kMax> list{};
  list.header.nmsrs = static_cast<uint32_t>(msrs.size());
  for (size_t i = 0; i < msrs.size(); ++i) {
    list.entries[i].index = msrs[i].index;
    list.entries[i].data = msrs[i].value;
  }
  const int set = Ioctl(fd_.get(), kvm_abi::kSetMsrs, &list);
  if (set < 0) return ErrnoError(errno, "KVM_SET_MSRS");
  if (static_cast<size_t>(set) != msrs.size()) {
    return absl::InternalError(absl::StrFormat("KVM refused to set MSR %#x on vCPU %u",
                                               msrs[set].index, id_));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Vcpu::GetMsr(uint32_t index) const {
  kvm_abi::Msrs<1> msrs{};
  msrs.header.nmsrs = 1;
  msrs.entries[0].index = index;
  if (Ioctl(fd_.get(), kvm_abi::kGetMsrs, &msrs) != 1) {
    return absl::NotFoundError(absl::StrFormat("MSR %#x is not readable", index));
  }
  return msrs.entries[0].data;
}

absl::Status Vcpu::InitFpu() {
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;     // x87 default control word after FNINIT
  fpu.mxcsr = 0x1f80;  // SSE: all exceptions masked, round to nearest
  if (Ioctl(fd_.get(), KVM_SET_FPU, &fpu) < 0) return ErrnoError(errno, "KVM_SET_FPU");
  return absl::OkStatus();
}

absl::Status Vcpu::InitLapic() {
  kvm_lapic_state lapic{};
  if (Ioctl(fd_.get(), KVM_GET_LAPIC, &lapic) < 0) return ErrnoError(errno, "KVM_GET_LAPIC");
  // Local vector table entries (Intel SDM vol. 3 §11.5.1): delivery mode in bits 8-10.
  constexpr size_t kLvtLint0 = 0x350;
  constexpr size_t kLvtLint1 = 0x360;
  constexpr uint32_t kModeExtInt = 7 << 8;
  constexpr uint32_t kModeNmi = 4 << 8;
  auto set_mode = [&](size_t reg, uint32_t mode) {
    uint32_t v;
    memcpy(&v, &lapic.regs[reg], 4);
    v = (v & ~0x700u) | mode;
    memcpy(&lapic.regs[reg], &v, 4);
  };
  set_mode(kLvtLint0, kModeExtInt);
  set_mode(kLvtLint1, kModeNmi);
  if (Ioctl(fd_.get(), KVM_SET_LAPIC, &lapic) < 0) return ErrnoError(errno, "KVM_SET_LAPIC");
  return absl::OkStatus();
}

uint32_t Vcpu::TscKhz() const {
  const int khz = ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
  return khz > 0 ? static_cast<uint32_t>(khz) : 0;
}

std::string Vcpu::DumpRegisters() const {
  std::string out = absl::StrFormat("vCPU %u:", id_);
  auto regs = GetRegisters();
  if (regs.ok()) {
    absl::StrAppendFormat(&out,
                          " RIP=%#018x RSP=%#018x RFLAGS=%#x\n  RAX=%#x RBX=%#x RCX=%#x RDX=%#x "
                          "RSI=%#x RDI=%#x RBP=%#x",
                          regs->rip, regs->rsp, regs->rflags, regs->rax, regs->rbx, regs->rcx,
                          regs->rdx, regs->rsi, regs->rdi, regs->rbp);
  }
  auto sregs = GetSpecialRegisters();
  if (sregs.ok()) {
    absl::StrAppendFormat(&out,
                          "\n  CR0=%#x CR2=%#x CR3=%#x CR4=%#x EFER=%#x CS=%#x(dpl %u, l %u) "
                          "SS=%#x GDT=%#x/%#x IDT=%#x/%#x",
                          sregs->cr0, sregs->cr2, sregs->cr3, sregs->cr4, sregs->efer,
                          sregs->cs.selector, sregs->cs.dpl, sregs->cs.l, sregs->ss.selector,
                          sregs->gdt.base, sregs->gdt.limit, sregs->idt.base, sregs->idt.limit);
  }
  return out;
}

}  // namespace keel::vmm
