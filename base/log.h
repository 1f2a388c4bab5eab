// Minimal logging: one line per message to stderr, written with a single write() so lines
// from different threads and processes do not interleave.
//
//   KEEL_LOG(INFO) << "vm " << name << " started";
#pragma once

#include <sstream>

namespace keel {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Messages below `level` are dropped. Default: kInfo (kDebug if KEEL_DEBUG is set).
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();
// A short tag printed before every message, e.g. the program name.
void SetLogTag(const char* tag);

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

// Turns the streamed expression into void so both ternary branches have one type.
struct LogVoidify {
  void operator&(std::ostream&) {}
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
