#include "vmm/control/control_server.h"

#include <capnp/rpc-twoparty.h>
#include <fcntl.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "base/eventfd.h"
#include "base/log.h"
#include "rpc/vmm.capnp.h"

namespace keel::vmm {

namespace {

namespace vrpc = ::keel::rpc::vmm;

// launch carries the kernel, initrd, console log and one descriptor per disk and NIC.
constexpr uint kMaxFdsPerMessage = 32;
// One followConsole write carries at most this much; flow control decides how many are in
// flight.
constexpr size_t kFollowChunkBytes = 16 * 1024;
// How long Stop waits for queued replies to be written.
constexpr int kDrainMillis = 1000;

kj::Exception Failed(absl::string_view message) {
  return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                       kj::heapString(message.data(), message.size()));
}

uint64_t ProcessCpuTimeNs() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t ResidentBytes() {
  // Plain stdio: keel-vmm carries no iostreams.
  FILE* f = fopen("/proc/self/statm", "re");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  const int n = fscanf(f, "%llu %llu", &size, &resident);
  fclose(f);
  if (n != 2) return 0;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// Copies a received descriptor: the one a capability carries closes with the capability.
ScopedFd DupFd(int fd, kj::StringPtr what) {
  ScopedFd own(fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!own) {
    throw Failed(
        absl::StrFormat("cannot keep the %s descriptor: %s", what.cStr(), strerrordesc_np(errno)));
  }
  return own;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// The state shared by the main thread and the kj thread.

class ControlLoop;

class ControlServer::Impl {
 public:
  Impl(Options options, EventFd launch_ready, EventFd console_notify)
      : options_(std::move(options)),
        console_notify_(std::move(console_notify)),
        launch_ready_(std::move(launch_ready)) {}

  absl::Status StartThread();
  void ThreadMain();

  // Main thread.
  std::optional<LaunchRequest> WaitForLaunch(int signal_fd);
  void Answer(Machine* machine, const absl::Status& status);
  void Stop();

  // kj thread: hands the request to the main thread; resolves with the Machine built from it.
  kj::Promise<Machine*> SubmitLaunch(LaunchRequest request);

  Options options_;
  // Signalled by the ConsoleLog after each write (any thread); watched by the kj thread.
  EventFd console_notify_;

 private:
  EventFd launch_ready_;
  std::thread thread_;

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status start_status_ ABSL_GUARDED_BY(mu_);
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop_ ABSL_GUARDED_BY(mu_);
  std::optional<LaunchRequest> pending_launch_ ABSL_GUARDED_BY(mu_);
  kj::Own<kj::CrossThreadPromiseFulfiller<Machine*>> launch_done_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------------------
// The kj thread's objects.

class ControlLoop final : private kj::TaskSet::ErrorHandler {
 public:
  ControlLoop(ControlServer::Impl& owner, kj::AsyncIoContext& io);

  void Serve();
  // Waits (bounded) until every connection has written what it queued.
  kj::Promise<void> Drain();

  vrpc::RunState State() const;
  void FillInfo(vrpc::VmmInfo::Builder info) const;
  // Resolves when the guest console may have new bytes.
  kj::Promise<void> NextConsoleData() { return console_data_.addBranch(); }
  void HoldTask(kj::Promise<void> task) { tasks_.add(kj::mv(task)); }

  ControlServer::Impl& owner;
  kj::AsyncIoContext& io;
  Machine* machine = nullptr;  // set once launched
  bool launch_started = false;
  bool shutdown_requested = false;
  std::chrono::steady_clock::time_point launched_at;
  std::vector<std::string> disk_names;
  std::vector<std::string> nic_names;

 private:
  struct Connection {
    Connection(kj::Own<kj::AsyncCapabilityStream> s, capnp::Capability::Client bootstrap)
        : stream(kj::mv(s)),
          network(*stream, kMaxFdsPerMessage, capnp::rpc::twoparty::Side::SERVER),
          rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
    kj::Own<kj::AsyncCapabilityStream> stream;
    capnp::TwoPartyVatNetwork network;
    capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  };

  void AddConnection(kj::Own<kj::AsyncCapabilityStream> stream);
  void RemoveConnection(Connection* connection);
  kj::Promise<void> AcceptLoop();
  kj::Promise<void> WatchConsole();
  kj::Promise<void> WaitForQueues(int millis_left);
  void taskFailed(kj::Exception&& exception) override;

  kj::UnixEventPort::FdObserver console_observer_;
  kj::Own<kj::PromiseFulfiller<void>> console_fulfiller_;
  kj::ForkedPromise<void> console_data_;

  capnp::Capability::Client bootstrap_;
  kj::Own<kj::ConnectionReceiver> listener_;
  std::vector<kj::Own<Connection>> connections_;
  kj::TaskSet tasks_;  // last: cancelled first
};

// followConsole's handle: pushes the console from `offset` to the sink while it exists.
class ConsoleFollower final : public vrpc::Handle::Server {
 public:
  ConsoleFollower(ControlLoop& loop, uint64_t offset, vrpc::ConsoleSink::Client sink)
      : loop_(loop),
        offset_(offset),
        sink_(kj::mv(sink)),
        pump_(Pump().eagerlyEvaluate([](kj::Exception&& e) {
          KEEL_LOG(DEBUG) << "console follower ended: " << e.getDescription().cStr();
        })) {}

 private:
  // One write in flight at a time beyond what the stream's flow control admits; while the
  // sink is slow the console keeps going into the ring, and the next write starts at the
  // oldest byte still kept: the sink sees the gap as a jump in `offset`. Neither a vCPU nor
  // the I/O thread ever waits for a sink.
  kj::Promise<void> Pump() {
    if (loop_.machine != nullptr) {
      ConsoleLog::Chunk chunk = loop_.machine->console_log().Read(offset_, kFollowChunkBytes);
      if (!chunk.data.empty()) {
        auto request = sink_.writeRequest();
        request.setOffset(chunk.offset);
        request.setData(
            kj::arrayPtr(reinterpret_cast<const kj::byte*>(chunk.data.data()), chunk.data.size()));
        offset_ = chunk.offset + chunk.data.size();
        return request.send().then([this] { return Pump(); });
      }
    }
    return loop_.NextConsoleData().then([this] { return Pump(); });
  }

  ControlLoop& loop_;
  uint64_t offset_;
  vrpc::ConsoleSink::Client sink_;
  kj::Promise<void> pump_;  // last: cancelled before the rest goes
};

class VmmControlImpl final : public vrpc::VmmControl::Server {
 public:
  explicit VmmControlImpl(ControlLoop& loop) : loop_(loop) {}

  kj::Promise<void> info(InfoContext context) override {
    loop_.FillInfo(context.getResults().initInfo());
    return kj::READY_NOW;
  }

  kj::Promise<void> launch(LaunchContext context) override;

  kj::Promise<void> pause(PauseContext context) override {
    RequireLaunched();
    // Waits only until every vCPU has left KVM_RUN (microseconds; at most a few seconds for a
    // vCPU stuck in the kernel), so it is done in place rather than on another thread.
    absl::Status s = loop_.machine->vcpu_control().Pause();
    if (!s.ok()) throw Failed(s.message());
    loop_.FillInfo(context.getResults().initInfo());
    return kj::READY_NOW;
  }

  kj::Promise<void> resume(ResumeContext context) override {
    RequireLaunched().vcpu_control().Resume();
    loop_.FillInfo(context.getResults().initInfo());
    return kj::READY_NOW;
  }

  kj::Promise<void> shutdown(ShutdownContext context) override {
    Machine& machine = RequireLaunched();
    loop_.shutdown_requested = true;
    if (!context.getParams().getHard()) {
      machine.PressPowerButton();
      return kj::READY_NOW;
    }
    // After the reply is queued: Stop() then writes it out before the process exits.
    loop_.HoldTask(kj::evalLast([&machine] {
      machine.RequestExit({VmExit::Kind::kStopped, 0, "stopped by the control channel"});
    }));
    return kj::READY_NOW;
  }

  kj::Promise<void> stats(StatsContext context) override;

  kj::Promise<void> console(ConsoleContext context) override {
    auto params = context.getParams();
    auto results = context.getResults();
    if (loop_.machine == nullptr) {
      results.setStartOffset(0);
      results.setNextOffset(0);
      return kj::READY_NOW;
    }
    const size_t max = std::min<size_t>(params.getMaxBytes(), Machine::kConsoleLogBytes);
    ConsoleLog::Chunk chunk = loop_.machine->console_log().Read(params.getOffset(), max);
    results.setData(
        kj::arrayPtr(reinterpret_cast<const kj::byte*>(chunk.data.data()), chunk.data.size()));
    results.setStartOffset(chunk.offset);
    results.setNextOffset(chunk.offset + chunk.data.size());
    return kj::READY_NOW;
  }

  kj::Promise<void> followConsole(FollowConsoleContext context) override {
    auto params = context.getParams();
    context.getResults().setHandle(
        kj::heap<ConsoleFollower>(loop_, params.getOffset(), params.getSink()));
    return kj::READY_NOW;
  }

 private:
  Machine& RequireLaunched() {
    if (loop_.machine == nullptr) throw Failed("the VM is not launched yet");
    return *loop_.machine;
  }

  ControlLoop& loop_;
};

// ---------------------------------------------------------------------------------------
// launch and stats

namespace {

// The parts of `config` that are not descriptors; errors are configuration errors.
absl::Status FillMachineConfig(vrpc::LaunchConfig::Reader config, LaunchRequest& request) {
  MachineConfig& m = request.machine;
  m.cmdline = config.getCmdline();
  m.memory_mib = config.getMemoryMib() == 0 ? m.memory_mib : config.getMemoryMib();
  m.vcpus = config.getVcpus() == 0 ? 1 : config.getVcpus();
  m.console_to_stdout = false;
  request.start_paused = config.getStartPaused();
  if (m.memory_mib < 16) {
    return absl::InvalidArgumentError(
        absl::StrFormat("memoryMib %u is below the 16 MiB minimum", m.memory_mib));
  }
  for (vrpc::DiskConfig::Reader d : config.getDisks()) {
    DiskConfig disk;
    disk.read_only = d.getReadOnly();
    disk.cache = d.getDirectIo() ? block::CacheMode::kNone : block::CacheMode::kWriteback;
    disk.id = d.getSerial();
    m.disks.push_back(std::move(disk));
  }
  for (vrpc::NicConfig::Reader n : config.getNics()) {
    NetConfig nic;
    nic.mtu = n.getMtu();
    if (n.hasMac()) {
      capnp::Data::Reader mac = n.getMac();
      if (mac.size() != 6) {
        return absl::InvalidArgumentError(absl::StrFormat("NIC %s: mac has %u bytes, expected 6",
                                                          n.getName().cStr(), mac.size()));
      }
      net::MacAddress addr;
      std::copy(mac.begin(), mac.end(), addr.bytes.begin());
      if (absl::Status s = addr.CheckValidUnicast(); !s.ok()) return s;
      nic.mac = addr;
    }
    m.nets.push_back(std::move(nic));
  }
  return absl::OkStatus();
}

}  // namespace

kj::Promise<void> VmmControlImpl::launch(LaunchContext context) {
  if (loop_.launch_started) throw Failed("the VM was already launched");
  loop_.launch_started = true;
  vrpc::LaunchConfig::Reader config = context.getParams().getConfig();
  auto request = kj::heap<LaunchRequest>();
  request->status = FillMachineConfig(config, *request);
  if (request->status.ok()) {
    for (auto d : config.getDisks()) loop_.disk_names.emplace_back(d.getName().cStr());
    for (auto n : config.getNics()) loop_.nic_names.emplace_back(n.getName().cStr());
  }
  KEEL_LOG(INFO) << "launch " << config.getVmId().cStr() << ": " << request->machine.memory_mib
                 << " MiB, " << request->machine.vcpus << " vCPUs";

  // Collect every descriptor; `slot` points into request->machine, whose vectors are sized.
  kj::Vector<kj::Promise<void>> fds;
  LaunchRequest* r = request.get();
  auto take = [&fds, r](vrpc::Fd::Client cap, int* slot, kj::String what) {
    fds.add(cap.getFd().then([cap, slot, r, what = kj::mv(what)](kj::Maybe<int> fd) mutable {
      KJ_IF_MAYBE (f, fd) {
        r->fds.push_back(DupFd(*f, what));
        *slot = r->fds.back().get();
        return;
      }
      throw Failed(absl::StrFormat("the %s capability carried no file descriptor", what.cStr()));
    }));
  };
  if (request->status.ok()) {
    if (!config.hasKernel()) {
      request->status = absl::InvalidArgumentError("launch needs a kernel");
    } else {
      take(config.getKernel(), &r->machine.kernel_fd, kj::str("kernel"));
    }
    if (config.hasInitrd()) take(config.getInitrd(), &r->machine.initrd_fd, kj::str("initrd"));
    if (config.hasConsoleLog()) {
      take(config.getConsoleLog(), &r->machine.serial_log_fd, kj::str("console log"));
    }
    auto disks = config.getDisks();
    for (uint i = 0; i < disks.size(); ++i) {
      take(disks[i].getImage(), &r->machine.disks[i].fd,
           kj::str("disk ", disks[i].getName(), " image"));
    }
    auto nics = config.getNics();
    for (uint i = 0; i < nics.size(); ++i) {
      take(nics[i].getTap(), &r->machine.nets[i].fd, kj::str("NIC ", nics[i].getName(), " tap"));
    }
  }

  return kj::joinPromises(fds.releaseAsArray())
      .then([]() { return absl::OkStatus(); },
            [](kj::Exception&& e) { return absl::InvalidArgumentError(e.getDescription().cStr()); })
      .then([this, request = kj::mv(request)](absl::Status fd_status) mutable {
        if (request->status.ok()) request->status = fd_status;
        return loop_.owner.SubmitLaunch(kj::mv(*request));
      })
      .then([this, context](Machine* machine) mutable {
        loop_.machine = machine;
        loop_.launched_at = std::chrono::steady_clock::now();
        loop_.FillInfo(context.getResults().initInfo());
      });
}

kj::Promise<void> VmmControlImpl::stats(StatsContext context) {
  if (loop_.machine == nullptr) {
    context.getResults().initStats().setState(vrpc::RunState::NOT_LAUNCHED);
    return kj::READY_NOW;
  }
  // Boxed in a kj::Own: a std::vector inside kj's promise storage trips gcc 12's
  // -Wmaybe-uninitialized.
  auto paf = kj::newPromiseAndCrossThreadFulfiller<kj::Own<Machine::Stats>>();
  loop_.machine->CollectStats([fulfiller = kj::mv(paf.fulfiller)](Machine::Stats stats) mutable {
    fulfiller->fulfill(kj::heap<Machine::Stats>(std::move(stats)));
  });
  return paf.promise.then([this, context](kj::Own<Machine::Stats> boxed) mutable {
    const Machine::Stats& collected = *boxed;
    vrpc::VmmStats::Builder s = context.getResults().initStats();
    s.setState(loop_.State());
    s.setUptimeNs(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                            std::chrono::steady_clock::now() - loop_.launched_at)
                                            .count()));
    s.setCpuTimeNs(ProcessCpuTimeNs());
    s.setRssBytes(ResidentBytes());
    s.setConsoleBytes(loop_.machine->console_log().end());
    s.setVcpuExits(collected.vcpu_exits);
    std::vector<const virtio::DeviceStats::Block*> blocks;
    std::vector<const virtio::DeviceStats::Net*> nets;
    for (const Machine::Stats::Device& d : collected.devices) {
      if (d.stats.block.has_value()) blocks.push_back(&*d.stats.block);
      if (d.stats.net.has_value()) nets.push_back(&*d.stats.net);
    }
    // Devices are in slot order, which follows the launch configuration's order.
    auto disks = s.initDisks(static_cast<uint>(blocks.size()));
    for (uint i = 0; i < blocks.size(); ++i) {
      if (i < loop_.disk_names.size()) disks[i].setName(loop_.disk_names[i]);
      disks[i].setReadOps(blocks[i]->read_ops);
      disks[i].setWriteOps(blocks[i]->write_ops);
      disks[i].setFlushOps(blocks[i]->flush_ops);
      disks[i].setReadBytes(blocks[i]->read_bytes);
      disks[i].setWriteBytes(blocks[i]->write_bytes);
      disks[i].setErrors(blocks[i]->errors);
    }
    auto nics = s.initNics(static_cast<uint>(nets.size()));
    for (uint i = 0; i < nets.size(); ++i) {
      if (i < loop_.nic_names.size()) nics[i].setName(loop_.nic_names[i]);
      nics[i].setRxPackets(nets[i]->rx_packets);
      nics[i].setTxPackets(nets[i]->tx_packets);
      nics[i].setRxBytes(nets[i]->rx_bytes);
      nics[i].setTxBytes(nets[i]->tx_bytes);
      nics[i].setDrops(nets[i]->drops);
    }
  });
}

// ---------------------------------------------------------------------------------------
// ControlLoop

ControlLoop::ControlLoop(ControlServer::Impl& owner, kj::AsyncIoContext& io)
    : owner(owner),
      io(io),
      console_observer_(io.unixEventPort, owner.console_notify_.fd(),
                        kj::UnixEventPort::FdObserver::OBSERVE_READ),
      console_data_(nullptr),
      bootstrap_(kj::heap<VmmControlImpl>(*this)),
      tasks_(*this) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  console_fulfiller_ = kj::mv(paf.fulfiller);
  console_data_ = paf.promise.fork();
}

void ControlLoop::Serve() {
  ControlServer::Options& o = owner.options_;
  AddConnection(io.lowLevelProvider->wrapUnixSocketFd(kj::AutoCloseFd(o.connection.Release()),
                                                      kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP));
  if (o.listener.valid()) {
    listener_ = io.lowLevelProvider->wrapListenSocketFd(
        kj::AutoCloseFd(o.listener.Release()), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    tasks_.add(AcceptLoop());
  }
  tasks_.add(WatchConsole());
}

void ControlLoop::AddConnection(kj::Own<kj::AsyncCapabilityStream> stream) {
  auto connection = kj::heap<Connection>(kj::mv(stream), bootstrap_);
  Connection* c = connection.get();
  connections_.push_back(kj::mv(connection));
  tasks_.add(c->network.onDisconnect().then([this, c] {
    // The VM keeps running: a restarted keeld reconnects through the control socket.
    return kj::evalLater([this, c] { RemoveConnection(c); });
  }));
}

void ControlLoop::RemoveConnection(Connection* connection) {
  for (auto it = connections_.begin(); it != connections_.end(); ++it) {
    if (it->get() == connection) {
      connections_.erase(it);
      KEEL_LOG(DEBUG) << "control connection closed";
      return;
    }
  }
}

kj::Promise<void> ControlLoop::AcceptLoop() {
  return listener_->accept().then([this](kj::Own<kj::AsyncIoStream> stream) {
    // Unix-domain listeners hand out capability streams (fd passing).
    AddConnection(stream.downcast<kj::AsyncCapabilityStream>());
    return AcceptLoop();
  });
}

kj::Promise<void> ControlLoop::WatchConsole() {
  // Drain first, then wait for the next edge: a write after the drain raises a new one.
  owner.console_notify_.Consume();
  auto paf = kj::newPromiseAndFulfiller<void>();
  console_fulfiller_->fulfill();
  console_fulfiller_ = kj::mv(paf.fulfiller);
  console_data_ = paf.promise.fork();
  return console_observer_.whenBecomesReadable().then([this] { return WatchConsole(); });
}

kj::Promise<void> ControlLoop::Drain() {
  // evalLast runs once the replies that were already decided have been handed to the
  // network (their continuations are queued before it).
  return kj::evalLast(
      [this] { return kj::evalLast([this] { return WaitForQueues(kDrainMillis); }); });
}

kj::Promise<void> ControlLoop::WaitForQueues(int millis_left) {
  size_t queued = 0;
  for (auto& c : connections_) queued += c->network.getCurrentQueueCount();
  if (queued == 0 || millis_left <= 0) return kj::READY_NOW;
  return io.provider->getTimer().afterDelay(1 * kj::MILLISECONDS).then([this, millis_left] {
    return WaitForQueues(millis_left - 1);
  });
}

vrpc::RunState ControlLoop::State() const {
  if (machine == nullptr) return vrpc::RunState::NOT_LAUNCHED;
  // Also after a graceful shutdown request: the guest has been asked to power off.
  if (shutdown_requested || machine->exit_requested()) return vrpc::RunState::STOPPING;
  if (machine->vcpu_control().state() == VcpuControl::State::kStopping) {
    return vrpc::RunState::STOPPING;
  }
  if (machine->vcpu_control().state() == VcpuControl::State::kPaused) {
    return vrpc::RunState::PAUSED;
  }
  return vrpc::RunState::RUNNING;
}

void ControlLoop::FillInfo(vrpc::VmmInfo::Builder info) const {
  info.setVmId(owner.options_.vm_id);
  info.setPid(getpid());
  info.setState(State());
  info.setKeelVersion(KEEL_VERSION);
  info.setConsoleBytes(machine == nullptr ? 0 : machine->console_log().end());
}

void ControlLoop::taskFailed(kj::Exception&& exception) {
  KEEL_LOG(WARNING) << "control channel: " << exception.getDescription().cStr();
}

// ---------------------------------------------------------------------------------------
// ControlServer::Impl

absl::Status ControlServer::Impl::StartThread() {
  thread_ = std::thread([this] { ThreadMain(); });
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&started_));
  return start_status_;
}

