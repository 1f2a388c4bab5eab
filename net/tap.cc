#include "net/tap.h"

// <net/if.h> (ifreq, if_nametoindex) and not <linux/if.h>: the two clash.
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "net/names.h"

namespace keel::net {
namespace {

constexpr char kTunPath[] = "/dev/net/tun";

absl::StatusOr<ScopedFd> OpenTunDevice() {
  // O_NONBLOCK: the VMM's I/O thread polls tap fds from its event loop.
  int fd = open(kTunPath, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd >= 0) return ScopedFd(fd);
  const int err = errno;
  if (err == ENOENT || err == ENXIO || err == ENODEV) {
    return absl::FailedPreconditionError(
        "/dev/net/tun is missing: the kernel needs CONFIG_TUN, and the node must exist "
        "(mknod /dev/net/tun c 10 200)");
  }
  if (err == EACCES || err == EPERM) {
    return absl::PermissionDeniedError(
        "opening /dev/net/tun was refused: run keeld as root (or grant access to the node)");
  }
  return ErrnoError(err, "opening ", kTunPath);
}

bool IsValidVnetHdrSize(uint32_t size) { return size == 0 || size == 10 || size == 12; }

absl::Status CheckOptions(const TapOptions& options) {
  if (options.queues < 1 || options.queues > kMaxTapQueues) {
    return absl::InvalidArgumentError(
        absl::StrCat("a tap needs 1 to ", kMaxTapQueues, " queues, not ", options.queues));
  }
  if (!IsValidVnetHdrSize(options.vnet_hdr_size)) {
    return absl::InvalidArgumentError(
        absl::StrCat("virtio-net header size ", options.vnet_hdr_size,
                     " is not 12 (virtio 1.x or MRG_RXBUF), 10 (legacy) or 0 (no header)"));
  }
  if (options.offloads != 0 && options.vnet_hdr_size == 0) {
    return absl::InvalidArgumentError(
        "tap offloads need a virtio-net header to describe partial checksums and GSO; set "
        "vnet_hdr_size to 10 or 12, or offloads to 0");
  }
  if (options.mac) KEEL_RETURN_IF_ERROR(options.mac->CheckValidUnicast());
  return absl::OkStatus();
}

short TunFlags(const TapOptions& options) {
  int flags = IFF_TAP | IFF_NO_PI;
  if (options.vnet_hdr_size != 0) flags |= IFF_VNET_HDR;
  if (options.queues > 1) flags |= IFF_MULTI_QUEUE;
  return static_cast<short>(flags);
}

// TUNSETIFF: attaches `fd` to the tap `name` (creating it unless it exists; with IFF_TUN_EXCL
// in `flags` failing if it does). Returns the device's name (the kernel's choice if `name` was
// empty). `create` only selects the error messages.
absl::StatusOr<std::string> Attach(int fd, absl::string_view name, short flags, bool create,
                                   uint32_t queues) {
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());  // validated: at most IFNAMSIZ - 1
  ifr.ifr_flags = flags;
  if (ioctl(fd, TUNSETIFF, &ifr) == 0) {
    return std::string(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
  }
  const int err = errno;
  const std::string label = name.empty() ? std::string("(kernel-chosen name)") : std::string(name);
  if (err == EPERM) {
    return absl::PermissionDeniedError(
        create ? absl::StrCat("creating tap ", label, " needs CAP_NET_ADMIN (run keeld as root)")
               : absl::StrCat("opening tap ", label,
                              " needs CAP_NET_ADMIN, or to run as the owner/group it was created "
                              "for (TapOptions.owner/group)"));
  }
  if (create && err == EBUSY) {
    return absl::AlreadyExistsError(absl::StrCat(
        "network interface ", label, " already exists; pick another tap name or delete it"));
  }
  if (!create && err == EBUSY) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tap ", label, " is in use: another process has it open (a single-queue tap has one "
        "reader; stop the other VMM or use another tap)"));
  }
  if (!create && err == EINVAL) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", label, " as a tap with ", queues,
                     queues > 1 ? " queues" : " queue", ": it is not a tap, or it was created ",
                     queues > 1 ? "without" : "with", " multi-queue support"));
  }
  return ErrnoError(err, create ? "creating tap " : "opening tap ", label);
}

