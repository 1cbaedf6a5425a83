// `shoal evolve CONFIG.yml`: evolutionary search for merge recipes with fitness measured in
// memory. A config names the models, the genome (how a vector of numbers becomes a candidate
// model), the optimiser, the fitness (shoal eval tasks on their dev split, or a user's command),
// an optional quality-diversity archive and a budget. A run checkpoints after every generation,
// resumes to the same result, and ends with the best recipe, the merged model, test-split scores
// and an HTML report. See docs/EVOLVE.md ("Command").
//
// Implemented in src/evolve/: evolve_config.cpp (the YAML config), evolve_genome.* (the run's
// genome interface), evolve_fitness.* (evaluators), evolve_checkpoint.cpp (run state as JSON),
// evolve_run.cpp (the loop), evolve_outputs.cpp (final outputs, elite export),
// evolve_report.cpp and evolve_svg.* (report.html). run_evolve drives everything from the
// calling thread; the engine and the merger use their own pools.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "shoal/archive.h"
#include "shoal/genome.h"
#include "shoal/genome_dfs.h"
#include "shoal/optimizer.h"
#include "shoal/progress.h"

namespace shoal {

// ---- Configuration ---------------------------------------------------------------------------

enum class GenomeKind {
  kPs,         // parameter space: per layer group x model x filter, the method's parameters
  kDfs,        // data-flow space: which layers a token passes through, with input scales
  kPsThenDfs,  // a PS search, then a DFS search whose pool holds the PS result first
};
const char* genome_kind_name(GenomeKind kind);  // "ps", "dfs", "ps_then_dfs"

struct FitnessTask {
  std::filesystem::path file;  // a shoal eval task file (absolute)
  double weight = 1;           // multiplies the weights of the file's tasks
};

struct FitnessOptions {
  // In-process fitness: the weighted sum of the tasks' scores on `split`.
  std::vector<FitnessTask> tasks;
  std::string split = "dev";                       // what the search sees
  std::optional<std::string> test_split = "test";  // scored once, for the best model, at the end
  std::optional<size_t> limit;                     // samples per task
  size_t batch_size = 32;                          // requests per forward pass
  // External fitness: a shell command run with the candidate's model folder (`{model}` in the
  // command is replaced by the quoted path; without it the path is appended). It prints JSON with
  // "score" (higher is better) and optionally "scores" {task: number} or shoal eval's "results".
  std::string command;
  double timeout_s = 600;  // wall clock per candidate; then the command is killed
};

struct EvolveBudget {
  int64_t generations = 0;  // 0: no limit
  int64_t evaluations = 0;  // candidates told to the optimiser (cached ones too); 0: no limit
  double wall_time_s = 0;   // over all sessions of the run; 0: no limit
};

struct EvolveConfig {
  std::filesystem::path file;      // the config file (for messages)
  std::filesystem::path base_dir;  // relative paths in the config are relative to this
  std::string text;                // the config's text, copied into the output folder

  GenomeKind genome_kind = GenomeKind::kPs;
  PsGenomeOptions ps;  // model paths absolute
  // DFS options; `models` is the pool: base (if given) then the experts, absolute (for
  // ps_then_dfs the PS result is put in front when the DFS phase starts).
  DfsGenomeOptions dfs;
  OptimizerOptions optimizer;  // dimension, bounds and x0 are filled in from the genome
  std::vector<double> x0;      // optimizer.x0 as written (checked against the genome)
  uint64_t merge_seed = 0;     // seed of DARE / DELLA masks (`shoal merge --seed`)
  FitnessOptions fitness;
  std::vector<ArchiveAxis> qd_axes;  // quality-diversity archive axes (task names); empty: off
  EvolveBudget budget;
  // A phase of ps_then_dfs: what it was built from (the DFS phase: the PS result's genome).
  nlohmann::json phase_inputs;

  // Everything that decides the run's results, as JSON (the budget left out): a resumed run
  // must have the same.
  nlohmann::json identity() const;
};

// Reads the YAML config. Unknown keys, wrong types, missing models or task files: ConfigError
// "<file>:<line>: ..." (one line). The genome's size is checked when the run builds it.
EvolveConfig load_evolve_config(const std::filesystem::path& file);
// As load_evolve_config, from text; relative paths are taken against `base_dir`.
EvolveConfig parse_evolve_config(std::string_view yaml_text, const std::filesystem::path& file,
                                 const std::filesystem::path& base_dir);

// ---- Evaluation ------------------------------------------------------------------------------

// What one candidate scored. Failures are results, not exceptions: the optimiser sees the worst
// fitness and the run goes on.
struct CandidateMetrics {
  bool ok = false;
  double score = 0;                           // higher is better
  std::map<std::string, double> task_scores;  // per task (quality-diversity descriptors)
  std::string error;                          // why it failed (one line)
  double seconds = 0;                         // wall time (logged; never part of a result)
};

// Measures genomes. The run asks for one generation's new genomes at a time, so an evaluator that
// farms them out (a pool of machines, MPI ranks) can replace the local ones without touching the
// optimiser. Implementations must return one result per genome, in order, and be deterministic
// for a given genome when the run is to be resumable to the same result.
class Evaluator {
 public:
  virtual ~Evaluator() = default;
  // Stops early (returning fewer results) once *cancel becomes true.
  virtual std::vector<CandidateMetrics> evaluate(std::span<const std::vector<double>> genomes,
                                                 const std::atomic<bool>* cancel) = 0;
};

// ---- Runs ------------------------------------------------------------------------------------

struct EvolveRunOptions {
  std::filesystem::path out_dir;
  bool resume = false;  // continue the run saved in out_dir (its checkpoint.json)
  LogMode log_mode = LogMode::kHuman;
  int n_threads = 0;  // merge and inference threads; 0: one per hardware thread
  // Set (e.g. from a SIGINT handler) to stop: the run keeps its last checkpoint (the state after
  // the last whole generation) and returns with `interrupted`. Not owned; may be null.
  const std::atomic<bool>* interrupt = nullptr;
};

struct EvolveSummary {
  bool interrupted = false;
  std::string stop_reason;  // "generations", "evaluations", "wall_time", "optimizer: tol_fun"...
  int64_t generations = 0;
  int64_t evaluations = 0;  // candidates told to the optimiser
  int64_t evaluated = 0;    // of which really evaluated (not from the cache)
  int64_t failures = 0;
  double best_score = 0;  // on the search split
  std::vector<double> best_genome;
  std::map<std::string, double> test_scores;  // empty without a test split
  std::optional<double> test_score;
  double seconds = 0;
};

// Runs (or resumes) a search and writes its outputs into options.out_dir (docs/EVOLVE.md lists
// them). Throws ConfigError for a bad config (a genome size that does not match the models, a
// resume with a different config), FormatError for a corrupt checkpoint.
EvolveSummary run_evolve(const EvolveConfig& config, const EvolveRunOptions& options);

// Writes one elite of a finished (or interrupted) quality-diversity run as a recipe and a model
// folder: `rank` counts from the best elite (0); `cell` picks one by its bin indices instead.
struct EliteExportOptions {
  std::filesystem::path run_dir;
  std::filesystem::path out_dir;  // the model folder; the recipe goes to out_dir + ".yml"
  int rank = 0;
  std::optional<std::vector<int>> cell;
  int n_threads = 0;
  bool force = false;  // replace an existing out_dir
};
struct EliteExport {
  std::filesystem::path recipe;
  std::filesystem::path model;
  double fitness = 0;
  std::vector<int> cell;
};
EliteExport export_elite(const EliteExportOptions& options);

}  // namespace shoal
