#include "io/temp_folder.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

#include "shoal/error.h"

namespace shoal::io {
namespace {

namespace fs = std::filesystem;

// "out/merged/" and "out/merged" name the same folder; the temporary sibling needs its name.
fs::path normalized_dir(const fs::path& dir) {
  fs::path p = dir.lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  return p;
}

// Removes temporary folders that killed runs (SIGKILL, power loss) left beside `final_dir`:
// ".<name>.shoal-tmp-<pid>" whose process no longer exists.
void remove_stale_temp_folders(const fs::path& parent, const std::string& prefix) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(prefix)) continue;
    const std::string pid_text = name.substr(prefix.size());
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    if (kill(pid, 0) == 0 || errno != ESRCH) continue;  // still running (or not ours to judge)
    fs::remove_all(entry.path(), ec);
  }
}

}  // namespace

TempFolder::TempFolder(const fs::path& final_dir) : final_(normalized_dir(final_dir)) {
  const fs::path parent = final_.has_parent_path() ? final_.parent_path() : fs::path(".");
  std::string prefix = ".";
  prefix += final_.filename().string();
  prefix += ".shoal-tmp-";
  remove_stale_temp_folders(parent, prefix);
  path_ = parent / (prefix + std::to_string(getpid()));
  std::error_code ec;
  fs::remove_all(path_, ec);
  fs::create_directories(path_, ec);
  if (ec) throw IoError("cannot create " + path_.string() + ": " + ec.message());
}

TempFolder::~TempFolder() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void TempFolder::commit() {
  std::error_code ec;
  fs::path trash;
  if (fs::exists(final_)) {
    trash = path_.string() + "-old";
    fs::rename(final_, trash, ec);
    if (ec) throw IoError("cannot move away " + final_.string() + ": " + ec.message());
  }
  fs::rename(path_, final_, ec);
  if (ec)
    throw IoError("cannot rename " + path_.string() + " to " + final_.string() + ": " +
                  ec.message());
  committed_ = true;
  if (!trash.empty()) fs::remove_all(trash, ec);
}

}  // namespace shoal::io
