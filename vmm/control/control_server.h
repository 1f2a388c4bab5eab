// ControlServer: keel-vmm's end of the keeld <-> keel-vmm control channel (rpc/vmm.capnp) —
// VmmControl served on the inherited control socket and on the listening control.sock.
//
// Threads: the server runs Cap'n Proto's kj event loop on a thread of its own; the main
// thread keeps the VM (Machine::Run is the I/O thread). The two meet only here:
//   - WaitForLaunch (main) receives what `launch` carried, already turned into a
//     MachineConfig; main builds the Machine and answers with Launched or LaunchFailed;
//   - RPCs touch the Machine only through its thread-safe parts (VcpuControl, RequestExit,
//     PressPowerButton, the ConsoleLog, CollectStats which runs on the I/O thread);
//   - Stop (main, after the VM ended) sends the replies still queued, closes every
//     connection and joins the thread. The Machine must outlive Stop.
// A dropped connection does not affect the VM: the VMM keeps running and listening.
//
// Nothing here is created in normal (flag-driven) mode: keel-vmm links the kj code but never
// runs it, so a VM started from the command line does not pay for it.
//
// Example (vmm/main.cc):
//
//   KEEL_ASSIGN_OR_RETURN(auto server, ControlServer::Start(std::move(options)));
//   std::optional<LaunchRequest> launch = server->WaitForLaunch(signal_fd);
//   auto machine = Machine::Create(kvm, launch->machine);
//   if (!machine.ok()) { server->LaunchFailed(machine.status()); server->Stop(); return 2; }
//   server->Launched(machine->get());
//   VmExit exit = (*machine)->Run();
//   server->Stop();
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/fd.h"
#include "vmm/machine.h"

namespace keel::vmm {

// What `launch` asked for.
struct LaunchRequest {
  // Not OK when the request itself was unusable (a capability without a descriptor, a bad
  // MAC...): the caller answers LaunchFailed with it.
  absl::Status status;
  MachineConfig machine;
  std::vector<ScopedFd> fds;  // the descriptors `machine` names; closing them is fine once
                              // Machine::Create returned (it keeps what it needs)
  bool start_paused = false;
};

class ControlServer {
 public:
  struct Options {
    ScopedFd connection;      // the inherited, connected control socket
    ScopedFd listener;        // bound and listening (control.sock), or invalid
    std::string socket_path;  // the listener's path, unlinked by Stop
    std::string vm_id;
  };

  // Starts the control thread; returns once it serves. Call with SIGTERM, SIGINT, SIGHUP and
  // the vCPU kick signal blocked, so that the thread inherits that mask.
  static absl::StatusOr<std::unique_ptr<ControlServer>> Start(Options options);
  ~ControlServer();  // Stop()
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Blocks until `launch` arrives, or until `signal_fd` (a signalfd) is readable: then
  // returns nullopt without reading it.
  std::optional<LaunchRequest> WaitForLaunch(int signal_fd);
  // Answers the pending `launch` with FAILED and the status's one-line message.
  void LaunchFailed(const absl::Status& status);
  // Answers the pending `launch` with the VM's info; from now on the RPCs act on `machine`
  // (not owned; must stay alive until Stop returns).
  void Launched(Machine* machine);

  // Sends the replies still queued (bounded wait), closes the connections, removes the
  // control socket and joins the thread. Idempotent.
  void Stop();

  class Impl;  // the kj thread's side

 private:
  explicit ControlServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::vmm
