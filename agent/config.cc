#include "agent/config.h"

#include <unistd.h>

#include <climits>

namespace keel::agent {

void Config::ResolveDefaults() {
  if (volume_dir.empty()) volume_dir = state_dir + "/volumes";
  if (socket_path.empty()) socket_path = run_dir + "/keel.sock";
  if (vmm_path.empty()) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    std::string dir = ".";
    if (n > 0) {
      std::string exe(self, static_cast<size_t>(n));
      size_t slash = exe.rfind('/');
      if (slash != std::string::npos) dir = exe.substr(0, slash);
    }
    // In a build tree keeld lives in agent/ and keel-vmm in vmm/; installed, side by side.
    std::string beside = dir + "/keel-vmm";
    std::string build_tree = dir + "/../vmm/keel-vmm";
    vmm_path = access(beside.c_str(), X_OK) == 0 || access(build_tree.c_str(), X_OK) != 0
                   ? beside
                   : build_tree;
  }
}

}  // namespace keel::agent
