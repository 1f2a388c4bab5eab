#include "vmm/kvm/capabilities.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "base/fd.h"
#include "base/status.h"

namespace keel::vmm {
namespace {

struct NamedCap {
  int cap;
  const char* name;
};

constexpr NamedCap kCaps[] = {
    {KVM_CAP_IRQCHIP, "IRQCHIP"},
    {KVM_CAP_PIT2, "PIT2"},
    {KVM_CAP_IOEVENTFD, "IOEVENTFD"},
    {KVM_CAP_IRQFD, "IRQFD"},
    {KVM_CAP_IRQ_ROUTING, "IRQ_ROUTING"},
    {KVM_CAP_SIGNAL_MSI, "SIGNAL_MSI"},
    {KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR"},
    {KVM_CAP_SET_IDENTITY_MAP_ADDR, "SET_IDENTITY_MAP_ADDR"},
    {KVM_CAP_READONLY_MEM, "READONLY_MEM"},
    {KVM_CAP_COALESCED_MMIO, "COALESCED_MMIO"},
    {KVM_CAP_XSAVE, "XSAVE"},
    {KVM_CAP_MP_STATE, "MP_STATE"},
    {KVM_CAP_VCPU_EVENTS, "VCPU_EVENTS"},
    {KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT"},
    {KVM_CAP_GET_TSC_KHZ, "GET_TSC_KHZ"},
    {KVM_CAP_TSC_CONTROL, "TSC_CONTROL"},
    {KVM_CAP_SPLIT_IRQCHIP, "SPLIT_IRQCHIP"},
    {KVM_CAP_USER_MEMORY, "USER_MEMORY"},
    {KVM_CAP_EXT_CPUID, "EXT_CPUID"},
};

}  // namespace

absl::StatusOr<KvmCapabilityReport> QueryKvmCapabilities(const char* path) {
  ScopedFd kvm(open(path, O_RDWR | O_CLOEXEC));
  if (!kvm) return ErrnoError(errno, "open ", path);
  KvmCapabilityReport report;
  report.api_version = ioctl(kvm.get(), KVM_GET_API_VERSION, 0);
  int max = ioctl(kvm.get(), KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
  int nr = ioctl(kvm.get(), KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
  report.recommended_vcpus = nr > 0 ? static_cast<uint32_t>(nr) : 4;
  report.max_vcpus = max > 0 ? static_cast<uint32_t>(max) : report.recommended_vcpus;
  for (const NamedCap& c : kCaps) {
    if (ioctl(kvm.get(), KVM_CHECK_EXTENSION, c.cap) > 0) report.present.push_back(c.name);
  }
  return report;
}

}  // namespace keel::vmm
