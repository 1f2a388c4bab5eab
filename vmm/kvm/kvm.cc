#include "vmm/kvm/kvm.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "base/status.h"
#include "vmm/kvm/kvm_abi.h"

namespace keel::vmm {

namespace {

using kvm_abi::Ioctl;

constexpr int kMaxCpuidEntries = 256;


}  // namespace

absl::StatusOr<std::unique_ptr<Kvm>> Kvm::Open(const char* path) {
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return absl::FailedPreconditionError(absl::StrCat(
          "no ", path, ": this host has no KVM (enable virtualization or load the kvm module)"));
    }
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(
          absl::StrCat("no access to ", path, ": run as root or join the kvm group"));
    }
    return ErrnoError(err, "open ", path);
  }
  auto kvm = std::unique_ptr<Kvm>(new Kvm(ScopedFd(fd)));
  const int version = Ioctl(fd, KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s speaks KVM API version %d; Keel needs %d", path, version, KVM_API_VERSION));
  }
  struct Required {
    int cap;
    const char* name;
  };
  static constexpr Required kRequired[] = {
      {KVM_CAP_IRQCHIP, "IRQCHIP"},          {KVM_CAP_PIT2, "PIT2"},
      {KVM_CAP_IOEVENTFD, "IOEVENTFD"},      {KVM_CAP_IRQFD, "IRQFD"},
      {KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR"}, {KVM_CAP_USER_MEMORY, "USER_MEMORY"},
      {KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT"}, {KVM_CAP_EXT_CPUID, "EXT_CPUID"},
  };
  for (const Required& r : kRequired) {
    if (kvm->CheckExtension(r.cap) <= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " lacks the KVM capability ", r.name, " that Keel needs"));
    }
  }
  const int mmap_size = Ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size < static_cast<int>(sizeof(kvm_run))) {
    return ErrnoError(errno, "KVM_GET_VCPU_MMAP_SIZE");
  }
  kvm->vcpu_mmap_size_ = static_cast<size_t>(mmap_size);
  return kvm;
}

int Kvm::CheckExtension(int cap) const {
  const int r = Ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

int Kvm::MaxVcpus() const {
  int max = CheckExtension(KVM_CAP_MAX_VCPUS);
  if (max <= 0) max = CheckExtension(KVM_CAP_NR_VCPUS);
  return max <= 0 ? 4 : max;  // KVM_CAP_NR_VCPUS absent means 4 (KVM API doc §4.3)
}

absl::StatusOr<std::vector<CpuidEntry>> Kvm::SupportedCpuid() {
  if (!cpuid_.empty()) return cpuid_;
  auto cpuid = std::make_unique<kvm_abi::Cpuid2<kMaxCpuidEntries>>();
  cpuid->header.nent = kMaxCpuidEntries;
  if (Ioctl(fd_.get(), kvm_abi::kGetSupportedCpuid, cpuid.get()) < 0) {
    return ErrnoError(errno, "KVM_GET_SUPPORTED_CPUID");
  }
  std::vector<CpuidEntry> out;
  out.reserve(cpuid->header.nent);
  for (uint32_t i = 0; i < cpuid->header.nent && i < kMaxCpuidEntries; ++i) {
    const kvm_cpuid_entry2& e = cpuid->entries[i];
    out.push_back({e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx});
  }
  cpuid_ = out;
  return out;
}

absl::StatusOr<std::vector<uint32_t>> Kvm::MsrIndexList() {
  if (!msr_index_list_.empty()) return msr_index_list_;
  constexpr uint32_t kMax = 1024;
  auto list = std::make_unique<kvm_abi::MsrList<kMax>>();
  list->header.nmsrs = kMax;
  if (Ioctl(fd_.get(), kvm_abi::kGetMsrIndexList, list.get()) < 0) {
    return ErrnoError(errno, "KVM_GET_MSR_INDEX_LIST");
  }
  msr_index_list_.assign(list->indices, list->indices + std::min(list->header.nmsrs, kMax));
  return msr_index_list_;
}

absl::StatusOr<std::unique_ptr<Vm>> Kvm::CreateVm() {
  const int fd = Ioctl(fd_.get(), KVM_CREATE_VM, 0);
  if (fd < 0) {
    if (errno == ENOMEM || errno == EMFILE || errno == ENFILE) {
      return ErrnoError(errno, "KVM_CREATE_VM (the host is out of resources for VMs)");
    }
    return ErrnoError(errno, "KVM_CREATE_VM");
  }
  return std::unique_ptr<Vm>(new Vm(this, ScopedFd(fd)));
}

absl::Status Vm::SetUserMemoryRegion(uint32_t slot, uint64_t gpa, uint64_t size, void* host,
                                     uint32_t flags) {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = gpa;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (Ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    return ErrnoError(errno, absl::StrFormat("KVM_SET_USER_MEMORY_REGION slot %u gpa %#x size %#x",
                                             slot, gpa, size));
  }
  return absl::OkStatus();
}

absl::Status Vm::SetTssAddr(uint64_t gpa) {
  if (Ioctl(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(gpa)) < 0) {
    return ErrnoError(errno, "KVM_SET_TSS_ADDR");
  }
  return absl::OkStatus();
}

absl::Status Vm::SetIdentityMapAddr(uint64_t gpa) {
  uint64_t addr = gpa;
  if (Ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0) {
    return ErrnoError(errno, "KVM_SET_IDENTITY_MAP_ADDR");
  }
  return absl::OkStatus();
}

absl::Status Vm::CreateIrqchip() {
  if (Ioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0) < 0) return ErrnoError(errno, "KVM_CREATE_IRQCHIP");
  return absl::OkStatus();
}

