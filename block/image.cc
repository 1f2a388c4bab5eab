#include "block/image.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status.h"

namespace keel::block {
namespace {

constexpr uint32_t kSectorSize = 512;
// Used when the kernel does not report the O_DIRECT alignment (statx STATX_DIOALIGN, Linux
// 6.1+): a page is aligned enough for every common device.
constexpr uint32_t kFallbackDirectAlignment = 4096;
constexpr uint32_t kMaxBlockSize = 64 * 1024;
constexpr uint32_t kMaxInFlight = 4096;
constexpr uint32_t kMaxSegments = 1024;  // IOV_MAX: readv/writev refuse more

bool ValidBlockSize(uint32_t size) {
  return size >= kSectorSize && size <= kMaxBlockSize && std::has_single_bit(size);
}

absl::Status CheckOptions(const std::string& name, const OpenOptions& options) {
  if (options.max_in_flight == 0 || options.max_in_flight > kMaxInFlight) {
    return absl::InvalidArgumentError(absl::StrCat("disk image ", name, ": max_in_flight ",
                                                   options.max_in_flight, " is outside 1..",
                                                   kMaxInFlight));
  }
  if (options.max_segments == 0 || options.max_segments > kMaxSegments) {
    return absl::InvalidArgumentError(absl::StrCat("disk image ", name, ": max_segments ",
                                                   options.max_segments, " is outside 1..",
                                                   kMaxSegments));
  }
  if (options.cache == CacheMode::kNone &&
      (options.bounce_buffers == 0 || options.bounce_buffer_bytes == 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "disk image ", name, ": cache=none needs at least one non-empty bounce buffer"));
  }
  return absl::OkStatus();
}

absl::Status DirectIoRefused(const std::string& name) {
  return absl::FailedPreconditionError(absl::StrCat(
      "disk image ", name,
      " is on a filesystem that does not support O_DIRECT (cache=none); use cache=writeback "
      "or move the image to a filesystem with direct I/O (ext4, xfs, a block device)"));
}

// Takes the OFD lock described in image.h. On conflict, asks the kernel what kind of lock the
// other holder has, to say which remedy works.
absl::Status Lock(int fd, const std::string& name, bool read_only) {
  struct flock want = {};
  want.l_type = read_only ? F_RDLCK : F_WRLCK;
  want.l_whence = SEEK_SET;  // l_start = l_len = 0: the whole file, however it grows
  struct flock probe = want;
  if (fcntl(fd, F_OFD_SETLK, &want) == 0) return absl::OkStatus();
  if (errno != EAGAIN && errno != EACCES) return ErrnoError(errno, "lock disk image ", name);
  bool other_writes = fcntl(fd, F_OFD_GETLK, &probe) == 0 && probe.l_type == F_WRLCK;
  if (other_writes) {
    return absl::FailedPreconditionError(absl::StrCat(
        "disk image ", name, " is in use by another VM (locked for writing); stop that VM ",
        read_only ? "before attaching the image, even read-only" : "before attaching the image"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("disk image ", name,
                   " is in use by another VM (attached read-only); stop that VM or attach the "
                   "image read-only"));
}

// Reads a number from sysfs; 0 when missing (a sandboxed VMM may not see sysfs at all).
uint64_t ReadSysfsNumber(const std::string& path) {
  FILE* f = fopen(path.c_str(), "re");
  if (f == nullptr) return 0;
  unsigned long long value = 0;
  if (fscanf(f, "%llu", &value) != 1) value = 0;
  fclose(f);
  return value;
}

// Discard is served with fallocate(PUNCH_HOLE). For a regular file, try punching a hole well
// past the end of the file (which changes nothing readable) to learn whether the filesystem
// can. A block device turns PUNCH_HOLE into a write-zeroes-with-unmap command, so it needs
// the device to support that.
bool ProbeDiscard(int fd, const struct stat& st) {
  if (S_ISBLK(st.st_mode)) {
    return ReadSysfsNumber(absl::StrCat("/sys/dev/block/", major(st.st_rdev), ":",
                                        minor(st.st_rdev), "/queue/write_zeroes_max_bytes")) > 0;
  }
  constexpr off_t kProbeGap = 1 << 20;
  off_t past_end = (st.st_size / kProbeGap + 1) * kProbeGap;
  return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, past_end, 4096) == 0;
}

struct Alignment {
  uint32_t offset = 0;  // 0: not reported
  uint32_t memory = 0;
};

Alignment DirectIoAlignment(int fd) {
  struct statx stx = {};
  if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) != 0 ||
      (stx.stx_mask & STATX_DIOALIGN) == 0) {
    return {};
  }
  return {stx.stx_dio_offset_align, stx.stx_dio_mem_align};
}

absl::Status ProbeBlockDevice(int fd, const std::string& name, Image& image) {
  Properties& p = image.properties;
  uint64_t bytes = 0;
  int logical = 0;
  unsigned int physical = 0;
  unsigned int optimal = 0;
  if (ioctl(fd, BLKGETSIZE64, &bytes) != 0) return ErrnoError(errno, "size of ", name);
  if (ioctl(fd, BLKSSZGET, &logical) != 0) return ErrnoError(errno, "block size of ", name);
  if (ioctl(fd, BLKPBSZGET, &physical) != 0) physical = 0;
  if (ioctl(fd, BLKIOOPT, &optimal) != 0) optimal = 0;
  p.size_bytes = bytes;
  p.logical_block_size = static_cast<uint32_t>(logical);
  p.physical_block_size = physical;
  p.optimal_io_size = optimal;
  return absl::OkStatus();
}

