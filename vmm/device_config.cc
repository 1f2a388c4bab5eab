#include "vmm/device_config.h"

#include <fcntl.h>

#include <charconv>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace keel::vmm {

namespace {

absl::StatusOr<uint64_t> ParseUnsigned(absl::string_view flag, absl::string_view key,
                                       absl::string_view value, uint64_t max) {
  uint64_t v = 0;
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, v);
  if (value.empty() || ec != std::errc() || ptr != end || v > max) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %s=%s is not a number between 0 and %u", flag, key, value, max));
  }
  return v;
}

absl::StatusOr<int> ParseInheritedFd(absl::string_view flag, absl::string_view value) {
  auto n = ParseUnsigned(flag, "fd", value, 1 << 20);
  if (!n.ok()) return n.status();
  const int fd = static_cast<int>(*n);
  if (fd <= 2 || fcntl(fd, F_GETFD) < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: fd=%d is not an open file descriptor this process inherited (0-2 are not allowed)",
        flag, fd));
  }
  return fd;
}

}  // namespace

std::string DiskName(const DiskConfig& disk) {
  return disk.path.empty() ? absl::StrFormat("fd %d", disk.fd) : disk.path;
}

absl::StatusOr<DiskConfig> ParseDiskSpec(absl::string_view spec) {
  constexpr absl::string_view kFlag = "--disk";
  DiskConfig disk;
  std::vector<absl::string_view> parts = absl::StrSplit(spec, ',');
  for (size_t i = 0; i < parts.size(); ++i) {
    const absl::string_view part = parts[i];
    const size_t eq = part.find('=');
    const absl::string_view key = eq == absl::string_view::npos ? part : part.substr(0, eq);
    const absl::string_view value =
        eq == absl::string_view::npos ? absl::string_view() : part.substr(eq + 1);
    if (i == 0 && eq == absl::string_view::npos && part != "ro") {
      disk.path = std::string(part);
    } else if (key == "path") {
      disk.path = std::string(value);
    } else if (key == "fd") {
      auto fd = ParseInheritedFd(kFlag, value);
      if (!fd.ok()) return fd.status();
      disk.fd = *fd;
    } else if (part == "ro" || part == "ro=on" || part == "readonly") {
      disk.read_only = true;
    } else if (part == "ro=off" || part == "rw") {
      disk.read_only = false;
    } else if (key == "cache") {
      if (value == "none") {
        disk.cache = block::CacheMode::kNone;
      } else if (value == "writeback") {
        disk.cache = block::CacheMode::kWriteback;
      } else {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: cache=%s is not a cache mode; use cache=none or cache=writeback", kFlag, value));
      }
    } else if (key == "id") {
      if (value.size() > kMaxDiskIdLength) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: id=%s is longer than the %u bytes virtio-blk can report", kFlag, value,
            kMaxDiskIdLength));
      }
      disk.id = std::string(value);
    } else {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: unknown option \"%s\" (expected PATH or fd=N, then ro, cache=, id=)", kFlag, part));
    }
  }
  if (disk.path.empty() == (disk.fd < 0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s %s: give exactly one of an image PATH or fd=N", kFlag, spec));
  }
  return disk;
}

absl::StatusOr<NetConfig> ParseNetSpec(absl::string_view spec) {
  constexpr absl::string_view kFlag = "--net";
  NetConfig nic;
  for (absl::string_view part : absl::StrSplit(spec, ',')) {
    const size_t eq = part.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: \"%s\" is not KEY=VALUE (expected tap=NAME or fd=N, mac=, mtu=)", kFlag, part));
    }
    const absl::string_view key = part.substr(0, eq);
    const absl::string_view value = part.substr(eq + 1);
    if (key == "tap") {
      if (value.empty()) return absl::InvalidArgumentError("--net: tap= needs a tap name");
      nic.tap = std::string(value);
    } else if (key == "fd") {
      auto fd = ParseInheritedFd(kFlag, value);
      if (!fd.ok()) return fd.status();
      nic.fd = *fd;
    } else if (key == "mac") {
      auto mac = net::MacAddress::Parse(value);
      if (!mac.ok()) return absl::InvalidArgumentError(absl::StrCat("--net: ", mac.status().message()));
      if (absl::Status s = mac->CheckValidUnicast(); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("--net: ", s.message()));
      }
      nic.mac = *mac;
    } else if (key == "mtu") {
      // 68: the IPv4 minimum; 65535: the largest frame a virtio-net header can describe.
      auto mtu = ParseUnsigned(kFlag, "mtu", value, 65535);
      if (!mtu.ok()) return mtu.status();
      if (*mtu < 68) {
        return absl::InvalidArgumentError(
            absl::StrFormat("--net: mtu=%u is below the IPv4 minimum of 68", *mtu));
      }
      nic.mtu = static_cast<uint32_t>(*mtu);
    } else {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: unknown option \"%s\" (expected tap=NAME or fd=N, mac=, mtu=)", kFlag, key));
    }
  }
  if (nic.tap.empty() == (nic.fd < 0)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s %s: give exactly one of tap=NAME or fd=N", kFlag, spec));
  }
  return nic;
}

}  // namespace keel::vmm
