// The host inventory keeld reports in hostInfo: CPUs and their topology, memory, hugepages and
// KVM. Read from /proc, /sys and /dev/kvm; cheap enough to call per request.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/kvm/capabilities.h"

namespace keel::agent {

struct HostInventory {
  std::string hostname;
  std::string cpu_model;
  uint32_t cpus = 0;  // online logical CPUs
  uint32_t sockets = 1;
  uint32_t cores_per_socket = 1;
  uint32_t threads_per_core = 1;
  uint64_t memory_mib = 0;
  uint64_t memory_available_mib = 0;
  uint64_t hugepages_2m_total = 0, hugepages_2m_free = 0;
  uint64_t hugepages_1g_total = 0, hugepages_1g_free = 0;
  bool kvm_ok = false;
  std::string kvm_error;  // why /dev/kvm could not be queried
  vmm::KvmCapabilityReport kvm;
};

// Reads everything except KVM (see ReadKvm), which needs /dev/kvm access.
HostInventory ReadHostInventory();
void ReadKvm(HostInventory& inventory);

// Most vCPUs one VM may have on this host: min(host CPUs, KVM's limit).
uint32_t MaxVcpusPerVm(const HostInventory& inventory);

// Free bytes on the filesystem holding `dir` (0 if it cannot be read).
uint64_t FreeDiskBytes(const std::string& dir);

}  // namespace keel::agent
