#include "base/event_loop.h"

#include <cerrno>

#include "base/status.h"

namespace keel {

namespace {
// The wakeup eventfd is registered with this tag instead of an Entry pointer.
constexpr uint64_t kWakeupTag = 1;
}  // namespace

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::Create() {
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return ErrnoError(errno, "epoll_create1");
  ScopedFd epoll(epfd);
  KEEL_ASSIGN_OR_RETURN(EventFd wakeup, EventFd::Create());
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeupTag;
  if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, wakeup.fd(), &ev) < 0) {
    return ErrnoError(errno, "epoll_ctl(wakeup)");
  }
  return std::unique_ptr<EventLoop>(new EventLoop(std::move(epoll), std::move(wakeup)));
}

EventLoop::~EventLoop() = default;

absl::Status EventLoop::Add(int fd, uint32_t events, Handler handler) {
  if (entries_.contains(fd)) {
    return absl::AlreadyExistsError(absl::StrCat("fd ", fd, " is already in the event loop"));
  }
  auto entry = std::make_unique<Entry>(Entry{fd, std::move(handler)});
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = entry.get();
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) {
    return ErrnoError(errno, "epoll_ctl(ADD, fd ", fd, ")");
  }
  entries_.emplace(fd, std::move(entry));
  return absl::OkStatus();
}

absl::Status EventLoop::Modify(int fd, uint32_t events) {
  auto it = entries_.find(fd);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("fd ", fd, " is not in the event loop"));
  }
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = it->second.get();
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) < 0) {
    return ErrnoError(errno, "epoll_ctl(MOD, fd ", fd, ")");
  }
  return absl::OkStatus();
}

void EventLoop::Remove(int fd) {
  auto it = entries_.find(fd);
  if (it == entries_.end()) return;
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  it->second->removed = true;
  graveyard_.push_back(std::move(it->second));
  entries_.erase(it);
}

void EventLoop::Run() {
  while (!stopped()) RunOnce(-1);
}

void EventLoop::RunOnce(int timeout_ms) {
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  int n = epoll_wait(epoll_.get(), events, kMaxEvents, timeout_ms);
  if (n < 0) return;  // EINTR: the caller loops.
  for (int i = 0; i < n; ++i) {
    if (events[i].data.u64 == kWakeupTag) {
      wakeup_.Consume();
      DrainPosted();
      continue;
    }
    auto* entry = static_cast<Entry*>(events[i].data.ptr);
    // An earlier handler in this batch may have removed this entry; it is still alive in
    // the graveyard, so checking the flag is safe.
    if (!entry->removed) entry->handler(events[i].events);
  }
  graveyard_.clear();
}

void EventLoop::Stop() {
  stop_.store(true, std::memory_order_release);
  wakeup_.Signal();
}

void EventLoop::Post(absl::AnyInvocable<void()> fn) {
  {
    absl::MutexLock lock(&posted_mu_);
    posted_.push_back(std::move(fn));
  }
  wakeup_.Signal();
}

void EventLoop::DrainPosted() {
  std::vector<absl::AnyInvocable<void()>> batch;
  {
    absl::MutexLock lock(&posted_mu_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

}  // namespace keel
