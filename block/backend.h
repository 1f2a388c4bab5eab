// Backend: the interface between the virtio-blk device and a disk image.
//
// The device parses guest requests, checks every guest address through GuestMemory, and hands
// the backend a Request whose iovecs point straight into guest RAM. The backend performs the
// I/O asynchronously and reports one Completion per accepted request.
//
// Ownership contract (the whole point of this header):
//   - Submit() either ACCEPTS a request (returns 0) or HANDS IT BACK (returns -errno). An
//     accepted request produces exactly one Completion from Reap(), carrying its tag; a handed
//     back request produces none, and the device completes it at once (-EROFS, -EINVAL,
//     -EOPNOTSUPP, ... map to VIRTIO_BLK_S_IOERR / VIRTIO_BLK_S_UNSUPP). No request is ever
//     lost: a request the kernel could not take later still completes, with an error.
//   - Submit() copies the iovec array itself; the caller may reuse it immediately. The guest
//     memory the iovecs point to must stay mapped until the request's Completion has been
//     returned by Reap() (or the backend is destroyed).
//   - The device keeps at most properties().max_in_flight requests accepted and not yet
//     reaped; one more is handed back with -EBUSY. Nothing allocates per request.
//   - Destroying a backend waits for every request the kernel still holds (cancelling what it
//     can), so no completion ever writes into freed memory. Pending completions are dropped.
//
// Threading: a backend is not thread-safe. It may be created on one thread and then used
// from another (the VMM's I/O thread), but only one thread may call it at a time.
//
// Example (the device's event loop):
//
//   loop.Add(backend.event_fd(), EPOLLIN, [&](uint32_t) {
//     block::Completion done[64];
//     size_t n;
//     do {
//       n = backend.Reap(done);
//       for (size_t i = 0; i < n; ++i) CompleteChain(done[i].tag, done[i].result);
//     } while (n == std::size(done));
//   });
//   // on a queue kick:
//   while (auto chain = queue.Pop()) {
//     block::Request req = Parse(*chain);
//     if (int err = backend.Submit(req); err < 0) CompleteChain(chain->head, err);
//   }
//   backend.Kick();
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace keel::block {

// virtio 1.2 §5.2.6: the request types a virtio-blk device forwards to its backend.
enum class RequestType : uint8_t {
  kRead,         // VIRTIO_BLK_T_IN: file -> iov
  kWrite,        // VIRTIO_BLK_T_OUT: iov -> file
  kFlush,        // VIRTIO_BLK_T_FLUSH: make completed writes durable
  kDiscard,      // VIRTIO_BLK_T_DISCARD: deallocate [offset, offset + length)
  kWriteZeroes,  // VIRTIO_BLK_T_WRITE_ZEROES: [offset, offset + length) reads back as zeroes
};

struct Request {
  RequestType type = RequestType::kRead;
  // Byte offset into the disk (virtio sector * 512). Must be a multiple of
  // Properties::logical_block_size for every type but kFlush, which ignores it.
  uint64_t offset = 0;
  // Byte count for kDiscard / kWriteZeroes (a multiple of logical_block_size). Ignored for
  // kRead / kWrite, whose length is the sum of the iovec lengths.
  uint64_t length = 0;
  // kRead / kWrite: host addresses in guest memory, already bounds-checked by the device.
  // At most Properties::max_segments entries; the total must be a non-zero multiple of
  // logical_block_size. Buffers may have any alignment.
  std::span<const iovec> iov;
  // Returned untouched in the Completion (the device uses the descriptor head index).
  uint64_t tag = 0;
  // kWriteZeroes only: virtio's VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, the range may be
  // deallocated (a hole) instead of allocated zeroes.
  bool unmap = false;
};

struct Completion {
  uint64_t tag;
  // kRead / kWrite: bytes transferred (always the full request length on success).
  // Other types: 0. On failure: -errno (-EIO, -ENOSPC, -EOPNOTSUPP, ...).
  int64_t result;
};

// What the device advertises to the guest (virtio 1.2 §5.2.4, struct virtio_blk_config).
struct Properties {
  // Capacity in bytes, a multiple of logical_block_size. An image whose size is not a
  // multiple is truncated for the guest: the tail is neither read nor written.
  uint64_t size_bytes = 0;
  // Requests must be aligned to this (offset and length). The device advertises it as
  // blk_size (VIRTIO_BLK_F_BLK_SIZE), so a guest never needs a sub-block read-modify-write.
  uint32_t logical_block_size = 512;
  // Hints: physical_block_exp and opt_io_size (0 = no preference).
  uint32_t physical_block_size = 4096;
  uint32_t optimal_io_size = 0;
  // Most iovecs in one request (the device's seg_max) and requests accepted at once.
  uint32_t max_segments = 0;
  uint32_t max_in_flight = 0;
  bool read_only = false;              // VIRTIO_BLK_F_RO
  bool supports_discard = false;       // VIRTIO_BLK_F_DISCARD
  bool supports_write_zeroes = false;  // VIRTIO_BLK_F_WRITE_ZEROES
  bool direct_io = false;              // cache=none: O_DIRECT, bypassing the host page cache
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const Properties& properties() const = 0;

  // Readable (EPOLLIN) whenever Reap() may return completions. The backend owns it; Reap()
  // resets it, so the device only watches it and never reads it.
  virtual int event_fd() const = 0;

  // Queues `request` (see the ownership contract above). The I/O starts at the next Kick();
  // queue a whole batch, then Kick() once.
  [[nodiscard]] virtual int Submit(const Request& request) = 0;

  // Hands everything queued since the last Kick() to the kernel (one system call at most).
  // Never fails: a request the kernel refuses completes with an error through Reap().
  virtual void Kick() = 0;

  // Moves up to out.size() completions into `out` without blocking; returns how many. Also
  // starts the next step of multi-step requests (bounced O_DIRECT transfers, short transfers,
  // write-zeroes done by writing), so it may submit I/O. If completions remain when `out` is
  // full, event_fd() stays readable.
  [[nodiscard]] virtual size_t Reap(std::span<Completion> out) = 0;

  // Requests accepted and not yet reaped.
  virtual size_t in_flight() const = 0;
};

}  // namespace keel::block
