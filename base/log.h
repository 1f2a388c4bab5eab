// Minimal logging: one line per message to stderr, written with a single write() so lines
// from different threads and processes do not interleave.
//
//   KEEL_LOG(INFO) << "vm " << name << " started";
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace keel {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Messages below `level` are dropped. Default: kInfo (kDebug if KEEL_DEBUG is set).
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();
// A short tag printed before every message, e.g. the program name.
void SetLogTag(const char* tag);

// What KEEL_LOG streams into: anything absl::StrCat takes, plus chars, std::string_view and
// absl::Status. Deliberately not a std::ostream: iostreams pull the C++ locale machinery into
// every binary, and keel-vmm's size is part of each VM's memory cost.
class LogStream {
 public:
  template <typename T>
  LogStream& operator<<(const T& value) {
    if constexpr (std::is_same_v<T, absl::Status>) {
      absl::StrAppend(&text_, value.ToString());
    } else if constexpr (std::is_same_v<T, std::string_view>) {
      text_.append(value.data(), value.size());
    } else if constexpr (std::is_same_v<T, char>) {
      text_.push_back(value);
    } else {
      absl::StrAppend(&text_, value);
    }
    return *this;
  }
  std::string& text() { return text_; }

 private:
  std::string text_;
};

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  LogStream& stream() { return stream_; }

 private:
  LogStream stream_;
};

// Turns the streamed expression into void so both ternary branches have one type.
struct LogVoidify {
  void operator&(LogStream&) {}
};

// The names KEEL_LOG takes: KEEL_LOG(DEBUG), KEEL_LOG(INFO), KEEL_LOG(WARNING), KEEL_LOG(ERROR).
namespace log_severity {
inline constexpr LogLevel DEBUG = LogLevel::kDebug;
inline constexpr LogLevel INFO = LogLevel::kInfo;
inline constexpr LogLevel WARNING = LogLevel::kWarning;
inline constexpr LogLevel ERROR = LogLevel::kError;
}  // namespace log_severity

}  // namespace keel

// The ternary form (rather than if/else) keeps `if (x) KEEL_LOG(INFO) << y;` unambiguous.
#define KEEL_LOG(level)                                                   \
  (::keel::log_severity::level < ::keel::MinLogLevel())                   \
      ? (void)0                                                           \
      : ::keel::LogVoidify() &                                            \
            ::keel::LogMessage(::keel::log_severity::level, __FILE__, __LINE__).stream()
