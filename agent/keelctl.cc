// keelctl: the operator's CLI for keeld (see agent/keelctl_args.h for the command line).
//
// One connection to keeld's unix socket per invocation; every command is one or two calls on
// the HostAgent API (rpc/keel.capnp). Output goes to stdout (tables, or JSON with --json);
// any failure is one line on stderr, "keelctl: ...", and a non-zero exit status:
//   1  keeld refused the request with a typed Error (with --json the Error is also printed
//      on stdout as {"error":{"code":...,"message":...}})
//   2  bad usage
//   3  keeld could not be reached, or failed, or the connection was lost
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/keelctl_args.h"
#include "agent/keelctl_format.h"
#include "capnp/rpc-twoparty.h"
#include "kj/async-io.h"
#include "rpc/keel.capnp.h"

namespace keel::keelctl {
namespace {

// Thrown to end the program with `status` after printing `message` (and `json` on stdout).
struct Exit {
  Exit(int status, std::string message, std::string json = "")
      : status(status), message(std::move(message)), json(std::move(json)) {}
  int status;
  std::string message;
  std::string json;
};

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void Print(const std::string& s) {
  fwrite(s.data(), 1, s.size(), stdout);
}

void PrintLine(const std::string& s) {
  Print(s);
  Print("\n");
}

[[noreturn]] void Refused(rpc::Error::Reader error) {
  throw Exit{1, error.getMessage().cStr(), ToJsonOf(error)};
}

// Unwraps a result union `{ value; error :Error }`.
rpc::VmInfo::Reader InfoOrExit(rpc::StateResult::Reader r) {
  if (r.isError()) Refused(r.getError());
  return r.getInfo();
}

void PrintVm(const Command& cmd, rpc::VmInfo::Reader info) {
  if (cmd.json) {
    PrintLine(ToJsonOf(info));
  } else {
    Print(FormatVm(info, NowNs()));
  }
}

// Connects with a plain connect() first, so that a missing or dead socket gets a precise
// message rather than a late RPC exception.
kj::Own<kj::AsyncIoStream> Connect(kj::AsyncIoContext& io, const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    throw Exit{2, absl::StrCat("socket path ", path, " is too long (at most ",
                               sizeof(addr.sun_path) - 1, " bytes)")};
  }
  memcpy(addr.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Exit{3, absl::StrCat("socket(): ", strerror(errno))};
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    const int err = errno;
    close(fd);
    std::string why = strerror(err);
    if (err == ENOENT || err == ECONNREFUSED) {
      throw Exit{3, absl::StrCat("cannot connect to keeld at ", path, ": ", why,
                                 " (keeld is not running; start it, or point --socket or "
                                 "KEEL_SOCKET at its socket)")};
    }
    throw Exit{3, absl::StrCat("cannot connect to keeld at ", path, ": ", why)};
  }
  return io.lowLevelProvider->wrapSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
}

class ConsoleWriter final : public rpc::ConsoleSink::Server {
 public:
  ConsoleWriter(bool json, uint64_t offset, kj::Own<kj::PromiseFulfiller<std::string>> done)
      : json_(json), next_(offset), done_(kj::mv(done)) {}

 protected:
  kj::Promise<void> write(WriteContext context) override {
    auto p = context.getParams();
    capnp::Data::Reader data = p.getData();
    if (json_) {
      PrintLine(absl::StrCat("{\"offset\":", p.getOffset(), ",\"data\":",
                             JsonString(std::string_view(
                                 reinterpret_cast<const char*>(data.begin()), data.size())),
                             "}"));
    } else {
      if (p.getOffset() > next_) {
        fprintf(stderr, "keelctl: (%llu console bytes were dropped)\n",
                static_cast<unsigned long long>(p.getOffset() - next_));
      }
      fwrite(data.begin(), 1, data.size(), stdout);
    }
    fflush(stdout);
    next_ = p.getOffset() + data.size();
    return kj::READY_NOW;
  }

  kj::Promise<void> done(DoneContext context) override {
    done_->fulfill(context.getParams().getReason().cStr());
    return kj::READY_NOW;
  }

