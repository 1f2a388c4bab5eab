// tap_bench: the host's raw tap rates, the limit a virtio-net device on that tap can reach,
// and the frame source for receive benchmarks. Run inside the namespace that holds the tap.
//
//   tap_bench write TAP SIZE SECS       writev(vnet header + SIZE-byte frame) as fast as the
//                                        tap takes them: the device's transmit path, minus
//                                        the guest
//   tap_bench read TAP SECS [WAIT_S]    readv frames (vnet header + frame) as they come, for
//                                        SECS from the first: the device's receive path
//   tap_bench write-pair TAP SIZE SECS  the same writev, of frames another thread on another CPU
//                                        writes into a 256-slot ring just before (as a guest
//                                        fills virtqueue buffers for a VMM's I/O thread): what
//                                        crossing CPUs for every frame costs
//   tap_bench write-uring TAP SIZE SECS the same frames as `write`, 64 writev requests per
//                                        io_uring_enter: what batching the syscalls saves
//   tap_bench blast IFACE DST_MAC SIZE SECS
//                                        sendmmsg SIZE-byte frames on an AF_PACKET socket
//                                        bound to IFACE (out of the tap, toward its reader)
//
// Each prints one line: `<mode> size=<n> pps=<n> gbps=<n.nn> packets=<n>` (gbps counts frame
// bytes, no header, no FCS, as the test guest's net-bench does). The tap is opened like
// keel-vmm opens it (IFF_VNET_HDR, 12-byte header, no offloads).
#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
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

uint32_t Sum16(const uint8_t* p, size_t n, uint32_t sum) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += (p[i] << 8) | p[i + 1];
  if (n & 1) sum += p[n - 1] << 8;
  return sum;
}

uint16_t Fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// The frame the test guest's net-bench sends (so the host path, bridge and netfilter
// included, is the same): UDP/IPv4 from 10.0.0.2:9 to 10.0.0.1:9, payload bytes counting up,
// both checksums filled in. `size` is the Ethernet frame without FCS (60-1514).
std::vector<uint8_t> Frame(size_t size, const keel::net::MacAddress& dst) {
  constexpr size_t kEth = 14, kIp = 20, kUdp = 8;
  std::vector<uint8_t> f(size, 0);
  memcpy(f.data(), dst.bytes.data(), 6);
  const uint8_t src[6] = {0x52, 0x54, 0x00, 0x4b, 0x54, 0x01};
  memcpy(f.data() + 6, src, 6);
  f[12] = 0x08;  // IPv4
  uint8_t* ip = f.data() + kEth;
  const uint16_t ip_len = static_cast<uint16_t>(size - kEth);
  const uint16_t udp_len = static_cast<uint16_t>(ip_len - kIp);
  ip[0] = 0x45;
  ip[2] = ip_len >> 8;
  ip[3] = ip_len & 0xff;
  ip[8] = 64;  // TTL
  ip[9] = 17;  // UDP
  const uint8_t saddr[4] = {10, 0, 0, 2}, daddr[4] = {10, 0, 0, 1};
  memcpy(ip + 12, saddr, 4);
  memcpy(ip + 16, daddr, 4);
  const uint16_t ip_sum = Fold(Sum16(ip, kIp, 0));
  ip[10] = ip_sum >> 8;
  ip[11] = ip_sum & 0xff;
  uint8_t* udp = ip + kIp;
  udp[1] = 9;
  udp[3] = 9;
  udp[4] = udp_len >> 8;
  udp[5] = udp_len & 0xff;
  for (size_t i = kUdp; i < udp_len; ++i) udp[i] = static_cast<uint8_t>(i);
  uint8_t pseudo[12] = {};
  memcpy(pseudo, saddr, 4);
  memcpy(pseudo + 4, daddr, 4);
  pseudo[9] = 17;
  pseudo[10] = udp[4];
  pseudo[11] = udp[5];
  uint16_t udp_sum = Fold(Sum16(udp, udp_len, Sum16(pseudo, sizeof(pseudo), 0)));
  if (udp_sum == 0) udp_sum = 0xffff;
  udp[6] = udp_sum >> 8;
  udp[7] = udp_sum & 0xff;
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

// The vnet header and frame `write` and `write-uring` send, as one iovec pair.
struct Outgoing {
  explicit Outgoing(size_t size)
      : frame(Frame(size, *keel::net::MacAddress::Parse("02:00:00:00:00:02"))) {}
  keel::net::VirtioNetHdr hdr{};
  std::vector<uint8_t> frame;
  iovec iov[2] = {{&hdr, sizeof(hdr)}, {frame.data(), frame.size()}};
};

// Calls `burst` (which returns the frames it moved) until `secs` have passed; reports.
template <typename Burst>
int Timed(const char* mode, size_t size, double secs, Burst burst) {
  uint64_t packets = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  do {
    packets += burst();
  } while ((elapsed = Seconds(start)) < secs);
  Report(mode, size, packets, packets * size, elapsed);
  return 0;
}

int Write(const char* tap_name, size_t size, double secs) {
  const int fd = OpenTap(tap_name);
  Outgoing out(size);
  return Timed("write", size, secs, [&] {
    uint64_t sent = 0;
    for (int i = 0; i < 256; ++i) sent += writev(fd, out.iov, 2) > 0;
    return sent;
  });
}

void PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

int WritePair(const char* tap_name, size_t size, double secs) {
  const int fd = OpenTap(tap_name);
  constexpr uint32_t kSlots = 256;
  const size_t slot_bytes = (keel::net::kVnetHdrSize + size + 63) / 64 * 64;
  std::vector<uint8_t> ring(kSlots * slot_bytes);
  const Outgoing out(size);  // its frame, copied into each slot
  const std::vector<uint8_t>& frame = out.frame;
  alignas(64) std::atomic<uint64_t> produced{0};
  alignas(64) std::atomic<uint64_t> consumed{0};
  std::atomic<bool> stop{false};
  // The producer stands in for a guest: it writes header and frame into the next free slot.
  std::thread producer([&] {
    PinTo(1);
    uint64_t p = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      if (p - consumed.load(std::memory_order_acquire) == kSlots) continue;
      uint8_t* slot = ring.data() + (p % kSlots) * slot_bytes;
      memset(slot, 0, keel::net::kVnetHdrSize);
      memcpy(slot + keel::net::kVnetHdrSize, frame.data(), size);
      produced.store(++p, std::memory_order_release);
    }
  });
  PinTo(0);
  uint64_t c = 0;
  const int status = Timed("write-pair", size, secs, [&] {
    uint64_t sent = 0;
    for (int i = 0; i < 256; ++i) {
      if (c == produced.load(std::memory_order_acquire)) continue;
      uint8_t* slot = ring.data() + (c % kSlots) * slot_bytes;
      iovec iov[2] = {{slot, keel::net::kVnetHdrSize}, {slot + keel::net::kVnetHdrSize, size}};
      sent += writev(fd, iov, 2) > 0;
      consumed.store(++c, std::memory_order_release);
    }
    return sent;
  });
  stop = true;
  producer.join();
  return status;
}

