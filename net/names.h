// Linux network interface names.
//
// Every name Keel sends to the kernel (bridges, taps, veths) is checked here first, so a bad
// name fails with a message saying what is wrong instead of a bare EINVAL from netlink.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace keel::net {

// Longest interface name Linux accepts: IFNAMSIZ (16) minus the terminating NUL.
inline constexpr size_t kMaxLinkNameLength = 15;

// Checks `name` against the kernel's rules for interface names (net/core/dev.c
// dev_valid_name): 1-15 bytes, not "." or "..", no '/', ':' or whitespace. Keel also rejects
// '%' (the kernel would treat the name as a "tap%d" template and pick another name) and
// control characters. Returns InvalidArgument with a message saying why.
absl::Status ValidateLinkName(absl::string_view name);

}  // namespace keel::net
