// Capacity accounting: what the host offers at the configured overcommit, what VMs and volumes
// already hold, and whether a new one fits. Pure arithmetic, no I/O.
//
//   vCPUs  total = host CPUs × cpu_overcommit
//   memory total = (host MiB − reserve) × memory_overcommit
//   disk   total = free bytes in the volume directory + bytes volumes already hold
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace keel::agent {

struct CapacityPolicy {
  double cpu_overcommit = 4.0;
  double memory_overcommit = 1.0;
  uint64_t memory_reserve_mib = 1024;
};

struct CapacityUsage {
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  uint64_t disk_bytes = 0;
};

struct CapacityReport {
  uint32_t vcpus_total = 0;
  uint64_t memory_mib_total = 0;
  uint64_t disk_bytes_total = 0;
  CapacityUsage allocated;
};

CapacityReport ComputeCapacity(const CapacityPolicy& policy, uint32_t host_cpus,
                               uint64_t host_memory_mib, uint64_t disk_free_bytes,
                               const CapacityUsage& allocated);

// OK if `request` fits beside what is allocated; ResourceExhausted naming the resource, what is
// free and what to do otherwise.
absl::Status CheckFits(const CapacityReport& report, const CapacityUsage& request);

}  // namespace keel::agent
