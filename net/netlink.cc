// NetlinkSocket: socket setup and error mapping. Link operations are in link.cc, address
// operations in address.cc.
#include "net/netlink.h"

#include <linux/netlink.h>
#include <netlink/attr.h>
#include <netlink/errno.h>
#include <netlink/handlers.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "net/nl_ptr.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

namespace keel::net {
namespace {

// The kernel's extended-ACK message (NLMSGERR_ATTR_MSG) that follows a NLMSG_ERROR payload
// when NETLINK_EXT_ACK is on, or "" if there is none. `e` points into libnl's receive buffer,
// right after the NLMSG_ERROR header; every offset is checked against that header's length.
std::string ExtAckMessage(const nlmsgerr* e) {
  const auto* hdr =
      reinterpret_cast<const nlmsghdr*>(reinterpret_cast<const char*>(e) - NLMSG_HDRLEN);
  if ((hdr->nlmsg_flags & NLM_F_ACK_TLVS) == 0) return "";
  size_t offset = NLMSG_HDRLEN + sizeof(nlmsgerr);
  if ((hdr->nlmsg_flags & NLM_F_CAPPED) == 0) {
    // Not capped: the whole request follows the nlmsgerr before the TLVs.
    if (e->msg.nlmsg_len < NLMSG_HDRLEN) return "";
    offset += e->msg.nlmsg_len - NLMSG_HDRLEN;
  }
  offset = NLMSG_ALIGN(offset);
  if (offset >= hdr->nlmsg_len) return "";
  const auto* head = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(hdr) + offset);
  const nlattr* msg = nla_find(head, static_cast<int>(hdr->nlmsg_len - offset), NLMSGERR_ATTR_MSG);
  if (msg == nullptr) return "";
  const char* text = static_cast<const char*>(nla_data(msg));
  return std::string(text, strnlen(text, static_cast<size_t>(nla_len(msg))));
}

// libnl error callback: remembers the kernel's errno and message for the request in flight,
// then lets libnl fail the request as it would by default (NL_STOP).
int OnNetlinkError(sockaddr_nl* /*who*/, nlmsgerr* e, void* arg) {
  auto* last = static_cast<internal::NetlinkError*>(arg);
  last->err = -e->error;
  last->message = ExtAckMessage(e);
  return NL_STOP;
}

// For failures that did not come from a kernel NLMSG_ERROR (socket errors, libnl itself).
int NlErrorToErrno(int nl_err) {
  switch (nl_err < 0 ? -nl_err : nl_err) {
    case NLE_NOMEM:
      return ENOMEM;
    case NLE_EXIST:
      return EEXIST;
    case NLE_INVAL:
      return EINVAL;
    case NLE_RANGE:
      return ERANGE;
    case NLE_OPNOTSUPP:
      return EOPNOTSUPP;
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV:
      return ENODEV;
    case NLE_NOADDR:
      return EADDRNOTAVAIL;
    case NLE_BUSY:
      return EBUSY;
    case NLE_PERM:
      return EPERM;
    case NLE_NOACCESS:
      return EACCES;
    case NLE_AGAIN:
      return EAGAIN;
    case NLE_INTR:
      return EINTR;
    case NLE_AF_NOSUPPORT:
      return EAFNOSUPPORT;
    default:
      return 0;
  }
}

}  // namespace

const char* OperStateName(OperState state) {
  switch (state) {
    case OperState::kUnknown:
      return "unknown";
    case OperState::kNotPresent:
      return "notpresent";
    case OperState::kDown:
      return "down";
    case OperState::kLowerLayerDown:
      return "lowerlayerdown";
    case OperState::kTesting:
      return "testing";
    case OperState::kDormant:
      return "dormant";
    case OperState::kUp:
      return "up";
  }
  return "unknown";
}

void NetlinkSocket::SockDeleter::operator()(nl_sock* sock) const { nl_socket_free(sock); }

NetlinkSocket::NetlinkSocket(std::unique_ptr<nl_sock, SockDeleter> sock,
                             std::unique_ptr<internal::NetlinkError> last)
    : sock_(std::move(sock)), last_(std::move(last)) {}
NetlinkSocket::NetlinkSocket(NetlinkSocket&&) noexcept = default;
NetlinkSocket& NetlinkSocket::operator=(NetlinkSocket&&) noexcept = default;
NetlinkSocket::~NetlinkSocket() = default;

absl::StatusOr<NetlinkSocket> NetlinkSocket::Connect() {
  std::unique_ptr<nl_sock, SockDeleter> sock(nl_socket_alloc());
  if (sock == nullptr) return absl::ResourceExhaustedError("allocating a netlink socket");
  // libnl opens the socket with SOCK_CLOEXEC.
  const int rc = nl_connect(sock.get(), NETLINK_ROUTE);
  if (rc < 0) {
    return absl::UnavailableError(
        absl::StrCat("connecting a NETLINK_ROUTE socket failed: ", nl_geterror(rc)));
  }
  // Ask the kernel to explain its errors (extended ACK) without echoing our request back
  // (CAP_ACK). Both are optional: older kernels simply give no message.
  const int one = 1;
  const int fd = nl_socket_get_fd(sock.get());
  (void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
  (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));

  auto last = std::make_unique<internal::NetlinkError>();
  nl_socket_modify_err_cb(sock.get(), NL_CB_CUSTOM, &OnNetlinkError, last.get());
  return NetlinkSocket(std::move(sock), std::move(last));
}

absl::StatusOr<NetlinkSocket> NetlinkSocket::Open() { return Connect(); }

absl::StatusOr<NetlinkSocket> NetlinkSocket::OpenInNetns(int netns_fd) {
  std::optional<NetlinkSocket> opened;
  KEEL_RETURN_IF_ERROR(RunInNetns(netns_fd, [&]() -> absl::Status {
    KEEL_ASSIGN_OR_RETURN(NetlinkSocket sock, Connect());
    opened.emplace(std::move(sock));
    return absl::OkStatus();
  }));
  return std::move(*opened);
}

void NetlinkSocket::ResetError() { *last_ = internal::NetlinkError{}; }

int NetlinkSocket::ErrnoOf(int nl_err) const {
  if (last_->err != 0) return last_->err;
  return NlErrorToErrno(nl_err);
}

absl::Status NetlinkSocket::Failure(int nl_err, absl::string_view action) const {
  const int err = ErrnoOf(nl_err);
  if (err == EPERM) {
    return absl::PermissionDeniedError(
        absl::StrCat(action, " needs CAP_NET_ADMIN (run keeld as root)"));
  }
  std::string detail = err != 0 ? ErrnoDescription(err) : nl_geterror(nl_err);
  if (!last_->message.empty()) absl::StrAppend(&detail, " (kernel: ", last_->message, ")");
  absl::StatusCode code = err != 0 ? ErrnoToStatusCode(err) : absl::StatusCode::kInternal;
  // The kernel refusing a request (ELOOP for a bridge inside a bridge, ...) is a state problem
  // the caller can fix, not an internal error; a bad fd passed in is the caller's argument.
  if (err == EBADF) code = absl::StatusCode::kInvalidArgument;
  if (err != 0 && code == absl::StatusCode::kInternal) code = absl::StatusCode::kFailedPrecondition;
  return absl::Status(code, absl::StrCat(action, " failed: ", detail));
}

}  // namespace keel::net
