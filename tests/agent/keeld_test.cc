// keeld end to end: a real keeld binary on a temporary state/run/image directory and socket,
// driven over Cap'n Proto, booting the test guest in the real keel-vmm. Skipped without
// /dev/kvm or root. Everything a test makes (processes, taps, bridges, directories) is removed
// in TearDown, whether the test passed or not.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "capnp/ez-rpc.h"
#include "capnp/rpc-twoparty.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"
#include "kj/compat/tls.h"
#include "net/bridged_tap.h"
#include "net/netlink.h"
#include "rpc/keel.capnp.h"
#include "rpc/vmm.capnp.h"
#include "sqlite3.h"

namespace keel::agent {
namespace {

namespace fs = std::filesystem;
using rpc::VmState;

class RecordingSink final : public rpc::EventSink::Server {
 public:
  explicit RecordingSink(std::shared_ptr<std::vector<std::pair<rpc::EventType, std::string>>> out)
      : out_(std::move(out)) {}

 protected:
  kj::Promise<void> push(PushContext context) override {
    auto e = context.getParams().getEvent();
    out_->emplace_back(e.getType(), e.getVmName());
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<std::vector<std::pair<rpc::EventType, std::string>>> out_;
};

class KeeldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/dev/kvm", R_OK | W_OK) != 0) GTEST_SKIP() << "/dev/kvm is not usable";
    if (geteuid() != 0) GTEST_SKIP() << "keeld's tests need root (taps, bridges)";
    const char* keeld = getenv("KEEL_KEELD");
    vmm_ = getenv("KEEL_VMM");
    const char* guest = getenv("KEEL_GUEST_ELF");
    ASSERT_TRUE(keeld && vmm_ && guest) << "run through meson test";
    keeld_ = keeld;
    char tmpl[] = "/tmp/keeld-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ + "/images");
    fs::copy_file(guest, dir_ + "/images/guest.elf");
    socket_ = dir_ + "/keel.sock";
    StartKeeld();
  }

  void TearDown() override {
    agent_.reset();
    client_.reset();
    StopKeeld();
    KillVmms();
    if (net::NetlinkSocket::Open().ok()) {
      auto nl = net::NetlinkSocket::Open();
      for (const std::string& link : links_) (void)nl->DeleteLink(link);
    }
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }

