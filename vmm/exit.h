// Why a VM stops, and the exit status keel-vmm reports for it.
#pragma once

#include <string>

namespace keel::vmm {

struct VmExit {
  enum class Kind {
    kDebugExit,      // the guest wrote to the debug-exit port: status = the value
    kReset,          // guest reset (i8042 0xFE, ACPI reset, KVM system event): status 0
    kPoweroff,       // guest poweroff (ACPI sleep S5, KVM system event): status 0
    kSignal,         // SIGTERM/SIGINT: status 128 + signal
    kTimeout,        // --boot-timeout-s elapsed: status 3
    kGuestFault,     // triple fault, KVM internal error, failed entry: status 3
    kInternalError,  // the VMM itself failed: status 3
    kStopped,        // stopped on request by the control channel: status 0
  };
  Kind kind = Kind::kInternalError;
  int status = 3;
  std::string message;  // for logs; empty for ordinary exits
};

// Exit statuses with a fixed meaning (see README "keel-vmm").
inline constexpr int kExitBadInput = 2;
inline constexpr int kExitVmmFailure = 3;

// Receives the request to stop the VM. Thread-safe; the first request wins.
class ExitSink {
 public:
  virtual ~ExitSink() = default;
  virtual void RequestExit(VmExit exit) = 0;
};

}  // namespace keel::vmm
