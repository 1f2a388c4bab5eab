#include "vmm/boot/image_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmm/layout.h"

namespace keel::vmm {
namespace {

using ::testing::HasSubstr;

const std::vector<uint8_t> kBytes = {1, 2, 3, 4, 5, 6, 7, 8};

TEST(SpanImageReaderTest, ReadsExactRanges) {
  SpanImageReader image("img", kBytes);
  uint8_t out[3];

  ASSERT_TRUE(image.ReadAt(5, out).ok());

  EXPECT_EQ(out[0], 6);
  EXPECT_EQ(out[2], 8);
  EXPECT_EQ(image.size(), 8u);
}

TEST(SpanImageReaderTest, RejectsReadsPastTheEndWithoutOverflow) {
  SpanImageReader image("img", kBytes);
  uint8_t out[3];

  EXPECT_EQ(image.ReadAt(6, out).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(image.ReadAt(UINT64_MAX - 1, out).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(image.ReadAt(9, std::span<uint8_t>()).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(image.ReadAt(8, std::span<uint8_t>()).ok());
}

TEST(ImageReaderTest, ReadObjAtReadsLittleEndianObjects) {
  SpanImageReader image("img", kBytes);

  auto v = ReadObjAt<uint32_t>(image, 4);

  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 0x08070605u);
}

TEST(FileImageReaderTest, ReadsAFileAndRejectsShortReads) {
  char path[] = "/tmp/keel-image-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, kBytes.data(), kBytes.size()), 8);
  close(fd);
  auto image = FileImageReader::Open(path);
  ASSERT_TRUE(image.ok()) << image.status();
  uint8_t out[4];

  const absl::Status good = image->ReadAt(4, out);
  const absl::Status past_end = image->ReadAt(5, out);
  unlink(path);

  ASSERT_TRUE(good.ok()) << good;
  EXPECT_EQ(out[3], 8);
  EXPECT_EQ(past_end.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(past_end.message(), HasSubstr(path));
}

TEST(FileImageReaderTest, RejectsMissingFilesAndDirectories) {
  EXPECT_EQ(FileImageReader::Open("/nonexistent/vmlinux").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(FileImageReader::Open("/tmp").status().message(), HasSubstr("not a regular file"));
}

TEST(ReadIntoGuestTest, ChecksTheGuestRangeBeforeReading) {
  auto mem = GuestMemory::Create(16 * layout::kMiB);
  ASSERT_TRUE(mem.ok());
  SpanImageReader image("img", kBytes);

  EXPECT_TRUE(ReadIntoGuest(image, 0, 8, *mem, 0x1000).ok());
  EXPECT_EQ(ReadIntoGuest(image, 0, 8, *mem, 16 * layout::kMiB - 4).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(ReadIntoGuest(image, 0, 8, *mem, UINT64_MAX - 2).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(ReadIntoGuest(image, 4, 8, *mem, 0x1000).code(), absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace keel::vmm