  void StartKeeld(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {keeld_,
                                     "--state-dir=" + dir_ + "/state",
                                     "--run-dir=" + dir_ + "/run",
                                     "--image-dir=" + dir_ + "/images",
                                     "--socket=" + socket_,
                                     std::string("--vmm=") + vmm_};
    for (auto& a : extra) args.push_back(a);
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    // keeld listens once recovery is done: wait for the socket to accept.
    for (int i = 0; i < 3000; ++i) {
      if (CanConnect()) break;
      int status;
      ASSERT_EQ(waitpid(pid_, &status, WNOHANG), 0) << "keeld exited early";
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    client_ = std::make_unique<capnp::EzRpcClient>(kj::str("unix:", socket_.c_str()));
    agent_ = std::make_unique<rpc::HostAgent::Client>(client_->getMain<rpc::HostAgent>());
  }

  // Stops keeld with `sig` (dropping this client first) and starts it again on the same state.
  void RestartKeeld(int sig, std::vector<std::string> extra = {}) {
    agent_.reset();
    client_.reset();
    StopKeeld(sig);
    StartKeeld(std::move(extra));
  }

  bool CanConnect() {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", socket_.c_str());
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    return ok;
  }

  void StopKeeld(int sig = SIGKILL) {
    if (pid_ > 0) {
      kill(pid_, sig);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

  // Any keel-vmm whose control socket lies under this test's run directory.
  std::vector<pid_t> Vmms() {
    std::vector<pid_t> out;
    std::string prefix = dir_ + "/run/vms/";
    for (const auto& e : fs::directory_iterator("/proc")) {
      std::string name = e.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream in(e.path() / "cmdline");
      std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (cmd.find(prefix) != std::string::npos &&
          cmd.find("--control-socket") != std::string::npos) {
        out.push_back(std::stoi(name));
      }
    }
    return out;
  }
  // A process that looks like a keel-vmm of VM `id` under this keeld's run directory (what
  // keeld recognizes a VMM by), standing in for one whose start keeld never recorded.
  pid_t FakeVmm(const std::string& id) {
    std::string run = dir_ + "/run/vms/" + id;
    fs::create_directories(run);
    std::string sock = run + "/control.sock";
    pid_t pid = fork();
    if (pid == 0) {
      execl("/bin/sh", "sh", "-c", "while :; do sleep 1; done", "keel-vmm", "--control-socket",
            sock.c_str(), nullptr);
      _exit(127);
    }
    return pid;
  }

  // Whether process `pid` is gone, waiting up to 30 s.
  static bool WaitGone(pid_t pid) {
    for (int i = 0; i < 1500 && kill(pid, 0) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return kill(pid, 0) != 0;
  }

  void KillVmms() {
    if (dir_.empty()) return;
    for (pid_t p : Vmms()) kill(p, SIGKILL);
  }

  kj::WaitScope& ws() { return client_->getWaitScope(); }
  void Sleep(int ms) {
    client_->getIoProvider().getTimer().afterDelay(ms * kj::MILLISECONDS).wait(ws());
  }
  // Polls `done` on the event loop (so callbacks run) until true; bounded so a broken agent
  // fails the test instead of hanging it.
  bool WaitFor(const std::function<bool()>& done) {
    for (int i = 0; i < 1500; ++i) {
      if (done()) return true;
      Sleep(20);
    }
    return done();
  }

  // A spec for the idle test guest.
  void FillSpec(rpc::VmSpec::Builder s, const std::string& name, bool auto_start = true) {
    s.setName(name);
    s.setVcpus(1);
    s.setMemoryMib(32);
    s.setKernelPath("guest.elf");
    s.setCmdline("keeltest=idle");
    s.setAutoStart(auto_start);
  }

  capnp::Response<rpc::HostAgent::CreateVmResults> Create(const std::string& request_id,
                                                          const std::string& name,
                                                          bool auto_start = true) {
    auto req = agent_->createVmRequest();
    req.setRequestId(request_id);
    FillSpec(req.initSpec(), name, auto_start);
    return req.send().wait(ws());
  }

  // Creates a running idle VM; its id and VMM pid (0 if it failed).
  std::pair<std::string, int32_t> CreateRunning(const std::string& name) {
    auto r = Create("req-" + name, name);
    if (!r.getResult().isVm()) return {"", 0};
    auto info = r.getResult().getVm().getInfo();
    return {info.getId(), info.getPid()};
  }

  rpc::VmInfo::Reader InfoOf(capnp::Response<rpc::Vm::InfoResults>& r) {
    return r.getResult().getInfo();
  }

  bool LinkExists(const std::string& name) {
    auto nl = net::NetlinkSocket::Open();
    auto exists = nl->LinkExists(name);
    return exists.ok() && *exists;
  }

  std::string keeld_;
  const char* vmm_ = nullptr;
  std::string dir_;
  std::string socket_;
  std::vector<std::string> links_;
  pid_t pid_ = -1;
  std::unique_ptr<capnp::EzRpcClient> client_;
  std::unique_ptr<rpc::HostAgent::Client> agent_;
};

TEST_F(KeeldTest, LifecycleOfOneVm) {
  auto host_response = agent_->hostInfoRequest().send().wait(ws());
  auto host = host_response.getInfo();
  EXPECT_EQ(host.getApiVersion(), rpc::API_VERSION);
  EXPECT_GT(host.getCpus(), 0u);
  EXPECT_GT(host.getMemoryMib(), 0u);
  EXPECT_GT(host.getKvm().getMaxVcpus(), 0u);

  auto created = Create("req-1", "web-1");
  ASSERT_TRUE(created.getResult().isVm()) << created.getResult().getError().getMessage().cStr();
  std::string id = created.getResult().getVm().getInfo().getId();
  EXPECT_EQ(created.getResult().getVm().getInfo().getState(), VmState::RUNNING);
  EXPECT_GT(created.getResult().getVm().getInfo().getPid(), 0);

  auto again = Create("req-1", "web-1");
  ASSERT_TRUE(again.getResult().isVm());
  EXPECT_EQ(std::string(again.getResult().getVm().getInfo().getId()), id);
  auto other = agent_->createVmRequest();
  other.setRequestId("req-1");
  FillSpec(other.initSpec(), "web-1");
  other.getSpec().setMemoryMib(64);
  auto clash = other.send().wait(ws());
  ASSERT_TRUE(clash.getResult().isError());
  EXPECT_EQ(clash.getResult().getError().getCode(), rpc::Error::Code::ALREADY_EXISTS);

  auto list = agent_->listVmsRequest().send().wait(ws());
  ASSERT_EQ(list.getVms().size(), 1u);
  EXPECT_EQ(std::string(list.getVms()[0].getName()), "web-1");

  auto by_name = agent_->getVmRequest();
  by_name.setVm("web-1");
  auto got = by_name.send().wait(ws());
  ASSERT_TRUE(got.getResult().isVm());
  auto by_id = agent_->getVmRequest();
  by_id.setVm(id);
  ASSERT_TRUE(by_id.send().wait(ws()).getResult().isVm());
  rpc::Vm::Client vm = got.getResult().getVm().getVm();

  auto paused = vm.pauseRequest().send().wait(ws());
  ASSERT_TRUE(paused.getResult().isInfo());
  EXPECT_EQ(paused.getResult().getInfo().getState(), VmState::PAUSED);
  auto resumed = vm.resumeRequest().send().wait(ws());
  EXPECT_EQ(resumed.getResult().getInfo().getState(), VmState::RUNNING);

  auto stats = vm.statsRequest().send().wait(ws());
  ASSERT_TRUE(stats.getResult().isStats());
  EXPECT_EQ(stats.getResult().getStats().getMemoryMib(), 32u);
  EXPECT_GT(stats.getResult().getStats().getVmmRssBytes(), 0u);

  ASSERT_TRUE(WaitFor([&] {
    auto info = vm.infoRequest().send().wait(ws());
    return info.getResult().getInfo().getConsoleBytes() > 0;
  }));
  auto console = vm.consoleRequest();
  console.setOffset(0);
  auto text = console.send().wait(ws());
  EXPECT_GT(text.getData().size(), 0u);
  EXPECT_EQ(text.getStartOffset(), 0u);

  auto down = vm.shutdownRequest();
  down.setMode(rpc::ShutdownMode::GRACEFUL);
  down.setTimeoutMs(20000);
  auto stopped = down.send().wait(ws());
  ASSERT_TRUE(stopped.getResult().isInfo());
  EXPECT_EQ(stopped.getResult().getInfo().getState(), VmState::STOPPED);
  EXPECT_EQ(stopped.getResult().getInfo().getLastExitStatus(), 0);
  EXPECT_TRUE(Vmms().empty());

  auto deleted = vm.deleteRequest().send().wait(ws());
  ASSERT_TRUE(deleted.getResult().isInfo());
  EXPECT_EQ(deleted.getResult().getInfo().getState(), VmState::DELETED);
  auto gone = agent_->getVmRequest();
  gone.setVm(id);
  auto missing = gone.send().wait(ws());
  ASSERT_TRUE(missing.getResult().isError());
  EXPECT_EQ(missing.getResult().getError().getCode(), rpc::Error::Code::NOT_FOUND);
  EXPECT_FALSE(fs::exists(dir_ + "/run/vms/" + id));
}

TEST_F(KeeldTest, BadSpecsChangeNothing) {
  ASSERT_TRUE(Create("", "taken", false).getResult().isVm());
  struct Case {
    const char* what;
    std::function<void(rpc::VmSpec::Builder)> edit;
    rpc::Error::Code code;
  };
  std::vector<Case> cases = {
      {"zero memory", [](auto s) { s.setMemoryMib(0); }, rpc::Error::Code::INVALID_ARGUMENT},
      {"zero vcpus", [](auto s) { s.setVcpus(0); }, rpc::Error::Code::INVALID_ARGUMENT},
      {"too many vcpus", [](auto s) { s.setVcpus(100000); }, rpc::Error::Code::INVALID_ARGUMENT},
      {"bad name", [](auto s) { s.setName("Bad_Name"); }, rpc::Error::Code::INVALID_ARGUMENT},
      {"taken name", [](auto s) { s.setName("taken"); }, rpc::Error::Code::ALREADY_EXISTS},
      {"missing kernel", [](auto s) { s.setKernelPath("nope.elf"); }, rpc::Error::Code::NOT_FOUND},
      {"outside image dir", [](auto s) { s.setKernelPath("/etc/passwd"); },
       rpc::Error::Code::PERMISSION_DENIED},
      {"dot-dot escape", [](auto s) { s.setKernelPath("../keel.sock"); },
       rpc::Error::Code::PERMISSION_DENIED},
      {"unknown network", [](auto s) { s.initNics(1)[0].setNetwork("nonet"); },
       rpc::Error::Code::NOT_FOUND},
      {"unknown volume", [](auto s) { s.initDisks(1)[0].setVolume("novol"); },
       rpc::Error::Code::NOT_FOUND},
  };
  for (const Case& c : cases) {
    auto req = agent_->createVmRequest();
    FillSpec(req.initSpec(), "fresh");
    c.edit(req.getSpec());
    auto r = req.send().wait(ws());
    ASSERT_TRUE(r.getResult().isError()) << c.what;
    EXPECT_EQ(r.getResult().getError().getCode(), c.code) << c.what;
    EXPECT_GT(r.getResult().getError().getMessage().size(), 0u) << c.what;
  }
  EXPECT_EQ(agent_->listVmsRequest().send().wait(ws()).getVms().size(), 1u);
  EXPECT_TRUE(Vmms().empty());
}

TEST_F(KeeldTest, RefusesWhatDoesNotFit) {
  RestartKeeld(SIGKILL, {"--cpu-overcommit=1"});
  uint32_t total =
      agent_->hostInfoRequest().send().wait(ws()).getInfo().getCapacity().getVcpusTotal();
  ASSERT_GT(total, 0u);
  for (uint32_t i = 0; i < total; ++i) {
    ASSERT_TRUE(Create("", "fill-" + std::to_string(i), false).getResult().isVm());
  }
  auto r = Create("", "one-too-many", false);
  ASSERT_TRUE(r.getResult().isError());
  EXPECT_EQ(r.getResult().getError().getCode(), rpc::Error::Code::CAPACITY_EXHAUSTED);
  auto cap_response = agent_->hostInfoRequest().send().wait(ws());
  auto cap = cap_response.getInfo().getCapacity();
  EXPECT_EQ(cap.getVcpusAllocated(), total);
}

TEST_F(KeeldTest, VmSurvivesKeeldSigkill) {
  int32_t pid = 0;
  {
    auto created = Create("r", "survivor");
    ASSERT_TRUE(created.getResult().isVm());
    pid = created.getResult().getVm().getInfo().getPid();
  }
  RestartKeeld(SIGKILL);
  ASSERT_EQ(kill(pid, 0), 0) << "the VMM died with keeld";
  {
    auto req = agent_->getVmRequest();
    req.setVm("survivor");
    auto got = req.send().wait(ws());
    ASSERT_TRUE(got.getResult().isVm());
    EXPECT_EQ(got.getResult().getVm().getInfo().getState(), VmState::RUNNING);
    EXPECT_EQ(got.getResult().getVm().getInfo().getPid(), pid);
  }
  // A polite stop (SIGTERM) leaves it running too.
  RestartKeeld(SIGTERM);
  ASSERT_EQ(kill(pid, 0), 0) << "the VMM died with keeld";
  auto again = agent_->getVmRequest();
  again.setVm("survivor");
  auto got = again.send().wait(ws());
  ASSERT_TRUE(got.getResult().isVm());
  EXPECT_EQ(got.getResult().getVm().getInfo().getState(), VmState::RUNNING);
  // Still controllable through the re-attached control socket.
  auto vm = got.getResult().getVm().getVm();
  auto paused = vm.pauseRequest().send().wait(ws());
  EXPECT_EQ(paused.getResult().getInfo().getState(), VmState::PAUSED);
  auto del = vm.deleteRequest().send().wait(ws());
  EXPECT_TRUE(del.getResult().isInfo());
  EXPECT_TRUE(Vmms().empty());
}

TEST_F(KeeldTest, CrashedVmmIsReportedToEveryWatcher) {
  auto events_a = std::make_shared<std::vector<std::pair<rpc::EventType, std::string>>>();
  auto events_b = std::make_shared<std::vector<std::pair<rpc::EventType, std::string>>>();
  auto wa = agent_->watchRequest();
  wa.setSink(kj::heap<RecordingSink>(events_a));
  auto handle_a = wa.send().wait(ws()).getHandle();
  auto wb = agent_->watchRequest();
  wb.setSink(kj::heap<RecordingSink>(events_b));
  auto handle_b = wb.send().wait(ws()).getHandle();
  // A third watcher never finishes taking an event: the others must not wait for it.
  class StalledSink final : public rpc::EventSink::Server {
   protected:
    kj::Promise<void> push(PushContext) override { return kj::NEVER_DONE; }
  };
  auto wc = agent_->watchRequest();
  wc.setSink(kj::heap<StalledSink>());
  auto handle_c = wc.send().wait(ws()).getHandle();

  auto created = Create("r", "crashy");
  ASSERT_TRUE(created.getResult().isVm());
  int32_t pid = created.getResult().getVm().getInfo().getPid();
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  auto vm = created.getResult().getVm().getVm();
  ASSERT_TRUE(WaitFor([&] {
    return vm.infoRequest().send().wait(ws()).getResult().getInfo().getState() == VmState::CRASHED;
  }));
  auto info_response = vm.infoRequest().send().wait(ws());
  auto info = info_response.getResult().getInfo();
  EXPECT_EQ(info.getLastExitStatus(), 128 + SIGKILL);
  EXPECT_GT(info.getLastError().size(), 0u);
  ASSERT_TRUE(WaitFor([&] { return events_a->size() >= 3 && events_b->size() >= 3; }));
  std::vector<rpc::EventType> want = {rpc::EventType::CREATED, rpc::EventType::STARTED,
                                      rpc::EventType::CRASHED};
  for (auto* events : {events_a.get(), events_b.get()}) {
    ASSERT_EQ(events->size(), 3u);
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ((*events)[i].first, want[i]);
      EXPECT_EQ((*events)[i].second, "crashy");
    }
  }
}

TEST_F(KeeldTest, NicTapLivesOnTheBridgeWhileTheVmRuns) {
  std::string net_name = "t" + std::to_string(getpid() % 100000);
  std::string bridge = "kbr-" + net_name;
  links_.push_back(bridge);
  auto nreq = agent_->createNetworkRequest();
  nreq.initSpec().setName(net_name);
  nreq.getSpec().setHostAddress("10.213.7.1/24");
  auto net = nreq.send().wait(ws());
  ASSERT_TRUE(net.getResult().isNetwork()) << net.getResult().getError().getMessage().cStr();
  EXPECT_TRUE(LinkExists(bridge));

  auto req = agent_->createVmRequest();
  FillSpec(req.initSpec(), "netvm");
  auto nics = req.getSpec().initNics(2);
  nics[0].setNetwork(net_name);
  nics[1].setNetwork(net_name);
  auto created = req.send().wait(ws());
  if (created.getResult().isError() &&
      std::string(created.getResult().getError().getMessage())
              .find("virtio-net is not available") != std::string::npos) {
    // This keel-vmm has no virtio-net yet: the refused VM must have left nothing behind.
    EXPECT_EQ(created.getResult().getError().getCode(), rpc::Error::Code::FAILED_PRECONDITION);
    EXPECT_EQ(agent_->listVmsRequest().send().wait(ws()).getVms().size(), 0u);
    auto nl = net::NetlinkSocket::Open();
    auto links = nl->ListLinks();
    ASSERT_TRUE(links.ok());
    std::vector<net::LinkInfo> all = *std::move(links);
    for (const auto& l : all) EXPECT_NE(l.master_name, bridge) << l.name;
    GTEST_SKIP() << "keel-vmm cannot run NICs yet";
  }
  ASSERT_TRUE(created.getResult().isVm()) << created.getResult().getError().getMessage().cStr();
  auto info = created.getResult().getVm().getInfo();
  ASSERT_EQ(info.getNics().size(), 2u);
  std::string tap = info.getNics()[0].getTap();
  links_.push_back(tap);
  links_.push_back(info.getNics()[1].getTap());
  EXPECT_NE(std::string(info.getNics()[0].getMac()), std::string(info.getNics()[1].getMac()));
  auto nl = net::NetlinkSocket::Open();
  ASSERT_TRUE(nl.ok());
  auto link = nl->GetLink(tap);
  ASSERT_TRUE(link.ok()) << link.status();
  EXPECT_EQ(link->master_name, bridge);

  auto busy = agent_->deleteNetworkRequest();
  busy.setName(net_name);
  auto refused = busy.send().wait(ws());
  ASSERT_TRUE(refused.getResult().isError());
  EXPECT_EQ(refused.getResult().getError().getCode(), rpc::Error::Code::FAILED_PRECONDITION);

  auto vm = created.getResult().getVm().getVm();
  ASSERT_TRUE(vm.deleteRequest().send().wait(ws()).getResult().isInfo());
  EXPECT_FALSE(LinkExists(tap));

  auto del = agent_->deleteNetworkRequest();
  del.setName(net_name);
  EXPECT_TRUE(del.send().wait(ws()).getResult().isOk());
  EXPECT_FALSE(LinkExists(bridge));
}

}  // namespace
}  // namespace keel::agent

namespace keel::agent {
namespace {

class ProgressSink final : public rpc::ImportProgress::Server {
 public:
  explicit ProgressSink(std::shared_ptr<std::vector<uint64_t>> done) : done_(std::move(done)) {}

