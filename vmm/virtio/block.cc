#include "vmm/virtio/block.h"

#include <poll.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "base/log.h"

namespace keel::vmm::virtio {

namespace {

// Offsets in struct virtio_blk_config (§5.2.4).
constexpr size_t kCfgCapacity = 0;
constexpr size_t kCfgSizeMax = 8;
constexpr size_t kCfgSegMax = 12;
constexpr size_t kCfgBlkSize = 20;
constexpr size_t kCfgPhysicalBlockExp = 24;
constexpr size_t kCfgAlignmentOffset = 25;
constexpr size_t kCfgMinIoSize = 26;
constexpr size_t kCfgOptIoSize = 28;
constexpr size_t kCfgNumQueues = 34;
constexpr size_t kCfgMaxDiscardSectors = 36;
constexpr size_t kCfgMaxDiscardSeg = 40;
constexpr size_t kCfgDiscardSectorAlignment = 44;
constexpr size_t kCfgMaxWriteZeroesSectors = 48;
constexpr size_t kCfgMaxWriteZeroesSeg = 52;
constexpr size_t kCfgWriteZeroesMayUnmap = 56;

template <typename T>
void Put(uint8_t* config, size_t offset, T value) {
  memcpy(config + offset, &value, sizeof(T));  // x86-64 is little-endian, as virtio 1.x
}

// The status for a request the backend handed back or failed.
uint8_t ErrnoStatus(int64_t err) { return err == -EOPNOTSUPP ? kBlkStatusUnsupp : kBlkStatusIoErr; }

}  // namespace

absl::StatusOr<std::unique_ptr<BlockDevice>> BlockDevice::Create(
    std::unique_ptr<block::Backend> backend, BlockDeviceOptions options) {
  const block::Properties& p = backend->properties();
  if (options.queue_size == 0 || options.queue_size > kMaxQueueSize ||
      (options.queue_size & (options.queue_size - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("virtio-blk queue size %u is not a power of two in 1..%u",
                        options.queue_size, kMaxQueueSize));
  }
  if (p.max_in_flight < options.queue_size || p.max_segments == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "virtio-blk: the backend takes %u requests of %u segments at once; the queue needs %u",
        p.max_in_flight, p.max_segments, options.queue_size));
  }
  if (options.serial.size() > kBlkIdBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "virtio-blk serial '%s' is longer than %u bytes", options.serial, kBlkIdBytes));
  }
  return std::unique_ptr<BlockDevice>(new BlockDevice(std::move(backend), std::move(options)));
}

