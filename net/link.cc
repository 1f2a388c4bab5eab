// NetlinkSocket: links (RTM_GETLINK / RTM_NEWLINK / RTM_DELLINK).
#include <linux/if.h>
#include <linux/if_arp.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>

#include <algorithm>
#include <cerrno>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "net/names.h"
#include "net/netlink.h"
#include "net/nl_ptr.h"

namespace keel::net {
namespace {

using internal::AddrPtr;
using internal::CachePtr;
using internal::LinkPtr;
using internal::RetryDump;

absl::Status NoSuchLink(absl::string_view name) {
  return absl::NotFoundError(
      absl::StrCat("network interface ", name, " does not exist in this network namespace"));
}

// Copies what Keel reports about a link out of a libnl object (which stays owned by the caller).
LinkInfo ToLinkInfo(rtnl_link* link) {
  LinkInfo info;
  info.ifindex = rtnl_link_get_ifindex(link);
  if (const char* name = rtnl_link_get_name(link)) info.name = name;
  if (const char* kind = rtnl_link_get_type(link)) info.kind = kind;
  info.mtu = rtnl_link_get_mtu(link);
  nl_addr* addr = rtnl_link_get_addr(link);
  if (addr != nullptr && rtnl_link_get_arptype(link) == ARPHRD_ETHER &&
      nl_addr_get_len(addr) == 6) {
    MacAddress mac;
    std::memcpy(mac.bytes.data(), nl_addr_get_binary_addr(addr), mac.bytes.size());
    info.mac = mac;
  }
  const unsigned flags = rtnl_link_get_flags(link);
  info.up = (flags & IFF_UP) != 0;
  info.lower_up = (flags & IFF_LOWER_UP) != 0;
  const uint8_t oper = rtnl_link_get_operstate(link);
  info.operstate = oper <= static_cast<uint8_t>(OperState::kUp) ? static_cast<OperState>(oper)
                                                                : OperState::kUnknown;
  info.master_ifindex = rtnl_link_get_master(link);
  return info;
}

absl::StatusOr<AddrPtr> MacToNlAddr(const MacAddress& mac) {
  AddrPtr addr(nl_addr_build(AF_LLC, mac.bytes.data(), mac.bytes.size()));
  if (addr == nullptr) return absl::ResourceExhaustedError("allocating a libnl address");
  return addr;
}

absl::StatusOr<LinkPtr> NewLink() {
  LinkPtr link(rtnl_link_alloc());
  if (link == nullptr) return absl::ResourceExhaustedError("allocating a libnl link");
  return link;
}

}  // namespace

absl::StatusOr<LinkInfo> NetlinkSocket::Fetch(int ifindex, absl::string_view name) {
  const std::string name_str(name);
  const std::string label = name.empty() ? absl::StrCat("#", ifindex) : name_str;
  rtnl_link* raw = nullptr;
  ResetError();
  const int rc = rtnl_link_get_kernel(sock_.get(), name.empty() ? ifindex : 0,
                                      name.empty() ? nullptr : name_str.c_str(), &raw);
  LinkPtr link(raw);
  if (rc < 0) {
    if (ErrnoOf(rc) == ENODEV) return NoSuchLink(label);
    return Failure(rc, absl::StrCat("looking up network interface ", label));
  }
  if (link == nullptr) return NoSuchLink(label);
  LinkInfo info = ToLinkInfo(link.get());
  if (info.master_ifindex > 0) {
    rtnl_link* master_raw = nullptr;
    ResetError();
    if (rtnl_link_get_kernel(sock_.get(), info.master_ifindex, nullptr, &master_raw) >= 0) {
      LinkPtr master(master_raw);
      if (master != nullptr && rtnl_link_get_name(master.get()) != nullptr) {
        info.master_name = rtnl_link_get_name(master.get());
      }
    }
  }
  return info;
}

absl::StatusOr<int> NetlinkSocket::IndexOf(absl::string_view name) {
  KEEL_ASSIGN_OR_RETURN(LinkInfo info, GetLink(name));
  return info.ifindex;
}

absl::StatusOr<LinkInfo> NetlinkSocket::GetLink(absl::string_view name) {
  KEEL_RETURN_IF_ERROR(ValidateLinkName(name));
  return Fetch(0, name);
}

absl::StatusOr<LinkInfo> NetlinkSocket::GetLinkByIndex(int ifindex) {
  if (ifindex <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("interface index ", ifindex, " is invalid; indexes start at 1"));
  }
  return Fetch(ifindex, "");
}

