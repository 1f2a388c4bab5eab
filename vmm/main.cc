// keel-vmm: runs one VM. See `keel-vmm --help` and README.md.
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "base/log.h"
#include "base/status.h"
#include "vmm/cli.h"
#include "vmm/control/control_server.h"
#include "vmm/exit_file.h"
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

absl::Status CheckHostMemory(const keel::vmm::MachineConfig& config) {
  const uint64_t host_mib = keel::vmm::HostMemoryMib();
  if (host_mib != 0 && config.memory_mib > host_mib) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "--memory-mib %u is larger than this host's %u MiB of RAM", config.memory_mib, host_mib));
  }
  return absl::OkStatus();
}

// `kvm` receives the /dev/kvm handle, which must outlive the machine.
absl::StatusOr<std::unique_ptr<keel::vmm::Machine>> BuildMachine(
    const keel::vmm::MachineConfig& config, std::unique_ptr<keel::vmm::Kvm>& kvm) {
  KEEL_RETURN_IF_ERROR(CheckHostMemory(config));
  KEEL_ASSIGN_OR_RETURN(kvm, keel::vmm::Kvm::Open());
  return keel::vmm::Machine::Create(*kvm, config);
}

int RunMachine(keel::vmm::Machine& machine) {
  keel::vmm::VmExit exit = machine.Run();
  if (!exit.message.empty()) {
    if (exit.status == kExitVmmFailure) {
      KEEL_LOG(ERROR) << exit.message;
    } else {
      KEEL_LOG(DEBUG) << exit.message;
    }
  }
  return exit.status;
}

// The listening control socket, mode 0600 from the start (a stale one is replaced).
absl::StatusOr<keel::ScopedFd> ListenOn(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--control-socket %s is longer than the %u bytes a socket path may have",
                        path, sizeof(addr.sun_path) - 1));
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  keel::ScopedFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return keel::ErrnoError(errno, "socket");
  unlink(path.c_str());
  // Still single-threaded here, so the process-wide umask can be narrowed around bind.
  const mode_t old_umask = umask(0177);
  const int r = bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int bind_errno = errno;
  umask(old_umask);
  if (r != 0) return keel::ErrnoError(bind_errno, "bind --control-socket ", path);
  if (listen(fd.get(), 16) != 0) return keel::ErrnoError(errno, "listen on ", path);
  return fd;
}

// Writes --exit-file (once) and returns `status`. In control mode this happens before the
// control connections close, so a keeld that sees them close finds the file already there.
int Finish(keel::vmm::CliOptions& opts, int status) {
  if (opts.exit_file.empty()) return status;
  if (absl::Status s = keel::vmm::WriteExitFile(opts.exit_file, status); !s.ok()) {
    KEEL_LOG(ERROR) << "--exit-file: " << s;
  }
  opts.exit_file.clear();
  return status;
}

// Control mode: serve VmmControl, build the VM that `launch` describes, run it.
int RunControlled(keel::vmm::CliOptions& opts) {
  using keel::vmm::ControlServer;
  // The control thread inherits this mask.
  keel::vmm::BlockVmSignals();
  // A keeld that goes away mid-reply must cost an EPIPE on that connection, not the VM.
  signal(SIGPIPE, SIG_IGN);

  struct stat st;
  if (fstat(opts.control_fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return Fail(absl::InvalidArgumentError(
        absl::StrFormat("--control-fd %d is not an inherited socket", opts.control_fd)));
  }
  ControlServer::Options options;
  options.connection.Reset(opts.control_fd);
  options.vm_id = opts.vm_id;
  if (!opts.control_socket.empty()) {
    auto listener = ListenOn(opts.control_socket);
    if (!listener.ok()) return Fail(listener.status());
    options.listener = std::move(*listener);
    options.socket_path = opts.control_socket;
  }
  auto server = ControlServer::Start(std::move(options));
  if (!server.ok()) return Fail(server.status());

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  keel::ScopedFd signals(signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  std::optional<keel::vmm::LaunchRequest> launch = (*server)->WaitForLaunch(signals.get());
  if (!launch.has_value()) {
    signalfd_siginfo info{};
    const bool got = read(signals.get(), &info, sizeof(info)) == sizeof(info);
    KEEL_LOG(INFO) << "stopped before launch";
    return Finish(opts, got ? 128 + static_cast<int>(info.ssi_signo) : kExitVmmFailure);
  }
  signals.Reset();

  std::unique_ptr<keel::vmm::Kvm> kvm;
  absl::StatusOr<std::unique_ptr<keel::vmm::Machine>> machine =
      launch->status.ok() ? BuildMachine(launch->machine, kvm)
                          : absl::StatusOr<std::unique_ptr<keel::vmm::Machine>>(launch->status);
  launch->fds.clear();  // Machine::Create kept what it needs
  if (!machine.ok()) {
    const int status = Finish(opts, Fail(machine.status()));
    (*server)->LaunchFailed(machine.status());
    (*server)->Stop();  // the reply goes out before the process exits
    return status;
  }
  if (launch->start_paused) {
    if (absl::Status s = (*machine)->vcpu_control().Pause(); !s.ok()) return Fail(s);
  }
  (*server)->Launched(machine->get());
  const int status = Finish(opts, RunMachine(**machine));
  (*server)->Stop();
  return status;
}

int Main(keel::vmm::CliOptions& opts) {
  if (opts.control_fd >= 0) return RunControlled(opts);
  std::unique_ptr<keel::vmm::Kvm> kvm;
  auto machine = BuildMachine(opts.machine, kvm);
  if (!machine.ok()) return Fail(machine.status());
  return RunMachine(**machine);
}

}  // namespace

int main(int argc, char** argv) {
  keel::SetLogTag("keel-vmm");
#ifndef KEEL_MUTEX_DEADLOCK_CHECKS
  // Abseil's lock-order checking takes a stack trace and updates a global graph on every
  // Mutex acquisition: CPU and code pages a VMM should not spend. The sanitizer build keeps it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
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
  static std::string tag;
  if (!opts->vm_id.empty()) {
    tag = absl::StrCat("keel-vmm[", opts->vm_id, "]");
    keel::SetLogTag(tag.c_str());
  }
  return Finish(*opts, Main(*opts));
}
