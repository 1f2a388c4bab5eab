#include "tests/net/net_test_util.h"

#include <arpa/inet.h>
#include <linux/capability.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "base/status.h"

namespace keel::net::testing {

void NetTest::SetUp() {
  absl::StatusOr<NetlinkSocket> nl = NetlinkSocket::Open();
  ASSERT_TRUE(nl.ok()) << nl.status();
  nl_.emplace(std::move(*nl));
}

void NetTest::TearDown() {
  if (!nl_) return;
  absl::StatusOr<std::vector<LinkInfo>> links = nl_->ListLinks();
  ASSERT_TRUE(links.ok()) << links.status();
  for (const LinkInfo& link : *links) {
    if (link.name == "lo") continue;
    // A veth's peer may already be gone with its partner.
    absl::Status status = nl_->DeleteLink(link.name);
    EXPECT_TRUE(status.ok() || absl::IsNotFound(status)) << status;
  }
}

std::vector<std::string> NetTest::LinkNames() {
  std::vector<std::string> names;
  absl::StatusOr<std::vector<LinkInfo>> links = nl_->ListLinks();
  EXPECT_TRUE(links.ok()) << links.status();
  if (!links.ok()) return names;
  for (const LinkInfo& link : *links) names.push_back(link.name);
  std::sort(names.begin(), names.end());
  return names;
}

void RunWithoutNetAdmin(const std::function<void()>& fn) {
  std::thread worker([&] {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    ASSERT_EQ(syscall(SYS_capget, &header, data), 0);
    data[CAP_NET_ADMIN / 32].effective &= ~(1u << (CAP_NET_ADMIN % 32));
    ASSERT_EQ(syscall(SYS_capset, &header, data), 0);
    fn();
  });
  worker.join();
}

absl::StatusOr<ScopedFd> OpenPacketSocket(const std::string& ifname) {
  ScopedFd fd(socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(kTestEtherType)));
  if (!fd.valid()) return ErrnoError(errno, "socket(AF_PACKET)");
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(kTestEtherType);
  addr.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (addr.sll_ifindex == 0) return ErrnoError(errno, "if_nametoindex ", ifname);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoError(errno, "bind packet socket to ", ifname);
  }
  return fd;
}

std::vector<uint8_t> MakeFrame(const MacAddress& dst, const MacAddress& src,
                               const std::string& payload) {
  std::vector<uint8_t> frame(dst.bytes.begin(), dst.bytes.end());
  frame.insert(frame.end(), src.bytes.begin(), src.bytes.end());
  frame.push_back(kTestEtherType >> 8);
  frame.push_back(kTestEtherType & 0xff);
  frame.insert(frame.end(), payload.begin(), payload.end());
  // Pad to the 60-byte Ethernet minimum (without FCS), as a NIC would.
  if (frame.size() < 60) frame.resize(60, 0);
  return frame;
}

absl::StatusOr<std::vector<uint8_t>> ReadTestFrame(int fd, size_t skip) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::vector<uint8_t> buf(65536 + skip);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0) continue;
    const size_t len = static_cast<size_t>(n);
    if (len >= skip + 14 && buf[skip + 12] == (kTestEtherType >> 8) &&
        buf[skip + 13] == (kTestEtherType & 0xff)) {
      buf.resize(len);
      return buf;
    }
  }
  return absl::NotFoundError("no test frame arrived within 5 s");
}

absl::StatusOr<bool> EthtoolFlag(const std::string& ifname, uint32_t cmd) {
  ScopedFd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return ErrnoError(errno, "socket(AF_INET)");
  ethtool_value value{};
  value.cmd = cmd;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  ifr.ifr_data = reinterpret_cast<char*>(&value);
  if (ioctl(sock.get(), SIOCETHTOOL, &ifr) != 0) return ErrnoError(errno, "SIOCETHTOOL ", ifname);
  return value.data != 0;
}

}  // namespace keel::net::testing