BlockDevice::BlockDevice(std::unique_ptr<block::Backend> backend, BlockDeviceOptions options)
    : backend_(std::move(backend)), options_(std::move(options)) {
  const block::Properties& p = backend_->properties();
  // A chain carries the header and status besides the data; keep it within the queue for
  // drivers without indirect descriptors.
  seg_max_ = std::min<uint32_t>(p.max_segments, std::max(options_.queue_size, uint16_t{3}) - 2);
  features_ = kBlkFeatureSizeMax | kBlkFeatureSegMax | kBlkFeatureBlkSize | kBlkFeatureFlush |
              kBlkFeatureTopology;
  if (p.read_only) features_ |= kBlkFeatureRo;
  if (p.supports_discard && !p.read_only) features_ |= kBlkFeatureDiscard;
  if (p.supports_write_zeroes && !p.read_only) features_ |= kBlkFeatureWriteZeroes;

  const uint32_t lbs = p.logical_block_size;
  const uint32_t pbs = std::max(p.physical_block_size, lbs);
  Put<uint64_t>(config_, kCfgCapacity, p.size_bytes / kBlkSectorSize);
  Put<uint32_t>(config_, kCfgSizeMax, options_.size_max);
  Put<uint32_t>(config_, kCfgSegMax, seg_max_);
  Put<uint32_t>(config_, kCfgBlkSize, lbs);
  Put<uint8_t>(config_, kCfgPhysicalBlockExp, static_cast<uint8_t>(std::countr_zero(pbs / lbs)));
  Put<uint8_t>(config_, kCfgAlignmentOffset, 0);
  Put<uint16_t>(config_, kCfgMinIoSize, static_cast<uint16_t>(pbs / lbs));
  Put<uint32_t>(config_, kCfgOptIoSize, p.optimal_io_size / lbs);
  Put<uint16_t>(config_, kCfgNumQueues, 1);
  // Ranges are in 512-byte sectors; the alignment keeps them whole logical blocks.
  const uint32_t align_sectors = lbs / kBlkSectorSize;
  auto round = [align_sectors](uint32_t sectors) {
    return sectors / align_sectors * align_sectors;
  };
  if (features_ & kBlkFeatureDiscard) {
    Put<uint32_t>(config_, kCfgMaxDiscardSectors, round(options_.max_discard_sectors));
    Put<uint32_t>(config_, kCfgMaxDiscardSeg, 1);
    Put<uint32_t>(config_, kCfgDiscardSectorAlignment, align_sectors);
  }
  if (features_ & kBlkFeatureWriteZeroes) {
    Put<uint32_t>(config_, kCfgMaxWriteZeroesSectors, round(options_.max_write_zeroes_sectors));
    Put<uint32_t>(config_, kCfgMaxWriteZeroesSeg, 1);
    Put<uint8_t>(config_, kCfgWriteZeroesMayUnmap, 1);
  }

  limits_.capacity_bytes = p.size_bytes / lbs * lbs;
  limits_.block_size = lbs;
  limits_.seg_max = seg_max_;
  limits_.size_max = options_.size_max;
  limits_.read_only = p.read_only;
  limits_.max_discard_sectors = round(options_.max_discard_sectors);
  limits_.max_write_zeroes_sectors = round(options_.max_write_zeroes_sectors);

  slots_.resize(options_.queue_size);
  segments_.resize(size_t{seg_max_} + 2);
  iov_.resize(size_t{seg_max_} + 2);
}

BlockDevice::~BlockDevice() {
  if (watching_) loop_->Remove(backend_->event_fd());
}

void BlockDevice::ReadConfig(uint64_t offset, std::span<uint8_t> data) {
  ReadConfigBytes(config_, offset, data);
}

absl::Status BlockDevice::Activate(ActivateContext context) {
  if (context.queues.size() != 1 || !context.queues[0].active()) {
    return absl::FailedPreconditionError("virtio-blk: the request queue is not ready");
  }
  // Request state is indexed by descriptor head: the transport caps the size at
  // max_queue_size(), checked again here because a head beyond the slots would be fatal.
  if (context.queues[0].size() > slots_.size()) {
    return absl::FailedPreconditionError("virtio-blk: queue larger than QueueNumMax");
  }
  memory_ = context.memory;
  queue_ = &context.queues[0];
  interrupt_ = context.interrupt;
  loop_ = context.loop;
  needs_reset_ = std::move(context.needs_reset);
  limits_.discard = (context.features & kBlkFeatureDiscard) != 0;
  limits_.write_zeroes = (context.features & kBlkFeatureWriteZeroes) != 0;
  // §5.2.5: without VIRTIO_BLK_F_FLUSH (and without CONFIG_WCE, not offered) the driver
  // assumes a write-through cache: every write must be durable when it completes.
  write_through_ = (context.features & kBlkFeatureFlush) == 0 && !backend_->properties().read_only;
  if (absl::Status s =
          loop_->Add(backend_->event_fd(), EPOLLIN, [this](uint32_t) { OnBackendReady(); });
      !s.ok()) {
    return s;
  }
  watching_ = true;
  broken_ = false;
  set_active();
  return absl::OkStatus();
}

void BlockDevice::ProcessQueue(size_t) {
  if (queue_ == nullptr || broken_) return;
  DrainQueue();
  MaybeInterrupt();
}