void ControlServer::Impl::ThreadMain() {
  kj::Maybe<kj::Exception> error = kj::runCatchingExceptions([this] {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    ControlLoop loop(*this, io);
    loop.Serve();
    auto stop = kj::newPromiseAndCrossThreadFulfiller<void>();
    {
      absl::MutexLock lock(&mu_);
      stop_ = kj::mv(stop.fulfiller);
      started_ = true;
    }
    stop.promise.wait(io.waitScope);
    loop.Drain().wait(io.waitScope);
  });
  KJ_IF_MAYBE (e, error) {
    absl::MutexLock lock(&mu_);
    if (!started_) {
      start_status_ =
          absl::InternalError(absl::StrCat("control channel: ", e->getDescription().cStr()));
      started_ = true;
    } else {
      KEEL_LOG(ERROR) << "control channel failed: " << e->getDescription().cStr();
    }
  }
}

kj::Promise<Machine*> ControlServer::Impl::SubmitLaunch(LaunchRequest request) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<Machine*>();
  {
    absl::MutexLock lock(&mu_);
    pending_launch_ = std::move(request);
    launch_done_ = kj::mv(paf.fulfiller);
  }
  launch_ready_.Signal();
  return kj::mv(paf.promise);
}

std::optional<LaunchRequest> ControlServer::Impl::WaitForLaunch(int signal_fd) {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (pending_launch_.has_value()) {
        std::optional<LaunchRequest> r = std::move(pending_launch_);
        pending_launch_.reset();
        return r;
      }
    }
    pollfd fds[2] = {{launch_ready_.fd(), POLLIN, 0}, {signal_fd, POLLIN, 0}};
    const int n = poll(fds, signal_fd >= 0 ? 2 : 1, -1);
    if (n < 0 && errno != EINTR) return std::nullopt;
    launch_ready_.Consume();
    if (signal_fd >= 0 && (fds[1].revents & POLLIN) != 0) return std::nullopt;
  }
}

