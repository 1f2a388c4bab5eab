// DeviceStats: the counters a virtio device reports to controllers (keel-vmm's control
// channel, rpc/vmm.capnp VmmStats). A device fills in the part that matches its kind and
// leaves the rest empty; VirtioDevice::GetStats is called on the I/O thread, so a device can
// keep plain counters there.
#pragma once

#include <cstdint>
#include <optional>

namespace keel::vmm::virtio {

// At namespace scope (not nested in DeviceStats): clang cannot default-construct a nested
// struct with member initializers inside std::optional of its enclosing class.
struct BlockStats {
  uint64_t read_ops = 0;
  uint64_t write_ops = 0;
  uint64_t flush_ops = 0;
  uint64_t read_bytes = 0;
  uint64_t write_bytes = 0;
  uint64_t errors = 0;  // requests completed with an error status
};

struct NetStats {
  uint64_t rx_packets = 0;  // to the guest
  uint64_t tx_packets = 0;  // from the guest
  uint64_t rx_bytes = 0;
  uint64_t tx_bytes = 0;
  uint64_t drops = 0;
};

struct DeviceStats {
  using Block = BlockStats;
  using Net = NetStats;
  std::optional<Block> block;
  std::optional<Net> net;
};

}  // namespace keel::vmm::virtio
