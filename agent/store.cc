#include "agent/store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace keel::agent {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vms(
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  request_id TEXT NOT NULL,
  spec BLOB NOT NULL,
  desired INTEGER NOT NULL,
  state INTEGER NOT NULL,
  pid INTEGER NOT NULL,
  start_time INTEGER NOT NULL,
  created_ns INTEGER NOT NULL,
  started_ns INTEGER NOT NULL,
  last_exit INTEGER NOT NULL,
  last_error TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS vms_request_id ON vms(request_id) WHERE request_id != '';
CREATE TABLE IF NOT EXISTS nics(
  vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  network TEXT NOT NULL,
  mac TEXT NOT NULL UNIQUE,
  tap TEXT NOT NULL UNIQUE,
  mtu INTEGER NOT NULL,
  PRIMARY KEY(vm_id, idx));
CREATE TABLE IF NOT EXISTS networks(
  name TEXT PRIMARY KEY,
  bridge TEXT NOT NULL UNIQUE,
  mtu INTEGER NOT NULL,
  host_address TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS volumes(
  name TEXT PRIMARY KEY,
  path TEXT NOT NULL,
  size INTEGER NOT NULL,
  state INTEGER NOT NULL,
  created_ns INTEGER NOT NULL);
)sql";

// One prepared statement; finalized on destruction.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  absl::Status prepared() const {
    if (rc_ == SQLITE_OK) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("store: ", sqlite3_errmsg(db_)));
  }
  Stmt& Bind(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindBlob(int i, const std::string& s) {
    sqlite3_bind_blob(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // SQLITE_ROW: a row is ready; SQLITE_DONE: finished; anything else is an error.
  int Step() { return sqlite3_step(stmt_); }
  // Runs a statement that returns no rows.
  absl::Status Run(absl::string_view what) {
    KEEL_RETURN_IF_ERROR(prepared());
    int rc = Step();
    if (rc == SQLITE_DONE) return absl::OkStatus();
    return Error(rc, what);
  }
  absl::Status Error(int rc, absl::string_view what) const {
    std::string msg = absl::StrCat("store: ", what, ": ", sqlite3_errmsg(db_));
    if ((rc & 0xff) == SQLITE_CONSTRAINT) return absl::AlreadyExistsError(msg);
    return absl::InternalError(msg);
  }
  std::string Text(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), n);
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& dir) {
  std::string lock_path = dir + "/keel.lock";
  int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0)
    return ErrnoError(errno, "open ", lock_path, " (does the state directory exist?)");
  if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close(lock_fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "state directory ", dir, " is in use by another keeld; stop it or pass --state-dir"));
    }
    return ErrnoError(err, "lock ", lock_path);
  }
  std::string path = dir + "/keel.db";
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    close(lock_fd);
    return absl::InternalError(absl::StrCat("open store ", path, ": ", msg));
  }
  std::unique_ptr<Store> store(new Store(db));
  store->lock_fd_ = lock_fd;
  sqlite3_busy_timeout(db, 1000);
  KEEL_RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL"));
  KEEL_RETURN_IF_ERROR(store->Exec("PRAGMA synchronous=FULL"));
  KEEL_RETURN_IF_ERROR(store->Exec("PRAGMA foreign_keys=ON"));
  KEEL_RETURN_IF_ERROR(store->Exec(kSchema));
  return store;
}

Store::~Store() {
  *self_ = nullptr;
  (void)CommitBatch();
  sqlite3_close(db_);
  if (lock_fd_ >= 0) close(lock_fd_);
}

absl::Status Store::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return absl::InternalError(absl::StrCat("store: ", msg));
  }
  return absl::OkStatus();
}

absl::Status Store::Mutate(Durability durability, const std::function<absl::Status()>& body) {
  if (!batch_open_) {
    KEEL_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    batch_open_ = true;
  }
  absl::Status s = Exec("SAVEPOINT mutation");
  if (s.ok()) {
    s = body();
    if (sqlite3_get_autocommit(db_) != 0) {
      // SQLite rolled back the whole batch (an I/O error, say): CommitBatch reports it.
      if (s.ok()) s = absl::InternalError("store: the transaction was rolled back");
    } else if (s.ok()) {
      s = Exec("RELEASE mutation");
    } else {
      (void)Exec("ROLLBACK TO mutation");
      (void)Exec("RELEASE mutation");
    }
  }
  if (durability == Durability::kNow) {
    absl::Status c = CommitBatch();
    return s.ok() ? c : s;
  }
  ScheduleCommit();
  return s;
}

void Store::ScheduleCommit() {
  if (pending_.has_value() || !batch_open_) return;
  auto paf = kj::newPromiseAndFulfiller<absl::Status>();
  pending_.emplace(Pending{paf.promise.fork(), kj::mv(paf.fulfiller)});
  // After every other ready event (each may add to the batch), before waiting for I/O.
  // A commit scheduled earlier and overtaken by a kNow one at worst commits a later batch early.
  kj::evalLast([self = self_] {
    if (*self != nullptr) (void)(*self)->CommitBatch();
  }).detach([](kj::Exception&&) {});
}