 private:
  bool json_;
  uint64_t next_;
  kj::Own<kj::PromiseFulfiller<std::string>> done_;
};

class EventPrinter final : public rpc::EventSink::Server {
 public:
  explicit EventPrinter(bool json) : json_(json) {}
  bool any() const { return any_; }

 protected:
  kj::Promise<void> push(PushContext context) override {
    rpc::Event::Reader e = context.getParams().getEvent();
    if (json_) {
      PrintLine(ToJsonOf(e));
    } else {
      if (!any_) Print("SEQ    TIME                      TYPE     VM                   STATE     MESSAGE\n");
      Print(FormatEvent(e));
    }
    any_ = true;
    fflush(stdout);
    return kj::READY_NOW;
  }

 private:
  bool json_;
  bool any_ = false;
};

class ProgressPrinter final : public rpc::ImportProgress::Server {
 public:
  explicit ProgressPrinter(std::string name) : name_(std::move(name)), tty_(isatty(2)) {}
  ~ProgressPrinter() {
    if (tty_ && drawn_) fputs("\n", stderr);
  }

 protected:
  kj::Promise<void> progress(ProgressContext context) override {
    const uint64_t done = context.getParams().getDoneBytes();
    const uint64_t total = context.getParams().getTotalBytes();
    const int percent = total == 0 ? 100 : static_cast<int>(done * 100 / total);
    if (tty_) {
      constexpr int kWidth = 30;
      const int filled = percent * kWidth / 100;
      fprintf(stderr, "\rimporting %s [%s%s] %3d%% %s / %s", name_.c_str(),
              std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(), percent,
              HumanBytes(done).c_str(), HumanBytes(total).c_str());
      drawn_ = true;
    } else if (percent / 10 > last_decile_) {
      last_decile_ = percent / 10;
      fprintf(stderr, "importing %s: %d%% (%s of %s)\n", name_.c_str(), percent,
              HumanBytes(done).c_str(), HumanBytes(total).c_str());
    }
    fflush(stderr);
    return kj::READY_NOW;
  }

 private:
  std::string name_;
  bool tty_;
  bool drawn_ = false;
  int last_decile_ = -1;
};

class Cli {
 public:
  Cli(const Command& cmd, kj::AsyncIoContext& io)
      : cmd_(cmd),
        io_(io),
        stream_(Connect(io, cmd.socket)),
        client_(*stream_),
        agent_(client_.bootstrap().castAs<rpc::HostAgent>()) {}

