// RAII wrappers over /dev/kvm, a VM and its vCPUs, with typed ioctl helpers.
//
// This folder is the only place in Keel that includes <linux/kvm.h>: everything above it
// sees Keel types (VcpuExit, SegmentState...). Each wrapper owns its fd; destroying a Vm
// before its Vcpus is a bug (vCPU fds keep the VM alive in the kernel, but Keel's memory
// mappings would be gone).
//
// Example:
//
//   KEEL_ASSIGN_OR_RETURN(auto kvm, Kvm::Open());
//   KEEL_ASSIGN_OR_RETURN(auto vm, kvm->CreateVm());
//   KEEL_RETURN_IF_ERROR(vm->SetUserMemoryRegion(0, 0, size, host, 0));
//   KEEL_ASSIGN_OR_RETURN(auto vcpu, vm->CreateVcpu(0));
//   KEEL_ASSIGN_OR_RETURN(VcpuExit exit, vcpu->Run());
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/fd.h"
#include "base/mapping.h"
#include "vmm/x86_state.h"

struct kvm_run;
struct kvm_cpuid2;

namespace keel::vmm {

class Vm;
class Vcpu;

// One CPUID leaf as KVM reports and accepts it (kvm_cpuid_entry2 without the padding).
struct CpuidEntry {
  uint32_t function = 0;
  uint32_t index = 0;
  uint32_t flags = 0;  // KVM_CPUID_FLAG_* (SIGNIFCANT_INDEX: `index` matters)
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

// The KVM system fd. Create one per process and share it: it caches the CPUID that
// KVM_GET_SUPPORTED_CPUID reports (costly, ~0.3 ms on nested hosts).
class Kvm {
 public:
  // Opens /dev/kvm (or `path`) and checks the API version and the capabilities Keel needs.
  // Errors say how to fix access ("no access to /dev/kvm: run as root or join group kvm").
  static absl::StatusOr<std::unique_ptr<Kvm>> Open(const char* path = "/dev/kvm");

  int fd() const { return fd_.get(); }
  // KVM_CHECK_EXTENSION on the system fd; 0 when absent.
  int CheckExtension(int cap) const;
  // The most vCPUs a VM may have (KVM_CAP_MAX_VCPUS, falling back to KVM_CAP_NR_VCPUS).
  int MaxVcpus() const;
  // KVM_GET_SUPPORTED_CPUID, queried on first use and cached. Thread-compatible.
  absl::StatusOr<std::vector<CpuidEntry>> SupportedCpuid();
  // MSR indices KVM can save/restore (KVM_GET_MSR_INDEX_LIST), cached.
  absl::StatusOr<std::vector<uint32_t>> MsrIndexList();

  absl::StatusOr<std::unique_ptr<Vm>> CreateVm();

 private:
  friend class Vm;
  explicit Kvm(ScopedFd fd) : fd_(std::move(fd)) {}
  ScopedFd fd_;
  size_t vcpu_mmap_size_ = 0;
  std::vector<CpuidEntry> cpuid_;
  std::vector<uint32_t> msr_index_list_;
};

// Where an ioeventfd listens.
enum class IoSpace { kPio, kMmio };

class Vm {
 public:
  int fd() const { return fd_.get(); }
  Kvm& kvm() const { return *kvm_; }

  // KVM_SET_USER_MEMORY_REGION. `host` must stay mapped for the VM's lifetime.
  absl::Status SetUserMemoryRegion(uint32_t slot, uint64_t gpa, uint64_t size, void* host,
                                   uint32_t flags = 0);
  // x86 platform setup: KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR, KVM_CREATE_IRQCHIP
  // (PIC + IOAPIC + LAPICs in the kernel), KVM_CREATE_PIT2. Call before creating vCPUs.
  absl::Status SetTssAddr(uint64_t gpa);
  absl::Status SetIdentityMapAddr(uint64_t gpa);
  absl::Status CreateIrqchip();
  absl::Status CreatePit2();

  // Routes the in-kernel irqchip like a PC whose firmware tables say "ISA IRQ 0 is GSI 2"
  // (the MADT interrupt source override every PC has): GSI 0 drives PIC pin 0 and IOAPIC
  // pin 2, GSIs 1-15 drive the PIC and the IOAPIC pin of the same number, 16-23 the IOAPIC
  // only. KVM's default sends the PIT (GSI 0) to IOAPIC pin 0, which no OS expects.
  absl::Status SetPcIrqRouting();
  // Raises/lowers a GSI line of the in-kernel irqchip (KVM_IRQ_LINE).
  absl::Status SetIrqLine(uint32_t gsi, bool level);
  // Ties `eventfd` to `gsi`: a write to it injects an edge on the line (KVM_IRQFD).
  absl::Status RegisterIrqfd(int eventfd, uint32_t gsi);
  absl::Status UnregisterIrqfd(int eventfd, uint32_t gsi);
  // A guest write of `len` bytes at `addr` signals `eventfd` without leaving the kernel
  // (KVM_IOEVENTFD). With `datamatch`, only writes of that value do.
  absl::Status RegisterIoeventfd(int eventfd, IoSpace space, uint64_t addr, uint32_t len,
                                 std::optional<uint64_t> datamatch = std::nullopt);
  absl::Status UnregisterIoeventfd(int eventfd, IoSpace space, uint64_t addr, uint32_t len,
                                   std::optional<uint64_t> datamatch = std::nullopt);

