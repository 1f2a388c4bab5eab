#include "vmm/virtio/net.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/log.h"
#include "base/status.h"
#include "net/tap.h"

namespace keel::vmm::virtio {

namespace {

using net::FeatureBit;
using net::VirtioNetHdr;

constexpr uint16_t kNetStatusLinkUp = 1;
// A transmit pass returns to the event loop after this many chains (and schedules itself
// again), so a guest that keeps its queue full cannot starve receive or the other devices.
constexpr int kTxBudget = 1024;
// Frames sent or received between used-index stores (see ProcessTx).
constexpr int kPublishBurst = 32;
constexpr int kRxBudget = 1024;
// readv/writev take at most this many iovecs (IOV_MAX).
constexpr size_t kMaxIov = 1024;

bool Has(uint64_t features, unsigned bit) { return (features & FeatureBit(bit)) != 0; }

// Copies `len` bytes between `buf` and offset `offset` of the buffers `segs` (into the
// buffers if kToSegments); false if the buffers end first.
template <bool kToSegments>
bool CopyAt(std::span<const Segment> segs, uint64_t offset, uint8_t* buf, size_t len) {
  for (const Segment& s : segs) {
    if (len == 0) break;
    if (offset >= s.len) {
      offset -= s.len;
      continue;
    }
    const size_t n = std::min<uint64_t>(len, s.len - offset);
    if constexpr (kToSegments) {
      memcpy(s.host + offset, buf, n);
    } else {
      memcpy(buf, s.host + offset, n);
    }
    buf += n;
    len -= n;
    offset = 0;
  }
  return len == 0;
}

// Whether the header's offload requests are ones the negotiated features allow (§5.1.6.2).
bool OffloadsAllowed(const VirtioNetHdr& h, uint64_t features, uint64_t frame_len) {
  // The driver sets only NEEDS_CSUM on transmit (§5.1.6.2.1).
  if (h.flags & ~VirtioNetHdr::kFlagNeedsCsum) return false;
  if (h.flags & VirtioNetHdr::kFlagNeedsCsum) {
    if (!Has(features, net::kVirtioNetFCsum)) return false;
    if (uint64_t{h.csum_start} + h.csum_offset + 2 > frame_len) return false;
  }
  switch (h.gso_type) {
    case VirtioNetHdr::kGsoNone:
      return true;
    case VirtioNetHdr::kGsoTcpV4:
      if (!Has(features, net::kVirtioNetFHostTso4)) return false;
      break;
    case VirtioNetHdr::kGsoTcpV6:
      if (!Has(features, net::kVirtioNetFHostTso6)) return false;
      break;
    default:  // UDP, USO, ECN: never offered
      return false;
  }
  return h.gso_size != 0 && (h.flags & VirtioNetHdr::kFlagNeedsCsum);
}

}  // namespace

const char* TxDropName(TxDrop drop) {
  switch (drop) {
    case TxDrop::kNone:
      return "none";
    case TxDrop::kChain:
      return "unusable descriptor chain";
    case TxDrop::kWritable:
      return "device-writable buffer in a transmit chain";
    case TxDrop::kShortHeader:
      return "chain shorter than the virtio-net header";
    case TxDrop::kShortFrame:
      return "frame shorter than an Ethernet header";
    case TxDrop::kOversize:
      return "frame larger than 64 KiB";
    case TxDrop::kBadOffload:
      return "header asks for an offload that was not negotiated";
  }
  return "?";
}

void ParseTxChain(const Chain& chain, std::span<const Segment> segments, uint64_t features,
                  uint32_t hdr_size, std::span<iovec> iov, TxFrame* out) {
  *out = TxFrame{};
  auto drop = [&](TxDrop why) {
    out->drop = why;
    out->iov_count = 0;
    out->frame_len = 0;
  };
  if (chain.error != ChainError::kNone || segments.size() > chain.count) {
    return drop(TxDrop::kChain);
  }
  segments = segments.first(chain.count);
  if (chain.writable != 0) return drop(TxDrop::kWritable);
  hdr_size = std::min<uint32_t>(hdr_size, sizeof(VirtioNetHdr));
  uint64_t total = 0;
  for (const Segment& s : segments) {
    if (s.writable) return drop(TxDrop::kWritable);
    total += s.len;
  }
  if (total < hdr_size) return drop(TxDrop::kShortHeader);
  const uint64_t frame_len = total - hdr_size;
  if (frame_len < kNetMinFrame) return drop(TxDrop::kShortFrame);
  if (frame_len > kNetMaxFrame) return drop(TxDrop::kOversize);
  if (iov.size() < 1 + segments.size() || segments.size() > kMaxIov - 1) {
    return drop(TxDrop::kChain);
  }
  // One copy of the header, checked and then written from the copy: the guest cannot change
  // what the tap sees after the check.
  if (!CopyAt<false>(segments, 0, reinterpret_cast<uint8_t*>(&out->header), hdr_size)) {
    return drop(TxDrop::kShortHeader);
  }
  if (!OffloadsAllowed(out->header, features, frame_len)) return drop(TxDrop::kBadOffload);
  // The tap reads num_buffers as part of the header but ignores it on transmit.
  size_t n = 0;
  iov[n++] = iovec{&out->header, hdr_size};
  uint64_t skip = hdr_size;
  for (const Segment& s : segments) {
    if (skip >= s.len) {
      skip -= s.len;
      continue;
    }
    iov[n++] = iovec{s.host + skip, static_cast<size_t>(s.len - skip)};
    skip = 0;
  }
  out->iov_count = n;
  out->frame_len = frame_len;
}

absl::StatusOr<std::unique_ptr<NetDevice>> NetDevice::Create(ScopedFd tap,
                                                             const NetDeviceOptions& options) {
  if (!tap.valid()) return absl::InvalidArgumentError("no tap fd");
  absl::StatusOr<net::TapState> queried = net::QueryTap(tap.get());
  if (!queried.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("not a tap device: ", queried.status().message()));
  }
  const net::TapState& state = *queried;
  if (!state.tap || !state.vnet_hdr) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is not a tap opened with IFF_VNET_HDR (virtio-net passes the virtio-net header "
        "through)",
        state.name));
  }
  if (options.queue_size == 0 || options.queue_size > kMaxQueueSize ||
      (options.queue_size & (options.queue_size - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("virtio-net queue size %u is not a power of two up to %u",
                        options.queue_size, kMaxQueueSize));
  }
  if (options.mtu != 0 && (options.mtu < 68 || options.mtu > 65535)) {
    return absl::InvalidArgumentError(absl::StrFormat("mtu %u is not in 68..65535", options.mtu));
  }
  KEEL_RETURN_IF_ERROR(options.mac.CheckValidUnicast());
  const int flags = fcntl(tap.get(), F_GETFL);
  if (flags < 0 || fcntl(tap.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
    return ErrnoError(errno, "make tap ", state.name, " non-blocking");
  }
  return std::unique_ptr<NetDevice>(new NetDevice(std::move(tap), options));
}

NetDevice::NetDevice(ScopedFd tap, const NetDeviceOptions& options)
    : tap_(std::move(tap)), options_(options) {
  // struct virtio_net_config (§5.1.4): mac, status, max_virtqueue_pairs, mtu.
  memcpy(config_.data(), options_.mac.bytes.data(), 6);
  const uint16_t status = kNetStatusLinkUp, pairs = 1;
  const uint16_t mtu = static_cast<uint16_t>(options_.mtu);
  memcpy(config_.data() + 6, &status, 2);
  memcpy(config_.data() + 8, &pairs, 2);
  memcpy(config_.data() + 10, &mtu, 2);
  const size_t qs = options_.queue_size;
  tx_segs_.resize(kNetMaxSegments);
  tx_iov_.resize(kNetMaxSegments + 1);
  rx_segs_.resize(qs * kNetMaxSegments);
  rx_cache_.resize(qs);
  rx_iov_.resize(kMaxIov);
}

NetDevice::~NetDevice() {
  if (registered_) loop_->Remove(tap_.get());
}

uint64_t NetDevice::device_features() const {
  uint64_t f = FeatureBit(net::kVirtioNetFMac) | FeatureBit(net::kVirtioNetFStatus) |
               FeatureBit(net::kVirtioNetFCsum) | FeatureBit(net::kVirtioNetFGuestCsum) |
               FeatureBit(net::kVirtioNetFGuestTso4) | FeatureBit(net::kVirtioNetFGuestTso6) |
               FeatureBit(net::kVirtioNetFHostTso4) | FeatureBit(net::kVirtioNetFHostTso6) |
               FeatureBit(net::kVirtioNetFMrgRxbuf);
  if (options_.mtu != 0) f |= FeatureBit(net::kVirtioNetFMtu);
  return f;
}

void NetDevice::ReadConfig(uint64_t offset, std::span<uint8_t> data) {
  ReadConfigBytes(config_, offset, data);
}

absl::Status NetDevice::Activate(ActivateContext context) {
  if (context.queues.size() < 2 || !context.queues[kNetRxQueue].active() ||
      !context.queues[kNetTxQueue].active()) {
    return absl::FailedPreconditionError("virtio-net needs both its receive and transmit queue");
  }
  const uint64_t f = context.features;
  // Segmentation offloads depend on the checksum ones (§5.1.3.1).
  if (((Has(f, net::kVirtioNetFHostTso4) || Has(f, net::kVirtioNetFHostTso6)) &&
       !Has(f, net::kVirtioNetFCsum)) ||
      ((Has(f, net::kVirtioNetFGuestTso4) || Has(f, net::kVirtioNetFGuestTso6)) &&
       !Has(f, net::kVirtioNetFGuestCsum))) {
    return absl::InvalidArgumentError(
        absl::StrFormat("driver features %#x: a TSO feature without its checksum feature", f));
  }
  hdr_size_ = net::VnetHdrSizeForFeatures(f);
  KEEL_RETURN_IF_ERROR(net::SetTapVnetHdrSize(tap_.get(), hdr_size_));
  KEEL_RETURN_IF_ERROR(net::SetTapOffloads(tap_.get(), net::TapOffloadsForGuestFeatures(f)));
  features_ = f;
  memory_ = context.memory;
  rx_ = &context.queues[kNetRxQueue];
  tx_ = &context.queues[kNetTxQueue];
  interrupt_ = context.interrupt;
  loop_ = context.loop;
  needs_reset_ = std::move(context.needs_reset);
  mrg_rxbuf_ = Has(f, net::kVirtioNetFMrgRxbuf);
  const bool guest_gso = Has(f, net::kVirtioNetFGuestTso4) || Has(f, net::kVirtioNetFGuestTso6);
  const uint64_t mtu = std::max<uint64_t>(1500, options_.mtu);
  rx_need_ = hdr_size_ + (guest_gso ? kNetMaxFrame : mtu + 14 + 4);
  broken_ = false;
  rx_stopped_ = false;
  tx_pending_.reset();
  rx_cache_start_ = rx_cache_count_ = 0;
  rx_cache_bytes_ = 0;
  watched_ = 0;
  KEEL_RETURN_IF_ERROR(loop_->Add(tap_.get(), 0, [this](uint32_t events) { OnTapEvent(events); }));
  registered_ = true;
  set_active();
  return absl::OkStatus();
}

void NetDevice::OnReset() {
  if (registered_) loop_->Remove(tap_.get());
  registered_ = false;
  watched_ = 0;
  ++generation_;
  memory_ = nullptr;
  rx_ = tx_ = nullptr;
  interrupt_ = nullptr;
  needs_reset_ = nullptr;
  tx_pending_.reset();
  rx_cache_start_ = rx_cache_count_ = 0;
  rx_cache_bytes_ = 0;
  broken_ = false;
  rx_stopped_ = false;
}

void NetDevice::ProcessQueue(size_t index) {
  if (!active() || broken_) return;
  if (index == kNetRxQueue) ProcessRx();
  if (index == kNetTxQueue) ProcessTx();
}

void NetDevice::OnTapEvent(uint32_t events) {
  if (!active() || broken_) return;
  if (events & (EPOLLERR | EPOLLHUP)) {
    // The tap's interface is gone. epoll reports this whatever the interest set, so stop
    // watching the fd altogether; transmits now fail and are counted as drops.
    KEEL_LOG(WARNING) << "virtio-net: the tap went away; the NIC is down until reset";
    loop_->Remove(tap_.get());
    registered_ = false;
    watched_ = 0;
    rx_stopped_ = true;
    if (tx_pending_.has_value()) {
      tx_->PushUsed(*tx_pending_, 0);
      tx_pending_.reset();
      ++counters_.tx_dropped;
      Interrupt(*tx_);
    }
    return;
  }
  if ((events & EPOLLOUT) && tx_pending_.has_value()) ProcessTx();
  if (events & EPOLLIN) ProcessRx();
}

void NetDevice::UpdateWatch(uint32_t events) {
  if (events == watched_ || !registered_) return;
  if (absl::Status s = loop_->Modify(tap_.get(), events); !s.ok()) {
    Break(absl::StrCat("watching the tap: ", s.message()));
    return;
  }
  watched_ = events;
}

void NetDevice::Break(absl::string_view why) {
  if (broken_) return;
  broken_ = true;
  if (registered_ && watched_ != 0) {
    (void)loop_->Modify(tap_.get(), 0);
    watched_ = 0;
  }
  if (needs_reset_) needs_reset_(why);
}

void NetDevice::Interrupt(Queue& q) {
  if (q.ShouldInterrupt()) {
    interrupt_->SignalUsedBuffer();
    ++counters_.interrupts;
  }
}

// --- Transmit ---

bool NetDevice::SendOne(uint16_t head) {
  const Chain chain = tx_->ReadChain(head, tx_segs_);
  TxFrame frame;
  ParseTxChain(chain, std::span<const Segment>(tx_segs_.data(), chain.count), features_, hdr_size_,
               tx_iov_, &frame);
  if (frame.drop != TxDrop::kNone) {
    ++counters_.tx_dropped;
    if (!warned_tx_error_) {
      warned_tx_error_ = true;
      KEEL_LOG(WARNING) << "virtio-net: dropping a transmit chain: " << TxDropName(frame.drop)
                        << (frame.drop == TxDrop::kChain
                                ? absl::StrCat(" (", ChainErrorName(chain.error), ")")
                                : std::string())
                        << " (further drops are only counted)";
    }
    tx_->PushUsed(head, 0);
    return true;
  }
  const ssize_t n = writev(tap_.get(), tx_iov_.data(), static_cast<int>(frame.iov_count));
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
  if (n < 0) {
    ++counters_.tx_dropped;
    if (!warned_tx_error_) {
      warned_tx_error_ = true;
      KEEL_LOG(WARNING) << "virtio-net: tap write failed: " << strerror(errno)
                        << " (further drops are only counted)";
    }
  } else {
    ++counters_.tx_packets;
    counters_.tx_bytes += frame.frame_len;
  }
  tx_->AddUsed(head, 0);  // ProcessTx publishes in bursts
  return true;
}

void NetDevice::ProcessTx() {
  if (tx_pending_.has_value()) {
    if (!SendOne(*tx_pending_)) return;  // still no room: EPOLLOUT stays armed
    tx_pending_.reset();
    UpdateWatch(watched_ & ~EPOLLOUT);
    if (broken_) return;
  }
  tx_->DisableNotifications();
  bool broken = false;
  int budget = kTxBudget;
  bool more = false;
  do {
    while (std::optional<uint16_t> head = tx_->PopHead(&broken)) {
      if (!SendOne(*head)) {
        tx_pending_ = *head;
        UpdateWatch(watched_ | EPOLLOUT);
        Interrupt(*tx_);
        return;
      }
      if (--budget == 0) break;
      // A driver that polls the used index pulls its cache line over on every store: publish
      // sent frames in bursts, early enough that it can refill the ring meanwhile.
      if (budget % kPublishBurst == 0) tx_->PublishUsed();
    }
    if (broken || budget == 0) break;
    more = tx_->EnableNotifications();
  } while (more);
  if (broken) {
    tx_->PublishUsed();
    Break("transmit queue: the available ring is corrupt");
    return;
  }
  Interrupt(*tx_);
  if (budget == 0) {
    // Come back after the loop has served everything else.
    loop_->Post([this, gen = generation_] {
      if (gen == generation_ && active() && !broken_) ProcessTx();
    });
  }
}

// --- Receive ---

bool NetDevice::FillRxCache(uint64_t need, bool* broken) {
  const size_t capacity = rx_->size();
  auto enough = [&] {
    if (rx_cache_count_ == capacity) return true;
    return mrg_rxbuf_ ? rx_cache_bytes_ >= need : rx_cache_count_ > 0;
  };
  while (!enough()) {
    std::optional<uint16_t> head = rx_->PopHead(broken);
    if (!head.has_value()) return false;
    const size_t slot = (rx_cache_start_ + rx_cache_count_) % capacity;
    std::span<Segment> segs(rx_segs_.data() + slot * kNetMaxSegments, kNetMaxSegments);
    const Chain chain = rx_->ReadChain(*head, segs);
    // Every receive buffer holds at least a header (§5.1.6.3.1) and is device-writable.
    if (chain.error != ChainError::kNone || chain.readable != 0 || chain.writable < hdr_size_) {
      ++counters_.rx_bad_chains;
      if (!warned_rx_error_) {
        warned_rx_error_ = true;
        KEEL_LOG(WARNING) << "virtio-net: returning an unusable receive chain: "
                          << (chain.error != ChainError::kNone ? ChainErrorName(chain.error)
                              : chain.readable != 0            ? "device-readable buffer"
                                                    : "smaller than the virtio-net header")
                          << " (further ones are only counted)";
      }
      rx_->PushUsed(*head, 0);
      continue;
    }
    RxChain& c = rx_cache_[slot];
    c.head = *head;
    c.writable = chain.writable;
    c.first_seg = static_cast<uint32_t>(slot * kNetMaxSegments);
    c.seg_count = static_cast<uint32_t>(chain.count);
    ++rx_cache_count_;
    rx_cache_bytes_ += chain.writable;
  }
  return true;
}

bool NetDevice::ReceiveOne() {
  const size_t capacity = rx_->size();
  // Lay the cached chains out for one readv: only the first without MRG_RXBUF, else as many
  // as a full-size frame could need.
  size_t niov = 0;
  size_t chains = 0;
  uint64_t room = 0;
  while (chains < rx_cache_count_) {
    const RxChain& c = rx_cache_[(rx_cache_start_ + chains) % capacity];
    if (niov + c.seg_count > rx_iov_.size()) break;
    for (uint32_t i = 0; i < c.seg_count; ++i) {
      const Segment& s = rx_segs_[c.first_seg + i];
      rx_iov_[niov++] = iovec{s.host, s.len};
    }
    room += c.writable;
    ++chains;
    if (!mrg_rxbuf_ || room >= rx_need_) break;
  }
  const ssize_t n = readv(tap_.get(), rx_iov_.data(), static_cast<int>(niov));
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return false;
    if (errno == EFAULT || errno == EINVAL) {
      // The frame did not fit the buffers the guest posted; the tap has dropped it and the
      // buffers are still ours for the next one.
      ++counters_.rx_truncated;
      return true;
    }
    // The tap is unusable (e.g. its interface was deleted): stop reading instead of spinning.
    if (!warned_rx_error_) {
      warned_rx_error_ = true;
      KEEL_LOG(WARNING) << "virtio-net: tap read failed: " << strerror(errno)
                        << "; receive stops until the driver resets the device";
    }
    UpdateWatch(watched_ & ~EPOLLIN);
    rx_stopped_ = true;
    return false;
  }
  const uint64_t got = static_cast<uint64_t>(n);
  if (got >= room && room < rx_need_) {
    // The tap cuts a frame that does not fit to the buffers' size and says nothing: a full
    // read into less than a full-size frame's worth of buffers may have been cut. Drop it and
    // keep the buffers for the next frame.
    ++counters_.rx_truncated;
    return true;
  }
  // How many chains the frame filled, in order.
  uint16_t used = 0;
  {
    uint64_t left = got;
    do {
      const RxChain& c = rx_cache_[(rx_cache_start_ + used) % capacity];
      left -= std::min(left, c.writable);
      ++used;
    } while (left > 0 && used < chains);
  }
  // num_buffers (§5.1.6.4): the tap leaves it alone; it must be written before the used
  // ring publishes the first buffer.
  const RxChain& first = rx_cache_[rx_cache_start_];
  if (hdr_size_ >= sizeof(VirtioNetHdr) && got >= hdr_size_) {
    CopyAt<true>(std::span<const Segment>(rx_segs_.data() + first.first_seg, first.seg_count),
                 offsetof(VirtioNetHdr, num_buffers), reinterpret_cast<uint8_t*>(&used),
                 sizeof(used));
  }
  uint64_t left = got;
  for (uint16_t i = 0; i < used; ++i) {
    const RxChain& c = rx_cache_[rx_cache_start_];
    const uint64_t len = std::min(left, c.writable);
    rx_->AddUsed(c.head, static_cast<uint32_t>(len));  // ProcessRx publishes in bursts
    left -= len;
    rx_cache_bytes_ -= c.writable;
    rx_cache_start_ = (rx_cache_start_ + 1) % capacity;
    --rx_cache_count_;
  }
  if (got < hdr_size_ + kNetMinFrame) {
    ++counters_.rx_dropped;  // delivered anyway; the driver drops runts
  } else {
    ++counters_.rx_packets;
    counters_.rx_bytes += got - hdr_size_;
  }
  return true;
}

