// density_client: the load client of bench/density. One connection to keeld, many calls in
// flight on it (Cap'n Proto pipelining), per-call latencies measured on the client.
//
//   density_client SOCKET create PREFIX N KERNEL MEMORY_MIB CMDLINE [WINDOW]
//       createVm PREFIX-0 .. PREFIX-(N-1) with at most WINDOW (default 64) calls in flight.
//   density_client SOCKET latency PREFIX N CALLS
//       CALLS sequential getVm (names drawn from PREFIX-0..N-1) then CALLS sequential listVms.
//   density_client SOCKET delete PREFIX N [WINDOW]
//       getVm + delete pipelined in one round trip per VM (the Vm capability is used before
//       getVm's answer arrives), at most WINDOW in flight.
//
// Prints one line of JSON with counts, wall time and latency percentiles (milliseconds).
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "capnp/rpc-twoparty.h"
#include "kj/async-io.h"
#include "rpc/keel.capnp.h"

namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

struct Stats {
  std::vector<double> latencies_ms;
  int ok = 0;
  int refused = 0;
  std::string first_error;
};

std::string Escaped(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
  }
  return out;
}

void PrintStats(const char* what, const Stats& s, double wall_s) {
  printf("{\"op\":\"%s\",\"ok\":%d,\"refused\":%d,\"wall_s\":%.4f,\"per_s\":%.1f,"
         "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"first_error\":\"%s\"}\n",
         what, s.ok, s.refused, wall_s, wall_s > 0 ? s.ok / wall_s : 0.0,
         Percentile(s.latencies_ms, 0.5), Percentile(s.latencies_ms, 0.99),
         Percentile(s.latencies_ms, 1.0), Escaped(s.first_error).c_str());
  fflush(stdout);
}

int Connect(const char* path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    fprintf(stderr, "density_client: cannot connect to %s: %s\n", path, strerror(errno));
    exit(3);
  }
  return fd;
}

// Makes `calls` calls one after another (`call` returns whether it succeeded) and prints their
// latencies as operation `what`.
template <typename Call>
void RunSequential(const char* what, int calls, Call call) {
  Stats s;
  const auto t0 = Clock::now();
  for (int c = 0; c < calls; ++c) {
    const auto start = Clock::now();
    const bool ok = call();
    s.latencies_ms.push_back(Ms(Clock::now() - start));
    (ok ? s.ok : s.refused)++;
  }
  PrintStats(what, s, std::chrono::duration<double>(Clock::now() - t0).count());
}

// Runs `issue(i)` for i in [0, n) with at most `window` promises outstanding.
template <typename Issue>
void RunWindowed(kj::WaitScope& ws, int n, int window, Issue issue) {
  int next = 0;
  kj::Vector<kj::Promise<void>> running;
  // A simple refill loop: each finished call starts the next one.
  struct Feeder {
    int n;
    int* next;
    Issue* issue;
    kj::Promise<void> Run() {
      if (*next >= n) return kj::READY_NOW;
      int i = (*next)++;
      return (*issue)(i).then([this]() { return Run(); });
    }
  };
  Feeder feeder{n, &next, &issue};
  for (int w = 0; w < window && w < n; ++w) running.add(feeder.Run());
  kj::joinPromises(running.releaseAsArray()).wait(ws);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: see the top of bench/density/density_client.cc\n");
    return 2;
  }
  const char* socket_path = argv[1];
  const std::string mode = argv[2];
  const std::string prefix = argv[3];
  const int n = atoi(argv[4]);

  auto io = kj::setupAsyncIo();
  auto stream = io.lowLevelProvider->wrapSocketFd(Connect(socket_path),
                                                   kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  capnp::TwoPartyClient client(*stream);
  auto agent = client.bootstrap().castAs<keel::rpc::HostAgent>();
  auto& ws = io.waitScope;
  auto name = [&](int i) { return prefix + "-" + std::to_string(i); };

  if (mode == "create" && argc >= 8) {
    const std::string kernel = argv[5];
    const uint64_t memory_mib = strtoull(argv[6], nullptr, 10);
    const std::string cmdline = argv[7];
    const int window = argc > 8 ? atoi(argv[8]) : 64;
    Stats s;
    const auto t0 = Clock::now();
    RunWindowed(ws, n, window, [&](int i) {
      auto req = agent.createVmRequest();
      req.setRequestId(name(i));
      auto spec = req.initSpec();
      spec.setName(name(i));
      spec.setKernelPath(kernel);
      spec.setMemoryMib(memory_mib);
      spec.setVcpus(1);
      spec.setCmdline(cmdline);
      const auto start = Clock::now();
      return req.send().then([&s, start](auto r) {
        s.latencies_ms.push_back(Ms(Clock::now() - start));
        if (r.getResult().isError()) {
          if (s.first_error.empty()) s.first_error = r.getResult().getError().getMessage().cStr();
          ++s.refused;
        } else {
          ++s.ok;
        }
      });
    });
    PrintStats("createVm", s, std::chrono::duration<double>(Clock::now() - t0).count());
    return s.refused == 0 ? 0 : 1;
  }

  if (mode == "latency" && argc >= 6) {
    const int calls = atoi(argv[5]);
    std::mt19937 rng(42);
    RunSequential("getVm", calls, [&] {
      auto req = agent.getVmRequest();
      req.setVm(name(static_cast<int>(rng() % static_cast<unsigned>(n))));
      return !req.send().wait(ws).getResult().isError();
    });
    size_t listed = 0;
    RunSequential("listVms", calls, [&] {
      auto req = agent.listVmsRequest();
      req.initFilter();
      listed = req.send().wait(ws).getVms().size();
      return true;
    });
    printf("{\"op\":\"listed\",\"vms\":%zu}\n", listed);
    return 0;
  }

  if (mode == "delete") {
    const int window = argc > 5 ? atoi(argv[5]) : 64;
    Stats s;
    const auto t0 = Clock::now();
    RunWindowed(ws, n, window, [&](int i) {
      auto get = agent.getVmRequest();
      get.setVm(name(i));
      auto got = get.send();
      // Pipelined: results.result (pointer 0) -> VmResult.vm (pointer 0, a union member) ->
      // VmHandle.vm (pointer 0). The generated code has no pipeline accessors for union
      // members, so the path is spelled out; a getVm error makes the delete fail.
      capnp::AnyPointer::Pipeline root(capnp::PipelineHook::from(
          kj::mv(static_cast<keel::rpc::HostAgent::GetVmResults::Pipeline&>(got))));
      keel::rpc::Vm::Client vm(
          root.getPointerField(0).getPointerField(0).getPointerField(0).asCap());
      auto del = vm.deleteRequest();
      del.setForce(true);
      const auto start = Clock::now();
      return del.send()
          .then([&s, start](auto r) {
            s.latencies_ms.push_back(Ms(Clock::now() - start));
            if (r.getResult().isError()) {
              if (s.first_error.empty()) s.first_error = r.getResult().getError().getMessage().cStr();
              ++s.refused;
            } else {
              ++s.ok;
            }
          })
          .catch_([&s](kj::Exception&& e) {
            if (s.first_error.empty()) s.first_error = e.getDescription().cStr();
            ++s.refused;
          })
          .attach(kj::mv(got));
    });
    PrintStats("delete", s, std::chrono::duration<double>(Clock::now() - t0).count());
    return 0;
  }

  fprintf(stderr, "density_client: bad arguments (see the top of density_client.cc)\n");
  return 2;
}
