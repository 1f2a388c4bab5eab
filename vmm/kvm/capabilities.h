// What this host's KVM offers, for the agent's host inventory: the API version, vCPU limits
// and which of the capabilities Keel relies on are present. Reads /dev/kvm without creating a
// VM; works for any user who may open /dev/kvm.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace keel::vmm {

struct KvmCapabilityReport {
  int api_version = 0;
  uint32_t max_vcpus = 0;          // KVM_CAP_MAX_VCPUS
  uint32_t recommended_vcpus = 0;  // KVM_CAP_NR_VCPUS
  std::vector<std::string> present;  // e.g. "IRQCHIP", "IOEVENTFD", ...
};

absl::StatusOr<KvmCapabilityReport> QueryKvmCapabilities(const char* path = "/dev/kvm");

}  // namespace keel::vmm
