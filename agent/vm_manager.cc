#include "agent/vm_manager.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/errors.h"
#include "agent/validate.h"
#include "agent/vm_manager_internal.h"
#include "base/log.h"
#include "base/status.h"
#include "block/image.h"
#include "net/bridged_tap.h"

namespace keel::agent {
namespace {

class LogTaskErrors : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    KEEL_LOG(WARNING) << "background task failed: " << e.getDescription().cStr();
  }
};
LogTaskErrors log_task_errors;

std::string Describe(const kj::Exception& e) { return std::string(e.getDescription().cStr()); }

// A 52:54:00 (QEMU/KVM OUI, what guests and tools expect) MAC with three random octets.
std::string RandomMac() {
  uint8_t b[3] = {};
  while (getrandom(b, sizeof(b), 0) != sizeof(b)) {
  }
  return absl::StrFormat("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]);
}

bool IsActive(int state) {
  auto s = static_cast<rpc::VmState>(state);
  return s == rpc::VmState::RUNNING || s == rpc::VmState::PAUSED || s == rpc::VmState::STARTING ||
         s == rpc::VmState::STOPPING;
}

}  // namespace

class VmManager::VmmConsoleSink final : public rpc::vmm::ConsoleSink::Server {
 public:
  VmmConsoleSink(std::weak_ptr<VmManager*> manager, std::string id, uint64_t generation)
      : manager_(std::move(manager)), id_(std::move(id)), generation_(generation) {}

 protected:
  kj::Promise<void> write(WriteContext context) override {
    auto manager = manager_.lock();
    if (!manager || !*manager) return kj::READY_NOW;
    VmManager& m = **manager;
    Vm* vm = m.Find(id_);
    if (vm == nullptr || vm->generation != generation_) return kj::READY_NOW;
    auto params = context.getParams();
    auto data = params.getData();
    vm->console.Append(vm->console_base + params.getOffset(), data.begin(), data.size());
    std::vector<uint64_t> ids;
    for (auto& [fid, f] : vm->followers) ids.push_back(fid);
    for (uint64_t fid : ids) m.PumpConsole(id_, fid);
    return kj::READY_NOW;
  }

 private:
  std::weak_ptr<VmManager*> manager_;
  std::string id_;
  uint64_t generation_;
};

class VmManager::FollowHandle final : public rpc::Handle::Server {
 public:
  FollowHandle(std::weak_ptr<VmManager*> manager, std::string id, uint64_t follower)
      : manager_(std::move(manager)), id_(std::move(id)), follower_(follower) {}
  ~FollowHandle() noexcept(false) {
    auto manager = manager_.lock();
    if (!manager || !*manager) return;
    if (Vm* vm = (*manager)->Find(id_)) vm->followers.erase(follower_);
  }

 private:
  std::weak_ptr<VmManager*> manager_;
  std::string id_;
  uint64_t follower_;
};

VmManager::VmManager(kj::AsyncIoContext& io, const Config& config, Store& store, EventHub& events,
                     HostInventory host)
    : io_(io),
      config_(config),
      store_(store),
      events_(events),
      host_(std::move(host)),
      boot_time_ns_(NowNs()),
      self_(std::make_shared<VmManager*>(this)),
      tasks_(kj::heap<kj::TaskSet>(log_task_errors)) {}

VmManager::~VmManager() { *self_ = nullptr; }

VmManager::Vm* VmManager::Find(const std::string& id) const {
  auto it = vms_.find(id);
  return it == vms_.end() ? nullptr : it->second.get();
}

absl::StatusOr<std::string> VmManager::Resolve(const std::string& id_or_name) const {
  if (vms_.count(id_or_name) != 0) return id_or_name;
  for (const auto& [id, vm] : vms_) {
    if (vm->row.name == id_or_name) return id;
  }
  return absl::NotFoundError(
      absl::StrCat("no VM with id or name \"", id_or_name, "\"; listVms shows what exists"));
}

kj::Promise<absl::Status> VmManager::Serialized(Vm& vm,
                                                kj::Function<kj::Promise<absl::Status>()> op) {
  auto result = vm.ops.addBranch().then([op = kj::mv(op)]() mutable { return op(); }).fork();
  vm.ops = result.addBranch().then([](absl::Status) {}, [](kj::Exception&&) {}).fork();
  return result.addBranch();
}

absl::Status VmManager::Persist(Vm& vm) {
  absl::Status s = store_.UpdateVm(vm.row);
  if (!s.ok()) KEEL_LOG(ERROR) << "could not record the state of VM " << vm.row.name << ": " << s;
  return s;
}

void VmManager::Publish(Vm& vm, rpc::EventType type, std::string message) {
  events_.Publish(type, vm.row.id, vm.row.name, static_cast<rpc::VmState>(vm.row.state),
                  std::move(message));
}

// ---- Info ------------------------------------------------------------------------------------

absl::Status VmManager::FillInfo(const std::string& id, rpc::VmInfo::Builder info) const {
  Vm* vm = Find(id);
  if (vm == nullptr) return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted"));
  const VmRow& r = vm->row;
  info.setId(r.id);
  info.setName(r.name);
  vm->spec.ToCapnp(info.initSpec());
  info.setState(static_cast<rpc::VmState>(r.state));
  info.setDesiredState(static_cast<rpc::VmState>(r.desired));
  info.setPid(vm->vmm ? vm->vmm->pid() : 0);
  info.setCreatedTimeNs(r.created_ns);
  info.setStartedTimeNs(vm->vmm ? r.started_ns : 0);
  auto nics = info.initNics(static_cast<unsigned>(r.nics.size()));
  for (size_t i = 0; i < r.nics.size(); ++i) {
    auto n = nics[static_cast<unsigned>(i)];
    n.setNetwork(r.nics[i].network);
    n.setMac(r.nics[i].mac);
    n.setTap(r.nics[i].tap);
    n.setMtu(r.nics[i].mtu);
  }
  auto disks = info.initDisks(static_cast<unsigned>(vm->spec.disks.size()));
  for (size_t i = 0; i < vm->spec.disks.size(); ++i) {
    const DiskSpecData& d = vm->spec.disks[i];
    auto b = disks[static_cast<unsigned>(i)];
    if (!d.volume.empty()) {
      b.setName(d.volume);
      auto v = volumes_.find(d.volume);
      b.setPath(v == volumes_.end() ? "" : v->second.path);
    } else {
      b.setName(d.image_path);
      b.setPath(d.image_path);
    }
    b.setReadOnly(d.read_only);
    b.setSerial(d.serial.empty() ? (d.volume.empty() ? "" : d.volume) : d.serial);
  }
  info.setLastExitStatus(r.last_exit);
  info.setLastError(r.last_error);
  info.setConsoleBytes(vm->console.end_offset());
  info.setRequestId(r.request_id);
  return absl::OkStatus();
}

