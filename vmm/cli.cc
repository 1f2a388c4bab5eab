#include "vmm/cli.h"

#include <charconv>
#include <cstdio>
#include <functional>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "vmm/layout.h"

namespace keel::vmm {

namespace {

absl::StatusOr<uint64_t> ParseNumber(const std::string& flag, const std::string& value,
                                     uint64_t max) {
  uint64_t v = 0;
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, v);
  if (value.empty() || ec != std::errc() || ptr != end) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s needs a whole number, got \"%s\"", flag, value));
  }
  if (v > max) {
    return absl::InvalidArgumentError(absl::StrFormat("%s %u is above the maximum %u", flag, v, max));
  }
  return v;
}

}  // namespace

std::string Usage() {
  return R"(usage: keel-vmm --kernel PATH [options]

Runs one virtual machine on /dev/kvm until the guest exits.

  --kernel PATH          kernel image: a PVH ELF (vmlinux) or a bzImage, detected
  --initrd PATH          initial ramdisk
  --cmdline STR          kernel command line
  --memory-mib N         guest RAM in MiB (default 128, minimum 16)
  --vcpus N              number of vCPUs (default 1, up to the host's KVM limit)
  --serial-log PATH      append the guest console (COM1) to PATH instead of stdout
  --boot-timeout-s N     stop the VM with status 3 if it has not ended after N seconds
  --disk PATH[,ro][,cache=none|writeback][,id=SERIAL]
                         a virtio-blk disk backed by a raw image (repeatable); fd=N
                         instead of PATH uses an inherited open image
  --net tap=NAME|fd=N[,mac=MAC][,mtu=N]
                         a virtio-net NIC on an existing tap, or an inherited tap fd
                         (repeatable)
  --exit-file PATH        write the exit status (decimal) to PATH just before exiting,
                         atomically (a temporary file renamed)

Control mode (used by keeld; rpc/vmm.capnp):
  --control-fd N         serve VmmControl on the inherited connected unix socket N and
                         boot nothing until `launch` gives the configuration; the
                         machine flags above are then not used
  --control-socket PATH  also accept control connections here (mode 0600, removed on exit)
  --vm-id ID             the VM's id, for logs
  --help, --version

Exit status: the value the guest wrote to the debug-exit port 0xf4; 0 when the guest
powers off or resets; 2 with one error line for bad input; 3 when the VMM fails or the
guest cannot continue (the vCPU registers are printed); 128+N when stopped by signal N.
)";
}

uint64_t HostMemoryMib() {
  // Read with plain stdio: keel-vmm stays free of iostreams (see base/log.h).
  FILE* f = fopen("/proc/meminfo", "re");
  if (f == nullptr) return 0;
  char line[256];
  unsigned long long kib = 0;
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (sscanf(line, "MemTotal: %llu kB", &kib) == 1) break;
  }
  fclose(f);
  return kib / 1024;
}

absl::StatusOr<CliOptions> ParseCommandLine(const std::vector<std::string>& args) {
  CliOptions opts;
  MachineConfig& m = opts.machine;
  using Setter = std::function<absl::Status(const std::string&)>;
  auto number = [](uint64_t* out, const char* flag, uint64_t max) -> Setter {
    return [=](const std::string& v) -> absl::Status {
      auto n = ParseNumber(flag, v, max);
      if (!n.ok()) return n.status();
      *out = *n;
      return absl::OkStatus();
    };
  };
  auto text = [](std::string* out) -> Setter {
    return [=](const std::string& v) {
      *out = v;
      return absl::OkStatus();
    };
  };
  uint64_t vcpus = m.vcpus;
  uint64_t timeout = 0;
  uint64_t control_fd = UINT64_MAX;
  const std::map<std::string, Setter> flags = {
      {"--kernel", text(&m.kernel_path)},
      {"--initrd", text(&m.initrd_path)},
      {"--cmdline", text(&m.cmdline)},
      {"--memory-mib", number(&m.memory_mib, "--memory-mib", uint64_t{1} << 32)},
      {"--vcpus", number(&vcpus, "--vcpus", 65536)},
      {"--serial-log", text(&m.serial_log_path)},
      {"--boot-timeout-s", number(&timeout, "--boot-timeout-s", 86400 * 365)},
      {"--control-fd", number(&control_fd, "--control-fd", INT32_MAX)},
      {"--control-socket", text(&opts.control_socket)},
      {"--vm-id", text(&opts.vm_id)},
      {"--exit-file", text(&opts.exit_file)},
      {"--disk",
       [&m](const std::string& v) -> absl::Status {
         auto disk = ParseDiskSpec(v);
         if (!disk.ok()) return disk.status();
         m.disks.push_back(std::move(*disk));
         return absl::OkStatus();
       }},
      {"--net",
       [&m](const std::string& v) -> absl::Status {
         auto nic = ParseNetSpec(v);
         if (!nic.ok()) return nic.status();
         m.nets.push_back(std::move(*nic));
         return absl::OkStatus();
       }},
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      opts.help = true;
      continue;
    }
    if (arg == "--version") {
      opts.version = true;
      continue;
    }
    std::string name = arg;
    std::string value;
    bool has_value = false;
    if (size_t eq = arg.find('='); absl::StartsWith(arg, "--") && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    auto it = flags.find(name);
    if (it == flags.end()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("unknown argument \"%s\" (see --help)", arg));
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrFormat("%s needs a value", name));
      }
      value = args[++i];
    }
    if (absl::Status s = it->second(value); !s.ok()) return s;
  }
  if (opts.help || opts.version) return opts;
  if (control_fd != UINT64_MAX) {
    if (control_fd <= 2) {
      return absl::InvalidArgumentError("--control-fd must name an inherited socket above 2");
    }
    opts.control_fd = static_cast<int>(control_fd);
    return opts;
  }
  if (!opts.control_socket.empty()) {
    return absl::InvalidArgumentError("--control-socket needs --control-fd");
  }
  if (m.kernel_path.empty()) {
    return absl::InvalidArgumentError("--kernel PATH is required (a PVH ELF or a bzImage)");
  }
  if (m.memory_mib < layout::kMinRamBytes / layout::kMiB) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--memory-mib %u is below the %u MiB minimum", m.memory_mib,
        layout::kMinRamBytes / layout::kMiB));
  }
  if (vcpus == 0) return absl::InvalidArgumentError("--vcpus must be at least 1");
  m.vcpus = static_cast<uint32_t>(vcpus);
  m.boot_timeout_s = static_cast<uint32_t>(timeout);
  return opts;
}

}  // namespace keel::vmm
