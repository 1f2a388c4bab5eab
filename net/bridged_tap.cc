#include "net/bridged_tap.h"

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status.h"
#include "net/names.h"

namespace keel::net {
namespace {

// Removes a tap this module created and has not handed out yet: clearing IFF_PERSIST and
// closing every fd makes the kernel delete it. Netlink deletion is the fallback.
void Discard(NetlinkSocket& nl, Tap& tap) {
  const std::string name = tap.name();
  const absl::Status unpersist = tap.SetPersistent(false);
  tap.ReleaseFds();  // the returned fds close here
  if (unpersist.ok()) return;
  const absl::Status deleted = nl.DeleteLink(name);
  if (!deleted.ok() && !absl::IsNotFound(deleted)) {
    KEEL_LOG(ERROR) << "rolling back tap " << name << " failed, it is left behind: " << deleted;
  }
}

}  // namespace

absl::StatusOr<Tap> CreateBridgedTap(NetlinkSocket& nl, const BridgedTapSpec& spec) {
  KEEL_RETURN_IF_ERROR(ValidateLinkName(spec.name));
  KEEL_RETURN_IF_ERROR(ValidateLinkName(spec.bridge));
  // Check the bridge before creating anything: the common mistake costs nothing to undo.
  absl::StatusOr<LinkInfo> bridge = nl.GetLink(spec.bridge);
  if (absl::IsNotFound(bridge.status())) {
    return absl::NotFoundError(absl::StrCat("cannot attach tap ", spec.name, ": bridge ",
                                            spec.bridge, " does not exist; create it first"));
  }
  if (!bridge.ok()) return bridge.status();
  if (bridge->kind != "bridge") {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot attach tap ", spec.name, " to ", spec.bridge, ": it is a ",
        bridge->kind.empty() ? "physical or loopback" : bridge->kind, " link, not a bridge"));
  }

  TapOptions options = spec.tap;
  options.persistent = true;
  KEEL_ASSIGN_OR_RETURN(Tap tap, Tap::Create(spec.name, options));
  absl::Cleanup rollback = [&] { Discard(nl, tap); };

  if (spec.mtu != 0) KEEL_RETURN_IF_ERROR(nl.SetMtu(spec.name, spec.mtu));
  KEEL_RETURN_IF_ERROR(nl.Enslave(spec.name, spec.bridge));
  KEEL_RETURN_IF_ERROR(nl.SetUp(spec.name, true));
  std::move(rollback).Cancel();
  return tap;
}

absl::Status DeleteBridgedTap(NetlinkSocket& nl, absl::string_view name) {
  KEEL_RETURN_IF_ERROR(ValidateLinkName(name));
  absl::StatusOr<LinkInfo> link = nl.GetLink(name);
  if (absl::IsNotFound(link.status())) return absl::OkStatus();
  if (!link.ok()) return link.status();
  if (link->kind != "tun") {
    return absl::FailedPreconditionError(
        absl::StrCat("refusing to delete ", name, ": it is a ",
                     link->kind.empty() ? "physical or loopback" : link->kind, " link, not a tap"));
  }
  if (link->master_ifindex != 0) {
    absl::Status released = nl.Release(name);
    if (!released.ok() && !absl::IsNotFound(released)) return released;
  }
  absl::Status deleted = nl.DeleteLink(name);
  if (absl::IsNotFound(deleted)) return absl::OkStatus();
  return deleted;
}

}  // namespace keel::net
