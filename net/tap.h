// Tap: an owned tap device opened through /dev/net/tun, one fd per queue.
//
// Keel's agent creates a persistent tap per VM NIC and hands its fds to the VMM (SCM_RIGHTS);
// the virtio-net device reads and writes Ethernet frames on them, each preceded by a virtio-net
// header (see net/vnet_hdr.h). Every fd is non-blocking and close-on-exec.
//
//   KEEL_ASSIGN_OR_RETURN(Tap tap, Tap::Create("ktap-web1", {.queues = 2, .persistent = true}));
//   int rx_tx_0 = tap.fd(0), rx_tx_1 = tap.fd(1);
//
// Lifetime: destroying a Tap closes its fds. A non-persistent tap disappears with its last fd;
// a persistent one stays until deleted (NetlinkSocket::DeleteLink, or SetPersistent(false)
// followed by closing every fd).
//
// Threading: a Tap is not thread-safe, but its fds may be read and written from any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/fd.h"
#include "net/mac_address.h"

namespace keel::net {

// Most queues the kernel allows on one tap (MAX_TAP_QUEUES).
inline constexpr uint32_t kMaxTapQueues = 256;

struct TapOptions {
  // One fd per queue; more than 1 creates a multi-queue tap (IFF_MULTI_QUEUE), one fd per
  // virtio-net RX/TX queue pair. 1 to kMaxTapQueues.
  uint32_t queues = 1;
  // Bytes of virtio-net header before every frame (IFF_VNET_HDR + TUNSETVNETHDRSZ): 12 for
  // virtio 1.x guests, 10 for legacy ones without MRG_RXBUF (VnetHdrSizeForFeatures()), or 0
  // for plain frames without a header.
  uint32_t vnet_hdr_size = 12;
  // TUN_F_* offloads the reader accepts (TUNSETOFFLOAD), e.g. from
  // TapOffloadsForGuestFeatures(). Needs a vnet header. 0: the kernel hands over only complete,
  // checksummed frames.
  uint32_t offloads = 0;
  // Keep the device when the last fd closes (TUNSETPERSIST). Create() only.
  bool persistent = false;
  // Let this user / group open the tap later without CAP_NET_ADMIN (TUNSETOWNER/TUNSETGROUP),
  // e.g. an unprivileged VMM reopening it by name. Create() only.
  std::optional<uid_t> owner{};
  std::optional<gid_t> group{};
  // The host-side MAC of the tap device (not the guest's MAC). Absent: kernel-chosen.
  std::optional<MacAddress> mac{};
};

// What the kernel reports about a tap fd (TUNGETIFF, TUNGETVNETHDRSZ).
struct TapState {
  std::string name{};
  bool tap = false;          // IFF_TAP (an Ethernet device) rather than IFF_TUN
  bool vnet_hdr = false;     // IFF_VNET_HDR
  bool multi_queue = false;  // IFF_MULTI_QUEUE
  bool persistent = false;   // IFF_PERSIST
  int vnet_hdr_size = 0;     // TUNGETVNETHDRSZ
};

// Reads the state of any tun/tap fd (e.g. one received from the agent).
absl::StatusOr<TapState> QueryTap(int fd);
// Sets the virtio-net header size (10 or 12) on a tap fd opened with IFF_VNET_HDR; applies to
// the whole device. For a VMM that renegotiates after a guest reset.
absl::Status SetTapVnetHdrSize(int fd, uint32_t size);
// Sets TUN_F_* offloads on a tap fd; applies to the whole device. InvalidArgument if the kernel
// rejects a flag.
absl::Status SetTapOffloads(int fd, uint32_t tun_offloads);

class Tap {
 public:
  // Creates a new tap. `name` empty: the kernel picks one ("tap0", ...), see name(). Fails with
  // AlreadyExists if any link of that name exists (never attaches to it). Nothing is left
  // behind on failure: the tap becomes persistent only once everything else succeeded.
  static absl::StatusOr<Tap> Create(absl::string_view name, const TapOptions& options = {});
  // Opens an existing (persistent) tap by name, e.g. the VMM's `--net tap=NAME`. `options.queues`
  // must match how it was created (multi-queue or not); vnet_hdr_size, offloads and mac are
  // applied; persistent/owner/group are left as the creator set them. NotFound if missing.
  static absl::StatusOr<Tap> Open(absl::string_view name, const TapOptions& options = {});

  Tap(Tap&&) = default;
  Tap& operator=(Tap&&) = default;

  const std::string& name() const { return name_; }
  size_t queue_count() const { return fds_.size(); }
  // The fd of queue `queue` (owned by this Tap); -1 if out of range or released.
  int fd(size_t queue = 0) const;
  // Gives up ownership of every queue fd (e.g. after sending them to a VMM). The Tap keeps its
  // name but no fds; calling it again returns an empty vector.
  std::vector<ScopedFd> ReleaseFds();

  absl::Status SetPersistent(bool persistent);
  absl::Status SetVnetHdrSize(uint32_t size);
  absl::Status SetOffloads(uint32_t tun_offloads);
  // Sets the host-side MAC (SIOCSIFHWADDR on the tap fd); must be a valid unicast address.
  absl::Status SetMac(const MacAddress& mac);

 private:
  Tap(std::string name, std::vector<ScopedFd> fds) : name_(std::move(name)), fds_(std::move(fds)) {}
  // The fd device-wide ioctls go through; FailedPrecondition if every fd was released.
  absl::StatusOr<int> ControlFd() const;

  std::string name_;
  std::vector<ScopedFd> fds_;
};

}  // namespace keel::net
