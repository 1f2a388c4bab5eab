#include "agent/vmm_process.h"

#include <capnp/rpc-twoparty.h>
#include <fcntl.h>
#include <kj/async-unix.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "rpc/pass_fd.h"

extern char** environ;

namespace keel::agent {

namespace {

namespace vrpc = ::keel::rpc::vmm;

// keeld receives no descriptors from a VMM today; a little room costs nothing.
constexpr uint kMaxFdsPerMessage = 4;
// The control socket's number in keel-vmm (0-2 are stdio).
constexpr int kChildControlFd = 3;
// After a refused launch keel-vmm exits by itself; past this it is killed.
constexpr auto kLaunchFailureExitWait = 10 * kj::SECONDS;

kj::Exception Error(kj::Exception::Type type, kj::StringPtr message) {
  return kj::Exception(type, __FILE__, __LINE__, kj::heapString(message));
}

[[noreturn]] void ThrowErrno(kj::StringPtr what, int err) {
  kj::throwFatalException(Error(kj::Exception::Type::FAILED, kj::str(what, ": ", strerror(err))));
}

std::string SignalName(int signo) {
  const char* abbrev = sigabbrev_np(signo);
  return abbrev != nullptr ? absl::StrCat("SIG", abbrev) : absl::StrCat("signal ", signo);
}

// Creates `path` and its missing parents (mode 0700).
void MakeDirs(const std::string& path) {
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      const std::string prefix = path.substr(0, i);
      if (mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
        ThrowErrno(kj::str("create run directory ", prefix.c_str()), errno);
      }
    }
  }
}

// Moves `fd` to a number above the ones the child's file actions write (0-3), so one
// dup2 cannot overwrite another's source.
ScopedFd AboveChildFds(ScopedFd fd) {
  if (fd.get() > kChildControlFd) return fd;
  ScopedFd moved(fcntl(fd.get(), F_DUPFD_CLOEXEC, kChildControlFd + 1));
  if (!moved) ThrowErrno("fcntl(F_DUPFD_CLOEXEC)", errno);
  return moved;
}

ScopedFd OpenOrThrow(const std::string& path, int flags, mode_t mode = 0) {
  ScopedFd fd(open(path.c_str(), flags | O_CLOEXEC, mode));
  if (!fd) ThrowErrno(kj::str("open ", path.c_str()), errno);
  return fd;
}

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

using vrpc::PassFd;

class VmmProcessImpl final : public VmmProcess {
 public:
  // `parent`: this process spawned the VMM and reaps it.
  VmmProcessImpl(kj::AsyncIoContext& io, pid_t pid, uint64_t start_time, ScopedFd pidfd,
                 bool parent, std::string run_dir, kj::Own<kj::AsyncCapabilityStream> stream)
      : io_(io),
        pid_(pid),
        start_time_(start_time),
        parent_(parent),
        run_dir_(std::move(run_dir)),
        pidfd_(std::move(pidfd)),
        observer_(io.unixEventPort, pidfd_.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ),
        stream_(kj::mv(stream)),
        client_(*stream_, kMaxFdsPerMessage),
        control_(client_.bootstrap().castAs<vrpc::VmmControl>()),
        exit_(WatchExit().fork()) {}
  // kj's members may throw from their destructors in principle; here that would be a bug.
  ~VmmProcessImpl() noexcept override {}

  pid_t pid() const override { return pid_; }
  uint64_t start_time() const override { return start_time_; }
  const std::string& run_dir() const override { return run_dir_; }
  vrpc::VmmControl::Client control() override { return control_; }
  kj::Promise<VmmExit> OnExit() override { return exit_.addBranch(); }

