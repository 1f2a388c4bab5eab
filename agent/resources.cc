// VmManager: networks, volumes and the host report.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "agent/validate.h"
#include "agent/vm_manager.h"
#include "agent/vm_manager_internal.h"
#include "base/log.h"
#include "base/status.h"
#include "net/names.h"

namespace keel::agent {

// ---- Networks --------------------------------------------------------------------------------

absl::Status VmManager::EnsureBridge(const NetworkRow& n) {
  net::NetlinkSocket* nl = Netlink();
  if (nl == nullptr) {
    return absl::PermissionDeniedError("networks need netlink access; run keeld as root");
  }
  KEEL_ASSIGN_OR_RETURN(bool exists, nl->LinkExists(n.bridge));
  if (!exists) {
    KEEL_RETURN_IF_ERROR(nl->CreateBridge({.name = n.bridge, .mtu = n.mtu}));
    if (!n.host_address.empty()) {
      if (absl::Status s = nl->AddAddress(n.bridge, n.host_address); !s.ok()) {
        (void)nl->DeleteLink(n.bridge);
        return s;
      }
    }
  }
  return nl->SetUp(n.bridge, true);
}

absl::StatusOr<NetworkRow> VmManager::CreateNetwork(rpc::NetworkSpec::Reader spec) {
  NetworkRow n;
  n.name = spec.getName();
  KEEL_RETURN_IF_ERROR(ValidateName("network", n.name));
  n.bridge = spec.getBridge();
  if (n.bridge.empty()) n.bridge = "kbr-" + n.name;
  if (n.bridge.size() > net::kMaxLinkNameLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bridge name ", n.bridge, " is longer than 15 bytes; give a shorter network name or a "
        "bridge name"));
  }
  KEEL_RETURN_IF_ERROR(net::ValidateLinkName(n.bridge));
  n.mtu = spec.getMtu() == 0 ? 1500 : spec.getMtu();
  if (n.mtu < 68 || n.mtu > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("MTU ", n.mtu, " is outside 68-65535"));
  }
  n.host_address = spec.getHostAddress();
  if (!n.host_address.empty()) {
    KEEL_ASSIGN_OR_RETURN(net::IpPrefix prefix, net::IpPrefix::Parse(n.host_address));
    n.host_address = prefix.ToString();
  }
  for (const NetworkRow& other : networks_) {
    if (other.name == n.name) {
      return absl::AlreadyExistsError(
          absl::StrCat("network ", n.name, " already exists; pick another name"));
    }
    if (other.bridge == n.bridge) {
      return absl::AlreadyExistsError(absl::StrCat("bridge ", n.bridge, " is used by network ",
                                                   other.name, "; pick another bridge"));
    }
  }
  net::NetlinkSocket* nl = Netlink();
  if (nl == nullptr) {
    return absl::PermissionDeniedError("networks need netlink access; run keeld as root");
  }
  KEEL_ASSIGN_OR_RETURN(bool exists, nl->LinkExists(n.bridge));
  if (exists) {
    return absl::AlreadyExistsError(absl::StrCat(
        "a network interface named ", n.bridge, " already exists on the host; pick another bridge"));
  }
  // Intent first: a bridge named in the store is recreated or removed on restart.
  KEEL_RETURN_IF_ERROR(store_.InsertNetwork(n));
  if (absl::Status s = EnsureBridge(n); !s.ok()) {
    (void)nl->DeleteLink(n.bridge);
    (void)store_.DeleteNetwork(n.name);
    return s;
  }
  networks_.push_back(n);
  KEEL_LOG(INFO) << "created network " << n.name << " (bridge " << n.bridge << ")";
  return n;
}

uint32_t VmManager::NicCount(const std::string& network) const {
  uint32_t count = 0;
  for (const auto& [id, vm] : vms_) {
    for (const NicRow& nic : vm->row.nics) count += nic.network == network;
  }
  return count;
}

absl::Status VmManager::DeleteNetwork(const std::string& name) {
  auto it = std::find_if(networks_.begin(), networks_.end(),
                         [&](const NetworkRow& n) { return n.name == name; });
  if (it == networks_.end()) {
    return absl::NotFoundError(absl::StrCat("network ", name, " does not exist"));
  }
  if (uint32_t nics = NicCount(name); nics > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "network ", name, " is used by ", nics, " NIC(s); delete those VMs first"));
  }
  if (net::NetlinkSocket* nl = Netlink()) {
    absl::Status s = nl->DeleteLink(it->bridge);
    if (!s.ok() && s.code() != absl::StatusCode::kNotFound) return s;
  }
  KEEL_RETURN_IF_ERROR(store_.DeleteNetwork(name));
  networks_.erase(it);
  KEEL_LOG(INFO) << "deleted network " << name;
  return absl::OkStatus();
}

