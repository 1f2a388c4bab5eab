// keeld: Keel's host agent. Serves rpc/keel.capnp on a unix socket (and optionally TCP with
// TLS client certificates), keeps its state in STATE/keel.db and runs one keel-vmm per VM.
// SIGTERM/SIGINT stop keeld only: VMs keep running and are re-attached when it starts again.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "agent/api_server.h"
#include "agent/config.h"
#include "agent/events.h"
#include "agent/host_info.h"
#include "agent/store.h"
#include "agent/vm_manager.h"
#include "base/log.h"
#include "capnp/rpc-twoparty.h"
#include "kj/async-io.h"
#include "kj/async-unix.h"
#include "kj/compat/tls.h"
#include "kj/filesystem.h"

ABSL_FLAG(std::string, state_dir, "/var/lib/keel", "store (keel.db) and volumes/");
ABSL_FLAG(std::string, run_dir, "/run/keel", "socket and per-VM run directories");
ABSL_FLAG(std::string, image_dir, "/var/lib/keel/images",
          "the only directory kernels, initrds and disk images may come from");
ABSL_FLAG(std::string, volume_dir, "", "where volumes live (default STATE/volumes)");
ABSL_FLAG(std::string, socket, "", "unix socket to serve (default RUN/keel.sock, mode 0660)");
ABSL_FLAG(std::string, vmm, "", "keel-vmm binary (default: next to keeld)");
ABSL_FLAG(std::string, tcp_listen, "", "also serve on this TCP address with TLS (host:port)");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain for --tcp-listen");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tcp-listen");
ABSL_FLAG(std::string, tls_client_ca, "", "PEM CA that client certificates must chain to");
ABSL_FLAG(double, cpu_overcommit, 4.0, "vCPUs per host CPU");
ABSL_FLAG(double, memory_overcommit, 1.0, "guest MiB per host MiB (after the reserve)");
ABSL_FLAG(uint64_t, memory_reserve_mib, 1024, "host memory kept out of the VMs' capacity");
ABSL_FLAG(uint64_t, console_buffer_bytes, 1 << 20, "console bytes kept per VM");
ABSL_FLAG(uint32_t, vmm_call_timeout_ms, 30000,
          "how long a keel-vmm may take to answer a control call (launch, pause, resume, stats, "
          "re-attach); one that hangs at launch or re-attach is killed");
ABSL_FLAG(bool, debug, false, "log debug messages");

namespace keel::agent {
namespace {

Config ConfigFromFlags() {
  Config c;
  c.state_dir = absl::GetFlag(FLAGS_state_dir);
  c.run_dir = absl::GetFlag(FLAGS_run_dir);
  c.image_dir = absl::GetFlag(FLAGS_image_dir);
  c.volume_dir = absl::GetFlag(FLAGS_volume_dir);
  c.socket_path = absl::GetFlag(FLAGS_socket);
  c.vmm_path = absl::GetFlag(FLAGS_vmm);
  c.tcp_listen = absl::GetFlag(FLAGS_tcp_listen);
  c.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  c.tls_key = absl::GetFlag(FLAGS_tls_key);
  c.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  c.cpu_overcommit = absl::GetFlag(FLAGS_cpu_overcommit);
  c.memory_overcommit = absl::GetFlag(FLAGS_memory_overcommit);
  c.memory_reserve_mib = absl::GetFlag(FLAGS_memory_reserve_mib);
  c.console_buffer_bytes = absl::GetFlag(FLAGS_console_buffer_bytes);
  c.vmm_call_timeout_ms = absl::GetFlag(FLAGS_vmm_call_timeout_ms);
  c.ResolveDefaults();
  return c;
}

bool MakeDir(const std::string& dir, mode_t mode) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    fprintf(stderr, "keeld: cannot create %s: %s\n", dir.c_str(), ec.message().c_str());
    return false;
  }
  chmod(dir.c_str(), mode);
  return true;
}

std::string ReadText(const std::string& path) {
  FILE* f = fopen(path.c_str(), "re");
  if (f == nullptr) return "";
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  fclose(f);
  return out;
}

