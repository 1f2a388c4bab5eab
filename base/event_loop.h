// EventLoop: a single-threaded epoll loop with a thread-safe work queue.
//
// One thread calls Run(); handlers registered with Add() run on that thread only. Any thread
// may call Post() and Stop(). The loop owns nothing but its epoll fd and wakeup eventfd: the
// fds it watches stay owned by their registrants, which must Remove() them before closing.
//
// Readiness is level-triggered unless EPOLLET is passed in `events`.
//
// Example:
//
//   KEEL_ASSIGN_OR_RETURN(auto loop, EventLoop::Create());
//   KEEL_RETURN_IF_ERROR(loop->Add(kick.fd(), EPOLLIN, [&](uint32_t) { queue.Process(); }));
//   std::thread io([&] { loop->Run(); });
//   ...
//   loop->Stop();
//   io.join();
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/eventfd.h"
#include "base/fd.h"

namespace keel {

class EventLoop {
 public:
  using Handler = absl::AnyInvocable<void(uint32_t events)>;

  static absl::StatusOr<std::unique_ptr<EventLoop>> Create();
  ~EventLoop();

  // Watches `fd` for `events` (EPOLLIN, EPOLLOUT, EPOLLET...). `handler` receives the ready
  // events. Loop thread only (or before Run() starts). Fails if `fd` is already registered.
  absl::Status Add(int fd, uint32_t events, Handler handler);
  absl::Status Modify(int fd, uint32_t events);
  // Stops watching `fd`. Safe to call from inside any handler, including the fd's own.
  void Remove(int fd);

  // Runs handlers until Stop(). Returns immediately if Stop() was already called.
  void Run();
  // Waits at most `timeout_ms` (-1: forever) and runs the handlers that are ready.
  void RunOnce(int timeout_ms);

  // Thread-safe. Makes Run() return after the current batch of handlers.
  void Stop();
  bool stopped() const { return stop_.load(std::memory_order_acquire); }

  // Thread-safe. Runs `fn` on the loop thread, in posting order.
  void Post(absl::AnyInvocable<void()> fn);

 private:
  struct Entry {
    int fd;
    Handler handler;
    bool removed = false;
  };

  EventLoop(ScopedFd epoll, EventFd wakeup) : epoll_(std::move(epoll)), wakeup_(std::move(wakeup)) {}
  void DrainPosted();

  ScopedFd epoll_;
  EventFd wakeup_;
  std::atomic<bool> stop_{false};
  absl::flat_hash_map<int, std::unique_ptr<Entry>> entries_;
  std::vector<std::unique_ptr<Entry>> graveyard_;  // removed during dispatch; freed after it
  absl::Mutex posted_mu_;
  std::vector<absl::AnyInvocable<void()>> posted_ ABSL_GUARDED_BY(posted_mu_);
};

}  // namespace keel