  void Run() {
    switch (cmd_.verb) {
      case Verb::kHelp:
        break;
      case Verb::kHost: {
        auto r = agent_.hostInfoRequest().send().wait(ws());
        if (cmd_.json) {
          PrintLine(ToJsonOf(r.getInfo()));
        } else {
          Print(FormatHost(r.getInfo()));
        }
        break;
      }
      case Verb::kVmCreate:
        CreateVm();
        break;
      case Verb::kVmList:
        ListVms();
        break;
      case Verb::kVmShow:
        PrintVm(cmd_, InfoOrExit(GetVm().infoRequest().send().wait(ws()).getResult()));
        break;
      case Verb::kVmStats: {
        auto r = GetVm().statsRequest().send().wait(ws());
        if (r.getResult().isError()) Refused(r.getResult().getError());
        if (cmd_.json) {
          PrintLine(ToJsonOf(r.getResult().getStats()));
        } else {
          Print(FormatVmStats(r.getResult().getStats()));
        }
        break;
      }
      case Verb::kVmStart:
        PrintVm(cmd_, InfoOrExit(GetVm().startRequest().send().wait(ws()).getResult()));
        break;
      case Verb::kVmStop: {
        auto req = GetVm().shutdownRequest();
        req.setMode(cmd_.hard ? rpc::ShutdownMode::HARD : rpc::ShutdownMode::GRACEFUL);
        req.setTimeoutMs(cmd_.timeout_s * 1000);
        PrintVm(cmd_, InfoOrExit(req.send().wait(ws()).getResult()));
        break;
      }
      case Verb::kVmReboot:
        PrintVm(cmd_, InfoOrExit(GetVm().rebootRequest().send().wait(ws()).getResult()));
        break;
      case Verb::kVmPause:
        PrintVm(cmd_, InfoOrExit(GetVm().pauseRequest().send().wait(ws()).getResult()));
        break;
      case Verb::kVmResume:
        PrintVm(cmd_, InfoOrExit(GetVm().resumeRequest().send().wait(ws()).getResult()));
        break;
      case Verb::kVmDelete: {
        auto req = GetVm().deleteRequest();
        req.setForce(true);
        auto response = req.send().wait(ws());  // owns what `info` reads
        auto info = InfoOrExit(response.getResult());
        if (cmd_.json) {
          PrintLine(ToJsonOf(info));
        } else {
          PrintLine(absl::StrCat("deleted VM ", info.getName().cStr(), " (", info.getId().cStr(), ")"));
        }
        break;
      }
      case Verb::kVmConsole:
        Console();
        break;
      case Verb::kNetCreate: {
        auto req = agent_.createNetworkRequest();
        auto spec = req.initSpec();
        spec.setName(cmd_.name);
        spec.setBridge(cmd_.bridge);
        spec.setMtu(cmd_.mtu);
        spec.setHostAddress(cmd_.address);
        auto response = req.send().wait(ws());  // owns what `r` reads
        auto r = response.getResult();
        if (r.isError()) Refused(r.getError());
        if (cmd_.json) {
          PrintLine(ToJsonOf(r.getNetwork()));
        } else {
          capnp::MallocMessageBuilder m;
          auto list = m.initRoot<rpc::HostAgent::ListNetworksResults>().initNetworks(1);
          list.setWithCaveats(0, r.getNetwork());
          Print(FormatNetworks(list.asReader()));
        }
        break;
      }
      case Verb::kNetList: {
        auto r = agent_.listNetworksRequest().send().wait(ws());
        if (cmd_.json) {
          PrintLine(ToJsonOf(r.getNetworks()));
        } else {
          Print(FormatNetworks(r.getNetworks()));
        }
        break;
      }
      case Verb::kNetDelete: {
        auto req = agent_.deleteNetworkRequest();
        req.setName(cmd_.name);
        Deleted("network", req.send().wait(ws()).getResult());
        break;
      }
      case Verb::kVolumeCreate: {
        auto req = agent_.createVolumeRequest();
        req.getSpec().setName(cmd_.name);
        req.getSpec().setSizeBytes(cmd_.size_bytes);
        PrintVolume(req.send().wait(ws()).getResult());
        break;
      }
      case Verb::kVolumeImport: {
        auto req = agent_.importVolumeRequest();
        req.getSpec().setName(cmd_.name);
        req.getSpec().setSizeBytes(cmd_.size_bytes);
        req.setSourcePath(cmd_.from);
        rpc::ImportProgress::Client progress = kj::heap<ProgressPrinter>(cmd_.name);
        req.setProgress(progress);
        auto r = req.send().wait(ws());
        progress = nullptr;  // ends the bar's line before the result is printed
        ws().poll();
        PrintVolume(r.getResult());
        break;
      }
      case Verb::kVolumeList: {
        auto r = agent_.listVolumesRequest().send().wait(ws());
        if (cmd_.json) {
          PrintLine(ToJsonOf(r.getVolumes()));
        } else {
          Print(FormatVolumes(r.getVolumes()));
        }
        break;
      }
      case Verb::kVolumeDelete: {
        auto req = agent_.deleteVolumeRequest();
        req.setName(cmd_.name);
        Deleted("volume", req.send().wait(ws()).getResult());
        break;
      }
      case Verb::kEvents:
        Events();
        break;
    }
  }

 private:
  kj::WaitScope& ws() { return io_.waitScope; }

  rpc::Vm::Client GetVm() {
    auto req = agent_.getVmRequest();
    req.setVm(cmd_.name);
    auto r = req.send().wait(ws());
    if (r.getResult().isError()) Refused(r.getResult().getError());
    return r.getResult().getVm().getVm();
  }

