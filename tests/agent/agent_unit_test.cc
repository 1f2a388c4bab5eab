// keeld's pieces without a VMM: the store, capacity arithmetic, name/path/size validation,
// the console ring and the event fan-out.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "agent/capacity.h"
#include "agent/console_buffer.h"
#include "agent/events.h"
#include "agent/store.h"
#include "agent/validate.h"
#include "agent/vm_spec.h"
#include "gtest/gtest.h"
#include "kj/async.h"

namespace keel::agent {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/keel-agent-unit-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

VmRow Vm(const std::string& id, const std::string& name, const std::string& mac) {
  return {.id = id,
          .name = name,
          .request_id = "req-" + id,
          .spec = "spec",
          .created_ns = 1,
          .last_error = "",
          .nics = {{.index = 0, .network = "n", .mac = mac, .tap = "kt" + id + "-0", .mtu = 1500}}};
}

TEST(StoreTest, OpensInWalModeWithFullSync) {
  TempDir dir;
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->JournalMode(), "wal");
  EXPECT_EQ((*store)->SynchronousLevel(), 2);
}

TEST(StoreTest, SecondAgentOnTheSameStateDirIsRefused) {
  TempDir dir;
  auto first = Store::Open(dir.path());
  ASSERT_TRUE(first.ok());
  auto second = Store::Open(dir.path());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(StoreTest, VmsSurviveReopen) {
  TempDir dir;
  {
    auto store = Store::Open(dir.path());
    ASSERT_TRUE(store.ok());
    VmRow vm = Vm("a1", "web", "52:54:00:00:00:01");
    ASSERT_TRUE((*store)->InsertVm(vm).ok());
    vm.state = 2;
    vm.pid = 1234;
    vm.start_time = 99;
    ASSERT_TRUE((*store)->UpdateVm(vm).ok());
  }
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok());
  auto vms = (*store)->LoadVms();
  ASSERT_TRUE(vms.ok());
  ASSERT_EQ(vms->size(), 1u);
  EXPECT_EQ((*vms)[0].name, "web");
  EXPECT_EQ((*vms)[0].pid, 1234);
  EXPECT_EQ((*vms)[0].start_time, 99u);
  ASSERT_EQ((*vms)[0].nics.size(), 1u);
  EXPECT_EQ((*vms)[0].nics[0].mac, "52:54:00:00:00:01");
}

TEST(StoreTest, GroupedChangesShareOneCommit) {
  TempDir dir;
  kj::EventLoop loop;
  kj::WaitScope wait(loop);
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok());
  const uint64_t before = (*store)->commits();
  std::vector<kj::Promise<absl::Status>> acks;
  for (int i = 0; i < 20; ++i) {
    VmRow vm = Vm("g" + std::to_string(i), "vm-" + std::to_string(i),
                  "52:54:00:00:01:" + std::to_string(10 + i));
    ASSERT_TRUE((*store)->InsertVm(vm, Store::Durability::kGrouped).ok());
    vm.state = 2;
    ASSERT_TRUE((*store)->UpdateVm(vm, Store::Durability::kGrouped).ok());
    acks.push_back((*store)->Synced());
  }
  // A refused change in the batch undoes only itself.
  EXPECT_EQ((*store)->InsertVm(Vm("dup", "vm-3", "52:54:00:00:02:01"), Store::Durability::kGrouped)
                .code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ((*store)->commits(), before);  // nothing committed yet
  EXPECT_EQ((*store)->LoadVms()->size(), 20u);
  for (auto& ack : acks) EXPECT_TRUE(ack.wait(wait).ok());
  EXPECT_EQ((*store)->commits(), before + 1);
  EXPECT_TRUE((*store)->Synced().wait(wait).ok());  // nothing pending: at once
}

