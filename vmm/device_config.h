// Configuration of a VM's disks and NICs, as given on keel-vmm's command line:
//
//   --disk PATH[,ro][,cache=none|writeback][,id=SERIAL]      (or fd=N instead of PATH)
//   --net tap=NAME|fd=N[,mac=52:54:00:12:34:56][,mtu=N]
//
// `fd=N` names a descriptor keel-vmm inherited (the agent opens images and taps itself and
// hands them over, so the VMM needs no rights to the files or to create taps).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "block/image.h"
#include "net/mac_address.h"

namespace keel::vmm {

// virtio-blk's GET_ID answers with at most 20 bytes (virtio 1.2 §5.2.6).
inline constexpr size_t kMaxDiskIdLength = 20;

struct DiskConfig {
  std::string path;  // the image, or empty when `fd` is given
  int fd = -1;       // an inherited, already-open image
  bool read_only = false;
  block::CacheMode cache = block::CacheMode::kWriteback;
  std::string id;  // serial for GET_ID; empty: the VMM makes one up from the disk's index
};

struct NetConfig {
  std::string tap;  // an existing (persistent) tap to open, or empty when `fd` is given
  int fd = -1;      // an inherited tap fd
  std::optional<net::MacAddress> mac;  // the guest's MAC; none: a random local one
  uint32_t mtu = 0;                    // advertised to the guest (VIRTIO_NET_F_MTU); 0: none
};

// Parse one --disk / --net value. Errors name the offending part and what is accepted.
absl::StatusOr<DiskConfig> ParseDiskSpec(absl::string_view spec);
absl::StatusOr<NetConfig> ParseNetSpec(absl::string_view spec);

// A human name for log lines and errors: the path, or "fd N".
std::string DiskName(const DiskConfig& disk);

}  // namespace keel::vmm
