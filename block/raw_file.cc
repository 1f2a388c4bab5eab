#include "block/raw_file.h"

#include <liburing.h>
#include <linux/falloc.h>
#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <optional>
#include <utility>
#include <vector>

#include "base/eventfd.h"
#include "base/log.h"
#include "base/mapping.h"
#include "base/status.h"
#include "block/bounce.h"

namespace keel::block {
namespace {

// user_data of operations that belong to no request (cancel, neutralized SQEs).
constexpr uint64_t kNoRequest = ~uint64_t{0};
constexpr uint32_t kNoSlot = ~uint32_t{0};
// A request retries a step that failed with EAGAIN / EINTR this many times before the error
// reaches the guest.
constexpr uint8_t kMaxRetries = 8;
// Bytes per write when zeroes must be written; the mapping is never touched, so it costs no
// memory (every page is the kernel's zero page).
constexpr size_t kZeroMappingBytes = 1 << 20;
// IORING_OP_READ / WRITE take a 32-bit length; longer single segments use READV / WRITEV.
constexpr size_t kMaxSingleSegment = 1 << 30;

// How a WRITE_ZEROES request is being served, in order of preference.
enum class ZeroMethod : uint8_t { kPunchHole, kZeroRange, kWrite };

// Per-request state, one per possible request in flight, indexed by the io_uring user_data.
struct Slot {
  uint64_t tag = 0;
  uint64_t offset = 0;     // file offset of the next step
  uint64_t remaining = 0;  // bytes not yet transferred (or zeroed)
  uint64_t total = 0;      // result on success (bytes for READ / WRITE)
  iovec* iov = nullptr;    // the unfinished part of this slot's private copy of the iovecs
  uint32_t iov_count = 0;
  uint32_t next = kNoSlot;  // link in the waiting or done list
  int32_t bounce = -1;      // bounce buffer held by the step in flight
  int32_t result = 0;       // for requests on the done list
  RequestType type = RequestType::kRead;
  ZeroMethod zero_method = ZeroMethod::kZeroRange;
  uint8_t retries = 0;
};

// A FIFO of slots linked through Slot::next. Allocation-free.
class SlotList {
 public:
  bool empty() const { return head_ == kNoSlot; }
  void Push(std::vector<Slot>& slots, uint32_t index) {
    slots[index].next = kNoSlot;
    if (empty()) {
      head_ = index;
    } else {
      slots[tail_].next = index;
    }
    tail_ = index;
  }
  uint32_t Pop(std::vector<Slot>& slots) {
    uint32_t index = head_;
    head_ = slots[index].next;
    return index;
  }

 private:
  uint32_t head_ = kNoSlot;
  uint32_t tail_ = kNoSlot;
};

class RawFile final : public Backend {
 public:
  RawFile(Image image, EventFd event_fd)
      : image_(std::move(image)), event_fd_(std::move(event_fd)) {}
  RawFile(const RawFile&) = delete;
  RawFile& operator=(const RawFile&) = delete;
  ~RawFile() override;

  absl::Status Init(const OpenOptions& options);

  const Properties& properties() const override { return image_.properties; }
  int event_fd() const override { return event_fd_.fd(); }
  int Submit(const Request& request) override;
  void Kick() override;
  size_t Reap(std::span<Completion> out) override;
  size_t in_flight() const override { return in_flight_; }

 private:
  // Returns 0 and the byte count of an acceptable request, or -errno.
  int Validate(const Request& request, uint64_t* bytes) const;
  int CheckRange(uint64_t offset, uint64_t bytes) const;
  ZeroMethod FirstZeroMethod(bool unmap) const;

  // Queues the next SQE of slot `index` (or parks it waiting for a bounce buffer). False if
  // no SQE could be queued; the caller then completes the request with an error.
  bool StartStep(uint32_t index);
  bool StartTransfer(uint32_t index);
  bool StartBounced(uint32_t index, uint32_t buffer);
  bool StartZeroes(uint32_t index);
  io_uring_sqe* GetSqe();
  void Queued(io_uring_sqe* sqe, uint32_t index);

