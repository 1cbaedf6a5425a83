// Answer extraction and normalisation for exact match. Numbers are scanned by hand rather than
// with a regex: the rules (sign only when not glued to a word, commas only between digits) read
// more plainly as code, and a hand scan cannot blow the stack on a long output as std::regex can.
#include <algorithm>
#include <cctype>
#include <regex>

#include "io/json_util.h"
#include "shoal/error.h"
#include "shoal/eval.h"

namespace shoal {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alnum(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0;
}

std::regex compile(const std::string& pattern) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw ConfigError("invalid regex " + io::quoted(pattern) + " (" + e.what() + ")");
  }
}

// "+018.50" -> "18.5"; nullopt when `s` is not exactly one number.
std::optional<std::string> canonical_number(std::string_view s) {
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) negative = s[i++] == '-';
  std::string int_part, frac_part;
  while (i < s.size() && (is_digit(s[i]) || s[i] == ',')) {
    if (s[i] == ',') {
      // A comma only between two digits.
      if (int_part.empty() || i + 1 >= s.size() || !is_digit(s[i + 1])) return std::nullopt;
    } else {
      int_part += s[i];
    }
    ++i;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_digit(s[i])) frac_part += s[i++];
  }
  if (i != s.size() || (int_part.empty() && frac_part.empty())) return std::nullopt;
  int_part.erase(0, std::min(int_part.find_first_not_of('0'), int_part.size()));
  if (int_part.empty()) int_part = "0";
  frac_part.erase(std::min(frac_part.find_last_not_of('0') + 1, frac_part.size()));
  if (frac_part.empty() && int_part == "0") negative = false;  // "-0.0" is 0
  std::string out = negative ? "-" : "";
  out += int_part;
  if (!frac_part.empty()) out += "." + frac_part;
  return out;
}

}  // namespace

std::optional<std::string> last_number(std::string_view text) {
  std::optional<std::string> last;
  size_t i = 0;
  while (i < text.size()) {
    if (!is_digit(text[i])) {
      ++i;
      continue;
    }
    size_t start = i;
    // '-' is a sign unless it joins two words or numbers ("3-5", "x-2").
    if (i > 0 && text[i - 1] == '-' && (i == 1 || !is_alnum(text[i - 2]))) start = i - 1;
    while (i < text.size() && (is_digit(text[i]) ||
                               (text[i] == ',' && i + 1 < text.size() && is_digit(text[i + 1])))) {
      ++i;
    }
    if (i + 1 < text.size() && text[i] == '.' && is_digit(text[i + 1])) {
      ++i;
      while (i < text.size() && is_digit(text[i])) ++i;
    }
    last = std::string(text.substr(start, i - start));
  }
  return last;
}

std::optional<std::string> extract_answer(const Extraction& how, std::string_view text) {
  switch (how.kind) {
    case Extraction::Kind::kNone:
      return std::string(text);
    case Extraction::Kind::kLastNumber:
      return last_number(text);
    case Extraction::Kind::kRegex: {
      const std::regex re = compile(how.pattern);
      std::optional<std::string> found;
      const std::string s(text);
      for (auto it = std::sregex_iterator(s.begin(), s.end(), re); it != std::sregex_iterator();
           ++it) {
        const std::smatch& m = *it;
        std::string value = m.str(0);
        for (size_t g = 1; g < m.size(); ++g) {
          if (m[g].matched) {
            value = m.str(g);
            break;
          }
        }
        found = std::move(value);
        if (!how.last_match) break;
      }
      return found;
    }
  }
  return std::nullopt;
}

std::string normalize_answer(const Normalization& how, std::string_view text) {
  std::string s(text);
  const auto strip = [&s] {
    const char* ws = " \t\n\r\f\v";
    const size_t b = s.find_first_not_of(ws);
    s = b == std::string::npos ? "" : s.substr(b, s.find_last_not_of(ws) - b + 1);
  };
  // Stripped first too, so that an `ignore` pattern anchored at the end ("\\.$") sees the text.
  if (how.strip) strip();
  for (const std::string& pattern : how.ignore) s = std::regex_replace(s, compile(pattern), "");
  if (how.remove_commas) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      const bool between_digits =
          s[i] == ',' && i > 0 && is_digit(s[i - 1]) && i + 1 < s.size() && is_digit(s[i + 1]);
      if (!between_digits) out += s[i];
    }
    s = std::move(out);
  }
  if (how.lower) {
    for (char& c : s) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
  }
  if (how.strip) strip();
  if (how.numbers) {
    if (auto n = canonical_number(s)) s = std::move(*n);
  }
  return s;
}

}  // namespace shoal
