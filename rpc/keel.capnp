# Keel's public control API: what an upstream controller (a scheduler, an operator, a fleet
# manager) codes against to run VMs on one host. Served by `keeld` on a unix socket
# (default /run/keel/keel.sock) and optionally on TCP with TLS client certificates.
#
# Bootstrap: the connection's bootstrap capability is a `HostAgent`.
#
# Conventions:
#   - Units are in field names: memoryMib, sizeBytes, timeoutMs, timeNs (ns since the Unix epoch).
#   - Evolution: fields and methods are only ever added, with the next ordinal; ordinals are
#     never reused or renumbered. A controller checks `HostInfo.apiVersion`.
#   - Expected failures (not found, capacity exhausted, name taken, image locked, bad spec) are
#     returned as a typed `Error` inside the result union, with a message that says what to fix.
#     Exceptions mean something unexpected (the agent could not talk to a VMM, a disk failed).
#   - Every mutating call returns the resulting state.
#   - VMs, networks and volumes are named by the controller; names are 1-63 characters of
#     [a-z0-9-], starting with a letter or digit. A VM also has an agent-assigned id (a UUID);
#     wherever a VM is looked up, its id or its name is accepted.
@0xcf660b0ac97be940;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("keel::rpc");

const apiVersion :UInt32 = 1;

struct Error {
  code @0 :Code;
  message @1 :Text;  # one sentence: what was wrong and what to do about it

  enum Code {
    invalidArgument @0;    # the request itself is malformed (zero memory, bad name, bad MAC, ...)
    notFound @1;           # no such VM, network, volume or image file
    alreadyExists @2;      # the name is taken (or a request id was reused with another spec)
    capacityExhausted @3;  # the host cannot fit it (vCPUs, memory, disk) at current overcommit
    imageLocked @4;        # a writable image or volume is in use by another VM
    failedPrecondition @5; # not in a state that allows it (deleting a running VM, an attached volume)
    permissionDenied @6;   # a path outside the allowed image directory, or not permitted
  }
}

struct Label {
  key @0 :Text;
  value @1 :Text;
}

# ---------------------------------------------------------------------------------------------
# VMs

enum VmState {
  stopped @0;   # defined, no VMM process
  starting @1;  # VMM being spawned
  running @2;
  paused @3;    # vCPUs stopped, memory kept
  stopping @4;  # shutdown requested, waiting for the guest / VMM to exit
  crashed @5;   # the VMM died unexpectedly (signal, VMM-internal error); `lastError` says how
  deleted @6;   # only ever seen in events and in the result of `delete`
}

enum CacheMode {
  writeback @0;  # through the host page cache; guest FLUSH makes writes durable
  none @1;       # O_DIRECT
}

struct DiskSpec {
  union {
    volume @0 :Text;     # a volume created with createVolume/importVolume (attached exclusively
                         # unless readOnly)
    imagePath @1 :Text;  # an image file inside the agent's allowed image directory
  }
  readOnly @2 :Bool;
  cache @3 :CacheMode;
  serial @4 :Text;       # what the guest's GET_ID returns (at most 20 bytes); empty: the disk's name
}

struct NicSpec {
  network @0 :Text;  # a network created with createNetwork
  mac @1 :Text;      # "52:54:00:12:34:56"; empty: the agent allocates a stable one
  mtu @2 :UInt32;    # 0: the network's MTU
}

struct VmSpec {
  name @0 :Text;
  vcpus @1 :UInt32 = 1;
  memoryMib @2 :UInt64 = 128;
  kernelPath @3 :Text;   # PVH ELF or bzImage, inside the allowed image directory
  initrdPath @4 :Text;   # optional, inside the allowed image directory
  cmdline @5 :Text;
  disks @6 :List(DiskSpec);
  nics @7 :List(NicSpec);
  labels @8 :List(Label);
  autoStart @9 :Bool = true;  # start as soon as it is created
}

struct NicInfo {
  network @0 :Text;
  mac @1 :Text;
  tap @2 :Text;  # the host-side tap device
  mtu @3 :UInt32;
}

struct DiskInfo {
  name @0 :Text;  # volume name or image path
  path @1 :Text;
  readOnly @2 :Bool;
  serial @3 :Text;
}

struct VmInfo {
  id @0 :Text;
  name @1 :Text;
  spec @2 :VmSpec;
  state @3 :VmState;
  desiredState @4 :VmState;   # running, paused or stopped: what the controller last asked for
  pid @5 :Int32;              # the VMM's pid while it runs; 0 otherwise
  createdTimeNs @6 :Int64;
  startedTimeNs @7 :Int64;    # 0 when not running
  nics @8 :List(NicInfo);
  disks @9 :List(DiskInfo);
  lastExitStatus @10 :Int32;  # keel-vmm's exit status the last time it ended (-1: none yet;
                              # 128+N: killed by signal N)
  lastError @11 :Text;        # why the VM last crashed or failed to start; empty otherwise
  consoleBytes @12 :UInt64;   # total console output so far (the next offset to read)
  requestId @13 :Text;        # the createVm request id that made it
}

