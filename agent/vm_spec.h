// VmSpecData: a VM spec as keeld keeps it (a plain C++ value, comparable for createVm's
// idempotency check), converted from and to rpc::VmSpec and stored as a flat Cap'n Proto
// message.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "rpc/keel.capnp.h"

namespace keel::agent {

struct DiskSpecData {
  std::string volume{};      // exactly one of volume and image_path is set
  std::string image_path{};
  bool read_only = false;
  bool cache_none = false;
  std::string serial{};
  friend bool operator==(const DiskSpecData&, const DiskSpecData&) = default;
};

struct NicSpecData {
  std::string network{};
  std::string mac{};  // empty: allocated
  uint32_t mtu = 0;
  friend bool operator==(const NicSpecData&, const NicSpecData&) = default;
};

struct VmSpecData {
  std::string name{};
  uint32_t vcpus = 1;
  uint64_t memory_mib = 128;
  std::string kernel_path{};
  std::string initrd_path{};
  std::string cmdline{};
  std::vector<DiskSpecData> disks{};
  std::vector<NicSpecData> nics{};
  std::vector<std::pair<std::string, std::string>> labels{};
  bool auto_start = true;
  friend bool operator==(const VmSpecData&, const VmSpecData&) = default;

  static VmSpecData FromCapnp(rpc::VmSpec::Reader spec);
  void ToCapnp(rpc::VmSpec::Builder spec) const;
  std::string Serialize() const;
  // Empty spec if `bytes` is not a valid message.
  static VmSpecData Deserialize(const std::string& bytes);
};

}  // namespace keel::agent
