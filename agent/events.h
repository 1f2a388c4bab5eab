// EventHub: the agent's lifecycle event stream (created, started, stopped, crashed, deleted,
// paused, resumed), fanned out to every watcher's EventSink.
//
// Each watcher has its own bounded queue and one push in flight at a time (Cap'n Proto
// streaming provides the flow control); a watcher whose queue overflows, or whose push fails,
// is dropped — its sink released, so its stream ends — and never slows the agent or other
// watchers. Recent events are kept so a watcher can resume after a sequence number.
//
// Sequence numbers increase by one per event while the agent runs and keep increasing across
// restarts (blocks of them are reserved in the store when one is given, so a restart may skip
// some numbers).
//
// Threading: event loop thread only. The hub must outlive nothing in particular: Handles given
// to clients may outlive it and then do nothing when released.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include "kj/async.h"
#include "rpc/keel.capnp.h"

namespace keel::agent {

class Store;

struct EventRecord {
  uint64_t seq = 0;
  int64_t time_ns = 0;
  rpc::EventType type = rpc::EventType::CREATED;
  std::string vm_id;
  std::string vm_name;
  rpc::VmState state = rpc::VmState::STOPPED;
  std::string message;
};

class EventHub {
 public:
  // `store` may be null (sequence numbers then start at 1 in each process).
  EventHub(Store* store, size_t queue_limit, size_t history_limit);
  ~EventHub();

  uint64_t Publish(rpc::EventType type, const std::string& vm_id, const std::string& vm_name,
                   rpc::VmState state, std::string message);

  // Adds a watcher; events with seq > after_seq that are still in the history are queued first
  // (after_seq 0: only new events). Releasing the returned Handle removes it.
  rpc::Handle::Client Watch(rpc::EventSink::Client sink, uint64_t after_seq);

  size_t watcher_count() const { return watchers_.size(); }
  uint64_t dropped_count() const { return dropped_; }
  uint64_t last_seq() const { return seq_; }

 private:
  struct Watcher;
  class HandleImpl;

  void Enqueue(uint64_t id, const EventRecord& event);
  kj::Promise<void> PumpNext(uint64_t id);
  void Drop(uint64_t id, const char* why);

  Store* store_;
  size_t queue_limit_;
  size_t history_limit_;
  uint64_t seq_ = 0;
  uint64_t reserved_ = 0;  // highest sequence number reserved in the store
  uint64_t next_watcher_ = 1;
  uint64_t dropped_ = 0;
  std::deque<EventRecord> history_;
  std::map<uint64_t, std::unique_ptr<Watcher>> watchers_;
  std::shared_ptr<EventHub*> self_;  // cleared on destruction; Handles hold it weakly
  kj::Own<kj::TaskSet> tasks_;
};

void FillEvent(const EventRecord& record, rpc::Event::Builder event);

int64_t NowNs();

}  // namespace keel::agent