// Flags are spelled with dashes (--state-dir) or underscores; absl knows them with underscores.
// `--config=FILE` (or absl's --flagfile) is expanded here: one `--flag=value` per line, blank
// lines and lines starting with '#' ignored, so the file may use dashes too.
std::vector<std::string> NormalizeArgs(std::vector<std::string> in) {
  std::vector<std::string> out;
  for (size_t i = 0; i < in.size(); ++i) {
    std::string a = in[i];
    if (i > 0 && a.rfind("--", 0) == 0) {
      for (size_t j = 2; j < a.size() && a[j] != '='; ++j) {
        if (a[j] == '-') a[j] = '_';
      }
      for (const char* file_flag : {"--config=", "--flagfile="}) {
        if (a.rfind(file_flag, 0) != 0) continue;
        std::string path = a.substr(strlen(file_flag));
        std::string text = ReadText(path);
        if (text.empty()) {
          fprintf(stderr, "keeld: cannot read config file %s\n", path.c_str());
          exit(2);
        }
        std::vector<std::string> lines = {""};
        size_t pos = 0;
        while (pos <= text.size()) {
          size_t nl = text.find('\n', pos);
          if (nl == std::string::npos) nl = text.size();
          std::string line = text.substr(pos, nl - pos);
          while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
          if (!line.empty() && line[0] != '#') lines.push_back(line);
          pos = nl + 1;
        }
        std::vector<std::string> expanded = NormalizeArgs(lines);
        out.insert(out.end(), expanded.begin() + 1, expanded.end());
        a.clear();
      }
      if (a.empty()) continue;
    }
    out.push_back(a);
  }
  return out;
}

// Accepts connections on `listener` forever, one two-party RPC session each.
class Acceptor : public kj::TaskSet::ErrorHandler {
 public:
  Acceptor(VmManager& manager, EventHub& events) : manager_(manager), events_(events) {}
  void taskFailed(kj::Exception&& e) override {
    KEEL_LOG(DEBUG) << "connection ended: " << e.getDescription().cStr();
  }
  kj::Promise<void> Accept(kj::ConnectionReceiver& listener) {
    return listener.accept().then([this, &listener](kj::Own<kj::AsyncIoStream> stream) {
      Serve(kj::mv(stream));
      return Accept(listener);
    });
  }
  kj::Promise<void> AcceptTls(kj::ConnectionReceiver& listener) {
    return listener.accept().then([this, &listener](kj::Own<kj::AsyncIoStream> stream) {
      Serve(kj::mv(stream));
      return AcceptTls(listener);
    });
  }

 private:
  struct Session {
    explicit Session(kj::Own<kj::AsyncIoStream> s, rpc::HostAgent::Client bootstrap)
        : stream(kj::mv(s)),
          network(*stream, capnp::rpc::twoparty::Side::SERVER),
          system(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
    kj::Own<kj::AsyncIoStream> stream;
    capnp::TwoPartyVatNetwork network;
    capnp::RpcSystem<capnp::rpc::twoparty::VatId> system;
  };
  void Serve(kj::Own<kj::AsyncIoStream> stream) {
    auto session = kj::heap<Session>(kj::mv(stream), NewHostAgent(manager_, events_));
    auto done = session->network.onDisconnect();
    tasks_.add(done.attach(kj::mv(session)));
  }

