// ScopedFd: sole owner of a file descriptor.
//
// Every raw fd in Keel is wrapped in a ScopedFd the moment it is created. The destructor
// closes it (errors from close() are ignored: there is nothing useful to do with them and a
// destructor must not fail). Moving transfers ownership; Release() gives it up.
#pragma once

#include <unistd.h>

#include <utility>

namespace keel {

class ScopedFd {
 public:
  ScopedFd() = default;
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ScopedFd(ScopedFd&& other) noexcept : fd_(other.Release()) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  ~ScopedFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership and returns the fd; this object becomes empty.
  [[nodiscard]] int Release() { return std::exchange(fd_, -1); }

  // Closes the owned fd (if any) and takes ownership of `fd`.
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace keel
