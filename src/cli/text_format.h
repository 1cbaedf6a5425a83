// Small text helpers of the CLI's human-readable output (shoal inspect).
#pragma once

#include <string>
#include <string_view>

#include <fmt/core.h>

namespace shoal::cli {

// Names and strings come from the file: keep control characters off the terminal.
inline std::string printable(std::string_view s) {
  std::string out;
  for (char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    out += (u < 0x20 || u == 0x7f) ? fmt::format("\\x{:02x}", u) : std::string(1, ch);
  }
  return out;
}

// 1100048384 -> "1.10 B", 270498816 -> "270.5 M" (units[0] for plain counts, then x step).
inline std::string short_count(double n, const char* const (&units)[4], double step) {
  if (n >= step * step * step) return fmt::format("{:.2f} {}", n / (step * step * step), units[3]);
  if (n >= step * step) return fmt::format("{:.1f} {}", n / (step * step), units[2]);
  if (n >= step) return fmt::format("{:.1f} {}", n / step, units[1]);
  return units[0][0] == '\0' ? fmt::format("{:.0f}", n) : fmt::format("{:.0f} {}", n, units[0]);
}

inline constexpr const char* kCountUnits[4] = {"", "K", "M", "B"};
inline constexpr const char* kByteUnits[4] = {"B", "KB", "MB", "GB"};

}  // namespace shoal::cli