void BlockDevice::DrainQueue() {
  bool ring_broken = false;
  do {
    queue_->DisableNotifications();
    bool kick = false;
    while (!broken_) {
      std::optional<uint16_t> head = queue_->PopHead(&ring_broken);
      if (!head.has_value()) break;
      HandleChain(*head, &kick);
    }
    // One system call for the whole batch.
    if (kick) {
      backend_->Kick();
      ++stats_.kicks;
    }
  } while (!ring_broken && !broken_ && queue_->EnableNotifications());
  if (ring_broken) Break("the available ring is corrupt");
}

void BlockDevice::HandleChain(uint16_t head, bool* kick) {
  ++stats_.requests;
  Slot& slot = slots_[head];
  if (slot.busy) {
    // The driver made a chain available twice: it cannot be completed twice.
    Break(absl::StrFormat("descriptor %u made available while still in flight", head));
    return;
  }
  const Chain chain = queue_->ReadChain(head, segments_);
  const ParsedRequest req = ParseBlockRequest(chain, segments_, limits_, iov_);
  switch (req.error) {
    case RequestError::kNone:
      break;
    case RequestError::kBrokenChain:
      Complete(head, nullptr, 0, 0);
      Break(absl::StrFormat("descriptor chain at %u: %s", head, ChainErrorName(chain.error)));
      return;
    case RequestError::kNoStatus:
      KEEL_LOG(DEBUG) << "virtio-blk: request at descriptor " << head << ": "
                      << RequestErrorName(req.error);
      Complete(head, nullptr, 0, 0);
      return;
    default:
      KEEL_LOG(DEBUG) << "virtio-blk: request type " << req.type << " at descriptor " << head
                      << ": " << RequestErrorName(req.error);
      Complete(head, req.status, RequestErrorStatus(req.error), 1);
      return;
  }
  if (req.type == kBlkTypeGetId) {
    CompleteGetId(head, req);
    return;
  }
  slot.status = req.status;
  slot.data_in = req.data_in;
  slot.sync_after = write_through_ && (req.request.type == block::RequestType::kWrite ||
                                       req.request.type == block::RequestType::kDiscard ||
                                       req.request.type == block::RequestType::kWriteZeroes);
  slot.busy = true;
  ++in_flight_count_;
  if (int err = backend_->Submit(req.request); err < 0) {
    // Handed back (ownership contract): complete it here.
    slot.busy = false;
    --in_flight_count_;
    Complete(head, req.status, ErrnoStatus(err), 1);
    return;
  }
  ++stats_.submitted;
  uint64_t bytes = 0;
  for (const iovec& v : req.request.iov) bytes += v.iov_len;
  switch (req.request.type) {
    case block::RequestType::kRead:
      ++stats_.read_ops;
      stats_.read_bytes += bytes;
      break;
    case block::RequestType::kWrite:
      ++stats_.write_ops;
      stats_.write_bytes += bytes;
      break;
    case block::RequestType::kFlush:
      ++stats_.flush_ops;
      break;
    case block::RequestType::kDiscard:
    case block::RequestType::kWriteZeroes:
      ++stats_.write_ops;
      break;
  }
  *kick = true;
}

void BlockDevice::GetStats(DeviceStats& stats) const {
  DeviceStats::Block& out = stats.block.emplace();
  out.read_ops = stats_.read_ops;
  out.write_ops = stats_.write_ops;
  out.flush_ops = stats_.flush_ops;
  out.read_bytes = stats_.read_bytes;
  out.write_bytes = stats_.write_bytes;
  out.errors = stats_.errors;
}