absl::Status Vm::CreatePit2() {
  kvm_pit_config config{};
  config.flags = KVM_PIT_SPEAKER_DUMMY;
  if (Ioctl(fd_.get(), KVM_CREATE_PIT2, &config) < 0) return ErrnoError(errno, "KVM_CREATE_PIT2");
  return absl::OkStatus();
}

absl::Status Vm::SetPcIrqRouting() {
  constexpr uint32_t kIoapicPins = 24;
  constexpr uint32_t kPicPins = 16;
  auto routing = std::make_unique<kvm_abi::IrqRouting<kIoapicPins + kPicPins>>();
  uint32_t n = 0;
  auto add = [&](uint32_t gsi, uint32_t chip, uint32_t pin) {
    kvm_irq_routing_entry& e = routing->entries[n++];
    e = {};
    e.gsi = gsi;
    e.type = KVM_IRQ_ROUTING_IRQCHIP;
    e.u.irqchip.irqchip = chip;
    e.u.irqchip.pin = pin;
  };
  for (uint32_t gsi = 0; gsi < kIoapicPins; ++gsi) {
    if (gsi == 2) continue;  // IOAPIC pin 2 belongs to GSI 0; PIC IRQ 2 is the cascade
    add(gsi, KVM_IRQCHIP_IOAPIC, gsi == 0 ? 2 : gsi);
    if (gsi < kPicPins) {
      add(gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi % 8);
    }
  }
  routing->header.nr = n;
  if (Ioctl(fd_.get(), kvm_abi::kSetGsiRouting, routing.get()) < 0) {
    return ErrnoError(errno, "KVM_SET_GSI_ROUTING");
  }
  return absl::OkStatus();
}

absl::Status Vm::SetIrqLine(uint32_t gsi, bool level) {
  kvm_irq_level irq{};
  irq.irq = gsi;
  irq.level = level ? 1 : 0;
  if (Ioctl(fd_.get(), KVM_IRQ_LINE, &irq) < 0) {
    return ErrnoError(errno, "KVM_IRQ_LINE gsi ", gsi);
  }
  return absl::OkStatus();
}

absl::Status Vm::RegisterIrqfd(int eventfd, uint32_t gsi) {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(eventfd);
  irqfd.gsi = gsi;
  if (Ioctl(fd_.get(), KVM_IRQFD, &irqfd) < 0) return ErrnoError(errno, "KVM_IRQFD gsi ", gsi);
  return absl::OkStatus();
}

absl::Status Vm::UnregisterIrqfd(int eventfd, uint32_t gsi) {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(eventfd);
  irqfd.gsi = gsi;
  irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
  if (Ioctl(fd_.get(), KVM_IRQFD, &irqfd) < 0) {
    return ErrnoError(errno, "KVM_IRQFD deassign gsi ", gsi);
  }
  return absl::OkStatus();
}

absl::Status Vm::Ioeventfd(int eventfd, IoSpace space, uint64_t addr, uint32_t len,
                           std::optional<uint64_t> datamatch, bool deassign) {
  kvm_ioeventfd io{};
  io.addr = addr;
  io.len = len;
  io.fd = eventfd;
  if (space == IoSpace::kPio) io.flags |= KVM_IOEVENTFD_FLAG_PIO;
  if (datamatch.has_value()) {
    io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
    io.datamatch = *datamatch;
  }
  if (deassign) io.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
  if (Ioctl(fd_.get(), KVM_IOEVENTFD, &io) < 0) {
    return ErrnoError(errno, absl::StrFormat("KVM_IOEVENTFD%s %#x/%u",
                                             deassign ? " deassign" : "", addr, len));
  }
  return absl::OkStatus();
}

absl::Status Vm::RegisterIoeventfd(int eventfd, IoSpace space, uint64_t addr, uint32_t len,
                                   std::optional<uint64_t> datamatch) {
  return Ioeventfd(eventfd, space, addr, len, datamatch, false);
}

absl::Status Vm::UnregisterIoeventfd(int eventfd, IoSpace space, uint64_t addr, uint32_t len,
                                     std::optional<uint64_t> datamatch) {
  return Ioeventfd(eventfd, space, addr, len, datamatch, true);
}

absl::StatusOr<std::unique_ptr<Vcpu>> Vm::CreateVcpu(uint32_t id) {
  const int fd = Ioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  if (fd < 0) return ErrnoError(errno, "KVM_CREATE_VCPU ", id);
  ScopedFd vcpu_fd(fd);
  KEEL_ASSIGN_OR_RETURN(Mapping run, Mapping::File(fd, kvm_->vcpu_mmap_size_,
                                                   0, PROT_READ | PROT_WRITE, MAP_SHARED));
  return std::unique_ptr<Vcpu>(new Vcpu(id, std::move(vcpu_fd), std::move(run)));
}

}  // namespace keel::vmm
