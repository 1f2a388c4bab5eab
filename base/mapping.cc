#include "base/mapping.h"

#include <cerrno>

#include "base/status.h"

namespace keel {

absl::StatusOr<Mapping> Mapping::Anonymous(size_t size, int prot, int extra_flags) {
  if (size == 0) return absl::InvalidArgumentError("cannot map 0 bytes");
  void* addr = mmap(nullptr, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
  if (addr == MAP_FAILED) {
    return ErrnoError(errno, "mmap of ", size >> 20, " MiB of anonymous memory");
  }
  return Mapping(addr, size);
}

absl::StatusOr<Mapping> Mapping::File(int fd, size_t size, off_t offset, int prot, int flags) {
  if (size == 0) return absl::InvalidArgumentError("cannot map 0 bytes");
  void* addr = mmap(nullptr, size, prot, flags, fd, offset);
  if (addr == MAP_FAILED) return ErrnoError(errno, "mmap of fd ", fd);
  return Mapping(addr, size);
}

}  // namespace keel
