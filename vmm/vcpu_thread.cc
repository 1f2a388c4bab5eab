#include "vmm/vcpu_thread.h"

#include <signal.h>

#include <cerrno>
#include <span>

#include "absl/strings/str_format.h"
#include "base/log.h"
#include "base/status.h"

namespace keel::vmm {

namespace {

int KickSignal() { return SIGRTMIN; }

void NoopHandler(int) {}

}  // namespace

absl::Status InstallVcpuKickHandler() {
  struct sigaction sa {};
  sa.sa_handler = NoopHandler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
  if (sigaction(KickSignal(), &sa, nullptr) < 0) return ErrnoError(errno, "sigaction");
  return absl::OkStatus();
}

VcpuControl::State VcpuControl::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

void VcpuControl::Attach(Vcpu* vcpu) {
  absl::MutexLock lock(&mu_);
  vcpus_.push_back(vcpu);
  threads_.emplace_back();
  started_.push_back(false);
}

void VcpuControl::SetThread(size_t index, pthread_t thread) {
  absl::MutexLock lock(&mu_);
  threads_[index] = thread;
  started_[index] = true;
  // A state change made before this thread existed must still reach it.
  if (state_ != State::kRunning) vcpus_[index]->SetImmediateExit(true);
}

void VcpuControl::KickAll() {
  for (size_t i = 0; i < vcpus_.size(); ++i) {
    vcpus_[i]->SetImmediateExit(true);
    if (started_[i] && !pthread_equal(threads_[i], pthread_self())) {
      pthread_kill(threads_[i], KickSignal());
    }
  }
}

absl::Status VcpuControl::Pause(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (state_ == State::kStopping) return absl::FailedPreconditionError("the VM is stopping");
  if (state_ == State::kPaused) return absl::OkStatus();
  state_ = State::kPaused;
  KickAll();
  size_t running = 0;
  for (bool s : started_) running += s ? 1 : 0;
  auto all_paused = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return paused_ >= running || state_ != State::kPaused;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&all_paused), timeout)) {
    return absl::DeadlineExceededError(
        absl::StrFormat("%u of %u vCPUs did not pause within %s", running - paused_, running,
                        absl::FormatDuration(timeout)));
  }
  return absl::OkStatus();
}

void VcpuControl::Resume() {
  absl::MutexLock lock(&mu_);
  if (state_ == State::kPaused) state_ = State::kRunning;
}

void VcpuControl::Stop() {
  absl::MutexLock lock(&mu_);
  if (state_ == State::kStopping) return;
  state_ = State::kStopping;
  KickAll();
}

bool VcpuControl::WaitWhilePaused(Vcpu* vcpu) {
  absl::MutexLock lock(&mu_);
  if (state_ == State::kPaused) {
    ++paused_;
    mu_.Await(absl::Condition(
        +[](State* s) { return *s != State::kPaused; }, &state_));
    --paused_;
  }
  if (state_ == State::kStopping) return false;
  // Running again: clear immediate_exit under the lock so a new Pause()/Stop() (which sets
  // it under the same lock) cannot be lost.
  vcpu->SetImmediateExit(false);
  return true;
}

VcpuThread::VcpuThread(Context context) : ctx_(context) {
  ctx_.control->Attach(ctx_.vcpu);
  absl::MutexLock lock(&ctx_.control->mu_);
  index_ = ctx_.control->vcpus_.size() - 1;
}

VcpuThread::~VcpuThread() {
  if (thread_.joinable()) {
    ctx_.control->Stop();
    thread_.join();
  }
}

void VcpuThread::Start() {
  thread_ = std::thread([this] { Loop(); });
  ctx_.control->SetThread(index_, thread_.native_handle());
}

void VcpuThread::Join() {
  if (thread_.joinable()) thread_.join();
}

void VcpuThread::Loop() {
  // Only vCPU threads take the kick signal; everything else keeps it blocked.
  sigset_t kick;
  sigemptyset(&kick);
  sigaddset(&kick, KickSignal());
  pthread_sigmask(SIG_UNBLOCK, &kick, nullptr);

  while (true) {
    absl::StatusOr<VcpuExit> exit = ctx_.vcpu->Run();
    if (!exit.ok()) {
      ctx_.exit->RequestExit({VmExit::Kind::kInternalError, kExitVmmFailure,
                              std::string(exit.status().message())});
      ctx_.control->Stop();
      return;
    }
    if (exit->kind == VcpuExit::Kind::kInterrupted) {
      if (!ctx_.control->WaitWhilePaused(ctx_.vcpu)) return;
      continue;
    }
    if (!HandleExit(*exit)) {
      ctx_.control->Stop();
      return;
    }
  }
}

bool VcpuThread::HandleExit(const VcpuExit& exit) {
  switch (exit.kind) {
    case VcpuExit::Kind::kIo: {
      stats_.io_exits.fetch_add(1, std::memory_order_relaxed);
      // String I/O (rep ins/outs) repeats the access `count` times over consecutive slots.
      for (uint32_t i = 0; i < exit.count; ++i) {
        std::span<uint8_t> data(exit.data + size_t{i} * exit.size, exit.size);
        if (exit.is_write) {
          ctx_.pio->Write(exit.addr, data);
        } else {
          ctx_.pio->Read(exit.addr, data);
        }
      }
      return true;
    }
    case VcpuExit::Kind::kMmio: {
      stats_.mmio_exits.fetch_add(1, std::memory_order_relaxed);
      std::span<uint8_t> data(exit.data, exit.size);
      const bool handled =
          exit.is_write ? ctx_.mmio->Write(exit.addr, data) : ctx_.mmio->Read(exit.addr, data);
      if (!handled) {
        KEEL_LOG(DEBUG) << absl::StrFormat("vCPU %u: MMIO %s at %#x with no device",
                                           ctx_.vcpu->id(), exit.is_write ? "write" : "read",
                                           exit.addr);
      }
      return true;
    }
    case VcpuExit::Kind::kSystemReset:
      ctx_.exit->RequestExit({VmExit::Kind::kReset, 0, "guest reset"});
      return false;
    case VcpuExit::Kind::kSystemShutdown:
      ctx_.exit->RequestExit({VmExit::Kind::kPoweroff, 0, "guest powered off"});
      return false;
    case VcpuExit::Kind::kHlt:
    case VcpuExit::Kind::kShutdown:
    case VcpuExit::Kind::kFailEntry:
    case VcpuExit::Kind::kInternalError:
    case VcpuExit::Kind::kUnknown: {
      stats_.other_exits.fetch_add(1, std::memory_order_relaxed);
      std::string what = exit.kind == VcpuExit::Kind::kHlt
                             ? "vCPU halted with no interrupt controller to wake it"
                             : exit.detail;
      ctx_.exit->RequestExit({VmExit::Kind::kGuestFault, kExitVmmFailure,
                              absl::StrCat("guest cannot continue: ", what, "\n",
                                           ctx_.vcpu->DumpRegisters())});
      return false;
    }
    case VcpuExit::Kind::kInterrupted:
      return true;
  }
  return true;
}

}  // namespace keel::vmm
