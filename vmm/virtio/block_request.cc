#include "vmm/virtio/block_request.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>

namespace keel::vmm::virtio {

namespace {

// Copies `out.size()` bytes starting `skip` bytes into the segments of one direction.
// Returns false if they hold fewer bytes.
bool Gather(std::span<const Segment> segs, bool writable, uint64_t skip, std::span<uint8_t> out) {
  size_t done = 0;
  for (const Segment& s : segs) {
    if (s.writable != writable) continue;
    if (skip >= s.len) {
      skip -= s.len;
      continue;
    }
    const size_t n = std::min<uint64_t>(s.len - skip, out.size() - done);
    memcpy(out.data() + done, s.host + skip, n);
    done += n;
    skip = 0;
    if (done == out.size()) return true;
  }
  return done == out.size();
}

// Describes `len` bytes starting `skip` bytes into the segments of one direction as iovecs.
// Empty pieces are left out. Returns the iovec count, or nullopt when more than `max`
// pieces, or a piece longer than `size_max` (if non-zero), would be needed.
std::optional<size_t> Slice(std::span<const Segment> segs, bool writable, uint64_t skip,
                            uint64_t len, size_t max, uint32_t size_max, std::span<iovec> iov) {
  size_t n = 0;
  max = std::min(max, iov.size());
  for (const Segment& s : segs) {
    if (len == 0) break;
    if (s.writable != writable) continue;
    if (skip >= s.len) {
      skip -= s.len;
      continue;
    }
    const uint64_t piece = std::min<uint64_t>(s.len - skip, len);
    if (n == max || (size_max != 0 && piece > size_max)) return std::nullopt;
    iov[n++] = iovec{s.host + skip, static_cast<size_t>(piece)};
    len -= piece;
    skip = 0;
  }
  return n;
}

uint32_t Le32(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

uint64_t Le64(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

// Checks [sector * 512, + len) against the block size and the capacity, overflow-safe.
RequestError CheckRange(uint64_t sector, uint64_t len, const BlockLimits& limits) {
  if (sector > limits.capacity_bytes / kBlkSectorSize) return RequestError::kPastEnd;
  const uint64_t offset = sector * kBlkSectorSize;
  if (offset % limits.block_size != 0 || len % limits.block_size != 0) {
    return RequestError::kUnaligned;
  }
  if (len > limits.capacity_bytes - offset) return RequestError::kPastEnd;
  return RequestError::kNone;
}

}  // namespace

const char* RequestErrorName(RequestError error) {
  switch (error) {
    case RequestError::kNone:
      return "none";
    case RequestError::kBrokenChain:
      return "broken descriptor chain";
    case RequestError::kNoStatus:
      return "no device-writable status byte";
    case RequestError::kBadChain:
      return "unusable buffer in the chain";
    case RequestError::kHeaderSize:
      return "request header shorter than 16 bytes";
    case RequestError::kLayout:
      return "data layout does not fit the request type";
    case RequestError::kUnaligned:
      return "offset or length not a multiple of the block size";
    case RequestError::kPastEnd:
      return "range past the end of the disk";
    case RequestError::kTooManySegments:
      return "too many or too large data buffers";
    case RequestError::kReadOnly:
      return "write to a read-only disk";
    case RequestError::kTooLarge:
      return "range larger than the advertised maximum";
    case RequestError::kUnsupported:
      return "unsupported request";
  }
  return "?";
}

uint8_t RequestErrorStatus(RequestError error) {
  switch (error) {
    case RequestError::kNone:
      return kBlkStatusOk;
    case RequestError::kUnsupported:
      return kBlkStatusUnsupp;
    default:
      return kBlkStatusIoErr;
  }
}

ParsedRequest ParseBlockRequest(const Chain& chain, std::span<const Segment> segments,
                                const BlockLimits& limits, std::span<iovec> iov) {
  ParsedRequest r;
  auto fail = [&r](RequestError e) {
    r.error = e;
    r.request.iov = {};
    return r;
  };
  switch (chain.error) {
    case ChainError::kBadIndex:
    case ChainError::kTooLong:
    case ChainError::kBadIndirect:
      return fail(RequestError::kBrokenChain);
    default:
      break;
  }
  // The status is the chain's last byte, which must be device-writable.
  if (chain.last.has_value() && chain.last->writable && chain.last->len > 0) {
    r.status = chain.last->host + chain.last->len - 1;
  } else {
    return fail(RequestError::kNoStatus);
  }
  if (chain.error == ChainError::kTooManySegments) return fail(RequestError::kTooManySegments);
  if (chain.error != ChainError::kNone) return fail(RequestError::kBadChain);

  const std::span<const Segment> segs = segments.first(std::min(chain.count, segments.size()));
  uint8_t header[kBlkHeaderSize];
  if (chain.readable < kBlkHeaderSize || !Gather(segs, false, 0, header)) {
    return fail(RequestError::kHeaderSize);
  }
  r.type = Le32(header);
  r.sector = Le64(header + 8);
  const uint64_t out_bytes = chain.readable - kBlkHeaderSize;  // after the header
  const uint64_t in_bytes = chain.writable - 1;                // before the status
  r.request.tag = chain.head;

  auto slice = [&](bool writable, uint64_t skip, uint64_t len) -> RequestError {
    std::optional<size_t> n =
        Slice(segs, writable, skip, len, limits.seg_max, limits.size_max, iov);
    if (!n.has_value()) return RequestError::kTooManySegments;
    r.request.iov = iov.first(*n);
    return RequestError::kNone;
  };

  switch (r.type) {
    case kBlkTypeIn:
    case kBlkTypeOut: {
      const bool in = r.type == kBlkTypeIn;
      if (!in && limits.read_only) return fail(RequestError::kReadOnly);
      const uint64_t len = in ? in_bytes : out_bytes;
      if (len == 0 || (in ? out_bytes : in_bytes) != 0) return fail(RequestError::kLayout);
      if (len > std::numeric_limits<uint32_t>::max() - 1) return fail(RequestError::kTooLarge);
      if (RequestError e = CheckRange(r.sector, len, limits); e != RequestError::kNone) {
        return fail(e);
      }
      if (RequestError e = slice(in, in ? 0 : kBlkHeaderSize, len); e != RequestError::kNone) {
        return fail(e);
      }
      r.request.type = in ? block::RequestType::kRead : block::RequestType::kWrite;
      r.request.offset = r.sector * kBlkSectorSize;
      r.data_in = in ? static_cast<uint32_t>(len) : 0;
      return r;
    }
    case kBlkTypeFlush:
      // §5.2.6: the sector field of a FLUSH is reserved; there is no data.
      if (out_bytes != 0 || in_bytes != 0) return fail(RequestError::kLayout);
      r.request.type = block::RequestType::kFlush;
      return r;
    case kBlkTypeGetId: {
      if (out_bytes != 0 || in_bytes == 0) return fail(RequestError::kLayout);
      const uint64_t len = std::min<uint64_t>(in_bytes, kBlkIdBytes);
      // The id buffer is at most 20 bytes and is written by the device itself: no seg_max.
      std::optional<size_t> n = Slice(segs, true, 0, len, iov.size(), 0, iov);
      if (!n.has_value()) return fail(RequestError::kTooManySegments);
      r.request.iov = iov.first(*n);
      r.data_in = static_cast<uint32_t>(len);
      return r;
    }
    case kBlkTypeDiscard:
    case kBlkTypeWriteZeroes: {
      const bool discard = r.type == kBlkTypeDiscard;
      // A read-only disk refuses them as it refuses OUT, offered or not.
      if (limits.read_only) return fail(RequestError::kReadOnly);
      if (!(discard ? limits.discard : limits.write_zeroes)) {
        return fail(RequestError::kUnsupported);
      }
      if (in_bytes != 0 || out_bytes == 0 || out_bytes % kBlkDiscardRangeSize != 0) {
        return fail(RequestError::kLayout);
      }
      // max_discard_seg / max_write_zeroes_seg are 1: one range per request.
      if (out_bytes != kBlkDiscardRangeSize) return fail(RequestError::kTooLarge);
      uint8_t range[kBlkDiscardRangeSize];
      if (!Gather(segs, false, kBlkHeaderSize, range)) return fail(RequestError::kLayout);
      const uint64_t sector = Le64(range);
      const uint32_t num_sectors = Le32(range + 8);
      const uint32_t flags = Le32(range + 12);
      // §5.2.6.2: UNMAP is reserved for DISCARD; unknown flags are unsupported.
      const uint32_t allowed = discard ? 0 : kBlkWriteZeroesFlagUnmap;
      if (flags & ~allowed) return fail(RequestError::kUnsupported);
      if (num_sectors == 0) return fail(RequestError::kLayout);
      if (num_sectors > (discard ? limits.max_discard_sectors : limits.max_write_zeroes_sectors)) {
        return fail(RequestError::kTooLarge);
      }
      const uint64_t len = uint64_t{num_sectors} * kBlkSectorSize;
      if (RequestError e = CheckRange(sector, len, limits); e != RequestError::kNone) {
        return fail(e);
      }
      r.request.type = discard ? block::RequestType::kDiscard : block::RequestType::kWriteZeroes;
      r.request.offset = sector * kBlkSectorSize;
      r.request.length = len;
      r.request.unmap = (flags & kBlkWriteZeroesFlagUnmap) != 0;
      return r;
    }
    default:
      return fail(RequestError::kUnsupported);
  }
}

}  // namespace keel::vmm::virtio