  void CreateVm() {
    const VmCreateArgs& a = cmd_.create;
    auto req = agent_.createVmRequest();
    req.setRequestId(a.request_id);
    auto spec = req.initSpec();
    spec.setName(cmd_.name);
    spec.setVcpus(a.vcpus);
    spec.setMemoryMib(a.memory_mib);
    spec.setKernelPath(a.kernel);
    spec.setInitrdPath(a.initrd);
    spec.setCmdline(a.cmdline);
    spec.setAutoStart(!a.no_start);
    auto disks = spec.initDisks(a.disks.size());
    for (size_t i = 0; i < a.disks.size(); ++i) {
      const DiskArg& d = a.disks[i];
      auto out = disks[i];
      if (!d.volume.empty()) {
        out.setVolume(d.volume);
      } else {
        out.setImagePath(d.image_path);
      }
      out.setReadOnly(d.read_only);
      out.setCache(d.cache_none ? rpc::CacheMode::NONE : rpc::CacheMode::WRITEBACK);
      out.setSerial(d.serial);
    }
    auto nics = spec.initNics(a.nics.size());
    for (size_t i = 0; i < a.nics.size(); ++i) {
      nics[i].setNetwork(a.nics[i].network);
      nics[i].setMac(a.nics[i].mac);
      nics[i].setMtu(a.nics[i].mtu);
    }
    auto labels = spec.initLabels(a.labels.size());
    for (size_t i = 0; i < a.labels.size(); ++i) {
      labels[i].setKey(a.labels[i].key);
      labels[i].setValue(a.labels[i].value);
    }
    auto response = req.send().wait(ws());  // owns what `r` reads
    auto r = response.getResult();
    if (r.isError()) Refused(r.getError());
    PrintVm(cmd_, r.getVm().getInfo());
  }

  void ListVms() {
    auto req = agent_.listVmsRequest();
    auto filter = req.initFilter();
    filter.setNameContains(cmd_.name_contains);
    auto states = filter.initStates(cmd_.states.size());
    for (size_t i = 0; i < cmd_.states.size(); ++i) {
      auto enumerants = capnp::Schema::from<rpc::VmState>().getEnumerants();
      for (auto e : enumerants) {
        if (cmd_.states[i] == e.getProto().getName().cStr()) {
          states.set(i, static_cast<rpc::VmState>(e.getOrdinal()));
        }
      }
    }
    auto labels = filter.initLabels(cmd_.label_filter.size());
    for (size_t i = 0; i < cmd_.label_filter.size(); ++i) {
      labels[i].setKey(cmd_.label_filter[i].key);
      labels[i].setValue(cmd_.label_filter[i].value);
    }
    auto r = req.send().wait(ws());
    if (cmd_.json) {
      PrintLine(ToJsonOf(r.getVms()));
    } else {
      Print(FormatVmList(r.getVms(), NowNs()));
    }
  }

  void Console() {
    rpc::Vm::Client vm = GetVm();
    if (!cmd_.follow) {
      uint64_t offset = cmd_.offset;
      std::string all;
      uint64_t first_start = offset;
      bool first = true;
      for (;;) {
        auto req = vm.consoleRequest();
        req.setOffset(offset);
        req.setMaxBytes(1 << 20);
        auto r = req.send().wait(ws());
        capnp::Data::Reader data = r.getData();
        if (first) first_start = r.getStartOffset();
        if (!cmd_.json && r.getStartOffset() > offset) {
          fprintf(stderr, "keelctl: (console bytes %llu-%llu are no longer kept)\n",
                  static_cast<unsigned long long>(offset),
                  static_cast<unsigned long long>(r.getStartOffset()));
        }
        first = false;
        if (cmd_.json) {
          all.append(reinterpret_cast<const char*>(data.begin()), data.size());
        } else {
          fwrite(data.begin(), 1, data.size(), stdout);
        }
        if (data.size() == 0 || r.getNextOffset() <= offset) {
          offset = std::max(offset, r.getNextOffset());
          break;
        }
        offset = r.getNextOffset();
      }
      if (cmd_.json) {
        PrintLine(absl::StrCat("{\"data\":", JsonString(all), ",\"startOffset\":", first_start,
                               ",\"nextOffset\":", offset, "}"));
      }
      return;
    }
    auto paf = kj::newPromiseAndFulfiller<std::string>();
    auto req = vm.followConsoleRequest();
    req.setOffset(cmd_.offset);
    req.setSink(kj::heap<ConsoleWriter>(cmd_.json, cmd_.offset, kj::mv(paf.fulfiller)));
    auto handle = req.send().wait(ws()).getHandle();
    bool disconnected = false;
    auto ended = paf.promise.exclusiveJoin(
        client_.onDisconnect().then([&disconnected]() -> std::string {
          disconnected = true;
          return "";
        }));
    std::string reason = ended.wait(ws());
    if (disconnected) throw Exit{3, "keeld closed the connection"};
    fflush(stdout);
    if (!cmd_.json && !reason.empty()) fprintf(stderr, "keelctl: console ended: %s\n", reason.c_str());
  }

