// Opening disk images: access modes, O_DIRECT, OFD locking, geometry.
#include "block/image.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/block/block_test_util.h"

namespace keel::block {
namespace {

using ::keel::block::testing::RamfsDir;
using ::keel::block::testing::TempDir;
using ::keel::block::testing::WriteImage;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr size_t kImageBytes = 1 << 20;

class ImageTest : public ::testing::Test {
 protected:
  void SetUp() override { WriteImage(path_, kImageBytes, 1); }
  TempDir dir_;
  std::string path_ = dir_.File("disk.img");
};

TEST_F(ImageTest, WritableImageIsOpenedReadWrite) {
  absl::StatusOr<Image> image = OpenImage(path_, {});

  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(fcntl(image->fd.get(), F_GETFL) & O_ACCMODE, O_RDWR);
  EXPECT_EQ(image->properties.size_bytes, kImageBytes);
  EXPECT_FALSE(image->properties.read_only);
  EXPECT_TRUE(image->properties.supports_write_zeroes);
  EXPECT_TRUE(image->properties.supports_discard);  // ext4 / tmpfs punch holes
}

TEST_F(ImageTest, ReadOnlyImageIsOpenedReadOnly) {
  absl::StatusOr<Image> image = OpenImage(path_, {.read_only = true});

  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(fcntl(image->fd.get(), F_GETFL) & O_ACCMODE, O_RDONLY);
  EXPECT_TRUE(image->properties.read_only);
  EXPECT_FALSE(image->properties.supports_discard);
  EXPECT_FALSE(image->properties.supports_write_zeroes);
}

TEST_F(ImageTest, CacheNoneOpensWithDirectIoAndTheFilesystemAlignment) {
  absl::StatusOr<Image> image = OpenImage(path_, {.cache = CacheMode::kNone});

  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_NE(fcntl(image->fd.get(), F_GETFL) & O_DIRECT, 0);
  EXPECT_TRUE(image->properties.direct_io);
  struct statx stx = {};
  ASSERT_EQ(statx(image->fd.get(), "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx), 0);
  ASSERT_NE(stx.stx_mask & STATX_DIOALIGN, 0u) << "kernel without STATX_DIOALIGN";
  EXPECT_EQ(image->properties.logical_block_size, std::max(512u, stx.stx_dio_offset_align));
  EXPECT_EQ(image->dio_memory_alignment, stx.stx_dio_mem_align);
}

TEST_F(ImageTest, WritebackAdvertises512ByteBlocks) {
  absl::StatusOr<Image> image = OpenImage(path_, {.cache = CacheMode::kWriteback});

  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->properties.logical_block_size, 512u);
  EXPECT_GE(image->properties.physical_block_size, 512u);
  EXPECT_EQ(image->dio_memory_alignment, 1u);
}

TEST_F(ImageTest, SizeIsTruncatedToWholeBlocks) {
  ASSERT_EQ(truncate(path_.c_str(), 4096 + 100), 0);

  absl::StatusOr<Image> image = OpenImage(path_, {});

  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->properties.size_bytes, 4096u);
}

TEST_F(ImageTest, SecondWritableOpenFailsNamingTheImage) {
  absl::StatusOr<Image> first = OpenImage(path_, {});
  ASSERT_TRUE(first.ok()) << first.status();

  absl::StatusOr<Image> second = OpenImage(path_, {});

  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("disk image " + path_ +
                                                   " is in use by another VM (locked for "
                                                   "writing); stop that VM"));
}

TEST_F(ImageTest, ReadOnlyOpenOfAnImageBeingWrittenFails) {
  absl::StatusOr<Image> writer = OpenImage(path_, {});
  ASSERT_TRUE(writer.ok()) << writer.status();

  absl::StatusOr<Image> reader = OpenImage(path_, {.read_only = true});

  EXPECT_EQ(reader.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(reader.status().message(), AllOf(HasSubstr(path_), HasSubstr("locked for writing"),
                                               HasSubstr("even read-only")));
}

TEST_F(ImageTest, ReadersShareAnImageAndKeepWritersOut) {
  absl::StatusOr<Image> reader1 = OpenImage(path_, {.read_only = true});
  absl::StatusOr<Image> reader2 = OpenImage(path_, {.read_only = true});

  absl::StatusOr<Image> writer = OpenImage(path_, {});

  EXPECT_TRUE(reader1.ok()) << reader1.status();
  EXPECT_TRUE(reader2.ok()) << reader2.status();
  EXPECT_EQ(writer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(writer.status().message(), AllOf(HasSubstr(path_), HasSubstr("attached read-only"),
                                               HasSubstr("attach the image read-only")));
}

TEST_F(ImageTest, LockIsReleasedWhenTheImageIsClosed) {
  absl::StatusOr<Image> first = OpenImage(path_, {});
  ASSERT_TRUE(first.ok()) << first.status();
  first->fd.Reset();

  absl::StatusOr<Image> second = OpenImage(path_, {});

  EXPECT_TRUE(second.ok()) << second.status();
}

TEST_F(ImageTest, AdoptedFdTakesTheLock) {
  absl::StatusOr<Image> adopted =
      AdoptImage(ScopedFd(open(path_.c_str(), O_RDWR | O_CLOEXEC)), "web-1 disk", {});
  ASSERT_TRUE(adopted.ok()) << adopted.status();

  absl::StatusOr<Image> second = OpenImage(path_, {});

  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(adopted->name, "web-1 disk");
}

// The agent locks the image, then passes the fd (SCM_RIGHTS, here dup: the same open file
// description) to the VMM: the lock is the description's, so the VMM can take it again.
TEST_F(ImageTest, LockTravelsWithTheOpenFileDescription) {
  absl::StatusOr<Image> agent = OpenImage(path_, {});
  ASSERT_TRUE(agent.ok()) << agent.status();

  absl::StatusOr<Image> vmm = AdoptImage(ScopedFd(dup(agent->fd.get())), path_, {});

  EXPECT_TRUE(vmm.ok()) << vmm.status();
}

TEST_F(ImageTest, AdoptingAReadOnlyFdForWritingFails) {
  absl::StatusOr<Image> image =
      AdoptImage(ScopedFd(open(path_.c_str(), O_RDONLY | O_CLOEXEC)), path_, {});

  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), AllOf(HasSubstr(path_), HasSubstr("O_RDWR")));
}

TEST_F(ImageTest, AdoptingAWriteOnlyFdFails) {
  absl::StatusOr<Image> image =
      AdoptImage(ScopedFd(open(path_.c_str(), O_WRONLY | O_CLOEXEC)), path_, {});

  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("write-only"));
}