absl::StatusOr<bool> NetlinkSocket::LinkExists(absl::string_view name) {
  absl::StatusOr<LinkInfo> link = GetLink(name);
  if (link.ok()) return true;
  if (absl::IsNotFound(link.status())) return false;
  return link.status();
}

absl::StatusOr<std::vector<LinkInfo>> NetlinkSocket::ListLinks() {
  nl_cache* raw = nullptr;
  const int rc = RetryDump([&] {
    ResetError();
    return rtnl_link_alloc_cache(sock_.get(), AF_UNSPEC, &raw);
  });
  CachePtr cache(raw);
  if (rc < 0) return Failure(rc, "listing network interfaces");

  std::vector<LinkInfo> links;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj != nullptr;
       obj = nl_cache_get_next(obj)) {
    links.push_back(ToLinkInfo(reinterpret_cast<rtnl_link*>(obj)));
  }
  std::sort(links.begin(), links.end(),
            [](const LinkInfo& a, const LinkInfo& b) { return a.ifindex < b.ifindex; });
  absl::flat_hash_map<int, std::string> names;
  for (const LinkInfo& link : links) names[link.ifindex] = link.name;
  for (LinkInfo& link : links) {
    if (auto it = names.find(link.master_ifindex); it != names.end()) {
      link.master_name = it->second;
    }
  }
  return links;
}

absl::Status NetlinkSocket::CreateBridge(const BridgeSpec& spec) {
  KEEL_RETURN_IF_ERROR(ValidateLinkName(spec.name));
  if (spec.mac) KEEL_RETURN_IF_ERROR(spec.mac->CheckValidUnicast());
  KEEL_ASSIGN_OR_RETURN(LinkPtr link, NewLink());
  if (rtnl_link_set_type(link.get(), "bridge") < 0) {
    return absl::InternalError("libnl has no bridge link type");
  }
  rtnl_link_set_name(link.get(), spec.name.c_str());
  if (spec.mtu != 0) rtnl_link_set_mtu(link.get(), spec.mtu);
  if (spec.mac) {
    // The link takes its own reference to the address.
    KEEL_ASSIGN_OR_RETURN(AddrPtr mac, MacToNlAddr(*spec.mac));
    rtnl_link_set_addr(link.get(), mac.get());
  }
  ResetError();
  const int rc = rtnl_link_add(sock_.get(), link.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (rc < 0) {
    if (ErrnoOf(rc) == EEXIST) {
      return absl::AlreadyExistsError(
          absl::StrCat("bridge ", spec.name, " already exists; pick another name or delete it"));
    }
    return Failure(rc, absl::StrCat("creating bridge ", spec.name));
  }
  return absl::OkStatus();
}

absl::Status NetlinkSocket::CreateVeth(const VethSpec& spec) {
  KEEL_RETURN_IF_ERROR(ValidateLinkName(spec.name));
  KEEL_RETURN_IF_ERROR(ValidateLinkName(spec.peer_name));
  LinkPtr link(rtnl_link_veth_alloc());
  if (link == nullptr) return absl::ResourceExhaustedError("allocating a libnl veth link");
  // The peer object belongs to `link`; this is an extra reference, dropped first.
  LinkPtr peer(rtnl_link_veth_get_peer(link.get()));
  rtnl_link_set_name(link.get(), spec.name.c_str());
  rtnl_link_set_name(peer.get(), spec.peer_name.c_str());
  if (spec.mtu != 0) {
    rtnl_link_set_mtu(link.get(), spec.mtu);
    rtnl_link_set_mtu(peer.get(), spec.mtu);
  }
  if (spec.peer_netns) {
    if (spec.peer_netns->kind == NetnsRef::Kind::kFd) {
      rtnl_link_set_ns_fd(peer.get(), spec.peer_netns->value);
    } else {
      rtnl_link_set_ns_pid(peer.get(), spec.peer_netns->value);
    }
  }
  ResetError();
  const int rc = rtnl_link_add(sock_.get(), link.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (rc < 0) {
    if (ErrnoOf(rc) == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          "veth ", spec.name, " or its peer ", spec.peer_name,
          " already exists (in its namespace); pick other names or delete the old pair"));
    }
    return Failure(rc, absl::StrCat("creating veth pair ", spec.name, "/", spec.peer_name,
                                    spec.peer_netns ? " (peer in " : "",
                                    spec.peer_netns ? spec.peer_netns->ToString() : "",
                                    spec.peer_netns ? ")" : ""));
  }
  return absl::OkStatus();
}

