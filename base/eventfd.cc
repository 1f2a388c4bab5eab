#include "base/eventfd.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "base/status.h"

namespace keel {

absl::StatusOr<EventFd> EventFd::Create(int flags) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC | flags);
  if (fd < 0) return ErrnoError(errno, "eventfd");
  return EventFd(ScopedFd(fd));
}

void EventFd::Signal(uint64_t value) const {
  ssize_t n;
  do {
    n = write(fd_.get(), &value, sizeof(value));
  } while (n < 0 && errno == EINTR);
}

uint64_t EventFd::Consume() const {
  uint64_t value = 0;
  ssize_t n;
  do {
    n = read(fd_.get(), &value, sizeof(value));
  } while (n < 0 && errno == EINTR);
  return n == sizeof(value) ? value : 0;
}

}  // namespace keel
