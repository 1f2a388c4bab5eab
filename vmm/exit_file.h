// The exit file: keel-vmm's exit status as decimal text, for a reader that is not its parent
// (keeld after a restart; rpc/vmm.capnp). Written to PATH.tmp and renamed over PATH, so a
// reader sees the whole status or no file.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace keel::vmm {

[[nodiscard]] absl::Status WriteExitFile(const std::string& path, int status);

}  // namespace keel::vmm