TEST(StoreTest, AcknowledgedGroupedChangesSurviveAKilledProcess) {
  TempDir dir;
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    kj::EventLoop loop;
    kj::WaitScope wait(loop);
    auto store = Store::Open(dir.path());
    if (!store.ok()) _exit(2);
    std::vector<kj::Promise<absl::Status>> acks;
    for (int i = 0; i < 50; ++i) {
      VmRow vm = Vm("k" + std::to_string(i), "vm-" + std::to_string(i),
                    "52:54:00:00:03:" + std::to_string(10 + i));
      if (!(*store)->InsertVm(vm, Store::Durability::kGrouped).ok()) _exit(3);
      acks.push_back((*store)->Synced());
    }
    for (auto& ack : acks) {
      if (!ack.wait(wait).ok()) _exit(4);
    }
    // Acknowledged: die at once, like a SIGKILL (no destructor, no close).
    kill(getpid(), SIGKILL);
    _exit(5);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  auto vms = (*store)->LoadVms();
  ASSERT_TRUE(vms.ok());
  EXPECT_EQ(vms->size(), 50u);
}

TEST(StoreTest, NameRequestIdAndMacAreUnique) {
  TempDir dir;
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->InsertVm(Vm("a1", "web", "52:54:00:00:00:01")).ok());
  EXPECT_EQ((*store)->InsertVm(Vm("a2", "web", "52:54:00:00:00:02")).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ((*store)->InsertVm(Vm("a3", "db", "52:54:00:00:00:01")).code(),
            absl::StatusCode::kAlreadyExists);
  // A failed insert leaves nothing half-written.
  auto vms = (*store)->LoadVms();
  ASSERT_TRUE(vms.ok());
  EXPECT_EQ(vms->size(), 1u);
  EXPECT_TRUE(*(*store)->MacInUse("52:54:00:00:00:01"));
  EXPECT_FALSE(*(*store)->MacInUse("52:54:00:00:00:02"));
  ASSERT_TRUE((*store)->DeleteVm("a1").ok());
  EXPECT_FALSE(*(*store)->MacInUse("52:54:00:00:00:01"));
}

TEST(StoreTest, NetworksVolumesAndCounters) {
  TempDir dir;
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->InsertNetwork({.name = "n1", .bridge = "kbr-n1", .mtu = 9000}).ok());
  EXPECT_EQ((*store)->InsertNetwork({.name = "n1", .bridge = "kbr-x"}).code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE((*store)->InsertVolume({.name = "v", .path = "/x", .size = 512}).ok());
  ASSERT_TRUE((*store)->UpdateVolume({.name = "v", .path = "/x", .size = 1024, .state = 1}).ok());
  ASSERT_TRUE((*store)->SetCounter("seq", 7).ok());
  ASSERT_TRUE((*store)->SetCounter("seq", 8).ok());
  EXPECT_EQ((*(*store)->LoadNetworks())[0].mtu, 9000u);
  EXPECT_EQ((*(*store)->LoadVolumes())[0].size, 1024u);
  EXPECT_EQ(*(*store)->GetCounter("seq"), 8u);
  EXPECT_EQ(*(*store)->GetCounter("other"), 0u);
}

TEST(CapacityTest, TotalsFollowOvercommitAndReserve) {
  CapacityReport r =
      ComputeCapacity({.cpu_overcommit = 4.0, .memory_overcommit = 1.5, .memory_reserve_mib = 1024},
                      8, 9216, 1000, {.vcpus = 3, .memory_mib = 100, .disk_bytes = 24});
  EXPECT_EQ(r.vcpus_total, 32u);
  EXPECT_EQ(r.memory_mib_total, 12288u);
  EXPECT_EQ(r.disk_bytes_total, 1024u);
}

TEST(CapacityTest, ReserveLargerThanTheHostLeavesNothing) {
  CapacityReport r = ComputeCapacity({.memory_reserve_mib = 4096}, 1, 2048, 0, {});
  EXPECT_EQ(r.memory_mib_total, 0u);
  EXPECT_EQ(CheckFits(r, {.memory_mib = 16}).code(), absl::StatusCode::kResourceExhausted);
}

