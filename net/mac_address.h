// MacAddress: a 48-bit Ethernet address.
//
//   KEEL_ASSIGN_OR_RETURN(MacAddress mac, MacAddress::Parse("52:54:00:12:34:56"));
//   mac.ToString();  // "52:54:00:12:34:56"
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace keel::net {

struct MacAddress {
  std::array<uint8_t, 6> bytes{};

  // Parses six two-digit hex octets separated by ':' (or all by '-'), any case.
  // Returns InvalidArgument naming the text and the expected form otherwise.
  static absl::StatusOr<MacAddress> Parse(absl::string_view text);

  // A random unicast, locally administered address (first octet xxxxxx10), for NICs whose
  // MAC the controller did not choose. Reads getrandom(); never fails.
  static MacAddress RandomLocal();

  // Lower-case "aa:bb:cc:dd:ee:ff".
  std::string ToString() const;

  bool IsMulticast() const { return (bytes[0] & 0x01) != 0; }
  bool IsLocallyAdministered() const { return (bytes[0] & 0x02) != 0; }
  bool IsZero() const;
  // What the kernel accepts as a device address (is_valid_ether_addr): unicast, not zero.
  bool IsValidUnicast() const { return !IsMulticast() && !IsZero(); }
  // OK if IsValidUnicast(), else InvalidArgument saying why the kernel would refuse it.
  absl::Status CheckValidUnicast() const;

  friend bool operator==(const MacAddress&, const MacAddress&) = default;
};

}  // namespace keel::net
