// Command-line parsing for keel-vmm: turns argv into a MachineConfig, or one error line
// that says what to fix.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/machine.h"

namespace keel::vmm {

struct CliOptions {
  MachineConfig machine;
  // Control mode (rpc/vmm.capnp): serve VmmControl on this inherited, connected unix
  // socket and boot nothing until `launch`; -1: normal mode (boot from the flags).
  int control_fd = -1;
  std::string control_socket;  // also listen here for later connections (control mode)
  std::string vm_id;           // for logs and VmmInfo
  std::string exit_file;       // the exit status is written here just before exiting
  bool help = false;
  bool version = false;
};

// Parses `--flag VALUE` and `--flag=VALUE` forms. Checks syntax and ranges that need no
// host access (a kernel is given, numbers are numbers, memory >= the minimum); the files and
// KVM limits are checked when the machine is built.
absl::StatusOr<CliOptions> ParseCommandLine(const std::vector<std::string>& args);

// The --help text.
std::string Usage();

// Host RAM in MiB from /proc/meminfo (MemTotal), 0 if unknown.
uint64_t HostMemoryMib();

}  // namespace keel::vmm
