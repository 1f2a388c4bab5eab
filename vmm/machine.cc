#include "vmm/machine.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/log.h"
#include "base/status.h"
#include "block/raw_file.h"
#include "net/tap.h"
#include "net/vnet_hdr.h"
#include "vmm/boot/image_reader.h"
#include "vmm/boot/loader.h"
#include "vmm/layout.h"
#include "vmm/virtio/net.h"

namespace keel::vmm {

namespace {

// What an inherited descriptor's messages call it: the path it was opened as, if known.
std::string FdPath(int fd) {
  char path[4096];
  const ssize_t n = readlink(absl::StrCat("/proc/self/fd/", fd).c_str(), path, sizeof(path));
  if (n <= 0 || static_cast<size_t>(n) >= sizeof(path)) return absl::StrCat("descriptor ", fd);
  return std::string(path, static_cast<size_t>(n));
}

// A private, close-on-exec copy of an inherited descriptor (numbered above stdio): the
// given number stays as the caller left it, and keel-vmm's control channel keeps owning what
// `launch` passed. Invalid, with errno set, on failure.
ScopedFd PrivateCopy(int fd) { return ScopedFd(fcntl(fd, F_DUPFD_CLOEXEC, 3)); }

}  // namespace

Machine::Machine(const MachineConfig& config, GuestMemory memory, std::unique_ptr<Vm> vm,
                 std::unique_ptr<EventLoop> loop)
    : config_(config), memory_(std::move(memory)), vm_(std::move(vm)), loop_(std::move(loop)) {}

Machine::~Machine() {
  vcpu_control_.Stop();
  vcpu_threads_.clear();  // joins
  if (signal_fd_.valid()) loop_->Remove(signal_fd_.get());
  if (timer_fd_.valid()) loop_->Remove(timer_fd_.get());
}

absl::StatusOr<std::unique_ptr<Machine>> Machine::Create(Kvm& kvm, const MachineConfig& config) {
  if (config.vcpus == 0 || config.vcpus > static_cast<uint32_t>(kvm.MaxVcpus())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--vcpus %u is out of range: this host's KVM allows 1 to %d", config.vcpus,
        kvm.MaxVcpus()));
  }
  if (config.memory_mib > (UINT64_MAX >> 20)) {
    return absl::InvalidArgumentError("--memory-mib is absurdly large");
  }
  KEEL_ASSIGN_OR_RETURN(GuestMemory memory, GuestMemory::Create(config.memory_mib * layout::kMiB));
  KEEL_ASSIGN_OR_RETURN(std::unique_ptr<Vm> vm, kvm.CreateVm());
  KEEL_ASSIGN_OR_RETURN(std::unique_ptr<EventLoop> loop, EventLoop::Create());
  auto machine = std::unique_ptr<Machine>(
      new Machine(config, std::move(memory), std::move(vm), std::move(loop)));
  KEEL_RETURN_IF_ERROR(machine->SetUpPlatform(kvm));
  KEEL_RETURN_IF_ERROR(machine->SetUpLegacyDevices());
  KEEL_RETURN_IF_ERROR(machine->SetUpVirtioDevices());
  KEEL_ASSIGN_OR_RETURN(BootCpuState boot_cpu, machine->LoadKernelAndTables());
  KEEL_RETURN_IF_ERROR(machine->SetUpVcpus(kvm, boot_cpu));
  return machine;
}

absl::Status Machine::SetUpPlatform(Kvm&) {
  uint32_t slot = 0;
  for (const MemoryRegion& r : memory_.regions()) {
    KEEL_RETURN_IF_ERROR(vm_->SetUserMemoryRegion(slot++, r.gpa, r.size, r.host));
  }
  KEEL_RETURN_IF_ERROR(vm_->SetTssAddr(layout::kKvmTssAddr));
  KEEL_RETURN_IF_ERROR(vm_->SetIdentityMapAddr(layout::kKvmIdentityMapAddr));
  KEEL_RETURN_IF_ERROR(vm_->CreateIrqchip());
  KEEL_RETURN_IF_ERROR(vm_->SetPcIrqRouting());
  KEEL_RETURN_IF_ERROR(vm_->CreatePit2());
  return absl::OkStatus();
}