void NetDevice::ProcessRx() {
  if (rx_stopped_) return;
  rx_->DisableNotifications();
  bool broken = false;
  int budget = kRxBudget;
  while (budget-- > 0) {
    if (!FillRxCache(rx_need_, &broken)) {
      if (broken) break;
      // Out of buffers: ask for a kick, and look once more in case they came meanwhile.
      if (rx_->EnableNotifications()) {
        rx_->DisableNotifications();
        continue;
      }
      ++counters_.rx_stalls;
      UpdateWatch(watched_ & ~EPOLLIN);
      break;
    }
    if (!ReceiveOne()) {
      // The tap is empty (or failed): wait for it with the buffers in hand.
      if (!rx_stopped_) UpdateWatch(watched_ | EPOLLIN);
      break;
    }
    if (budget % kPublishBurst == 0) rx_->PublishUsed();  // whole frames only, as in tx
  }
  if (broken) {
    rx_->PublishUsed();
    Break("receive queue: the available ring is corrupt");
    return;
  }
  // Out of budget with buffers and frames left: EPOLLIN stays armed (level-triggered).
  if (budget < 0 && !rx_stopped_) UpdateWatch(watched_ | EPOLLIN);
  Interrupt(*rx_);
}

void NetDevice::GetStats(DeviceStats& stats) const {
  DeviceStats::Net& out = stats.net.emplace();
  out.rx_packets = counters_.rx_packets;
  out.tx_packets = counters_.tx_packets;
  out.rx_bytes = counters_.rx_bytes;
  out.tx_bytes = counters_.tx_bytes;
  out.drops = counters_.tx_dropped + counters_.rx_dropped + counters_.rx_truncated;
}

}  // namespace keel::vmm::virtio
