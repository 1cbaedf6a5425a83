#include "shoal/progress.h"

#include <unistd.h>

#include <cmath>

namespace shoal {

std::string format_bytes(double bytes) {
  static const char* kUnits[] = {"B", "KB", "MB", "GB", "TB"};
  int unit = 0;
  while (bytes >= 1000.0 && unit < 4) {
    bytes /= 1000.0;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, kUnits[unit]);
  return buf;
}

Progress::Progress(std::string task, std::string unit, uint64_t total_items, uint64_t total_bytes,
                   LogMode mode, std::FILE* out)
    : task_(std::move(task)),
      unit_(std::move(unit)),
      total_items_(total_items),
      total_bytes_(total_bytes),
      mode_(mode),
      out_(out),
      is_tty_(isatty(fileno(out)) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {
  if (mode_ == LogMode::kJson) {
    event({{"event", "start"}, {"items", total_items_}, {"bytes", total_bytes_}});
  }
}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::advance(std::string_view item, uint64_t bytes) {
  std::lock_guard lock(mutex_);
  ++done_items_;
  done_bytes_ += bytes;
  if (mode_ == LogMode::kJson) {
    nlohmann::json j{
        {"event", "progress"},           {"task", task_},         {"item", item},
        {"done", done_items_},           {"total", total_items_}, {"bytes_done", done_bytes_},
        {"elapsed_s", elapsed_seconds()}};
    std::fprintf(out_, "%s\n", j.dump().c_str());
    std::fflush(out_);
  } else if (mode_ == LogMode::kHuman) {
    draw_locked(false);
  }
}

void Progress::draw_locked(bool force) {
  if (!is_tty_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const double secs = elapsed_seconds();
  const double rate = secs > 0 ? done_bytes_ / secs : 0.0;
  std::string eta = "?";
  if (rate > 0 && total_bytes_ >= done_bytes_) {
    eta = std::to_string(static_cast<long long>(std::ceil((total_bytes_ - done_bytes_) / rate))) +
          " s";
  }
  std::fprintf(out_, "\r\033[K%s: %llu/%llu %s, %s/s, ETA %s", task_.c_str(),
               static_cast<unsigned long long>(done_items_),
               static_cast<unsigned long long>(total_items_), unit_.c_str(),
               format_bytes(rate).c_str(), eta.c_str());
  std::fflush(out_);
  line_open_ = true;
}

void Progress::warn(std::string_view message) {
  std::lock_guard lock(mutex_);
  if (mode_ == LogMode::kJson) {
    nlohmann::json j{{"event", "warning"}, {"task", task_}, {"message", message}};
    std::fprintf(out_, "%s\n", j.dump().c_str());
  } else {
    if (line_open_) std::fputs("\r\033[K", out_);
    std::fprintf(out_, "warning: %.*s\n", static_cast<int>(message.size()), message.data());
    line_open_ = false;
  }
  std::fflush(out_);
}

void Progress::event(nlohmann::json fields) {
  if (mode_ != LogMode::kJson) return;
  std::lock_guard lock(mutex_);
  if (!fields.contains("task")) fields["task"] = task_;
  std::fprintf(out_, "%s\n", fields.dump().c_str());
  std::fflush(out_);
}

void Progress::finish() {
  std::lock_guard lock(mutex_);
  const double secs = elapsed_seconds();
  if (mode_ == LogMode::kJson) {
    nlohmann::json j{{"event", "done"},
                     {"task", task_},
                     {"items", done_items_},
                     {"bytes", done_bytes_},
                     {"elapsed_s", secs}};
    std::fprintf(out_, "%s\n", j.dump().c_str());
  } else if (mode_ == LogMode::kHuman) {
    if (line_open_) std::fputs("\r\033[K", out_);
    std::fprintf(out_, "%s: %llu %s, %s in %.2f s\n", task_.c_str(),
                 static_cast<unsigned long long>(done_items_), unit_.c_str(),
                 format_bytes(static_cast<double>(done_bytes_)).c_str(), secs);
  }
  line_open_ = false;
  std::fflush(out_);
}

}  // namespace shoal