 protected:
  kj::Promise<void> progress(ProgressContext context) override {
    done_->push_back(context.getParams().getDoneBytes());
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<std::vector<uint64_t>> done_;
};

TEST_F(KeeldTest, VolumesImportSparseAttachAndRefuseDeletionWhileAttached) {
  // A 64 MiB source with 1 MiB of data in the middle.
  std::string source = dir_ + "/images/src.img";
  {
    int fd = open(source.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, 64 << 20), 0);
    std::string data(1 << 20, 'k');
    ASSERT_EQ(pwrite(fd, data.data(), data.size(), 32 << 20), static_cast<ssize_t>(data.size()));
    close(fd);
  }
  auto done = std::make_shared<std::vector<uint64_t>>();
  auto imp = agent_->importVolumeRequest();
  imp.initSpec().setName("root");
  imp.setSourcePath("src.img");
  imp.setProgress(kj::heap<ProgressSink>(done));
  auto imported = imp.send().wait(ws());
  ASSERT_TRUE(imported.getResult().isVolume())
      << imported.getResult().getError().getMessage().cStr();
  auto vol = imported.getResult().getVolume();
  EXPECT_EQ(vol.getSizeBytes(), uint64_t{64} << 20);
  EXPECT_EQ(vol.getState(), rpc::VolumeState::READY);
  EXPECT_LT(vol.getAllocatedBytes(), uint64_t{8} << 20);  // holes stayed holes
  ASSERT_TRUE(WaitFor([&] { return !done->empty() && done->back() == (uint64_t{64} << 20); }));
  std::string path = vol.getPath();
  {
    std::ifstream in(path, std::ios::binary);
    in.seekg(32 << 20);
    char c = 0;
    in.read(&c, 1);
    EXPECT_EQ(c, 'k');
  }

