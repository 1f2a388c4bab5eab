// NetDevice: virtio-net (virtio 1.2 §5.1) over a tap fd: one receive queue (0) and one
// transmit queue (1).
//
// Frames move between guest memory and the tap with one readv/writev each, straight from and
// into the guest's buffers; the virtio-net header (12 bytes, VERSION_1 layout) is passed
// through, so on activation the tap's vnet header size and TUNSETOFFLOAD are set from the
// negotiated features (GUEST_CSUM/TSO4/TSO6 become TUN_F_CSUM/TSO4/TSO6).
//
// Transmit: a kick (or a pass the device schedules itself) takes every available chain,
// checks it with ParseTxChain(), writes it, and returns it; the driver is interrupted once per
// pass, if it asked to be. A bad chain is dropped and counted (tx_dropped); a corrupt ring
// puts the device in NEEDS_RESET. If the tap refuses a write for lack of room (EAGAIN) the
// chain stays pending and the device waits for EPOLLOUT.
//
// Receive: the tap fd is watched for EPOLLIN only while the guest has posted buffers; when
// the ring runs dry the device stops watching it and re-arms on the driver's next kick, so a
// slow guest pushes back into the tap's queue instead of losing frames here. Each frame is
// read with one readv into the guest's buffers: one chain without MRG_RXBUF, as many chains
// as a full-size frame could need with it (the chains a frame leaves unused are kept for the
// next one), and num_buffers is written into the header. Nothing is allocated per frame.
// A frame larger than the buffers in hand (a driver posting buffers smaller than §5.1.6.3.1
// asks for) is dropped and counted (rx_truncated); the buffers are used for the next frame.
// If the tap's interface disappears, the device stops watching it and drops transmits.
//
// Threading: the I/O thread runs everything but ReadConfig (vCPU threads, constant data).
#pragma once

#include <sys/uio.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "base/fd.h"
#include "net/mac_address.h"
#include "net/vnet_hdr.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/device_stats.h"

namespace keel::vmm::virtio {

inline constexpr size_t kNetRxQueue = 0;
inline constexpr size_t kNetTxQueue = 1;

// The largest Ethernet frame (without the virtio-net header) either direction carries: a
// 64 KiB TSO super-frame plus Ethernet and VLAN headers.
inline constexpr uint32_t kNetMaxFrame = 65535 + 14 + 4;
// The shortest frame the tap accepts (an Ethernet header).
inline constexpr uint32_t kNetMinFrame = 14;
// Buffers one frame may span, per direction (iovecs handed to readv/writev).
inline constexpr size_t kNetMaxSegments = 64;

// Why a transmit chain was dropped.
enum class TxDrop : uint8_t {
  kNone,
  kChain,        // the chain itself is unusable (Chain::error)
  kWritable,     // a device-writable buffer in a transmit chain
  kShortHeader,  // fewer bytes than a virtio-net header
  kShortFrame,   // less than an Ethernet header after the virtio-net header
  kOversize,     // a frame larger than kNetMaxFrame
  kBadOffload,   // header asks for an offload that was not negotiated, or is malformed
};
const char* TxDropName(TxDrop drop);

// A transmit chain checked and laid out for writev: iov[0] is `header` (a copy taken once,
// so the guest cannot change it after the check), the rest point into guest memory.
struct TxFrame {
  TxDrop drop = TxDrop::kNone;
  net::VirtioNetHdr header{};
  size_t iov_count = 0;
  uint64_t frame_len = 0;  // bytes after the header
};

// Checks one transmit chain and lays it out in `iov` for writing to a tap that uses
// `hdr_size`-byte headers (10 or 12): iov[0] points at out->header, the rest at the frame's
// bytes in the segments. `iov` needs room for 1 + segments.size() entries; with less, the
// frame is dropped as kChain. `features`: the negotiated virtio-net features, which decide the
// offloads a header may ask for. Pure: reads only the segments' bytes; out->header is a copy,
// so the guest cannot change the header between this check and the write.
void ParseTxChain(const Chain& chain, std::span<const Segment> segments, uint64_t features,
                  uint32_t hdr_size, std::span<iovec> iov, TxFrame* out);

struct NetDeviceOptions {
  net::MacAddress mac{};
  uint32_t mtu = 0;  // > 0: offered as VIRTIO_NET_F_MTU
  uint16_t queue_size = 256;
};

struct NetCounters {
  uint64_t tx_packets = 0;
  uint64_t tx_bytes = 0;
  uint64_t tx_dropped = 0;  // bad chains, tap write errors
  uint64_t rx_packets = 0;
  uint64_t rx_bytes = 0;
  uint64_t rx_dropped = 0;    // frames read but undeliverable (bad buffers)
  uint64_t rx_truncated = 0;  // frames larger than the buffers the guest posted (dropped)
  uint64_t rx_bad_chains = 0;
  uint64_t rx_stalls = 0;  // receive passes that ended with the ring dry (tap unwatched)
  uint64_t interrupts = 0;
};

class NetDevice : public VirtioDevice {
 public:
  // Takes `tap`, which must be a tap opened with IFF_VNET_HDR (checked; FailedPrecondition
  // otherwise) and non-blocking (set here).
  static absl::StatusOr<std::unique_ptr<NetDevice>> Create(ScopedFd tap,
                                                           const NetDeviceOptions& options);
  ~NetDevice() override;