  void Kill() override {
    if (syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0) != 0 && errno != ESRCH) {
      ThrowErrno(kj::str("kill keel-vmm ", pid_), errno);
    }
  }

  kj::Timer& timer() { return io_.provider->getTimer(); }

 private:
  // The pidfd turns readable once the process has exited. The observer is edge-triggered,
  // so look before waiting.
  kj::Promise<VmmExit> WatchExit() {
    pollfd p{pidfd_.get(), POLLIN, 0};
    if (poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0) return Collect();
    return observer_.whenBecomesReadable().then([this] { return WatchExit(); });
  }

  // Never blocks the event loop: the pidfd can turn readable while the VMM's other threads
  // are still being torn down, before the process can be reaped; then look again shortly.
  kj::Promise<VmmExit> Collect() {
    if (parent_) {
      siginfo_t info{};
      int r;
      do {
        r = waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED | WNOHANG);
      } while (r != 0 && errno == EINTR);
      if (r == 0 && info.si_pid == 0) {
        return timer().afterDelay(1 * kj::MILLISECONDS).then([this] { return Collect(); });
      }
      if (info.si_pid != 0) {
        VmmExit exit;
        if (info.si_code == CLD_EXITED) {
          exit.exit_status = info.si_status;
          exit.description = absl::StrCat("exited with status ", info.si_status);
        } else {
          exit.signal = info.si_status;
          exit.description = absl::StrCat("killed by ", SignalName(info.si_status));
        }
        return exit;
      }
    }
    std::optional<VmmExit> from_file = ExitFromRunDir(run_dir_);
    if (from_file.has_value()) return *from_file;
    return VmmExit{-1, 0, "vanished without writing its exit file (killed?)"};
  }

  kj::AsyncIoContext& io_;
  const pid_t pid_;
  const uint64_t start_time_;
  const bool parent_;
  const std::string run_dir_;
  ScopedFd pidfd_;
  kj::UnixEventPort::FdObserver observer_;
  kj::Own<kj::AsyncCapabilityStream> stream_;
  capnp::TwoPartyClient client_;
  vrpc::VmmControl::Client control_;
  kj::ForkedPromise<VmmExit> exit_;  // last: WatchExit uses the members above
};

// Starts keel-vmm in control mode on one end of a socketpair; returns the process with the
// control channel connected (nothing sent yet). The run directory exists.
kj::Own<VmmProcessImpl> StartVmm(kj::AsyncIoContext& io, const VmmLaunch& launch) {
  const std::string exit_file = launch.run_dir + "/exit";
  unlink(exit_file.c_str());  // left by an earlier run of the same VM
  ScopedFd log =
      AboveChildFds(OpenOrThrow(launch.run_dir + "/vmm.log", O_WRONLY | O_CREAT | O_APPEND, 0640));
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    ThrowErrno("socketpair", errno);
  }
  ScopedFd ours(sv[0]);
  ScopedFd theirs = AboveChildFds(ScopedFd(sv[1]));

  const std::string fd_arg = std::to_string(kChildControlFd);
  const std::string socket_path = launch.run_dir + "/control.sock";
  std::vector<std::string> args = {launch.vmm_path,    "--control-fd", fd_arg,
                                   "--control-socket", socket_path,    "--vm-id",
                                   launch.vm_id,       "--exit-file",  exit_file};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  // posix_spawn (clone(CLONE_VM|CLONE_VFORK)): no copy of keeld's address space. The child
  // gets its own session, stdin /dev/null, stdout/stderr the log, the control socket as fd
  // 3, default signal dispositions, an empty signal mask, and no other descriptor.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, log.get(), STDERR_FILENO);
  posix_spawn_file_actions_adddup2(&actions, theirs.get(), kChildControlFd);
  posix_spawn_file_actions_addclosefrom_np(&actions, kChildControlFd + 1);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  const int err = posix_spawn(&pid, launch.vmm_path.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) ThrowErrno(kj::str("start ", launch.vmm_path.c_str()), err);
  // keeld is the parent and nothing else reaps, so the pid cannot be reused before this.
  ScopedFd pidfd(PidfdOpen(pid));
  if (!pidfd) {
    const int e = errno;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    ThrowErrno("pidfd_open", e);
  }
  theirs.Reset();
  auto stream = io.lowLevelProvider->wrapUnixSocketFd(kj::AutoCloseFd(ours.Release()));
  return kj::heap<VmmProcessImpl>(io, pid, VmmProcess::ProcessStartTime(pid), std::move(pidfd),
                                  /*parent=*/true, launch.run_dir, kj::mv(stream));
}

