// Store: keeld's durable state in SQLite (WAL journal, synchronous=FULL) under the state
// directory — VM specs with their desired and observed state, NICs (tap names and MAC
// allocations), networks, volumes and a few counters.
//
// Every mutating method commits before it returns, so once it returns OK the change survives
// a crash of keeld or of the host; keeld acknowledges a mutation to its caller only after that.
// Methods are quick local writes: keeld calls them on its event loop thread.
//
// Threading: not thread-safe; one Store per keeld, used from the event loop thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

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
  int desired = 0;   // rpc::VmState values
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

  // A VM and its NICs, in one transaction. AlreadyExists if the name, request id, a MAC or a
  // tap name is taken.
  absl::Status InsertVm(const VmRow& vm);
  // Rewrites the VM's mutable fields (state, pid, times, errors); NICs are unchanged.
  absl::Status UpdateVm(const VmRow& vm);
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

  sqlite3* db_;
  int lock_fd_ = -1;
};

}  // namespace keel::agent
