// Variable-length KVM ioctl arguments, laid out as the kernel's C ABI defines them.
//
// <linux/kvm.h> declares kvm_cpuid2, kvm_msrs, kvm_msr_list and friends with
// __DECLARE_FLEX_ARRAY, which wraps the array in a struct holding an empty struct. In C++ an
// empty struct has size 1, so under C++ those types are larger than in C and their arrays
// start at the wrong offset — and since an ioctl number encodes the argument size,
// KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2, KVM_GET/SET_MSRS and KVM_GET_MSR_INDEX_LIST come
// out as numbers the kernel does not know (it answers EINVAL). Keel therefore defines the
// headers and the ioctl numbers itself from the C layout. Private to vmm/kvm/.
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace keel::vmm::kvm_abi {

struct Cpuid2Header {
  uint32_t nent;
  uint32_t padding;
};
struct MsrsHeader {
  uint32_t nmsrs;
  uint32_t pad;
};
struct MsrListHeader {
  uint32_t nmsrs;
};
struct IrqRoutingHeader {
  uint32_t nr;
  uint32_t flags;
};

inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, Cpuid2Header);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, Cpuid2Header);
inline constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, MsrListHeader);
inline constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
inline constexpr unsigned long kSetGsiRouting = _IOW(KVMIO, 0x6a, IrqRoutingHeader);

// A kvm_cpuid2 with room for N entries.
template <size_t N>
struct Cpuid2 {
  Cpuid2Header header;
  kvm_cpuid_entry2 entries[N];
};

// A kvm_msrs with room for N entries.
template <size_t N>
struct Msrs {
  MsrsHeader header;
  kvm_msr_entry entries[N];
};

// A kvm_msr_list with room for N indices.
template <size_t N>
struct MsrList {
  MsrListHeader header;
  uint32_t indices[N];
};

// ioctl() retrying on EINTR. Not for KVM_RUN, whose EINTR means "interrupted".
template <typename Arg>
int Ioctl(int fd, unsigned long request, Arg arg) {
  int r;
  do {
    r = ioctl(fd, request, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

// A kvm_irq_routing with room for N entries.
template <size_t N>
struct IrqRouting {
  IrqRoutingHeader header;
  kvm_irq_routing_entry entries[N];
};

static_assert(sizeof(Cpuid2Header) == 8 && offsetof(Cpuid2<1>, entries) == 8);
static_assert(sizeof(kvm_cpuid_entry2) == 40);
static_assert(sizeof(MsrsHeader) == 8 && offsetof(Msrs<1>, entries) == 8);
static_assert(sizeof(kvm_msr_entry) == 16);
static_assert(offsetof(MsrList<1>, indices) == 4);
static_assert(sizeof(kvm_irq_routing_entry) == 48 && offsetof(IrqRouting<1>, entries) == 8);

}  // namespace keel::vmm::kvm_abi