std::vector<std::string> VmManager::List(rpc::VmFilter::Reader filter) const {
  std::vector<std::pair<int64_t, const std::string*>> found;  // (created_ns, id)
  found.reserve(vms_.size());
  std::string contains = filter.getNameContains();
  for (const auto& [id, vm] : vms_) {
    if (!contains.empty() && vm->row.name.find(contains) == std::string::npos) continue;
    if (filter.getStates().size() > 0) {
      bool match = false;
      for (auto s : filter.getStates()) match |= static_cast<int>(s) == vm->row.state;
      if (!match) continue;
    }
    bool labels_ok = true;
    for (auto want : filter.getLabels()) {
      bool found = false;
      for (const auto& [k, v] : vm->spec.labels) {
        found |= k == want.getKey().cStr() && v == want.getValue().cStr();
      }
      labels_ok &= found;
    }
    if (!labels_ok) continue;
    found.emplace_back(vm->row.created_ns, &id);
  }
  // Creation order, ties by id (the map's order), with no lookups while sorting.
  std::stable_sort(found.begin(), found.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  out.reserve(found.size());
  for (const auto& [created, id] : found) out.push_back(*id);
  return out;
}

// ---- Create ----------------------------------------------------------------------------------

absl::Status VmManager::ValidateSpec(const VmSpecData& spec) const {
  KEEL_RETURN_IF_ERROR(ValidateName("VM", spec.name));
  KEEL_RETURN_IF_ERROR(
      ValidateSizes(spec.vcpus, spec.memory_mib, MaxVcpusPerVm(host_), host_.memory_mib));
  KEEL_RETURN_IF_ERROR(ResolveImagePath(config_.image_dir, spec.kernel_path, "kernel").status());
  if (!spec.initrd_path.empty()) {
    KEEL_RETURN_IF_ERROR(ResolveImagePath(config_.image_dir, spec.initrd_path, "initrd").status());
  }
  std::set<std::string> volumes;
  for (const DiskSpecData& d : spec.disks) {
    if (d.volume.empty() == d.image_path.empty()) {
      return absl::InvalidArgumentError("a disk needs a volume name or an image path");
    }
    if (d.serial.size() > 20) {
      return absl::InvalidArgumentError(
          absl::StrCat("disk serial \"", d.serial, "\" is longer than 20 bytes; shorten it"));
    }
    if (!d.volume.empty()) {
      auto v = volumes_.find(d.volume);
      if (v == volumes_.end()) {
        return absl::NotFoundError(
            absl::StrCat("volume ", d.volume, " does not exist; create or import it first"));
      }
      if (v->second.state != static_cast<int>(rpc::VolumeState::READY)) {
        return absl::FailedPreconditionError(
            absl::StrCat("volume ", d.volume, " is still importing; wait for it"));
      }
      if (!volumes.insert(d.volume).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("volume ", d.volume, " is listed twice; attach it once"));
      }
    } else {
      KEEL_RETURN_IF_ERROR(
          ResolveImagePath(config_.image_dir, d.image_path, "disk image").status());
    }
  }
  std::set<std::string> macs;
  for (const NicSpecData& n : spec.nics) {
    bool known = false;
    for (const NetworkRow& net : networks_) known |= net.name == n.network;
    if (!known) {
      return absl::NotFoundError(
          absl::StrCat("network \"", n.network, "\" does not exist; create it with createNetwork"));
    }
    if (n.mtu > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("NIC MTU ", n.mtu, " is above 65535"));
    }
    if (!n.mac.empty()) {
      auto mac = net::MacAddress::Parse(n.mac);
      if (!mac.ok()) return mac.status();
      KEEL_RETURN_IF_ERROR(mac->CheckValidUnicast());
      std::string canonical = mac->ToString();
      if (!macs.insert(canonical).second) {
        return absl::InvalidArgumentError(absl::StrCat("MAC ", canonical, " is used twice"));
      }
      for (const auto& [id, vm] : vms_) {
        for (const NicRow& nic : vm->row.nics) {
          if (nic.mac == canonical) {
            return absl::AlreadyExistsError(absl::StrCat(
                "MAC ", canonical, " is already used by VM ", vm->row.name, "; pick another"));
          }
        }
      }
    }
  }
  for (const auto& [id, vm] : vms_) {
    if (vm->row.name == spec.name) {
      return absl::AlreadyExistsError(
          absl::StrCat("a VM named ", spec.name, " already exists; pick another name"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<NicRow>> VmManager::AllocateNics(const std::string& id,
                                                            const VmSpecData& spec) {
  std::set<std::string> used;
  for (const auto& [vid, vm] : vms_) {
    for (const NicRow& nic : vm->row.nics) used.insert(nic.mac);
  }
  std::vector<NicRow> nics;
  for (size_t i = 0; i < spec.nics.size(); ++i) {
    const NicSpecData& n = spec.nics[i];
    std::string mac;
    if (!n.mac.empty()) {
      mac = net::MacAddress::Parse(n.mac)->ToString();
    } else {
      for (int tries = 0; tries < 1000 && mac.empty(); ++tries) {
        std::string candidate = RandomMac();
        if (used.count(candidate) != 0) continue;
        KEEL_ASSIGN_OR_RETURN(bool in_store, store_.MacInUse(candidate));
        if (!in_store) mac = candidate;
      }
      if (mac.empty()) return absl::ResourceExhaustedError("no free MAC address left");
    }
    used.insert(mac);
    uint32_t mtu = n.mtu;
    for (const NetworkRow& net : networks_) {
      if (net.name == n.network && mtu == 0) mtu = net.mtu;
    }
    nics.push_back({.index = static_cast<uint32_t>(i),
                    .network = n.network,
                    .mac = mac,
                    .tap = TapName(id, static_cast<uint32_t>(i)),
                    .mtu = mtu});
  }
  return nics;
}

kj::Promise<absl::StatusOr<std::string>> VmManager::CreateVm(std::string request_id,
                                                             VmSpecData spec) {
  if (!request_id.empty()) {
    for (const auto& [id, vm] : vms_) {
      if (vm->row.request_id != request_id) continue;
      if (vm->spec == spec) {
        // Not before the first call's record is durable (it may still be in the open batch).
        return store_.Synced().then(
            [found = std::string(id)](absl::Status s) -> absl::StatusOr<std::string> {
              if (!s.ok()) return s;
              return found;
            });
      }
      return absl::StatusOr<std::string>(absl::AlreadyExistsError(
          absl::StrCat("request id ", request_id, " already made VM ", vm->row.name,
                       " with a different spec; use a new request id")));
    }
  }
  if (absl::Status s = ValidateSpec(spec); !s.ok()) return absl::StatusOr<std::string>(s);
  CapacityReport capacity = Capacity();
  if (absl::Status s = CheckFits(capacity, {.vcpus = spec.vcpus, .memory_mib = spec.memory_mib});
      !s.ok()) {
    return absl::StatusOr<std::string>(s);
  }
  std::string id = NewVmId();
  auto nics = AllocateNics(id, spec);
  if (!nics.ok()) return absl::StatusOr<std::string>(nics.status());

  auto vm = std::make_unique<Vm>(config_.console_buffer_bytes);
  vm->spec = spec;
  vm->row = {
      .id = id,
      .name = spec.name,
      .request_id = request_id,
      .spec = spec.Serialize(),
      .desired = static_cast<int>(spec.auto_start ? rpc::VmState::RUNNING : rpc::VmState::STOPPED),
      // With autoStart the start's intent goes in with the record (one store write).
      .state = static_cast<int>(spec.auto_start ? rpc::VmState::STARTING : rpc::VmState::STOPPED),
      .created_ns = NowNs(),
      .last_error = "",
      .nics = *std::move(nics)};
  // Group commit: concurrent creates share one store commit; the VM's first operation waits
  // for it, so nothing about the VM is acknowledged (and no VMM exists) before it is durable.
  if (absl::Status s = store_.InsertVm(vm->row, Store::Durability::kGrouped); !s.ok()) {
    return absl::StatusOr<std::string>(s);
  }
  Vm& ref = *vm;
  vms_.emplace(id, std::move(vm));
  const bool auto_start = spec.auto_start;

  // The rollback runs inside the VM's operation, so it happens even if the caller goes away.
  return Serialized(ref,
                    [this, id, auto_start]() {
                      return store_.Synced().then(
                          [this, id, auto_start](absl::Status s) -> kj::Promise<absl::Status> {
                            Vm* vm = Find(id);
                            if (vm == nullptr) return absl::NotFoundError("VM deleted");
                            if (!s.ok()) {
                              KEEL_LOG(ERROR) << "could not record VM " << vm->row.name << ": "
                                              << s;
                              Bury(std::move(vms_[id]));
                              vms_.erase(id);
                              return s;
                            }
                            Publish(*vm, rpc::EventType::CREATED, "");
                            KEEL_LOG(INFO) << "created VM " << vm->row.name << " (" << id << ")";
                            if (!auto_start) return absl::OkStatus();
                            return DoStart(id, /*intent_recorded=*/true)
                                .then([this, id](absl::Status s) { return RollBackCreate(id, s); });
                          });
                    })
      .then([this, id](absl::Status s) -> absl::StatusOr<std::string> {
        // Started, or kept (with lastError) after an unexpected failure: the VM exists.
        if (s.ok() || Find(id) != nullptr) return id;
        return s;
      });
}

absl::Status VmManager::RollBackCreate(const std::string& id, absl::Status start) {
  Vm* vm = Find(id);
  if (start.ok() || vm == nullptr) return start;
  if (!TypedErrorCode(start)) return start;  // unexpected: the VM stays, with lastError
  // An expected failure (image locked, a VMM that refused the spec): creating the VM changes
  // nothing after all.
  DeleteTaps(*vm);
  std::error_code ec;
  std::filesystem::remove_all(config_.vm_run_dir(id), ec);
  if (absl::Status d = store_.DeleteVm(id); !d.ok()) return d;
  vm->row.state = static_cast<int>(rpc::VmState::DELETED);
  Publish(*vm, rpc::EventType::DELETED, std::string(start.message()));
  Bury(std::move(vms_[id]));
  vms_.erase(id);
  return start;
}

// ---- Start -----------------------------------------------------------------------------------

kj::Promise<absl::Status> VmManager::Start(std::string id) {
  Vm* vm = Find(id);
  if (vm == nullptr) return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted"));
  return Serialized(*vm, [this, id]() { return DoStart(id); });
}

absl::StatusOr<VmmLaunch> VmManager::PrepareLaunch(Vm& vm) {
  VmmLaunch launch;
  launch.vmm_path = config_.vmm_path;
  launch.vm_id = vm.row.id;
  launch.run_dir = config_.vm_run_dir(vm.row.id);
  launch.cmdline = vm.spec.cmdline;
  launch.memory_mib = vm.spec.memory_mib;
  launch.vcpus = vm.spec.vcpus;

  KEEL_ASSIGN_OR_RETURN(std::string kernel,
                        ResolveImagePath(config_.image_dir, vm.spec.kernel_path, "kernel"));
  launch.kernel = ScopedFd(open(kernel.c_str(), O_RDONLY | O_CLOEXEC));
  if (!launch.kernel) return ErrnoError(errno, "open kernel ", kernel);
  if (!vm.spec.initrd_path.empty()) {
    KEEL_ASSIGN_OR_RETURN(std::string initrd,
                          ResolveImagePath(config_.image_dir, vm.spec.initrd_path, "initrd"));
    launch.initrd = ScopedFd(open(initrd.c_str(), O_RDONLY | O_CLOEXEC));
    if (!launch.initrd) return ErrnoError(errno, "open initrd ", initrd);
  }

  for (const DiskSpecData& d : vm.spec.disks) {
    std::string path;
    if (!d.volume.empty()) {
      auto v = volumes_.find(d.volume);
      if (v == volumes_.end()) {
        return absl::NotFoundError(absl::StrCat("volume ", d.volume, " no longer exists"));
      }
      path = v->second.path;
    } else {
      KEEL_ASSIGN_OR_RETURN(path, ResolveImagePath(config_.image_dir, d.image_path, "disk image"));
    }
    auto image = block::OpenImage(
        path, {.read_only = d.read_only,
               .cache = d.cache_none ? block::CacheMode::kNone : block::CacheMode::kWriteback});
    if (!image.ok()) {
      if (image.status().code() == absl::StatusCode::kFailedPrecondition) {
        return ImageLockedError(image.status().message());
      }
      return image.status();
    }
    std::string name = d.volume.empty() ? d.image_path : d.volume;
    launch.disks.push_back({.image = std::move(image->fd),
                            .name = name,
                            .read_only = d.read_only,
                            .direct_io = d.cache_none,
                            .serial = d.serial.empty() ? name.substr(0, 20) : d.serial});
  }

  if (!vm.row.nics.empty()) {
    net::NetlinkSocket* nl = Netlink();
    if (nl == nullptr) {
      return absl::PermissionDeniedError("NICs need netlink access; run keeld as root");
    }
    for (const NicRow& nic : vm.row.nics) {
      std::string bridge;
      for (const NetworkRow& n : networks_) {
        if (n.name == nic.network) bridge = n.bridge;
      }
      if (bridge.empty()) {
        return absl::NotFoundError(absl::StrCat("network ", nic.network, " no longer exists"));
      }
      (void)net::DeleteBridgedTap(*nl, nic.tap);  // a stale one from an interrupted start
      KEEL_ASSIGN_OR_RETURN(
          net::Tap tap,
          net::CreateBridgedTap(*nl, {.name = nic.tap, .bridge = bridge, .mtu = nic.mtu}));
      std::vector<ScopedFd> fds = tap.ReleaseFds();
      KEEL_ASSIGN_OR_RETURN(net::MacAddress mac, net::MacAddress::Parse(nic.mac));
      launch.nics.push_back(
          {.tap = std::move(fds.at(0)), .name = nic.tap, .mac = mac, .mtu = nic.mtu});
    }
  }
  return launch;
}

kj::Promise<absl::Status> VmManager::DoStart(std::string id, bool intent_recorded) {
  Vm* vm = Find(id);
  if (vm == nullptr) return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted"));
  if (vm->vmm) return absl::OkStatus();  // already running
  vm->row.desired = static_cast<int>(rpc::VmState::RUNNING);
  vm->row.state = static_cast<int>(rpc::VmState::STARTING);
  vm->row.pid = 0;
  vm->stop_requested = false;
  // Intent first: a keeld killed from here on finds `starting` and cleans up on restart.
  if (!intent_recorded) {
    if (absl::Status s = Persist(*vm); !s.ok()) return s;
  }

  auto fail = [this](Vm& vm, absl::Status s) {
    DeleteTaps(vm);
    vm.row.state = static_cast<int>(rpc::VmState::STOPPED);
    vm.row.last_error = std::string(s.message());
    (void)Persist(vm);
    return s;
  };
  auto launch = PrepareLaunch(*vm);
  if (!launch.ok()) return fail(*vm, launch.status());
  launch->call_timeout = CallTimeout();
  std::string run_dir = launch->run_dir;
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  unlink((run_dir + "/exit").c_str());
  unlink((run_dir + "/control.sock").c_str());
  struct stat log_stat {};
  vm->console_log_start =
      stat((run_dir + "/console.log").c_str(), &log_stat) == 0 ? log_stat.st_size : 0;

  return VmmProcess::Spawn(io_, *std::move(launch))
      .then(
          [this, id](kj::Own<VmmProcess> process) -> kj::Promise<absl::Status> {
            Vm* vm = Find(id);
            if (vm == nullptr) {
              process->Kill();
              return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted while starting"));
            }
            Running(*vm, kj::mv(process), rpc::VmState::RUNNING, /*attached=*/false);
            // Running recorded the pid in the shared batch: acknowledge once it is durable.
            return store_.Synced();
          },
          [this, id, fail](kj::Exception&& e) -> kj::Promise<absl::Status> {
            Vm* vm = Find(id);
            std::string why = Describe(e);
            if (vm == nullptr) return absl::NotFoundError(why);
            KEEL_LOG(WARNING) << "VM " << vm->row.name << " did not start: " << why;
            return fail(*vm, absl::FailedPreconditionError(
                                 absl::StrCat("VM ", vm->row.name, " did not start: ", why)));
          });
}

void VmManager::Running(Vm& vm, kj::Own<VmmProcess> process, rpc::VmState state, bool attached) {
  const std::string id = vm.row.id;
  vm.vmm = kj::mv(process);
  vm.generation++;
  vm.row.state = static_cast<int>(state);
  vm.row.pid = vm.vmm->pid();
  vm.row.start_time = vm.vmm->start_time();
  if (attached) vm.console_log_start = -1;
  if (!attached) {
    vm.row.started_ns = NowNs();
    vm.row.last_error.clear();
  }
  // A fresh start joins the shared batch (DoStart waits for it before acknowledging).
  if (absl::Status s = store_.UpdateVm(
          vm.row, attached ? Store::Durability::kNow : Store::Durability::kGrouped);
      !s.ok()) {
    KEEL_LOG(ERROR) << "could not record the state of VM " << vm.row.name << ": " << s;
  }
  if (!attached) Publish(vm, rpc::EventType::STARTED, absl::StrCat("pid ", vm.row.pid));
  KEEL_LOG(INFO) << (attached ? "re-attached to" : "started") << " VM " << vm.row.name << " (pid "
                 << vm.row.pid << ")";

  VmmProcess* raw = vm.vmm.get();
  vm.exited = raw->OnExit()
                  .then([this, id, raw](VmmExit exit) { HandleExit(id, raw, exit); })
                  .eagerlyEvaluate([](kj::Exception&& e) {
                    KEEL_LOG(ERROR) << "watching a VMM failed: " << e.getDescription().cStr();
                  })
                  .fork();

  // Console: the VMM's offsets start at 0 per process; keep ours monotonic per VM.
  vm.console_base = vm.console.end_offset();
  auto req = raw->control().followConsoleRequest();
  req.setOffset(0);
  req.setSink(kj::heap<VmmConsoleSink>(self_, id, vm.generation));
  auto pipeline = req.send();
  vm.console_follow = pipeline.getHandle();
  tasks_->add(pipeline.ignoreResult().catch_([id](kj::Exception&& e) {
    KEEL_LOG(DEBUG) << "console follow of VM " << id << " ended: " << e.getDescription().cStr();
  }));
}

// The console stream from a VMM loses its last bytes when the process exits before keeld has
// read them off the control socket (or before the follow was set up at all, for a guest that
// exits at once). console.log, written by the VMM itself, has every byte: take what the
// stream did not deliver from there.
void VmManager::TopUpConsoleFromLog(Vm& vm) {
  if (vm.console_log_start < 0) return;
  const int fd =
      open((config_.vm_run_dir(vm.row.id) + "/console.log").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  uint64_t pos =
      static_cast<uint64_t>(vm.console_log_start) + (vm.console.end_offset() - vm.console_base);
  uint8_t buf[16384];
  ssize_t n;
  while ((n = pread(fd, buf, sizeof(buf), static_cast<off_t>(pos))) > 0) {
    vm.console.Append(vm.console.end_offset(), buf, static_cast<size_t>(n));
    pos += static_cast<uint64_t>(n);
  }
  close(fd);
}

void VmManager::HandleExit(const std::string& id, VmmProcess* process, const VmmExit& exit) {
  Vm* vm = Find(id);
  if (vm == nullptr || vm->vmm.get() != process) return;
  VmRow& r = vm->row;
  r.last_exit =
      exit.exit_status >= 0 ? exit.exit_status : (exit.signal > 0 ? 128 + exit.signal : -1);
  r.pid = 0;
  r.start_time = 0;
  rpc::EventType type;
  if (vm->stop_requested || exit.clean()) {
    r.state = static_cast<int>(rpc::VmState::STOPPED);
    if (!vm->stop_requested) r.desired = static_cast<int>(rpc::VmState::STOPPED);  // guest's choice
    type = rpc::EventType::STOPPED;
  } else {
    r.state = static_cast<int>(rpc::VmState::CRASHED);
    r.last_error = absl::StrCat("keel-vmm ", exit.description);
    type = rpc::EventType::CRASHED;
  }
  r.started_ns = 0;
  DeleteTaps(*vm);
  (void)Persist(*vm);
  KEEL_LOG(INFO) << "VM " << r.name << " "
                 << (type == rpc::EventType::CRASHED ? "crashed" : "stopped") << ": "
                 << exit.description;
  TopUpConsoleFromLog(*vm);
  Publish(*vm, type, exit.description);
  vm->console_follow = nullptr;
  EndFollowers(*vm, exit.description);
  // This runs inside the process's own OnExit continuation: destroy it later.
  tasks_->add(kj::evalLater([p = kj::mv(vm->vmm)]() mutable { p = nullptr; }));
  vm->stop_requested = false;
}

// ---- Stop, reboot, pause, resume -------------------------------------------------------------

kj::Promise<void> VmManager::StopVmm(Vm& vm, bool hard, uint32_t timeout_ms) {
  KJ_IF_MAYBE (exited, vm.exited) {
    if (!vm.vmm) return kj::READY_NOW;
    bool paused = vm.row.state == static_cast<int>(rpc::VmState::PAUSED);
    vm.stop_requested = true;
    vm.row.state = static_cast<int>(rpc::VmState::STOPPING);
    (void)Persist(vm);
    std::string id = vm.row.id;
    uint64_t generation = vm.generation;
    auto hard_stop = [this, id, generation]() {
      Vm* vm = Find(id);
      if (vm == nullptr || !vm->vmm || vm->generation != generation) return;
      auto req = vm->vmm->control().shutdownRequest();
      req.setHard(true);
      tasks_->add(req.send().ignoreResult().catch_([this, id, generation](kj::Exception&& e) {
        // A VMM stopping hard may close the connection before it answers: that is the stop
        // working, and the timer below still kills one that does not finish exiting.
        if (e.getType() == kj::Exception::Type::DISCONNECTED) return;
        Vm* vm = Find(id);
        if (vm != nullptr && vm->vmm && vm->generation == generation) vm->vmm->Kill();
      }));
      // A VMM that does not exit promptly after a hard shutdown is killed.
      tasks_->add(
          io_.provider->getTimer().afterDelay(3 * kj::SECONDS).then([this, id, generation]() {
            Vm* vm = Find(id);
            if (vm != nullptr && vm->vmm && vm->generation == generation) vm->vmm->Kill();
          }));
    };
    if (hard || paused) {
      hard_stop();
      return exited->addBranch();
    }
    auto req = vm.vmm->control().shutdownRequest();
    req.setHard(false);
    tasks_->add(req.send().ignoreResult().catch_([hard_stop](kj::Exception&&) { hard_stop(); }));
    return exited->addBranch().exclusiveJoin(
        io_.provider->getTimer()
            .afterDelay(timeout_ms * kj::MILLISECONDS)
            .then([this, id, hard_stop]() -> kj::Promise<void> {
              Vm* vm = Find(id);
              if (vm == nullptr) return kj::READY_NOW;
              KEEL_LOG(INFO) << "VM " << vm->row.name
                             << " did not power off in time; stopping it hard";
              hard_stop();
              KJ_IF_MAYBE (e, vm->exited) {
                return e->addBranch();
              }
              return kj::READY_NOW;
            }));
  }
  return kj::READY_NOW;
}

kj::Promise<absl::Status> VmManager::Shutdown(std::string id, bool hard, uint32_t timeout_ms) {
  Vm* vm = Find(id);
  if (vm == nullptr) return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted"));
  return Serialized(*vm, [this, id, hard, timeout_ms]() -> kj::Promise<absl::Status> {
    Vm* vm = Find(id);
    if (vm == nullptr) return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted"));
    vm->row.desired = static_cast<int>(rpc::VmState::STOPPED);
    if (!vm->vmm) {
      (void)Persist(*vm);
      return absl::OkStatus();
    }
    return StopVmm(*vm, hard, timeout_ms).then([]() { return absl::OkStatus(); });
  });
}

kj::Promise<absl::Status> VmManager::Reboot(std::string id) {
  Vm* vm = Find(id);
  if (vm == nullptr) return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted"));
  return Serialized(*vm, [this, id]() -> kj::Promise<absl::Status> {
    Vm* vm = Find(id);
    if (vm == nullptr) return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted"));
    return StopVmm(*vm, true, 0).then([this, id]() { return DoStart(id); });
  });
}

kj::Promise<absl::Status> VmManager::Pause(std::string id) {
  Vm* vm = Find(id);
  if (vm == nullptr) return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted"));
  return Serialized(*vm, [this, id]() -> kj::Promise<absl::Status> {
    Vm* vm = Find(id);
    if (vm == nullptr) return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted"));
    if (vm->row.state == static_cast<int>(rpc::VmState::PAUSED)) return absl::OkStatus();
    if (!vm->vmm || vm->row.state != static_cast<int>(rpc::VmState::RUNNING)) {
      return absl::FailedPreconditionError(
          absl::StrCat("VM ", vm->row.name, " is not running; start it first"));
    }
    return VmmCall(vm->vmm->control().pauseRequest().send().ignoreResult(), "pause")
        .then([this, id]() -> absl::Status {
          Vm* vm = Find(id);
          if (vm == nullptr || !vm->vmm) {
            return absl::FailedPreconditionError("the VM stopped while pausing");
          }
          vm->row.state = static_cast<int>(rpc::VmState::PAUSED);
          vm->row.desired = static_cast<int>(rpc::VmState::PAUSED);
          KEEL_RETURN_IF_ERROR(Persist(*vm));
          Publish(*vm, rpc::EventType::PAUSED, "");
          return absl::OkStatus();
        });
  });
}

kj::Promise<absl::Status> VmManager::Resume(std::string id) {
  Vm* vm = Find(id);
  if (vm == nullptr) return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted"));
  return Serialized(*vm, [this, id]() -> kj::Promise<absl::Status> {
    Vm* vm = Find(id);
    if (vm == nullptr) return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted"));
    if (vm->row.state == static_cast<int>(rpc::VmState::RUNNING)) return absl::OkStatus();
    if (!vm->vmm || vm->row.state != static_cast<int>(rpc::VmState::PAUSED)) {
      return absl::FailedPreconditionError(absl::StrCat("VM ", vm->row.name, " is not paused"));
    }
    return VmmCall(vm->vmm->control().resumeRequest().send().ignoreResult(), "resume")
        .then([this, id]() -> absl::Status {
          Vm* vm = Find(id);
          if (vm == nullptr || !vm->vmm) {
            return absl::FailedPreconditionError("the VM stopped while resuming");
          }
          vm->row.state = static_cast<int>(rpc::VmState::RUNNING);
          vm->row.desired = static_cast<int>(rpc::VmState::RUNNING);
          KEEL_RETURN_IF_ERROR(Persist(*vm));
          Publish(*vm, rpc::EventType::RESUMED, "");
          return absl::OkStatus();
        });
  });
}

// ---- Delete ----------------------------------------------------------------------------------

kj::Promise<absl::StatusOr<kj::Own<capnp::MallocMessageBuilder>>> VmManager::Delete(std::string id,
                                                                                    bool force) {
  using Result = absl::StatusOr<kj::Own<capnp::MallocMessageBuilder>>;
  Vm* vm = Find(id);
  if (vm == nullptr) return Result(absl::NotFoundError(absl::StrCat("VM ", id, " was deleted")));
  auto out = std::make_shared<kj::Own<capnp::MallocMessageBuilder>>();
  return Serialized(
             *vm,
             [this, id, force, out]() -> kj::Promise<absl::Status> {
               Vm* vm = Find(id);
               if (vm == nullptr) {
                 return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted"));
               }
               if (vm->vmm && !force) {
                 return absl::FailedPreconditionError(absl::StrCat(
                     "VM ", vm->row.name, " is running; shut it down first or delete with force"));
               }
               return StopVmm(*vm, true, 0).then([this, id, out]() -> absl::Status {
                 Vm* vm = Find(id);
                 if (vm == nullptr) return absl::NotFoundError("VM already deleted");
                 DeleteTaps(*vm);
                 KEEL_RETURN_IF_ERROR(store_.DeleteVm(id));
                 std::error_code ec;
                 std::filesystem::remove_all(config_.vm_run_dir(id), ec);
                 vm->row.state = static_cast<int>(rpc::VmState::DELETED);
                 vm->row.desired = static_cast<int>(rpc::VmState::DELETED);
                 *out = kj::heap<capnp::MallocMessageBuilder>();
                 (void)FillInfo(id, (*out)->initRoot<rpc::VmInfo>());
                 Publish(*vm, rpc::EventType::DELETED, "");
                 EndFollowers(*vm, "the VM was deleted");
                 KEEL_LOG(INFO) << "deleted VM " << vm->row.name;
                 Bury(std::move(vms_[id]));
                 vms_.erase(id);
                 return absl::OkStatus();
               });
             })
      .then([out](absl::Status s) -> Result {
        if (!s.ok()) return s;
        return kj::mv(*out);
      });
}

void VmManager::Bury(std::unique_ptr<Vm> vm) {
  tasks_->add(kj::evalLater([vm = std::move(vm)]() mutable { vm.reset(); }));
}

void VmManager::DeleteTaps(const Vm& vm) {
  if (vm.row.nics.empty()) return;
  net::NetlinkSocket* nl = Netlink();
  if (nl == nullptr) return;
  for (const NicRow& nic : vm.row.nics) {
    absl::Status s = net::DeleteBridgedTap(*nl, nic.tap);
    if (!s.ok()) KEEL_LOG(WARNING) << "could not delete tap " << nic.tap << ": " << s;
  }
}

net::NetlinkSocket* VmManager::Netlink() {
  if (!netlink_) {
    auto nl = net::NetlinkSocket::Open();
    if (!nl.ok()) {
      KEEL_LOG(WARNING) << "netlink: " << nl.status();
      return nullptr;
    }
    netlink_.emplace(*std::move(nl));
  }
  return &*netlink_;
}

// ---- Stats and console -----------------------------------------------------------------------

kj::Promise<absl::Status> VmManager::Stats(std::string id, rpc::VmStats::Builder stats) {
  Vm* vm = Find(id);
  if (vm == nullptr) return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted"));
  stats.setState(static_cast<rpc::VmState>(vm->row.state));
  stats.setMemoryMib(vm->spec.memory_mib);
  stats.setConsoleBytes(vm->console.end_offset());
  if (!vm->vmm) {
    auto nics = stats.initNics(static_cast<unsigned>(vm->row.nics.size()));
    for (size_t i = 0; i < vm->row.nics.size(); ++i) {
      nics[static_cast<unsigned>(i)].setTap(vm->row.nics[i].tap);
    }
    return absl::OkStatus();
  }
  return VmmCall(vm->vmm->control().statsRequest().send(), "stats")
      .then([stats](auto response) mutable {
        auto s = response.getStats();
        stats.setUptimeNs(s.getUptimeNs());
        stats.setCpuTimeNs(s.getCpuTimeNs());
        stats.setVmmRssBytes(s.getRssBytes());
        stats.setVcpuExits(s.getVcpuExits());
        auto disks = stats.initDisks(s.getDisks().size());
        for (unsigned i = 0; i < s.getDisks().size(); ++i) {
          auto in = s.getDisks()[i];
          auto b = disks[i];
          b.setName(in.getName());
          b.setReadOps(in.getReadOps());
          b.setWriteOps(in.getWriteOps());
          b.setFlushOps(in.getFlushOps());
          b.setReadBytes(in.getReadBytes());
          b.setWriteBytes(in.getWriteBytes());
          b.setErrors(in.getErrors());
        }
        auto nics = stats.initNics(s.getNics().size());
        for (unsigned i = 0; i < s.getNics().size(); ++i) {
          auto in = s.getNics()[i];
          auto b = nics[i];
          b.setTap(in.getName());
          b.setRxPackets(in.getRxPackets());
          b.setTxPackets(in.getTxPackets());
          b.setRxBytes(in.getRxBytes());
          b.setTxBytes(in.getTxBytes());
          b.setDrops(in.getDrops());
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<ConsoleBuffer::Chunk> VmManager::Console(const std::string& id, uint64_t offset,
                                                        uint32_t max_bytes) const {
  Vm* vm = Find(id);
  if (vm == nullptr) return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted"));
  return vm->console.Read(offset, max_bytes);
}

absl::StatusOr<rpc::Handle::Client> VmManager::FollowConsole(const std::string& id, uint64_t offset,
                                                             rpc::ConsoleSink::Client sink) {
  Vm* vm = Find(id);
  if (vm == nullptr) return absl::NotFoundError(absl::StrCat("VM ", id, " was deleted"));
  uint64_t fid = next_follower_++;
  auto follower = std::make_unique<ConsoleFollower>(kj::mv(sink), offset);
  if (!vm->vmm) {
    follower->ending = true;
    follower->reason = "the VM is not running";
  }
  vm->followers.emplace(fid, std::move(follower));
  PumpConsole(id, fid);
  return rpc::Handle::Client(kj::heap<FollowHandle>(self_, id, fid));
}

void VmManager::PumpConsole(const std::string& id, uint64_t fid) {
  Vm* vm = Find(id);
  if (vm == nullptr) return;
  auto it = vm->followers.find(fid);
  if (it == vm->followers.end() || it->second->sending) return;
  ConsoleFollower& f = *it->second;
  f.sending = true;
  // One chain per follower: each write waits for the previous one (streaming flow control),
  // then reads on from the buffer; the chain ends when caught up.
  struct Loop {
    static kj::Promise<void> Next(VmManager* m, std::string id, uint64_t fid) {
      Vm* vm = m->Find(id);
      if (vm == nullptr) return kj::READY_NOW;
      auto it = vm->followers.find(fid);
      if (it == vm->followers.end()) return kj::READY_NOW;
      ConsoleFollower& f = *it->second;
      ConsoleBuffer::Chunk chunk = vm->console.Read(f.next, 64 * 1024);
      if (chunk.data.empty()) {
        f.sending = false;
        if (f.ending) {
          auto done = f.sink.doneRequest();
          done.setReason(f.reason);
          m->tasks_->add(done.send().ignoreResult().catch_([](kj::Exception&&) {}));
          m->tasks_->add(kj::evalLater([m, id, fid]() {
            if (Vm* vm = m->Find(id)) vm->followers.erase(fid);
          }));
        }
        return kj::READY_NOW;
      }
      auto req = f.sink.writeRequest();
      req.setOffset(chunk.start_offset);
      req.setData(
          kj::arrayPtr(reinterpret_cast<const capnp::byte*>(chunk.data.data()), chunk.data.size()));
      f.next = chunk.next_offset;
      return req.send().then([m, id, fid]() { return Next(m, id, fid); },
                             [m, id, fid](kj::Exception&&) {
                               m->tasks_->add(kj::evalLater([m, id, fid]() {
                                 if (Vm* vm = m->Find(id)) vm->followers.erase(fid);
                               }));
                             });
    }
  };
  f.pump = Loop::Next(this, id, fid).eagerlyEvaluate(nullptr);
}

void VmManager::EndFollowers(Vm& vm, const std::string& reason) {
  std::vector<uint64_t> ids;
  for (auto& [fid, f] : vm.followers) {
    f->ending = true;
    f->reason = reason;
    ids.push_back(fid);
  }
  for (uint64_t fid : ids) PumpConsole(vm.row.id, fid);
}

// ---- Recovery --------------------------------------------------------------------------------

kj::Promise<void> VmManager::RecoverVm(std::string id) {
  Vm* vm = Find(id);
  if (vm == nullptr) return kj::READY_NOW;
  return VmmProcess::Attach(io_, config_.vm_run_dir(id), vm->row.pid, vm->row.start_time,
                            CallTimeout())
      .then(
          [this, id](kj::Own<VmmProcess> process) {
            Vm* vm = Find(id);
            if (vm == nullptr) return;
            auto stored = static_cast<rpc::VmState>(vm->row.state);
            bool stopping = stored == rpc::VmState::STOPPING;
            Running(*vm, kj::mv(process),
                    stored == rpc::VmState::PAUSED ? rpc::VmState::PAUSED : rpc::VmState::RUNNING,
                    /*attached=*/true);
            if (stopping) {
              // keeld died during a shutdown: finish it.
              tasks_->add(StopVmm(*vm, true, 0));
            }
          },
          [this, id](kj::Exception&& e) {
            Vm* vm = Find(id);
            if (vm == nullptr) return;
            std::optional<VmmExit> exit = VmmProcess::ExitFromRunDir(config_.vm_run_dir(id));
            // A VMM killed with SIGKILL leaves its control socket behind.
            unlink((config_.vm_run_dir(id) + "/control.sock").c_str());
            VmRow& r = vm->row;
            bool was_stopping = r.state == static_cast<int>(rpc::VmState::STOPPING);
            r.pid = 0;
            r.start_time = 0;
            r.started_ns = 0;
            r.last_exit = exit ? exit->exit_status : -1;
            rpc::EventType type;
            std::string message;
            if (exit && (exit->clean() || was_stopping)) {
              r.state = static_cast<int>(rpc::VmState::STOPPED);
              type = rpc::EventType::STOPPED;
              message = exit->description;
            } else {
              r.state = static_cast<int>(rpc::VmState::CRASHED);
              message = exit ? absl::StrCat("keel-vmm ", exit->description,
                                            " while keeld was not running")
                             : absl::StrCat("keel-vmm ended while keeld was not running (",
                                            Describe(e), ")");
              r.last_error = message;
              type = rpc::EventType::CRASHED;
            }
            (void)Persist(*vm);
            Publish(*vm, type, message);
            KEEL_LOG(INFO) << "VM " << r.name << ": " << message;
          });
}

kj::Promise<void> VmManager::Recover() {
  auto networks = store_.LoadNetworks();
  if (networks.ok()) networks_ = *std::move(networks);
  for (const NetworkRow& n : networks_) {
    if (absl::Status s = EnsureBridge(n); !s.ok()) {
      KEEL_LOG(WARNING) << "network " << n.name << ": " << s;
    }
  }
  auto volumes = store_.LoadVolumes();
  if (volumes.ok()) {
    for (VolumeRow& v : *volumes) {
      if (v.state == static_cast<int>(rpc::VolumeState::IMPORTING)) {
        KEEL_LOG(INFO) << "removing volume " << v.name << ", whose creation was interrupted";
        unlink(v.path.c_str());
        (void)store_.DeleteVolume(v.name);
        continue;
      }
      volumes_[v.name] = v;
    }
  }
  // Volume files the store does not know (made by an interrupted create) go.
  if (DIR* d = opendir(config_.volume_dir.c_str())) {
    std::set<std::string> known;
    for (const auto& [name, v] : volumes_) known.insert(v.path);
    while (struct dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      std::string path = config_.volume_dir + "/" + name;
      if (known.count(path) == 0) {
        KEEL_LOG(INFO) << "removing stray volume file " << path;
        unlink(path.c_str());
      }
    }
    closedir(d);
  }

  auto rows = store_.LoadVms();
  if (!rows.ok()) {
    KEEL_LOG(ERROR) << "could not load VMs: " << rows.status();
    return kj::READY_NOW;
  }
  kj::Vector<kj::Promise<void>> attaches;
  for (VmRow& row : *rows) {
    auto vm = std::make_unique<Vm>(config_.console_buffer_bytes);
    vm->spec = VmSpecData::Deserialize(row.spec);
    vm->row = std::move(row);
    std::string id = vm->row.id;
    bool attach = vm->row.pid > 0 && IsActive(vm->row.state);
    if (!attach && IsActive(vm->row.state)) {
      vm->row.state = static_cast<int>(rpc::VmState::STOPPED);
      vm->row.pid = 0;
      vm->row.last_error = "keeld stopped while the VM was starting; start it again";
      (void)store_.UpdateVm(vm->row);
    }
    vms_.emplace(id, std::move(vm));
    if (attach) attaches.add(RecoverVm(id));
  }
  return kj::joinPromises(attaches.releaseAsArray()).then([this]() {
    KillStrayVmms();
    for (const auto& [id, vm] : vms_) {
      if (!vm->vmm) DeleteTaps(*vm);
    }
    RemoveStrayRunDirs();
    KEEL_LOG(INFO) << "recovered " << vms_.size() << " VMs, " << networks_.size() << " networks, "
                   << volumes_.size() << " volumes";
  });
}

void VmManager::KillStrayVmms() {
  std::set<pid_t> ours;
  for (const auto& [id, vm] : vms_) {
    if (vm->vmm) ours.insert(vm->vmm->pid());
  }
  const std::string prefix = config_.run_dir + "/vms/";
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return;
  while (struct dirent* e = readdir(proc)) {
    char* end = nullptr;
    long pid = strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || pid <= 0) continue;
    if (ours.count(static_cast<pid_t>(pid)) != 0) continue;
    std::string path = absl::StrCat("/proc/", pid, "/cmdline");
    ScopedFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) continue;
    std::string cmdline(8192, '\0');
    ssize_t n = read(fd.get(), cmdline.data(), cmdline.size());
    if (n <= 0) continue;
    cmdline.resize(static_cast<size_t>(n));
    std::vector<std::string> args;
    for (size_t pos = 0; pos < cmdline.size();) {
      size_t z = cmdline.find('\0', pos);
      if (z == std::string::npos) z = cmdline.size();
      args.push_back(cmdline.substr(pos, z - pos));
      pos = z + 1;
    }
    for (size_t i = 0; i + 1 < args.size(); ++i) {
      if (args[i] == "--control-socket" && args[i + 1].rfind(prefix, 0) == 0) {
        KEEL_LOG(WARNING) << "killing keel-vmm pid " << pid << " (" << args[i + 1]
                          << "), which keeld never recorded (an interrupted start or a deleted VM)";
        kill(static_cast<pid_t>(pid), SIGKILL);
        break;
      }
    }
  }
  closedir(proc);
}

void VmManager::RemoveStrayRunDirs() {
  std::string dir = config_.run_dir + "/vms";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> stray;
  while (struct dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (vms_.count(name) == 0) stray.push_back(name);
  }
  closedir(d);
  for (const std::string& name : stray) {
    KEEL_LOG(INFO) << "removing stray run directory " << dir << "/" << name;
    std::error_code ec;
    std::filesystem::remove_all(dir + "/" + name, ec);
  }
}

}  // namespace keel::agent
