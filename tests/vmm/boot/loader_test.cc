// Format detection and the whole path from files on disk.
#include "vmm/boot/loader.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/vmm/boot/test_images.h"
#include "tests/vmm/boot/test_util.h"
#include "vmm/boot/pvh.h"
#include "vmm/layout.h"

namespace keel::vmm {
namespace {

using ::testing::HasSubstr;
using testing::Image;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/keel-boot-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const Image& bytes) const {
    const std::string path = path_ + "/" + name;
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    close(fd);
    return path;
  }

 private:
  std::string path_;
};

class LoaderTest : public testing::GuestMemoryTest {
 protected:
  LoaderTest() : GuestMemoryTest(32 * layout::kMiB) {}
};

TEST_F(LoaderTest, BootsAPvhElfAndInitrdFromFiles) {
  TempDir dir;
  const std::string kernel_path =
      dir.Write("vmlinux", testing::BuildPvhElf(testing::DefaultPvhElfSpec()));
  const std::string initrd_path = dir.Write("initrd", testing::Pattern(8192, 4));
  auto kernel = FileImageReader::Open(kernel_path);
  auto initrd = FileImageReader::Open(initrd_path);
  ASSERT_TRUE(kernel.ok() && initrd.ok());

  auto entry = LoadKernel(*mem_, {&*kernel, &*initrd, "console=ttyS0", 0});

  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->mode, BootMode::kPvh32);
  EXPECT_EQ(entry->initrd_gpa, 32 * layout::kMiB - 8192);
  auto info = mem_->ReadObj<pvh::StartInfo>(layout::kPvhStartInfo);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->rsdp_paddr, 0u);
}

TEST_F(LoaderTest, BootsABzImageFromAFile) {
  TempDir dir;
  auto kernel = FileImageReader::Open(dir.Write("bzImage", testing::BuildBzImage({})));
  ASSERT_TRUE(kernel.ok());

  auto entry = LoadKernel(*mem_, {&*kernel, nullptr, "", 0});

  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->mode, BootMode::kLinux64);
}

TEST_F(LoaderTest, RejectsAnImageOfNeitherFormat) {
  const Image junk(4096, 0x42);
  SpanImageReader kernel("/images/junk", junk);

  auto entry = LoadKernel(*mem_, {&kernel, nullptr, "", 0});

  EXPECT_EQ(entry.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(entry.status().message(),
              HasSubstr("kernel /images/junk is not a PVH ELF (no ELF header) or a bzImage "
                        "(no HdrS header"));
}

TEST_F(LoaderTest, RejectsAnEmptyImage) {
  SpanImageReader kernel("/images/empty", {});

  auto entry = LoadKernel(*mem_, {&kernel, nullptr, "", 0});

  EXPECT_THAT(entry.status().message(), HasSubstr("/images/empty is not a PVH ELF"));
}

TEST_F(LoaderTest, RejectsAMissingKernel) {
  auto entry = LoadKernel(*mem_, {nullptr, nullptr, "", 0});

  EXPECT_THAT(entry.status().message(), HasSubstr("no kernel image"));
}

TEST_F(LoaderTest, RejectsAKernelFileThatShrankAfterOpen) {
  TempDir dir;
  const std::string path = dir.Write("vmlinux", testing::BuildPvhElf(testing::DefaultPvhElfSpec()));
  auto kernel = FileImageReader::Open(path);
  ASSERT_TRUE(kernel.ok());
  ASSERT_EQ(truncate(path.c_str(), 4096), 0);

  auto entry = LoadKernel(*mem_, {&*kernel, nullptr, "", 0});

  EXPECT_THAT(entry.status().message(), HasSubstr("was it modified"));
}

}  // namespace
}  // namespace keel::vmm
