// Raw disk images (a regular file or a block device holding the guest's disk byte for byte),
// served through io_uring.
//
// How requests become io_uring operations:
//   READ / WRITE   IORING_OP_READV / WRITEV straight to and from the guest's pages (READ /
//                  WRITE for one segment). No copy, unless cache=none meets a guest buffer
//                  that O_DIRECT cannot take (address not DMA-aligned, or a segment that is
//                  not whole logical blocks): then the transfer goes through a preallocated
//                  bounce buffer, in buffer-sized pieces. Short transfers are continued where
//                  they stopped; the guest only ever sees the whole request complete.
//   FLUSH          IORING_OP_FSYNC with IORING_FSYNC_DATASYNC (fdatasync: file data, the
//                  metadata needed to read it back, and a device cache flush).
//   DISCARD        IORING_OP_FALLOCATE(PUNCH_HOLE | KEEP_SIZE): sparse images stay sparse.
//   WRITE_ZEROES   fallocate(ZERO_RANGE | KEEP_SIZE), or PUNCH_HOLE | KEEP_SIZE when the
//                  guest allows unmapping; where the filesystem refuses (EOPNOTSUPP), zeroes
//                  are written from a shared read-only zero mapping, and later requests skip
//                  the refused method.
//
// FLUSH ordering (virtio 1.2 §5.2.6.1): "a write completed before the flush was submitted is
// durable when the flush completes". A write is reported complete only once the kernel has
// finished it (the data is in the page cache, or on the device for O_DIRECT, and any extent
// conversion is done), so an fdatasync issued afterwards covers it. Writes still in flight
// when the FLUSH is submitted are not covered, exactly as the spec allows; their guests (the
// Linux block layer does) wait for their completion before sending the flush that must cover
// them. No drain or link between requests is needed, and none is imposed.
//
// Kernel interface choices:
//   - The image fd is a registered file (IOSQE_FIXED_FILE), saving a file reference count
//     round trip on every request in a multi-threaded VMM.
//   - Guest memory is NOT a registered buffer: READ_FIXED takes one contiguous buffer while
//     virtio requests are scatter-gather, and registration would pin all of guest RAM up front
//     (defeating lazily touched MAP_NORESERVE memory, counting against RLIMIT_MEMLOCK, and
//     needing re-registration whenever the memory map changes) to save a page pin per I/O.
//   - The ring uses IORING_SETUP_SUBMIT_ALL and COOP_TASKRUN when the kernel has them, never
//     SQPOLL (a polling kernel thread per disk costs a core) nor SINGLE_ISSUER (the backend is
//     created on one thread and driven from another).
//   - Completions are announced through a registered eventfd (io_uring_register_eventfd).
//
// Memory: everything is allocated when the backend is created (per-slot state sized by
// max_in_flight, iovec copies sized by max_segments, the bounce pool, the zero mapping).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "base/fd.h"
#include "block/backend.h"
#include "block/image.h"

namespace keel::block {

// Opens the image at `path` (see OpenImage() for locking and O_DIRECT) and sets up its ring.
absl::StatusOr<std::unique_ptr<Backend>> OpenRawFile(const std::string& path,
                                                     const OpenOptions& options);

// Same for an fd the agent opened and passed over (see AdoptImage()); `name` is used in
// messages. Takes ownership of `fd`.
absl::StatusOr<std::unique_ptr<Backend>> AdoptRawFile(ScopedFd fd, std::string name,
                                                      const OpenOptions& options);

// Builds the backend for an image opened by OpenImage() / AdoptImage() with `options`.
absl::StatusOr<std::unique_ptr<Backend>> CreateRawFile(Image image, const OpenOptions& options);

}  // namespace keel::block