  absl::StatusOr<std::unique_ptr<Vcpu>> CreateVcpu(uint32_t id);

 private:
  friend class Kvm;
  Vm(Kvm* kvm, ScopedFd fd) : kvm_(kvm), fd_(std::move(fd)) {}
  absl::Status Ioeventfd(int eventfd, IoSpace space, uint64_t addr, uint32_t len,
                         std::optional<uint64_t> datamatch, bool deassign);
  Kvm* kvm_;  // not owned; outlives the VM
  ScopedFd fd_;
};

// Why KVM_RUN returned, translated out of struct kvm_run.
struct VcpuExit {
  enum class Kind {
    kIo,             // port I/O: port, size, count, is_write, data
    kMmio,           // MMIO: addr, size, is_write, data
    kHlt,            // HLT with no in-kernel irqchip to wait on
    kShutdown,       // triple fault
    kSystemReset,    // KVM_SYSTEM_EVENT_RESET
    kSystemShutdown, // KVM_SYSTEM_EVENT_SHUTDOWN
    kInterrupted,    // a signal or immediate_exit interrupted KVM_RUN (EINTR)
    kFailEntry,      // hardware refused to enter the guest; detail has the reason
    kInternalError,  // KVM could not emulate; detail has the suberror
    kUnknown,        // any other exit reason; detail names it
  };
  Kind kind = Kind::kUnknown;
  uint64_t addr = 0;     // port or guest physical address
  uint32_t size = 0;     // access width in bytes (1, 2, 4, 8)
  uint32_t count = 1;    // repetitions for string port I/O
  bool is_write = false;
  // The bytes written by the guest, or where to put the bytes it reads: count * size bytes
  // inside the vCPU's kvm_run page. Valid until the next Run().
  uint8_t* data = nullptr;
  std::string detail;
};

// x86 register state, Keel's view of kvm_regs / kvm_sregs (SegmentState: vmm/x86_state.h).
struct TableState {
  uint64_t base = 0;
  uint16_t limit = 0;
};
struct Registers {
  uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
  uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
  uint64_t rip, rflags;
};
struct SpecialRegisters {
  SegmentState cs, ds, es, fs, gs, ss, tr, ldt;
  TableState gdt, idt;
  uint64_t cr0, cr2, cr3, cr4, cr8, efer, apic_base;
};

struct MsrValue {
  uint32_t index;
  uint64_t value;
};

class Vcpu {
 public:
  uint32_t id() const { return id_; }
  int fd() const { return fd_.get(); }

  // KVM_RUN. Returns an error only if the ioctl itself failed (not for guest exits).
  absl::StatusOr<VcpuExit> Run();
  // Makes the next (or current, when combined with a signal) KVM_RUN return kInterrupted.
  // Safe from any thread.
  void SetImmediateExit(bool value);

  absl::StatusOr<Registers> GetRegisters() const;
  absl::Status SetRegisters(const Registers& regs);
  absl::StatusOr<SpecialRegisters> GetSpecialRegisters() const;
  absl::Status SetSpecialRegisters(const SpecialRegisters& sregs);
  absl::Status SetCpuid(std::span<const CpuidEntry> entries);
  // Sets the given MSRs; fails naming the first MSR KVM refused.
  absl::Status SetMsrs(std::span<const MsrValue> msrs);
  absl::StatusOr<uint64_t> GetMsr(uint32_t index) const;
  // x87/SSE state after reset: FCW 0x37f, MXCSR 0x1f80.
  absl::Status InitFpu();
  // Programs LVT LINT0 as ExtINT and LINT1 as NMI, as firmware does for the BSP.
  absl::Status InitLapic();
  // KVM_GET_TSC_KHZ; 0 if KVM cannot tell.
  uint32_t TscKhz() const;

  // "RIP=... RSP=... CR0=..." for error reports.
  std::string DumpRegisters() const;

 private:
  friend class Vm;
  Vcpu(uint32_t id, ScopedFd fd, Mapping run) : id_(id), fd_(std::move(fd)), run_(std::move(run)) {}
  kvm_run* run() const { return reinterpret_cast<kvm_run*>(run_.data()); }

  uint32_t id_;
  ScopedFd fd_;
  Mapping run_;  // the shared kvm_run page(s)
};

}  // namespace keel::vmm
