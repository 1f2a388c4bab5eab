#include "agent/keelctl_format.h"

#include <cmath>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace keel::keelctl {
namespace {

void AppendJson(std::string& out, capnp::DynamicValue::Reader value);

void AppendStruct(std::string& out, capnp::DynamicStruct::Reader s) {
  out += '{';
  bool first = true;
  auto field_out = [&](capnp::StructSchema::Field field) {
    if (!first) out += ',';
    first = false;
    out += JsonString(std::string_view(field.getProto().getName().cStr()));
    out += ':';
    AppendJson(out, s.get(field));
  };
  for (capnp::StructSchema::Field field : s.getSchema().getNonUnionFields()) field_out(field);
  KJ_IF_MAYBE(member, s.which()) { field_out(*member); }
  out += '}';
}

void AppendJson(std::string& out, capnp::DynamicValue::Reader value) {
  switch (value.getType()) {
    case capnp::DynamicValue::VOID:
      out += "null";
      break;
    case capnp::DynamicValue::BOOL:
      out += value.as<bool>() ? "true" : "false";
      break;
    case capnp::DynamicValue::INT:
      absl::StrAppend(&out, value.as<int64_t>());
      break;
    case capnp::DynamicValue::UINT:
      absl::StrAppend(&out, value.as<uint64_t>());
      break;
    case capnp::DynamicValue::FLOAT: {
      const double d = value.as<double>();
      if (std::isfinite(d)) {
        absl::StrAppendFormat(&out, "%.17g", d);
      } else {
        out += "null";
      }
      break;
    }
    case capnp::DynamicValue::TEXT: {
      capnp::Text::Reader t = value.as<capnp::Text>();
      out += JsonString(std::string_view(t.cStr(), t.size()));
      break;
    }
    case capnp::DynamicValue::DATA: {
      capnp::Data::Reader d = value.as<capnp::Data>();
      out += JsonString(std::string_view(reinterpret_cast<const char*>(d.begin()), d.size()));
      break;
    }
    case capnp::DynamicValue::LIST: {
      out += '[';
      bool first = true;
      for (capnp::DynamicValue::Reader element : value.as<capnp::DynamicList>()) {
        if (!first) out += ',';
        first = false;
        AppendJson(out, element);
      }
      out += ']';
      break;
    }
    case capnp::DynamicValue::ENUM:
      out += JsonString(EnumName(value));
      break;
    case capnp::DynamicValue::STRUCT:
      AppendStruct(out, value.as<capnp::DynamicStruct>());
      break;
    default:  // capabilities, AnyPointer: not data
      out += "null";
      break;
  }
}

std::string Or(std::string s, const char* fallback = "-") { return s.empty() ? fallback : s; }

std::string Text(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

std::string Uptime(int64_t started_ns, int64_t now_ns) {
  if (started_ns <= 0 || now_ns < started_ns) return "-";
  return HumanDuration(static_cast<uint64_t>(now_ns - started_ns));
}

// "key:  value" lines with the values aligned.
class KeyValues {
 public:
  void Add(std::string key, std::string value) { rows_.emplace_back(std::move(key), std::move(value)); }
  std::string Render() const {
    size_t width = 0;
    for (const auto& [k, v] : rows_) width = std::max(width, k.size() + 1);
    std::string out;
    for (const auto& [k, v] : rows_) {
      absl::StrAppend(&out, k, ":", std::string(width - k.size() - 1 + 2, ' '), v, "\n");
    }
    return out;
  }

 private:
  std::vector<std::pair<std::string, std::string>> rows_;
};

std::string Labels(capnp::List<rpc::Label>::Reader labels) {
  std::vector<std::string> parts;
  for (rpc::Label::Reader l : labels) parts.push_back(absl::StrCat(Text(l.getKey()), "=", Text(l.getValue())));
  return Or(absl::StrJoin(parts, ","));
}

}  // namespace

Table::Table(std::vector<std::string> headers) { rows_.push_back(std::move(headers)); }

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(rows_[0].size());
  rows_.push_back(std::move(cells));
}

