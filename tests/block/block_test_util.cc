#include "tests/block/block_test_util.h"

#include <fcntl.h>
#include <ftw.h>
#include <linux/loop.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "base/fd.h"
#include "gtest/gtest.h"

namespace keel::block::testing {
namespace {

std::string MakeTempDir(std::string base) {
  if (base.empty()) base = getenv("TMPDIR") != nullptr ? getenv("TMPDIR") : "/tmp";
  std::string templ = base + "/keel-block-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) ADD_FAILURE() << "mkdtemp: " << strerror(errno);
  return templ;
}

int RemoveEntry(const char* path, const struct stat*, int, struct FTW*) {
  remove(path);
  return 0;
}

}  // namespace

TempDir::TempDir(const std::string& base) : path_(MakeTempDir(base)) {}

TempDir::~TempDir() { nftw(path_.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS); }

RamfsDir::RamfsDir() { mounted_ = mount("keel-test", path_.c_str(), "ramfs", 0, nullptr) == 0; }

RamfsDir::~RamfsDir() {
  if (mounted_) umount2(path_.c_str(), MNT_DETACH);
}

LoopDevice::LoopDevice(const std::string& backing_file, uint32_t block_size) {
  ScopedFd control(open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  ScopedFd backing(open(backing_file.c_str(), O_RDWR | O_CLOEXEC));
  if (!control || !backing) {
    error_ = std::string("/dev/loop-control or backing file: ") + strerror(errno);
    return;
  }
  // Another process may take the free device between the two calls: try a few times.
  for (int attempt = 0; attempt < 8 && fd_ < 0; ++attempt) {
    int index = ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (index < 0) break;
    std::string path = "/dev/loop" + std::to_string(index);
    ScopedFd dev(open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!dev) continue;
    loop_config config = {};
    config.fd = static_cast<uint32_t>(backing.get());
    config.block_size = block_size;
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
    if (ioctl(dev.get(), LOOP_CONFIGURE, &config) != 0) continue;
    fd_ = dev.Release();
    path_ = path;
  }
  if (fd_ < 0) error_ = std::string("no loop device could be configured: ") + strerror(errno);
}

LoopDevice::~LoopDevice() {
  if (fd_ >= 0) close(fd_);  // LO_FLAGS_AUTOCLEAR detaches it
}

std::vector<uint8_t> Pattern(size_t size, uint32_t seed) {
  std::vector<uint8_t> out(size);
  uint32_t x = seed * 2654435761u + 1;
  for (uint8_t& b : out) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<uint8_t>(x);
  }
  return out;
}

void WriteImage(const std::string& path, size_t size, uint32_t seed) {
  ScopedFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd.valid()) << path << ": " << strerror(errno);
  std::vector<uint8_t> data = Pattern(size, seed);
  ASSERT_EQ(pwrite(fd.get(), data.data(), size, 0), static_cast<ssize_t>(size));
  ASSERT_EQ(fsync(fd.get()), 0);
}

std::vector<uint8_t> ReadFile(const std::string& path, uint64_t offset, size_t size) {
  std::vector<uint8_t> out(size);
  ScopedFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(fd.valid()) << path << ": " << strerror(errno);
  EXPECT_EQ(pread(fd.get(), out.data(), size, static_cast<off_t>(offset)),
            static_cast<ssize_t>(size));
  return out;
}

uint64_t AllocatedBlocks(const std::string& path) {
  struct stat st = {};
  EXPECT_EQ(stat(path.c_str(), &st), 0);
  return static_cast<uint64_t>(st.st_blocks);
}

std::vector<iovec> Segments(uint8_t* data, const std::vector<size_t>& lengths) {
  std::vector<iovec> out;
  for (size_t len : lengths) {
    out.push_back({data, len});
    data += len;
  }
  return out;
}

std::vector<Completion> WaitForCompletions(Backend& backend, size_t count, size_t batch) {
  std::vector<Completion> out;
  Completion buffer[16];
  const std::span<Completion> span(buffer, std::clamp<size_t>(batch, 1, 16));
  while (out.size() < count) {
    pollfd pfd = {backend.event_fd(), POLLIN, 0};
    if (poll(&pfd, 1, 30000) != 1) {
      ADD_FAILURE() << "no completion within 30 s; have " << out.size() << " of " << count;
      return out;
    }
    size_t n = backend.Reap(span);
    out.insert(out.end(), buffer, buffer + n);
  }
  return out;
}

int64_t RunToCompletion(Backend& backend, const Request& request) {
  int accepted = backend.Submit(request);
  EXPECT_EQ(accepted, 0) << strerror(-accepted);
  if (accepted != 0) return accepted;
  backend.Kick();
  std::vector<Completion> done = WaitForCompletions(backend, 1);
  if (done.size() != 1) return -ETIMEDOUT;
  EXPECT_EQ(done[0].tag, request.tag);
  return done[0].result;
}

Request ReadRequest(uint64_t offset, const std::vector<iovec>& iov, uint64_t tag) {
  return Request{.type = RequestType::kRead, .offset = offset, .length = 0, .iov = iov, .tag = tag};
}

Request WriteRequest(uint64_t offset, const std::vector<iovec>& iov, uint64_t tag) {
  return Request{
      .type = RequestType::kWrite, .offset = offset, .length = 0, .iov = iov, .tag = tag};
}

Request RangeRequest(RequestType type, uint64_t offset, uint64_t length, uint64_t tag) {
  return Request{.type = type, .offset = offset, .length = length, .iov = {}, .tag = tag};
}

}  // namespace keel::block::testing
