// Image: an open, locked disk image and the geometry the guest will see.
//
// Opening an image (from a path, or from an fd the agent passed over SCM_RIGHTS) does
// everything a backend needs before its first I/O, and fails with a message that names the
// image and says what to do:
//   - the access mode follows the options: O_RDONLY for read-only images, O_RDWR otherwise;
//   - cache=none adds O_DIRECT and fails cleanly on filesystems that refuse it;
//   - an OFD lock (F_OFD_SETLK) on the whole file: exclusive for writable images, shared for
//     read-only ones, so two VMs never write one image and nobody reads an image another VM
//     is writing. The lock belongs to the open file description, so it travels with the fd
//     between processes and is released when the last fd to it is closed;
//   - geometry: size, logical/physical block size, DIO memory alignment, discard support.
//
// Example:
//
//   KEEL_ASSIGN_OR_RETURN(block::Image image,
//                         block::OpenImage("/var/lib/keel/web-1.img", {.cache =
//                         CacheMode::kNone}));
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "base/fd.h"
#include "block/backend.h"

namespace keel::block {

enum class CacheMode {
  // Through the host page cache. Works on every filesystem; FLUSH makes writes durable.
  kWriteback,
  // O_DIRECT: no host caching, no double caching with the guest's own page cache. FLUSH still
  // flushes the device's volatile cache. Unaligned guest buffers are bounced.
  kNone,
};

struct OpenOptions {
  bool read_only = false;
  CacheMode cache = CacheMode::kWriteback;
  // Requests accepted at once (the device's queue size); 1..4096.
  uint32_t max_in_flight = 128;
  // Most iovecs per request (the device advertises it as seg_max); 1..1024 (IOV_MAX).
  uint32_t max_segments = 128;
  // cache=none only: the pool that unaligned guest buffers are bounced through. A request
  // larger than one buffer is bounced in pieces; a request that finds the pool empty waits
  // for a buffer. Each buffer is rounded up to a whole number of pages and logical blocks.
  uint32_t bounce_buffers = 8;
  uint32_t bounce_buffer_bytes = 128 * 1024;
};

struct Image {
  ScopedFd fd;
  std::string name;  // the path (or the name given with the fd), for messages
  Properties properties;
  // cache=none: guest buffers whose address is not a multiple of this are bounced. 1 otherwise.
  uint32_t dio_memory_alignment = 1;
};

// Opens the regular file or block device at `path` as described above.
absl::StatusOr<Image> OpenImage(const std::string& path, const OpenOptions& options);

// Same for an already-open fd (takes ownership). The fd must be O_RDWR, or O_RDONLY
// when options.read_only. Its O_DIRECT flag is set or cleared to match options.cache, and
// O_APPEND / O_NONBLOCK are cleared (they would misplace writes or fail reads with EAGAIN);
// these flags belong to the open file description, shared with any other holder of it.
absl::StatusOr<Image> AdoptImage(ScopedFd fd, std::string name, const OpenOptions& options);

}  // namespace keel::block