absl::Status NetlinkSocket::DeleteLink(absl::string_view name) {
  KEEL_RETURN_IF_ERROR(ValidateLinkName(name));
  KEEL_ASSIGN_OR_RETURN(LinkPtr link, NewLink());
  const std::string name_str(name);
  rtnl_link_set_name(link.get(), name_str.c_str());
  ResetError();
  const int rc = rtnl_link_delete(sock_.get(), link.get());
  if (rc < 0) {
    const int err = ErrnoOf(rc);
    if (err == ENODEV) return NoSuchLink(name);
    if (err == EOPNOTSUPP) {
      return absl::FailedPreconditionError(
          absl::StrCat("network interface ", name,
                       " cannot be deleted: it is not a virtual link (physical NICs and lo stay)"));
    }
    return Failure(rc, absl::StrCat("deleting network interface ", name));
  }
  return absl::OkStatus();
}

int NetlinkSocket::SendChange(int ifindex, rtnl_link* changes) {
  // An ifindex of 0 makes the kernel find the link by the IFLA_IFNAME in `changes`.
  LinkPtr orig(rtnl_link_alloc());
  if (orig == nullptr) return -NLE_NOMEM;
  if (ifindex > 0) rtnl_link_set_ifindex(orig.get(), ifindex);
  ResetError();
  return rtnl_link_change(sock_.get(), orig.get(), changes, 0);
}

absl::Status NetlinkSocket::ChangeResult(int rc, absl::string_view subject,
                                         absl::string_view action) const {
  if (rc >= 0) return absl::OkStatus();
  if (ErrnoOf(rc) == ENODEV) return NoSuchLink(subject);
  return Failure(rc, action);
}

namespace {

// A change request addressed by name (RTM_NEWLINK with ifindex 0 and IFLA_IFNAME).
absl::StatusOr<LinkPtr> ChangesFor(absl::string_view name) {
  KEEL_RETURN_IF_ERROR(ValidateLinkName(name));
  KEEL_ASSIGN_OR_RETURN(LinkPtr changes, NewLink());
  const std::string name_str(name);
  rtnl_link_set_name(changes.get(), name_str.c_str());
  return changes;
}

}  // namespace

absl::Status NetlinkSocket::SetMtu(absl::string_view name, uint32_t mtu) {
  KEEL_ASSIGN_OR_RETURN(LinkPtr changes, ChangesFor(name));
  if (mtu < 68) {
    return absl::InvalidArgumentError(
        absl::StrCat("MTU ", mtu, " for ", name, " is below 68, the smallest MTU IPv4 allows"));
  }
  rtnl_link_set_mtu(changes.get(), mtu);
  return ChangeResult(SendChange(0, changes.get()), name,
                      absl::StrCat("setting MTU ", mtu, " on ", name));
}

