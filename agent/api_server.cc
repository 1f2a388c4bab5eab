#include "agent/api_server.h"

#include "agent/errors.h"
#include "kj/debug.h"

namespace keel::agent {
namespace {

// Result unions share this shape: either the value or a typed error.
template <typename Builder>
bool FillStatus(const absl::Status& status, Builder result) {
  if (status.ok()) return false;
  FillErrorOrThrow(status, result.initError());
  return true;
}

class VmImpl final : public rpc::Vm::Server {
 public:
  VmImpl(VmManager& manager, std::string id) : manager_(manager), id_(std::move(id)) {}

 protected:
  kj::Promise<void> info(InfoContext context) override {
    Reply(absl::OkStatus(), context.getResults().initResult());
    return kj::READY_NOW;
  }
  kj::Promise<void> start(StartContext context) override {
    return manager_.Start(id_).then(
        [this, context](absl::Status s) mutable { Reply(s, context.getResults().initResult()); });
  }
  kj::Promise<void> shutdown(ShutdownContext context) override {
    auto p = context.getParams();
    return manager_.Shutdown(id_, p.getMode() == rpc::ShutdownMode::HARD, p.getTimeoutMs())
        .then([this, context](absl::Status s) mutable {
          Reply(s, context.getResults().initResult());
        });
  }
  kj::Promise<void> reboot(RebootContext context) override {
    return manager_.Reboot(id_).then(
        [this, context](absl::Status s) mutable { Reply(s, context.getResults().initResult()); });
  }
  kj::Promise<void> pause(PauseContext context) override {
    return manager_.Pause(id_).then(
        [this, context](absl::Status s) mutable { Reply(s, context.getResults().initResult()); });
  }
  kj::Promise<void> resume(ResumeContext context) override {
    return manager_.Resume(id_).then(
        [this, context](absl::Status s) mutable { Reply(s, context.getResults().initResult()); });
  }
  kj::Promise<void> delete_(DeleteContext context) override {
    return manager_.Delete(id_, context.getParams().getForce())
        .then([context](absl::StatusOr<kj::Own<capnp::MallocMessageBuilder>> r) mutable {
          auto result = context.getResults().initResult();
          if (FillStatus(r.status(), result)) return;
          result.setInfo((*r)->getRoot<rpc::VmInfo>().asReader());
        });
  }
  kj::Promise<void> stats(StatsContext context) override {
    auto result = context.getResults().initResult();
    return manager_.Stats(id_, result.initStats()).then([context](absl::Status s) mutable {
      FillStatus(s, context.getResults().getResult());
    });
  }
  kj::Promise<void> console(ConsoleContext context) override {
    auto p = context.getParams();
    auto chunk = manager_.Console(id_, p.getOffset(), p.getMaxBytes());
    auto r = context.getResults();
    if (!chunk.ok()) {
      // No typed result here: an unknown VM is reported as an empty read at the offset.
      r.setStartOffset(p.getOffset());
      r.setNextOffset(p.getOffset());
      return kj::READY_NOW;
    }
    r.setData(
        kj::arrayPtr(reinterpret_cast<const capnp::byte*>(chunk->data.data()), chunk->data.size()));
    r.setStartOffset(chunk->start_offset);
    r.setNextOffset(chunk->next_offset);
    return kj::READY_NOW;
  }
  kj::Promise<void> followConsole(FollowConsoleContext context) override {
    auto p = context.getParams();
    auto handle = manager_.FollowConsole(id_, p.getOffset(), p.getSink());
    if (!handle.ok()) {
      kj::throwFatalException(KJ_EXCEPTION(FAILED, std::string(handle.status().message())));
    }
    context.getResults().setHandle(*std::move(handle));
    return kj::READY_NOW;
  }

 private:
  void Reply(const absl::Status& s, rpc::StateResult::Builder result) {
    if (FillStatus(s, result)) return;
    absl::Status info = manager_.FillInfo(id_, result.initInfo());
    if (!info.ok()) FillStatus(info, result);
  }

  VmManager& manager_;
  std::string id_;
};

void FillNetwork(VmManager& m, const NetworkRow& n, rpc::NetworkInfo::Builder b) {
  b.setName(n.name);
  b.setBridge(n.bridge);
  b.setMtu(n.mtu);
  b.setHostAddress(n.host_address);
  b.setNicCount(m.NicCount(n.name));
}

class HostAgentImpl final : public rpc::HostAgent::Server {
 public:
  HostAgentImpl(VmManager& manager, EventHub& events) : manager_(manager), events_(events) {}

