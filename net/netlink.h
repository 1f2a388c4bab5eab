// NetlinkSocket: host network configuration through rtnetlink (libnl-route).
//
// Keel configures bridges, veths, taps' link settings and addresses with netlink only; it never
// runs the `ip` command. One NetlinkSocket is one NETLINK_ROUTE socket bound to one network
// namespace (the caller's, or one given by fd). Every libnl object it creates internally is
// owned by a RAII wrapper, so nothing leaks on any path; none crosses this interface.
//
// Threading: a NetlinkSocket is not thread-safe. Use it from one thread at a time (each thread
// that configures links may open its own).
//
// Errors say what failed and what to do:
//   AlreadyExists     "bridge kbr0 already exists; pick another name or delete it"
//   NotFound          "network interface kbr9 does not exist in this network namespace"
//   PermissionDenied  "creating bridge kbr0 needs CAP_NET_ADMIN (run keeld as root)"
//   InvalidArgument   bad names/addresses, rejected before the kernel is asked
//   FailedPrecondition the kernel refused in this state ("adding kbr1 to bridge kbr0 failed: ...
//                     (kernel: Can not enslave a bridge to a bridge)")
// Kernel messages (netlink extended ACK) are appended when the kernel gives one.
//
// A moved-from NetlinkSocket may only be destroyed or assigned to.
//
// Example:
//   KEEL_ASSIGN_OR_RETURN(NetlinkSocket nl, NetlinkSocket::Open());
//   KEEL_RETURN_IF_ERROR(nl.CreateBridge({.name = "kbr0", .mtu = 9000}));
//   KEEL_RETURN_IF_ERROR(nl.AddAddress("kbr0", "10.0.0.1/24"));
//   KEEL_RETURN_IF_ERROR(nl.SetUp("kbr0", true));
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "net/ip_prefix.h"
#include "net/mac_address.h"
#include "net/netns.h"

struct nl_sock;
struct rtnl_link;

namespace keel::net {
namespace internal {
struct NetlinkError;  // net/nl_ptr.h
}  // namespace internal

// RFC 2863 operational state as reported in IFLA_OPERSTATE (values of IF_OPER_*).
enum class OperState : uint8_t {
  kUnknown = 0,
  kNotPresent = 1,
  kDown = 2,
  kLowerLayerDown = 3,
  kTesting = 4,
  kDormant = 5,
  kUp = 6,
};
const char* OperStateName(OperState state);

// A snapshot of one link, as the kernel reported it.
struct LinkInfo {
  int ifindex = 0;
  std::string name{};
  // IFLA_INFO_KIND: "bridge", "veth", "tun" (taps too), "dummy", ...; empty for loopback and
  // physical NICs.
  std::string kind{};
  uint32_t mtu = 0;
  // The link-layer address when it is an Ethernet one (absent for L3 tun devices).
  std::optional<MacAddress> mac{};
  bool up = false;        // administratively up (IFF_UP)
  bool lower_up = false;  // carrier present (IFF_LOWER_UP)
  OperState operstate = OperState::kUnknown;
  int master_ifindex = 0;     // the bridge this link is a port of; 0 if none
  std::string master_name{};  // its name; empty if none
};

struct BridgeSpec {
  std::string name{};
  uint32_t mtu = 0;                 // 0: kernel default (1500)
  std::optional<MacAddress> mac{};  // absent: kernel-chosen random address
};

struct VethSpec {
  std::string name{};
  std::string peer_name{};
  uint32_t mtu = 0;  // both ends; 0: kernel default
  // Where the peer end is created; absent: this socket's namespace.
  std::optional<NetnsRef> peer_netns{};
};

class NetlinkSocket {
 public:
  // Connects a NETLINK_ROUTE socket in the calling thread's network namespace.
  static absl::StatusOr<NetlinkSocket> Open();
  // Connects one inside the namespace `netns_fd` (borrowed for the call only), from a
  // short-lived helper thread; the calling thread's namespace never changes. Every later
  // operation on the socket acts inside that namespace.
  static absl::StatusOr<NetlinkSocket> OpenInNetns(int netns_fd);

