// Helpers for the net tests (all run inside the private namespace net_test_main.cc creates).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/fd.h"
#include "gtest/gtest.h"
#include "net/mac_address.h"
#include "net/netlink.h"

namespace keel::net::testing {

// IEEE 802 "local experimental" EtherType: nothing else in the namespace sends it.
inline constexpr uint16_t kTestEtherType = 0x88b5;

// A fixture that opens a NetlinkSocket and, after every test (passed or failed), deletes every
// link in the namespace except lo, so tests never see each other's leftovers.
class NetTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Names of all links in the namespace, sorted.
  std::vector<std::string> LinkNames();

  std::optional<NetlinkSocket> nl_;
};

// Runs `fn` on a thread whose effective capabilities lack CAP_NET_ADMIN (capabilities are per
// thread), to see what an unprivileged keeld would get.
void RunWithoutNetAdmin(const std::function<void()>& fn);

// An AF_PACKET socket bound to `ifname` that receives only kTestEtherType frames.
absl::StatusOr<ScopedFd> OpenPacketSocket(const std::string& ifname);

// An Ethernet frame of kTestEtherType from `src` to `dst` carrying `payload`.
std::vector<uint8_t> MakeFrame(const MacAddress& dst, const MacAddress& src,
                               const std::string& payload);

// Reads from the non-blocking `fd` until a frame of kTestEtherType arrives (after skipping
// `skip` leading bytes, e.g. a vnet header) or 5 s pass. Returns the whole read, including
// the skipped bytes; NotFound on timeout. Other traffic (IPv6 ND, MLD) is discarded.
absl::StatusOr<std::vector<uint8_t>> ReadTestFrame(int fd, size_t skip);

// Reads a boolean legacy ethtool setting (ETHTOOL_GTSO, ETHTOOL_GTXCSUM...) of `ifname`.
absl::StatusOr<bool> EthtoolFlag(const std::string& ifname, uint32_t cmd);

}  // namespace keel::net::testing
