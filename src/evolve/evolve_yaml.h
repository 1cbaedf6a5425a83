// Reading the `shoal evolve` config's YAML (internal to evolve_config.cpp): mappings walked key
// by key with strict key sets, typed values, paths made absolute against the config's folder;
// every problem a ConfigError "<file>:<line>: ...".
#pragma once

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "shoal/error.h"

namespace shoal::evolve {

using Keys = std::vector<std::string_view>;

inline std::string join(const Keys& keys) {
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) out += (i > 0 ? ", " : "") + std::string(keys[i]);
  return out;
}

inline bool contains(const Keys& keys, std::string_view k) {
  return std::find(keys.begin(), keys.end(), k) != keys.end();
}

struct Entry {
  std::string name;
  YAML::Node value;
  int line;
};

class ConfigReader {
 public:
  ConfigReader(std::filesystem::path file, std::filesystem::path base_dir)
      : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

  [[noreturn]] void fail(int line, const std::string& message) const {
    throw ConfigError(file_.string() + ":" + std::to_string(line) + ": " + message);
  }
  static int line_of(const YAML::Node& n, int fallback) {
    if (!n.IsDefined()) return fallback;
    const YAML::Mark mark = n.Mark();
    return mark.line >= 0 ? mark.line + 1 : fallback;
  }

  // The entries of a mapping; a key outside `allowed` or written twice is an error.
  std::vector<Entry> entries(const YAML::Node& map, const Keys& allowed,
                             const std::string& where) const {
    if (!map.IsMap()) fail(line_of(map, 1), where + " must be a mapping");
    std::vector<Entry> out;
    std::set<std::string> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const int line = line_of(it->first, line_of(map, 1));
      if (!it->first.IsScalar()) fail(line, "a key in " + where + " must be a plain name");
      const std::string name = it->first.Scalar();
      if (!contains(allowed, name)) {
        fail(line, "unknown key '" + name + "' in " + where + " (expected: " + join(allowed) + ")");
      }
      if (!seen.insert(name).second) fail(line, "key '" + name + "' appears twice in " + where);
      out.push_back({name, it->second, line});
    }
    return out;
  }

  std::string string_value(const YAML::Node& n, int line, const std::string& what) const {
    if (!n.IsScalar() || n.Scalar().empty()) fail(line_of(n, line), what + " must be a string");
    return n.Scalar();
  }
  std::string string_value(const Entry& e) const { return string_value(e.value, e.line, e.name); }
  double number_value(const YAML::Node& n, int line, const std::string& what) const {
    double v = 0;
    if (!n.IsScalar() || !YAML::convert<double>::decode(n, v) || !std::isfinite(v)) {
      fail(line_of(n, line), what + " must be a number");
    }
    return v;
  }
  double number_value(const Entry& e) const { return number_value(e.value, e.line, e.name); }
  long long int_value(const Entry& e, long long min) const {
    long long v = 0;
    if (!e.value.IsScalar() || !YAML::convert<long long>::decode(e.value, v)) {
      fail(e.line, e.name + " must be an integer");
    }
    if (v < min) fail(e.line, e.name + " must be at least " + std::to_string(min));
    return v;
  }
  uint64_t uint_value(const Entry& e) const {
    uint64_t v = 0;
    if (!e.value.IsScalar() || e.value.Scalar().starts_with("-") ||
        !YAML::convert<uint64_t>::decode(e.value, v)) {
      fail(e.line, e.name + " must be a non-negative integer");
    }
    return v;
  }
  bool bool_value(const Entry& e) const {
    bool v = false;
    if (!e.value.IsScalar() || !YAML::convert<bool>::decode(e.value, v)) {
      fail(e.line, e.name + " must be true or false");
    }
    return v;
  }
  std::vector<std::string> string_list(const Entry& e) const {
    if (!e.value.IsSequence()) fail(e.line, e.name + " must be a list of strings");
    std::vector<std::string> out;
    for (const auto& item : e.value) out.push_back(string_value(item, e.line, e.name + " item"));
    return out;
  }

  // Relative to the config's folder; must exist.
  std::string existing_path(const std::string& written, int line, const std::string& what) const {
    const std::filesystem::path p = std::filesystem::path(written).is_absolute()
                                        ? std::filesystem::path(written)
                                        : base_dir_ / written;
    std::error_code ec;
    if (!std::filesystem::exists(p, ec))
      fail(line, what + " '" + written + "' not found (" + p.string() + ")");
    return std::filesystem::absolute(p).lexically_normal().string();
  }

  const std::filesystem::path& file() const { return file_; }
  const std::filesystem::path& base_dir() const { return base_dir_; }

 private:
  std::filesystem::path file_;
  std::filesystem::path base_dir_;
};

}  // namespace shoal::evolve