struct VmFilter {
  nameContains @0 :Text;     # empty: any
  states @1 :List(VmState);  # empty: any
  labels @2 :List(Label);    # all must match
}

struct DiskStats {
  name @0 :Text;
  readOps @1 :UInt64;
  writeOps @2 :UInt64;
  flushOps @3 :UInt64;
  readBytes @4 :UInt64;
  writeBytes @5 :UInt64;
  errors @6 :UInt64;
}

struct NicStats {
  tap @0 :Text;
  rxPackets @1 :UInt64;
  txPackets @2 :UInt64;
  rxBytes @3 :UInt64;
  txBytes @4 :UInt64;
  drops @5 :UInt64;
}

struct VmStats {
  state @0 :VmState;
  uptimeNs @1 :UInt64;
  cpuTimeNs @2 :UInt64;     # the VMM process's user+system CPU time (vCPUs included)
  vmmRssBytes @3 :UInt64;   # resident memory of the VMM process, guest pages touched included
  memoryMib @4 :UInt64;     # guest RAM size
  consoleBytes @5 :UInt64;
  disks @6 :List(DiskStats);
  nics @7 :List(NicStats);
  vcpuExits @8 :UInt64;     # KVM exits to userspace, all vCPUs
}

enum ShutdownMode {
  graceful @0;  # ACPI power button; hard stop if the guest has not powered off by timeoutMs
  hard @1;      # stop the VMM now
}

struct VmResult {
  union {
    vm @0 :VmHandle;
    error @1 :Error;
  }
}

struct VmHandle {
  vm @0 :Vm;
  info @1 :VmInfo;
}

struct StateResult {
  union {
    info @0 :VmInfo;  # the state after the call
    error @1 :Error;
  }
}

struct StatsResult {
  union {
    stats @0 :VmStats;
    error @1 :Error;
  }
}

# Receives console bytes as they are written. `offset` is the console offset of data[0]; a gap
# (offset beyond the last byte received) means bytes were dropped from the bounded buffer.
interface ConsoleSink {
  write @0 (offset :UInt64, data :Data) -> stream;
  done @1 (reason :Text);  # the VM stopped or was deleted; nothing more will come
}

# Dropping (releasing) a Handle cancels what it stands for (a watch, a console follow).
interface Handle {}

interface Vm {
  info @0 () -> (result :StateResult);
  start @1 () -> (result :StateResult);
  # graceful: returns once the VM stopped (cleanly or after the hard stop at timeoutMs).
  shutdown @2 (mode :ShutdownMode, timeoutMs :UInt32 = 30000) -> (result :StateResult);
  # Hard-restarts the VMM with the same spec (the guest sees a fresh boot).
  reboot @3 () -> (result :StateResult);
  pause @4 () -> (result :StateResult);
  resume @5 () -> (result :StateResult);
  # Stops the VM if it runs (hard, unless force is false and it is running: then
  # failedPrecondition), removes its taps, run directory and record. Volumes are detached,
  # not deleted. Returns the final info with state `deleted`.
  delete @6 (force :Bool = true) -> (result :StateResult);
  stats @7 () -> (result :StatsResult);
  # Up to maxBytes of console output starting at `offset`. The agent keeps a bounded buffer
  # per VM: if `offset` is older than what it holds, data starts at `startOffset` > offset.
  console @8 (offset :UInt64, maxBytes :UInt32 = 65536)
      -> (data :Data, startOffset :UInt64, nextOffset :UInt64);
  # Streams console output from `offset` (what is buffered first, then live) until the VM
  # stops, is deleted, or the handle is dropped.
  followConsole @9 (offset :UInt64, sink :ConsoleSink) -> (handle :Handle);
}

# ---------------------------------------------------------------------------------------------
# Networks

struct NetworkSpec {
  name @0 :Text;
  bridge @1 :Text;       # the Linux bridge to create; empty: "kbr-" + name (at most 15 bytes)
  mtu @2 :UInt32;        # 0: 1500
  hostAddress @3 :Text;  # optional "10.0.0.1/24" put on the bridge
}

struct NetworkInfo {
  name @0 :Text;
  bridge @1 :Text;
  mtu @2 :UInt32;
  hostAddress @3 :Text;
  nicCount @4 :UInt32;  # NICs of VMs on this network
}

struct NetworkResult {
  union {
    network @0 :NetworkInfo;
    error @1 :Error;
  }
}

# ---------------------------------------------------------------------------------------------
# Volumes: raw images the agent owns, in its volume directory.

enum VolumeState {
  ready @0;
  importing @1;
}

