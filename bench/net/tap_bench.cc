// tap_bench: the host's raw tap rates, the limit a virtio-net device on that tap can reach,
// and the frame source for receive benchmarks. Run inside the namespace that holds the tap.
//
//   tap_bench write TAP SIZE SECS       writev(vnet header + SIZE-byte frame) as fast as the
//                                        tap takes them: the device's transmit path, minus
//                                        the guest
//   tap_bench read TAP SECS [WAIT_S]    readv frames (vnet header + frame) as they come, for
//                                        SECS from the first: the device's receive path
//   tap_bench blast IFACE DST_MAC SIZE SECS
//                                        sendmmsg SIZE-byte frames on an AF_PACKET socket
//                                        bound to IFACE (out of the tap, toward its reader)
//
// Each prints one line: `<mode> size=<n> pps=<n> gbps=<n.nn> packets=<n>` (gbps counts frame
// bytes, no header, no FCS, as the test guest's net-bench does). The tap is opened like
// keel-vmm opens it (IFF_VNET_HDR, 12-byte header, no offloads).
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "net/mac_address.h"
#include "net/tap.h"
#include "net/vnet_hdr.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

void Report(const char* mode, size_t size, uint64_t packets, uint64_t bytes, double secs) {
  std::printf("%s size=%zu pps=%.0f gbps=%.2f packets=%llu\n", mode, size, packets / secs,
              bytes * 8 / secs / 1e9, static_cast<unsigned long long>(packets));
}

std::vector<uint8_t> Frame(size_t size, const keel::net::MacAddress& dst) {
  std::vector<uint8_t> f(size, 0);
  memcpy(f.data(), dst.bytes.data(), 6);
  const uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x01};
  memcpy(f.data() + 6, src, 6);
  f[12] = 0x08;  // IPv4 EtherType; the payload is zeros
  return f;
}

int OpenTap(const char* name) {
  auto tap = keel::net::Tap::Open(name, {.vnet_hdr_size = keel::net::kVnetHdrSize});
  if (!tap.ok()) {
    std::fprintf(stderr, "tap_bench: %s\n", std::string(tap.status().message()).c_str());
    std::exit(2);
  }
  return tap->ReleaseFds()[0].Release();
}

int Write(const char* tap_name, size_t size, double secs) {
  const int fd = OpenTap(tap_name);
  keel::net::VirtioNetHdr hdr{};
  std::vector<uint8_t> frame = Frame(size, *keel::net::MacAddress::Parse("02:00:00:00:00:02"));
  iovec iov[2] = {{&hdr, sizeof(hdr)}, {frame.data(), frame.size()}};
  uint64_t packets = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  while (true) {
    for (int i = 0; i < 256; ++i) {
      if (writev(fd, iov, 2) > 0) ++packets;
    }
    if ((elapsed = Seconds(start)) >= secs) break;
  }
  Report("write", size, packets, packets * size, elapsed);
  return 0;
}

int Read(const char* tap_name, double secs, double wait_s) {
  const int fd = OpenTap(tap_name);
  static uint8_t buf[65536 + 64];
  iovec iov{buf, sizeof(buf)};
  pollfd pfd{fd, POLLIN, 0};
  std::printf("read ready\n");
  std::fflush(stdout);
  if (poll(&pfd, 1, static_cast<int>(wait_s * 1000)) <= 0) {
    std::fprintf(stderr, "tap_bench: nothing arrived within %.0f s\n", wait_s);
    return 1;
  }
  uint64_t packets = 0, bytes = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  while (true) {
    for (int i = 0; i < 256; ++i) {
      const ssize_t n = readv(fd, &iov, 1);
      if (n > static_cast<ssize_t>(keel::net::kVnetHdrSize)) {
        ++packets;
        bytes += n - keel::net::kVnetHdrSize;
      } else if (n < 0) {
        poll(&pfd, 1, 1);  // empty: wait a little, as an event loop would
      }
    }
    if ((elapsed = Seconds(start)) >= secs) break;
  }
  Report("read", packets ? bytes / packets : 0, packets, bytes, elapsed);
  return 0;
}

int Blast(const char* iface, const char* dst, size_t size, double secs) {
  auto mac = keel::net::MacAddress::Parse(dst);
  if (!mac.ok()) return 2;
  const int s = socket(AF_PACKET, SOCK_RAW, 0);
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_ifindex = static_cast<int>(if_nametoindex(iface));
  if (s < 0 || addr.sll_ifindex == 0 ||
      bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::perror("tap_bench: AF_PACKET socket");
    return 2;
  }
  std::vector<uint8_t> frame = Frame(size, *mac);
  constexpr int kBatch = 64;
  iovec iov{frame.data(), frame.size()};
  mmsghdr msgs[kBatch] = {};
  for (mmsghdr& m : msgs) {
    m.msg_hdr.msg_iov = &iov;
    m.msg_hdr.msg_iovlen = 1;
  }
  uint64_t packets = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  while ((elapsed = Seconds(start)) < secs) {
    const int r = sendmmsg(s, msgs, kBatch, 0);
    if (r > 0) packets += r;
  }
  Report("blast", size, packets, packets * size, elapsed);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "write" && argc == 5) return Write(argv[2], std::atoi(argv[3]), std::atof(argv[4]));
  if (mode == "read" && (argc == 4 || argc == 5)) {
    return Read(argv[2], std::atof(argv[3]), argc == 5 ? std::atof(argv[4]) : 30);
  }
  if (mode == "blast" && argc == 6) {
    return Blast(argv[2], argv[3], std::atoi(argv[4]), std::atof(argv[5]));
  }
  std::fputs(
      "usage: tap_bench write TAP SIZE SECS | read TAP SECS [WAIT_S] | "
      "blast IFACE DST_MAC SIZE SECS\n",
      stderr);
  return 2;
}