  uint32_t device_id() const override { return kDeviceIdNet; }
  uint64_t device_features() const override;
  size_t num_queues() const override { return 2; }
  uint16_t max_queue_size() const override { return options_.queue_size; }
  void ReadConfig(uint64_t offset, std::span<uint8_t> data) override;
  absl::Status Activate(ActivateContext context) override;
  void ProcessQueue(size_t index) override;

  // A snapshot for tests and logs; I/O thread only.
  const NetCounters& counters() const { return counters_; }
  void GetStats(DeviceStats& stats) const override;
  int tap_fd() const { return tap_.get(); }
  // Whether the tap fd is currently watched for EPOLLIN (receive armed).
  bool rx_armed() const { return (watched_ & EPOLLIN) != 0; }

 protected:
  void OnReset() override;

 private:
  // A receive chain taken from the ring and not yet used.
  struct RxChain {
    uint16_t head = 0;
    uint64_t writable = 0;
    uint32_t first_seg = 0;  // index into rx_segs_
    uint32_t seg_count = 0;
  };

  NetDevice(ScopedFd tap, const NetDeviceOptions& options);

  void ProcessTx();
  void ProcessRx();
  // Moves chains from the ring into rx_cache_ until they hold `need` bytes; false if the
  // ring ran out first.
  bool FillRxCache(uint64_t need, bool* broken);
  // Receives one frame into the cached chains. Returns false when the tap is empty.
  bool ReceiveOne();
  // Writes one transmit chain; false if the tap had no room (the chain is not consumed).
  bool SendOne(uint16_t head);
  void OnTapEvent(uint32_t events);
  void UpdateWatch(uint32_t events);
  void Break(absl::string_view why);
  void Interrupt(Queue& q);

  ScopedFd tap_;
  NetDeviceOptions options_;
  std::array<uint8_t, 12> config_{};

  // Activation state (I/O thread).
  const GuestMemory* memory_ = nullptr;
  uint64_t features_ = 0;
  Queue* rx_ = nullptr;
  Queue* tx_ = nullptr;
  VirtioInterrupt* interrupt_ = nullptr;
  EventLoop* loop_ = nullptr;
  std::function<void(absl::string_view)> needs_reset_;
  bool registered_ = false;
  uint32_t watched_ = 0;
  bool broken_ = false;
  bool mrg_rxbuf_ = false;
  uint32_t hdr_size_ = net::kVnetHdrSize;
  uint64_t rx_need_ = 0;                // bytes of buffers to have in hand before reading a frame
  std::optional<uint16_t> tx_pending_;  // a chain the tap refused with EAGAIN
  uint64_t generation_ = 0;             // bumped on reset: stale posted passes do nothing
  bool rx_stopped_ = false;             // the tap failed a read: receive is off until reset
  bool warned_rx_error_ = false;
  bool warned_tx_error_ = false;

  // Preallocated scratch (sized in the constructor).
  std::vector<Segment> tx_segs_;
  std::vector<iovec> tx_iov_;
  std::vector<Segment> rx_segs_;   // kNetMaxSegments per queue slot
  std::vector<RxChain> rx_cache_;  // ring buffer of queue_size entries
  size_t rx_cache_start_ = 0;
  size_t rx_cache_count_ = 0;
  uint64_t rx_cache_bytes_ = 0;
  std::vector<iovec> rx_iov_;

  NetCounters counters_;
};

}  // namespace keel::vmm::virtio
