// Helpers for block tests: temporary directories and images on real filesystems, and a way
// to drive a Backend the way the device's event loop does (Submit, Kick, wait on the eventfd,
// Reap).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <vector>

#include "block/backend.h"

namespace keel::block::testing {

// A fresh directory under `base` (default: $TMPDIR or /tmp), removed with its contents on
// destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& base = "");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 protected:
  std::string path_;
};

// A ramfs mounted on a fresh temporary directory (needs root): a filesystem that refuses
// O_DIRECT and fallocate. Unmounted and removed on destruction. ok() is false when mounting
// is not permitted.
class RamfsDir : public TempDir {
 public:
  RamfsDir();
  ~RamfsDir();
  bool ok() const { return mounted_; }

 private:
  bool mounted_ = false;
};

// A loop block device over a file, with the given logical block size (needs root and
// /dev/loop-control). Configured with LO_FLAGS_AUTOCLEAR, so the kernel detaches it when the
// last fd closes, even if the test crashes. ok() is false when loop devices are unavailable.
class LoopDevice {
 public:
  LoopDevice(const std::string& backing_file, uint32_t block_size);
  ~LoopDevice();
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;
  bool ok() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  const std::string& error() const { return error_; }

 private:
  int fd_ = -1;  // keeps the device attached
  std::string path_;
  std::string error_;
};

// Deterministic bytes for `seed`.
std::vector<uint8_t> Pattern(size_t size, uint32_t seed);

// Creates `path` with `size` bytes of Pattern(size, seed), fully allocated and written back.
void WriteImage(const std::string& path, size_t size, uint32_t seed);
// Reads `size` bytes at `offset` through a separate, freshly opened fd.
std::vector<uint8_t> ReadFile(const std::string& path, uint64_t offset, size_t size);
// st_blocks of `path` (512-byte units allocated).
uint64_t AllocatedBlocks(const std::string& path);

// Splits [data, data + size) into iovecs of the given lengths (the last takes the rest).
std::vector<iovec> Segments(uint8_t* data, const std::vector<size_t>& lengths);

// Waits on backend.event_fd() and reaps until `count` completions have arrived (or 30 s
// passed, which fails the test instead of hanging it). Completions come back in reap order.
// Reaps at most `batch` (1..16) at a time.
std::vector<Completion> WaitForCompletions(Backend& backend, size_t count, size_t batch = 16);

// Submits one request (which must be accepted), kicks, and returns its result.
int64_t RunToCompletion(Backend& backend, const Request& request);

Request ReadRequest(uint64_t offset, const std::vector<iovec>& iov, uint64_t tag = 1);
Request WriteRequest(uint64_t offset, const std::vector<iovec>& iov, uint64_t tag = 1);
Request RangeRequest(RequestType type, uint64_t offset, uint64_t length, uint64_t tag = 1);

}  // namespace keel::block::testing
