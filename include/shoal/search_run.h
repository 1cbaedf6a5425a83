// `shoal search TASK.yml` as a library: the task file, the scorer, and the run that drives a
// Search (shoal/search.h) with LLM backends (shoal/llm.h) in parallel and writes the output
// folder. docs/SEARCH.md ("Command") documents the task file and the outputs.
//
// Implemented in src/search/: search_task.cpp (the YAML), scorer.cpp, search_run.cpp (the
// loop), search_run_output.cpp (tree.json, best answers, the call log, the status line),
// search_report.cpp (the HTML view).
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "shoal/llm.h"
#include "shoal/progress.h"

namespace shoal {

// The user's scorer: a command that reads an answer on stdin and prints one JSON object
// {"score": x, "feedback": "..."} with x in [0, 1].
struct ScorerOptions {
  std::vector<std::string> argv;                         // a command string runs as /bin/sh -c
  std::filesystem::path working_dir;                     // the task file's folder
  double timeout_s = 60;                                 // the process group is killed after this
  uint64_t memory_limit_bytes = 0;                       // RLIMIT_AS; 0: none
  std::vector<std::pair<std::string, std::string>> env;  // added to the environment
};

struct ScoreResult {
  double score = 0;        // 0 when the scorer failed
  std::string feedback;    // the scorer's feedback, or why it failed ("scorer failed: ...")
  bool ok = false;         // false: failed, hung, printed no valid JSON or a score outside [0, 1]
  bool cancelled = false;  // stopped by the cancel flag (no score at all)
  double seconds = 0;
};

// Runs the scorer on one answer; never throws for the scorer's own failures (they are a score of
// 0 with the reason as feedback). The output is the whole of stdout as JSON, or else its last
// non-empty line (so a scorer may print other things first).
ScoreResult run_scorer(const ScorerOptions& scorer, const std::string& answer,
                       const std::vector<std::pair<std::string, std::string>>& extra_env = {},
                       const std::atomic<bool>* cancel = nullptr);

// Reads a scorer's output; what run_scorer uses (exposed for tests and other searches).
ScoreResult parse_scorer_output(const std::string& out);

// One model of the task = one action of the search.
struct SearchModel {
  std::string name;
  std::string backend;  // "http", "engine" or "mock"
  HttpBackendOptions http;
  EngineBackendOptions engine;
  MockBackendOptions mock;
};

struct SearchBudget {
  int64_t calls = 0;    // LLM calls, failed ones included; 0: no limit
  double cost_usd = 0;  // summed over backends; 0: no limit (calls running when it is reached
                        // still finish, so a run may overshoot by up to `concurrency` calls)
  double wall_s = 0;    // this run's wall-clock time; 0: no limit
};

struct SearchTask {
  std::filesystem::path file;  // the YAML file (relative paths in it are relative to its folder)
  std::string problem;         // the first user message
  std::string system;          // an optional system message
  // The user message of a refinement, with {problem}, {answer} (the parent's), {feedback} (the
  // scorer's on the parent) and {score}; {{ and }} are literal braces.
  std::string refine;
  std::vector<SearchModel> models;
  ScorerOptions scorer;
  SearchBudget budget;
  int concurrency = 1;  // calls in flight at once
  std::string algorithm = "ab-mcts-a";
  nlohmann::json algorithm_params = nlohmann::json::object();
  uint64_t seed = 0;
  int best = 5;  // best answers written to best/
};

// The default refinement message.
extern const char* const kDefaultRefineTemplate;

// Strict: unknown keys, wrong types and out-of-range values are ConfigErrors naming the file,
// line and key. Backends are not created yet (no key is read, no model loaded).
SearchTask load_search_task(const std::filesystem::path& file);
SearchTask parse_search_task(const std::string& yaml, const std::filesystem::path& file);

// The backend of each model, in order (reads API keys, loads engine models).
std::vector<std::unique_ptr<LlmBackend>> make_search_backends(const SearchTask& task);

struct SearchRunOptions {
  std::filesystem::path out_dir;
  bool resume = false;  // continue the search in out_dir/tree.json
  LogMode log_mode = LogMode::kHuman;
  // Ctrl-C: stops asking, cancels the calls running (their trials stay pending in tree.json and
  // run again on --resume) and writes the outputs. May be null.
  const std::atomic<bool>* interrupt = nullptr;
  // Backends to use instead of make_search_backends(task) (tests); one per model, in order.
  std::vector<LlmBackend*> backends;
};

struct SearchRunSummary {
  std::string stop_reason;  // "calls budget", "cost budget", "wall-time budget", "interrupted",
                            // or the fatal error that stopped the run
  bool fatal = false;       // stopped by an error (401, repeated failures): exit code 1
  bool interrupted = false;
  int64_t generations = 0;  // nodes in the tree (all runs)
  int64_t calls = 0;        // calls made (all runs), failed ones included
  int64_t failed_calls = 0;
  int64_t scorer_failures = 0;
  double cost_usd = 0;
  int64_t best_node = -1;
  double best_score = 0;
};

// Runs (or resumes) the search and writes out_dir: tree.json after every result, calls.jsonl,
// and at the end (also on a fatal error or an interrupt) best/, tree.html. Throws ConfigError
// when out_dir already holds a search and resume is false, or when resume finds a tree.json that
// does not match the task (other models or algorithm).
SearchRunSummary run_search(const SearchTask& task, const SearchRunOptions& options);

// The self-contained HTML view of a tree.json object (search_report.cpp).
std::string search_report_html(const nlohmann::json& tree);

}  // namespace shoal
