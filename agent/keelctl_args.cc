#include "agent/keelctl_args.h"

#include <algorithm>
#include <limits>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace keel::keelctl {
namespace {

struct FlagDef {
  const char* name;
  bool takes_value;
};

// Every flag keelctl knows; which commands accept which is in kCommands.
constexpr FlagDef kFlags[] = {
    {"socket", true},     {"json", false},      {"help", false},       {"kernel", true},
    {"initrd", true},     {"cmdline", true},    {"memory-mib", true},  {"vcpus", true},
    {"disk", true},       {"nic", true},        {"label", true},       {"request-id", true},
    {"no-start", false},  {"state", true},      {"name-contains", true}, {"hard", false},
    {"timeout-s", true},  {"follow", false},    {"offset", true},      {"after-seq", true},
    {"bridge", true},     {"mtu", true},        {"address", true},     {"size", true},
    {"from", true},
};

struct CommandDef {
  const char* words;  // "vm create"
  Verb verb;
  bool needs_name;
  std::set<std::string> flags;  // besides --socket, --json, --help
};

const std::vector<CommandDef>& Commands() {
  static const auto* commands = new std::vector<CommandDef>{
      {"help", Verb::kHelp, false, {}},
      {"host", Verb::kHost, false, {}},
      {"vm create", Verb::kVmCreate, true,
       {"kernel", "initrd", "cmdline", "memory-mib", "vcpus", "disk", "nic", "label",
        "request-id", "no-start"}},
      {"vm list", Verb::kVmList, false, {"state", "name-contains", "label"}},
      {"vm show", Verb::kVmShow, true, {}},
      {"vm stats", Verb::kVmStats, true, {}},
      {"vm start", Verb::kVmStart, true, {}},
      {"vm stop", Verb::kVmStop, true, {"hard", "timeout-s"}},
      {"vm reboot", Verb::kVmReboot, true, {}},
      {"vm pause", Verb::kVmPause, true, {}},
      {"vm resume", Verb::kVmResume, true, {}},
      {"vm delete", Verb::kVmDelete, true, {}},
      {"vm console", Verb::kVmConsole, true, {"follow", "offset"}},
      {"net create", Verb::kNetCreate, true, {"bridge", "mtu", "address"}},
      {"net list", Verb::kNetList, false, {}},
      {"net delete", Verb::kNetDelete, true, {}},
      {"volume create", Verb::kVolumeCreate, true, {"size"}},
      {"volume import", Verb::kVolumeImport, true, {"from", "size"}},
      {"volume list", Verb::kVolumeList, false, {}},
      {"volume delete", Verb::kVolumeDelete, true, {}},
      {"events", Verb::kEvents, false, {"follow", "after-seq"}},
  };
  return *commands;
}

const FlagDef* FindFlag(absl::string_view name) {
  for (const FlagDef& f : kFlags) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(std::string(what));
}

template <typename T>
absl::StatusOr<T> ParseUnsigned(absl::string_view flag, absl::string_view text) {
  uint64_t v = 0;
  if (text.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(text[0])) ||
      !absl::SimpleAtoi(text, &v) || v > std::numeric_limits<T>::max()) {
    return Invalid(absl::StrCat(flag, ": '", text, "' is not a non-negative integer",
                                sizeof(T) < 8 ? " in range" : ""));
  }
  return static_cast<T>(v);
}

constexpr const char* kVmStates[] = {"stopped",  "starting", "running", "paused",
                                     "stopping", "crashed",  "deleted"};

}  // namespace