absl::Status Machine::SetUpLegacyDevices() {
  std::vector<int> console_fds;
  if (config_.serial_log_fd >= 0) {
    serial_log_.Reset(fcntl(config_.serial_log_fd, F_DUPFD_CLOEXEC, 0));
    if (!serial_log_) return ErrnoError(errno, "duplicate the console log descriptor");
    console_fds.push_back(serial_log_.get());
  } else if (config_.serial_log_path.empty()) {
    if (config_.console_to_stdout) console_fds.push_back(STDOUT_FILENO);
  } else {
    int fd = open(config_.serial_log_path.c_str(),
                  O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) return ErrnoError(errno, "open --serial-log ", config_.serial_log_path);
    serial_log_.Reset(fd);
    console_fds.push_back(fd);
  }
  KEEL_ASSIGN_OR_RETURN(EventFd serial_event, EventFd::Create());
  KEEL_RETURN_IF_ERROR(vm_->RegisterIrqfd(serial_event.fd(), layout::kSerialIrq));
  serial_irq_ = std::make_unique<IrqfdInterrupt>(std::move(serial_event));
  console_fds_ = std::make_unique<FdConsoleSink>(std::move(console_fds));
  serial_ = std::make_unique<Serial8250>(
      serial_irq_.get(), std::vector<ConsoleSink*>{console_fds_.get(), &console_log_});
  i8042_ = std::make_unique<I8042>(this);
  debug_exit_ = std::make_unique<DebugExit>(this);
  acpi_sleep_ = std::make_unique<AcpiSleepControl>(this, kAcpiSleepTypeS5);

  KEEL_RETURN_IF_ERROR(
      pio_bus_.Register(Serial8250::kCom1Port, Serial8250::kPortCount, serial_.get(), "COM1"));
  KEEL_RETURN_IF_ERROR(pio_bus_.Register(I8042::kDataPort, 5, i8042_.get(), "i8042"));
  KEEL_RETURN_IF_ERROR(
      pio_bus_.Register(DebugExit::kPort, DebugExit::kSize, debug_exit_.get(), "debug-exit"));
  KEEL_RETURN_IF_ERROR(
      pio_bus_.Register(kAcpiSleepControlPort, 1, acpi_sleep_.get(), "ACPI sleep control"));
  KEEL_RETURN_IF_ERROR(pio_bus_.Register(kAcpiSleepStatusPort, 1, acpi_sleep_.get(),
                                         "ACPI sleep status"));
  // Ports Linux and firmware-era code poke that Keel leaves unemulated, silently.
  KEEL_RETURN_IF_ERROR(pio_bus_.Register(0x70, 2, &null_device_, "CMOS"));
  KEEL_RETURN_IF_ERROR(pio_bus_.Register(0x80, 1, &null_device_, "POST"));
  KEEL_RETURN_IF_ERROR(pio_bus_.Register(0xcf8, 8, &null_device_, "PCI config"));

  KEEL_ASSIGN_OR_RETURN(EventFd button, EventFd::Create());
  KEEL_RETURN_IF_ERROR(vm_->RegisterIrqfd(button.fd(), layout::kPowerButtonIrq));
  power_button_ = std::make_unique<IrqfdInterrupt>(std::move(button));
  return absl::OkStatus();
}

absl::Status Machine::SetUpVirtioDevices() {
  if (config_.disks.size() + config_.nets.size() > layout::kMaxVirtioDevices) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%u disks and NICs requested; a VM has room for %u", config_.disks.size() + config_.nets.size(),
        layout::kMaxVirtioDevices));
  }
  KEEL_RETURN_IF_ERROR(CheckNoDiskTwice());
  for (size_t i = 0; i < config_.disks.size(); ++i) {
    KEEL_RETURN_IF_ERROR(AddDisk(config_.disks[i], i));
  }
  for (size_t i = 0; i < config_.nets.size(); ++i) {
    KEEL_RETURN_IF_ERROR(AddNic(config_.nets[i], i));
  }
  return absl::OkStatus();
}