  // Handles the CQE of slot `index`; returns its Completion once the request is finished.
  std::optional<Completion> OnCqe(uint32_t index, int result);
  std::optional<Completion> OnTransferDone(uint32_t index, int result);
  std::optional<Completion> OnZeroesDone(uint32_t index, int result);
  std::optional<Completion> Continue(uint32_t index);
  Completion Finish(uint32_t index, int64_t result);
  void FinishLater(uint32_t index, int result);
  void ReleaseBounce(uint32_t index);

  void SubmitRing();
  void Break(int error);
  void NeutralizeUnsubmitted();
  void DrainKernel();

  Image image_;
  EventFd event_fd_;
  io_uring ring_ = {};
  bool ring_ready_ = false;
  int io_fd_ = -1;        // the registered file index (0) or the plain fd
  uint8_t fd_flags_ = 0;  // IOSQE_FIXED_FILE when registered
  std::vector<Slot> slots_;
  std::vector<iovec> iov_storage_;  // max_segments per slot
  std::vector<uint32_t> free_;      // free slot indices
  SlotList waiting_;                // waiting for a bounce buffer
  SlotList done_;                   // finished outside a CQE (errors), to be reaped
  BouncePool bounce_;
  Mapping zeroes_;
  size_t in_flight_ = 0;   // accepted, not yet reaped
  size_t kernel_ops_ = 0;  // request SQEs queued or in the kernel, CQE not yet seen
  int broken_ = 0;         // -EIO once the ring refused a submission for good
  bool punch_refused_ = false;
  bool zero_range_refused_ = false;
};

absl::Status RawFile::Init(const OpenOptions& options) {
  const Properties& p = image_.properties;
  // One SQE per slot at most, plus the cancel at teardown. The CQ ring is twice as large.
  const unsigned entries = std::bit_ceil(p.max_in_flight + 1);
  io_uring_params params = {};
  params.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
  int r = io_uring_queue_init_params(entries, &ring_, &params);
  if (r == -EINVAL) {  // kernels before 5.19
    params = {};
    r = io_uring_queue_init_params(entries, &ring_, &params);
  }
  if (r < 0) return ErrnoError(-r, "create io_uring for disk image ", image_.name);
  ring_ready_ = true;
  r = io_uring_register_eventfd(&ring_, event_fd_.fd());
  if (r < 0) return ErrnoError(-r, "register eventfd for disk image ", image_.name);
  const int fd = image_.fd.get();
  if (io_uring_register_files(&ring_, &fd, 1) == 0) {
    io_fd_ = 0;
    fd_flags_ = IOSQE_FIXED_FILE;
  } else {
    io_fd_ = fd;  // still correct, a little slower
  }

  slots_.resize(p.max_in_flight);
  iov_storage_.resize(size_t{p.max_in_flight} * p.max_segments);
  free_.reserve(p.max_in_flight);
  for (uint32_t i = p.max_in_flight; i > 0; --i) free_.push_back(i - 1);
  if (p.direct_io) {
    auto pool = BouncePool::Create(options.bounce_buffers, options.bounce_buffer_bytes,
                                   p.logical_block_size);
    if (!pool.ok()) return Annotate(pool.status(), "bounce buffers for " + image_.name);
    bounce_ = *std::move(pool);
  }
  if (!p.read_only) {
    size_t bytes = std::max<size_t>(kZeroMappingBytes, p.logical_block_size);
    auto zeroes = Mapping::Anonymous(bytes, PROT_READ, MAP_NORESERVE);
    if (!zeroes.ok()) return Annotate(zeroes.status(), "zero buffer for " + image_.name);
    zeroes_ = *std::move(zeroes);
  }
  return absl::OkStatus();
}

RawFile::~RawFile() {
  if (!ring_ready_) return;
  DrainKernel();
  // The registered file table holds a reference to the image's open file description, and
  // the kernel frees a ring asynchronously after io_uring_queue_exit(): without this, the
  // image (and its OFD lock) would stay open for a while after the backend is gone, and a
  // VM restarted at once would find its own disk "in use by another VM".
  if (fd_flags_ != 0) (void)io_uring_unregister_files(&ring_);
  io_uring_queue_exit(&ring_);
}

// --- Submission -----------------------------------------------------------------------------

int RawFile::CheckRange(uint64_t offset, uint64_t bytes) const {
  const Properties& p = image_.properties;
  if (bytes == 0 || ((offset | bytes) & (p.logical_block_size - 1)) != 0) return -EINVAL;
  if (offset > p.size_bytes || bytes > p.size_bytes - offset) return -EINVAL;
  return 0;
}

int RawFile::Validate(const Request& request, uint64_t* bytes) const {
  const Properties& p = image_.properties;
  *bytes = 0;
  switch (request.type) {
    case RequestType::kFlush:
      return 0;
    case RequestType::kWrite:
      if (p.read_only) return -EROFS;
      [[fallthrough]];
    case RequestType::kRead:
      if (request.iov.empty() || request.iov.size() > p.max_segments) return -EINVAL;
      for (const iovec& v : request.iov) {
        if (__builtin_add_overflow(*bytes, v.iov_len, bytes)) return -EINVAL;
      }
      return CheckRange(request.offset, *bytes);
    case RequestType::kDiscard:
      if (p.read_only) return -EROFS;
      if (!p.supports_discard) return -EOPNOTSUPP;
      *bytes = request.length;
      return CheckRange(request.offset, request.length);
    case RequestType::kWriteZeroes:
      if (p.read_only) return -EROFS;
      *bytes = request.length;
      return CheckRange(request.offset, request.length);
  }
  return -EOPNOTSUPP;
}

ZeroMethod RawFile::FirstZeroMethod(bool unmap) const {
  if (unmap && !punch_refused_) return ZeroMethod::kPunchHole;
  if (!zero_range_refused_) return ZeroMethod::kZeroRange;
  return ZeroMethod::kWrite;
}

int RawFile::Submit(const Request& request) {
  uint64_t bytes = 0;
  if (int err = Validate(request, &bytes); err != 0) return err;
  if (broken_ != 0) return broken_;
  if (free_.empty()) return -EBUSY;
  const uint32_t index = free_.back();
  free_.pop_back();
  ++in_flight_;

  Slot& s = slots_[index];
  s = Slot{};
  s.tag = request.tag;
  s.type = request.type;
  s.offset = request.offset;
  s.remaining = bytes;
  if (request.type == RequestType::kRead || request.type == RequestType::kWrite) {
    s.total = bytes;
    s.iov = &iov_storage_[size_t{index} * image_.properties.max_segments];
    s.iov_count = static_cast<uint32_t>(request.iov.size());
    std::copy(request.iov.begin(), request.iov.end(), s.iov);
  }
  if (request.type == RequestType::kWriteZeroes) s.zero_method = FirstZeroMethod(request.unmap);
  if (!StartStep(index)) {
    Finish(index, 0);  // recycles the slot; the request is handed back instead
    return broken_ != 0 ? broken_ : -EBUSY;
  }
  return 0;
}

io_uring_sqe* RawFile::GetSqe() { return broken_ != 0 ? nullptr : io_uring_get_sqe(&ring_); }

// Call after io_uring_prep_*(), which resets the flags.
void RawFile::Queued(io_uring_sqe* sqe, uint32_t index) {
  sqe->flags |= fd_flags_;
  io_uring_sqe_set_data64(sqe, index);
  ++kernel_ops_;
}

bool RawFile::StartStep(uint32_t index) {
  Slot& s = slots_[index];
  if (s.type == RequestType::kRead || s.type == RequestType::kWrite) return StartTransfer(index);
  if (s.type == RequestType::kWriteZeroes) return StartZeroes(index);
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) return false;
  if (s.type == RequestType::kFlush) {
    io_uring_prep_fsync(sqe, io_fd_, IORING_FSYNC_DATASYNC);
  } else {  // kDiscard
    io_uring_prep_fallocate(sqe, io_fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            static_cast<off_t>(s.offset), static_cast<off_t>(s.remaining));
  }
  Queued(sqe, index);
  return true;
}

bool RawFile::StartTransfer(uint32_t index) {
  Slot& s = slots_[index];
  const Properties& p = image_.properties;
  const bool read = s.type == RequestType::kRead;
  if (p.direct_io &&
      !IovAligned(s.iov, s.iov_count, image_.dio_memory_alignment, p.logical_block_size)) {
    std::optional<uint32_t> buffer = bounce_.Acquire();
    if (!buffer) {
      waiting_.Push(slots_, index);  // started by ReleaseBounce()
      return true;
    }
    return StartBounced(index, *buffer);
  }
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) return false;
  const off_t offset = static_cast<off_t>(s.offset);
  if (s.iov_count == 1 && s.iov[0].iov_len <= kMaxSingleSegment) {
    const auto len = static_cast<unsigned>(s.iov[0].iov_len);
    if (read) {
      io_uring_prep_read(sqe, io_fd_, s.iov[0].iov_base, len, offset);
    } else {
      io_uring_prep_write(sqe, io_fd_, s.iov[0].iov_base, len, offset);
    }
  } else if (read) {
    io_uring_prep_readv(sqe, io_fd_, s.iov, s.iov_count, offset);
  } else {
    io_uring_prep_writev(sqe, io_fd_, s.iov, s.iov_count, offset);
  }
  Queued(sqe, index);
  return true;
}