std::string Table::Render() const {
  std::vector<size_t> widths(rows_[0].size(), 0);
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

std::string JsonString(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        // Control characters and bytes outside ASCII (console output need not be UTF-8) are
        // escaped one byte per \u00XX, so the line is always valid JSON.
        if (c < 0x20 || c >= 0x7f) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

std::string ToJson(capnp::DynamicValue::Reader value) {
  std::string out;
  AppendJson(out, value);
  return out;
}

std::string EnumName(capnp::DynamicValue::Reader value) {
  capnp::DynamicEnum e = value.as<capnp::DynamicEnum>();
  KJ_IF_MAYBE(enumerant, e.getEnumerant()) { return enumerant->getProto().getName().cStr(); }
  return absl::StrCat(e.getRaw());
}

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int unit = 0;
  double v = static_cast<double>(bytes);
  while (v >= 1024 && unit < 6) {
    v /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " B");
  if (std::fabs(v - std::round(v)) < 0.05 || v >= 100) return absl::StrFormat("%.0f %s", v, kUnits[unit]);
  return absl::StrFormat("%.1f %s", v, kUnits[unit]);
}

std::string HumanDuration(uint64_t ns) {
  uint64_t s = ns / 1000000000;
  const uint64_t days = s / 86400;
  const uint64_t h = (s / 3600) % 24;
  const uint64_t m = (s / 60) % 60;
  s %= 60;
  if (days > 0) return absl::StrFormat("%dd%02dh%02dm", days, h, m);
  if (h > 0) return absl::StrFormat("%dh%02dm%02ds", h, m, s);
  if (m > 0) return absl::StrFormat("%dm%02ds", m, s);
  return absl::StrFormat("%ds", s);
}

std::string FormatTime(int64_t time_ns) {
  if (time_ns <= 0) return "-";
  const time_t secs = static_cast<time_t>(time_ns / 1000000000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  return absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                         static_cast<int>((time_ns / 1000000) % 1000));
}

std::string FormatVmList(capnp::List<rpc::VmInfo>::Reader vms, int64_t now_ns) {
  Table t({"NAME", "STATE", "VCPUS", "MEMORY", "PID", "UPTIME", "ID"});
  for (rpc::VmInfo::Reader vm : vms) {
    t.AddRow({Text(vm.getName()), EnumName(vm.getState()), absl::StrCat(vm.getSpec().getVcpus()),
              absl::StrCat(vm.getSpec().getMemoryMib(), " MiB"),
              vm.getPid() > 0 ? absl::StrCat(vm.getPid()) : "-",
              Uptime(vm.getStartedTimeNs(), now_ns), Text(vm.getId())});
  }
  return t.Render();
}

std::string FormatVm(rpc::VmInfo::Reader vm, int64_t now_ns) {
  rpc::VmSpec::Reader spec = vm.getSpec();
  KeyValues kv;
  kv.Add("name", Text(vm.getName()));
  kv.Add("id", Text(vm.getId()));
  std::string state = EnumName(vm.getState());
  if (vm.getDesiredState() != vm.getState()) {
    absl::StrAppend(&state, " (desired: ", EnumName(vm.getDesiredState()), ")");
  }
  kv.Add("state", state);
  kv.Add("pid", vm.getPid() > 0 ? absl::StrCat(vm.getPid()) : "-");
  kv.Add("vcpus", absl::StrCat(spec.getVcpus()));
  kv.Add("memory", absl::StrCat(spec.getMemoryMib(), " MiB"));
  kv.Add("kernel", Text(spec.getKernelPath()));
  if (spec.hasInitrdPath() && spec.getInitrdPath().size() > 0) kv.Add("initrd", Text(spec.getInitrdPath()));
  kv.Add("cmdline", Or(Text(spec.getCmdline())));
  kv.Add("labels", Labels(spec.getLabels()));
  kv.Add("created", FormatTime(vm.getCreatedTimeNs()));
  kv.Add("started", FormatTime(vm.getStartedTimeNs()));
  kv.Add("uptime", Uptime(vm.getStartedTimeNs(), now_ns));
  kv.Add("last exit", vm.getLastExitStatus() < 0 ? "-" : absl::StrCat(vm.getLastExitStatus()));
  if (vm.getLastError().size() > 0) kv.Add("last error", Text(vm.getLastError()));
  kv.Add("console", HumanBytes(vm.getConsoleBytes()));
  if (vm.getRequestId().size() > 0) kv.Add("request id", Text(vm.getRequestId()));
  std::string out = kv.Render();
  if (vm.getDisks().size() > 0) {
    Table t({"DISK", "PATH", "MODE", "SERIAL"});
    for (rpc::DiskInfo::Reader d : vm.getDisks()) {
      t.AddRow({Text(d.getName()), Text(d.getPath()), d.getReadOnly() ? "ro" : "rw", Or(Text(d.getSerial()))});
    }
    absl::StrAppend(&out, "\n", t.Render());
  }
  if (vm.getNics().size() > 0) {
    Table t({"NIC", "NETWORK", "MAC", "TAP", "MTU"});
    int i = 0;
    for (rpc::NicInfo::Reader n : vm.getNics()) {
      t.AddRow({absl::StrCat(i++), Text(n.getNetwork()), Text(n.getMac()), Or(Text(n.getTap())),
                absl::StrCat(n.getMtu())});
    }
    absl::StrAppend(&out, "\n", t.Render());
  }
  return out;
}

std::string FormatVmStats(rpc::VmStats::Reader s) {
  KeyValues kv;
  kv.Add("state", EnumName(s.getState()));
  kv.Add("uptime", HumanDuration(s.getUptimeNs()));
  kv.Add("cpu time", absl::StrFormat("%.3f s", static_cast<double>(s.getCpuTimeNs()) / 1e9));
  kv.Add("vmm rss", HumanBytes(s.getVmmRssBytes()));
  kv.Add("memory", absl::StrCat(s.getMemoryMib(), " MiB"));
  kv.Add("console", HumanBytes(s.getConsoleBytes()));
  kv.Add("vcpu exits", absl::StrCat(s.getVcpuExits()));
  std::string out = kv.Render();
  if (s.getDisks().size() > 0) {
    Table t({"DISK", "READS", "WRITES", "FLUSHES", "READ", "WRITTEN", "ERRORS"});
    for (rpc::DiskStats::Reader d : s.getDisks()) {
      t.AddRow({Text(d.getName()), absl::StrCat(d.getReadOps()), absl::StrCat(d.getWriteOps()),
                absl::StrCat(d.getFlushOps()), HumanBytes(d.getReadBytes()),
                HumanBytes(d.getWriteBytes()), absl::StrCat(d.getErrors())});
    }
    absl::StrAppend(&out, "\n", t.Render());
  }
  if (s.getNics().size() > 0) {
    Table t({"TAP", "RX PACKETS", "TX PACKETS", "RX", "TX", "DROPS"});
    for (rpc::NicStats::Reader n : s.getNics()) {
      t.AddRow({Text(n.getTap()), absl::StrCat(n.getRxPackets()), absl::StrCat(n.getTxPackets()),
                HumanBytes(n.getRxBytes()), HumanBytes(n.getTxBytes()), absl::StrCat(n.getDrops())});
    }
    absl::StrAppend(&out, "\n", t.Render());
  }
  return out;
}

std::string FormatHost(rpc::HostInfo::Reader h) {
  KeyValues kv;
  kv.Add("hostname", Text(h.getHostname()));
  kv.Add("keel", absl::StrCat(Text(h.getKeelVersion()), " (API ", h.getApiVersion(), ")"));
  kv.Add("cpu", absl::StrFormat("%s, %d CPUs (%d sockets x %d cores x %d threads)",
                                Text(h.getCpuModel()), h.getCpus(), h.getSockets(),
                                h.getCoresPerSocket(), h.getThreadsPerCore()));
  kv.Add("memory", absl::StrFormat("%d MiB, %d MiB available", h.getMemoryMib(),
                                   h.getMemoryAvailableMib()));
  kv.Add("hugepages", absl::StrFormat("2 MiB: %d/%d free, 1 GiB: %d/%d free",
                                      h.getHugepages2MibFree(), h.getHugepages2MibTotal(),
                                      h.getHugepages1GibFree(), h.getHugepages1GibTotal()));
  rpc::KvmInfo::Reader kvm = h.getKvm();
  std::vector<std::string> caps;
  for (capnp::Text::Reader c : kvm.getCapabilities()) caps.push_back(Text(c));
  kv.Add("kvm", absl::StrFormat("API %d, max %d vCPUs (recommended %d)", kvm.getApiVersion(),
                                kvm.getMaxVcpus(), kvm.getRecommendedVcpus()));
  kv.Add("kvm capabilities", Or(absl::StrJoin(caps, " ")));
  rpc::Capacity::Reader c = h.getCapacity();
  kv.Add("vcpus", absl::StrFormat("%d of %d allocated (overcommit %g)", c.getVcpusAllocated(),
                                  c.getVcpusTotal(), c.getCpuOvercommit()));
  kv.Add("vm memory", absl::StrFormat("%d of %d MiB allocated (overcommit %g, %d MiB reserved)",
                                      c.getMemoryMibAllocated(), c.getMemoryMibTotal(),
                                      c.getMemoryOvercommit(), c.getMemoryReserveMib()));
  kv.Add("volume space", absl::StrCat(HumanBytes(c.getDiskBytesAllocated()), " of ",
                                      HumanBytes(c.getDiskBytesTotal()), " allocated"));
  kv.Add("vms", absl::StrFormat("%d (%d running)", h.getVmCount(), h.getRunningVmCount()));
  kv.Add("keeld started", FormatTime(h.getBootTimeNs()));
  return kv.Render();
}

std::string FormatNetworks(capnp::List<rpc::NetworkInfo>::Reader networks) {
  Table t({"NAME", "BRIDGE", "MTU", "ADDRESS", "NICS"});
  for (rpc::NetworkInfo::Reader n : networks) {
    t.AddRow({Text(n.getName()), Text(n.getBridge()), absl::StrCat(n.getMtu()),
              Or(Text(n.getHostAddress())), absl::StrCat(n.getNicCount())});
  }
  return t.Render();
}

std::string FormatVolumes(capnp::List<rpc::VolumeInfo>::Reader volumes) {
  Table t({"NAME", "SIZE", "ALLOCATED", "STATE", "ATTACHED TO", "PATH"});
  for (rpc::VolumeInfo::Reader v : volumes) {
    std::vector<std::string> attached;
    for (capnp::Text::Reader a : v.getAttachedTo()) attached.push_back(Text(a));
    t.AddRow({Text(v.getName()), HumanBytes(v.getSizeBytes()), HumanBytes(v.getAllocatedBytes()),
              EnumName(v.getState()), Or(absl::StrJoin(attached, ",")), Text(v.getPath())});
  }
  return t.Render();
}

std::string FormatEvent(rpc::Event::Reader e) {
  std::string line = absl::StrFormat("%-6d %s  %-8s %-20s %-9s %s", e.getSeq(),
                                     FormatTime(e.getTimeNs()), EnumName(e.getType()),
                                     Text(e.getVmName()), EnumName(e.getState()),
                                     Text(e.getMessage()));
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line + "\n";
}

}  // namespace keel::keelctl
