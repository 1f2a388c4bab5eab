// keelctl's output: aligned tables and key/value blocks for people, JSON for scripts.
//
// JSON is generated from the Cap'n Proto reflection of the result, so its keys are exactly
// the field names of rpc/keel.capnp (camelCase), enums are their enumerant names, unions show
// only the member that is set, integers (64-bit included) are JSON numbers, Data is a string.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "capnp/dynamic.h"
#include "rpc/keel.capnp.h"

namespace keel::keelctl {

// Columns separated by two spaces, each as wide as its widest cell; the last column is not
// padded. Cells are single-line strings.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void AddRow(std::vector<std::string> cells);
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;  // rows_[0]: the headers
};

// One compact line of JSON (no trailing newline).
std::string ToJson(capnp::DynamicValue::Reader value);
template <typename Reader>
std::string ToJsonOf(Reader reader) {
  return ToJson(capnp::DynamicValue::Reader(capnp::toDynamic(reader)));
}
std::string JsonString(std::string_view text);  // a quoted, escaped JSON string

// 1536 → "1.5 KiB", 16 MiB → "16 MiB", 0 → "0 B".
std::string HumanBytes(uint64_t bytes);
// 3723 s → "1h02m03s", 5.2 s → "5s", 90 ms → "0s".
std::string HumanDuration(uint64_t ns);
// ns since the Unix epoch → "2026-11-23T19:40:01.123Z" ("-" for 0).
std::string FormatTime(int64_t time_ns);

std::string EnumName(capnp::DynamicValue::Reader value);
template <typename E>
std::string EnumName(E e) {
  return EnumName(capnp::DynamicValue::Reader(capnp::DynamicEnum(capnp::toDynamic(e))));
}

// The human-readable forms, each ending in a newline. `now_ns` is for uptimes.
std::string FormatVmList(capnp::List<rpc::VmInfo>::Reader vms, int64_t now_ns);
std::string FormatVm(rpc::VmInfo::Reader vm, int64_t now_ns);
std::string FormatVmStats(rpc::VmStats::Reader stats);
std::string FormatHost(rpc::HostInfo::Reader host);
std::string FormatNetworks(capnp::List<rpc::NetworkInfo>::Reader networks);
std::string FormatVolumes(capnp::List<rpc::VolumeInfo>::Reader volumes);
// One event as one line: "SEQ  TIME  TYPE  VM  STATE  MESSAGE" with fixed-width columns.
std::string FormatEvent(rpc::Event::Reader event);

}  // namespace keel::keelctl