  NetlinkSocket(NetlinkSocket&&) noexcept;
  NetlinkSocket& operator=(NetlinkSocket&&) noexcept;
  ~NetlinkSocket();

  // ---- Links --------------------------------------------------------------------------------
  absl::StatusOr<LinkInfo> GetLink(absl::string_view name);
  absl::StatusOr<LinkInfo> GetLinkByIndex(int ifindex);
  absl::StatusOr<bool> LinkExists(absl::string_view name);
  // All links in the namespace, ordered by ifindex.
  absl::StatusOr<std::vector<LinkInfo>> ListLinks();

  // Creates a bridge (down; STP off, the kernel default). AlreadyExists if the name is taken.
  absl::Status CreateBridge(const BridgeSpec& spec);
  // Creates a veth pair, the peer optionally directly inside another namespace.
  absl::Status CreateVeth(const VethSpec& spec);
  // Deletes a virtual link (bridge, veth — its peer goes too —, tap). NotFound if missing.
  absl::Status DeleteLink(absl::string_view name);

  absl::Status SetMtu(absl::string_view name, uint32_t mtu);
  // Brings the link administratively up or down (IFF_UP).
  absl::Status SetUp(absl::string_view name, bool up);
  absl::Status SetMac(absl::string_view name, const MacAddress& mac);
  // Renames a link. Most drivers refuse while the link is up: bring it down first.
  absl::Status Rename(absl::string_view name, absl::string_view new_name);
  // Moves an existing link into another network namespace (it keeps its name there).
  absl::Status MoveToNetns(absl::string_view name, const NetnsRef& target);

  // Makes `port` a port of bridge `bridge` (IFLA_MASTER). FailedPrecondition if `bridge` is
  // not a bridge.
  absl::Status Enslave(absl::string_view port, absl::string_view bridge);
  // Detaches `port` from its bridge; OK if it had none.
  absl::Status Release(absl::string_view port);

  // ---- Addresses ----------------------------------------------------------------------------
  // Adds "10.0.0.1/24" or "fd00::1/64" to `link`. AlreadyExists if it is already there.
  absl::Status AddAddress(absl::string_view link, absl::string_view cidr);
  // Removes it; NotFound if `link` does not have it.
  absl::Status RemoveAddress(absl::string_view link, absl::string_view cidr);
  // IPv4 and IPv6 addresses on `link` (including kernel-assigned IPv6 link-local ones).
  absl::StatusOr<std::vector<IpPrefix>> ListAddresses(absl::string_view link);

 private:
  struct SockDeleter {
    void operator()(nl_sock* sock) const;
  };
  NetlinkSocket(std::unique_ptr<nl_sock, SockDeleter> sock,
                std::unique_ptr<internal::NetlinkError> last);
  static absl::StatusOr<NetlinkSocket> Connect();

  // Called before each libnl request; ErrnoOf() then turns a failed one into an errno.
  void ResetError();
  int ErrnoOf(int nl_err) const;
  // A status for a failed request: PermissionDenied for EPERM/EACCES, the errno's code
  // otherwise, with `action` ("creating bridge kbr0") and the kernel's words.
  absl::Status Failure(int nl_err, absl::string_view action) const;

  absl::StatusOr<int> IndexOf(absl::string_view name);
  absl::StatusOr<LinkInfo> Fetch(int ifindex, absl::string_view name);
  // Sends RTM_NEWLINK `changes` for link `ifindex` (0: the link named in `changes`) and
  // returns libnl's result.
  int SendChange(int ifindex, rtnl_link* changes);
  // OK, NotFound naming `subject` (ENODEV), or Failure(rc, action).
  absl::Status ChangeResult(int rc, absl::string_view subject, absl::string_view action) const;
  absl::Status ChangeAddress(bool add, absl::string_view link, absl::string_view cidr);

  std::unique_ptr<nl_sock, SockDeleter> sock_;
  // Kernel error details for the last request; on the heap because the socket's error
  // callback keeps its address across moves.
  std::unique_ptr<internal::NetlinkError> last_;
};

}  // namespace keel::net
