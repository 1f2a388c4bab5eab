// vCPU threads: one thread per vCPU runs its KVM_RUN loop and dispatches exits to the
// buses. All of a VM's vCPU threads share one VcpuControl, an explicit state machine:
//
//   kRunning --Pause()--> kPaused --Resume()--> kRunning
//       \______________Stop()___________________--> kStopping (final)
//
// A state change sets immediate_exit on every vCPU and kicks each thread with a signal so
// a thread inside KVM_RUN (even one waiting for INIT/SIPI) returns at once; immediate_exit
// closes the race with a thread that is about to enter KVM_RUN.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "vmm/devices/bus.h"
#include "vmm/exit.h"
#include "vmm/kvm/kvm.h"

namespace keel::vmm {

// Installs the no-op handler for the kick signal. Idempotent; call before starting threads.
absl::Status InstallVcpuKickHandler();

struct VcpuStats {
  std::atomic<uint64_t> io_exits{0};
  std::atomic<uint64_t> mmio_exits{0};
  std::atomic<uint64_t> other_exits{0};
};

class VcpuControl {
 public:
  enum class State { kRunning, kPaused, kStopping };

  State state() const;
  // Pauses every vCPU and waits (up to `timeout`) until all have left KVM_RUN.
  absl::Status Pause(absl::Duration timeout = absl::Seconds(5));
  void Resume();
  // Final: every vCPU thread leaves its loop. Safe from any thread, including a vCPU's.
  void Stop();

 private:
  friend class VcpuThread;
  void Attach(Vcpu* vcpu);
  void SetThread(size_t index, pthread_t thread);
  void KickAll() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Called by a vCPU thread when KVM_RUN was interrupted. Blocks while paused; returns false
  // when the thread must exit.
  bool WaitWhilePaused(Vcpu* vcpu);

  mutable absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kRunning;
  std::vector<Vcpu*> vcpus_ ABSL_GUARDED_BY(mu_);
  std::vector<pthread_t> threads_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> started_ ABSL_GUARDED_BY(mu_);
  size_t paused_ ABSL_GUARDED_BY(mu_) = 0;
};

class VcpuThread {
 public:
  struct Context {
    Vcpu* vcpu;            // not owned
    const Bus* pio;        // not owned
    const Bus* mmio;       // not owned
    ExitSink* exit;        // not owned
    VcpuControl* control;  // not owned
  };

  explicit VcpuThread(Context context);
  ~VcpuThread();  // stops the shared control and joins
  VcpuThread(const VcpuThread&) = delete;
  VcpuThread& operator=(const VcpuThread&) = delete;

  void Start();
  void Join();
  const VcpuStats& stats() const { return stats_; }

 private:
  void Loop();
  // Returns false when the loop must end.
  bool HandleExit(const VcpuExit& exit);

  Context ctx_;
  size_t index_;
  VcpuStats stats_;
  std::thread thread_;
};

}  // namespace keel::vmm
