// Parsing of virtio-blk requests (virtio 1.2 §5.2.6): a descriptor chain, already walked and
// bounds-checked by Queue::ReadChain, becomes a block::Request for the backend plus the
// place of the status byte. Pure: no I/O, no allocation, no state; every guest byte it
// needs (the header, discard ranges) is copied once before it is checked.
//
// Framing (§2.6.4, "Message Framing"): the device makes no assumption about how the driver
// splits a request into buffers. The header is the first 16 device-readable bytes, the
// status the last device-writable byte, and the data everything in between (device-readable
// after the header for OUT / DISCARD / WRITE_ZEROES, device-writable before the status for
// IN / GET_ID), whatever the descriptor boundaries.
//
// Guest mistakes never crash and never go unanswered: they become a RequestError that maps
// to a status byte (IOERR or UNSUPP), or — when the chain has no status byte or the queue
// structure itself is broken — to a completion without status (used length 0), the latter
// also putting the device into NEEDS_RESET.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>

#include "block/backend.h"
#include "vmm/virtio/queue.h"

namespace keel::vmm::virtio {

// Request types (§5.2.6).
inline constexpr uint32_t kBlkTypeIn = 0;
inline constexpr uint32_t kBlkTypeOut = 1;
inline constexpr uint32_t kBlkTypeFlush = 4;
inline constexpr uint32_t kBlkTypeGetId = 8;
inline constexpr uint32_t kBlkTypeDiscard = 11;
inline constexpr uint32_t kBlkTypeWriteZeroes = 13;

// Status byte values (§5.2.6).
inline constexpr uint8_t kBlkStatusOk = 0;
inline constexpr uint8_t kBlkStatusIoErr = 1;
inline constexpr uint8_t kBlkStatusUnsupp = 2;

inline constexpr uint32_t kBlkSectorSize = 512;
inline constexpr uint32_t kBlkHeaderSize = 16;        // struct virtio_blk_req header
inline constexpr uint32_t kBlkIdBytes = 20;           // VIRTIO_BLK_ID_BYTES
inline constexpr uint32_t kBlkDiscardRangeSize = 16;  // struct virtio_blk_discard_write_zeroes
inline constexpr uint32_t kBlkWriteZeroesFlagUnmap = 1;

// What the device accepts; filled from the backend's Properties and the negotiated features.
struct BlockLimits {
  uint64_t capacity_bytes = 0;  // a multiple of block_size
  uint32_t block_size = 512;    // offsets and lengths must be multiples of it
  uint32_t seg_max = 1;         // most data buffers (iovecs) in one request
  uint32_t size_max = 0;        // largest data buffer in bytes; 0: no limit
  bool read_only = false;
  bool discard = false;       // VIRTIO_BLK_F_DISCARD negotiated
  bool write_zeroes = false;  // VIRTIO_BLK_F_WRITE_ZEROES negotiated
  uint32_t max_discard_sectors = 0;
  uint32_t max_write_zeroes_sectors = 0;
};

// Why a request is refused. Each maps to one outcome (see RequestErrorStatus).
enum class RequestError : uint8_t {
  kNone,
  kBrokenChain,      // loop, bad index, bad indirect table: NEEDS_RESET, used length 0
  kNoStatus,         // no device-writable byte for the status: used length 0
  kBadChain,         // a buffer outside guest memory, or readable after writable: IOERR
  kHeaderSize,       // fewer than 16 device-readable bytes: IOERR
  kLayout,           // data in the wrong direction or of the wrong size for the type: IOERR
  kUnaligned,        // offset or length not a multiple of the block size: IOERR
  kPastEnd,          // the range reaches past the capacity: IOERR
  kTooManySegments,  // more than seg_max data buffers, or one larger than size_max: IOERR
  kReadOnly,         // a write-type request on a read-only disk: IOERR
  kTooLarge,         // DISCARD/WRITE_ZEROES above the advertised maximum, or many ranges: IOERR
  kUnsupported,      // unknown type, a feature not negotiated, reserved flags: UNSUPP
};

const char* RequestErrorName(RequestError error);
// The status byte written for `error` (kNone: OK). Meaningless for kBrokenChain / kNoStatus.
uint8_t RequestErrorStatus(RequestError error);

struct ParsedRequest {
  RequestError error = RequestError::kNone;
  uint32_t type = 0;    // the header's type field (valid once the header was read)
  uint64_t sector = 0;  // the header's sector field
  // The status byte in guest memory (host address, bounds-checked), or nullptr.
  uint8_t* status = nullptr;
  // For the backend (IN, OUT, FLUSH, DISCARD, WRITE_ZEROES); request.iov points into the
  // caller's iovec storage. GET_ID: request.iov holds the device-writable id buffer.
  block::Request request;
  // Device-writable data bytes (IN / GET_ID): the used length on success is this + 1.
  uint32_t data_in = 0;
};

// Parses `chain` (from Queue::ReadChain, its segments in `segments`). `iov` is scratch for the
// data iovecs and must hold at least limits.seg_max + 1 entries (the request refers to it).
ParsedRequest ParseBlockRequest(const Chain& chain, std::span<const Segment> segments,
                                const BlockLimits& limits, std::span<iovec> iov);

}  // namespace keel::vmm::virtio
