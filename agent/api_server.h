// The public API (rpc/keel.capnp) served over VmManager: HostAgent is the bootstrap
// capability of every connection; each Vm capability names one VM by id.
#pragma once

#include "agent/events.h"
#include "agent/vm_manager.h"
#include "rpc/keel.capnp.h"

namespace keel::agent {

// The bootstrap capability for a new connection. `manager` and `events` outlive it (keeld
// stops serving before destroying them).
rpc::HostAgent::Client NewHostAgent(VmManager& manager, EventHub& events);

}  // namespace keel::agent
