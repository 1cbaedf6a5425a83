// Test helpers shared by every layer's unit tests: a fresh scratch folder per test, and the
// project's shared real-data folder.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace shoal::test {

// A fresh folder under $SHOAL_TEST_TMP (or the system temp folder), named after the running
// test and the process, removed at the end.
class TempDir {
 public:
  TempDir() {
    const char* root = std::getenv("SHOAL_TEST_TMP");
    const std::filesystem::path base =
        root != nullptr ? std::filesystem::path(root) : std::filesystem::temp_directory_path();
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = "test_" + std::to_string(::getpid());
    if (info != nullptr) name += std::string("_") + info->test_suite_name() + "_" + info->name();
    path_ = base / name;
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

  // Writes `text` to `name` in the folder and returns its path.
  std::filesystem::path write(const std::string& name, const std::string& text) const {
    const std::filesystem::path p = path_ / name;
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << text;
    EXPECT_TRUE(out.good()) << p;
    return p;
  }

 private:
  std::filesystem::path path_;
};

// The shared real-data folder: $SHOAL_SHARED_DATA, else shared/data beside the repository (CI
// clones the repository next to shared/; this header is <root>/src/core/test_support.h). Tests
// that need a file from it fail, never skip, when it is missing.
inline std::filesystem::path shared_data_dir() {
  if (const char* env = std::getenv("SHOAL_SHARED_DATA"); env != nullptr && *env != '\0') {
    return env;
  }
  const std::filesystem::path root =
      std::filesystem::absolute(__FILE__).parent_path().parent_path().parent_path();
  return (root / ".." / "shared" / "data").lexically_normal();
}

}  // namespace shoal::test
