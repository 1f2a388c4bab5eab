#include "base/status.h"

#include <fcntl.h>

#include "gtest/gtest.h"

namespace keel {
namespace {

absl::StatusOr<int> Half(int v) {
  if (v % 2 != 0) return absl::InvalidArgumentError("odd");
  return v / 2;
}

absl::Status Quarter(int v, int* out) {
  KEEL_ASSIGN_OR_RETURN(int half, Half(v));
  KEEL_ASSIGN_OR_RETURN(*out, Half(half));
  return absl::OkStatus();
}

TEST(StatusTest, AssignOrReturnPropagatesErrors) {
  int out = 0;
  EXPECT_TRUE(Quarter(8, &out).ok());
  EXPECT_EQ(out, 2);
  EXPECT_EQ(Quarter(6, &out).code(), absl::StatusCode::kInvalidArgument);
}

TEST(StatusTest, ErrnoErrorNamesTheOperationAndTheCause) {
  int fd = open("/nonexistent/keel", O_RDONLY);
  ASSERT_LT(fd, 0);
  absl::Status s = ErrnoError(errno, "open disk image ", "/nonexistent/keel");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "open disk image /nonexistent/keel: No such file or directory");
}

TEST(StatusTest, AnnotateKeepsTheCode) {
  absl::Status s = Annotate(absl::NotFoundError("no such VM"), "delete web-1");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "delete web-1: no such VM");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "x").ok());
}

}  // namespace
}  // namespace keel