 protected:
  kj::Promise<void> hostInfo(HostInfoContext context) override {
    manager_.FillHostInfo(context.getResults().initInfo());
    return kj::READY_NOW;
  }
  kj::Promise<void> createVm(CreateVmContext context) override {
    auto p = context.getParams();
    return manager_.CreateVm(p.getRequestId(), VmSpecData::FromCapnp(p.getSpec()))
        .then([this, context](absl::StatusOr<std::string> id) mutable {
          ReplyVm(id, context.getResults().initResult());
        });
  }
  kj::Promise<void> getVm(GetVmContext context) override {
    ReplyVm(manager_.Resolve(context.getParams().getVm()), context.getResults().initResult());
    return kj::READY_NOW;
  }
  kj::Promise<void> listVms(ListVmsContext context) override {
    auto ids = manager_.List(context.getParams().getFilter());
    // One first segment big enough for the usual VmInfo (~100 words each) instead of a chain
    // of growing ones.
    auto list = context.getResults(capnp::MessageSize{16 + 128 * ids.size(), 0})
                    .initVms(static_cast<unsigned>(ids.size()));
    for (size_t i = 0; i < ids.size(); ++i) {
      (void)manager_.FillInfo(ids[i], list[static_cast<unsigned>(i)]);
    }
    return kj::READY_NOW;
  }
  kj::Promise<void> createNetwork(CreateNetworkContext context) override {
    auto r = manager_.CreateNetwork(context.getParams().getSpec());
    auto result = context.getResults().initResult();
    if (!FillStatus(r.status(), result)) FillNetwork(manager_, *r, result.initNetwork());
    return kj::READY_NOW;
  }
  kj::Promise<void> listNetworks(ListNetworksContext context) override {
    auto networks = manager_.ListNetworks();
    auto list = context.getResults().initNetworks(static_cast<unsigned>(networks.size()));
    for (size_t i = 0; i < networks.size(); ++i) {
      FillNetwork(manager_, networks[i], list[static_cast<unsigned>(i)]);
    }
    return kj::READY_NOW;
  }
  kj::Promise<void> deleteNetwork(DeleteNetworkContext context) override {
    absl::Status s = manager_.DeleteNetwork(context.getParams().getName());
    auto result = context.getResults().initResult();
    if (!FillStatus(s, result)) result.setOk();
    return kj::READY_NOW;
  }
  kj::Promise<void> createVolume(CreateVolumeContext context) override {
    auto spec = context.getParams().getSpec();
    auto r = manager_.CreateVolume(spec.getName(), spec.getSizeBytes());
    auto result = context.getResults().initResult();
    if (!FillStatus(r.status(), result)) manager_.FillVolume(*r, result.initVolume());
    return kj::READY_NOW;
  }
  kj::Promise<void> importVolume(ImportVolumeContext context) override {
    auto p = context.getParams();
    return manager_
        .ImportVolume(p.getSpec().getName(), p.getSpec().getSizeBytes(), p.getSourcePath(),
                      p.getProgress())
        .then([this, context](absl::StatusOr<VolumeRow> r) mutable {
          auto result = context.getResults().initResult();
          if (!FillStatus(r.status(), result)) manager_.FillVolume(*r, result.initVolume());
        });
  }
  kj::Promise<void> listVolumes(ListVolumesContext context) override {
    auto volumes = manager_.ListVolumes();
    auto list = context.getResults().initVolumes(static_cast<unsigned>(volumes.size()));
    for (size_t i = 0; i < volumes.size(); ++i) {
      manager_.FillVolume(volumes[i], list[static_cast<unsigned>(i)]);
    }
    return kj::READY_NOW;
  }
  kj::Promise<void> deleteVolume(DeleteVolumeContext context) override {
    absl::Status s = manager_.DeleteVolume(context.getParams().getName());
    auto result = context.getResults().initResult();
    if (!FillStatus(s, result)) result.setOk();
    return kj::READY_NOW;
  }
  kj::Promise<void> watch(WatchContext context) override {
    auto p = context.getParams();
    context.getResults().setHandle(events_.Watch(p.getSink(), p.getAfterSeq()));
    return kj::READY_NOW;
  }

 private:
  void ReplyVm(const absl::StatusOr<std::string>& id, rpc::VmResult::Builder result) {
    if (FillStatus(id.status(), result)) return;
    auto handle = result.initVm();
    absl::Status s = manager_.FillInfo(*id, handle.initInfo());
    if (!s.ok()) {
      FillStatus(s, result);
      return;
    }
    handle.setVm(kj::heap<VmImpl>(manager_, *id));
  }

  VmManager& manager_;
  EventHub& events_;
};

}  // namespace

rpc::HostAgent::Client NewHostAgent(VmManager& manager, EventHub& events) {
  return kj::heap<HostAgentImpl>(manager, events);
}

}  // namespace keel::agent
