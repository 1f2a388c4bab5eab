#include "net/mac_address.h"

#include <sys/random.h>

#include <cerrno>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace keel::net {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

absl::StatusOr<MacAddress> MacAddress::Parse(absl::string_view text) {
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("MAC address '", absl::CHexEscape(text),
                     "' is malformed; expected six hex octets like 52:54:00:12:34:56"));
  };
  // "aa:bb:cc:dd:ee:ff": 6 * 2 digits + 5 separators.
  if (text.size() != 17) return bad();
  const char sep = text[2];
  if (sep != ':' && sep != '-') return bad();
  MacAddress mac;
  for (size_t i = 0; i < 6; ++i) {
    const size_t at = i * 3;
    if (i > 0 && text[at - 1] != sep) return bad();
    const int hi = HexDigit(text[at]);
    const int lo = HexDigit(text[at + 1]);
    if (hi < 0 || lo < 0) return bad();
    mac.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return mac;
}

MacAddress MacAddress::RandomLocal() {
  MacAddress mac;
  size_t got = 0;
  while (got < mac.bytes.size()) {
    ssize_t n = getrandom(mac.bytes.data() + got, mac.bytes.size() - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
    // getrandom() only fails here with EINTR (6 bytes never block once the pool is ready).
  }
  mac.bytes[0] = static_cast<uint8_t>((mac.bytes[0] & ~0x01) | 0x02);
  return mac;
}

std::string MacAddress::ToString() const {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", bytes[0], bytes[1], bytes[2], bytes[3],
                         bytes[4], bytes[5]);
}

bool MacAddress::IsZero() const {
  for (uint8_t b : bytes) {
    if (b != 0) return false;
  }
  return true;
}

absl::Status MacAddress::CheckValidUnicast() const {
  if (IsValidUnicast()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("MAC address ", ToString(), IsZero() ? " is all zeros" : " is multicast",
                   "; a network interface needs a unicast MAC (first octet even, e.g. "
                   "52:54:00:12:34:56)"));
}

}  // namespace keel::net
