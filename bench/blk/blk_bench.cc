// blk_bench: the host's random-I/O limit, and what Keel's block backend costs on top of it.
//
// Creates a fully written file (1 GiB by default) in a temporary directory, then runs 4 KiB
// random reads and writes at a fixed queue depth with O_DIRECT:
//   - "raw liburing": a plain loop (io_uring_submit_and_wait, registered file), the limit;
//   - "backend": block::Backend driven the way the virtio-blk device will drive it, from an
//     EventLoop watching the backend's eventfd: Reap, Submit the replacements, Kick;
//   - "backend bounced": the same with guest buffers one byte off alignment, so every
//     request goes through the bounce pool (the worst case of a misbehaving guest); the pool
//     has a buffer per request here, while the default pool (8) would also cap the depth.
// and prints IOPS, MB/s, CPU time per I/O (user + system of the whole process, io-wq workers
// included), context switches per I/O and latency. The file is unlinked as soon as it is
// written, so it never outlives the run.
//
//   blk_bench [--dir=/tmp] [--size_mib=1024] [--seconds=5] [--qd=32] [--bs=4096]
//             [--rows=raw-read,backend-read,...] [--file=existing.img]
#include <fcntl.h>
#include <liburing.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "base/event_loop.h"
#include "base/fd.h"
#include "base/mapping.h"
#include "block/raw_file.h"

ABSL_FLAG(std::string, dir, "", "directory for the test file (default: $TMPDIR or /tmp)");
ABSL_FLAG(uint64_t, size_mib, 1024, "test file size in MiB");
ABSL_FLAG(double, seconds, 5, "duration of each workload");
ABSL_FLAG(uint32_t, qd, 32, "queue depth (requests in flight)");
ABSL_FLAG(uint32_t, bs, 4096, "block size in bytes (a multiple of 4096)");
ABSL_FLAG(std::string, file, "",
          "use this existing, fully written file instead of creating one (it is kept)");
ABSL_FLAG(std::string, rows,
          "raw-read,backend-read,bounced-read,raw-write,backend-write,bounced-write",
          "workloads to run, in order; also raw-coop-*, raw-defer-* (ring flag variants) "
          "and raw-spin-* (busy-polls the completion ring), each for -read and -write");

namespace keel::block {
namespace {

[[noreturn]] void Die(const std::string& what) {
  fprintf(stderr, "blk_bench: %s\n", what.c_str());
  exit(1);
}

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

struct CpuUsage {
  double seconds;  // user + system, every thread of the process (io-wq workers included)
  long switches;   // voluntary + involuntary context switches
};

CpuUsage Usage() {
  rusage ru = {};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
  return {secs(ru.ru_utime) + secs(ru.ru_stime), ru.ru_nvcsw + ru.ru_nivcsw};
}

// xorshift64*: cheap enough not to show up next to a 15 µs I/O.
class Random {
 public:
  explicit Random(uint64_t seed) : x_(seed | 1) {}
  uint64_t Next() {
    x_ ^= x_ >> 12;
    x_ ^= x_ << 25;
    x_ ^= x_ >> 27;
    return x_ * 2685821657736338717ull;
  }

