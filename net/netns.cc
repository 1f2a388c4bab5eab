#include "net/netns.h"

#include <fcntl.h>
#include <sched.h>

#include <cerrno>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace keel::net {

absl::StatusOr<Netns> Netns::Create() {
  absl::StatusOr<Netns> result = absl::InternalError("netns helper thread did not run");
  // unshare() affects only the calling thread's nsproxy, so the helper thread gets the new
  // namespace and pins it with an fd before exiting; nobody else ever enters it.
  std::thread helper([&result] {
    if (unshare(CLONE_NEWNET) != 0) {
      const int err = errno;
      result = err == EPERM ? absl::PermissionDeniedError(
                                  "creating a network namespace needs CAP_SYS_ADMIN (run as root)")
                            : ErrnoError(err, "unshare(CLONE_NEWNET)");
      return;
    }
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      result = ErrnoError(errno, "open /proc/thread-self/ns/net");
      return;
    }
    result = Netns(ScopedFd(fd));
  });
  helper.join();
  return result;
}

absl::StatusOr<Netns> Netns::Open(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "opening network namespace ", path);
  return Netns(ScopedFd(fd));
}

absl::Status RunInNetns(int netns_fd, absl::FunctionRef<absl::Status()> fn) {
  absl::Status status;
  std::thread helper([&] {
    if (setns(netns_fd, CLONE_NEWNET) != 0) {
      const int err = errno;
      status = err == EPERM ? absl::PermissionDeniedError(
                                  "entering a network namespace needs CAP_SYS_ADMIN (run as root)")
                            : ErrnoError(err, "setns(fd ", netns_fd, ", CLONE_NEWNET)");
      return;
    }
    status = fn();
  });
  helper.join();
  return status;
}

std::string NetnsRef::ToString() const {
  return kind == Kind::kFd ? absl::StrCat("netns fd ", value)
                           : absl::StrCat("netns of pid ", value);
}

}  // namespace keel::net
