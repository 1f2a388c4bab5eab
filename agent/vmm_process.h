// VmmProcess: keeld's handle on one keel-vmm process — spawning it, handing it its
// configuration and file descriptors over the control channel (rpc/vmm.capnp), reattaching to
// it after keeld restarts, and learning how it ended.
//
// Everything here runs on keeld's kj event loop (kj::setupAsyncIo()); nothing blocks except
// the fork/exec in Spawn.
//
// Process model: keel-vmm runs in its own session (setsid), not in keeld's process group, and
// without a parent-death signal, so SIGKILL of keeld (or Ctrl-C in keeld's terminal) leaves
// every VM running. Each VM has a run directory (RUN_DIR/vms/ID/) holding:
//   control.sock  keel-vmm's listening control socket (0600), for reattaching
//   exit          keel-vmm's exit status, written (atomically) just before it exits
//   console.log   the guest console (appended; keeld bounds what it keeps in memory)
// keeld records the pid and the process start time (field 22 of /proc/PID/stat) in its store,
// so Attach never mistakes a recycled pid for the VMM.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/fd.h"
#include "kj/async-io.h"
#include "kj/debug.h"
#include "net/mac_address.h"
#include "rpc/vmm.capnp.h"

namespace keel::agent {

struct VmmDisk {
  ScopedFd image;  // opened and locked by keeld (block::OpenImage)
  std::string name;
  bool read_only = false;
  bool direct_io = false;
  std::string serial;
};

struct VmmNic {
  ScopedFd tap;  // net::Tap's fd, already on its bridge
  std::string name;
  net::MacAddress mac;
  uint32_t mtu = 0;
};

// `call`, unless `timeout` passes first: then `on_expiry` runs (if given) and the promise fails
// with a kj::Exception (FAILED) saying keel-vmm did not answer `what` in time; the call is
// cancelled. Every control call keeld makes is bounded this way, so a hung VMM cannot hold up
// its VM's operations (or keeld's start) forever.
template <typename T>
kj::Promise<T> Bounded(kj::Timer& timer, kj::Duration timeout, kj::Promise<T> call,
                       kj::StringPtr what, kj::Maybe<kj::Function<void()>> on_expiry = nullptr) {
  return call.exclusiveJoin(timer.afterDelay(timeout).then(
      [what = kj::str(what), timeout, on_expiry = kj::mv(on_expiry)]() mutable -> kj::Promise<T> {
        KJ_IF_MAYBE (f, on_expiry) {
          (*f)();
        }
        return KJ_EXCEPTION(FAILED, kj::str("keel-vmm did not answer ", what, " within ",
                                            timeout / kj::MILLISECONDS, " ms"));
      }));
}

struct VmmLaunch {
  std::string vmm_path;  // the keel-vmm binary
  std::string vm_id;
  std::string run_dir;   // the VM's run directory; created by Spawn if missing
  ScopedFd kernel;
  ScopedFd initrd;       // may be invalid (none)
  std::string cmdline;
  uint64_t memory_mib = 0;
  uint32_t vcpus = 1;
  std::vector<VmmDisk> disks;
  std::vector<VmmNic> nics;
  bool start_paused = false;
  kj::Duration call_timeout = 30 * kj::SECONDS;  // for the launch call (see Bounded)
};

// How a VMM process ended.
struct VmmExit {
  // keel-vmm's exit status (0 poweroff/reset/shutdown, 2 bad configuration, 3 VMM failure, or
  // the guest's debug-exit value); -1 when it was killed or vanished without writing its exit
  // file.
  int exit_status = -1;
  int signal = 0;           // the signal that killed it, when known (keeld is the parent)
  std::string description;  // "exited with status 0", "killed by SIGKILL", "vanished ..."
  bool clean() const { return exit_status == 0; }
};

class VmmProcess {
 public:
  // Forks and execs keel-vmm for `launch`, then sends it `launch` over the control channel
  // (fds passed with SCM_RIGHTS). Resolves once the VM runs (or is paused), with the
  // VMM's one-line error as a kj::Exception (FAILED) when the configuration was refused.
  // (Implementation: posix_spawn, which uses clone(CLONE_VM|CLONE_VFORK); the refused
  // process has been reaped when the promise rejects. Its stdout/stderr are RUN_DIR/vmm.log.)
  static kj::Promise<kj::Own<VmmProcess>> Spawn(kj::AsyncIoContext& io, VmmLaunch launch);

  // Reconnects to a VMM that an earlier keeld started. Fails (kj::Exception DISCONNECTED)
  // when the process is gone or is not that VMM (start time differs); the caller then reads
  // ExitFromRunDir.
  // A VMM that does not answer within `call_timeout` is killed and reported the same way.
  static kj::Promise<kj::Own<VmmProcess>> Attach(kj::AsyncIoContext& io, std::string run_dir,
                                                 pid_t pid, uint64_t start_time,
                                                 kj::Duration call_timeout);

  // How a VMM that is no longer running ended, from its exit file (nullopt: no exit file).
  static std::optional<VmmExit> ExitFromRunDir(const std::string& run_dir);

  // The process start time Attach checks (clock ticks since boot), 0 if the process is gone.
  static uint64_t ProcessStartTime(pid_t pid);

  virtual ~VmmProcess() = default;

  virtual pid_t pid() const = 0;
  virtual uint64_t start_time() const = 0;
  virtual const std::string& run_dir() const = 0;

  // The control capability (pause, resume, shutdown, stats, console, followConsole).
  virtual rpc::vmm::VmmControl::Client control() = 0;

  // Resolves once the process has exited (pidfd readable; reaped if keeld is its parent).
  // May be called more than once; every promise resolves with the same VmmExit.
  // Reaping is VmmProcess's: keeld must not reap children itself (no waitpid(-1), SIGCHLD
  // set to SIG_IGN, or kj's captureChildExit/onChildExit), or statuses and signals are lost
  // (OnExit then falls back to the exit file). Destroying a VmmProcess leaves the VM running;
  // a spawned one that exits afterwards stays a zombie until keeld exits.
  virtual kj::Promise<VmmExit> OnExit() = 0;

  // SIGKILL now; OnExit resolves shortly after.
  virtual void Kill() = 0;
};

}  // namespace keel::agent
