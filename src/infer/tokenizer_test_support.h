// Helpers for the tokenizer tests: where the shared third-party data lives, and readers that
// fail the test with a clear message (never skip it) when a file is missing.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "core/test_support.h"

namespace shoal::test {

// The path of a shared data file; throws (failing the test) when it is missing.
inline std::filesystem::path data_file(const std::string& relative) {
  const std::filesystem::path p = shared_data_dir() / relative;
  if (!std::filesystem::exists(p)) {
    throw std::runtime_error("missing test data " + p.string() +
                             " (set SHOAL_SHARED_DATA to the shared/data folder)");
  }
  return p;
}

inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

inline nlohmann::json read_json_file(const std::string& relative) {
  return nlohmann::json::parse(read_bytes(data_file(relative)));
}

}  // namespace shoal::test