absl::StatusOr<uint64_t> ParseSize(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  size_t digits = 0;
  while (digits < t.size() && absl::ascii_isdigit(static_cast<unsigned char>(t[digits]))) {
    ++digits;
  }
  if (digits == 0) {
    return Invalid(absl::StrCat("size '", text, "' must start with a number (e.g. 1G, 512M)"));
  }
  uint64_t number = 0;
  if (!absl::SimpleAtoi(t.substr(0, digits), &number)) {
    return Invalid(absl::StrCat("size '", text, "' is too large"));
  }
  std::string suffix = absl::AsciiStrToUpper(t.substr(digits));
  if (absl::EndsWith(suffix, "IB")) {
    suffix.resize(suffix.size() - 2);
    if (suffix.empty()) return Invalid(absl::StrCat("size '", text, "' has a bad unit"));
  } else if (absl::EndsWith(suffix, "B")) {
    suffix.resize(suffix.size() - 1);
  }
  int shift = 0;
  if (suffix.empty()) {
    shift = 0;
  } else if (suffix == "K") {
    shift = 10;
  } else if (suffix == "M") {
    shift = 20;
  } else if (suffix == "G") {
    shift = 30;
  } else if (suffix == "T") {
    shift = 40;
  } else {
    return Invalid(absl::StrCat("size '", text, "' has an unknown unit (use K, M, G or T)"));
  }
  if (shift > 0 && number > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return Invalid(absl::StrCat("size '", text, "' is too large"));
  }
  return number << shift;
}

absl::StatusOr<DiskArg> ParseDiskArg(absl::string_view text) {
  DiskArg disk;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    const absl::string_view key = kv.first;
    const absl::string_view value = kv.second;
    const bool has_value = absl::StrContains(part, '=');
    if (key == "volume" && has_value && !value.empty()) {
      disk.volume = std::string(value);
    } else if (key == "path" && has_value && !value.empty()) {
      disk.image_path = std::string(value);
    } else if (key == "ro" && !has_value) {
      disk.read_only = true;
    } else if (key == "cache" && (value == "none" || value == "writeback")) {
      disk.cache_none = value == "none";
    } else if (key == "serial" && has_value) {
      disk.serial = std::string(value);
    } else {
      return Invalid(absl::StrCat("--disk: bad option '", part,
                                  "' (volume=NAME|path=PATH[,ro][,cache=none|writeback]"
                                  "[,serial=S])"));
    }
  }
  if (disk.volume.empty() == disk.image_path.empty()) {
    return Invalid(absl::StrCat("--disk '", text, "': give exactly one of volume=NAME and path=PATH"));
  }
  return disk;
}

absl::StatusOr<NicArg> ParseNicArg(absl::string_view text) {
  NicArg nic;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    if (kv.first == "network" && !kv.second.empty()) {
      nic.network = std::string(kv.second);
    } else if (kv.first == "mac" && !kv.second.empty()) {
      nic.mac = std::string(kv.second);
    } else if (kv.first == "mtu") {
      absl::StatusOr<uint32_t> mtu = ParseUnsigned<uint32_t>("--nic mtu", kv.second);
      if (!mtu.ok()) return mtu.status();
      nic.mtu = *mtu;
    } else {
      return Invalid(absl::StrCat("--nic: bad option '", part,
                                  "' (network=NAME[,mac=MAC][,mtu=N])"));
    }
  }
  if (nic.network.empty()) {
    return Invalid(absl::StrCat("--nic '", text, "': network=NAME is required"));
  }
  return nic;
}

absl::StatusOr<LabelArg> ParseLabelArg(absl::string_view text) {
  const size_t eq = text.find('=');
  if (eq == absl::string_view::npos || eq == 0) {
    return Invalid(absl::StrCat("--label '", text, "' must be KEY=VALUE"));
  }
  return LabelArg{std::string(text.substr(0, eq)), std::string(text.substr(eq + 1))};
}

