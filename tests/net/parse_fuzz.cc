// libFuzzer target for the text Keel accepts from its controller for host networking: interface
// names, MAC addresses and CIDR addresses. Nothing may crash, and whatever parses must print
// back to text that parses to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "net/ip_prefix.h"
#include "net/mac_address.h"
#include "net/names.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);

  (void)keel::net::ValidateLinkName(text).ok();

  absl::StatusOr<keel::net::MacAddress> mac = keel::net::MacAddress::Parse(text);
  if (mac.ok()) {
    absl::StatusOr<keel::net::MacAddress> again = keel::net::MacAddress::Parse(mac->ToString());
    if (!again.ok() || *again != *mac) std::abort();
  }

  absl::StatusOr<keel::net::IpPrefix> prefix = keel::net::IpPrefix::Parse(text);
  if (prefix.ok()) {
    absl::StatusOr<keel::net::IpPrefix> again = keel::net::IpPrefix::Parse(prefix->ToString());
    if (!again.ok() || *again != *prefix) std::abort();
  }
  return 0;
}
