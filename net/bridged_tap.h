// A VM NIC's host side as Keel's agent wires it: a persistent tap attached to a Linux bridge.
//
//   KEEL_ASSIGN_OR_RETURN(NetlinkSocket nl, NetlinkSocket::Open());
//   KEEL_ASSIGN_OR_RETURN(Tap tap, CreateBridgedTap(nl, {.name = "ktap-web1-0",
//                                                       .bridge = "kbr0", .mtu = 1500,
//                                                       .tap = {.mac = host_mac}}));
//   ... send tap's fds to the VMM ...
//   KEEL_RETURN_IF_ERROR(DeleteBridgedTap(nl, "ktap-web1-0"));  // when the VM is deleted
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "net/netlink.h"
#include "net/tap.h"

namespace keel::net {

struct BridgedTapSpec {
  std::string name{};    // the tap to create; must not exist yet
  std::string bridge{};  // an existing bridge in `nl`'s namespace
  uint32_t mtu = 0;      // 0: the kernel default (1500); usually the bridge's MTU
  // Queues, vnet header size, offloads, owner/group and the host-side MAC. `persistent` is
  // ignored: the tap is always persistent, so it outlives the agent's fds.
  TapOptions tap{};
};

// Creates the persistent tap `spec.name` (in the calling thread's namespace, which must be
// `nl`'s), sets its MTU and host-side MAC, adds it to `spec.bridge` and brings it up. Returns the
// open tap (one fd per queue) to hand to the VMM.
//
// All or nothing: on any failure (the name exists, the bridge is missing or not a bridge, no
// CAP_NET_ADMIN, an MTU the kernel refuses...) whatever this call did is undone, so nothing is
// left behind, and an existing link with the same name is never touched.
absl::StatusOr<Tap> CreateBridgedTap(NetlinkSocket& nl, const BridgedTapSpec& spec);

// The inverse: detaches tap `name` from its bridge and deletes it, even while a VMM still holds
// its fds (they then fail with EBADFD/EIO). Idempotent: OK when no link of that name exists.
// FailedPrecondition if `name` is something other than a tun/tap, which it never deletes.
absl::Status DeleteBridgedTap(NetlinkSocket& nl, absl::string_view name);

}  // namespace keel::net