void FillLaunchConfig(VmmLaunch& launch, ScopedFd console_log, vrpc::LaunchConfig::Builder config) {
  config.setVmId(launch.vm_id);
  config.setKernel(PassFd(std::move(launch.kernel)));
  if (launch.initrd.valid()) config.setInitrd(PassFd(std::move(launch.initrd)));
  config.setCmdline(launch.cmdline);
  config.setMemoryMib(launch.memory_mib);
  config.setVcpus(launch.vcpus);
  config.setStartPaused(launch.start_paused);
  config.setConsoleLog(PassFd(std::move(console_log)));
  auto disks = config.initDisks(static_cast<uint>(launch.disks.size()));
  for (uint i = 0; i < disks.size(); ++i) {
    VmmDisk& d = launch.disks[i];
    disks[i].setImage(PassFd(std::move(d.image)));
    disks[i].setName(d.name);
    disks[i].setReadOnly(d.read_only);
    disks[i].setDirectIo(d.direct_io);
    disks[i].setSerial(d.serial);
  }
  auto nics = config.initNics(static_cast<uint>(launch.nics.size()));
  for (uint i = 0; i < nics.size(); ++i) {
    VmmNic& n = launch.nics[i];
    nics[i].setTap(PassFd(std::move(n.tap)));
    nics[i].setName(n.name);
    nics[i].setMac(kj::arrayPtr(n.mac.bytes.data(), n.mac.bytes.size()));
    nics[i].setMtu(n.mtu);
  }
}

// The error Spawn reports when keel-vmm did not launch the VM.
kj::Exception LaunchError(const kj::Exception& rpc_error, const VmmExit& exit,
                          const std::string& run_dir) {
  if (rpc_error.getType() == kj::Exception::Type::FAILED) {
    // keel-vmm's one-line message, without the RPC layer's prefix.
    absl::string_view message = rpc_error.getDescription().cStr();
    absl::ConsumePrefix(&message, "remote exception: ");
    return Error(kj::Exception::Type::FAILED, kj::str(std::string(message).c_str()));
  }
  return Error(kj::Exception::Type::FAILED,
               kj::str("keel-vmm ", exit.description.c_str(), " before launching the VM (",
                       rpc_error.getDescription(), "); see ", run_dir.c_str(), "/vmm.log"));
}

}  // namespace

kj::Promise<kj::Own<VmmProcess>> VmmProcess::Spawn(kj::AsyncIoContext& io, VmmLaunch launch) {
  return kj::evalNow([&]() -> kj::Promise<kj::Own<VmmProcess>> {
    if (launch.run_dir.empty()) {
      return Error(kj::Exception::Type::FAILED, "VmmLaunch.run_dir is empty");
    }
    // Everything that can fail on keeld's side happens before the process exists.
    MakeDirs(launch.run_dir);
    ScopedFd console_log =
        OpenOrThrow(launch.run_dir + "/console.log", O_WRONLY | O_CREAT | O_APPEND, 0640);
    kj::Own<VmmProcessImpl> process = StartVmm(io, launch);
    VmmProcessImpl* p = process.get();
    const std::string run_dir = launch.run_dir;
    // The launch goes out only once the bootstrap answer is in: then keeld has nothing left
    // to write to the VMM before the launch reply, so a guest that exits at once (and its VMM
    // with it) cannot turn a write of keeld's into EPIPE, which would fail the launch call
    // although its reply is already waiting in the socket.
    const kj::Duration call_timeout = launch.call_timeout;
    auto launched = p->control().whenResolved().then(
        [p, launch = kj::mv(launch), console_log = std::move(console_log)]() mutable {
          auto request = p->control().launchRequest();
          FillLaunchConfig(launch, std::move(console_log), request.initConfig());
          return request.send().ignoreResult();
        });
    // One that never answers its launch is hung: killed when the time is up.
    return Bounded(p->timer(), call_timeout, kj::mv(launched), "launch",
                   kj::Function<void()>([p] { p->Kill(); }))
        .then([]() -> kj::Promise<void> { return kj::READY_NOW; },
              [p, run_dir](kj::Exception&& e) -> kj::Promise<void> {
                // keel-vmm exits after a refused launch: reap it before reporting.
                auto killed = p->timer().afterDelay(kLaunchFailureExitWait).then([p] {
                  p->Kill();
                  return p->OnExit();
                });
                return p->OnExit()
                    .exclusiveJoin(kj::mv(killed))
                    .then([e = kj::mv(e), run_dir](VmmExit exit) -> kj::Promise<void> {
                      return LaunchError(e, exit, run_dir);
                    });
              })
        .then([process = kj::mv(process)]() mutable -> kj::Own<VmmProcess> {
          return kj::mv(process);
        });
  });
}