 private:
  uint64_t x_;
};

struct Config {
  std::string path;
  uint64_t file_bytes;
  uint64_t duration_ns;
  uint32_t qd;
  uint32_t bs;
};

// Latencies and counts of one run.
class Recorder {
 public:
  explicit Recorder(const Config& config) : config_(config), random_(42) {
    latencies_.reserve(1 << 20);
  }
  void Start() {
    start_ns_ = NowNs();
    usage_start_ = Usage();
  }
  bool Running() const { return NowNs() - start_ns_ < config_.duration_ns; }
  void Stop() {
    elapsed_ns_ = NowNs() - start_ns_;
    CpuUsage end = Usage();
    cpu_ = end.seconds - usage_start_.seconds;
    switches_ = end.switches - usage_start_.switches;
  }
  // A random block-aligned offset; remembers when slot `slot` was issued.
  uint64_t Issue(uint32_t slot) {
    issued_ns_.resize(std::max<size_t>(issued_ns_.size(), slot + 1));
    issued_ns_[slot] = NowNs();
    return (random_.Next() % (config_.file_bytes / config_.bs)) * config_.bs;
  }
  void Done(uint32_t slot, int64_t result) {
    if (result != static_cast<int64_t>(config_.bs)) {
      Die("I/O failed: result " + std::to_string(result) + " (" +
          strerror(static_cast<int>(-result)) + ")");
    }
    if (latencies_.size() < latencies_.capacity()) {
      latencies_.push_back(static_cast<uint32_t>((NowNs() - issued_ns_[slot]) / 1000));
    }
    ++ops_;
  }
  void Print(const char* name) {
    const double secs = static_cast<double>(elapsed_ns_) / 1e9;
    const double iops = static_cast<double>(ops_) / secs;
    std::sort(latencies_.begin(), latencies_.end());
    uint64_t sum = 0;
    for (uint32_t l : latencies_) sum += l;
    const double avg = latencies_.empty() ? 0 : static_cast<double>(sum) / latencies_.size();
    const uint32_t p99 = latencies_.empty() ? 0 : latencies_[latencies_.size() * 99 / 100];
    printf("%-28s %9.0f %8.1f %10.2f %8.2f %9.0f %9u\n", name, iops, iops * config_.bs / 1e6,
           cpu_ * 1e6 / static_cast<double>(ops_), static_cast<double>(switches_) / ops_, avg, p99);
    fflush(stdout);
  }

