// Test helper shared by every layer's unit tests: a fresh scratch folder per test.
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

}  // namespace shoal::test
