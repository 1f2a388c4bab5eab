// IpPrefix: an IPv4 or IPv6 interface address with its prefix length ("10.0.0.1/24",
// "fd00::1/64"), as assigned to links by NetlinkSocket::AddAddress.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace keel::net {

struct IpPrefix {
  int family = 0;                   // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};  // network byte order; IPv4 uses the first 4
  int prefix_len = 0;               // 0-32 (IPv4) or 0-128 (IPv6)

  // Parses "ADDRESS/LEN" or a bare "ADDRESS" (a host prefix: /32 or /128). Host bits are
  // kept: "10.0.0.1/24" is the address 10.0.0.1 on a /24. Returns InvalidArgument naming
  // the text and the expected form otherwise.
  static absl::StatusOr<IpPrefix> Parse(absl::string_view text);

  // Address length in bytes: 4 or 16.
  size_t address_size() const;
  // 0.0.0.0 or ::, which no interface can have.
  bool IsUnspecified() const;
  // Canonical text, always with the length ("10.0.0.1/32", "fd00::1/64").
  std::string ToString() const;

  friend bool operator==(const IpPrefix&, const IpPrefix&) = default;
};

}  // namespace keel::net
