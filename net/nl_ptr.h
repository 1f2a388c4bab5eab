// Internal to net/: owning pointers for libnl objects. libnl objects are reference counted;
// each pointer here owns exactly one reference and drops it on destruction, so every libnl
// object Keel allocates or receives is released on every path, errors included.
#pragma once

#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>

#include <memory>
#include <string>

namespace keel::net::internal {

struct LinkUnref {
  void operator()(rtnl_link* p) const { rtnl_link_put(p); }
};
struct CacheUnref {
  void operator()(nl_cache* p) const { nl_cache_free(p); }
};
struct AddrUnref {
  void operator()(nl_addr* p) const { nl_addr_put(p); }
};
struct RtnlAddrUnref {
  void operator()(rtnl_addr* p) const { rtnl_addr_put(p); }
};

// What the kernel said about the last failed request (captured by NetlinkSocket's libnl
// error callback): libnl itself keeps only a coarse NLE_* code.
struct NetlinkError {
  int err = 0;          // positive errno from NLMSG_ERROR; 0 if the kernel reported none
  std::string message;  // extended-ACK text (NLMSGERR_ATTR_MSG), if any
};

using LinkPtr = std::unique_ptr<rtnl_link, LinkUnref>;
using CachePtr = std::unique_ptr<nl_cache, CacheUnref>;
using AddrPtr = std::unique_ptr<nl_addr, AddrUnref>;
using RtnlAddrPtr = std::unique_ptr<rtnl_addr, RtnlAddrUnref>;

// Retries a dump the kernel interrupted because the table changed under it.
template <typename Fn>
int RetryDump(Fn fn) {
  int rc = 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    rc = fn();
    if (rc != -NLE_DUMP_INTR) break;
  }
  return rc;
}

}  // namespace keel::net::internal
