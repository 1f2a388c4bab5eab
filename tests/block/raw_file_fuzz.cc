// Fuzzes the raw-file backend with hostile request streams: any type, offset, length and
// scatter-gather shape a broken or malicious guest could produce (the iovecs themselves stay
// inside guest RAM: the device checks that before the backend sees them). Every accepted
// request must complete exactly once, nothing may hang, and refused ones must say so.
//
// Input: records of 12 bytes:
//   [0] type (mod 6: the five types and an invalid one)  [1] flags: bit0 unmap, bit1 kick now
//   [2] segment count (mod 9)  [3] segment shape seed
//   [4..7] offset in 512-byte units (little endian; large values run past the end)
//   [8..11] length in bytes for discard / write-zeroes, and the base of the segment lengths
// The first input byte picks the cache mode.
#include <poll.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <vector>

#include "base/mapping.h"
#include "block/raw_file.h"
#include "tests/block/block_test_util.h"

namespace keel::block {
namespace {

constexpr size_t kImageBytes = 1 << 20;
constexpr size_t kRamBytes = 1 << 20;
constexpr uint32_t kQueue = 16;

struct Disk {
  testing::TempDir dir;
  std::unique_ptr<Backend> backend;
};

// One backend per cache mode for the whole fuzzing run; destroyed (image removed) at exit.
Disk& GetDisk(CacheMode cache) {
  static std::unique_ptr<Disk> disks[2];
  std::unique_ptr<Disk>& disk = disks[cache == CacheMode::kNone ? 1 : 0];
  if (disk == nullptr) {
    disk = std::make_unique<Disk>();
    testing::WriteImage(disk->dir.File("d.img"), kImageBytes, 1);
    auto backend = OpenRawFile(disk->dir.File("d.img"), {.cache = cache,
                                                         .max_in_flight = kQueue,
                                                         .max_segments = 8,
                                                         .bounce_buffers = 2,
                                                         .bounce_buffer_bytes = 8192});
    if (!backend.ok()) {
      fprintf(stderr, "%s\n", std::string(backend.status().message()).c_str());
      abort();
    }
    disk->backend = *std::move(backend);
  }
  return *disk;
}

uint8_t* Ram() {
  static Mapping ram = *Mapping::Anonymous(kRamBytes, PROT_READ | PROT_WRITE);
  return ram.data();
}

uint32_t Le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

// Reaps until nothing is outstanding; aborts (a hang) after 10 s without progress.
void Drain(Backend& disk, std::vector<uint8_t>& completed, size_t& outstanding) {
  Completion batch[8];
  while (outstanding > 0) {
    // libFuzzer's timeout watchdog interrupts poll() with SIGALRM: only 10 s without any
    // completion is a hang.
    pollfd pfd = {disk.event_fd(), POLLIN, 0};
    const time_t deadline = time(nullptr) + 10;
    int ready;
    while ((ready = poll(&pfd, 1, 1000)) != 1) {
      if ((ready < 0 && errno != EINTR) || time(nullptr) >= deadline) {
        fprintf(stderr, "hang: %zu requests never completed\n", outstanding);
        abort();
      }
    }
    size_t n = disk.Reap(batch);
    for (size_t i = 0; i < n; ++i) {
      if (batch[i].tag >= completed.size() || completed[batch[i].tag]++ != 0) abort();
      --outstanding;
    }
  }
}

}  // namespace
}  // namespace keel::block

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace keel::block;
  if (size < 1) return 0;
  Backend& disk = *GetDisk((data[0] & 1) != 0 ? CacheMode::kNone : CacheMode::kWriteback).backend;
  uint8_t* ram = Ram();
  ++data;
  --size;
  constexpr size_t kRecord = 12;
  std::vector<uint8_t> completed(size / kRecord, 0);
  size_t outstanding = 0;
  for (size_t r = 0; r < size / kRecord; ++r) {
    const uint8_t* rec = data + r * kRecord;
    iovec iov[8];
    const uint32_t segments = rec[2] % 9;
    const uint32_t base_len = Le32(rec + 8);
    size_t cursor = rec[3] * 977u % 4096;  // unaligned starts are part of the game
    for (uint32_t s = 0; s < segments; ++s) {
      size_t len = (base_len >> (s * 3)) % 65536;
      if (cursor + len > kRamBytes) cursor = 0;
      iov[s] = {ram + cursor, len};
      cursor += len;
    }
    Request request{.type = static_cast<RequestType>(rec[0] % 6),
                    .offset = uint64_t{Le32(rec + 4)} * 512,
                    .length = base_len,
                    .iov = std::span<const iovec>(iov, segments),
                    .tag = r,
                    .unmap = (rec[1] & 1) != 0};
    if (outstanding == kQueue) {
      disk.Kick();
      Drain(disk, completed, outstanding);
    }
    int err = disk.Submit(request);
    if (err == 0) {
      ++outstanding;
    } else if (err > 0 || err == -EBUSY) {
      abort();  // never more than kQueue in flight here, so EBUSY is a bug
    } else {
      completed[r] = 1;  // handed back: completes nowhere else
    }
    if ((rec[1] & 2) != 0) disk.Kick();
  }
  disk.Kick();
  Drain(disk, completed, outstanding);
  if (disk.in_flight() != 0) abort();
  return 0;
}