absl::Status NetlinkSocket::SetUp(absl::string_view name, bool up) {
  KEEL_ASSIGN_OR_RETURN(LinkPtr changes, ChangesFor(name));
  if (up) {
    rtnl_link_set_flags(changes.get(), IFF_UP);
  } else {
    rtnl_link_unset_flags(changes.get(), IFF_UP);
  }
  return ChangeResult(SendChange(0, changes.get()), name,
                      absl::StrCat("bringing ", name, up ? " up" : " down"));
}

absl::Status NetlinkSocket::SetMac(absl::string_view name, const MacAddress& mac) {
  KEEL_RETURN_IF_ERROR(mac.CheckValidUnicast());
  KEEL_ASSIGN_OR_RETURN(LinkPtr changes, ChangesFor(name));
  KEEL_ASSIGN_OR_RETURN(AddrPtr addr, MacToNlAddr(mac));
  rtnl_link_set_addr(changes.get(), addr.get());
  return ChangeResult(SendChange(0, changes.get()), name,
                      absl::StrCat("setting MAC ", mac.ToString(), " on ", name));
}

absl::Status NetlinkSocket::Rename(absl::string_view name, absl::string_view new_name) {
  KEEL_RETURN_IF_ERROR(ValidateLinkName(new_name));
  KEEL_ASSIGN_OR_RETURN(int ifindex, IndexOf(name));
  KEEL_ASSIGN_OR_RETURN(LinkPtr changes, NewLink());
  const std::string new_str(new_name);
  rtnl_link_set_name(changes.get(), new_str.c_str());
  const int rc = SendChange(ifindex, changes.get());
  if (rc < 0 && ErrnoOf(rc) == EEXIST) {
    return absl::AlreadyExistsError(
        absl::StrCat("cannot rename ", name, " to ", new_name, ": ", new_name, " already exists"));
  }
  if (rc < 0 && ErrnoOf(rc) == EBUSY) {
    return absl::FailedPreconditionError(absl::StrCat("cannot rename ", name, " to ", new_name,
                                                      " while it is up; bring it down first"));
  }
  return ChangeResult(rc, name, absl::StrCat("renaming ", name, " to ", new_name));
}

absl::Status NetlinkSocket::MoveToNetns(absl::string_view name, const NetnsRef& target) {
  KEEL_ASSIGN_OR_RETURN(LinkPtr changes, ChangesFor(name));
  if (target.kind == NetnsRef::Kind::kFd) {
    rtnl_link_set_ns_fd(changes.get(), target.value);
  } else {
    rtnl_link_set_ns_pid(changes.get(), target.value);
  }
  const int rc = SendChange(0, changes.get());
  if (rc < 0 && ErrnoOf(rc) == EEXIST) {
    return absl::AlreadyExistsError(absl::StrCat("cannot move ", name, " to ", target.ToString(),
                                                 ": a link with that name already exists there"));
  }
  return ChangeResult(rc, name, absl::StrCat("moving ", name, " to ", target.ToString()));
}

absl::Status NetlinkSocket::Enslave(absl::string_view port, absl::string_view bridge) {
  KEEL_ASSIGN_OR_RETURN(LinkPtr changes, ChangesFor(port));
  KEEL_ASSIGN_OR_RETURN(LinkInfo master, GetLink(bridge));
  if (master.kind != "bridge") {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot add ", port, " to ", bridge, ": ", bridge, " is a ",
        master.kind.empty() ? "physical or loopback" : master.kind, " link, not a bridge"));
  }
  rtnl_link_set_master(changes.get(), master.ifindex);
  return ChangeResult(SendChange(0, changes.get()), port,
                      absl::StrCat("adding ", port, " to bridge ", bridge));
}

absl::Status NetlinkSocket::Release(absl::string_view port) {
  KEEL_ASSIGN_OR_RETURN(LinkPtr changes, ChangesFor(port));
  rtnl_link_set_master(changes.get(), 0);
  return ChangeResult(SendChange(0, changes.get()), port,
                      absl::StrCat("releasing ", port, " from its bridge"));
}

}  // namespace keel::net