// ---- Volumes ---------------------------------------------------------------------------------

namespace {

std::string VolumePath(const Config& config, const std::string& name) {
  return config.volume_dir + "/" + name + ".raw";
}

}  // namespace

absl::StatusOr<VolumeRow> VmManager::CreateVolume(const std::string& name, uint64_t size) {
  KEEL_RETURN_IF_ERROR(ValidateName("volume", name));
  if (size == 0 || size % 512 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("volume size ", size, " must be a positive multiple of 512 bytes"));
  }
  if (volumes_.count(name) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("volume ", name, " already exists"));
  }
  KEEL_RETURN_IF_ERROR(CheckFits(Capacity(), {.disk_bytes = size}));
  VolumeRow row{.name = name,
                .path = VolumePath(config_, name),
                .size = size,
                .state = static_cast<int>(rpc::VolumeState::IMPORTING),
                .created_ns = NowNs()};
  KEEL_RETURN_IF_ERROR(store_.InsertVolume(row));  // intent: removed on restart if unfinished
  ScopedFd fd(open(row.path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  absl::Status s = fd ? absl::OkStatus() : ErrnoError(errno, "create volume file ", row.path);
  if (s.ok() && ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    s = ErrnoError(errno, "size volume ", row.path);
  }
  if (s.ok() && fsync(fd.get()) != 0) s = ErrnoError(errno, "sync volume ", row.path);
  row.state = static_cast<int>(rpc::VolumeState::READY);
  if (s.ok()) s = store_.UpdateVolume(row);
  if (!s.ok()) {
    if (fd) unlink(row.path.c_str());
    (void)store_.DeleteVolume(name);
    return s;
  }
  volumes_[name] = row;
  return row;
}

struct VmManager::ImportJob {
  VolumeRow row;
  ScopedFd src, dst;
  uint64_t src_size = 0;
  uint64_t offset = 0;
  rpc::ImportProgress::Client progress = nullptr;
  bool progress_ok = true;
};

namespace {

// Copies [offset, offset+len) of src to the same place in dst; copy_file_range, with a
// read/write fallback for filesystems that refuse it.
absl::Status CopyRange(int src, int dst, uint64_t offset, uint64_t len) {
  loff_t in = static_cast<loff_t>(offset), out = static_cast<loff_t>(offset);
  while (len > 0) {
    ssize_t n = copy_file_range(src, &in, dst, &out, len, 0);
    if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
      std::vector<char> buf(1 << 20);
      size_t want = static_cast<size_t>(std::min<uint64_t>(len, buf.size()));
      n = pread(src, buf.data(), want, in);
      if (n > 0 && pwrite(dst, buf.data(), static_cast<size_t>(n), out) != n) n = -1;
      if (n > 0) {
        in += n;
        out += n;
      }
    } else if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) return ErrnoError(errno, "copy volume data");
    if (n == 0) break;  // source shorter than expected
    len -= static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

kj::Promise<absl::Status> VmManager::CopyChunks(std::shared_ptr<ImportJob> job) {
  // At most this much data per event-loop turn, so other clients are served in between.
  constexpr uint64_t kBudget = 32ull << 20;
  uint64_t budget = kBudget;
  while (job->offset < job->src_size && budget > 0) {
    off_t data = lseek(job->src.get(), static_cast<off_t>(job->offset), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) {  // the rest is a hole
        job->offset = job->src_size;
        break;
      }
      return ErrnoError(errno, "seek in import source");
    }
    off_t hole = lseek(job->src.get(), data, SEEK_HOLE);
    if (hole < 0) hole = static_cast<off_t>(job->src_size);
    uint64_t len = std::min<uint64_t>(static_cast<uint64_t>(hole - data), budget);
    KEEL_RETURN_IF_ERROR(CopyRange(job->src.get(), job->dst.get(), static_cast<uint64_t>(data), len));
    job->offset = static_cast<uint64_t>(data) + len;
    budget -= len;
  }
  if (job->progress_ok) {
    auto req = job->progress.progressRequest();
    req.setDoneBytes(std::min(job->offset, job->src_size));
    req.setTotalBytes(job->src_size);
    tasks_->add(req.send().catch_([job](kj::Exception&&) { job->progress_ok = false; }));
  }
  if (job->offset >= job->src_size) return absl::OkStatus();
  return kj::evalLater([this, job]() { return CopyChunks(job); });
}

kj::Promise<absl::StatusOr<VolumeRow>> VmManager::ImportVolume(
    std::string name, uint64_t size, std::string source, rpc::ImportProgress::Client progress) {
  using Result = absl::StatusOr<VolumeRow>;
  if (absl::Status s = ValidateName("volume", name); !s.ok()) return Result(s);
  if (volumes_.count(name) != 0) {
    return Result(absl::AlreadyExistsError(absl::StrCat("volume ", name, " already exists")));
  }
  auto src_path = ResolveImagePath(config_.image_dir, source, "import source");
  if (!src_path.ok()) return Result(src_path.status());
  auto job = std::make_shared<ImportJob>();
  job->src = ScopedFd(open(src_path->c_str(), O_RDONLY | O_CLOEXEC));
  if (!job->src) return Result(ErrnoError(errno, "open ", *src_path));
  struct stat st;
  if (fstat(job->src.get(), &st) != 0) return Result(ErrnoError(errno, "stat ", *src_path));
  job->src_size = static_cast<uint64_t>(st.st_size);
  uint64_t target = std::max<uint64_t>(size, job->src_size);
  target = (target + 511) / 512 * 512;
  if (target == 0) {
    return Result(absl::InvalidArgumentError(absl::StrCat(*src_path, " is empty; nothing to import")));
  }
  if (absl::Status s = CheckFits(Capacity(), {.disk_bytes = target}); !s.ok()) return Result(s);
  job->row = {.name = name,
              .path = VolumePath(config_, name),
              .size = target,
              .state = static_cast<int>(rpc::VolumeState::IMPORTING),
              .created_ns = NowNs()};
  if (absl::Status s = store_.InsertVolume(job->row); !s.ok()) return Result(s);
  volumes_[name] = job->row;
  job->dst = ScopedFd(open(job->row.path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  absl::Status opened = job->dst ? absl::OkStatus() : ErrnoError(errno, "create ", job->row.path);
  if (opened.ok() && ftruncate(job->dst.get(), static_cast<off_t>(target)) != 0) {
    opened = ErrnoError(errno, "size ", job->row.path);
  }
  job->progress = kj::mv(progress);
  kj::Promise<absl::Status> copy =
      opened.ok() ? CopyChunks(job) : kj::Promise<absl::Status>(opened);
  KEEL_LOG(INFO) << "importing " << *src_path << " into volume " << name;
  return copy.then([this, job](absl::Status s) -> Result {
    if (s.ok() && fsync(job->dst.get()) != 0) s = ErrnoError(errno, "sync ", job->row.path);
    if (s.ok()) {
      job->row.state = static_cast<int>(rpc::VolumeState::READY);
      s = store_.UpdateVolume(job->row);
    }
    if (!s.ok()) {
      unlink(job->row.path.c_str());
      (void)store_.DeleteVolume(job->row.name);
      volumes_.erase(job->row.name);
      return s;
    }
    volumes_[job->row.name] = job->row;
    return job->row;
  });
}

std::vector<VolumeRow> VmManager::ListVolumes() const {
  std::vector<VolumeRow> out;
  for (const auto& [name, v] : volumes_) out.push_back(v);
  return out;
}

void VmManager::FillVolume(const VolumeRow& row, rpc::VolumeInfo::Builder info) const {
  info.setName(row.name);
  info.setPath(row.path);
  info.setSizeBytes(row.size);
  struct stat st;
  info.setAllocatedBytes(stat(row.path.c_str(), &st) == 0 ? uint64_t(st.st_blocks) * 512 : 0);
  std::vector<std::string> users;
  for (const auto& [id, vm] : vms_) {
    for (const DiskSpecData& d : vm->spec.disks) {
      if (d.volume == row.name) users.push_back(id);
    }
  }
  auto list = info.initAttachedTo(static_cast<unsigned>(users.size()));
  for (size_t i = 0; i < users.size(); ++i) list.set(static_cast<unsigned>(i), users[i]);
  info.setState(static_cast<rpc::VolumeState>(row.state));
  info.setCreatedTimeNs(row.created_ns);
}

absl::Status VmManager::DeleteVolume(const std::string& name) {
  auto it = volumes_.find(name);
  if (it == volumes_.end()) {
    return absl::NotFoundError(absl::StrCat("volume ", name, " does not exist"));
  }
  if (it->second.state != static_cast<int>(rpc::VolumeState::READY)) {
    return absl::FailedPreconditionError(
        absl::StrCat("volume ", name, " is still importing; wait for it to finish"));
  }
  for (const auto& [id, vm] : vms_) {
    for (const DiskSpecData& d : vm->spec.disks) {
      if (d.volume == name) {
        return absl::FailedPreconditionError(absl::StrCat(
            "volume ", name, " is attached to VM ", vm->row.name, "; delete that VM first"));
      }
    }
  }
  KEEL_RETURN_IF_ERROR(store_.DeleteVolume(name));
  if (unlink(it->second.path.c_str()) != 0 && errno != ENOENT) {
    KEEL_LOG(WARNING) << "could not remove " << it->second.path;
  }
  volumes_.erase(it);
  return absl::OkStatus();
}

// ---- Host ------------------------------------------------------------------------------------

CapacityReport VmManager::Capacity() const {
  CapacityUsage used;
  for (const auto& [id, vm] : vms_) {
    used.vcpus += vm->spec.vcpus;
    used.memory_mib += vm->spec.memory_mib;
  }
  for (const auto& [name, v] : volumes_) used.disk_bytes += v.size;
  // Free space counts what the sparse volumes have not yet allocated as already taken.
  uint64_t allocated_on_disk = 0;
  for (const auto& [name, v] : volumes_) {
    struct stat st;
    if (stat(v.path.c_str(), &st) == 0) allocated_on_disk += uint64_t(st.st_blocks) * 512;
  }
  uint64_t free = FreeDiskBytes(config_.volume_dir);
  uint64_t unallocated = used.disk_bytes > allocated_on_disk ? used.disk_bytes - allocated_on_disk : 0;
  free = free > unallocated ? free - unallocated : 0;
  return ComputeCapacity({.cpu_overcommit = config_.cpu_overcommit,
                          .memory_overcommit = config_.memory_overcommit,
                          .memory_reserve_mib = config_.memory_reserve_mib},
                         host_.cpus, host_.memory_mib, free, used);
}

void VmManager::FillHostInfo(rpc::HostInfo::Builder info) {
  HostInventory now = ReadHostInventory();
  info.setApiVersion(rpc::API_VERSION);
  info.setKeelVersion(KEEL_VERSION);
  info.setHostname(now.hostname);
  info.setCpuModel(now.cpu_model);
  info.setCpus(now.cpus);
  info.setSockets(now.sockets);
  info.setCoresPerSocket(now.cores_per_socket);
  info.setThreadsPerCore(now.threads_per_core);
  info.setMemoryMib(now.memory_mib);
  info.setMemoryAvailableMib(now.memory_available_mib);
  info.setHugepages2MibTotal(now.hugepages_2m_total);
  info.setHugepages2MibFree(now.hugepages_2m_free);
  info.setHugepages1GibTotal(now.hugepages_1g_total);
  info.setHugepages1GibFree(now.hugepages_1g_free);
  auto kvm = info.initKvm();
  if (host_.kvm_ok) {
    kvm.setApiVersion(host_.kvm.api_version);
    kvm.setMaxVcpus(host_.kvm.max_vcpus);
    kvm.setRecommendedVcpus(host_.kvm.recommended_vcpus);
    auto caps = kvm.initCapabilities(static_cast<unsigned>(host_.kvm.present.size()));
    for (size_t i = 0; i < host_.kvm.present.size(); ++i) {
      caps.set(static_cast<unsigned>(i), host_.kvm.present[i]);
    }
  }
  CapacityReport c = Capacity();
  auto cap = info.initCapacity();
  cap.setVcpusTotal(c.vcpus_total);
  cap.setVcpusAllocated(c.allocated.vcpus);
  cap.setMemoryMibTotal(c.memory_mib_total);
  cap.setMemoryMibAllocated(c.allocated.memory_mib);
  cap.setDiskBytesTotal(c.disk_bytes_total);
  cap.setDiskBytesAllocated(c.allocated.disk_bytes);
  cap.setCpuOvercommit(config_.cpu_overcommit);
  cap.setMemoryOvercommit(config_.memory_overcommit);
  cap.setMemoryReserveMib(config_.memory_reserve_mib);
  uint32_t running = 0;
  for (const auto& [id, vm] : vms_) running += vm->vmm ? 1 : 0;
  info.setVmCount(static_cast<uint32_t>(vms_.size()));
  info.setRunningVmCount(running);
  info.setBootTimeNs(boot_time_ns_);
}

}  // namespace keel::agent
