// libFuzzer target: a device draining a split virtqueue whose rings, descriptors and
// indirect tables are all fuzzer-chosen bytes. The device must never read or write outside
// guest memory, loop forever or crash, whatever the driver wrote.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/queue.h"

using keel::vmm::GuestMemory;
using keel::vmm::virtio::Chain;
using keel::vmm::virtio::Queue;
using keel::vmm::virtio::Segment;

namespace {

constexpr uint64_t kMemSize = 256 * 1024;

GuestMemory& Memory() {
  static GuestMemory* mem = new GuestMemory(*GuestMemory::CreateForTest({{0, kMemSize}}));
  return *mem;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  GuestMemory& mem = Memory();
  // Header: queue size, ring placement, event_idx, then the bytes of guest memory.
  uint16_t qsize;
  memcpy(&qsize, data, 2);
  qsize = static_cast<uint16_t>(qsize % 1025);
  const uint64_t desc = (uint64_t{data[2]} << 10) % kMemSize;
  const uint64_t avail = (uint64_t{data[3]} << 10) % kMemSize;
  const uint64_t used = (uint64_t{data[4]} << 10) % kMemSize;
  const bool event_idx = data[5] & 1;
  const size_t nsegs = 1 + data[6] % 64;
  data += 8;
  size -= 8;
  mem.Fill(0, 0, kMemSize).IgnoreError();
  // Spread the input over guest memory from address 0, repeating it.
  for (uint64_t at = 0; size > 0 && at < kMemSize; at += size) {
    mem.Write(at, std::span(data, std::min<uint64_t>(size, kMemSize - at))).IgnoreError();
  }

  Queue queue(1024);
  queue.set_size(qsize);
  queue.set_desc_gpa(desc);
  queue.set_avail_gpa(avail);
  queue.set_used_gpa(used);
  if (!queue.Activate(mem, event_idx).ok()) return 0;

  Segment segs[64];
  bool broken = false;
  int passes = 0;
  do {
    while (auto head = queue.PopHead(&broken)) {
      Chain chain = queue.ReadChain(*head, std::span(segs, nsegs));
      // Touch every byte the queue handed out: ASan catches anything outside guest RAM.
      uint8_t sum = 0;
      for (size_t i = 0; i < chain.count; ++i) {
        for (uint32_t j = 0; j < segs[i].len; j += 512) sum ^= segs[i].host[j];
        if (segs[i].writable && segs[i].len > 0) segs[i].host[segs[i].len - 1] = sum;
      }
      if (chain.last.has_value() && chain.last->len > 0) chain.last->host[0] = 1;
      queue.PushUsed(*head, static_cast<uint32_t>(chain.writable));
    }
    queue.ShouldInterrupt();
  } while (!broken && queue.EnableNotifications() && ++passes < 4);
  return 0;
}