bool RawFile::StartBounced(uint32_t index, uint32_t buffer) {
  Slot& s = slots_[index];
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) {
    bounce_.Release(buffer);
    return false;
  }
  const size_t len = std::min<uint64_t>(s.remaining, bounce_.buffer_bytes());
  uint8_t* data = bounce_.data(buffer);
  const off_t offset = static_cast<off_t>(s.offset);
  s.bounce = static_cast<int32_t>(buffer);
  if (s.type == RequestType::kRead) {
    io_uring_prep_read(sqe, io_fd_, data, static_cast<unsigned>(len), offset);
  } else {
    CopyFromIov(s.iov, s.iov_count, data, len);
    io_uring_prep_write(sqe, io_fd_, data, static_cast<unsigned>(len), offset);
  }
  Queued(sqe, index);
  return true;
}

bool RawFile::StartZeroes(uint32_t index) {
  Slot& s = slots_[index];
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) return false;
  const off_t offset = static_cast<off_t>(s.offset);
  switch (s.zero_method) {
    case ZeroMethod::kPunchHole:
      io_uring_prep_fallocate(sqe, io_fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset,
                              static_cast<off_t>(s.remaining));
      break;
    case ZeroMethod::kZeroRange:
      io_uring_prep_fallocate(sqe, io_fd_, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset,
                              static_cast<off_t>(s.remaining));
      break;
    case ZeroMethod::kWrite: {
      const size_t len = std::min<uint64_t>(s.remaining, zeroes_.size());
      io_uring_prep_write(sqe, io_fd_, zeroes_.data(), static_cast<unsigned>(len), offset);
      break;
    }
  }
  Queued(sqe, index);
  return true;
}