  auto outside = agent_->importVolumeRequest();
  outside.initSpec().setName("evil");
  outside.setSourcePath("/etc/hostname");
  auto refused = outside.send().wait(ws());
  ASSERT_TRUE(refused.getResult().isError());
  EXPECT_EQ(refused.getResult().getError().getCode(), rpc::Error::Code::PERMISSION_DENIED);

  auto cv = agent_->createVolumeRequest();
  cv.initSpec().setName("data");
  cv.getSpec().setSizeBytes(1000);  // not a multiple of 512
  EXPECT_EQ(cv.send().wait(ws()).getResult().getError().getCode(),
            rpc::Error::Code::INVALID_ARGUMENT);
  auto cv2 = agent_->createVolumeRequest();
  cv2.initSpec().setName("data");
  cv2.getSpec().setSizeBytes(uint64_t{1} << 30);
  ASSERT_TRUE(cv2.send().wait(ws()).getResult().isVolume());

  auto req = agent_->createVmRequest();
  FillSpec(req.initSpec(), "with-disk", /*auto_start=*/false);
  req.getSpec().initDisks(1)[0].setVolume("root");
  auto created = req.send().wait(ws());
  ASSERT_TRUE(created.getResult().isVm());
  auto vm = created.getResult().getVm().getVm();

