#include "net/names.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace keel::net {
namespace {

absl::Status Bad(absl::string_view name, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("interface name '", absl::CHexEscape(name), "' ", why));
}

}  // namespace

absl::Status ValidateLinkName(absl::string_view name) {
  if (name.empty()) {
    return absl::InvalidArgumentError(
        "interface name is empty; give a name of 1-15 characters such as kbr0 or ktap-web1");
  }
  if (name.size() > kMaxLinkNameLength) {
    return Bad(name, absl::StrCat("is ", name.size(),
                                  " characters long; Linux allows at most 15 (IFNAMSIZ - 1)"));
  }
  if (name == "." || name == "..") return Bad(name, "is reserved; pick another name");
  for (char c : name) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '/') return Bad(name, "contains '/', which Linux forbids in interface names");
    if (c == ':') {
      return Bad(name, "contains ':', which Linux forbids in interface names (old alias syntax)");
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
      return Bad(name, "contains whitespace, which Linux forbids in interface names");
    }
    if (c == '%') {
      return Bad(name,
                 "contains '%', which the kernel treats as a name template (tap%d); pass a "
                 "concrete name, or an empty one where a kernel-chosen name is allowed");
    }
    if (u < 0x20 || u == 0x7f) return Bad(name, "contains a control character");
  }
  return absl::OkStatus();
}

}  // namespace keel::net