void RawFile::Kick() {
  if (broken_ == 0 && io_uring_sq_ready(&ring_) > 0) SubmitRing();
}

void RawFile::SubmitRing() {
  while (io_uring_sq_ready(&ring_) > 0) {
    int r = io_uring_submit(&ring_);
    if (r > 0 || r == -EINTR) continue;
    if (r == 0 || r == -EAGAIN || r == -EBUSY) {
      // The kernel is short of memory or CQ space: the SQEs stay queued. Come back through
      // the event loop (Reap() retries) rather than spin here.
      event_fd_.Signal();
      return;
    }
    Break(r);
    return;
  }
}

// io_uring_enter failed for a reason that will not go away. Every request the kernel has not
// taken is handed back with -EIO (through Reap()), and so is every later one, so the guest
// sees I/O errors instead of a hung disk.
void RawFile::Break(int error) {
  KEEL_LOG(ERROR) << "disk image " << image_.name << ": io_uring refused submission ("
                  << ErrnoDescription(-error) << "); failing its requests";
  broken_ = -EIO;
  NeutralizeUnsubmitted();
  while (!waiting_.empty()) FinishLater(waiting_.Pop(slots_), -EIO);
}

// Turns the SQEs the kernel has not consumed into no-ops that belong to no request, and
// completes their requests with -EIO. Whatever later consumes them touches no buffer.
void RawFile::NeutralizeUnsubmitted() {
  const unsigned head = io_uring_smp_load_acquire(ring_.sq.khead);
  for (unsigned i = head; i != ring_.sq.sqe_tail; ++i) {
    io_uring_sqe* sqe = &ring_.sq.sqes[ring_.sq.array[i & ring_.sq.ring_mask]];
    const uint64_t index = sqe->user_data;
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, kNoRequest);
    if (index >= slots_.size()) continue;
    --kernel_ops_;
    if (slots_[index].bounce >= 0) ReleaseBounce(static_cast<uint32_t>(index));
    FinishLater(static_cast<uint32_t>(index), -EIO);
  }
}

