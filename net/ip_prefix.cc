#include "net/ip_prefix.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace keel::net {

absl::StatusOr<IpPrefix> IpPrefix::Parse(absl::string_view text) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("address '", absl::CHexEscape(text), "' ", why,
                     "; expected an IPv4 or IPv6 address with a prefix length, like 10.0.0.1/24 or "
                     "fd00::1/64"));
  };
  const size_t slash = text.find('/');
  const absl::string_view addr = text.substr(0, slash);
  // Long enough for any IPv6 text form (INET6_ADDRSTRLEN includes the NUL).
  if (addr.empty() || addr.size() >= INET6_ADDRSTRLEN) return bad("is not an IP address");
  const std::string addr_str(addr);

  IpPrefix p;
  if (inet_pton(AF_INET, addr_str.c_str(), p.bytes.data()) == 1) {
    p.family = AF_INET;
  } else if (inet_pton(AF_INET6, addr_str.c_str(), p.bytes.data()) == 1) {
    p.family = AF_INET6;
  } else {
    return bad("is not an IP address");
  }
  const int max_len = p.family == AF_INET ? 32 : 128;
  if (slash == absl::string_view::npos) {
    p.prefix_len = max_len;
    return p;
  }
  const absl::string_view len = text.substr(slash + 1);
  if (len.empty() || len.size() > 3) return bad("has a malformed prefix length");
  int value = 0;
  for (char c : len) {
    if (c < '0' || c > '9') return bad("has a malformed prefix length");
    value = value * 10 + (c - '0');
  }
  if (value > max_len) {
    return bad(absl::StrCat("has prefix length ", value, ", above the maximum ", max_len));
  }
  p.prefix_len = value;
  return p;
}

size_t IpPrefix::address_size() const { return family == AF_INET ? 4 : 16; }

bool IpPrefix::IsUnspecified() const {
  for (size_t i = 0; i < address_size(); ++i) {
    if (bytes[i] != 0) return false;
  }
  return true;
}

std::string IpPrefix::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(family, bytes.data(), buf, sizeof(buf)) == nullptr) return "<invalid>";
  return absl::StrCat(buf, "/", prefix_len);
}

}  // namespace keel::net