TEST_F(ImageTest, AdoptSetsDirectIoAndClearsAppendAndNonblock) {
  ScopedFd fd(open(path_.c_str(), O_RDWR | O_APPEND | O_NONBLOCK | O_CLOEXEC));

  absl::StatusOr<Image> image = AdoptImage(std::move(fd), path_, {.cache = CacheMode::kNone});

  ASSERT_TRUE(image.ok()) << image.status();
  int flags = fcntl(image->fd.get(), F_GETFL);
  EXPECT_NE(flags & O_DIRECT, 0);
  EXPECT_EQ(flags & (O_APPEND | O_NONBLOCK), 0);
}

TEST(ImageOpenTest, MissingImageIsNotFound) {
  TempDir dir;

  absl::StatusOr<Image> image = OpenImage(dir.File("missing.img"), {});

  EXPECT_EQ(image.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(image.status().message(), HasSubstr(dir.File("missing.img")));
}

TEST(ImageOpenTest, DirectoryIsRefused) {
  TempDir dir;

  absl::StatusOr<Image> image = OpenImage(dir.path(), {.read_only = true});

  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("neither a regular file nor a block device"));
}

TEST(ImageOpenTest, OutOfRangeOptionsAreRefused) {
  TempDir dir;
  WriteImage(dir.File("d.img"), 4096, 1);

  absl::StatusOr<Image> no_queue = OpenImage(dir.File("d.img"), {.max_in_flight = 0});
  absl::StatusOr<Image> huge_sg = OpenImage(dir.File("d.img"), {.max_segments = 5000});

  EXPECT_THAT(no_queue.status().message(), HasSubstr("max_in_flight 0 is outside"));
  EXPECT_THAT(huge_sg.status().message(), HasSubstr("max_segments 5000 is outside"));
}

// ramfs has no O_DIRECT (tmpfs gained it in Linux 6.6, so it no longer serves as the example).
TEST(ImageOpenTest, FilesystemWithoutDirectIoIsAClearError) {
  RamfsDir ramfs;
  if (!ramfs.ok()) GTEST_SKIP() << "mounting ramfs needs root";
  WriteImage(ramfs.File("d.img"), 1 << 16, 1);

  absl::StatusOr<Image> opened = OpenImage(ramfs.File("d.img"), {.cache = CacheMode::kNone});
  absl::StatusOr<Image> adopted =
      AdoptImage(ScopedFd(open(ramfs.File("d.img").c_str(), O_RDWR | O_CLOEXEC)), "d.img",
                 {.cache = CacheMode::kNone});

  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(opened.status().message(),
              AllOf(HasSubstr(ramfs.File("d.img")), HasSubstr("does not support O_DIRECT"),
                    HasSubstr("cache=writeback")));
  EXPECT_EQ(adopted.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ImageOpenTest, FilesystemWithoutHolesHasNoDiscard) {
  RamfsDir ramfs;
  if (!ramfs.ok()) GTEST_SKIP() << "mounting ramfs needs root";
  WriteImage(ramfs.File("d.img"), 1 << 16, 1);

  absl::StatusOr<Image> image = OpenImage(ramfs.File("d.img"), {});

  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_FALSE(image->properties.supports_discard);
  EXPECT_TRUE(image->properties.supports_write_zeroes);
}

}  // namespace
}  // namespace keel::block