kj::Promise<absl::Status> Store::Synced() {
  if (!batch_open_) return absl::OkStatus();
  ScheduleCommit();
  return pending_->promise.addBranch();
}

absl::Status Store::CommitBatch() {
  if (!batch_open_) return absl::OkStatus();
  batch_open_ = false;
  absl::Status s;
  if (sqlite3_get_autocommit(db_) != 0) {
    s = absl::InternalError("store: the batch transaction was rolled back");
  } else if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    s = absl::InternalError(absl::StrCat("store: commit: ", sqlite3_errmsg(db_)));
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  } else {
    ++commits_;
  }
  if (pending_.has_value()) {
    kj::Own<kj::PromiseFulfiller<absl::Status>> fulfiller = kj::mv(pending_->fulfiller);
    // The branches hold the fork hub: dropping it here is fine.
    pending_.reset();
    fulfiller->fulfill(absl::Status(s));
  }
  return s;
}

absl::Status Store::InsertVm(const VmRow& vm, Durability durability) {
  return Mutate(durability, [&]() -> absl::Status {
  {
    Stmt s(db_,
           "INSERT INTO vms(id,name,request_id,spec,desired,state,pid,start_time,created_ns,"
           "started_ns,last_exit,last_error) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)");
    s.Bind(1, vm.id).Bind(2, vm.name).Bind(3, vm.request_id).BindBlob(4, vm.spec);
    s.Bind(5, int64_t{vm.desired}).Bind(6, int64_t{vm.state}).Bind(7, int64_t{vm.pid});
    s.Bind(8, static_cast<int64_t>(vm.start_time)).Bind(9, vm.created_ns).Bind(10, vm.started_ns);
    s.Bind(11, int64_t{vm.last_exit}).Bind(12, vm.last_error);
    KEEL_RETURN_IF_ERROR(s.Run("insert vm " + vm.name));
  }
  for (const NicRow& nic : vm.nics) {
    Stmt s(db_, "INSERT INTO nics(vm_id,idx,network,mac,tap,mtu) VALUES(?,?,?,?,?,?)");
    s.Bind(1, vm.id).Bind(2, int64_t{nic.index}).Bind(3, nic.network).Bind(4, nic.mac);
    s.Bind(5, nic.tap).Bind(6, int64_t{nic.mtu});
    KEEL_RETURN_IF_ERROR(s.Run("insert nic of vm " + vm.name));
  }
  return absl::OkStatus();
  });
}

absl::Status Store::UpdateVm(const VmRow& vm, Durability durability) {
  return Mutate(durability, [&] {
  Stmt s(db_,
         "UPDATE vms SET desired=?,state=?,pid=?,start_time=?,started_ns=?,last_exit=?,"
         "last_error=? WHERE id=?");
  s.Bind(1, int64_t{vm.desired}).Bind(2, int64_t{vm.state}).Bind(3, int64_t{vm.pid});
  s.Bind(4, static_cast<int64_t>(vm.start_time)).Bind(5, vm.started_ns);
  s.Bind(6, int64_t{vm.last_exit}).Bind(7, vm.last_error).Bind(8, vm.id);
  return s.Run("update vm " + vm.name);
  });
}

