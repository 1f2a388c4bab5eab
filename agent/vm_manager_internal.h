// VmManager's private per-VM state, shared by its .cc files.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "agent/vm_manager.h"

namespace keel::agent {

struct VmManager::ConsoleFollower {
  explicit ConsoleFollower(rpc::ConsoleSink::Client s, uint64_t offset)
      : sink(kj::mv(s)), next(offset) {}
  rpc::ConsoleSink::Client sink;
  uint64_t next;
  bool sending = false;
  bool ending = false;  // send done(reason) once caught up
  std::string reason;
  kj::Promise<void> pump = kj::READY_NOW;
};

struct VmManager::Vm {
  explicit Vm(size_t console_bytes) : console(console_bytes) {}

  VmRow row;
  VmSpecData spec;
  ConsoleBuffer console;
  // The running VMM; null when stopped.
  kj::Own<VmmProcess> vmm;
  uint64_t generation = 0;  // increments per VMM process, to ignore late callbacks
  // Resolves once the current VMM's exit has been handled.
  kj::Maybe<kj::ForkedPromise<void>> exited;
  kj::Maybe<rpc::vmm::Handle::Client> console_follow;
  uint64_t console_base = 0;  // console offset of the current VMM's byte 0
  // Size of the run directory's console.log when the current VMM was spawned (the file
  // position of the VMM's console byte 0); -1 when unknown (a VMM reattached after a restart).
  int64_t console_log_start = -1;
  bool stop_requested = false;
  std::map<uint64_t, std::unique_ptr<ConsoleFollower>> followers;
  kj::ForkedPromise<void> ops = kj::Promise<void>(kj::READY_NOW).fork();
};

}  // namespace keel::agent