int WriteUring(const char* tap_name, size_t size, double secs) {
  const int fd = OpenTap(tap_name);
  constexpr unsigned kBatch = 64;
  io_uring ring;
  if (int r = io_uring_queue_init(kBatch * 2, &ring, 0); r < 0) {
    std::fprintf(stderr, "tap_bench: io_uring_queue_init: %s\n", strerror(-r));
    return 2;
  }
  Outgoing out(size);
  const int status = Timed("write-uring", size, secs, [&] {
    uint64_t sent = 0;
    for (int round = 0; round < 8; ++round) {
      for (unsigned i = 0; i < kBatch; ++i) {
        io_uring_prep_writev(io_uring_get_sqe(&ring), fd, out.iov, 2, 0);
      }
      io_uring_submit_and_wait(&ring, kBatch);
      io_uring_cqe* cqe;
      unsigned head, seen = 0;
      io_uring_for_each_cqe(&ring, head, cqe) {
        sent += cqe->res > 0;
        ++seen;
      }
      io_uring_cq_advance(&ring, seen);
    }
    return sent;
  });
  io_uring_queue_exit(&ring);
  return status;
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
  if (mode == "write-pair" && argc == 5) {
    return WritePair(argv[2], std::atoi(argv[3]), std::atof(argv[4]));
  }
  if (mode == "write-uring" && argc == 5) {
    return WriteUring(argv[2], std::atoi(argv[3]), std::atof(argv[4]));
  }
  if (mode == "read" && (argc == 4 || argc == 5)) {
    return Read(argv[2], std::atof(argv[3]), argc == 5 ? std::atof(argv[4]) : 30);
  }
  if (mode == "blast" && argc == 6) {
    return Blast(argv[2], argv[3], std::atoi(argv[4]), std::atof(argv[5]));
  }
  std::fputs(
      "usage: tap_bench write|write-pair|write-uring TAP SIZE SECS | read TAP SECS [WAIT_S] | "
      "blast IFACE DST_MAC SIZE SECS\n",
      stderr);
  return 2;
}
