// PassFd: a vmm.capnp `Fd` capability that carries one file descriptor to the other side of
// a two-party connection with fd passing. The RPC system asks getFd() when it writes the
// message and sends the descriptor with SCM_RIGHTS; the capability owns it until the peer
// releases it.
#pragma once

#include <kj/memory.h>

#include <utility>

#include "base/fd.h"
#include "rpc/vmm.capnp.h"

namespace keel::rpc::vmm {

class FdServer final : public Fd::Server {
 public:
  explicit FdServer(ScopedFd fd) : fd_(std::move(fd)) {}
  kj::Maybe<int> getFd() override { return fd_.get(); }

 private:
  ScopedFd fd_;
};

inline Fd::Client PassFd(ScopedFd fd) { return kj::heap<FdServer>(std::move(fd)); }

}  // namespace keel::rpc::vmm
