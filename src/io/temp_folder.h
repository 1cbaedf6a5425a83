// A temporary output folder beside its final name, renamed into place when complete: what
// `shoal merge` and `shoal convert` write into, so an interrupted run never leaves a folder that
// looks whole.
#pragma once

#include <filesystem>

namespace shoal::io {

// Created as ".<name>.shoal-tmp-<pid>" beside `final_dir` (after removing such folders of
// processes that no longer run); removed by the destructor unless commit() renamed it into place.
class TempFolder {
 public:
  explicit TempFolder(const std::filesystem::path& final_dir);
  ~TempFolder();
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // Moves the finished folder to its final name, replacing an existing one (--force) only once
  // the new one is complete.
  void commit();

 private:
  std::filesystem::path final_;
  std::filesystem::path path_;
  bool committed_ = false;
};

}  // namespace shoal::io