void BlockDevice::CompleteGetId(uint16_t head, const ParsedRequest& req) {
  // §5.2.6: up to 20 bytes, NUL-padded when the id is shorter.
  uint8_t id[kBlkIdBytes] = {};
  memcpy(id, options_.serial.data(), std::min(options_.serial.size(), sizeof(id)));
  size_t done = 0;
  for (const iovec& v : req.request.iov) {
    memcpy(v.iov_base, id + done, v.iov_len);
    done += v.iov_len;
  }
  Complete(head, req.status, kBlkStatusOk, req.data_in + 1);
}

void BlockDevice::Complete(uint16_t head, uint8_t* status_byte, uint8_t status, uint32_t written) {
  if (status_byte != nullptr) *status_byte = status;
  if (status_byte == nullptr || status != kBlkStatusOk) ++stats_.errors;
  queue_->PushUsed(head, written);
  pending_interrupt_ = true;
}

void BlockDevice::OnBackendReady() {
  ReapCompletions();
  // A driver that is kept busy refills the ring as completions arrive; while this thread is
  // awake anyway, take those requests now instead of waiting for their notification (which
  // the driver may not even send: avail_event still points at the last pass).
  if (!broken_) DrainQueue();
  MaybeInterrupt();
}

void BlockDevice::ReapCompletions() {
  block::Completion done[64];
  size_t n;
  bool kick = false;
  do {
    n = backend_->Reap(done);
    for (size_t i = 0; i < n; ++i) {
      const uint64_t tag = done[i].tag;
      if (tag >= slots_.size() || !slots_[tag].busy) {
        KEEL_LOG(ERROR) << "virtio-blk: backend completed unknown request " << tag;
        continue;
      }
      Slot& slot = slots_[tag];
      const int64_t result = done[i].result;
      const uint16_t head = static_cast<uint16_t>(tag);
      if (slot.sync_after && result >= 0) {
        // Write-through (FLUSH not negotiated): the request completes once it is durable.
        slot.sync_after = false;
        block::Request flush;
        flush.type = block::RequestType::kFlush;
        flush.tag = tag;
        if (backend_->Submit(flush) == 0) {
          kick = true;
          continue;
        }
        slot.busy = false;
        --in_flight_count_;
        Complete(head, slot.status, kBlkStatusIoErr, 1);
        continue;
      }
      slot.busy = false;
      --in_flight_count_;
      if (result < 0) {
        Complete(head, slot.status, ErrnoStatus(result), 1);
      } else if (slot.data_in != 0 && result != slot.data_in) {
        Complete(head, slot.status, kBlkStatusIoErr, 1);  // a short read the backend gave up on
      } else {
        Complete(head, slot.status, kBlkStatusOk, slot.data_in + 1);
      }
    }
  } while (n == std::size(done));
  if (kick) {
    backend_->Kick();
    ++stats_.kicks;
  }
}

void BlockDevice::MaybeInterrupt() {
  if (!pending_interrupt_) return;
  pending_interrupt_ = false;
  if (queue_->ShouldInterrupt()) {
    interrupt_->SignalUsedBuffer();
    ++stats_.interrupts;
  }
}

void BlockDevice::Break(absl::string_view why) {
  if (broken_) return;
  broken_ = true;
  if (needs_reset_) needs_reset_(why);
}

void BlockDevice::OnReset() {
  // The driver may reuse the rings and buffers once its reset returns: let the backend finish
  // what the kernel holds (nothing is written to guest memory for it) before letting go.
  while (backend_->in_flight() > 0) {
    pollfd p = {backend_->event_fd(), POLLIN, 0};
    poll(&p, 1, 100);
    block::Completion dropped[64];
    (void)backend_->Reap(dropped);
  }
  if (watching_) loop_->Remove(backend_->event_fd());
  watching_ = false;
  std::fill(slots_.begin(), slots_.end(), Slot{});
  in_flight_count_ = 0;
  memory_ = nullptr;
  queue_ = nullptr;
  interrupt_ = nullptr;
  needs_reset_ = nullptr;
  broken_ = false;
  pending_interrupt_ = false;
}

}  // namespace keel::vmm::virtio