  VmManager& manager_;
  EventHub& events_;
  kj::TaskSet tasks_{*this};
};

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Keel's host agent.\n  keeld [--state-dir DIR] [--run-dir DIR] [--image-dir DIR] "
      "[--socket PATH] [--flagfile=CONFIG]");
  std::vector<std::string> args = NormalizeArgs(std::vector<std::string>(argv, argv + argc));
  std::vector<char*> fixed;
  for (std::string& a : args) fixed.push_back(a.data());
  absl::ParseCommandLine(static_cast<int>(fixed.size()), fixed.data());
  SetLogTag("keeld");
  if (absl::GetFlag(FLAGS_debug)) SetMinLogLevel(LogLevel::kDebug);
  Config config = ConfigFromFlags();
  if (config.vmm_call_timeout_ms == 0) {
    fprintf(stderr, "keeld: --vmm_call_timeout_ms must be at least 1\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  // Each running VM costs keeld a control connection and a pidfd: take every fd allowed.
  struct rlimit files;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  if (!MakeDir(config.state_dir, 0700) || !MakeDir(config.run_dir, 0755) ||
      !MakeDir(config.run_dir + "/vms", 0700) || !MakeDir(config.volume_dir, 0700) ||
      !MakeDir(config.image_dir, 0755)) {
    return 1;
  }
  auto store = Store::Open(config.state_dir);
  if (!store.ok()) {
    fprintf(stderr, "keeld: %s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  if (access(config.vmm_path.c_str(), X_OK) != 0) {
    KEEL_LOG(WARNING) << "keel-vmm not found at " << config.vmm_path
                      << "; VMs cannot start (pass --vmm)";
  }
  HostInventory host = ReadHostInventory();
  ReadKvm(host);
  if (!host.kvm_ok) KEEL_LOG(WARNING) << "KVM: " << host.kvm_error;

  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  auto io = kj::setupAsyncIo();
  // Every listener is bound before the unix socket exists: once a client can reach keeld there
  // (tests and controllers wait for it), the TCP endpoint accepts too. A TLS setup that cannot
  // work is refused before recovery touches anything.
  kj::Own<kj::TlsContext> tls;
  kj::Own<kj::Network> tls_network;
  kj::Own<kj::ConnectionReceiver> tls_listener;
  kj::Maybe<kj::TlsKeypair> keypair;
  kj::Vector<kj::TlsCertificate> trusted;
  if (!config.tcp_listen.empty()) {
    if (config.tls_cert.empty() || config.tls_key.empty() || config.tls_client_ca.empty()) {
      fprintf(stderr, "keeld: --tcp-listen needs --tls-cert, --tls-key and --tls-client-ca\n");
      return 2;
    }
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                   std::string cert = ReadText(config.tls_cert), key = ReadText(config.tls_key),
                               ca = ReadText(config.tls_client_ca);
                   keypair = kj::TlsKeypair{kj::TlsPrivateKey(kj::StringPtr(key.c_str())),
                                            kj::TlsCertificate(kj::StringPtr(cert.c_str()))};
                   trusted.add(kj::TlsCertificate(kj::StringPtr(ca.c_str())));
                   kj::TlsContext::Options options;
                   KJ_IF_MAYBE (kp, keypair) {
                     options.defaultKeypair = *kp;
                   }
                   options.verifyClients = true;
                   options.useSystemTrustStore = false;
                   options.trustedCertificates = trusted.asPtr();
                   tls = kj::heap<kj::TlsContext>(kj::mv(options));
                 })) {
      fprintf(stderr,
              "keeld: cannot use --tls-cert %s, --tls-key %s and --tls-client-ca %s (PEM files "
              "readable by keeld): %s\n",
              config.tls_cert.c_str(), config.tls_key.c_str(), config.tls_client_ca.c_str(),
              e->getDescription().cStr());
      return 2;
    }
    tls_network = tls->wrapNetwork(io.provider->getNetwork());
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                   tls_listener = tls_network->parseAddress(config.tcp_listen.c_str())
                                      .wait(io.waitScope)
                                      ->listen();
                 })) {
      fprintf(stderr, "keeld: cannot listen on --tcp-listen %s: %s\n", config.tcp_listen.c_str(),
              e->getDescription().cStr());
      return 2;
    }
  }

  EventHub events(store->get(), config.event_queue_limit, config.event_history);
  VmManager manager(io, config, **store, events, host);
  manager.Recover().wait(io.waitScope);

  unlink(config.socket_path.c_str());
  auto address = io.provider->getNetwork()
                     .parseAddress(kj::str("unix:", config.socket_path.c_str()))
                     .wait(io.waitScope);
  auto listener = address->listen();
  chmod(config.socket_path.c_str(), 0660);
  Acceptor acceptor(manager, events);
  kj::Vector<kj::Promise<void>> serving;
  serving.add(acceptor.Accept(*listener));
  if (tls_listener.get() != nullptr) {
    serving.add(acceptor.AcceptTls(*tls_listener));
    KEEL_LOG(INFO) << "serving TLS on " << config.tcp_listen;
  }

  KEEL_LOG(INFO) << "serving on " << config.socket_path << " (state " << config.state_dir
                 << ", images " << config.image_dir << ", keel-vmm " << config.vmm_path << ")";

  auto stop = io.unixEventPort.onSignal(SIGTERM)
                  .exclusiveJoin(io.unixEventPort.onSignal(SIGINT))
                  .then([](siginfo_t) {});
  kj::joinPromises(serving.releaseAsArray()).exclusiveJoin(kj::mv(stop)).wait(io.waitScope);
  KEEL_LOG(INFO) << "stopping; VMs keep running";
  (void)(*store)->CommitBatch();  // while the event loop that holds its waiters still exists
  unlink(config.socket_path.c_str());
  return 0;
}

}  // namespace
}  // namespace keel::agent

int main(int argc, char** argv) { return keel::agent::Main(argc, argv); }
