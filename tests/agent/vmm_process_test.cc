// VmmProcess against the real keel-vmm on /dev/kvm, running the test guest's `idle` scenario
// (prints its banner and "keeltest: idle", then waits for the ACPI power button).
//
// Environment (set by meson): KEEL_VMM (the keel-vmm binary), KEEL_GUEST_ELF (the guest).
// Skipped when /dev/kvm is not usable.
#include "agent/vmm_process.h"

#include <capnp/rpc-twoparty.h>
#include <fcntl.h>
#include <kj/async-io.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace keel::agent {
namespace {

namespace vrpc = ::keel::rpc::vmm;
using ::testing::HasSubstr;

// Upper bound for waits on the guest; a hang fails the test instead of blocking the suite.
constexpr auto kGuestWait = 60 * kj::SECONDS;

std::string ReadFile(const std::string& path) {
  std::string text;
  FILE* f = fopen(path.c_str(), "re");
  if (f == nullptr) return text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
  fclose(f);
  return text;
}

// Records what followConsole pushes, by offset.
class RecordingSink final : public vrpc::ConsoleSink::Server {
 public:
  explicit RecordingSink(std::string* text) : text_(text) {}
  kj::Promise<void> write(WriteContext context) override {
    auto data = context.getParams().getData();
    text_->append(reinterpret_cast<const char*>(data.begin()), data.size());
    return kj::READY_NOW;
  }

 private:
  std::string* text_;  // owned by the test
};

class VmmProcessTest : public ::testing::Test {
 protected:
  ~VmmProcessTest() noexcept override {}

  void SetUp() override {
    if (access("/dev/kvm", R_OK | W_OK) != 0) GTEST_SKIP() << "/dev/kvm is not usable";
    const char* vmm = getenv("KEEL_VMM");
    const char* guest = getenv("KEEL_GUEST_ELF");
    ASSERT_NE(vmm, nullptr) << "KEEL_VMM is not set";
    ASSERT_NE(guest, nullptr) << "KEEL_GUEST_ELF is not set";
    vmm_ = vmm;
    guest_ = guest;
    char tmpl[] = "/tmp/keel-vmm-process-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    base_dir_ = tmpl;
    run_dir_ = base_dir_ + "/vms/test-vm";
  }

  void TearDown() override {
    // Whatever a failed test left running is killed and reaped (for one that has exited
    // already, Kill does nothing and OnExit is ready).
    for (auto& [pid, process] : processes_) {
      process->Kill();
      process->OnExit().wait(io_.waitScope);
    }
    processes_.clear();
    for (pid_t pid : orphans_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    // KEEL_KEEP_TEST_DIRS=1 keeps the run directories (vmm.log) for debugging.
    if (!base_dir_.empty() && getenv("KEEL_KEEP_TEST_DIRS") == nullptr) {
      std::filesystem::remove_all(base_dir_);
    }
  }

  VmmLaunch Launch(const std::string& kernel_path, const std::string& cmdline) {
    VmmLaunch launch;
    launch.vmm_path = vmm_;
    launch.vm_id = "test-vm";
    launch.run_dir = run_dir_;
    launch.kernel = ScopedFd(open(kernel_path.c_str(), O_RDONLY | O_CLOEXEC));
    launch.cmdline = cmdline;
    launch.memory_mib = 32;
    launch.vcpus = 1;
    return launch;
  }
  VmmLaunch IdleLaunch() { return Launch(guest_, "keeltest=idle"); }

  // Spawns and keeps the process for TearDown.
  VmmProcess& Spawn(VmmLaunch launch) {
    kj::Own<VmmProcess> p = VmmProcess::Spawn(io_, std::move(launch)).wait(io_.waitScope);
    VmmProcess& ref = *p;
    processes_[p->pid()] = kj::mv(p);
    return ref;
  }

  template <typename T>
  T Wait(kj::Promise<T> promise) {
    return promise
        .exclusiveJoin(io_.provider->getTimer().afterDelay(kGuestWait).then([]() -> T {
          KJ_FAIL_ASSERT("timed out waiting for the VMM");
        }))
        .wait(io_.waitScope);
  }

  // Polls console() until it holds `needle`; returns the console text.
  std::string WaitForConsole(vrpc::VmmControl::Client control, const std::string& needle) {
    auto deadline = io_.provider->getTimer().now() + kGuestWait;
    while (true) {
      auto request = control.consoleRequest();
      request.setOffset(0);
      request.setMaxBytes(1 << 20);
      auto response = request.send().wait(io_.waitScope);
      auto data = response.getData();
      std::string text(reinterpret_cast<const char*>(data.begin()), data.size());
      if (text.find(needle) != std::string::npos) return text;
      if (io_.provider->getTimer().now() > deadline) {
        ADD_FAILURE() << "console never showed \"" << needle << "\": " << text;
        return text;
      }
      io_.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(io_.waitScope);
    }
  }

  void Shutdown(vrpc::VmmControl::Client control, bool hard) {
    auto request = control.shutdownRequest();
    request.setHard(hard);
    request.send().wait(io_.waitScope);
  }

  VmmExit ExitOf(VmmProcess& process) { return Wait(process.OnExit()); }

  kj::AsyncIoContext io_ = kj::setupAsyncIo();
  std::string vmm_;
  std::string guest_;
  std::string base_dir_;
  std::string run_dir_;
  std::map<pid_t, kj::Own<VmmProcess>> processes_;
  std::vector<pid_t> orphans_;  // spawned by a VmmProcess the test dropped
};

TEST_F(VmmProcessTest, InfoPauseResumeStatsConsoleThenGracefulShutdown) {
  VmmProcess& vmm = Spawn(IdleLaunch());
  auto control = vmm.control();

  auto info_response = control.infoRequest().send().wait(io_.waitScope);
  auto info = info_response.getInfo();  // valid while the response lives
  EXPECT_EQ(info.getVmId(), "test-vm");
  EXPECT_EQ(info.getPid(), vmm.pid());
  EXPECT_EQ(info.getState(), vrpc::RunState::RUNNING);
  EXPECT_NE(vmm.start_time(), 0u);
  EXPECT_EQ(vmm.start_time(), VmmProcess::ProcessStartTime(vmm.pid()));
  {
    // Field 22 of /proc/PID/stat, counted independently (comm is "(keel-vmm)").
    std::string stat = ReadFile("/proc/" + std::to_string(vmm.pid()) + "/stat");
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 22; ++i) fields >> field;
    EXPECT_EQ(std::to_string(vmm.start_time()), field);
  }