kj::Promise<kj::Own<VmmProcess>> VmmProcess::Attach(kj::AsyncIoContext& io, std::string run_dir,
                                                    pid_t pid, uint64_t start_time,
                                                    kj::Duration call_timeout) {
  return kj::evalNow([&]() -> kj::Promise<kj::Own<VmmProcess>> {
    auto gone = [&](kj::StringPtr why) {
      return Error(kj::Exception::Type::DISCONNECTED,
                   kj::str("keel-vmm ", pid, " for ", run_dir.c_str(), ": ", why));
    };
    ScopedFd pidfd(PidfdOpen(pid));
    if (!pidfd) return gone("the process is gone");
    // Checked after pidfd_open: from here on the pidfd names this very process.
    if (start_time == 0 || ProcessStartTime(pid) != start_time) {
      return gone("that pid now belongs to another process");
    }
    const std::string path = run_dir + "/control.sock";
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) return gone("the control socket path is too long");
    memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    ScopedFd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!sock) ThrowErrno("socket", errno);
    // A unix-domain connect completes (or fails) at once.
    if (connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
      const int err = errno;
      // Our VMM, alive but out of reach (its socket is gone or stale): nothing can control
      // it any more, so it is ended rather than left running unseen.
      syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
      unlink(path.c_str());
      return gone(kj::str("cannot connect to ", path.c_str(), ": ", strerror(err),
                          "; the process was killed"));
    }
    auto stream = io.lowLevelProvider->wrapUnixSocketFd(kj::AutoCloseFd(sock.Release()));
    auto process = kj::heap<VmmProcessImpl>(io, pid, start_time, std::move(pidfd),
                                            /*parent=*/false, run_dir, kj::mv(stream));
    // Proves the VMM answers before handing the process out; one that does not is killed.
    VmmProcessImpl* p = process.get();
    auto info = Bounded(p->timer(), call_timeout,
                        process->control().infoRequest().send().ignoreResult(), "info");
    return info.then(
        [process = kj::mv(process)]() mutable -> kj::Own<VmmProcess> { return kj::mv(process); },
        [p, path](kj::Exception&& e) -> kj::Own<VmmProcess> {
          p->Kill();
          unlink(path.c_str());
          kj::throwFatalException(kj::mv(e));
        });
  });
}

std::optional<VmmExit> VmmProcess::ExitFromRunDir(const std::string& run_dir) {
  FILE* f = fopen((run_dir + "/exit").c_str(), "re");
  if (f == nullptr) return std::nullopt;
  char buf[32] = {};
  const size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  int status = 0;
  VmmExit exit;
  if (absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(buf, n)), &status)) {
    exit.exit_status = status;
    exit.description = absl::StrCat("exited with status ", status);
  } else {
    exit.description = "left an unreadable exit file";
  }
  return exit;
}

uint64_t VmmProcess::ProcessStartTime(pid_t pid) {
  FILE* f = fopen(absl::StrCat("/proc/", pid, "/stat").c_str(), "re");
  if (f == nullptr) return 0;
  char buf[1024] = {};
  const size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  // Field 2 (comm) may hold spaces and parentheses: count fields after its last ')'.
  absl::string_view stat(buf, n);
  const size_t paren = stat.rfind(')');
  if (paren == absl::string_view::npos) return 0;
  stat.remove_prefix(paren + 1);
  // Fields 3.. follow; starttime is field 22.
  int field = 2;
  size_t pos = 0;
  while (pos < stat.size()) {
    while (pos < stat.size() && stat[pos] == ' ') ++pos;
    const size_t end = std::min(stat.find(' ', pos), stat.size());
    if (pos >= end) break;
    if (++field == 22) {
      uint64_t start = 0;
      return absl::SimpleAtoi(stat.substr(pos, end - pos), &start) ? start : 0;
    }
    pos = end;
  }
  return 0;
}

}  // namespace keel::agent
