// main() for the net tests: moves the whole test process into a fresh network namespace before
// any test (or thread) runs, so nothing a test does can touch the host's real network, and every
// bridge, tap and veth it creates dies with the namespace even if the binary crashes.
//
// Exits 77 (meson's "skipped") with the reason when the machine cannot run the tests: no root
// privileges (CAP_SYS_ADMIN for the namespace, CAP_NET_ADMIN for links) or no /dev/net/tun.
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "gtest/gtest.h"

namespace {

constexpr int kSkip = 77;

bool HasEffectiveCap(int cap) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return (data[cap / 32].effective & (1u << (cap % 32))) != 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (!HasEffectiveCap(CAP_NET_ADMIN) || !HasEffectiveCap(CAP_SYS_ADMIN)) {
    std::fprintf(stderr,
                 "SKIP: the net tests need CAP_NET_ADMIN and CAP_SYS_ADMIN (run as root) to "
                 "create a network namespace, links and taps\n");
    return kSkip;
  }
  const int tun = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (tun < 0) {
    std::fprintf(stderr, "SKIP: cannot open /dev/net/tun (%s); the tap tests need it\n",
                 std::strerror(errno));
    return kSkip;
  }
  close(tun);
  // Single-threaded still, so every thread started later (gtest's, the tests') inherits the
  // new namespace.
  if (unshare(CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "SKIP: unshare(CLONE_NEWNET) failed (%s); cannot isolate the tests\n",
                 std::strerror(errno));
    return kSkip;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