absl::Status Store::DeleteVm(const std::string& id) {
  return Mutate(Durability::kNow, [&]() -> absl::Status {
  {
    Stmt n(db_, "DELETE FROM nics WHERE vm_id=?");
    n.Bind(1, id);
    KEEL_RETURN_IF_ERROR(n.Run("delete nics"));
    Stmt s(db_, "DELETE FROM vms WHERE id=?");
    s.Bind(1, id);
    KEEL_RETURN_IF_ERROR(s.Run("delete vm"));
  }
  return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<VmRow>> Store::LoadVms() {
  std::vector<VmRow> vms;
  Stmt s(db_,
         "SELECT id,name,request_id,spec,desired,state,pid,start_time,created_ns,started_ns,"
         "last_exit,last_error FROM vms ORDER BY created_ns, id");
  KEEL_RETURN_IF_ERROR(s.prepared());
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    VmRow vm;
    vm.id = s.Text(0);
    vm.name = s.Text(1);
    vm.request_id = s.Text(2);
    vm.spec = s.Text(3);
    vm.desired = static_cast<int>(s.Int(4));
    vm.state = static_cast<int>(s.Int(5));
    vm.pid = static_cast<int32_t>(s.Int(6));
    vm.start_time = static_cast<uint64_t>(s.Int(7));
    vm.created_ns = s.Int(8);
    vm.started_ns = s.Int(9);
    vm.last_exit = static_cast<int32_t>(s.Int(10));
    vm.last_error = s.Text(11);
    vms.push_back(std::move(vm));
  }
  if (rc != SQLITE_DONE) return s.Error(rc, "load vms");
  for (VmRow& vm : vms) {
    Stmt n(db_, "SELECT idx,network,mac,tap,mtu FROM nics WHERE vm_id=? ORDER BY idx");
    n.Bind(1, vm.id);
    KEEL_RETURN_IF_ERROR(n.prepared());
    while ((rc = n.Step()) == SQLITE_ROW) {
      vm.nics.push_back({.index = static_cast<uint32_t>(n.Int(0)),
                         .network = n.Text(1),
                         .mac = n.Text(2),
                         .tap = n.Text(3),
                         .mtu = static_cast<uint32_t>(n.Int(4))});
    }
    if (rc != SQLITE_DONE) return n.Error(rc, "load nics");
  }
  return vms;
}

absl::StatusOr<bool> Store::MacInUse(const std::string& mac) {
  Stmt s(db_, "SELECT 1 FROM nics WHERE mac=?");
  s.Bind(1, mac);
  KEEL_RETURN_IF_ERROR(s.prepared());
  int rc = s.Step();
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return s.Error(rc, "look up mac");
}

absl::Status Store::InsertNetwork(const NetworkRow& network) {
  return Mutate(Durability::kNow, [&] {
  Stmt s(db_, "INSERT INTO networks(name,bridge,mtu,host_address) VALUES(?,?,?,?)");
  s.Bind(1, network.name).Bind(2, network.bridge).Bind(3, int64_t{network.mtu});
  s.Bind(4, network.host_address);
  return s.Run("insert network " + network.name);
  });
}

absl::Status Store::DeleteNetwork(const std::string& name) {
  return Mutate(Durability::kNow, [&] {
  Stmt s(db_, "DELETE FROM networks WHERE name=?");
  s.Bind(1, name);
  return s.Run("delete network " + name);
  });
}

absl::StatusOr<std::vector<NetworkRow>> Store::LoadNetworks() {
  std::vector<NetworkRow> out;
  Stmt s(db_, "SELECT name,bridge,mtu,host_address FROM networks ORDER BY name");
  KEEL_RETURN_IF_ERROR(s.prepared());
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    out.push_back({.name = s.Text(0),
                   .bridge = s.Text(1),
                   .mtu = static_cast<uint32_t>(s.Int(2)),
                   .host_address = s.Text(3)});
  }
  if (rc != SQLITE_DONE) return s.Error(rc, "load networks");
  return out;
}

absl::Status Store::InsertVolume(const VolumeRow& v) {
  return Mutate(Durability::kNow, [&] {
  Stmt s(db_, "INSERT INTO volumes(name,path,size,state,created_ns) VALUES(?,?,?,?,?)");
  s.Bind(1, v.name).Bind(2, v.path).Bind(3, static_cast<int64_t>(v.size));
  s.Bind(4, int64_t{v.state}).Bind(5, v.created_ns);
  return s.Run("insert volume " + v.name);
  });
}

absl::Status Store::UpdateVolume(const VolumeRow& v) {
  return Mutate(Durability::kNow, [&] {
  Stmt s(db_, "UPDATE volumes SET size=?,state=? WHERE name=?");
  s.Bind(1, static_cast<int64_t>(v.size)).Bind(2, int64_t{v.state}).Bind(3, v.name);
  return s.Run("update volume " + v.name);
  });
}

absl::Status Store::DeleteVolume(const std::string& name) {
  return Mutate(Durability::kNow, [&] {
  Stmt s(db_, "DELETE FROM volumes WHERE name=?");
  s.Bind(1, name);
  return s.Run("delete volume " + name);
  });
}

absl::StatusOr<std::vector<VolumeRow>> Store::LoadVolumes() {
  std::vector<VolumeRow> out;
  Stmt s(db_, "SELECT name,path,size,state,created_ns FROM volumes ORDER BY name");
  KEEL_RETURN_IF_ERROR(s.prepared());
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    out.push_back({.name = s.Text(0),
                   .path = s.Text(1),
                   .size = static_cast<uint64_t>(s.Int(2)),
                   .state = static_cast<int>(s.Int(3)),
                   .created_ns = s.Int(4)});
  }
  if (rc != SQLITE_DONE) return s.Error(rc, "load volumes");
  return out;
}

absl::StatusOr<uint64_t> Store::GetCounter(const std::string& key) {
  Stmt s(db_, "SELECT value FROM meta WHERE key=?");
  s.Bind(1, key);
  KEEL_RETURN_IF_ERROR(s.prepared());
  int rc = s.Step();
  if (rc == SQLITE_ROW) return static_cast<uint64_t>(s.Int(0));
  if (rc == SQLITE_DONE) return 0;
  return s.Error(rc, "read counter " + key);
}

absl::Status Store::SetCounter(const std::string& key, uint64_t value) {
  return Mutate(Durability::kNow, [&] {
  Stmt s(db_,
         "INSERT INTO meta(key,value) VALUES(?,?) ON CONFLICT(key) DO UPDATE SET "
         "value=excluded.value");
  s.Bind(1, key).Bind(2, static_cast<int64_t>(value));
  return s.Run("write counter " + key);
  });
}

std::string Store::JournalMode() {
  Stmt s(db_, "PRAGMA journal_mode");
  return s.Step() == SQLITE_ROW ? s.Text(0) : "";
}

int Store::SynchronousLevel() {
  Stmt s(db_, "PRAGMA synchronous");
  return s.Step() == SQLITE_ROW ? static_cast<int>(s.Int(0)) : -1;
}

}  // namespace keel::agent
