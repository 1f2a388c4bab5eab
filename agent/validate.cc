#include "agent/validate.h"

#include <sys/random.h>
#include <sys/stat.h>

#include <climits>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status.h"

namespace keel::agent {

absl::Status ValidateName(absl::string_view kind, absl::string_view name) {
  if (name.empty() || name.size() > 63) {
    return absl::InvalidArgumentError(absl::StrCat(
        kind, " name \"", name, "\" must be 1-63 characters of a-z, 0-9 and '-'"));
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          kind, " name \"", name, "\" may only contain a-z, 0-9 and '-'; rename it"));
    }
  }
  if (name[0] == '-') {
    return absl::InvalidArgumentError(
        absl::StrCat(kind, " name \"", name, "\" must start with a letter or digit"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ResolveImagePath(const std::string& allowed_dir,
                                             const std::string& path, absl::string_view what) {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " path is empty; give a file in ",
                                                   allowed_dir));
  }
  char dir_buf[PATH_MAX];
  if (realpath(allowed_dir.c_str(), dir_buf) == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the image directory ", allowed_dir, " does not exist; create it or pass --image-dir"));
  }
  std::string full = path[0] == '/' ? path : allowed_dir + "/" + path;
  char buf[PATH_MAX];
  if (realpath(full.c_str(), buf) == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(what, " ", path, " does not exist; put it in ", allowed_dir));
  }
  std::string resolved(buf);
  std::string dir(dir_buf);
  if (dir != "/" && (resolved.size() <= dir.size() || resolved.compare(0, dir.size(), dir) != 0 ||
                     resolved[dir.size()] != '/')) {
    return absl::PermissionDeniedError(absl::StrCat(
        what, " ", path, " is outside the allowed image directory ", dir, "; move it there"));
  }
  struct stat st;
  if (stat(buf, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, " is not a regular file or block device"));
  }
  return resolved;
}

absl::Status ValidateSizes(uint32_t vcpus, uint64_t memory_mib, uint32_t max_vcpus,
                           uint64_t host_memory_mib) {
  if (vcpus == 0) {
    return absl::InvalidArgumentError("vcpus is 0; a VM needs at least 1 vCPU");
  }
  if (vcpus > max_vcpus) {
    return absl::InvalidArgumentError(absl::StrCat("vcpus ", vcpus, " is above this host's limit of ",
                                                   max_vcpus, " (host CPUs and KVM); ask for fewer"));
  }
  if (memory_mib < kMinMemoryMib) {
    return absl::InvalidArgumentError(absl::StrCat("memory ", memory_mib,
                                                   " MiB is below the ", kMinMemoryMib,
                                                   " MiB minimum; ask for more"));
  }
  if (host_memory_mib != 0 && memory_mib > host_memory_mib) {
    return absl::InvalidArgumentError(absl::StrCat("memory ", memory_mib,
                                                   " MiB is more than the host has (",
                                                   host_memory_mib, " MiB); ask for less"));
  }
  return absl::OkStatus();
}

std::string TapName(const std::string& vm_id, uint32_t index) {
  std::string hex;
  for (char c : vm_id) {
    if (c != '-') hex.push_back(c);
    if (hex.size() == 10) break;
  }
  std::string name = absl::StrCat("kt", hex, "-", index);
  return name.size() <= 15 ? name : name.substr(0, 15);
}

std::string NewVmId() {
  uint8_t b[16] = {};
  size_t got = 0;
  while (got < sizeof(b)) {
    ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);
  return absl::StrFormat("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
                         b[12], b[13], b[14], b[15]);
}

}  // namespace keel::agent
