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

}  // namespace keel

#define KEEL_LOG(level)                                                    \
  if (::keel::LogLevel::k##level < ::keel::MinLogLevel()) {               \
  } else                                                                   \
    ::keel::LogMessage(::keel::LogLevel::k##level, __FILE__, __LINE__).stream()
