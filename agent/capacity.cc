#include "agent/capacity.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace keel::agent {

CapacityReport ComputeCapacity(const CapacityPolicy& policy, uint32_t host_cpus,
                               uint64_t host_memory_mib, uint64_t disk_free_bytes,
                               const CapacityUsage& allocated) {
  CapacityReport r;
  r.vcpus_total = static_cast<uint32_t>(std::floor(host_cpus * policy.cpu_overcommit));
  uint64_t usable =
      host_memory_mib > policy.memory_reserve_mib ? host_memory_mib - policy.memory_reserve_mib : 0;
  r.memory_mib_total = static_cast<uint64_t>(std::floor(usable * policy.memory_overcommit));
  r.disk_bytes_total = disk_free_bytes + allocated.disk_bytes;
  r.allocated = allocated;
  return r;
}

absl::Status CheckFits(const CapacityReport& r, const CapacityUsage& req) {
  const CapacityUsage& a = r.allocated;
  if (req.vcpus > 0 && uint64_t{a.vcpus} + req.vcpus > r.vcpus_total) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "not enough vCPUs: ", req.vcpus, " asked, ", r.vcpus_total > a.vcpus ? r.vcpus_total - a.vcpus : 0,
        " of ", r.vcpus_total, " free; delete VMs, ask for fewer or raise --cpu-overcommit"));
  }
  if (req.memory_mib > 0 && a.memory_mib + req.memory_mib > r.memory_mib_total) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "not enough memory: ", req.memory_mib, " MiB asked, ",
        r.memory_mib_total > a.memory_mib ? r.memory_mib_total - a.memory_mib : 0, " of ",
        r.memory_mib_total, " MiB free; delete VMs, ask for less or raise --memory-overcommit"));
  }
  if (req.disk_bytes > 0 && a.disk_bytes + req.disk_bytes > r.disk_bytes_total) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "not enough disk space for volumes: ", req.disk_bytes, " bytes asked, ",
        r.disk_bytes_total > a.disk_bytes ? r.disk_bytes_total - a.disk_bytes : 0,
        " bytes free; delete volumes or ask for less"));
  }
  return absl::OkStatus();
}

}  // namespace keel::agent
