// Machine: one x86-64 VM assembled from a MachineConfig — guest memory, the KVM VM with its
// in-kernel irqchip and PIT, the legacy devices, the loaded kernel and platform tables, the
// vCPU threads — run until it exits.
//
// Threads: Run() turns the calling thread into the VM's I/O thread (its EventLoop handles
// signals, timers and device fds) and starts one thread per vCPU. RequestExit may be called
// from any thread; the first request decides the exit.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/event_loop.h"
#include "base/fd.h"
#include "vmm/device_config.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/console.h"
#include "vmm/devices/interrupt.h"
#include "vmm/devices/legacy.h"
#include "vmm/devices/serial.h"
#include "vmm/exit.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/x86_setup.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/vcpu_thread.h"
#include "vmm/virtio/block.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/mmio.h"
#include "vmm/boot/platform.h"

namespace keel::vmm {

struct MachineConfig {
  std::string kernel_path;
  std::string initrd_path;  // empty: none
  // Already-open images (the control channel hands them over); used instead of the paths
  // when >= 0. Not owned; they need to stay open only until Create returns.
  int kernel_fd = -1;
  int initrd_fd = -1;
  std::string cmdline;
  uint64_t memory_mib = 128;
  uint32_t vcpus = 1;
  // Guest console: appended to this file; empty means the VMM's stdout.
  std::string serial_log_path;
  // An already-open console log used instead of serial_log_path when >= 0; Create keeps its
  // own duplicate, so the caller may close it afterwards.
  int serial_log_fd = -1;
  // When false, the guest console goes only to the in-memory ConsoleLog (and the log file,
  // if any), never to the VMM's stdout.
  bool console_to_stdout = true;
  // Stop the VM (exit status 3) if it has not ended after this many seconds; 0: never.
  uint32_t boot_timeout_s = 0;
  std::vector<DiskConfig> disks;
  std::vector<NetConfig> nets;
};

// Blocks, in the calling thread and the threads it creates afterwards, the signals a VM's I/O
// thread handles (SIGTERM, SIGINT, SIGHUP) and the vCPU kick signal. Run() does it; a
// program that starts threads of its own before Run() calls it first.
void BlockVmSignals();

class Machine : public ExitSink {
 public:
  // Builds the VM and loads the kernel; nothing runs yet. Errors whose code is
  // InvalidArgument, NotFound, PermissionDenied, FailedPrecondition or ResourceExhausted are
  // caused by the configuration (exit status 2); others are VMM failures (exit status 3).
  static absl::StatusOr<std::unique_ptr<Machine>> Create(Kvm& kvm, const MachineConfig& config);
  ~Machine() override;

  // Runs the VM on the calling thread until it exits, and returns why.
  VmExit Run();

  void RequestExit(VmExit exit) override;

  // Asks the guest to shut down cleanly by pressing its ACPI power button (a GED interrupt).
  // The VM ends when the guest powers off; the caller decides how long to wait. Thread-safe.
  void PressPowerButton();

  // Every disk's virtio queue size (QueueNumMax) and the backend's requests in flight, and
  // the data buffers per request (seg_max).
  static constexpr uint16_t kDiskQueueSize = 1024;
  static constexpr uint32_t kDiskMaxSegments = 254;

  // The newest guest console output kept in memory, for controllers.
  static constexpr size_t kConsoleLogBytes = 256 * 1024;

  const GuestMemory& memory() const { return memory_; }
  const ConsoleLog& console_log() const { return console_log_; }
  ConsoleLog& console_log() { return console_log_; }
  uint64_t console_bytes() const { return serial_->bytes_written(); }

  // Pause/Resume/state of the vCPUs. Thread-safe; may be used before Run() (a VM paused
  // then starts paused).
  VcpuControl& vcpu_control() { return vcpu_control_; }
  // Whether an exit was requested (the VM is stopping). Thread-safe.
  bool exit_requested() const;

  struct Stats {
    uint64_t vcpu_exits = 0;  // exits to userspace, all vCPUs
    struct Device {
      std::string name;
      virtio::DeviceStats stats;
    };
    std::vector<Device> devices;  // in virtio slot order
  };
  // Collects the stats on the I/O thread and calls `done` there with them. Thread-safe. If
  // the VM ends first, `done` is destroyed without being called.
  void CollectStats(absl::AnyInvocable<void(Stats)> done);

 private:
  Machine(const MachineConfig& config, GuestMemory memory, std::unique_ptr<Vm> vm,
          std::unique_ptr<EventLoop> loop);
  absl::Status SetUpPlatform(Kvm& kvm);
  absl::Status SetUpLegacyDevices();
  // Gives `device` the next virtio-mmio window and IOAPIC pin: an irqfd for its interrupt,
  // the transport on the MMIO bus, an ioeventfd per queue.
  absl::Status AddVirtioDevice(std::unique_ptr<virtio::VirtioDevice> device, std::string name);
  absl::Status SetUpVirtioDevices();
  // Opens and locks the image of --disk number `index` and adds its virtio-blk device.
  // Refuses an image given twice (same st_dev/st_ino) unless every attachment is read-only.
  absl::Status CheckNoDiskTwice() const;
  absl::Status AddDisk(const DiskConfig& disk, size_t index);
  // One virtio-net device for `nic` (the index names it in logs).
  absl::Status AddNic(const NetConfig& nic, size_t index);
  absl::StatusOr<BootCpuState> LoadKernelAndTables();
  absl::Status SetUpVcpus(Kvm& kvm, const BootCpuState& boot_cpu);
  absl::Status WatchSignalsAndTimeout();

  MachineConfig config_;
  GuestMemory memory_;
  std::unique_ptr<Vm> vm_;
  std::unique_ptr<EventLoop> loop_;
  Bus pio_bus_{"port I/O"};
  Bus mmio_bus_{"MMIO"};

  ScopedFd serial_log_;
  std::unique_ptr<FdConsoleSink> console_fds_;
  ConsoleLog console_log_{kConsoleLogBytes};
  std::unique_ptr<IrqfdInterrupt> serial_irq_;
  std::unique_ptr<Serial8250> serial_;
  std::unique_ptr<I8042> i8042_;
  std::unique_ptr<DebugExit> debug_exit_;
  std::unique_ptr<AcpiSleepControl> acpi_sleep_;
  NullDevice null_device_;
  std::unique_ptr<IrqfdInterrupt> power_button_;

  struct VirtioSlot {
    std::string name;
    MmioDeviceInfo window;
    std::unique_ptr<virtio::VirtioDevice> device;
    std::unique_ptr<IrqfdInterrupt> irq;
    std::unique_ptr<virtio::MmioTransport> transport;
  };
  std::vector<VirtioSlot> virtio_;

  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  VcpuControl vcpu_control_;
  std::vector<std::unique_ptr<VcpuThread>> vcpu_threads_;

  ScopedFd signal_fd_;
  ScopedFd timer_fd_;

  mutable absl::Mutex exit_mu_;
  std::optional<VmExit> exit_ ABSL_GUARDED_BY(exit_mu_);
};

}  // namespace keel::vmm
