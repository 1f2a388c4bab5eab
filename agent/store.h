// Store: keeld's durable state in SQLite (WAL journal, synchronous=FULL) under the state
// directory — VM specs with their desired and observed state, NICs (tap names and MAC
// allocations), networks, volumes and a few counters.
//
// Every mutating method commits before it returns, so once it returns OK the change survives
// a crash of keeld or of the host; keeld acknowledges a mutation to its caller only after that.
// Methods are quick local writes: keeld calls them on its event loop thread.
//
// Group commit: InsertVm and UpdateVm with Durability::kGrouped apply the change to an open
// batch transaction and return; the batch commits (one fsync for every change in it) once the
// event loop has run everything else that was ready, or earlier when any mutation with the
// default kNow commits. Synced() resolves after everything applied so far is durable: a caller
// acknowledges a grouped mutation only after it. Each mutation stays atomic on its own (a
// failed one undoes only its own changes).
//
// Threading: not thread-safe; one Store per keeld, used from the event loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kj/async.h"

struct sqlite3;

namespace keel::agent {

struct NicRow {
  uint32_t index = 0;
  std::string network{};
  std::string mac{};  // "52:54:00:.." unique across the store
  std::string tap{};  // unique across the store
  uint32_t mtu = 0;
  friend bool operator==(const NicRow&, const NicRow&) = default;
};

struct VmRow {
  std::string id{};
  std::string name{};
  std::string request_id{};
  std::string spec{};  // the rpc::VmSpec as a flat Cap'n Proto message
  int desired = 0;     // rpc::VmState values
  int state = 0;
  int32_t pid = 0;
  uint64_t start_time = 0;  // VmmProcess::ProcessStartTime of pid
  int64_t created_ns = 0;
  int64_t started_ns = 0;
  int32_t last_exit = -1;
  std::string last_error{};
  std::vector<NicRow> nics{};
};

struct NetworkRow {
  std::string name{};
  std::string bridge{};
  uint32_t mtu = 1500;
  std::string host_address{};
};

struct VolumeRow {
  std::string name{};
  std::string path{};
  uint64_t size = 0;
  int state = 0;  // rpc::VolumeState values
  int64_t created_ns = 0;
};

class Store {
 public:
  // Opens (creating if needed) DIR/keel.db. Fails if another keeld holds the same state
  // directory (the database's lock file is taken exclusively).
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& dir);
  ~Store();

  enum class Durability { kNow, kGrouped };

  // A VM and its NICs, in one transaction. AlreadyExists if the name, request id, a MAC or a
  // tap name is taken.
  absl::Status InsertVm(const VmRow& vm, Durability durability = Durability::kNow);
  // Rewrites the VM's mutable fields (state, pid, times, errors); NICs are unchanged.
  absl::Status UpdateVm(const VmRow& vm, Durability durability = Durability::kNow);
  // Resolves once every change applied so far is committed (at once when none is pending),
  // with the commit's status. Event loop thread only.
  kj::Promise<absl::Status> Synced();
  // Commits the open batch now, if any.
  absl::Status CommitBatch();
  // Commits so far, for tests and the benchmark's reading of group sizes.
  uint64_t commits() const { return commits_; }
  absl::Status DeleteVm(const std::string& id);
  absl::StatusOr<std::vector<VmRow>> LoadVms();
  // Whether any NIC in the store has this MAC.
  absl::StatusOr<bool> MacInUse(const std::string& mac);

  absl::Status InsertNetwork(const NetworkRow& network);
  absl::Status DeleteNetwork(const std::string& name);
  absl::StatusOr<std::vector<NetworkRow>> LoadNetworks();

  absl::Status InsertVolume(const VolumeRow& volume);
  absl::Status UpdateVolume(const VolumeRow& volume);
  absl::Status DeleteVolume(const std::string& name);
  absl::StatusOr<std::vector<VolumeRow>> LoadVolumes();

  // Small named counters (e.g. the last event sequence number).
  absl::StatusOr<uint64_t> GetCounter(const std::string& key);
  absl::Status SetCounter(const std::string& key, uint64_t value);

  // What the store reported about its journal ("wal") and sync level (2 = FULL), for tests.
  std::string JournalMode();
  int SynchronousLevel();

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  absl::Status Exec(const std::string& sql);
  // Runs `body` as one atomic step inside the batch (opened if needed); then commits the
  // batch (kNow) or schedules its commit (kGrouped).
  absl::Status Mutate(Durability durability, const std::function<absl::Status()>& body);
  void ScheduleCommit();

  sqlite3* db_;
  int lock_fd_ = -1;
  bool batch_open_ = false;
  uint64_t commits_ = 0;
  // The batch's waiters, while a grouped change is pending.
  struct Pending {
    kj::ForkedPromise<absl::Status> promise;
    kj::Own<kj::PromiseFulfiller<absl::Status>> fulfiller;
  };
  std::optional<Pending> pending_;
  // Null once the store is gone (the scheduled commit is owned by the event loop).
  std::shared_ptr<Store*> self_ = std::make_shared<Store*>(this);
};

}  // namespace keel::agent
