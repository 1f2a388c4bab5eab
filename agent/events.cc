#include "agent/events.h"

#include <time.h>

#include "agent/store.h"
#include "base/log.h"

namespace keel::agent {
namespace {

constexpr const char* kSeqCounter = "event_seq";
constexpr uint64_t kSeqBlock = 1024;

class LogErrors : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    KEEL_LOG(WARNING) << "event task failed: " << e.getDescription().cStr();
  }
};
LogErrors log_errors;

}  // namespace

int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

void FillEvent(const EventRecord& r, rpc::Event::Builder e) {
  e.setSeq(r.seq);
  e.setTimeNs(r.time_ns);
  e.setType(r.type);
  e.setVmId(r.vm_id);
  e.setVmName(r.vm_name);
  e.setState(r.state);
  e.setMessage(r.message);
}

struct EventHub::Watcher {
  explicit Watcher(rpc::EventSink::Client s) : sink(kj::mv(s)) {}
  rpc::EventSink::Client sink;
  std::deque<EventRecord> queue;
  bool pumping = false;
  kj::Promise<void> pump = kj::READY_NOW;
};

class EventHub::HandleImpl final : public rpc::Handle::Server {
 public:
  HandleImpl(std::weak_ptr<EventHub*> hub, uint64_t id) : hub_(std::move(hub)), id_(id) {}
  ~HandleImpl() noexcept(false) {
    if (auto hub = hub_.lock(); hub && *hub) (*hub)->watchers_.erase(id_);
  }

 private:
  std::weak_ptr<EventHub*> hub_;
  uint64_t id_;
};

EventHub::EventHub(Store* store, size_t queue_limit, size_t history_limit)
    : store_(store),
      queue_limit_(queue_limit == 0 ? 1 : queue_limit),
      history_limit_(history_limit),
      self_(std::make_shared<EventHub*>(this)),
      tasks_(kj::heap<kj::TaskSet>(log_errors)) {
  if (store_ != nullptr) {
    auto seq = store_->GetCounter(kSeqCounter);
    if (seq.ok()) seq_ = reserved_ = *seq;
  }
}

EventHub::~EventHub() {
  *self_ = nullptr;
  watchers_.clear();
}

uint64_t EventHub::Publish(rpc::EventType type, const std::string& vm_id,
                           const std::string& vm_name, rpc::VmState state, std::string message) {
  EventRecord r{.seq = ++seq_,
                .time_ns = NowNs(),
                .type = type,
                .vm_id = vm_id,
                .vm_name = vm_name,
                .state = state,
                .message = std::move(message)};
  if (store_ != nullptr && seq_ > reserved_) {
    // Sequence numbers are reserved in blocks, so most events cost no store write; a
    // restarted agent continues after the last reserved block.
    reserved_ = seq_ + kSeqBlock - 1;
    absl::Status s = store_->SetCounter(kSeqCounter, reserved_);
    if (!s.ok()) KEEL_LOG(WARNING) << "event sequence not persisted: " << s;
  }
  history_.push_back(r);
  while (history_.size() > history_limit_) history_.pop_front();
  std::vector<uint64_t> ids;
  for (auto& [id, w] : watchers_) ids.push_back(id);
  for (uint64_t id : ids) Enqueue(id, r);
  return r.seq;
}

rpc::Handle::Client EventHub::Watch(rpc::EventSink::Client sink, uint64_t after_seq) {
  uint64_t id = next_watcher_++;
  watchers_.emplace(id, std::make_unique<Watcher>(kj::mv(sink)));
  if (after_seq > 0) {
    for (const EventRecord& r : history_) {
      if (r.seq > after_seq) Enqueue(id, r);
    }
  }
  return kj::heap<HandleImpl>(self_, id);
}

void EventHub::Enqueue(uint64_t id, const EventRecord& event) {
  auto it = watchers_.find(id);
  if (it == watchers_.end()) return;
  Watcher& w = *it->second;
  if (w.queue.size() >= queue_limit_) {
    Drop(id, "fell behind");
    return;
  }
  w.queue.push_back(event);
  if (!w.pumping) {
    w.pumping = true;
    w.pump = PumpNext(id).eagerlyEvaluate(nullptr);
  }
}

kj::Promise<void> EventHub::PumpNext(uint64_t id) {
  auto it = watchers_.find(id);
  if (it == watchers_.end()) return kj::READY_NOW;
  Watcher& w = *it->second;
  if (w.queue.empty()) {
    w.pumping = false;
    return kj::READY_NOW;
  }
  auto req = w.sink.pushRequest();
  FillEvent(w.queue.front(), req.initEvent());
  w.queue.pop_front();
  return req.send().then([this, id]() { return PumpNext(id); },
                         [this, id](kj::Exception&& e) {
                           KEEL_LOG(INFO) << "event watcher dropped: "
                                          << e.getDescription().cStr();
                           // Not from inside this watcher's own pump: defer the erase.
                           tasks_->add(kj::evalLater([this, id]() { Drop(id, "push failed"); }));
                         });
}

void EventHub::Drop(uint64_t id, const char* why) {
  auto it = watchers_.find(id);
  if (it == watchers_.end()) return;
  KEEL_LOG(INFO) << "dropping event watcher " << id << ": " << why;
  ++dropped_;
  // The pump may be the running promise (Enqueue from a push continuation never happens, but
  // be safe): hand the watcher to the event loop to destroy.
  std::unique_ptr<Watcher> w = std::move(it->second);
  watchers_.erase(it);
  tasks_->add(kj::evalLater([w = std::move(w)]() mutable { w.reset(); }));
}

}  // namespace keel::agent
