// Network namespaces without moving the calling thread.
//
// Linux binds a socket (netlink, packet) and a tap created through /dev/net/tun to the network
// namespace of the thread that creates it. Keel never switches the namespace of a long-lived
// thread: work that must happen "inside" another namespace runs on a short-lived thread that
// joins it (setns) and exits, so the caller's namespace never changes.
//
//   KEEL_ASSIGN_OR_RETURN(Netns ns, Netns::Create());
//   KEEL_ASSIGN_OR_RETURN(NetlinkSocket inside, NetlinkSocket::OpenInNetns(ns.fd()));
#pragma once

#include <sys/types.h>

#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "base/fd.h"

namespace keel::net {

// An owned reference to a network namespace (an fd on nsfs). The namespace lives while this
// object, a process inside it, or a bind mount of it does; when the last reference goes, the
// kernel destroys it together with its virtual links (a veth whose peer lived there goes too).
class Netns {
 public:
  // Creates a new, empty network namespace (only "lo", down). Needs CAP_SYS_ADMIN.
  // The calling thread stays where it is: a helper thread unshares and hands back the fd.
  static absl::StatusOr<Netns> Create();
  // Opens an existing namespace: /proc/PID/ns/net, /run/netns/NAME, /proc/thread-self/ns/net.
  static absl::StatusOr<Netns> Open(const std::string& path);

  Netns(Netns&&) = default;
  Netns& operator=(Netns&&) = default;

  // The namespace fd; owned by this object, valid while it lives.
  int fd() const { return fd_.get(); }

 private:
  explicit Netns(ScopedFd fd) : fd_(std::move(fd)) {}
  ScopedFd fd_;
};

// Runs `fn` on a new thread that has joined the network namespace `netns_fd` (setns), waits for
// it and returns its status. Sockets and taps `fn` creates stay bound to that namespace after
// the thread exits. Blocks the caller until `fn` returns; the caller's namespace never changes.
absl::Status RunInNetns(int netns_fd, absl::FunctionRef<absl::Status()> fn);

// Where to move a link: a namespace fd (borrowed, used only during the call) or the namespace
// of a process.
struct NetnsRef {
  enum class Kind { kFd, kPid };
  Kind kind = Kind::kFd;
  int value = -1;

  static NetnsRef Fd(int fd) { return {Kind::kFd, fd}; }
  static NetnsRef Pid(pid_t pid) { return {Kind::kPid, static_cast<int>(pid)}; }
  std::string ToString() const;
};

}  // namespace keel::net