absl::StatusOr<Command> ParseCommand(const std::vector<std::string>& args,
                                     const char* env_socket) {
  Command cmd;
  if (env_socket != nullptr && env_socket[0] != '\0') cmd.socket = env_socket;

  std::vector<std::string> words;
  std::vector<std::pair<std::string, std::string>> flags;  // in order
  bool help = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      words.insert(words.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (!absl::StartsWith(a, "--") && !(a == "-h")) {
      words.push_back(a);
      continue;
    }
    if (a == "-h") {
      help = true;
      continue;
    }
    std::string name = a.substr(2);
    std::string value;
    bool inline_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      inline_value = true;
    }
    const FlagDef* def = FindFlag(name);
    if (def == nullptr) return Invalid(absl::StrCat("unknown flag --", name));
    if (def->takes_value && !inline_value) {
      if (i + 1 >= args.size()) return Invalid(absl::StrCat("--", name, " needs a value"));
      value = args[++i];
    } else if (!def->takes_value && inline_value) {
      return Invalid(absl::StrCat("--", name, " takes no value"));
    }
    if (name == "help") {
      help = true;
    } else if (name == "json") {
      cmd.json = true;
    } else if (name == "socket") {
      if (value.empty()) return Invalid("--socket needs a path");
      cmd.socket = value;
    } else {
      flags.emplace_back(name, value);
    }
  }

  if (words.empty() || help) {
    cmd.verb = Verb::kHelp;
    return cmd;
  }

  // The longest command whose words prefix `words`.
  const CommandDef* def = nullptr;
  size_t used = 0;
  for (const CommandDef& c : Commands()) {
    std::vector<std::string> cw = absl::StrSplit(c.words, ' ');
    if (cw.size() <= words.size() && std::equal(cw.begin(), cw.end(), words.begin()) &&
        cw.size() > used) {
      def = &c;
      used = cw.size();
    }
  }
  if (def == nullptr) {
    if (words[0] == "vm" || words[0] == "net" || words[0] == "volume") {
      return Invalid(words.size() == 1
                         ? absl::StrCat("'", words[0], "' needs a subcommand (see keelctl help)")
                         : absl::StrCat("unknown command '", words[0], " ", words[1],
                                        "' (see keelctl help)"));
    }
    return Invalid(absl::StrCat("unknown command '", words[0], "' (see keelctl help)"));
  }
  cmd.verb = def->verb;
  std::vector<std::string> rest(words.begin() + used, words.end());
  if (def->needs_name) {
    if (rest.empty()) return Invalid(absl::StrCat(def->words, ": NAME is required"));
    cmd.name = rest[0];
    rest.erase(rest.begin());
  }
  if (!rest.empty()) {
    return Invalid(absl::StrCat(def->words, ": unexpected argument '", rest[0], "'"));
  }

  bool has_kernel = false;
  for (const auto& [name, value] : flags) {
    if (!def->flags.contains(name)) {
      return Invalid(absl::StrCat(def->words, " does not take --", name));
    }
    VmCreateArgs& c = cmd.create;
    if (name == "kernel") {
      c.kernel = value;
      has_kernel = !value.empty();
    } else if (name == "initrd") {
      c.initrd = value;
    } else if (name == "cmdline") {
      c.cmdline = value;
    } else if (name == "memory-mib") {
      absl::StatusOr<uint64_t> v = ParseUnsigned<uint64_t>("--memory-mib", value);
      if (!v.ok()) return v.status();
      c.memory_mib = *v;
    } else if (name == "vcpus") {
      absl::StatusOr<uint32_t> v = ParseUnsigned<uint32_t>("--vcpus", value);
      if (!v.ok()) return v.status();
      c.vcpus = *v;
    } else if (name == "disk") {
      absl::StatusOr<DiskArg> d = ParseDiskArg(value);
      if (!d.ok()) return d.status();
      c.disks.push_back(*std::move(d));
    } else if (name == "nic") {
      absl::StatusOr<NicArg> n = ParseNicArg(value);
      if (!n.ok()) return n.status();
      c.nics.push_back(*std::move(n));
    } else if (name == "label") {
      absl::StatusOr<LabelArg> l = ParseLabelArg(value);
      if (!l.ok()) return l.status();
      (cmd.verb == Verb::kVmList ? cmd.label_filter : c.labels).push_back(*std::move(l));
    } else if (name == "request-id") {
      c.request_id = value;
    } else if (name == "no-start") {
      c.no_start = true;
    } else if (name == "state") {
      for (absl::string_view s : absl::StrSplit(value, ',')) {
        if (std::find(std::begin(kVmStates), std::end(kVmStates), s) == std::end(kVmStates)) {
          return Invalid(absl::StrCat("--state: unknown state '", s, "' (one of ",
                                      absl::StrJoin(kVmStates, ", "), ")"));
        }
        cmd.states.emplace_back(s);
      }
    } else if (name == "name-contains") {
      cmd.name_contains = value;
    } else if (name == "hard") {
      cmd.hard = true;
    } else if (name == "timeout-s") {
      absl::StatusOr<uint32_t> v = ParseUnsigned<uint32_t>("--timeout-s", value);
      if (!v.ok()) return v.status();
      if (*v > std::numeric_limits<uint32_t>::max() / 1000) return Invalid("--timeout-s is too large");
      cmd.timeout_s = *v;
    } else if (name == "follow") {
      cmd.follow = true;
    } else if (name == "offset") {
      absl::StatusOr<uint64_t> v = ParseUnsigned<uint64_t>("--offset", value);
      if (!v.ok()) return v.status();
      cmd.offset = *v;
    } else if (name == "after-seq") {
      absl::StatusOr<uint64_t> v = ParseUnsigned<uint64_t>("--after-seq", value);
      if (!v.ok()) return v.status();
      cmd.after_seq = *v;
    } else if (name == "bridge") {
      cmd.bridge = value;
    } else if (name == "mtu") {
      absl::StatusOr<uint32_t> v = ParseUnsigned<uint32_t>("--mtu", value);
      if (!v.ok()) return v.status();
      cmd.mtu = *v;
    } else if (name == "address") {
      cmd.address = value;
    } else if (name == "size") {
      absl::StatusOr<uint64_t> v = ParseSize(value);
      if (!v.ok()) return absl::InvalidArgumentError(absl::StrCat("--size: ", v.status().message()));
      cmd.size_bytes = *v;
    } else if (name == "from") {
      cmd.from = value;
    }
  }

  if (cmd.verb == Verb::kVmCreate && !has_kernel) {
    return Invalid("vm create: --kernel PATH is required");
  }
  if (cmd.verb == Verb::kVolumeCreate && cmd.size_bytes == 0) {
    return Invalid("volume create: --size SIZE is required (e.g. --size 1G)");
  }
  if (cmd.verb == Verb::kVolumeImport && cmd.from.empty()) {
    return Invalid("volume import: --from PATH is required");
  }
  return cmd;
}

