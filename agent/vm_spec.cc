#include "agent/vm_spec.h"

#include "capnp/message.h"
#include "capnp/serialize.h"
#include "kj/exception.h"

namespace keel::agent {

VmSpecData VmSpecData::FromCapnp(rpc::VmSpec::Reader s) {
  VmSpecData d;
  d.name = s.getName();
  d.vcpus = s.getVcpus();
  d.memory_mib = s.getMemoryMib();
  d.kernel_path = s.getKernelPath();
  d.initrd_path = s.getInitrdPath();
  d.cmdline = s.getCmdline();
  for (auto disk : s.getDisks()) {
    DiskSpecData x;
    if (disk.isVolume()) x.volume = disk.getVolume();
    if (disk.isImagePath()) x.image_path = disk.getImagePath();
    x.read_only = disk.getReadOnly();
    x.cache_none = disk.getCache() == rpc::CacheMode::NONE;
    x.serial = disk.getSerial();
    d.disks.push_back(std::move(x));
  }
  for (auto nic : s.getNics()) {
    d.nics.push_back({.network = nic.getNetwork(), .mac = nic.getMac(), .mtu = nic.getMtu()});
  }
  for (auto label : s.getLabels()) d.labels.emplace_back(label.getKey(), label.getValue());
  d.auto_start = s.getAutoStart();
  return d;
}

void VmSpecData::ToCapnp(rpc::VmSpec::Builder s) const {
  s.setName(name);
  s.setVcpus(vcpus);
  s.setMemoryMib(memory_mib);
  s.setKernelPath(kernel_path);
  s.setInitrdPath(initrd_path);
  s.setCmdline(cmdline);
  auto disk_list = s.initDisks(static_cast<unsigned>(disks.size()));
  for (size_t i = 0; i < disks.size(); ++i) {
    auto b = disk_list[static_cast<unsigned>(i)];
    if (!disks[i].volume.empty()) {
      b.setVolume(disks[i].volume);
    } else {
      b.setImagePath(disks[i].image_path);
    }
    b.setReadOnly(disks[i].read_only);
    b.setCache(disks[i].cache_none ? rpc::CacheMode::NONE : rpc::CacheMode::WRITEBACK);
    b.setSerial(disks[i].serial);
  }
  auto nic_list = s.initNics(static_cast<unsigned>(nics.size()));
  for (size_t i = 0; i < nics.size(); ++i) {
    auto b = nic_list[static_cast<unsigned>(i)];
    b.setNetwork(nics[i].network);
    b.setMac(nics[i].mac);
    b.setMtu(nics[i].mtu);
  }
  auto label_list = s.initLabels(static_cast<unsigned>(labels.size()));
  for (size_t i = 0; i < labels.size(); ++i) {
    label_list[static_cast<unsigned>(i)].setKey(labels[i].first);
    label_list[static_cast<unsigned>(i)].setValue(labels[i].second);
  }
  s.setAutoStart(auto_start);
}

std::string VmSpecData::Serialize() const {
  capnp::MallocMessageBuilder message;
  ToCapnp(message.initRoot<rpc::VmSpec>());
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

VmSpecData VmSpecData::Deserialize(const std::string& bytes) {
  if (bytes.size() % sizeof(capnp::word) != 0) return {};
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  memcpy(words.begin(), bytes.data(), bytes.size());
  VmSpecData d;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                capnp::FlatArrayMessageReader reader(words);
                d = FromCapnp(reader.getRoot<rpc::VmSpec>());
              })) {
    return {};
  }
  return d;
}

}  // namespace keel::agent
