#include "vmm/exit_file.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "base/fd.h"
#include "base/status.h"

namespace keel::vmm {

absl::Status WriteExitFile(const std::string& path, int status) {
  const std::string tmp = absl::StrCat(path, ".tmp");
  ScopedFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return ErrnoError(errno, "create ", tmp);
  const std::string text = absl::StrCat(status, "\n");
  if (write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    absl::Status s = ErrnoError(errno, "write ", tmp);
    unlink(tmp.c_str());
    return s;
  }
  fd.Reset();
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status s = ErrnoError(errno, "rename ", tmp, " to ", path);
    unlink(tmp.c_str());
    return s;
  }
  return absl::OkStatus();
}

}  // namespace keel::vmm