  std::string console = WaitForConsole(control, "keeltest: idle\n");
  EXPECT_THAT(console, HasSubstr("keel-guest: booted pvh"));

  auto paused_response = control.pauseRequest().send().wait(io_.waitScope);
  auto paused = paused_response.getInfo();  // valid while the response lives
  EXPECT_EQ(paused.getState(), vrpc::RunState::PAUSED);
  auto stats_response = control.statsRequest().send().wait(io_.waitScope);
  auto stats = stats_response.getStats();  // valid while the response lives
  EXPECT_EQ(stats.getState(), vrpc::RunState::PAUSED);
  EXPECT_GT(stats.getUptimeNs(), 0u);
  EXPECT_GT(stats.getCpuTimeNs(), 0u);
  EXPECT_GT(stats.getRssBytes(), 0u);
  RecordProperty("vmm_rss_bytes", std::to_string(stats.getRssBytes()));
  EXPECT_GE(stats.getConsoleBytes(), console.size());
  EXPECT_GT(stats.getVcpuExits(), 0u);
  EXPECT_EQ(stats.getDisks().size(), 0u);
  EXPECT_EQ(stats.getNics().size(), 0u);
  auto resumed_response = control.resumeRequest().send().wait(io_.waitScope);
  auto resumed = resumed_response.getInfo();  // valid while the response lives
  EXPECT_EQ(resumed.getState(), vrpc::RunState::RUNNING);

  // A console read from an offset returns what follows it.
  auto tail = control.consoleRequest();
  tail.setOffset(console.size() - 5);
  tail.setMaxBytes(100);
  auto tail_data = tail.send().wait(io_.waitScope);
  EXPECT_EQ(tail_data.getStartOffset(), console.size() - 5);
  EXPECT_EQ(tail_data.getNextOffset(), tail_data.getStartOffset() + tail_data.getData().size());

