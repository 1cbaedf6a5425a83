// Population search ("algorithm: {name: population, ...}" in a `shoal search` task): a database of
// scored programs spread over islands, each with a MAP-Elites grid; LLMs mutate (SEARCH/REPLACE
// diffs inside EVOLVE-BLOCK markers), rewrite, recombine two parents or fix broken ones; a MinHash
// novelty check runs before the costly evaluation; a bandit picks the model. docs/POPULATION.md
// describes the behaviour, the task keys, the SQLite schema and the decisions taken.
//
// It shares the task file, the LLM backends, the budgets, the call log and the CLI of `shoal
// search`: run_search() hands a task whose algorithm is "population" to run_population().
//
// Implemented in src/search/: population_params.cpp (the parameters), population_diff.cpp
// (EVOLVE blocks, SEARCH/REPLACE, code extraction), population_novelty.cpp (MinHash),
// population_state.cpp (islands, grids, archive, selection, migration, bandit),
// population_eval.cpp (the evaluator subprocess), population_prompt.cpp (operator templates),
// program_db.cpp (SQLite), population_runner.h + population_run.cpp + population_steps.cpp (the
// loop), population_outputs.cpp (resume, best/), population_report.cpp (HTML).
//
// Thread safety: run_population may run in several threads at once on different out_dirs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "shoal/search_run.h"

namespace shoal {

// One axis of the MAP-Elites grid: a metric of the evaluator (or a built-in: "code_length", the
// program's length in bytes; "code_lines"), cut into `bins` equal bins over [min, max] (values
// outside are clamped to the first or last bin).
struct PopulationDescriptor {
  std::string metric = "code_length";
  double min = 0;
  double max = 10000;
  int bins = 10;
};

struct PopulationNovelty {
  bool enabled = true;
  double threshold = 0.95;  // estimated Jaccard similarity of shingles at which a candidate is
                            // rejected (an exact duplicate of an island program always is)
  int retries = 2;          // re-proposals after a rejection, then the proposal is dropped
  int shingle = 3;          // tokens per shingle
  int hashes = 64;          // MinHash signature length
};

// The optional cheap first stage: it must pass (exit 0, valid JSON, score >= min_score) before
// the full evaluation (the task's `scorer`) runs.
struct PopulationCascade {
  std::vector<std::string> argv;  // empty: no first stage
  double timeout_s = 10;
  double min_score = 0;
};

struct PopulationParams {
  int islands = 4;
  std::filesystem::path initial;    // the initial program (empty: the first programs are written
                                    // from the problem alone)
  std::string language = "python";  // the code fences' language
  std::string file_name = "program.py";  // the program's file name in the evaluation folder
  int migration_interval = 10;           // migrate after every M-th proposed program (0: never)
  double migration_fraction = 0.1;       // of each island's elites, best first (at least one)
  std::vector<PopulationDescriptor> grid = {PopulationDescriptor{}};
  int archive_size = 20;
  // Operator weights (normalised); "fix" is used instead whenever the island has no correct
  // program, "new" when it has none at all.
  double op_diff = 0.6, op_rewrite = 0.2, op_crossover = 0.2;
  double cross_island = 0.3;  // chance that a crossover's second parent comes from another island
  double selection_beta = 4;  // sharpness of fitness weighting (sigmoid of standardised scores)
  double child_penalty = 1;   // weight *= 1 / (1 + child_penalty * children)
  int inspirations = 2;       // elites of other cells / islands shown in the prompt
  int diff_retries = 2;       // re-asks after an answer that does not apply
  PopulationNovelty novelty;
  double bandit_exploration = 0.5;  // UCB constant over the models
  double bandit_cost_weight = 0;    // subtracts weight * (mean cost / highest mean cost)
  PopulationCascade cascade;
  int max_feedback_chars = 2000;  // of stdout / stderr shown back to the model
  int64_t max_evaluations = 0;    // a budget on evaluated programs (all runs); 0: none
  std::map<std::string, std::string> templates;  // operator -> user message (overrides)

  nlohmann::json to_json() const;  // every parameter, defaults filled in (stored in the DB)
};

// Reads `algorithm` parameters (the mapping minus `name`) of a task; relative paths are relative
// to task_dir. Unknown keys, wrong types and out-of-range values are ConfigErrors naming the key.
PopulationParams parse_population_params(const nlohmann::json& params,
                                         const std::filesystem::path& task_dir);

// What an evaluation gives (also what an in-process evaluator returns).
struct ProgramEvaluation {
  double score = 0;      // fitness, higher is better; 0 when the evaluation failed
  bool correct = false;  // valid solution (false when the evaluator failed)
  bool ok = false;       // the evaluator ran and printed valid JSON
  bool cancelled = false;
  nlohmann::json metrics = nlohmann::json::object();  // name -> number
  std::string feedback;                               // the evaluator's text, or why it failed
  std::string out_tail, err_tail;                     // ends of stdout / stderr
  int stage = 2;                                      // 1 when the cascade's first stage stopped it
  double seconds = 0;
};

// Tests and benchmarks may replace pieces of the run.
struct PopulationHooks {
  // Instead of the scorer subprocess (thread-safe; called from the worker threads).
  std::function<ProgramEvaluation(const std::string& code)> evaluator;
};

// Runs (or resumes) a population search and writes out_dir: population.db (SQLite: every
// program, call and proposal; the run resumes from it alone), calls.jsonl, best/, report.html.
// Same errors and stop rules as run_search.
SearchRunSummary run_population(const SearchTask& task, const SearchRunOptions& options,
                                const PopulationHooks& hooks = {});

// The self-contained HTML report of a population database.
std::string population_report_html(const std::filesystem::path& db_path);

}  // namespace shoal
