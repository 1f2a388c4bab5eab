#include "agent/host_info.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace keel::agent {
namespace {

uint64_t ReadNumber(const std::string& path) {
  FILE* f = fopen(path.c_str(), "re");
  if (f == nullptr) return 0;
  unsigned long long v = 0;
  if (fscanf(f, "%llu", &v) != 1) v = 0;
  fclose(f);
  return v;
}

std::string ReadFile(const char* path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "key<TAB>: value" lines of /proc/cpuinfo and /proc/meminfo.
std::pair<std::string, std::string> SplitKeyValue(absl::string_view line) {
  size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return {};
  return {std::string(absl::StripAsciiWhitespace(line.substr(0, colon))),
          std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)))};
}

}  // namespace

HostInventory ReadHostInventory() {
  HostInventory h;
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0) h.hostname = host;
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  h.cpus = online > 0 ? static_cast<uint32_t>(online) : 1;

  std::set<std::string> sockets;
  uint32_t cores = 0, siblings = 0;
  for (absl::string_view line : absl::StrSplit(ReadFile("/proc/cpuinfo"), '\n')) {
    auto [key, value] = SplitKeyValue(line);
    if (key == "model name" && h.cpu_model.empty()) h.cpu_model = value;
    if (key == "physical id") sockets.insert(value);
    if (key == "cpu cores") (void)absl::SimpleAtoi(value, &cores);
    if (key == "siblings") (void)absl::SimpleAtoi(value, &siblings);
  }
  h.sockets = std::max<uint32_t>(1, static_cast<uint32_t>(sockets.size()));
  h.cores_per_socket = cores > 0 ? cores : std::max<uint32_t>(1, h.cpus / h.sockets);
  h.threads_per_core = (cores > 0 && siblings >= cores) ? siblings / cores : 1;

  for (absl::string_view line : absl::StrSplit(ReadFile("/proc/meminfo"), '\n')) {
    auto [key, value] = SplitKeyValue(line);
    uint64_t kib = 0;
    (void)absl::SimpleAtoi(absl::StripSuffix(value, " kB"), &kib);
    if (key == "MemTotal") h.memory_mib = kib / 1024;
    if (key == "MemAvailable") h.memory_available_mib = kib / 1024;
  }
  const std::string hp = "/sys/kernel/mm/hugepages/";
  h.hugepages_2m_total = ReadNumber(hp + "hugepages-2048kB/nr_hugepages");
  h.hugepages_2m_free = ReadNumber(hp + "hugepages-2048kB/free_hugepages");
  h.hugepages_1g_total = ReadNumber(hp + "hugepages-1048576kB/nr_hugepages");
  h.hugepages_1g_free = ReadNumber(hp + "hugepages-1048576kB/free_hugepages");
  return h;
}

void ReadKvm(HostInventory& h) {
  auto kvm = vmm::QueryKvmCapabilities();
  h.kvm_ok = kvm.ok();
  if (kvm.ok()) {
    h.kvm = *std::move(kvm);
  } else {
    h.kvm_error = std::string(kvm.status().message());
  }
}

uint32_t MaxVcpusPerVm(const HostInventory& h) {
  uint32_t kvm_limit = h.kvm_ok && h.kvm.max_vcpus > 0 ? h.kvm.max_vcpus : h.cpus;
  return std::min(h.cpus, kvm_limit);
}

uint64_t FreeDiskBytes(const std::string& dir) {
  struct statvfs st;
  if (statvfs(dir.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

}  // namespace keel::agent
