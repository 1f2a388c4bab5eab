# The private channel between keeld and one keel-vmm process. Not a public API: both ends ship
# together, but ordinals still only grow so a restarted (upgraded) keeld can talk to VMMs that
# an older keeld started.
#
# Transport: a unix stream socket with Cap'n Proto's two-party protocol and fd passing
# (SCM_RIGHTS). keeld spawns keel-vmm with
#     keel-vmm --control-fd N --control-socket RUN_DIR/control.sock --vm-id ID
#              --exit-file RUN_DIR/exit
# where N is one end of a socketpair. On either connection the bootstrap capability is a
# `VmmControl`. The VMM boots nothing until `launch` gives it the configuration and the
# file descriptors (kernel, initrd, disks, taps, console log), so it needs no rights to any
# path and no privilege beyond /dev/kvm. After a keeld restart, keeld reconnects through
# control.sock; the VM never stops for it.
#
# When the VM ends, keel-vmm writes its exit status as decimal text to the exit file (written to
# a temporary name and renamed, so a reader sees all of it or nothing) before it exits, so a
# keeld that is not its parent still learns how it ended.
@0x8406901dca8733a9;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("keel::rpc::vmm");

# Carries one file descriptor: the sender's server returns it from getFd(), the receiver takes
# it with Capability::Client::getFd() once the message has arrived.
interface Fd {}

struct DiskConfig {
  image @0 :Fd;        # opened O_RDWR, or O_RDONLY when readOnly, and locked by the agent
  name @1 :Text;       # for messages and stats
  readOnly @2 :Bool;
  directIo @3 :Bool;   # cache=none
  serial @4 :Text;
}

struct NicConfig {
  tap @0 :Fd;          # IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, attached to its bridge by the agent
  name @1 :Text;       # the tap's name, for stats
  mac @2 :Data;        # 6 bytes
  mtu @3 :UInt32;      # 0: not advertised
}

struct LaunchConfig {
  vmId @0 :Text;
  kernel @1 :Fd;       # read-only
  initrd @2 :Fd;       # may be null
  cmdline @3 :Text;
  memoryMib @4 :UInt64;
  vcpus @5 :UInt32;
  disks @6 :List(DiskConfig);
  nics @7 :List(NicConfig);
  consoleLog @8 :Fd;   # guest console is appended here; may be null
  startPaused @9 :Bool;
}

enum RunState {
  notLaunched @0;
  running @1;
  paused @2;
  stopping @3;   # shutting down; the process is about to exit
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
  name @0 :Text;
  rxPackets @1 :UInt64;
  txPackets @2 :UInt64;
  rxBytes @3 :UInt64;
  txBytes @4 :UInt64;
  drops @5 :UInt64;
}

struct VmmStats {
  state @0 :RunState;
  uptimeNs @1 :UInt64;
  cpuTimeNs @2 :UInt64;     # this process's user+system time
  rssBytes @3 :UInt64;
  consoleBytes @4 :UInt64;
  vcpuExits @5 :UInt64;
  disks @6 :List(DiskStats);
  nics @7 :List(NicStats);
}

struct VmmInfo {
  vmId @0 :Text;
  pid @1 :Int32;
  state @2 :RunState;
  keelVersion @3 :Text;
  consoleBytes @4 :UInt64;
}

interface ConsoleSink {
  write @0 (offset :UInt64, data :Data) -> stream;
}

interface Handle {}

interface VmmControl {
  info @0 () -> (info :VmmInfo);
  # Builds the VM from `config` and starts it (or leaves it paused). Errors caused by the
  # configuration (not a kernel, image not usable, too much memory) are exceptions of type
  # FAILED with the same one-line message keel-vmm would print; the process then exits with
  # status 2. Refused once launched.
  launch @1 (config :LaunchConfig) -> (info :VmmInfo);
  pause @2 () -> (info :VmmInfo);
  resume @3 () -> (info :VmmInfo);
  # graceful: presses the ACPI power button and returns; the process exits when the guest
  # powers off. hard: stops the vCPUs and exits (status 0) right after replying.
  shutdown @4 (hard :Bool) -> ();
  stats @5 () -> (stats :VmmStats);
  # The newest console output the VMM keeps in memory (256 KiB), from `offset`.
  console @6 (offset :UInt64, maxBytes :UInt32) -> (data :Data, startOffset :UInt64,
                                                   nextOffset :UInt64);
  # Streams console output from `offset` until the handle is dropped or the VM ends.
  followConsole @7 (offset :UInt64, sink :ConsoleSink) -> (handle :Handle);
}