 private:
  const Config& config_;
  Random random_;
  uint64_t start_ns_ = 0;
  uint64_t elapsed_ns_ = 0;
  CpuUsage usage_start_ = {};
  double cpu_ = 0;
  long switches_ = 0;
  uint64_t ops_ = 0;
  std::vector<uint64_t> issued_ns_;
  std::vector<uint32_t> latencies_;  // µs
};

Mapping Buffers(const Config& config) {
  // One extra page so the bounced workload can shift every buffer by one byte.
  absl::StatusOr<Mapping> m =
      Mapping::Anonymous(size_t{config.qd} * config.bs + 4096, PROT_READ | PROT_WRITE);
  if (!m.ok()) Die(std::string(m.status().message()));
  memset(m->data(), 0x5a, m->size());
  return *std::move(m);
}

// Writes the whole file with non-zero data so reads hit real blocks (reads of holes or
// unwritten extents would never reach the disk). The file is unlinked at once and reached
// through /proc/self/fd from then on, so nothing is left behind however the run ends.
ScopedFd CreateFile(Config& config) {
  ScopedFd fd(open(config.path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600));
  if (!fd) Die("create " + config.path + ": " + strerror(errno));
  constexpr size_t kChunk = 4 << 20;
  absl::StatusOr<Mapping> chunk = Mapping::Anonymous(kChunk, PROT_READ | PROT_WRITE);
  if (!chunk.ok()) Die(std::string(chunk.status().message()));
  Random random(7);
  for (uint64_t off = 0; off < config.file_bytes; off += kChunk) {
    auto* words = reinterpret_cast<uint64_t*>(chunk->data());
    for (size_t i = 0; i < kChunk / 8; ++i) words[i] = random.Next();
    size_t len = std::min<uint64_t>(kChunk, config.file_bytes - off);
    if (pwrite(fd.get(), chunk->data(), len, static_cast<off_t>(off)) !=
        static_cast<ssize_t>(len)) {
      Die("write " + config.path + ": " + strerror(errno));
    }
  }
  if (fsync(fd.get()) != 0) Die("fsync: " + std::string(strerror(errno)));
  unlink(config.path.c_str());
  config.path = "/proc/self/fd/" + std::to_string(fd.get());
  return fd;
}

void RunRaw(const Config& config, bool write, unsigned flags, const char* name, bool spin = false) {
  ScopedFd fd(open(config.path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
  if (!fd) Die("open: " + std::string(strerror(errno)));
  io_uring ring;
  int r = io_uring_queue_init(config.qd, &ring, flags);
  if (r < 0) Die("io_uring_queue_init: " + std::string(strerror(-r)));
  const int raw_fd = fd.get();
  if ((r = io_uring_register_files(&ring, &raw_fd, 1)) < 0)
    Die("register: " + std::string(strerror(-r)));
  Mapping buffers = Buffers(config);
  Recorder rec(config);
  auto issue = [&](uint32_t slot) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    uint8_t* buf = buffers.data() + size_t{slot} * config.bs;
    off_t off = static_cast<off_t>(rec.Issue(slot));
    if (write) {
      io_uring_prep_write(sqe, 0, buf, config.bs, off);
    } else {
      io_uring_prep_read(sqe, 0, buf, config.bs, off);
    }
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, slot);
  };
  rec.Start();
  for (uint32_t i = 0; i < config.qd; ++i) issue(i);
  uint32_t in_flight = config.qd;
  while (in_flight > 0) {
    if (spin) {
      // Submit, then poll the CQ ring from user space instead of sleeping in the kernel.
      io_uring_submit(&ring);
      while (io_uring_cq_ready(&ring) == 0) {
      }
    } else {
      io_uring_submit_and_wait(&ring, 1);
    }
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    const bool more = rec.Running();
    io_uring_for_each_cqe(&ring, head, cqe) {
      const auto slot = static_cast<uint32_t>(io_uring_cqe_get_data64(cqe));
      rec.Done(slot, cqe->res);
      ++seen;
      if (more) {
        issue(slot);
      } else {
        --in_flight;
      }
    }
    io_uring_cq_advance(&ring, seen);
  }
  rec.Stop();
  io_uring_queue_exit(&ring);
  rec.Print(name);
}

void RunBackend(const Config& config, bool write, bool misaligned, const char* name) {
  // A bounce buffer per request, so the bounced rows show the copy, not a queue for buffers.
  OpenOptions options{.cache = CacheMode::kNone,
                      .max_in_flight = config.qd,
                      .max_segments = 4,
                      .bounce_buffers = config.qd,
                      .bounce_buffer_bytes = config.bs};
  absl::StatusOr<std::unique_ptr<Backend>> opened = OpenRawFile(config.path, options);
  if (!opened.ok()) Die(std::string(opened.status().message()));
  Backend& disk = **opened;
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
  if (!loop.ok()) Die(std::string(loop.status().message()));
  Mapping buffers = Buffers(config);
  std::vector<iovec> iov(config.qd);
  for (uint32_t i = 0; i < config.qd; ++i) {
    iov[i] = {buffers.data() + size_t{i} * config.bs + (misaligned ? 1 : 0), config.bs};
  }
  Recorder rec(config);
  auto issue = [&](uint32_t slot) {
    Request req{.type = write ? RequestType::kWrite : RequestType::kRead,
                .offset = rec.Issue(slot),
                .length = 0,
                .iov = std::span(&iov[slot], 1),
                .tag = slot};
    if (int err = disk.Submit(req); err < 0) Die("Submit: " + std::string(strerror(-err)));
  };
  bool draining = false;
  absl::Status added = (*loop)->Add(disk.event_fd(), EPOLLIN, [&](uint32_t) {
    Completion done[64];
    size_t n;
    do {
      n = disk.Reap(done);
      draining = draining || !rec.Running();
      for (size_t i = 0; i < n; ++i) {
        rec.Done(static_cast<uint32_t>(done[i].tag), done[i].result);
        if (!draining) issue(static_cast<uint32_t>(done[i].tag));
      }
    } while (n == std::size(done));
    disk.Kick();
    if (draining && disk.in_flight() == 0) (*loop)->Stop();
  });
  if (!added.ok()) Die(std::string(added.message()));
  rec.Start();
  for (uint32_t i = 0; i < config.qd; ++i) issue(i);
  disk.Kick();
  (*loop)->Run();
  rec.Stop();
  (*loop)->Remove(disk.event_fd());
  rec.Print(name);
}

const char* FilesystemName(const std::string& dir) {
  struct statfs fs = {};
  if (statfs(dir.c_str(), &fs) != 0) return "?";
  switch (fs.f_type) {
    case 0xEF53:
      return "ext4";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x01021994:
      return "tmpfs";
    default:
      return "other";
  }
}

int Main() {
  std::string dir = absl::GetFlag(FLAGS_dir);
  if (dir.empty()) dir = getenv("TMPDIR") != nullptr ? getenv("TMPDIR") : "/tmp";
  Config config{
      .path = dir + "/keel-blk-bench-" + std::to_string(getpid()) + ".img",
      .file_bytes = absl::GetFlag(FLAGS_size_mib) << 20,
      .duration_ns = static_cast<uint64_t>(absl::GetFlag(FLAGS_seconds) * 1e9),
      .qd = absl::GetFlag(FLAGS_qd),
      .bs = absl::GetFlag(FLAGS_bs),
  };
  if (config.qd == 0 || config.qd > 4096 || config.bs == 0 || config.bs % 4096 != 0 ||
      config.file_bytes < config.bs) {
    Die("need 1 <= qd <= 4096, bs a multiple of 4096, size_mib >= bs");
  }
  ScopedFd created;  // keeps the unlinked test file alive for the run
  if (!absl::GetFlag(FLAGS_file).empty()) {
    config.path = absl::GetFlag(FLAGS_file);
    struct stat st = {};
    if (stat(config.path.c_str(), &st) != 0) Die("stat " + config.path + ": " + strerror(errno));
    config.file_bytes = static_cast<uint64_t>(st.st_size) / config.bs * config.bs;
    dir = config.path.substr(0, config.path.rfind('/') + 1);
  } else {
    created = CreateFile(config);
  }
  printf("blk_bench: %u KiB random I/O, QD%u, O_DIRECT, %" PRIu64
         " MiB file on %s (%s), %.1f s each\n",
         config.bs / 1024, config.qd, config.file_bytes >> 20, dir.c_str(), FilesystemName(dir),
         static_cast<double>(config.duration_ns) / 1e9);
  printf("%-28s %9s %8s %10s %8s %9s %9s\n", "workload", "IOPS", "MB/s", "CPU us/IO", "csw/IO",
         "avg us", "p99 us");
  // Every row exists for reads and writes: "raw-read", "raw-coop-write", ...
  struct RawVariant {
    const char* row;
    unsigned flags;
    bool spin;
    const char* label;
  };
  const RawVariant raw_variants[] = {
      {"raw", 0, false, "raw liburing"},
      {"raw-coop", IORING_SETUP_COOP_TASKRUN, false, "raw COOP_TASKRUN"},
      {"raw-defer", IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, false,
       "raw DEFER_TASKRUN"},
      {"raw-spin", 0, true, "raw busy-polled"},
  };
  std::map<std::string, std::function<void()>> rows;
  for (bool write : {false, true}) {
    const std::string dir_row = write ? "-write" : "-read";
    const std::string dir_label = write ? " randwrite" : " randread";
    for (const RawVariant& v : raw_variants) {
      rows[v.row + dir_row] = [&config, write, v, label = v.label + dir_label] {
        RunRaw(config, write, v.flags, label.c_str(), v.spin);
      };
    }
    rows["backend" + dir_row] = [&config, write, label = "backend" + dir_label] {
      RunBackend(config, write, false, label.c_str());
    };
    rows["bounced" + dir_row] = [&config, write, label = "backend bounced" + dir_label] {
      RunBackend(config, write, true, label.c_str());
    };
  }
  for (absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_rows), ',')) {
    auto row = rows.find(std::string(name));
    if (row == rows.end()) Die("unknown row " + std::string(name));
    row->second();
  }
  return 0;
}

}  // namespace
}  // namespace keel::block

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return keel::block::Main();
}
