// libFuzzer target: virtio-net's transmit-chain check (ParseTxChain) on fuzzer-chosen chains:
// buffer sizes, writable flags, chain errors, negotiated features, header size and every
// header and frame byte. Whatever it is given, the function must stay inside the buffers and
// the iovec span, and a frame it accepts must be exactly header + frame bytes of the chain.
#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "vmm/virtio/net.h"

using keel::vmm::virtio::Chain;
using keel::vmm::virtio::ChainError;
using keel::vmm::virtio::kNetMaxFrame;
using keel::vmm::virtio::kNetMaxSegments;
using keel::vmm::virtio::ParseTxChain;
using keel::vmm::virtio::Segment;
using keel::vmm::virtio::TxDrop;
using keel::vmm::virtio::TxFrame;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Layout: features (8), header size selector (1), chain error (1), segment count (1),
  // iovec room (1), then per segment a little-endian u16 length (bit 15: writable; lengths
  // are scaled so frames near 64 KiB are reachable), then the bytes the buffers hold.
  if (size < 12) return 0;
  uint64_t features;
  memcpy(&features, data, 8);
  const uint32_t hdr_size = data[8] % 3 == 0 ? 10 : data[8] % 3 == 1 ? 12 : data[8] % 16;
  const ChainError error =
      data[9] % 8 == 0 ? static_cast<ChainError>(data[9] / 8 % 7) : ChainError::kNone;
  const size_t nsegs = data[10] % (kNetMaxSegments + 1);
  const size_t iov_room = data[11] % (kNetMaxSegments + 3);
  data += 12;
  size -= 12;
  if (size < 2 * nsegs) return 0;
  std::vector<uint32_t> lens(nsegs);
  std::vector<bool> writable(nsegs);
  for (size_t i = 0; i < nsegs; ++i) {
    const uint16_t v = static_cast<uint16_t>(data[2 * i] | data[2 * i + 1] << 8);
    writable[i] = v & 0x8000;
    lens[i] = (v & 0x7fff) * ((v & 0x4000) ? 5 : 1) % (kNetMaxFrame + 64);
  }
  data += 2 * nsegs;
  size -= 2 * nsegs;

  // Each buffer is its own heap block, exactly its length, filled from the input (repeating):
  // ASan flags any byte read outside it.
  std::vector<std::vector<uint8_t>> bufs(nsegs);
  std::vector<Segment> segs(nsegs);
  Chain chain;
  chain.error = error;
  size_t pos = 0;
  for (size_t i = 0; i < nsegs; ++i) {
    bufs[i].resize(lens[i]);
    for (size_t j = 0; j < lens[i] && size > 0;) {
      const size_t n = std::min(lens[i] - j, size - pos % size);
      memcpy(bufs[i].data() + j, data + pos % size, n);
      j += n;
      pos += n;
    }
    segs[i] = Segment{bufs[i].data(), lens[i], writable[i]};
    (writable[i] ? chain.writable : chain.readable) += lens[i];
  }
  chain.count = nsegs;

  std::vector<iovec> iov(iov_room);
  TxFrame frame;
  ParseTxChain(chain, segs, features, hdr_size, iov, &frame);
  if (frame.drop != TxDrop::kNone) {
    if (frame.iov_count != 0) abort();
    return 0;
  }
  if (error != ChainError::kNone || chain.writable != 0 || frame.iov_count > iov_room ||
      frame.iov_count == 0 || frame.frame_len > kNetMaxFrame) {
    abort();
  }
  // Gather what writev would send and compare it with the chain's bytes.
  std::vector<uint8_t> sent;
  for (size_t i = 0; i < frame.iov_count; ++i) {
    const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
    sent.insert(sent.end(), p, p + iov[i].iov_len);
  }
  std::vector<uint8_t> chain_bytes;
  for (const auto& b : bufs) chain_bytes.insert(chain_bytes.end(), b.begin(), b.end());
  const size_t hdr = std::min<size_t>(hdr_size, 12);
  if (sent.size() != hdr + frame.frame_len || sent != chain_bytes) abort();
  return 0;
}