const char* UsageText() {
  return R"(usage: keelctl [--socket PATH] [--json] COMMAND

Talks to keeld on PATH (default: $KEEL_SOCKET, else /run/keel/keel.sock).
--json prints results as JSON with the field names of rpc/keel.capnp (events: one per line).

  host                                     the host, its capacity and KVM
  vm create NAME --kernel PATH [--initrd PATH] [--cmdline STR] [--memory-mib N] [--vcpus N]
            [--disk volume=NAME|path=PATH[,ro][,cache=none|writeback][,serial=S]]...
            [--nic network=NAME[,mac=MAC][,mtu=N]]... [--label KEY=VALUE]...
            [--request-id ID] [--no-start]
  vm list [--state S[,S...]] [--name-contains STR] [--label KEY=VALUE]...
  vm show|stats|start|reboot|pause|resume|delete NAME
  vm stop NAME [--hard] [--timeout-s N]    graceful (ACPI power button) unless --hard
  vm console NAME [--follow] [--offset N]
  net create NAME [--bridge BRIDGE] [--mtu N] [--address CIDR]
  net list | net delete NAME
  volume create NAME --size SIZE           SIZE like 1G, 512M, 4096
  volume import NAME --from PATH [--size SIZE]
  volume list | volume delete NAME
  events [--follow] [--after-seq N]        streams new events; --after-seq N alone prints
                                           those after N that keeld still holds and exits

Exit status: 0 done; 1 keeld refused the request (the reason on one line); 2 bad usage;
3 keeld could not be reached or failed.
)";
}

}  // namespace keel::keelctl