  void Events() {
    auto printer = kj::heap<EventPrinter>(cmd_.json);
    EventPrinter& p = *printer;
    auto req = agent_.watchRequest();
    req.setSink(kj::mv(printer));
    req.setAfterSeq(cmd_.after_seq);
    auto handle = req.send().wait(ws()).getHandle();
    if (cmd_.follow || cmd_.after_seq == 0) {
      client_.onDisconnect().wait(ws());
      throw Exit{3, "keeld closed the connection"};
    }
    // --after-seq N without --follow: what the agent still holds after N, then stop once
    // nothing has arrived for a moment (the API has no end-of-replay marker).
    ws().poll();
    for (int quiet = 0; quiet < 3;) {
      const bool before = p.any();
      io_.provider->getTimer().afterDelay(100 * kj::MILLISECONDS).wait(ws());
      quiet = (p.any() == before) ? quiet + 1 : 0;
    }
    (void)p;
  }

  void Deleted(const char* what, rpc::DeleteResult::Reader r) {
    if (r.isError()) Refused(r.getError());
    if (cmd_.json) {
      PrintLine("{\"ok\":true}");
    } else {
      PrintLine(absl::StrCat("deleted ", what, " ", cmd_.name));
    }
  }

  void PrintVolume(rpc::VolumeResult::Reader r) {
    if (r.isError()) Refused(r.getError());
    if (cmd_.json) {
      PrintLine(ToJsonOf(r.getVolume()));
    } else {
      capnp::MallocMessageBuilder m;
      auto list = m.initRoot<rpc::HostAgent::ListVolumesResults>().initVolumes(1);
      list.setWithCaveats(0, r.getVolume());
      Print(FormatVolumes(list.asReader()));
    }
  }

  const Command& cmd_;
  kj::AsyncIoContext& io_;
  kj::Own<kj::AsyncIoStream> stream_;
  capnp::TwoPartyClient client_;
  rpc::HostAgent::Client agent_;
};

std::string DescribeException(const kj::Exception& e) {
  std::string d = e.getDescription().cStr();
  for (const char* prefix : {"remote exception: ", "failed: "}) {
    if (absl::StartsWith(d, prefix)) d = d.substr(strlen(prefix));
  }
  if (size_t nl = d.find('\n'); nl != std::string::npos) d.resize(nl);
  return d;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<Command> cmd = ParseCommand(args, getenv("KEEL_SOCKET"));
  if (!cmd.ok()) {
    fprintf(stderr, "keelctl: %s\n", std::string(cmd.status().message()).c_str());
    return 2;
  }
  if (cmd->verb == Verb::kHelp) {
    fputs(UsageText(), stdout);
    return 0;
  }
  int status = 0;
  try {
    auto io = kj::setupAsyncIo();
    Cli cli(*cmd, io);
    cli.Run();
  } catch (const Exit& e) {
    if (cmd->json && !e.json.empty()) PrintLine(absl::StrCat("{\"error\":", e.json, "}"));
    fprintf(stderr, "keelctl: %s\n", e.message.c_str());
    status = e.status;
  } catch (const kj::Exception& e) {
    if (e.getType() == kj::Exception::Type::DISCONNECTED) {
      fprintf(stderr, "keelctl: lost the connection to keeld at %s: %s\n", cmd->socket.c_str(),
              DescribeException(e).c_str());
    } else {
      fprintf(stderr, "keelctl: keeld failed: %s\n", DescribeException(e).c_str());
    }
    status = 3;
  }
  fflush(stdout);
  return status;
}

}  // namespace
}  // namespace keel::keelctl

int main(int argc, char** argv) { return keel::keelctl::Main(argc, argv); }
