// keelctl's command line: parsed into plain structs (no RPC types), so parsing is tested
// without a keeld. keelctl.cc turns a Command into calls on the HostAgent API.
//
//   keelctl [--socket PATH] [--json] COMMAND ...
//
// Flags may come before or after the command words, as `--flag VALUE` or `--flag=VALUE`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace keel::keelctl {

inline constexpr char kDefaultSocket[] = "/run/keel/keel.sock";

enum class Verb {
  kHelp,
  kHost,
  kVmCreate,
  kVmList,
  kVmShow,
  kVmStats,
  kVmStart,
  kVmStop,
  kVmReboot,
  kVmPause,
  kVmResume,
  kVmDelete,
  kVmConsole,
  kNetCreate,
  kNetList,
  kNetDelete,
  kVolumeCreate,
  kVolumeImport,
  kVolumeList,
  kVolumeDelete,
  kEvents,
};

// --disk volume=NAME|path=PATH[,ro][,cache=none|writeback][,serial=S]
struct DiskArg {
  std::string volume;      // exactly one of volume and image_path is set
  std::string image_path;
  bool read_only = false;
  bool cache_none = false;
  std::string serial;
};

// --nic network=NAME[,mac=MAC][,mtu=N]
struct NicArg {
  std::string network;
  std::string mac;
  uint32_t mtu = 0;
};

struct LabelArg {
  std::string key;
  std::string value;
};

struct VmCreateArgs {
  std::string kernel;
  std::string initrd;
  std::string cmdline;
  uint64_t memory_mib = 128;
  uint32_t vcpus = 1;
  std::vector<DiskArg> disks;
  std::vector<NicArg> nics;
  std::vector<LabelArg> labels;
  std::string request_id;
  bool no_start = false;
};

struct Command {
  Verb verb = Verb::kHelp;
  std::string socket = kDefaultSocket;  // --socket, else $KEEL_SOCKET, else the default
  bool json = false;
  std::string name;  // the VM / network / volume the command is about

  VmCreateArgs create;
  // vm list
  std::vector<std::string> states;  // VmState names as in keel.capnp ("running", ...)
  std::string name_contains;
  std::vector<LabelArg> label_filter;
  // vm stop
  bool hard = false;
  uint32_t timeout_s = 30;
  // vm console / events
  bool follow = false;
  uint64_t offset = 0;
  uint64_t after_seq = 0;
  // net create
  std::string bridge;
  uint32_t mtu = 0;
  std::string address;
  // volume create / import
  uint64_t size_bytes = 0;
  std::string from;
};

// Parses argv[1..] (without the program name). `env_socket` is $KEEL_SOCKET (nullptr: unset).
// Errors are one line saying what to fix ("vm create: --kernel is required").
absl::StatusOr<Command> ParseCommand(const std::vector<std::string>& args,
                                     const char* env_socket);

// "1G", "512M", "64K", "4096", "2GiB", "1T" (binary multiples; a trailing B/iB is allowed).
absl::StatusOr<uint64_t> ParseSize(absl::string_view text);

absl::StatusOr<DiskArg> ParseDiskArg(absl::string_view text);
absl::StatusOr<NicArg> ParseNicArg(absl::string_view text);
absl::StatusOr<LabelArg> ParseLabelArg(absl::string_view text);

// The usage text printed by `keelctl help` and after a usage error.
const char* UsageText();

}  // namespace keel::keelctl
