// libFuzzer target: the virtio-blk device processing a queue whose rings, descriptors,
// request headers, discard ranges and buffers are all fuzzer-chosen bytes of guest memory,
// over an in-memory backend. Whatever the driver wrote, the device must not touch memory
// outside guest RAM, crash, hang, or leave a popped chain uncompleted (unless it declared the
// queue broken: NEEDS_RESET).
//
// Input: byte 0 = options (bit 0 read-only, bit 1 EVENT_IDX, bit 2 DISCARD/WRITE_ZEROES
// negotiated, bit 3 the backend fails every request, bit 4 it hands the first one back),
// then guest memory from address 0: descriptor table at 0x0 (16 entries), available ring at
// 0x100, used ring at 0x200, anything else above.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "base/event_loop.h"
#include "tests/vmm/virtio/memory_backend.h"
#include "vmm/devices/interrupt.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/block.h"

using namespace keel::vmm;
using namespace keel::vmm::virtio;

namespace {

constexpr uint64_t kMemSize = 64 * 1024;
constexpr uint16_t kQueueSize = 16;

GuestMemory& Memory() {
  static GuestMemory* mem = new GuestMemory(*GuestMemory::CreateForTest({{0, kMemSize}}));
  return *mem;
}

keel::EventLoop& Loop() {
  static keel::EventLoop* loop = keel::EventLoop::Create()->release();
  return *loop;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t options = data[0];
  ++data;
  --size;
  GuestMemory& mem = Memory();
  mem.Fill(0, 0, kMemSize).IgnoreError();
  mem.Write(0, std::span(data, std::min<uint64_t>(size, kMemSize))).IgnoreError();

  keel::block::Properties props = testing::TestDiskProperties(32 * 1024);
  props.read_only = options & 1;
  auto backend = std::make_unique<testing::MemoryBackend>(props);
  testing::MemoryBackend* raw = backend.get();
  if (options & 8) raw->fail_errno = EIO;
  if (options & 16) raw->hand_back_errno = EINVAL;
  BlockDeviceOptions device_options;
  device_options.serial = "fuzz";
  device_options.queue_size = kQueueSize;
  auto device = BlockDevice::Create(std::move(backend), device_options);
  if (!device.ok()) __builtin_trap();

  Queue queue(kQueueSize);
  queue.set_desc_gpa(0);
  queue.set_avail_gpa(0x100);
  queue.set_used_gpa(0x200);
  queue.set_ready(true);
  if (!queue.Activate(mem, options & 2).ok()) __builtin_trap();
  CountingInterrupt line;
  VirtioInterrupt interrupt(&line);
  bool needs_reset = false;
  ActivateContext ctx;
  ctx.memory = &mem;
  ctx.features = (options & 4) ? ~0ull : 0;
  ctx.queues = std::span(&queue, 1);
  ctx.interrupt = &interrupt;
  ctx.loop = &Loop();
  ctx.needs_reset = [&needs_reset](absl::string_view) { needs_reset = true; };
  if (!(*device)->Activate(std::move(ctx)).ok()) __builtin_trap();

  (*device)->ProcessQueue(0);
  for (int i = 0; i < 8 && (*device)->in_flight() > 0; ++i) Loop().RunOnce(0);
  // Every chain popped was completed, unless the queue was declared broken.
  if (!needs_reset && queue.used_idx() != queue.last_avail_idx()) __builtin_trap();
  (*device)->Reset();
  return 0;
}