struct VolumeSpec {
  name @0 :Text;
  sizeBytes @1 :UInt64;  # createVolume: the size (a multiple of 512); importVolume: 0 keeps
                         # the source's size, larger grows it
}

struct VolumeInfo {
  name @0 :Text;
  path @1 :Text;
  sizeBytes @2 :UInt64;
  allocatedBytes @3 :UInt64;  # blocks actually used on the host (sparse files stay sparse)
  attachedTo @4 :List(Text);  # ids of VMs whose spec uses it
  state @5 :VolumeState;
  createdTimeNs @6 :Int64;
}

struct VolumeResult {
  union {
    volume @0 :VolumeInfo;
    error @1 :Error;
  }
}

interface ImportProgress {
  progress @0 (doneBytes :UInt64, totalBytes :UInt64) -> stream;
}

struct DeleteResult {
  union {
    ok @0 :Void;
    error @1 :Error;
  }
}

# ---------------------------------------------------------------------------------------------
# Events

enum EventType {
  created @0;
  started @1;
  stopped @2;   # the guest powered off / reset, or a shutdown completed
  crashed @3;   # the VMM died unexpectedly
  deleted @4;
  paused @5;
  resumed @6;
}

struct Event {
  seq @0 :UInt64;      # increases by one per event, per agent
  timeNs @1 :Int64;
  type @2 :EventType;
  vmId @3 :Text;
  vmName @4 :Text;
  state @5 :VmState;   # the VM's state after the event
  message @6 :Text;    # e.g. the exit status or why it crashed
}

interface EventSink {
  push @0 (event :Event) -> stream;
}

# ---------------------------------------------------------------------------------------------
# The host

struct KvmInfo {
  apiVersion @0 :Int32;
  maxVcpus @1 :UInt32;
  recommendedVcpus @2 :UInt32;
  capabilities @3 :List(Text);  # the KVM capabilities Keel relies on that this host has
}

struct Capacity {
  vcpusTotal @0 :UInt32;         # host CPUs × cpuOvercommit
  vcpusAllocated @1 :UInt32;
  memoryMibTotal @2 :UInt64;     # host memory minus the reserve, × memoryOvercommit
  memoryMibAllocated @3 :UInt64;
  diskBytesTotal @4 :UInt64;     # free space for volumes plus what volumes already use
  diskBytesAllocated @5 :UInt64; # sum of volume sizes
  cpuOvercommit @6 :Float64;
  memoryOvercommit @7 :Float64;
  memoryReserveMib @8 :UInt64;   # kept for the host itself
}

struct HostInfo {
  apiVersion @0 :UInt32;
  keelVersion @1 :Text;
  hostname @2 :Text;
  cpuModel @3 :Text;
  cpus @4 :UInt32;            # logical CPUs online
  sockets @5 :UInt32;
  coresPerSocket @6 :UInt32;
  threadsPerCore @7 :UInt32;
  memoryMib @8 :UInt64;
  memoryAvailableMib @9 :UInt64;
  hugepages2MibTotal @10 :UInt64;
  hugepages2MibFree @11 :UInt64;
  hugepages1GibTotal @12 :UInt64;
  hugepages1GibFree @13 :UInt64;
  kvm @14 :KvmInfo;
  capacity @15 :Capacity;
  vmCount @16 :UInt32;
  runningVmCount @17 :UInt32;
  bootTimeNs @18 :Int64;      # when this keeld started
}

interface HostAgent {
  hostInfo @0 () -> (info :HostInfo);

  # Idempotent on requestId: repeating a request with the same id and spec returns the VM it
  # made (alreadyExists if the spec differs). An empty requestId makes the call not idempotent.
  createVm @1 (requestId :Text, spec :VmSpec) -> (result :VmResult);
  getVm @2 (vm :Text) -> (result :VmResult);  # id or name
  listVms @3 (filter :VmFilter) -> (vms :List(VmInfo));

  createNetwork @4 (spec :NetworkSpec) -> (result :NetworkResult);
  listNetworks @5 () -> (networks :List(NetworkInfo));
  deleteNetwork @6 (name :Text) -> (result :DeleteResult);  # refused while NICs use it

  createVolume @7 (spec :VolumeSpec) -> (result :VolumeResult);
  # Copies the source image (inside the allowed image directory) into a new volume, keeping
  # holes. Progress is pushed to `progress` (may be null) as the copy goes.
  importVolume @8 (spec :VolumeSpec, sourcePath :Text, progress :ImportProgress)
      -> (result :VolumeResult);
  listVolumes @9 () -> (volumes :List(VolumeInfo));
  deleteVolume @10 (name :Text) -> (result :DeleteResult);  # refused while attached

  # Streams events after `afterSeq` (0: only new ones) to `sink` until the handle is dropped.
  # A sink that does not keep up is dropped (its stream ends) rather than slowing the agent.
  watch @11 (sink :EventSink, afterSeq :UInt64) -> (handle :Handle);
}
