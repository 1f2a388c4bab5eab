// blk_request_bench: what Keel's virtio-blk device costs per request without any I/O.
//
//   BM_Parse        ParseBlockRequest on an already-walked chain (header copy, checks, iovecs)
//   BM_DeviceBatch  the whole device path for a batch of requests against in-memory guest RAM
//                   and a backend that completes everything at once without touching data:
//                   pop, walk and parse each chain, Submit, one Kick, then the completion
//                   eventfd through the event loop, status bytes, used ring, interrupt check.
//                   Includes the eventfd and epoll system calls, amortized over the batch.
// Times are per request (items_per_second is requests per second).
//
//   blk_request_bench [--benchmark_filter=...]
#include <cstring>
#include <vector>

#include "base/event_loop.h"
#include "benchmark/benchmark.h"
#include "tests/vmm/virtio/memory_backend.h"
#include "tests/vmm/virtio/virtq_driver.h"
#include "vmm/devices/interrupt.h"
#include "vmm/virtio/block.h"

namespace keel::vmm::virtio {
namespace {

constexpr uint64_t kMemSize = 8 << 20;
constexpr uint64_t kRings = 0x1000;
constexpr uint64_t kHeaders = 0x20000;
constexpr uint64_t kStatus = 0x30000;
constexpr uint64_t kData = 0x100000;
constexpr uint16_t kQueueSize = 256;

void BM_Parse(benchmark::State& state) {
  std::vector<uint8_t> ram(8192);
  const uint32_t type = kBlkTypeIn;
  const uint64_t sector = 8;
  memcpy(ram.data(), &type, 4);
  memcpy(ram.data() + 8, &sector, 8);
  Segment segs[3] = {
      {ram.data(), 16, false}, {ram.data() + 4096, 4096, true}, {ram.data() + 64, 1, true}};
  Chain chain;
  chain.count = 3;
  chain.readable = 16;
  chain.writable = 4097;
  chain.last = segs[2];
  BlockLimits limits;
  limits.capacity_bytes = 1ull << 30;
  limits.seg_max = 254;
  iovec iov[256];
  for (auto _ : state) {
    ParsedRequest r = ParseBlockRequest(chain, segs, limits, iov);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Parse);

void BM_DeviceBatch(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  GuestMemory mem = *GuestMemory::CreateForTest({{0, kMemSize}});
  std::unique_ptr<EventLoop> loop = *EventLoop::Create();
  testing::VirtqDriver driver(mem, kRings, kQueueSize);
  Queue queue(kQueueSize);
  (void)driver.Attach(queue, /*event_idx=*/true);
  driver.SetUsedEvent(0x7fff);  // a polling driver: no interrupts wanted
  block::Properties props = testing::TestDiskProperties(1ull << 30);
  BlockDeviceOptions options;
  options.queue_size = kQueueSize;
  std::unique_ptr<BlockDevice> device =
      *BlockDevice::Create(std::make_unique<testing::MemoryBackend>(props, true), options);
  CountingInterrupt line;
  VirtioInterrupt interrupt(&line);
  ActivateContext ctx;
  ctx.memory = &mem;
  ctx.features = device->device_features();
  ctx.queues = std::span(&queue, 1);
  ctx.interrupt = &interrupt;
  ctx.loop = loop.get();
  ctx.needs_reset = [](absl::string_view) {};
  (void)device->Activate(std::move(ctx));
  // 4 KiB random-read shaped requests: header, one data buffer, status; built once.
  std::vector<uint16_t> heads;
  for (int i = 0; i < batch; ++i) {
    const uint64_t header = kHeaders + 16 * static_cast<uint64_t>(i);
    (void)mem.WriteObj(header, kBlkTypeIn);
    (void)mem.WriteObj(header + 8, static_cast<uint64_t>(i) * 8);
    heads.push_back(driver.AddChain({{header, 16},
                                     {kData + 4096 * static_cast<uint64_t>(i), 4096, true},
                                     {kStatus + static_cast<uint64_t>(i), 1, true}}));
  }
  for (auto _ : state) {
    for (uint16_t head : heads) driver.Publish(head);
    device->ProcessQueue(0);
    while (device->in_flight() > 0) loop->RunOnce(0);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * batch);
  state.counters["per_request"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * batch,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  device->Reset();
}
BENCHMARK(BM_DeviceBatch)->Arg(1)->Arg(32)->Arg(64);

}  // namespace
}  // namespace keel::vmm::virtio

BENCHMARK_MAIN();
