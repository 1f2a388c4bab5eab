// keel-vmm: runs one VM. See `keel-vmm --help` and README.md.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "base/log.h"
#include "vmm/cli.h"
#include "vmm/machine.h"

namespace {

using keel::vmm::kExitBadInput;
using keel::vmm::kExitVmmFailure;

// Configuration mistakes exit 2; everything else is the VMM's own failure (3).
int StatusToExit(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kOutOfRange:
      return kExitBadInput;
    default:
      return kExitVmmFailure;
  }
}

int Fail(const absl::Status& s) {
  std::string line = absl::StrFormat("keel-vmm: error: %s\n", s.message());
  fputs(line.c_str(), stderr);
  return StatusToExit(s);
}

}  // namespace

int main(int argc, char** argv) {
  keel::SetLogTag("keel-vmm");
  std::vector<std::string> args(argv + 1, argv + argc);
  auto opts = keel::vmm::ParseCommandLine(args);
  if (!opts.ok()) return Fail(opts.status());
  if (opts->help) {
    fputs(keel::vmm::Usage().c_str(), stdout);
    return 0;
  }
  if (opts->version) {
    puts("keel-vmm " KEEL_VERSION);
    return 0;
  }
  const uint64_t host_mib = keel::vmm::HostMemoryMib();
  if (host_mib != 0 && opts->machine.memory_mib > host_mib) {
    return Fail(absl::ResourceExhaustedError(absl::StrFormat(
        "--memory-mib %u is larger than this host's %u MiB of RAM", opts->machine.memory_mib,
        host_mib)));
  }

  auto kvm = keel::vmm::Kvm::Open();
  if (!kvm.ok()) return Fail(kvm.status());
  auto machine = keel::vmm::Machine::Create(**kvm, opts->machine);
  if (!machine.ok()) return Fail(machine.status());

  keel::vmm::VmExit exit = (*machine)->Run();
  if (!exit.message.empty()) {
    if (exit.status == kExitVmmFailure) {
      KEEL_LOG(ERROR) << exit.message;
    } else {
      KEEL_LOG(DEBUG) << exit.message;
    }
  }
  return exit.status;
}