// One image attached twice with a writer among the attachments would meet its own OFD
// lock (and two devices over one file would corrupt it), so it is refused before anything
// is opened. Images that cannot be stat'ed are left to AddDisk, which names the error.
absl::Status Machine::CheckNoDiskTwice() const {
  struct Seen {
    dev_t dev;
    ino_t ino;
    size_t index;
  };
  std::vector<Seen> seen;
  for (size_t i = 0; i < config_.disks.size(); ++i) {
    const DiskConfig& disk = config_.disks[i];
    struct stat st;
    const int r = disk.path.empty() ? fstat(disk.fd, &st) : stat(disk.path.c_str(), &st);
    if (r != 0) continue;
    for (const Seen& s : seen) {
      const DiskConfig& first = config_.disks[s.index];
      if (s.dev != st.st_dev || s.ino != st.st_ino || (first.read_only && disk.read_only)) {
        continue;
      }
      const std::string name = DiskName(disk), first_name = DiskName(first);
      const std::string what =
          name == first_name ? absl::StrFormat("--disk %s is given twice", name)
                             : absl::StrFormat("--disk %s and --disk %s are the same image",
                                               first_name, name);
      return absl::InvalidArgumentError(absl::StrCat(
          what, "; a writable image can be attached to a VM only once (give it once, or "
                "attach it read-only each time with ,ro)"));
    }
    seen.push_back({st.st_dev, st.st_ino, i});
  }
  return absl::OkStatus();
}

absl::Status Machine::AddDisk(const DiskConfig& disk, size_t index) {
  // The backend takes a request per descriptor head, so it never hands one back as busy.
  block::OpenOptions options;
  options.read_only = disk.read_only;
  options.cache = disk.cache;
  options.max_in_flight = kDiskQueueSize;
  options.max_segments = kDiskMaxSegments;
  const std::string name = DiskName(disk);
  absl::StatusOr<block::Image> image = absl::InternalError("unset");
  if (disk.path.empty()) {
    ScopedFd copy = PrivateCopy(disk.fd);
    if (!copy.valid()) return ErrnoError(errno, "disk ", name);
    image = block::AdoptImage(std::move(copy), name, options);
  } else {
    image = block::OpenImage(disk.path, options);
  }
  if (!image.ok()) return image.status();
  KEEL_ASSIGN_OR_RETURN(std::unique_ptr<block::Backend> backend,
                        block::CreateRawFile(std::move(*image), options));
  virtio::BlockDeviceOptions device_options;
  device_options.serial = disk.id.empty() ? absl::StrFormat("keel-disk%u", index) : disk.id;
  device_options.queue_size = kDiskQueueSize;
  KEEL_ASSIGN_OR_RETURN(std::unique_ptr<virtio::BlockDevice> device,
                        virtio::BlockDevice::Create(std::move(backend), device_options));
  return AddVirtioDevice(std::move(device), absl::StrFormat("virtio-blk %s", name));
}

absl::Status Machine::AddNic(const NetConfig& nic, size_t index) {
  const std::string what =
      nic.tap.empty() ? absl::StrFormat("--net fd=%d", nic.fd) : "--net tap=" + nic.tap;
  ScopedFd fd;
  if (!nic.tap.empty()) {
    absl::StatusOr<net::Tap> tap = net::Tap::Open(nic.tap, {.vnet_hdr_size = net::kVnetHdrSize});
    if (!tap.ok()) return Annotate(tap.status(), what);
    std::vector<ScopedFd> fds = tap->ReleaseFds();
    fd = std::move(fds.at(0));
  } else {
    fd = PrivateCopy(nic.fd);
    if (!fd.valid()) return Annotate(ErrnoError(errno, "fd ", nic.fd), what);
  }
  virtio::NetDeviceOptions options;
  options.mac = nic.mac.value_or(net::MacAddress::RandomLocal());
  options.mtu = nic.mtu;
  absl::StatusOr<std::unique_ptr<virtio::NetDevice>> device =
      virtio::NetDevice::Create(std::move(fd), options);
  if (!device.ok()) return Annotate(device.status(), what);
  KEEL_LOG(INFO) << what << ": virtio-net with MAC " << options.mac.ToString();
  return AddVirtioDevice(std::move(*device), absl::StrFormat("virtio-net%u", index));
}

