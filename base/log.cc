#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace keel {

namespace {
std::atomic<int> g_min_level{-1};
std::atomic<const char*> g_tag{"keel"};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "?";
}
}  // namespace

void SetMinLogLevel(LogLevel level) { g_min_level.store(static_cast<int>(level)); }

LogLevel MinLogLevel() {
  int level = g_min_level.load(std::memory_order_relaxed);
  if (level < 0) {
    level = getenv("KEEL_DEBUG") != nullptr ? 0 : 1;
    g_min_level.store(level);
  }
  return static_cast<LogLevel>(level);
}

void SetLogTag(const char* tag) { g_tag.store(tag); }

LogMessage::LogMessage(LogLevel level, const char* file, int line) {
  stream_ << g_tag.load() << ": " << LevelName(level) << ": ";
  if (level == LogLevel::kDebug) {
    const char* base = strrchr(file, '/');
    stream_ << (base ? base + 1 : file) << ":" << line << ": ";
  }
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  const std::string& s = stream_.text();
  const char* p = s.data();
  size_t left = s.size();
  while (left > 0) {
    ssize_t n = write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace keel