  // Pausing first: the power button is pressed while paused, and the guest sees it once
  // resumed; meanwhile the VMM says it is stopping.
  control.pauseRequest().send().wait(io_.waitScope);
  Shutdown(control, /*hard=*/false);
  EXPECT_EQ(control.infoRequest().send().wait(io_.waitScope).getInfo().getState(),
            vrpc::RunState::STOPPING);
  control.resumeRequest().send().wait(io_.waitScope);
  VmmExit exit = ExitOf(vmm);
  EXPECT_EQ(exit.exit_status, 0) << exit.description;
  EXPECT_EQ(exit.signal, 0);
  EXPECT_TRUE(exit.clean());
  EXPECT_EQ(ReadFile(run_dir_ + "/exit"), "0\n");
  EXPECT_THAT(ReadFile(run_dir_ + "/console.log"), HasSubstr("keeltest: idle power button"));
  EXPECT_FALSE(std::filesystem::exists(run_dir_ + "/control.sock"));
  std::optional<VmmExit> from_file = VmmProcess::ExitFromRunDir(run_dir_);
  ASSERT_TRUE(from_file.has_value());
  EXPECT_EQ(from_file->exit_status, 0);
}

TEST_F(VmmProcessTest, FollowConsoleFromAPausedStart) {
  VmmLaunch launch = IdleLaunch();
  launch.start_paused = true;
  VmmProcess& vmm = Spawn(std::move(launch));
  auto control = vmm.control();
  EXPECT_EQ(control.infoRequest().send().wait(io_.waitScope).getInfo().getState(),
            vrpc::RunState::PAUSED);

  std::string followed;
  auto follow = control.followConsoleRequest();
  follow.setOffset(0);
  follow.setSink(kj::heap<RecordingSink>(&followed));
  auto handle = follow.send().wait(io_.waitScope).getHandle();
  control.resumeRequest().send().wait(io_.waitScope);

  auto deadline = io_.provider->getTimer().now() + kGuestWait;
  while (followed.find("keeltest: idle\n") == std::string::npos &&
         io_.provider->getTimer().now() < deadline) {
    io_.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(io_.waitScope);
  }
  EXPECT_THAT(followed, HasSubstr("keel-guest: booted pvh"));
  EXPECT_THAT(followed, HasSubstr("keeltest: idle\n"));

  Shutdown(control, /*hard=*/true);
  VmmExit exit = ExitOf(vmm);
  EXPECT_EQ(exit.exit_status, 0) << exit.description;
  EXPECT_EQ(ReadFile(run_dir_ + "/exit"), "0\n");
}

TEST_F(VmmProcessTest, ADiskPassedAsADescriptorServesTheGuestAndReportsStats) {
  const std::string image = base_dir_ + "/disk.img";
  ScopedFd disk_fd(open(image.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(disk_fd.valid());
  ASSERT_EQ(ftruncate(disk_fd.get(), 4 << 20), 0);
  // Sequential 4 KiB writes for far longer than the test lasts; the VMM is killed once its
  // stats show some.
  VmmLaunch launch = Launch(guest_, "keeltest=blk-bench,qd=1,bs=4096,secs=600,rw=write");
  launch.disks.push_back(VmmDisk{std::move(disk_fd), "data", false, false, "keel-test-disk"});
  VmmProcess& vmm = Spawn(std::move(launch));
  auto control = vmm.control();

  auto deadline = io_.provider->getTimer().now() + kGuestWait;
  uint64_t write_ops = 0;
  while (write_ops == 0 && io_.provider->getTimer().now() < deadline) {
    io_.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(io_.waitScope);
    auto response = control.statsRequest().send().wait(io_.waitScope);
    auto disks = response.getStats().getDisks();
    ASSERT_EQ(disks.size(), 1u);
    EXPECT_EQ(disks[0].getName(), "data");
    EXPECT_EQ(disks[0].getReadOps(), 0u);
    EXPECT_EQ(disks[0].getErrors(), 0u);
    EXPECT_EQ(disks[0].getWriteBytes(), disks[0].getWriteOps() * 4096);
    EXPECT_EQ(response.getStats().getNics().size(), 0u);
    write_ops = disks[0].getWriteOps();
  }
  EXPECT_GT(write_ops, 0u);
  vmm.Kill();
  EXPECT_EQ(ExitOf(vmm).signal, SIGKILL);
}

TEST_F(VmmProcessTest, HardShutdownRepliesThenExitsZero) {
  VmmProcess& vmm = Spawn(IdleLaunch());
  auto control = vmm.control();
  WaitForConsole(control, "keeltest: idle\n");
  // A second launch is refused and changes nothing.
  try {
    control.launchRequest().send().wait(io_.waitScope);
    ADD_FAILURE() << "a second launch was accepted";
  } catch (const kj::Exception& e) {
    EXPECT_EQ(e.getType(), kj::Exception::Type::FAILED);
    EXPECT_THAT(std::string(e.getDescription().cStr()), HasSubstr("already launched"));
  }
  EXPECT_EQ(control.infoRequest().send().wait(io_.waitScope).getInfo().getState(),
            vrpc::RunState::RUNNING);
  Shutdown(control, /*hard=*/true);
  VmmExit exit = ExitOf(vmm);
  EXPECT_EQ(exit.exit_status, 0) << exit.description;
  EXPECT_EQ(ReadFile(run_dir_ + "/exit"), "0\n");
  // The guest never saw a power button.
  EXPECT_THAT(ReadFile(run_dir_ + "/console.log"), ::testing::Not(HasSubstr("idle power button")));
}

TEST_F(VmmProcessTest, SigkillIsReportedAsTheSignal) {
  VmmProcess& vmm = Spawn(IdleLaunch());
  vmm.Kill();
  VmmExit exit = ExitOf(vmm);
  EXPECT_EQ(exit.exit_status, -1);
  EXPECT_EQ(exit.signal, SIGKILL);
  EXPECT_THAT(exit.description, HasSubstr("SIGKILL"));
  EXPECT_FALSE(exit.clean());
  EXPECT_FALSE(VmmProcess::ExitFromRunDir(run_dir_).has_value());
  // OnExit answers every caller the same.
  EXPECT_EQ(Wait(vmm.OnExit()).signal, SIGKILL);
}

TEST_F(VmmProcessTest, ASecondClientAttachesThroughTheControlSocket) {
  kj::Own<VmmProcess> first = VmmProcess::Spawn(io_, IdleLaunch()).wait(io_.waitScope);
  const pid_t pid = first->pid();
  const uint64_t start_time = first->start_time();
  orphans_.push_back(pid);
  WaitForConsole(first->control(), "keeltest: idle\n");
  std::string followed;  // outlives everything that may write to it
  {
    // A console follower dies with the connection too.
    auto follow = first->control().followConsoleRequest();
    follow.setOffset(0);
    follow.setSink(kj::heap<RecordingSink>(&followed));
    auto response = follow.send().wait(io_.waitScope);
    first = nullptr;  // keeld goes away; the VM stays
  }

  // The wrong start time means "not that process".
  auto wrong = VmmProcess::Attach(io_, run_dir_, pid, start_time + 1, 5 * kj::SECONDS);
  EXPECT_THROW(
      {
        try {
          wrong.wait(io_.waitScope);
        } catch (const kj::Exception& e) {
          EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED);
          throw;
        }
      },
      kj::Exception);

  kj::Own<VmmProcess> second =
      VmmProcess::Attach(io_, run_dir_, pid, start_time, 5 * kj::SECONDS).wait(io_.waitScope);
  auto control = second->control();
  EXPECT_EQ(control.infoRequest().send().wait(io_.waitScope).getInfo().getState(),
            vrpc::RunState::RUNNING);
  EXPECT_THAT(WaitForConsole(control, "keeltest: idle\n"), HasSubstr("keel-guest: booted pvh"));

  Shutdown(control, /*hard=*/false);
  // Not the parent: the status comes from the exit file.
  VmmExit exit = Wait(second->OnExit());
  EXPECT_EQ(exit.exit_status, 0) << exit.description;
  EXPECT_EQ(exit.signal, 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  orphans_.clear();
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(VmmProcessTest, AttachToAnExitedVmmFailsAndTheExitFileTells) {
  VmmProcess& vmm = Spawn(IdleLaunch());
  const pid_t pid = vmm.pid();
  const uint64_t start_time = vmm.start_time();
  Shutdown(vmm.control(), /*hard=*/true);
  ASSERT_EQ(ExitOf(vmm).exit_status, 0);

  EXPECT_EQ(VmmProcess::ProcessStartTime(pid), 0u);
  auto attach = VmmProcess::Attach(io_, run_dir_, pid, start_time, 5 * kj::SECONDS);
  try {
    attach.wait(io_.waitScope);
    ADD_FAILURE() << "attached to a VMM that has exited";
  } catch (const kj::Exception& e) {
    EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED);
  }
  std::optional<VmmExit> exit = VmmProcess::ExitFromRunDir(run_dir_);
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->exit_status, 0);
  EXPECT_EQ(exit->description, "exited with status 0");
}

TEST_F(VmmProcessTest, ANonKernelIsRefusedWithExitStatus2) {
  const std::string bogus = base_dir_ + "/not-a-kernel";
  FILE* f = fopen(bogus.c_str(), "we");
  ASSERT_NE(f, nullptr);
  for (int i = 0; i < 512; ++i) fputs("this is not a kernel image\n", f);
  fclose(f);

  auto spawn = VmmProcess::Spawn(io_, Launch(bogus, "keeltest=idle"));
  try {
    kj::Own<VmmProcess> p = spawn.wait(io_.waitScope);
    processes_[p->pid()] = kj::mv(p);
    ADD_FAILURE() << "launch of a text file succeeded";
  } catch (const kj::Exception& e) {
    RecordProperty("launch_error", e.getDescription().cStr());
    EXPECT_EQ(e.getType(), kj::Exception::Type::FAILED);
    EXPECT_THAT(std::string(e.getDescription().cStr()), HasSubstr("kernel"));
    EXPECT_THAT(std::string(e.getDescription().cStr()),
                ::testing::Not(HasSubstr("remote exception")));
    EXPECT_THAT(std::string(e.getDescription().cStr()), ::testing::Not(HasSubstr("\n")));
  }
  EXPECT_EQ(ReadFile(run_dir_ + "/exit"), "2\n");
  EXPECT_THAT(ReadFile(run_dir_ + "/vmm.log"), HasSubstr("keel-vmm"));
}

}  // namespace
}  // namespace keel::agent
