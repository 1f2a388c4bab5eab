// ControlServer in-process, on the real /dev/kvm with the test guest: a thread plays
// keel-vmm's main thread (WaitForLaunch, build the Machine, Run), the test thread is keeld.
// What only an in-process test can check: a console follower whose sink stops answering
// never holds up the console's writer, and sees what it missed as a jump in offsets.
//
// Environment (set by meson): KEEL_GUEST_ELF. Skipped when /dev/kvm is not usable.
#include "vmm/control/control_server.h"

#include <capnp/rpc-twoparty.h>
#include <fcntl.h>
#include <kj/async-io.h>
#include <kj/io.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "base/eventfd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rpc/pass_fd.h"
#include "rpc/vmm.capnp.h"
#include "vmm/kvm/kvm.h"

namespace keel::vmm {
namespace {

namespace vrpc = ::keel::rpc::vmm;

// A sink that holds every write until Release(): flow control then stops the follower.
class StallingSink final : public vrpc::ConsoleSink::Server {
 public:
  struct Write {
    uint64_t offset;
    size_t size;
  };
  explicit StallingSink(std::vector<Write>* writes) : writes_(writes) {}
  kj::Promise<void> write(WriteContext context) override {
    writes_->push_back({context.getParams().getOffset(), context.getParams().getData().size()});
    if (!stalled_) return kj::READY_NOW;
    auto paf = kj::newPromiseAndFulfiller<void>();
    held_.add(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
  }
  void Release() {
    stalled_ = false;
    for (auto& f : held_) f->fulfill();
    held_.clear();
  }
  size_t held() const { return held_.size(); }

 private:
  std::vector<Write>* writes_;  // owned by the test
  bool stalled_ = true;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> held_;
};

class ControlServerTest : public ::testing::Test {
 protected:
  ~ControlServerTest() noexcept override {}

  void SetUp() override {
    if (access("/dev/kvm", R_OK | W_OK) != 0) GTEST_SKIP() << "/dev/kvm is not usable";
    const char* guest = getenv("KEEL_GUEST_ELF");
    ASSERT_NE(guest, nullptr) << "KEEL_GUEST_ELF is not set";
    guest_ = guest;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ControlServer::Options options;
    options.connection.Reset(sv[1]);
    options.vm_id = "in-process";
    BlockVmSignals();  // inherited by the control thread, as in keel-vmm
    auto server = ControlServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    auto abort = EventFd::Create();
    ASSERT_TRUE(abort.ok());
    abort_ = std::make_unique<EventFd>(std::move(*abort));
    vmm_main_ = std::thread([this] { VmmMain(); });
    stream_ = io_.lowLevelProvider->wrapUnixSocketFd(kj::AutoCloseFd(sv[0]));
    client_ = kj::heap<capnp::TwoPartyClient>(*stream_, 4);
    control_ = client_->bootstrap().castAs<vrpc::VmmControl>();
  }

  void TearDown() override {
    if (vmm_main_.joinable()) {
      // Whatever state a failed test left: no launch yet, or a running VM.
      abort_->Signal();
      if (Machine* m = machine_.load(); m != nullptr) {
        m->RequestExit({VmExit::Kind::kStopped, 0, "test over"});
      }
      vmm_main_.join();
    }
  }

  // keel-vmm's main thread in control mode.
  void VmmMain() {
    std::optional<LaunchRequest> launch = server_->WaitForLaunch(abort_->fd());
    if (!launch.has_value()) return;
    absl::StatusOr<std::unique_ptr<Kvm>> kvm = Kvm::Open();
    absl::StatusOr<std::unique_ptr<Machine>> machine =
        kvm.ok() ? Machine::Create(**kvm, launch->machine)
                 : absl::StatusOr<std::unique_ptr<Machine>>(kvm.status());
    if (!machine.ok()) {
      server_->LaunchFailed(machine.status());
      server_->Stop();
      return;
    }
    machine_ = machine->get();
    server_->Launched(machine->get());
    (*machine)->Run();
    server_->Stop();
    machine_ = nullptr;
  }

  void LaunchIdleGuest() {
    auto request = control_.launchRequest();
    auto config = request.initConfig();
    config.setKernel(vrpc::PassFd(ScopedFd(open(guest_.c_str(), O_RDONLY | O_CLOEXEC))));
    config.setCmdline("keeltest=idle");
    config.setMemoryMib(32);
    config.setVcpus(1);
    request.send().wait(io_.waitScope);
  }

  void Turn() { io_.provider->getTimer().afterDelay(5 * kj::MILLISECONDS).wait(io_.waitScope); }

  kj::AsyncIoContext io_ = kj::setupAsyncIo();
  std::string guest_;
  std::unique_ptr<ControlServer> server_;
  std::unique_ptr<EventFd> abort_;  // makes WaitForLaunch give up
  std::thread vmm_main_;
  std::atomic<Machine*> machine_{nullptr};
  kj::Own<kj::AsyncCapabilityStream> stream_;
  kj::Own<capnp::TwoPartyClient> client_;
  vrpc::VmmControl::Client control_ = nullptr;
};

TEST_F(ControlServerTest, AStalledFollowerNeverBlocksTheConsoleAndSeesAGap) {
  LaunchIdleGuest();
  Machine* machine = machine_.load();
  ASSERT_NE(machine, nullptr);

  std::vector<StallingSink::Write> writes;
  auto sink = kj::heap<StallingSink>(&writes);
  StallingSink& sink_ref = *sink;
  auto follow = control_.followConsoleRequest();
  follow.setOffset(0);
  follow.setSink(kj::mv(sink));
  auto handle = follow.send().wait(io_.waitScope).getHandle();

  // Far more than the ring keeps, written while the sink holds every write: each Write
  // returns (the test would hang otherwise).
  const std::string line = std::string(1023, 'x') + "\n";
  const std::span bytes(reinterpret_cast<const uint8_t*>(line.data()), line.size());
  for (int i = 0; i < 1024; ++i) {
    machine->console_log().Write(bytes);
    if (i % 64 == 0) Turn();
  }
  const uint64_t end = machine->console_log().end();
  ASSERT_GT(end, 2 * Machine::kConsoleLogBytes);
  for (int i = 0; i < 20; ++i) Turn();
  EXPECT_GT(sink_ref.held(), 0u);
  const size_t before_release = writes.size();  // capnp hands a stream's calls over in turn

  sink_ref.Release();
  while (writes.empty() || writes.back().offset + writes.back().size < end) Turn();
  ASSERT_GT(writes.size(), before_release);

  // Contiguous until the stall (the writes flow control let through, delivered one by one),
  // then one jump to what the ring still kept, then contiguous to the end.
  size_t gaps = 0;
  uint64_t resumed_at = 0;
  for (size_t i = 1; i < writes.size(); ++i) {
    const uint64_t expected = writes[i - 1].offset + writes[i - 1].size;
    ASSERT_GE(writes[i].offset, expected);
    if (writes[i].offset > expected) {
      ++gaps;
      resumed_at = writes[i].offset;
    }
  }
  EXPECT_EQ(gaps, 1u);
  EXPECT_GE(resumed_at, end - Machine::kConsoleLogBytes);
  EXPECT_EQ(writes.back().offset + writes.back().size, end);

  // The VM kept running throughout.
  auto info = control_.infoRequest().send().wait(io_.waitScope);
  EXPECT_EQ(info.getInfo().getState(), vrpc::RunState::RUNNING);
  auto shutdown = control_.shutdownRequest();
  shutdown.setHard(true);
  shutdown.send().wait(io_.waitScope);
  vmm_main_.join();
}

}  // namespace
}  // namespace keel::vmm