void ProbeRegularFile(const struct stat& st, bool direct, Properties& p) {
  p.size_bytes = static_cast<uint64_t>(st.st_size);
  // Through the page cache any 512-byte sector works; with O_DIRECT the filesystem's
  // alignment is set below.
  p.logical_block_size = direct ? kFallbackDirectAlignment : kSectorSize;
  p.physical_block_size = static_cast<uint32_t>(st.st_blksize);
  p.optimal_io_size = 0;
}

absl::StatusOr<Image> Probe(ScopedFd fd, std::string name, const OpenOptions& options) {
  struct stat st = {};
  if (fstat(fd.get(), &st) != 0) return ErrnoError(errno, "stat disk image ", name);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("disk image ", name, " is neither a regular file nor a block device"));
  }
  KEEL_RETURN_IF_ERROR(Lock(fd.get(), name, options.read_only));

  const bool direct = options.cache == CacheMode::kNone;
  Image image;
  Properties& p = image.properties;
  if (S_ISBLK(st.st_mode)) {
    KEEL_RETURN_IF_ERROR(ProbeBlockDevice(fd.get(), name, image));
  } else {
    ProbeRegularFile(st, direct, p);
  }
  if (direct) {
    Alignment align = DirectIoAlignment(fd.get());
    if (S_ISREG(st.st_mode) && align.offset != 0) p.logical_block_size = align.offset;
    if (p.logical_block_size < kSectorSize) p.logical_block_size = kSectorSize;
    image.dio_memory_alignment = align.memory != 0 ? align.memory : p.logical_block_size;
  }
  if (!ValidBlockSize(p.logical_block_size)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "disk image ", name, ": unsupported logical block size ", p.logical_block_size));
  }
  if (!ValidBlockSize(p.physical_block_size) || p.physical_block_size < p.logical_block_size) {
    p.physical_block_size = p.logical_block_size;
  }
  uint64_t tail = p.size_bytes % p.logical_block_size;
  if (tail != 0) {
    KEEL_LOG(WARNING) << "disk image " << name << ": the last " << tail << " bytes are not a whole "
                      << p.logical_block_size << "-byte block; the guest will not see them";
    p.size_bytes -= tail;
  }
  p.max_in_flight = options.max_in_flight;
  p.max_segments = options.max_segments;
  p.read_only = options.read_only;
  p.direct_io = direct;
  p.supports_discard = !options.read_only && ProbeDiscard(fd.get(), st);
  // Always possible when writable: the backend writes zeroes where fallocate is refused.
  p.supports_write_zeroes = !options.read_only;
  image.fd = std::move(fd);
  image.name = std::move(name);
  return image;
}

}  // namespace

absl::StatusOr<Image> OpenImage(const std::string& path, const OpenOptions& options) {
  KEEL_RETURN_IF_ERROR(CheckOptions(path, options));
  int flags = (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY;
  if (options.cache == CacheMode::kNone) flags |= O_DIRECT;
  int fd = open(path.c_str(), flags);
  if (fd < 0 && errno == EINVAL && (flags & O_DIRECT) != 0) {
    // open() says EINVAL both for O_DIRECT refused and for other oddities: tell them apart.
    ScopedFd plain(open(path.c_str(), flags & ~O_DIRECT));
    if (plain) return DirectIoRefused(path);
    errno = EINVAL;
  }
  if (fd < 0) return ErrnoError(errno, "open disk image ", path);
  return Probe(ScopedFd(fd), path, options);
}

absl::StatusOr<Image> AdoptImage(ScopedFd fd, std::string name, const OpenOptions& options) {
  KEEL_RETURN_IF_ERROR(CheckOptions(name, options));
  int flags = fcntl(fd.get(), F_GETFL);
  if (flags < 0) return ErrnoError(errno, "disk image ", name, " fd");
  const int mode = flags & O_ACCMODE;
  if (mode == O_WRONLY) {
    return absl::InvalidArgumentError(
        absl::StrCat("disk image ", name, " was opened write-only; open it O_RDWR"));
  }
  if (mode == O_RDONLY && !options.read_only) {
    return absl::InvalidArgumentError(
        absl::StrCat("disk image ", name,
                     " was opened read-only but is attached writable; open it O_RDWR "
                     "or attach it read-only"));
  }
  int wanted = flags & ~(O_APPEND | O_NONBLOCK | O_DIRECT);
  if (options.cache == CacheMode::kNone) wanted |= O_DIRECT;
  if (wanted != flags && fcntl(fd.get(), F_SETFL, wanted) != 0) {
    if (errno == EINVAL && (wanted & O_DIRECT) != 0) return DirectIoRefused(name);
    return ErrnoError(errno, "set flags of disk image ", name);
  }
  return Probe(std::move(fd), std::move(name), options);
}

}  // namespace keel::block