absl::Status Machine::AddVirtioDevice(std::unique_ptr<virtio::VirtioDevice> device,
                                      std::string name) {
  const size_t index = virtio_.size();
  if (index >= layout::kMaxVirtioDevices) {
    return absl::ResourceExhaustedError("no free virtio-mmio window");
  }
  VirtioSlot slot;
  slot.name = std::move(name);
  slot.window.base = layout::kVirtioMmioBase + index * layout::kVirtioMmioSize;
  slot.window.size = layout::kVirtioMmioSize;
  slot.window.irq = static_cast<uint32_t>(layout::kFirstVirtioIrq + index);
  KEEL_ASSIGN_OR_RETURN(EventFd irq_event, EventFd::Create());
  KEEL_RETURN_IF_ERROR(vm_->RegisterIrqfd(irq_event.fd(), slot.window.irq));
  slot.irq = std::make_unique<IrqfdInterrupt>(std::move(irq_event));
  slot.device = std::move(device);
  KEEL_ASSIGN_OR_RETURN(slot.transport,
                        virtio::MmioTransport::Create(slot.device.get(), &memory_, slot.irq.get(),
                                                      loop_.get(), slot.name));
  KEEL_RETURN_IF_ERROR(mmio_bus_.Register(slot.window.base, slot.window.size,
                                          slot.transport.get(), slot.name));
  // QueueNotify writes carry the queue index: one ioeventfd per queue, matched on it.
  const std::vector<int> notify = slot.transport->notify_fds();
  for (size_t q = 0; q < notify.size(); ++q) {
    KEEL_RETURN_IF_ERROR(vm_->RegisterIoeventfd(notify[q], IoSpace::kMmio,
                                                slot.window.base + virtio::kMmioQueueNotify, 4,
                                                static_cast<uint64_t>(q)));
  }
  virtio_.push_back(std::move(slot));
  return absl::OkStatus();
}

void Machine::PressPowerButton() { power_button_->Trigger(); }

bool Machine::exit_requested() const {
  absl::MutexLock lock(&exit_mu_);
  return exit_.has_value();
}

void Machine::CollectStats(absl::AnyInvocable<void(Stats)> done) {
  // vcpu_threads_ and the devices belong to the I/O thread once Run() started.
  loop_->Post([this, done = std::move(done)]() mutable {
    Stats stats;
    for (const auto& t : vcpu_threads_) {
      const VcpuStats& v = t->stats();
      stats.vcpu_exits += v.io_exits.load(std::memory_order_relaxed) +
                          v.mmio_exits.load(std::memory_order_relaxed) +
                          v.other_exits.load(std::memory_order_relaxed);
    }
    for (const VirtioSlot& slot : virtio_) {
      Stats::Device d{slot.name, {}};
      slot.device->GetStats(d.stats);
      stats.devices.push_back(std::move(d));
    }
    done(std::move(stats));
  });
}

absl::StatusOr<BootCpuState> Machine::LoadKernelAndTables() {
  PlatformConfig platform;
  platform.vcpus = static_cast<int>(config_.vcpus);
  platform.power_button_irq = layout::kPowerButtonIrq;
  for (const VirtioSlot& slot : virtio_) platform.virtio_devices.push_back(slot.window);
  KEEL_ASSIGN_OR_RETURN(PlatformInfo tables, WritePlatformTables(memory_, platform));

  absl::StatusOr<FileImageReader> kernel =
      config_.kernel_fd >= 0
          ? FileImageReader::FromFd(config_.kernel_fd, FdPath(config_.kernel_fd))
          : FileImageReader::Open(config_.kernel_path);
  if (!kernel.ok()) return Annotate(kernel.status(), "--kernel");
  std::optional<FileImageReader> initrd;
  if (config_.initrd_fd >= 0 || !config_.initrd_path.empty()) {
    absl::StatusOr<FileImageReader> r =
        config_.initrd_fd >= 0
            ? FileImageReader::FromFd(config_.initrd_fd, FdPath(config_.initrd_fd))
            : FileImageReader::Open(config_.initrd_path);
    if (!r.ok()) return Annotate(r.status(), "--initrd");
    initrd.emplace(std::move(*r));
  }
  BootConfig boot;
  boot.kernel = &*kernel;
  boot.initrd = initrd.has_value() ? &*initrd : nullptr;
  // Devices are announced on the command line too, for kernels without ACPI (the DSDT has
  // them as well; a kernel reading both finds each twice and ignores the second).
  boot.cmdline = config_.cmdline;
  if (!platform.virtio_devices.empty()) {
    absl::StrAppend(&boot.cmdline, boot.cmdline.empty() ? "" : " ",
                    VirtioMmioCmdline(platform.virtio_devices));
  }
  boot.acpi_rsdp_gpa = tables.acpi_rsdp_gpa;
  KEEL_ASSIGN_OR_RETURN(BootEntry loaded, LoadKernel(memory_, boot));
  return InitialCpuState(loaded.mode, loaded.entry, loaded.boot_info_gpa);
}