TEST(CapacityTest, FitsExactlyThenRefusesWithAMessage) {
  CapacityReport r = ComputeCapacity({.cpu_overcommit = 1.0, .memory_reserve_mib = 0}, 4, 1024, 0,
                                     {.vcpus = 2, .memory_mib = 512});
  EXPECT_TRUE(CheckFits(r, {.vcpus = 2, .memory_mib = 512}).ok());
  absl::Status cpu = CheckFits(r, {.vcpus = 3});
  EXPECT_EQ(cpu.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(cpu.message().find("vCPUs"), absl::string_view::npos);
  absl::Status mem = CheckFits(r, {.vcpus = 1, .memory_mib = 513});
  EXPECT_NE(mem.message().find("memory"), absl::string_view::npos);
  EXPECT_EQ(CheckFits(r, {.disk_bytes = 1}).code(), absl::StatusCode::kResourceExhausted);
}

TEST(ValidateTest, Names) {
  EXPECT_TRUE(ValidateName("VM", "web-1").ok());
  EXPECT_TRUE(ValidateName("VM", "0abc").ok());
  EXPECT_TRUE(ValidateName("VM", std::string(63, 'a')).ok());
  for (const char* bad : {"", "-web", "Web", "web_1", "web.1", "a b", "ü"}) {
    EXPECT_EQ(ValidateName("VM", bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(ValidateName("VM", std::string(64, 'a')).ok());
}

TEST(ValidateTest, Sizes) {
  EXPECT_TRUE(ValidateSizes(1, 16, 4, 1024).ok());
  EXPECT_FALSE(ValidateSizes(0, 128, 4, 1024).ok());
  EXPECT_FALSE(ValidateSizes(5, 128, 4, 1024).ok());
  EXPECT_FALSE(ValidateSizes(1, 0, 4, 1024).ok());
  EXPECT_FALSE(ValidateSizes(1, 15, 4, 1024).ok());
  EXPECT_FALSE(ValidateSizes(1, 2048, 4, 1024).ok());
}

TEST(ValidateTest, ImagePathsStayInsideTheImageDirectory) {
  TempDir dir;
  std::string images = dir.path() + "/images";
  fs::create_directories(images + "/sub");
  std::ofstream(images + "/k.elf") << "x";
  std::ofstream(images + "/sub/i.img") << "x";
  std::ofstream(dir.path() + "/secret") << "x";
  fs::create_symlink(dir.path() + "/secret", images + "/link");

  EXPECT_EQ(*ResolveImagePath(images, "k.elf", "kernel"), fs::canonical(images + "/k.elf"));
  EXPECT_TRUE(ResolveImagePath(images, images + "/sub/i.img", "disk").ok());
  EXPECT_EQ(ResolveImagePath(images, "missing", "kernel").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ResolveImagePath(images, "../secret", "kernel").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ResolveImagePath(images, "link", "kernel").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ResolveImagePath(images, "/etc/passwd", "kernel").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ResolveImagePath(images, "sub", "kernel").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ResolveImagePath(images, "", "kernel").status().code(),
            absl::StatusCode::kInvalidArgument);
  // A sibling directory sharing the prefix is still outside.
  fs::create_directories(images + "2");
  std::ofstream(images + "2/k") << "x";
  EXPECT_EQ(ResolveImagePath(images, images + "2/k", "kernel").status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(ValidateTest, TapNamesFitAndDiffer) {
  std::string id = NewVmId();
  EXPECT_EQ(id.size(), 36u);
  EXPECT_NE(id, NewVmId());
  std::string t0 = TapName(id, 0), t1 = TapName(id, 1);
  EXPECT_LE(t0.size(), 15u);
  EXPECT_LE(TapName(id, 99).size(), 15u);
  EXPECT_NE(t0, t1);
}

TEST(VmSpecTest, RoundTripsThroughTheStoreFormat) {
  VmSpecData spec;
  spec.name = "web";
  spec.vcpus = 2;
  spec.memory_mib = 256;
  spec.kernel_path = "k";
  spec.cmdline = "console=ttyS0";
  spec.disks = {{.volume = "root", .cache_none = true, .serial = "s1"},
                {.image_path = "img", .read_only = true}};
  spec.nics = {{.network = "n", .mac = "52:54:00:01:02:03", .mtu = 9000}};
  spec.labels = {{"team", "a"}};
  spec.auto_start = false;
  EXPECT_EQ(VmSpecData::Deserialize(spec.Serialize()), spec);
  EXPECT_EQ(VmSpecData::Deserialize("garbage!"), VmSpecData{});
}

TEST(ConsoleBufferTest, ReadsWhatWasAppended) {
  ConsoleBuffer b(16);
  b.Append(0, reinterpret_cast<const uint8_t*>("hello "), 6);
  b.Append(6, reinterpret_cast<const uint8_t*>("world"), 5);
  auto c = b.Read(0, 100);
  EXPECT_EQ(c.data, "hello world");
  EXPECT_EQ(c.start_offset, 0u);
  EXPECT_EQ(c.next_offset, 11u);
  EXPECT_EQ(b.Read(6, 3).data, "wor");
}

TEST(ConsoleBufferTest, KeepsOnlyTheNewestBytesAcrossTheWrap) {
  ConsoleBuffer b(8);
  b.Append(0, reinterpret_cast<const uint8_t*>("abcdef"), 6);
  b.Append(6, reinterpret_cast<const uint8_t*>("ghijk"), 5);
  auto c = b.Read(0, 100);
  EXPECT_EQ(c.start_offset, 3u);
  EXPECT_EQ(c.data, "defghijk");
  EXPECT_EQ(b.end_offset(), 11u);
  b.Append(11, reinterpret_cast<const uint8_t*>("0123456789ABCDEF"), 16);
  EXPECT_EQ(b.Read(0, 100).data, "89ABCDEF");
  EXPECT_EQ(b.start_offset(), 19u);
}

TEST(ConsoleBufferTest, OverlapsAreTrimmedAndGapsRestart) {
  ConsoleBuffer b(32);
  b.Append(0, reinterpret_cast<const uint8_t*>("abcd"), 4);
  b.Append(2, reinterpret_cast<const uint8_t*>("cdef"), 4);  // overlaps by 2
  EXPECT_EQ(b.Read(0, 100).data, "abcdef");
  b.Append(100, reinterpret_cast<const uint8_t*>("xy"), 2);  // bytes 6..99 never seen
  auto c = b.Read(0, 100);
  EXPECT_EQ(c.start_offset, 100u);
  EXPECT_EQ(c.data, "xy");
  EXPECT_EQ(b.Read(200, 10).data, "");
  EXPECT_EQ(b.Read(200, 10).start_offset, 102u);
}

// Records events; when `stall` is set, never completes a push (a client that stopped reading).
class TestSink final : public rpc::EventSink::Server {
 public:
  TestSink(std::shared_ptr<std::vector<uint64_t>> seen, bool stall)
      : seen_(std::move(seen)), stall_(stall) {}

 protected:
  kj::Promise<void> push(PushContext context) override {
    seen_->push_back(context.getParams().getEvent().getSeq());
    if (stall_) return kj::NEVER_DONE;
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<std::vector<uint64_t>> seen_;
  bool stall_;
};

TEST(EventHubTest, SlowWatcherIsDroppedWithoutHoldingBackOthers) {
  kj::EventLoop loop;
  kj::WaitScope ws(loop);
  EventHub hub(nullptr, /*queue_limit=*/4, /*history_limit=*/100);
  auto fast = std::make_shared<std::vector<uint64_t>>();
  auto slow = std::make_shared<std::vector<uint64_t>>();
  rpc::Handle::Client fast_handle = hub.Watch(kj::heap<TestSink>(fast, false), 0);
  rpc::Handle::Client slow_handle = hub.Watch(kj::heap<TestSink>(slow, true), 0);
  EXPECT_EQ(hub.watcher_count(), 2u);
  for (int i = 0; i < 20; ++i) {
    hub.Publish(rpc::EventType::STARTED, "id", "vm", rpc::VmState::RUNNING, "");
    loop.run();
  }
  EXPECT_EQ(fast->size(), 20u);
  EXPECT_EQ(hub.watcher_count(), 1u);
  EXPECT_EQ(hub.dropped_count(), 1u);
  EXPECT_LT(slow->size(), 20u);
  for (size_t i = 0; i < fast->size(); ++i) EXPECT_EQ((*fast)[i], i + 1);
}

TEST(EventHubTest, ReplaysHistoryAfterASequenceNumberAndStopsWhenReleased) {
  kj::EventLoop loop;
  kj::WaitScope ws(loop);
  EventHub hub(nullptr, 16, 3);
  for (int i = 0; i < 5; ++i) {
    hub.Publish(rpc::EventType::CREATED, "id", "vm", rpc::VmState::STOPPED, "");
  }
  auto seen = std::make_shared<std::vector<uint64_t>>();
  {
    rpc::Handle::Client handle = hub.Watch(kj::heap<TestSink>(seen, false), 1);
    loop.run();
    EXPECT_EQ(*seen, (std::vector<uint64_t>{3, 4, 5}));  // history keeps the last 3
  }
  loop.run();
  EXPECT_EQ(hub.watcher_count(), 0u);
  hub.Publish(rpc::EventType::DELETED, "id", "vm", rpc::VmState::DELETED, "");
  loop.run();
  EXPECT_EQ(seen->size(), 3u);
}

TEST(EventHubTest, SequenceNumbersContinueAcrossRestarts) {
  TempDir dir;
  {
    auto store = Store::Open(dir.path());
    kj::EventLoop loop;
    kj::WaitScope ws(loop);
    EventHub hub(store->get(), 16, 16);
    hub.Publish(rpc::EventType::CREATED, "id", "vm", rpc::VmState::STOPPED, "");
    hub.Publish(rpc::EventType::STARTED, "id", "vm", rpc::VmState::RUNNING, "");
  }
  auto store = Store::Open(dir.path());
  kj::EventLoop loop;
  kj::WaitScope ws(loop);
  EventHub hub(store->get(), 16, 16);
  uint64_t next = hub.Publish(rpc::EventType::STOPPED, "id", "vm", rpc::VmState::STOPPED, "");
  EXPECT_GT(next, 2u);
  EXPECT_EQ(hub.Publish(rpc::EventType::DELETED, "id", "vm", rpc::VmState::DELETED, ""), next + 1);
}

}  // namespace
}  // namespace keel::agent

namespace keel::agent {
namespace {

TEST(ConsoleBufferTest, StorageGrowsWithUseUpToTheCapacity) {
  ConsoleBuffer b(1 << 20);
  EXPECT_EQ(b.allocated(), 0u);
  std::string line = "keeltest: idle\n";
  b.Append(0, reinterpret_cast<const uint8_t*>(line.data()), line.size());
  EXPECT_LE(b.allocated(), 4096u);
  std::string big(300000, 'x');
  big[0] = 'a';
  big.back() = 'z';
  b.Append(line.size(), reinterpret_cast<const uint8_t*>(big.data()), big.size());
  EXPECT_LE(b.allocated(), 1u << 20);
  auto all = b.Read(0, 1 << 20);
  EXPECT_EQ(all.data, line + big);
  std::string more(2 << 20, 'y');
  b.Append(b.end_offset(), reinterpret_cast<const uint8_t*>(more.data()), more.size());
  EXPECT_EQ(b.allocated(), 1u << 20);
  EXPECT_EQ(b.Read(0, 1 << 21).data, std::string(1 << 20, 'y'));
}

}  // namespace
}  // namespace keel::agent