// --- Completion -----------------------------------------------------------------------------

size_t RawFile::Reap(std::span<Completion> out) {
  event_fd_.Consume();
  size_t n = 0;
  while (n < out.size() && !done_.empty()) {
    const uint32_t index = done_.Pop(slots_);
    out[n++] = Finish(index, slots_[index].result);
  }
  io_uring_cqe* cqe = nullptr;
  while (n < out.size() && io_uring_peek_cqe(&ring_, &cqe) == 0) {
    const uint64_t index = io_uring_cqe_get_data64(cqe);
    const int result = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    if (index >= slots_.size()) continue;
    --kernel_ops_;
    if (std::optional<Completion> c = OnCqe(static_cast<uint32_t>(index), result)) out[n++] = *c;
  }
  if (broken_ == 0 && io_uring_sq_ready(&ring_) > 0) SubmitRing();  // follow-up steps
  if (!done_.empty() || io_uring_cq_ready(&ring_) > 0) event_fd_.Signal();
  return n;
}

std::optional<Completion> RawFile::OnCqe(uint32_t index, int result) {
  Slot& s = slots_[index];
  if ((result == -EAGAIN || result == -EINTR) && s.retries < kMaxRetries) {
    ++s.retries;
    if (s.bounce >= 0) ReleaseBounce(index);
    return Continue(index);
  }
  switch (s.type) {
    case RequestType::kRead:
    case RequestType::kWrite:
      return OnTransferDone(index, result);
    case RequestType::kWriteZeroes:
      return OnZeroesDone(index, result);
    case RequestType::kFlush:
    case RequestType::kDiscard:
      break;
  }
  return Finish(index, std::min(result, 0));
}

std::optional<Completion> RawFile::OnTransferDone(uint32_t index, int result) {
  Slot& s = slots_[index];
  if (s.bounce >= 0) {
    if (result > 0 && s.type == RequestType::kRead) {
      CopyToIov(s.iov, s.iov_count, bounce_.data(static_cast<uint32_t>(s.bounce)),
                static_cast<size_t>(result));
    }
    ReleaseBounce(index);
  }
  if (result < 0) return Finish(index, result);
  // Zero bytes inside the image means it shrank under us: never loop on it.
  if (result == 0) return Finish(index, -EIO);
  AdvanceIov(&s.iov, &s.iov_count, static_cast<size_t>(result));
  s.offset += static_cast<uint64_t>(result);
  s.remaining -= static_cast<uint64_t>(result);
  if (s.remaining == 0) return Finish(index, static_cast<int64_t>(s.total));
  return Continue(index);
}

