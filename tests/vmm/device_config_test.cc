#include "vmm/device_config.h"

#include <fcntl.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "vmm/cli.h"

namespace keel::vmm {
namespace {

TEST(DiskSpecTest, PathWithOptions) {
  auto disk = ParseDiskSpec("/var/lib/keel/a.img,ro,cache=none,id=vol-7");

  ASSERT_TRUE(disk.ok()) << disk.status();
  EXPECT_EQ(disk->path, "/var/lib/keel/a.img");
  EXPECT_TRUE(disk->read_only);
  EXPECT_EQ(disk->cache, block::CacheMode::kNone);
  EXPECT_EQ(disk->id, "vol-7");
  EXPECT_EQ(disk->fd, -1);
}

TEST(DiskSpecTest, DefaultsAreWritableWriteback) {
  auto disk = ParseDiskSpec("a.img");

  ASSERT_TRUE(disk.ok());
  EXPECT_FALSE(disk->read_only);
  EXPECT_EQ(disk->cache, block::CacheMode::kWriteback);
  EXPECT_EQ(DiskName(*disk), "a.img");
}

TEST(DiskSpecTest, InheritedFd) {
  const int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GT(fd, 2);

  auto disk = ParseDiskSpec("fd=" + std::to_string(fd) + ",ro");

  ASSERT_TRUE(disk.ok()) << disk.status();
  EXPECT_EQ(disk->fd, fd);
  EXPECT_TRUE(disk->path.empty());
  EXPECT_EQ(DiskName(*disk), "fd " + std::to_string(fd));
  close(fd);
}

TEST(DiskSpecTest, RejectsBadSpecs) {
  for (const char* bad : {"", "ro", "a.img,cache=fast", "a.img,bogus=1", "fd=1", "fd=x",
                          "fd=999999", "a.img,fd=3", "a.img,id=123456789012345678901"}) {
    EXPECT_EQ(ParseDiskSpec(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(NetSpecTest, TapWithMacAndMtu) {
  auto nic = ParseNetSpec("tap=keel-t0,mac=52:54:00:ab:cd:ef,mtu=9000");

  ASSERT_TRUE(nic.ok()) << nic.status();
  EXPECT_EQ(nic->tap, "keel-t0");
  ASSERT_TRUE(nic->mac.has_value());
  EXPECT_EQ(nic->mac->ToString(), "52:54:00:ab:cd:ef");
  EXPECT_EQ(nic->mtu, 9000u);
}

TEST(NetSpecTest, RejectsBadSpecs) {
  for (const char* bad : {"", "keel-t0", "tap=", "tap=a,mac=ff:ff:ff:ff:ff:ff", "tap=a,mtu=67",
                          "tap=a,mtu=70000", "tap=a,speed=10", "tap=a,fd=5"}) {
    EXPECT_EQ(ParseNetSpec(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(CommandLineTest, RepeatableDevicesAndNumbers) {
  auto opts = ParseCommandLine({"--kernel", "k", "--memory-mib=256", "--vcpus", "2", "--disk",
                                "a.img", "--disk", "b.img,ro", "--net", "tap=t0"});

  ASSERT_TRUE(opts.ok()) << opts.status();
  EXPECT_EQ(opts->machine.kernel_path, "k");
  EXPECT_EQ(opts->machine.memory_mib, 256u);
  EXPECT_EQ(opts->machine.vcpus, 2u);
  ASSERT_EQ(opts->machine.disks.size(), 2u);
  EXPECT_TRUE(opts->machine.disks[1].read_only);
  ASSERT_EQ(opts->machine.nets.size(), 1u);
}

TEST(CommandLineTest, HelpNeedsNoKernel) {
  auto opts = ParseCommandLine({"--help"});

  ASSERT_TRUE(opts.ok());
  EXPECT_TRUE(opts->help);
  EXPECT_NE(Usage().find("--disk"), std::string::npos);
}

}  // namespace
}  // namespace keel::vmm
