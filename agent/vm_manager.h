// VmManager: keeld's model of the host — VMs with their keel-vmm processes, networks and
// volumes — kept in the store and acted on through VmmProcess and net/.
//
// Every mutation is written to the store before it is acknowledged, and intent is written
// before side effects (a VM is recorded as `starting` before its taps and VMM exist), so
// Recover() after a crash of keeld can finish or undo what was interrupted: it re-attaches
// to VMMs that still run, reports the ones that ended, kills VMMs the store does not know,
// and removes stray taps, run directories and half-made volumes.
//
// Mutating operations on one VM are serialized (each waits for the previous one); different
// VMs proceed concurrently. Expected failures come back as absl::Status codes listed in
// errors.h; nothing here blocks the event loop except short store writes and netlink calls.
// createVm and start join the store's group commit (Store::Durability::kGrouped) and answer
// only after Store::Synced(), so concurrent calls share fsyncs without acknowledging early.
//
// Threading: event loop thread only. Lifetime: outlives every VmImpl/Handle it hands out
// only while keeld runs; Handles hold it weakly.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/capacity.h"
#include "agent/config.h"
#include "agent/console_buffer.h"
#include "agent/events.h"
#include "agent/host_info.h"
#include "agent/store.h"
#include "agent/vm_spec.h"
#include "agent/vmm_process.h"
#include "capnp/message.h"
#include "kj/async-io.h"
#include "net/netlink.h"
#include "rpc/keel.capnp.h"

namespace keel::agent {

class VmManager {
 public:
  VmManager(kj::AsyncIoContext& io, const Config& config, Store& store, EventHub& events,
            HostInventory host);
  ~VmManager();

  // Loads the store and reconciles it with the host (see the file comment). Call once,
  // before serving.
  kj::Promise<void> Recover();

  // ---- VMs ----------------------------------------------------------------------------------
  // Creates (and, with autoStart, starts) a VM; returns its id. Idempotent on request_id.
  kj::Promise<absl::StatusOr<std::string>> CreateVm(std::string request_id, VmSpecData spec);
  // The id of the VM with this id or name.
  absl::StatusOr<std::string> Resolve(const std::string& id_or_name) const;
  // NotFound once the VM is gone.
  absl::Status FillInfo(const std::string& id, rpc::VmInfo::Builder info) const;
  std::vector<std::string> List(rpc::VmFilter::Reader filter) const;

  kj::Promise<absl::Status> Start(std::string id);
  kj::Promise<absl::Status> Shutdown(std::string id, bool hard, uint32_t timeout_ms);
  kj::Promise<absl::Status> Reboot(std::string id);
  kj::Promise<absl::Status> Pause(std::string id);
  kj::Promise<absl::Status> Resume(std::string id);
  // The final info (state `deleted`) in its own message.
  kj::Promise<absl::StatusOr<kj::Own<capnp::MallocMessageBuilder>>> Delete(std::string id,
                                                                           bool force);
  kj::Promise<absl::Status> Stats(std::string id, rpc::VmStats::Builder stats);
  absl::StatusOr<ConsoleBuffer::Chunk> Console(const std::string& id, uint64_t offset,
                                               uint32_t max_bytes) const;
  absl::StatusOr<rpc::Handle::Client> FollowConsole(const std::string& id, uint64_t offset,
                                                    rpc::ConsoleSink::Client sink);

  // ---- Networks -----------------------------------------------------------------------------
  absl::StatusOr<NetworkRow> CreateNetwork(rpc::NetworkSpec::Reader spec);
  std::vector<NetworkRow> ListNetworks() const { return networks_; }
  uint32_t NicCount(const std::string& network) const;
  absl::Status DeleteNetwork(const std::string& name);

  // ---- Volumes ------------------------------------------------------------------------------
  absl::StatusOr<VolumeRow> CreateVolume(const std::string& name, uint64_t size_bytes);
  kj::Promise<absl::StatusOr<VolumeRow>> ImportVolume(std::string name, uint64_t size_bytes,
                                                      std::string source,
                                                      rpc::ImportProgress::Client progress);
  std::vector<VolumeRow> ListVolumes() const;
  void FillVolume(const VolumeRow& row, rpc::VolumeInfo::Builder info) const;
  absl::Status DeleteVolume(const std::string& name);

  // ---- Host ---------------------------------------------------------------------------------
  void FillHostInfo(rpc::HostInfo::Builder info);
  CapacityReport Capacity() const;

 private:
  struct Vm;
  struct ConsoleFollower;
  class VmmConsoleSink;
  class FollowHandle;

  Vm* Find(const std::string& id) const;
  // How long a control call to a VMM may take (Config::vmm_call_timeout_ms).
  kj::Duration CallTimeout() const { return config_.vmm_call_timeout_ms * kj::MILLISECONDS; }
  // A control call to a running VMM, bounded by CallTimeout() (see Bounded).
  template <typename T>
  kj::Promise<T> VmmCall(kj::Promise<T> call, kj::StringPtr what) {
    return Bounded(io_.provider->getTimer(), CallTimeout(), kj::mv(call), what);
  }
  // Runs `op` after every earlier operation on the VM finished.
  kj::Promise<absl::Status> Serialized(Vm& vm, kj::Function<kj::Promise<absl::Status>()> op);
  absl::Status Persist(Vm& vm);
  void Publish(Vm& vm, rpc::EventType type, std::string message);

  absl::Status ValidateSpec(const VmSpecData& spec) const;
  absl::StatusOr<std::vector<NicRow>> AllocateNics(const std::string& id, const VmSpecData& spec);
  // `intent_recorded`: the store already says `starting` (createVm with autoStart).
  kj::Promise<absl::Status> DoStart(std::string id, bool intent_recorded = false);
  // After a failed autoStart of createVm: removes the VM again if the failure was expected.
  absl::Status RollBackCreate(const std::string& id, absl::Status start);
  absl::StatusOr<VmmLaunch> PrepareLaunch(Vm& vm);
  void Running(Vm& vm, kj::Own<VmmProcess> vmm, rpc::VmState state, bool attached);
  void HandleExit(const std::string& id, VmmProcess* vmm, const VmmExit& exit);
  void TopUpConsoleFromLog(Vm& vm);
  kj::Promise<void> StopVmm(Vm& vm, bool hard, uint32_t timeout_ms);
  void DeleteTaps(const Vm& vm);
  void PumpConsole(const std::string& id, uint64_t follower);
  void EndFollowers(Vm& vm, const std::string& reason);
  void Bury(std::unique_ptr<Vm> vm);

  kj::Promise<void> RecoverVm(std::string id);
  void KillStrayVmms();
  void RemoveStrayRunDirs();
  absl::Status EnsureBridge(const NetworkRow& network);
  net::NetlinkSocket* Netlink();
  struct ImportJob;
  kj::Promise<absl::Status> CopyChunks(std::shared_ptr<ImportJob> job);

  kj::AsyncIoContext& io_;
  const Config& config_;
  Store& store_;
  EventHub& events_;
  HostInventory host_;
  int64_t boot_time_ns_;
  std::map<std::string, std::unique_ptr<Vm>> vms_;
  std::vector<NetworkRow> networks_;
  std::map<std::string, VolumeRow> volumes_;
  std::optional<net::NetlinkSocket> netlink_;
  std::shared_ptr<VmManager*> self_;
  uint64_t next_follower_ = 1;
  kj::Own<kj::TaskSet> tasks_;
};

}  // namespace keel::agent