std::optional<Completion> RawFile::OnZeroesDone(uint32_t index, int result) {
  Slot& s = slots_[index];
  if (s.zero_method != ZeroMethod::kWrite) {
    if (result != -EOPNOTSUPP) return Finish(index, std::min(result, 0));
    // The filesystem cannot do it this way: remember, and fall back to the next method.
    if (s.zero_method == ZeroMethod::kPunchHole) {
      punch_refused_ = true;
    } else {
      zero_range_refused_ = true;
    }
    s.zero_method = FirstZeroMethod(false);
    return Continue(index);
  }
  if (result < 0) return Finish(index, result);
  if (result == 0) return Finish(index, -EIO);
  s.offset += static_cast<uint64_t>(result);
  s.remaining -= static_cast<uint64_t>(result);
  if (s.remaining == 0) return Finish(index, 0);
  return Continue(index);
}

std::optional<Completion> RawFile::Continue(uint32_t index) {
  if (StartStep(index)) return std::nullopt;
  return Finish(index, -EIO);
}

Completion RawFile::Finish(uint32_t index, int64_t result) {
  Completion c{slots_[index].tag, result};
  free_.push_back(index);
  --in_flight_;
  return c;
}

void RawFile::FinishLater(uint32_t index, int result) {
  slots_[index].result = result;
  done_.Push(slots_, index);
  event_fd_.Signal();
}

// Returns slot `index`'s bounce buffer and starts the oldest request waiting for one.
void RawFile::ReleaseBounce(uint32_t index) {
  Slot& s = slots_[index];
  bounce_.Release(static_cast<uint32_t>(s.bounce));
  s.bounce = -1;
  while (!waiting_.empty()) {
    std::optional<uint32_t> buffer = bounce_.Acquire();
    if (!buffer) return;
    const uint32_t waiter = waiting_.Pop(slots_);
    if (!StartBounced(waiter, *buffer)) FinishLater(waiter, -EIO);
  }
}

// --- Teardown -------------------------------------------------------------------------------

// Waits until the kernel holds no request of ours, so nothing it does later can write into
// guest memory or a bounce buffer that is about to go away. Requests queued but never kicked
// are dropped; the rest are cancelled where the kernel can (queued in io-wq) and waited for
// where it cannot (already at the device).
void RawFile::DrainKernel() {
  const bool ring_usable = broken_ == 0;
  broken_ = -ECANCELED;  // nothing starts from here on, not even requests waiting for a bounce
  if (ring_usable) {
    NeutralizeUnsubmitted();
    if (kernel_ops_ > 0) {
      if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) {
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
        io_uring_sqe_set_data64(sqe, kNoRequest);
      }
    }
    if (io_uring_sq_ready(&ring_) > 0) (void)io_uring_submit(&ring_);
  }
  while (kernel_ops_ > 0) {
    io_uring_cqe* cqe = nullptr;
    int r = io_uring_wait_cqe(&ring_, &cqe);
    if (r == -EINTR) continue;
    if (r < 0) {
      KEEL_LOG(ERROR) << "disk image " << image_.name
                      << ": waiting for in-flight I/O failed: " << ErrnoDescription(-r);
      return;
    }
    if (io_uring_cqe_get_data64(cqe) < slots_.size()) --kernel_ops_;
    io_uring_cqe_seen(&ring_, cqe);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateRawFile(Image image, const OpenOptions& options) {
  KEEL_ASSIGN_OR_RETURN(EventFd event_fd, EventFd::Create());
  auto backend = std::make_unique<RawFile>(std::move(image), std::move(event_fd));
  KEEL_RETURN_IF_ERROR(backend->Init(options));
  return std::unique_ptr<Backend>(std::move(backend));
}

absl::StatusOr<std::unique_ptr<Backend>> OpenRawFile(const std::string& path,
                                                     const OpenOptions& options) {
  KEEL_ASSIGN_OR_RETURN(Image image, OpenImage(path, options));
  return CreateRawFile(std::move(image), options);
}

absl::StatusOr<std::unique_ptr<Backend>> AdoptRawFile(ScopedFd fd, std::string name,
                                                      const OpenOptions& options) {
  KEEL_ASSIGN_OR_RETURN(Image image, AdoptImage(std::move(fd), std::move(name), options));
  return CreateRawFile(std::move(image), options);
}

}  // namespace keel::block
