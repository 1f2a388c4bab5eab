// NetlinkSocket: interface addresses (RTM_NEWADDR / RTM_DELADDR / RTM_GETADDR).
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "net/netlink.h"
#include "net/nl_ptr.h"

namespace keel::net {

using internal::AddrPtr;
using internal::CachePtr;
using internal::RtnlAddrPtr;

absl::Status NetlinkSocket::ChangeAddress(bool add, absl::string_view link,
                                          absl::string_view cidr) {
  KEEL_ASSIGN_OR_RETURN(IpPrefix prefix, IpPrefix::Parse(cidr));
  KEEL_ASSIGN_OR_RETURN(int ifindex, IndexOf(link));
  const std::string text = prefix.ToString();
  if (prefix.IsUnspecified()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "address ", text, " is the unspecified address; give the interface's own address"));
  }

  RtnlAddrPtr addr(rtnl_addr_alloc());
  AddrPtr local(nl_addr_build(prefix.family, prefix.bytes.data(), prefix.address_size()));
  if (addr == nullptr || local == nullptr) {
    return absl::ResourceExhaustedError("allocating a libnl address");
  }
  nl_addr_set_prefixlen(local.get(), prefix.prefix_len);
  rtnl_addr_set_ifindex(addr.get(), ifindex);
  // The address object takes its own reference to `local`.
  if (rtnl_addr_set_local(addr.get(), local.get()) < 0) {
    return absl::InternalError(absl::StrCat("libnl rejected address ", text));
  }
  rtnl_addr_set_prefixlen(addr.get(), prefix.prefix_len);

  ResetError();
  const int rc = add ? rtnl_addr_add(sock_.get(), addr.get(), NLM_F_EXCL)
                     : rtnl_addr_delete(sock_.get(), addr.get(), 0);
  if (rc >= 0) return absl::OkStatus();
  const int err = ErrnoOf(rc);
  if (add && err == EEXIST) {
    return absl::AlreadyExistsError(absl::StrCat("address ", text, " is already on ", link));
  }
  if (!add && (err == EADDRNOTAVAIL || err == ENOENT || err == ESRCH)) {
    return absl::NotFoundError(absl::StrCat("address ", text, " is not on ", link));
  }
  if (err == ENODEV) {
    return absl::NotFoundError(
        absl::StrCat("network interface ", link, " does not exist in this network namespace"));
  }
  return Failure(rc, absl::StrCat(add ? "adding address " : "removing address ", text,
                                  add ? " to " : " from ", link));
}

absl::Status NetlinkSocket::AddAddress(absl::string_view link, absl::string_view cidr) {
  return ChangeAddress(true, link, cidr);
}

absl::Status NetlinkSocket::RemoveAddress(absl::string_view link, absl::string_view cidr) {
  return ChangeAddress(false, link, cidr);
}

absl::StatusOr<std::vector<IpPrefix>> NetlinkSocket::ListAddresses(absl::string_view link) {
  KEEL_ASSIGN_OR_RETURN(int ifindex, IndexOf(link));
  nl_cache* raw = nullptr;
  const int rc = internal::RetryDump([&] {
    ResetError();
    return rtnl_addr_alloc_cache(sock_.get(), &raw);
  });
  CachePtr cache(raw);
  if (rc < 0) return Failure(rc, absl::StrCat("listing addresses of ", link));

  std::vector<IpPrefix> out;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj != nullptr;
       obj = nl_cache_get_next(obj)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(obj);
    if (rtnl_addr_get_ifindex(addr) != ifindex) continue;
    nl_addr* local = rtnl_addr_get_local(addr);
    const int family = rtnl_addr_get_family(addr);
    if (local == nullptr || (family != AF_INET && family != AF_INET6)) continue;
    IpPrefix prefix;
    prefix.family = family;
    if (nl_addr_get_len(local) != prefix.address_size()) continue;
    std::memcpy(prefix.bytes.data(), nl_addr_get_binary_addr(local), prefix.address_size());
    prefix.prefix_len = rtnl_addr_get_prefixlen(addr);
    out.push_back(prefix);
  }
  return out;
}

}  // namespace keel::net
