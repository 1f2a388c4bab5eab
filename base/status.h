// Status helpers for Keel.
//
// Debian's abseil ships absl::Status / absl::StatusOr but no status macros, so Keel defines
// its own. Library code returns [[nodiscard]] absl::Status / absl::StatusOr<T>; messages say
// what was wrong and what to do about it.
//
// Example:
//
//   absl::StatusOr<ScopedFd> OpenImage(const std::string& path) {
//     int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
//     if (fd < 0) return ErrnoError(errno, "open disk image ", path);
//     return ScopedFd(fd);
//   }
//
//   absl::Status Attach(const std::string& path) {
//     KEEL_ASSIGN_OR_RETURN(ScopedFd fd, OpenImage(path));
//     KEEL_RETURN_IF_ERROR(Register(std::move(fd)));
//     return absl::OkStatus();
//   }
#pragma once

#include <cerrno>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace keel {

// Maps an errno value to the closest absl::StatusCode.
absl::StatusCode ErrnoToStatusCode(int err);

// strerror_r wrapper that is thread-safe and never fails.
std::string ErrnoDescription(int err);

// Returns a status whose message is the concatenation of `what...` followed by ": " and
// strerror(err). The code follows the errno (ENOENT -> NotFound, EACCES -> PermissionDenied...).
template <typename... Args>
absl::Status ErrnoError(int err, const Args&... what) {
  return absl::Status(ErrnoToStatusCode(err),
                      absl::StrCat(what..., ": ", ErrnoDescription(err)));
}

// Prepends `context` to the message of a non-OK status, keeping its code.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace keel

#define KEEL_STATUS_CONCAT_INNER_(a, b) a##b
#define KEEL_STATUS_CONCAT_(a, b) KEEL_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function if not OK.
#define KEEL_RETURN_IF_ERROR(expr)                          \
  do {                                                      \
    ::absl::Status keel_status_ = (expr);                   \
    if (!keel_status_.ok()) return keel_status_;            \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status from the enclosing
// function, otherwise moves the value into `lhs` (which may be a declaration).
#define KEEL_ASSIGN_OR_RETURN(lhs, rexpr) \
  KEEL_ASSIGN_OR_RETURN_IMPL_(KEEL_STATUS_CONCAT_(keel_statusor_, __LINE__), lhs, rexpr)

#define KEEL_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