void ControlServer::Impl::Answer(Machine* machine, const absl::Status& status) {
  kj::Own<kj::CrossThreadPromiseFulfiller<Machine*>> done;
  {
    absl::MutexLock lock(&mu_);
    done = kj::mv(launch_done_);
  }
  if (done.get() == nullptr) return;
  if (status.ok()) {
    done->fulfill(kj::mv(machine));
  } else {
    done->reject(Failed(status.message()));
  }
}

void ControlServer::Impl::Stop() {
  if (!thread_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    if (stop_.get() != nullptr) stop_->fulfill();
  }
  thread_.join();
  absl::MutexLock lock(&mu_);
  stop_ = nullptr;
  if (!options_.socket_path.empty()) unlink(options_.socket_path.c_str());
}

// ---------------------------------------------------------------------------------------
// ControlServer

ControlServer::ControlServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ControlServer::~ControlServer() { Stop(); }

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Start(Options options) {
  absl::StatusOr<EventFd> ready = EventFd::Create();
  if (!ready.ok()) return ready.status();
  absl::StatusOr<EventFd> notify = EventFd::Create();
  if (!notify.ok()) return notify.status();
  auto impl = std::make_unique<Impl>(std::move(options), std::move(*ready), std::move(*notify));
  absl::Status s = impl->StartThread();
  auto server = std::unique_ptr<ControlServer>(new ControlServer(std::move(impl)));
  if (!s.ok()) return s;
  return server;
}

std::optional<LaunchRequest> ControlServer::WaitForLaunch(int signal_fd) {
  return impl_->WaitForLaunch(signal_fd);
}

void ControlServer::LaunchFailed(const absl::Status& status) { impl_->Answer(nullptr, status); }

void ControlServer::Launched(Machine* machine) {
  machine->console_log().SetWriteNotifier(impl_->console_notify_.fd());
  impl_->Answer(machine, absl::OkStatus());
}

void ControlServer::Stop() { impl_->Stop(); }

}  // namespace keel::vmm