  auto list = agent_->listVolumesRequest().send().wait(ws());
  ASSERT_EQ(list.getVolumes().size(), 2u);
  for (auto v : list.getVolumes()) {
    EXPECT_EQ(v.getAttachedTo().size(), std::string(v.getName()) == "root" ? 1u : 0u);
  }
  auto del = agent_->deleteVolumeRequest();
  del.setName("root");
  auto busy = del.send().wait(ws());
  ASSERT_TRUE(busy.getResult().isError());
  EXPECT_EQ(busy.getResult().getError().getCode(), rpc::Error::Code::FAILED_PRECONDITION);

  // Another holder of the image's write lock: starting is refused with imageLocked.
  int lock_fd = open(path.c_str(), O_RDWR);
  ASSERT_GE(lock_fd, 0);
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  ASSERT_EQ(fcntl(lock_fd, F_OFD_SETLK, &fl), 0);
  auto start = vm.startRequest().send().wait(ws());
  close(lock_fd);
  ASSERT_TRUE(start.getResult().isError());
  EXPECT_EQ(start.getResult().getError().getCode(), rpc::Error::Code::IMAGE_LOCKED);
  EXPECT_TRUE(Vmms().empty());

  // Now it starts, with the volume as its virtio-blk disk; a second VM on the same volume is
  // refused (the running VMM holds the lock) and leaves nothing behind.
  auto started = vm.startRequest().send().wait(ws());
  ASSERT_TRUE(started.getResult().isInfo()) << started.getResult().getError().getMessage().cStr();
  EXPECT_EQ(started.getResult().getInfo().getState(), VmState::RUNNING);
  auto stats = vm.statsRequest().send().wait(ws());
  ASSERT_EQ(stats.getResult().getStats().getDisks().size(), 1u);
  EXPECT_EQ(std::string(stats.getResult().getStats().getDisks()[0].getName()), "root");
  auto second = agent_->createVmRequest();
  FillSpec(second.initSpec(), "same-disk");
  second.getSpec().initDisks(1)[0].setVolume("root");
  auto locked = second.send().wait(ws());
  ASSERT_TRUE(locked.getResult().isError());
  EXPECT_EQ(locked.getResult().getError().getCode(), rpc::Error::Code::IMAGE_LOCKED);
  EXPECT_EQ(agent_->listVmsRequest().send().wait(ws()).getVms().size(), 1u);
  EXPECT_EQ(Vmms().size(), 1u);