absl::Status Machine::SetUpVcpus(Kvm& kvm, const BootCpuState& boot_cpu) {
  KEEL_ASSIGN_OR_RETURN(std::vector<CpuidEntry> supported, kvm.SupportedCpuid());
  KEEL_ASSIGN_OR_RETURN(std::vector<uint32_t> msrs, kvm.MsrIndexList());
  for (uint32_t i = 0; i < config_.vcpus; ++i) {
    KEEL_ASSIGN_OR_RETURN(std::unique_ptr<Vcpu> vcpu, vm_->CreateVcpu(i));
    const std::vector<CpuidEntry> cpuid =
        FilterCpuid(supported, i, config_.vcpus, vcpu->TscKhz());
    KEEL_RETURN_IF_ERROR(vcpu->SetCpuid(cpuid));
    KEEL_RETURN_IF_ERROR(SetBootMsrs(*vcpu, msrs));
    KEEL_RETURN_IF_ERROR(vcpu->InitFpu());
    KEEL_RETURN_IF_ERROR(vcpu->InitLapic());
    // Only the BSP starts running; the in-kernel LAPIC holds the others until INIT/SIPI.
    if (i == 0) KEEL_RETURN_IF_ERROR(SetBootRegisters(*vcpu, boot_cpu));
    vcpus_.push_back(std::move(vcpu));
  }
  return absl::OkStatus();
}

absl::Status Machine::WatchSignalsAndTimeout() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) return ErrnoError(errno, "signalfd");
  signal_fd_.Reset(sfd);
  KEEL_RETURN_IF_ERROR(loop_->Add(sfd, EPOLLIN, [this](uint32_t) {
    signalfd_siginfo info;
    while (read(signal_fd_.get(), &info, sizeof(info)) == sizeof(info)) {
      const int signo = static_cast<int>(info.ssi_signo);
      RequestExit({VmExit::Kind::kSignal, 128 + signo,
                   absl::StrFormat("stopped by signal %s", sigabbrev_np(signo))});
    }
  }));
  if (config_.boot_timeout_s > 0) {
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0) return ErrnoError(errno, "timerfd_create");
    timer_fd_.Reset(tfd);
    itimerspec spec{};
    spec.it_value.tv_sec = config_.boot_timeout_s;
    if (timerfd_settime(tfd, 0, &spec, nullptr) < 0) return ErrnoError(errno, "timerfd_settime");
    // The registers are dumped in Run() once the vCPUs are out of KVM_RUN: reading them
    // here would wait on a vCPU that is running (or halted) inside the kernel.
    KEEL_RETURN_IF_ERROR(loop_->Add(tfd, EPOLLIN, [this](uint32_t) {
      RequestExit({VmExit::Kind::kTimeout, kExitVmmFailure,
                   absl::StrFormat("guest did not finish within --boot-timeout-s %u",
                                   config_.boot_timeout_s)});
    }));
  }
  return absl::OkStatus();
}

void BlockVmSignals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGRTMIN);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
}

VmExit Machine::Run() {
  // Signals the I/O thread handles must be blocked in every thread, so block them before
  // the vCPU threads inherit the mask; the kick signal is unblocked only on vCPU threads.
  BlockVmSignals();

  absl::Status s = InstallVcpuKickHandler();
  if (s.ok()) s = WatchSignalsAndTimeout();
  if (!s.ok()) return {VmExit::Kind::kInternalError, kExitVmmFailure, std::string(s.message())};

  for (const auto& vcpu : vcpus_) {
    vcpu_threads_.push_back(std::make_unique<VcpuThread>(VcpuThread::Context{
        vcpu.get(), &pio_bus_, &mmio_bus_, this, &vcpu_control_}));
  }
  for (auto& t : vcpu_threads_) t->Start();

  loop_->Run();

  vcpu_control_.Stop();
  for (auto& t : vcpu_threads_) t->Join();
  absl::MutexLock lock(&exit_mu_);
  VmExit exit =
      exit_.value_or(VmExit{VmExit::Kind::kInternalError, kExitVmmFailure, "no exit reason"});
  if (exit.kind == VmExit::Kind::kTimeout) {
    for (const auto& vcpu : vcpus_) absl::StrAppend(&exit.message, "\n", vcpu->DumpRegisters());
  }
  return exit;
}

void Machine::RequestExit(VmExit exit) {
  {
    absl::MutexLock lock(&exit_mu_);
    if (exit_.has_value()) return;
    exit_ = std::move(exit);
  }
  vcpu_control_.Stop();
  loop_->Stop();
}

}  // namespace keel::vmm
