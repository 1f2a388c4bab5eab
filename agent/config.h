// keeld's configuration: paths, listeners, capacity policy. Filled from flags (and
// --flagfile=PATH for a config file of `--name=value` lines) in keeld's main(); every field
// has a default that works on a host where keeld runs as root with nothing configured.
#pragma once

#include <cstdint>
#include <string>

namespace keel::agent {

struct Config {
  std::string state_dir = "/var/lib/keel";         // the store (keel.db) and volumes/
  std::string run_dir = "/run/keel";               // the socket and vms/ID/ run directories
  std::string image_dir = "/var/lib/keel/images";  // kernels, initrds and images VMs may use
  std::string volume_dir;                          // empty: STATE/volumes
  std::string socket_path;                         // empty: RUN/keel.sock
  std::string vmm_path;                            // empty: keel-vmm next to keeld's own binary
  // Optional TCP listener with TLS and client certificates ("0.0.0.0:7070"); empty: none.
  std::string tcp_listen;
  std::string tls_cert;       // PEM certificate chain of this agent
  std::string tls_key;        // PEM private key
  std::string tls_client_ca;  // PEM CA that client certificates must chain to

  double cpu_overcommit = 4.0;     // vCPUs per host CPU
  double memory_overcommit = 1.0;  // guest MiB per host MiB (after the reserve)
  uint64_t memory_reserve_mib = 1024;
  uint64_t console_buffer_bytes = 1 << 20;  // per VM
  uint32_t event_queue_limit = 1024;        // events a watcher may fall behind before it is dropped
  uint32_t event_history = 4096;            // recent events kept for watch(afterSeq)
  // How long a VMM may take to answer a control call (launch, pause, resume, stats, the
  // check on re-attach) before keeld gives up on the call (and kills a VMM that hangs at
  // launch or on re-attach).
  uint32_t vmm_call_timeout_ms = 30000;

  // Fills the empty derived paths from the others and keeld's own location.
  void ResolveDefaults();
  std::string vm_run_dir(const std::string& id) const { return run_dir + "/vms/" + id; }
};

}  // namespace keel::agent