// Applies the device-wide settings shared by Create() and Open().
absl::Status Configure(int fd, const TapOptions& options) {
  // Without IFF_VNET_HDR there is no header to size and no way to describe offloaded frames
  // (CheckOptions refuses offloads then).
  if (options.vnet_hdr_size == 0) return absl::OkStatus();
  KEEL_RETURN_IF_ERROR(SetTapVnetHdrSize(fd, options.vnet_hdr_size));
  return SetTapOffloads(fd, options.offloads);
}

}  // namespace

absl::StatusOr<TapState> QueryTap(int fd) {
  ifreq ifr{};
  if (ioctl(fd, TUNGETIFF, &ifr) != 0) {
    return ErrnoError(errno, "TUNGETIFF on fd ", fd, " (is it an attached tun/tap fd?)");
  }
  TapState state;
  state.name.assign(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
  const int flags = static_cast<unsigned short>(ifr.ifr_flags);
  state.tap = (flags & IFF_TAP) != 0;
  state.vnet_hdr = (flags & IFF_VNET_HDR) != 0;
  state.multi_queue = (flags & IFF_MULTI_QUEUE) != 0;
  state.persistent = (flags & IFF_PERSIST) != 0;
  int size = 0;
  if (ioctl(fd, TUNGETVNETHDRSZ, &size) != 0) {
    return ErrnoError(errno, "TUNGETVNETHDRSZ on tap ", state.name);
  }
  state.vnet_hdr_size = size;
  return state;
}

absl::Status SetTapVnetHdrSize(int fd, uint32_t size) {
  if (size != 10 && size != 12) {
    return absl::InvalidArgumentError(absl::StrCat(
        "virtio-net header size ", size, " is not 12 (virtio 1.x or MRG_RXBUF) or 10 (legacy)"));
  }
  int value = static_cast<int>(size);
  if (ioctl(fd, TUNSETVNETHDRSZ, &value) != 0) {
    return ErrnoError(errno, "setting the virtio-net header size to ", size, " (TUNSETVNETHDRSZ)");
  }
  return absl::OkStatus();
}

absl::Status SetTapOffloads(int fd, uint32_t tun_offloads) {
  // The flags are passed by value, not through a pointer.
  if (ioctl(fd, TUNSETOFFLOAD, static_cast<unsigned long>(tun_offloads)) != 0) {
    const int err = errno;
    if (err == EINVAL) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the kernel rejected tap offloads 0x", absl::Hex(tun_offloads),
          " (TUNSETOFFLOAD): segmentation offloads need TUN_F_CSUM, or a flag is unknown"));
    }
    return ErrnoError(err, "setting tap offloads 0x", absl::Hex(tun_offloads), " (TUNSETOFFLOAD)");
  }
  return absl::OkStatus();
}

absl::StatusOr<Tap> Tap::Create(absl::string_view name, const TapOptions& options) {
  if (!name.empty()) KEEL_RETURN_IF_ERROR(ValidateLinkName(name));
  KEEL_RETURN_IF_ERROR(CheckOptions(options));
  const short flags = TunFlags(options);

  // Until SetPersistent(true) at the very end, closing these fds (any early return) makes
  // the kernel delete the device again.
  std::vector<ScopedFd> fds;
  KEEL_ASSIGN_OR_RETURN(ScopedFd first, OpenTunDevice());
  KEEL_ASSIGN_OR_RETURN(std::string actual,
                        Attach(first.get(), name, flags | IFF_TUN_EXCL, true, options.queues));
  fds.push_back(std::move(first));
  Tap tap(std::move(actual), std::move(fds));
  const int fd = tap.fds_[0].get();

  KEEL_RETURN_IF_ERROR(Configure(fd, options));
  if (options.owner && ioctl(fd, TUNSETOWNER, static_cast<unsigned long>(*options.owner)) != 0) {
    return ErrnoError(errno, "setting the owner of tap ", tap.name_, " to uid ", *options.owner);
  }
  if (options.group && ioctl(fd, TUNSETGROUP, static_cast<unsigned long>(*options.group)) != 0) {
    return ErrnoError(errno, "setting the group of tap ", tap.name_, " to gid ", *options.group);
  }
  if (options.mac) KEEL_RETURN_IF_ERROR(tap.SetMac(*options.mac));
  for (uint32_t q = 1; q < options.queues; ++q) {
    KEEL_ASSIGN_OR_RETURN(ScopedFd queue, OpenTunDevice());
    KEEL_RETURN_IF_ERROR(Attach(queue.get(), tap.name_, flags, true, options.queues).status());
    tap.fds_.push_back(std::move(queue));
  }
  if (options.persistent) KEEL_RETURN_IF_ERROR(tap.SetPersistent(true));
  return tap;
}

