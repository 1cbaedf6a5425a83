// Progress and log output for long work. Human mode redraws one status line on stderr while it
// is a terminal (done/total, throughput, ETA); JSON mode writes one JSON object per line instead,
// for machines; quiet mode prints only warnings. Thread-safe. Implemented in src/core/progress.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace shoal {

enum class LogMode { kHuman, kQuiet, kJson };

class Progress {
 public:
  // `task` names the work ("merge") and `unit` its items ("tensors"); totals may be 0 when
  // unknown.
  Progress(std::string task, std::string unit, uint64_t total_items, uint64_t total_bytes,
           LogMode mode, std::FILE* out = stderr);

  // One item (e.g. a tensor of `bytes` output bytes) is done.
  void advance(std::string_view item, uint64_t bytes);
  // A warning: always shown (as a JSON line in JSON mode).
  void warn(std::string_view message);
  // A free-form event: a JSON line in JSON mode, ignored otherwise.
  void event(nlohmann::json fields);
  // Ends the status line and reports totals ("merge: 291 tensors, 2.1 GB in 3.2 s").
  void finish();

  double elapsed_seconds() const;

 private:
  void draw_locked(bool force);

  std::string task_;
  std::string unit_;
  uint64_t total_items_;
  uint64_t total_bytes_;
  LogMode mode_;
  std::FILE* out_;
  bool is_tty_;
  std::mutex mutex_;
  uint64_t done_items_ = 0;
  uint64_t done_bytes_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  bool line_open_ = false;
};

// "1.5 GB", "312.0 MB", "17 B"
std::string format_bytes(double bytes);

}  // namespace shoal
