// Checks on what controllers send, before anything changes: names, paths, specs. Every
// failure is an expected one (see errors.h) with a message that says what to fix.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace keel::agent {

// Names of VMs, networks and volumes: 1-63 characters of [a-z0-9-], starting with a letter or
// digit. `kind` ("VM", "network", "volume") goes into the message.
absl::Status ValidateName(absl::string_view kind, absl::string_view name);

// Resolves `path` (absolute, or relative to `allowed_dir`) with realpath and checks that the
// result is a regular file inside `allowed_dir` (itself resolved). NotFound if it does not
// exist, PermissionDenied if it resolves outside the directory (symlinks included).
absl::StatusOr<std::string> ResolveImagePath(const std::string& allowed_dir,
                                             const std::string& path, absl::string_view what);

// Smallest guest RAM keel-vmm accepts.
inline constexpr uint64_t kMinMemoryMib = 16;

// Checks the VM sizes against the host: vcpus in 1..max_vcpus, memory_mib at least
// kMinMemoryMib and at most the host's memory.
absl::Status ValidateSizes(uint32_t vcpus, uint64_t memory_mib, uint32_t max_vcpus,
                           uint64_t host_memory_mib);

// A NIC's tap name: "kt" + the first 10 hex digits of the VM id + "-" + index (<= 15 bytes).
std::string TapName(const std::string& vm_id, uint32_t index);

// A fresh random VM id (RFC 4122 version 4 UUID, lower-case).
std::string NewVmId();

}  // namespace keel::agent