  ASSERT_TRUE(vm.deleteRequest().send().wait(ws()).getResult().isInfo());
  auto del2 = agent_->deleteVolumeRequest();
  del2.setName("root");
  EXPECT_TRUE(del2.send().wait(ws()).getResult().isOk());
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(KeeldTest, FollowConsoleAndReboot) {
  auto created = Create("r", "chatty");
  ASSERT_TRUE(created.getResult().isVm());
  auto vm = created.getResult().getVm().getVm();
  int32_t first_pid = created.getResult().getVm().getInfo().getPid();

  class Sink final : public rpc::ConsoleSink::Server {
   public:
    Sink(std::shared_ptr<std::string> text, std::shared_ptr<bool> ended)
        : text_(std::move(text)), ended_(std::move(ended)) {}

   protected:
    kj::Promise<void> write(WriteContext context) override {
      auto data = context.getParams().getData();
      text_->append(reinterpret_cast<const char*>(data.begin()), data.size());
      return kj::READY_NOW;
    }
    kj::Promise<void> done(DoneContext) override {
      *ended_ = true;
      return kj::READY_NOW;
    }

   private:
    std::shared_ptr<std::string> text_;
    std::shared_ptr<bool> ended_;
  };
  auto text = std::make_shared<std::string>();
  auto ended = std::make_shared<bool>(false);
  auto follow = vm.followConsoleRequest();
  follow.setOffset(0);
  follow.setSink(kj::heap<Sink>(text, ended));
  auto handle = follow.send().wait(ws()).getHandle();
  ASSERT_TRUE(WaitFor([&] { return !text->empty(); }));

  auto rebooted = vm.rebootRequest().send().wait(ws());
  ASSERT_TRUE(rebooted.getResult().isInfo());
  EXPECT_EQ(rebooted.getResult().getInfo().getState(), VmState::RUNNING);
  EXPECT_NE(rebooted.getResult().getInfo().getPid(), first_pid);
  EXPECT_TRUE(WaitFor([&] { return *ended; }));  // the follow ended with the first VMM

  auto hard = vm.shutdownRequest();
  hard.setMode(rpc::ShutdownMode::HARD);
  auto stopped = hard.send().wait(ws());
  EXPECT_EQ(stopped.getResult().getInfo().getState(), VmState::STOPPED);
  EXPECT_TRUE(Vmms().empty());
}

TEST_F(KeeldTest, RestartReconcilesWhatHappenedWhileKeeldWasDown) {
  auto [crashed_id, crashed_pid] = CreateRunning("dies-while-down");
  auto [clean_id, clean_pid] = CreateRunning("stops-while-down");
  ASSERT_GT(crashed_pid, 0);
  ASSERT_GT(clean_pid, 0);
  agent_.reset();
  client_.reset();
  StopKeeld(SIGKILL);
  kill(crashed_pid, SIGKILL);
  {
    // The other VMM is told to stop through its own control socket: it exits cleanly and
    // writes its exit file, with no keeld to watch.
    capnp::EzRpcClient vmm(
        kj::str("unix:", dir_.c_str(), "/run/vms/", clean_id.c_str(), "/control.sock"));
    auto control = vmm.getMain<rpc::vmm::VmmControl>();
    auto req = control.shutdownRequest();
    req.setHard(true);
    kj::runCatchingExceptions([&]() { req.send().wait(vmm.getWaitScope()); });
  }
  for (int i = 0; i < 1500 && kill(clean_pid, 0) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_NE(kill(clean_pid, 0), 0) << "keel-vmm did not exit after shutdown(hard)";
  // Leftovers of an interrupted operation: a run directory and a VMM the store does not know.
  pid_t stray = FakeVmm("stray");
  StartKeeld();
  int status = 0;
  EXPECT_EQ(waitpid(stray, &status, 0), stray);  // keeld killed it
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_FALSE(fs::exists(dir_ + "/run/vms/stray"));
  auto get = agent_->getVmRequest();
  get.setVm(crashed_id);
  auto info_response = get.send().wait(ws());
  auto info = info_response.getResult().getVm().getInfo();
  EXPECT_EQ(info.getState(), VmState::CRASHED);
  EXPECT_GT(info.getLastError().size(), 0u);
  EXPECT_EQ(info.getPid(), 0);
  // The SIGKILLed VMM's control socket is gone with it.
  EXPECT_FALSE(fs::exists(dir_ + "/run/vms/" + crashed_id + "/control.sock"));
  auto get_clean = agent_->getVmRequest();
  get_clean.setVm(clean_id);
  auto clean_response = get_clean.send().wait(ws());
  auto clean = clean_response.getResult().getVm().getInfo();
  EXPECT_EQ(clean.getState(), VmState::STOPPED);
  EXPECT_EQ(clean.getLastExitStatus(), 0);
}

TEST_F(KeeldTest, RestartKillsAVmmItCannotReachAndReportsACrash) {
  auto [id, pid] = CreateRunning("unreachable");
  ASSERT_GT(pid, 0);
  agent_.reset();
  client_.reset();
  StopKeeld(SIGKILL);
  // The VMM runs on, but its control socket is no longer where keeld looks.
  const std::string sock = dir_ + "/run/vms/" + id + "/control.sock";
  ASSERT_EQ(rename(sock.c_str(), (sock + ".moved").c_str()), 0);
  StartKeeld();
  auto get = agent_->getVmRequest();
  get.setVm(id);
  auto response = get.send().wait(ws());
  auto info = response.getResult().getVm().getInfo();
  EXPECT_EQ(info.getState(), VmState::CRASHED);
  EXPECT_EQ(info.getPid(), 0);
  EXPECT_GT(info.getLastError().size(), 0u);
  EXPECT_TRUE(WaitGone(pid)) << "keeld left the unreachable keel-vmm running";
}

}  // namespace
}  // namespace keel::agent

namespace keel::agent {
namespace {

TEST_F(KeeldTest, TcpWithTlsNeedsAClientCertificate) {
  if (system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl CLI";
  std::string d = dir_ + "/tls";
  fs::create_directories(d);
  std::string script =
      "cd " + d +
      " && "
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
      "-subj /CN=keel-test-ca && "
      "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost && "
      "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem "
      "-days 2 && "
      "openssl req -newkey rsa:2048 -nodes -keyout cli.key -out cli.csr -subj /CN=controller && "
      "openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cli.pem "
      "-days 2";
  ASSERT_EQ(system((script + " >/dev/null 2>&1").c_str()), 0);
  // A port nothing uses now: bind port 0 and let it go (keeld binds it right after).
  std::string port;
  {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(s, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ASSERT_EQ(getsockname(s, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port = std::to_string(ntohs(a.sin_port));
    close(s);
  }
  RestartKeeld(SIGKILL, {"--tcp-listen=127.0.0.1:" + port, "--tls-cert=" + d + "/srv.pem",
                         "--tls-key=" + d + "/srv.key", "--tls-client-ca=" + d + "/ca.pem"});

  auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  std::string ca = read(d + "/ca.pem"), cert = read(d + "/cli.pem"), key = read(d + "/cli.key");
  // Whether a hostInfo call over TLS works; why not goes to the test log.
  auto connect = [&](bool with_cert) -> bool {
    kj::TlsCertificate trusted(kj::StringPtr(ca.c_str()));
    kj::TlsKeypair keypair{kj::TlsPrivateKey(kj::StringPtr(key.c_str())),
                           kj::TlsCertificate(kj::StringPtr(cert.c_str()))};
    kj::TlsContext::Options options;
    options.useSystemTrustStore = false;
    options.trustedCertificates = kj::arrayPtr(&trusted, 1);
    if (with_cert) options.defaultKeypair = keypair;
    kj::TlsContext tls(kj::mv(options));
    auto network = tls.wrapNetwork(client_->getIoProvider().getNetwork());
    auto result = kj::runCatchingExceptions([&]() {
      auto address = network->parseAddress(kj::str("localhost:", port.c_str())).wait(ws());
      auto stream = address->connect().wait(ws());
      capnp::TwoPartyClient rpc(*stream);
      auto agent = rpc.bootstrap().castAs<rpc::HostAgent>();
      auto info = agent.hostInfoRequest().send().wait(ws());
      EXPECT_EQ(info.getInfo().getApiVersion(), rpc::API_VERSION);
    });
    KJ_IF_MAYBE (e, result) {
      fprintf(stderr, "TLS connection (client certificate: %s): %s\n", with_cert ? "yes" : "no",
              e->getDescription().cStr());
      return false;
    }
    return true;
  };
  EXPECT_TRUE(connect(true));
  EXPECT_FALSE(connect(false));
}

}  // namespace
}  // namespace keel::agent

namespace keel::agent {
namespace {

// keeld killed half-way through starting a VM: the store says `starting`, a tap exists on the
// bridge and a VMM runs that keeld never recorded. A restart must leave none of it.
TEST_F(KeeldTest, RestartCleansUpAnInterruptedStart) {
  std::string net_name = "i" + std::to_string(getpid() % 100000);
  std::string bridge = "kbr-" + net_name;
  links_.push_back(bridge);
  auto nreq = agent_->createNetworkRequest();
  nreq.initSpec().setName(net_name);
  ASSERT_TRUE(nreq.send().wait(ws()).getResult().isNetwork());
  std::string id, tap;
  {
    auto req = agent_->createVmRequest();
    FillSpec(req.initSpec(), "half-started", /*auto_start=*/false);
    req.getSpec().initNics(1)[0].setNetwork(net_name);
    auto created = req.send().wait(ws());
    ASSERT_TRUE(created.getResult().isVm());
    id = created.getResult().getVm().getInfo().getId();
    tap = created.getResult().getVm().getInfo().getNics()[0].getTap();
    links_.push_back(tap);
  }
  agent_.reset();
  client_.reset();
  StopKeeld(SIGKILL);

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/state/keel.db").c_str(), &db), SQLITE_OK);
  std::string sql = "UPDATE vms SET state=1, desired=2 WHERE id='" + id + "'";
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  {
    auto nl = net::NetlinkSocket::Open();
    ASSERT_TRUE(nl.ok());
    auto made = net::CreateBridgedTap(*nl, {.name = tap, .bridge = bridge});
    ASSERT_TRUE(made.ok()) << made.status();
  }
  pid_t vmm = FakeVmm(id);

  StartKeeld();
  int status = 0;
  EXPECT_EQ(waitpid(vmm, &status, 0), vmm);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_FALSE(LinkExists(tap));
  auto get = agent_->getVmRequest();
  get.setVm(id);
  auto info_response = get.send().wait(ws());
  auto info = info_response.getResult().getVm().getInfo();
  EXPECT_EQ(info.getState(), VmState::STOPPED);
  EXPECT_GT(info.getLastError().size(), 0u);
}

}  // namespace
}  // namespace keel::agent

namespace keel::agent {
namespace {

TEST_F(KeeldTest, ListVmsFiltersByNameStateAndLabels) {
  for (const char* name : {"web-1", "web-2", "db-1"}) {
    auto req = agent_->createVmRequest();
    FillSpec(req.initSpec(), name, /*auto_start=*/false);
    auto labels = req.getSpec().initLabels(1);
    labels[0].setKey("tier");
    labels[0].setValue(std::string(name).substr(0, 2) == "we" ? "front" : "back");
    ASSERT_TRUE(req.send().wait(ws()).getResult().isVm());
  }
  auto by_name = agent_->listVmsRequest();
  by_name.initFilter().setNameContains("web");
  EXPECT_EQ(by_name.send().wait(ws()).getVms().size(), 2u);

  auto by_label = agent_->listVmsRequest();
  auto wanted = by_label.initFilter().initLabels(1);
  wanted[0].setKey("tier");
  wanted[0].setValue("back");
  auto back = by_label.send().wait(ws());
  ASSERT_EQ(back.getVms().size(), 1u);
  EXPECT_EQ(std::string(back.getVms()[0].getName()), "db-1");

  auto by_state = agent_->listVmsRequest();
  by_state.initFilter().initStates(1).set(0, VmState::RUNNING);
  EXPECT_EQ(by_state.send().wait(ws()).getVms().size(), 0u);
}

TEST_F(KeeldTest, GracefulShutdownOfAPausedVmStopsItHard) {
  auto created = Create("p", "paused-then-down");
  ASSERT_TRUE(created.getResult().isVm());
  auto vm = created.getResult().getVm().getVm();
  ASSERT_EQ(vm.pauseRequest().send().wait(ws()).getResult().getInfo().getState(), VmState::PAUSED);
  auto down = vm.shutdownRequest();
  down.setMode(rpc::ShutdownMode::GRACEFUL);
  auto stopped = down.send().wait(ws());
  ASSERT_TRUE(stopped.getResult().isInfo());
  EXPECT_EQ(stopped.getResult().getInfo().getState(), VmState::STOPPED);
  EXPECT_EQ(stopped.getResult().getInfo().getDesiredState(), VmState::STOPPED);
  EXPECT_TRUE(Vmms().empty());
  // Stopped VMs start again.
  auto again = vm.startRequest().send().wait(ws());
  ASSERT_TRUE(again.getResult().isInfo());
  EXPECT_EQ(again.getResult().getInfo().getState(), VmState::RUNNING);
}

}  // namespace
}  // namespace keel::agent

namespace keel::agent {
namespace {

// A VMM that stops answering (here: SIGSTOP) fails the calls made to it after
// --vmm_call_timeout_ms instead of holding them (and every later operation on the VM) forever.
TEST_F(KeeldTest, AHungVmmFailsItsCallsInTime) {
  RestartKeeld(SIGKILL, {"--vmm_call_timeout_ms=500"});
  auto created = Create("hung", "hung");
  ASSERT_TRUE(created.getResult().isVm());
  auto vm = created.getResult().getVm().getVm();
  const int32_t pid = created.getResult().getVm().getInfo().getPid();
  ASSERT_GT(pid, 0);
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] { vm.pauseRequest().send().wait(ws()); })) {
    const std::string why = e->getDescription().cStr();
    EXPECT_NE(why.find("did not answer pause within 500 ms"), std::string::npos) << why;
  } else {
    ADD_FAILURE() << "pause answered although the VMM was stopped";
  }
  // keeld itself goes on serving, and the VM's state is what it was.
  auto list = agent_->listVmsRequest().send().wait(ws());
  ASSERT_EQ(list.getVms().size(), 1u);
  EXPECT_EQ(list.getVms()[0].getState(), VmState::RUNNING);
  ASSERT_EQ(kill(pid, SIGCONT), 0);
  auto paused = vm.pauseRequest().send().wait(ws());
  ASSERT_TRUE(paused.getResult().isInfo());
  EXPECT_EQ(paused.getResult().getInfo().getState(), VmState::PAUSED);
}

// keeld restarting beside a VMM that does not answer kills it and reports a crash rather than
// waiting for it (which would keep keeld from serving at all).
TEST_F(KeeldTest, RestartDoesNotWaitForAHungVmm) {
  auto [id, pid] = CreateRunning("hung-at-restart");
  ASSERT_GT(pid, 0);
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  RestartKeeld(SIGKILL, {"--vmm_call_timeout_ms=500"});
  auto get = agent_->getVmRequest();
  get.setVm(id);
  auto response = get.send().wait(ws());
  ASSERT_TRUE(response.getResult().isVm());
  auto info = response.getResult().getVm().getInfo();
  EXPECT_EQ(info.getState(), VmState::CRASHED);
  EXPECT_TRUE(std::string(info.getLastError()).find("did not answer info") != std::string::npos)
      << info.getLastError().cStr();
  EXPECT_TRUE(WaitGone(pid)) << "keeld left the hung keel-vmm running";
}

// A keel-vmm that never answers its launch is killed, and the start fails with why.
TEST_F(KeeldTest, AVmmThatNeverAnswersItsLaunchIsKilled) {
  const std::string fake = dir_ + "/silent-vmm";
  const std::string pid_file = dir_ + "/silent-vmm.pid";
  {
    std::ofstream out(fake);
    // Holds the control socket and says nothing; the pid stays the same through exec.
    out << "#!/bin/sh\necho $$ > " << pid_file << "\nexec sleep 600\n";
  }
  ASSERT_EQ(chmod(fake.c_str(), 0755), 0);
  RestartKeeld(SIGKILL, {"--vmm_call_timeout_ms=500", "--vmm=" + fake});
  auto created = Create("silent", "silent");
  std::string why;
  if (created.getResult().isError()) {
    why = created.getResult().getError().getMessage();
  } else {
    why = created.getResult().getVm().getInfo().getLastError();
    EXPECT_NE(created.getResult().getVm().getInfo().getState(), VmState::RUNNING);
  }
  EXPECT_NE(why.find("did not answer launch within 500 ms"), std::string::npos) << why;
  pid_t pid = 0;
  std::ifstream(pid_file) >> pid;
  ASSERT_GT(pid, 0) << "the silent keel-vmm never ran";
  EXPECT_TRUE(WaitGone(pid)) << "the silent keel-vmm still runs";
}

}  // namespace
}  // namespace keel::agent
