// Small helpers for error messages about JSON read from files: names and values from an
// untrusted file may hold control characters or be huge, and a message must stay one short line.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace shoal::io {

// Longest piece of file-supplied text put into a message.
inline constexpr size_t kMaxQuoted = 200;

// 'text' with control characters written as \xNN and the text cut at kMaxQuoted bytes.
inline std::string quoted(std::string_view text) {
  std::string out = "'";
  for (size_t i = 0; i < text.size(); ++i) {
    if (i == kMaxQuoted) {
      out += "...";
      break;
    }
    const auto ch = static_cast<unsigned char>(text[i]);
    if (ch < 0x20 || ch == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", ch);
      out += buf;
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out + "'";
}

// A JSON value as compact text (strings escaped by the dump itself), cut at kMaxQuoted bytes.
inline std::string bounded_dump(const nlohmann::json& j) {
  std::string s = j.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  if (s.size() > kMaxQuoted) s = s.substr(0, kMaxQuoted) + "...";
  return s;
}

// nlohmann's message without its "[json.exception.parse_error.101] " tag, kept short; it already
// says where ("parse error at line 3, column 7: ...") and escapes control characters.
inline std::string json_error_text(const nlohmann::json::exception& e) {
  std::string s = e.what();
  if (s.starts_with("[json.exception.")) {
    const size_t close = s.find("] ");
    if (close != std::string::npos) s.erase(0, close + 2);
  }
  for (char& ch : s) {
    if (ch == '\n' || ch == '\r') ch = ' ';
  }
  if (s.size() > 2 * kMaxQuoted) s = s.substr(0, 2 * kMaxQuoted) + "...";
  return s;
}

}  // namespace shoal::io
