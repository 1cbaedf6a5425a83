// What `shoal search` writes (internal to the search layer): totals kept across runs, tree.json
// (the search checkpoint plus run data), best answers, the JSONL call log, and the status line on
// stderr. Implemented in search_run_output.cpp; the loop that uses them is search_run.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "shoal/llm.h"
#include "shoal/progress.h"
#include "shoal/search.h"
#include "shoal/search_run.h"

namespace shoal::search {

constexpr const char* kTreeFormat = "shoal-search-run";
constexpr int kTreeVersion = 1;

// Usage summed over every run of one output folder (stored in tree.json).
struct RunTotals {
  int64_t calls = 0;         // completed calls, failed ones included
  int64_t failed_calls = 0;  // calls that ended in an LLM error
  int64_t scorer_failures = 0;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  double cost_usd = 0;
  double wall_s = 0;  // previous runs' wall time (the current run's is added when saving)
  int64_t runs = 0;

  nlohmann::json to_json() const;
  static RunTotals from_json(const nlohmann::json& j);  // FormatError naming tree.json's key
};

// tree.json: {"format", "version", "task", "algorithm", "models": [{name, backend, describe}],
// "totals", "status", "search": checkpoint}.
nlohmann::json tree_json(const SearchTask& task, const std::vector<LlmBackend*>& backends,
                         const Search& search, const RunTotals& totals, const std::string& status);

// A tree.json read back for --resume.
struct SavedRun {
  std::unique_ptr<Search> search;
  RunTotals totals;
};
// FormatError when `path` is not a search tree; ConfigError when it belongs to another task (other
// model names or order, algorithm, parameters or seed).
SavedRun load_tree(const std::filesystem::path& path, const SearchTask& task);

// Writes `text` to a temporary file beside `path`, then renames it over `path`.
void write_file_atomic(const std::filesystem::path& path, const std::string& text);

// best/1.txt ... best/K.txt (answers, best first) and best/best.json (rank, node, model, score,
// feedback).
void write_best(const std::filesystem::path& out_dir, const Search& search,
                const std::vector<LlmBackend*>& backends, int k);

// calls.jsonl: one JSON object per line, flushed as written.
class CallLog {
 public:
  CallLog(const std::filesystem::path& path, bool append);
  void write(const nlohmann::json& line);

 private:
  std::filesystem::path path_;
  std::ofstream out_;
};

// The status line on stderr (human mode, redrawn while stderr is a terminal), JSON events
// (--log-json), and warnings in both.
class StatusLine {
 public:
  explicit StatusLine(LogMode mode);
  bool live() const { return mode_ == LogMode::kHuman && tty_; }  // update() draws
  void update(const std::string& text);  // human mode, terminal only, at most 10 per second
  void event(nlohmann::json fields);     // JSON mode only
  void warn(const std::string& message);
  void finish(const std::string& text);  // human: the last line (always shown); JSON: an event

 private:
  void clear_locked();

  LogMode mode_;
  bool tty_;
  bool open_ = false;
  std::string last_;
  std::chrono::steady_clock::time_point last_draw_{};
  std::mutex mutex_;
};

}  // namespace shoal::search