absl::StatusOr<Tap> Tap::Open(absl::string_view name, const TapOptions& options) {
  KEEL_RETURN_IF_ERROR(ValidateLinkName(name));
  KEEL_RETURN_IF_ERROR(CheckOptions(options));
  // TUNSETIFF would quietly create a fresh, non-persistent tap if the name were free.
  const std::string name_str(name);
  if (if_nametoindex(name_str.c_str()) == 0) {
    return absl::NotFoundError(
        absl::StrCat("tap ", name,
                     " does not exist in this network namespace; create it first (keeld "
                     "creates a persistent tap for every VM NIC)"));
  }
  const short flags = TunFlags(options);
  std::vector<ScopedFd> fds;
  for (uint32_t q = 0; q < options.queues; ++q) {
    KEEL_ASSIGN_OR_RETURN(ScopedFd queue, OpenTunDevice());
    KEEL_RETURN_IF_ERROR(Attach(queue.get(), name, flags, false, options.queues).status());
    fds.push_back(std::move(queue));
  }
  Tap tap(name_str, std::move(fds));
  KEEL_RETURN_IF_ERROR(Configure(tap.fds_[0].get(), options));
  if (options.mac) KEEL_RETURN_IF_ERROR(tap.SetMac(*options.mac));
  return tap;
}

int Tap::fd(size_t queue) const { return queue < fds_.size() ? fds_[queue].get() : -1; }

std::vector<ScopedFd> Tap::ReleaseFds() { return std::exchange(fds_, {}); }

absl::StatusOr<int> Tap::ControlFd() const {
  if (fds_.empty() || !fds_[0].valid()) {
    return absl::FailedPreconditionError(
        absl::StrCat("tap ", name_, " has no open fd left (they were released)"));
  }
  return fds_[0].get();
}

absl::Status Tap::SetPersistent(bool persistent) {
  KEEL_ASSIGN_OR_RETURN(int fd, ControlFd());
  if (ioctl(fd, TUNSETPERSIST, persistent ? 1UL : 0UL) != 0) {
    if (errno == EPERM) {
      return absl::PermissionDeniedError(
          absl::StrCat("making tap ", name_, persistent ? " persistent" : " non-persistent",
                       " needs CAP_NET_ADMIN (run keeld as root)"));
    }
    return ErrnoError(errno, "TUNSETPERSIST on tap ", name_);
  }
  return absl::OkStatus();
}

absl::Status Tap::SetVnetHdrSize(uint32_t size) {
  KEEL_ASSIGN_OR_RETURN(int fd, ControlFd());
  return SetTapVnetHdrSize(fd, size);
}

absl::Status Tap::SetOffloads(uint32_t tun_offloads) {
  KEEL_ASSIGN_OR_RETURN(int fd, ControlFd());
  return SetTapOffloads(fd, tun_offloads);
}

absl::Status Tap::SetMac(const MacAddress& mac) {
  KEEL_RETURN_IF_ERROR(mac.CheckValidUnicast());
  KEEL_ASSIGN_OR_RETURN(int fd, ControlFd());
  ifreq ifr{};
  ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  std::memcpy(ifr.ifr_hwaddr.sa_data, mac.bytes.data(), mac.bytes.size());
  if (ioctl(fd, SIOCSIFHWADDR, &ifr) != 0) {
    return ErrnoError(errno, "setting MAC ", mac.ToString(), " on tap ", name_);
  }
  return absl::OkStatus();
}

}  // namespace keel::net
