// Mapping: an owned mmap() region, unmapped on destruction.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/status/statusor.h"

namespace keel {

class Mapping {
 public:
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping(Mapping&& other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept {
    if (this != &other) {
      Reset();
      addr_ = std::exchange(other.addr_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~Mapping() { Reset(); }

  // Anonymous private mapping of `size` bytes (rounded up to the page size by the kernel).
  // `extra_flags` adds MAP_* flags such as MAP_NORESERVE or MAP_HUGETLB.
  static absl::StatusOr<Mapping> Anonymous(size_t size, int prot, int extra_flags = 0);

  // Maps `size` bytes of `fd` at `offset`.
  static absl::StatusOr<Mapping> File(int fd, size_t size, off_t offset, int prot, int flags);

  uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  size_t size() const { return size_; }
  bool valid() const { return addr_ != nullptr; }

  void Reset() {
    if (addr_ != nullptr) munmap(addr_, size_);
    addr_ = nullptr;
    size_ = 0;
  }

 private:
  Mapping(void* addr, size_t size) : addr_(addr), size_(size) {}
  void* addr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace keel
