// The run's evaluators (the Evaluator interface is in include/shoal/evolve.h):
// - EngineEvaluator: the candidate built in memory by the genome (for PS: MemoryMerger, only
//   changed tensors re-merged), scored by shoal eval's score() on the engine, with the tokenizer
//   loaded once;
// - CommandEvaluator: the candidate written to a temporary folder, a user's command run on it
//   with a timeout (its process group killed), JSON metrics read from its stdout, the folder
//   removed.
// A candidate that fails (an exception while building or scoring it, a non-finite score, a
// command that fails, hangs or prints garbage) is a result with ok = false and a one-line error.
// Implemented in src/evolve/evolve_fitness.cpp. Not thread-safe.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "evolve/evolve_genome.h"
#include "shoal/eval.h"
#include "shoal/evolve.h"
#include "shoal/tokenizer.h"

namespace shoal::evolve {

// The fitness task files loaded on `split`, each task's weight multiplied by its file's weight.
// Throws ConfigError naming the file for a task without that split, or two tasks with one name.
std::vector<TaskSpec> load_fitness_tasks(const FitnessOptions& fitness, const std::string& split);

class EngineEvaluator final : public Evaluator {
 public:
  // Loads the genome's tokenizer once (ConfigError when it has none).
  EngineEvaluator(RunGenome& genome, std::vector<TaskSpec> tasks, const FitnessOptions& fitness,
                  int n_threads);
  std::vector<CandidateMetrics> evaluate(std::span<const std::vector<double>> genomes,
                                         const std::atomic<bool>* cancel) override;
  // One genome on other tasks (the test split at the end of a run).
  CandidateMetrics evaluate_on(const std::vector<double>& genome, std::span<const TaskSpec> tasks);

 private:
  RunGenome& genome_;
  std::vector<TaskSpec> tasks_;
  EvalOptions eval_options_;
  ModelOptions model_options_;
  Tokenizer tokenizer_;
};

class CommandEvaluator final : public Evaluator {
 public:
  // Candidates are written under `work_dir` (created), one folder at a time.
  CommandEvaluator(RunGenome& genome, const FitnessOptions& fitness, std::filesystem::path work_dir,
                   int n_threads);
  std::vector<CandidateMetrics> evaluate(std::span<const std::vector<double>> genomes,
                                         const std::atomic<bool>* cancel) override;
  // The command on an existing model folder; SHOAL_EVOLVE_SPLIT is set to `split`.
  CandidateMetrics run_on(const std::filesystem::path& model_dir, const std::string& split,
                          const std::atomic<bool>* cancel, bool* cancelled = nullptr) const;

 private:
  RunGenome& genome_;
  FitnessOptions fitness_;
  std::filesystem::path work_dir_;
  int n_threads_;
  uint64_t n_written_ = 0;
};

// The shell command line for a model folder: `{model}` replaced by the single-quoted path, or
// the quoted path appended when the command has no `{model}`.
std::string fitness_command_line(const std::string& command, const std::filesystem::path& model);

// Metrics from a fitness command's stdout: the whole output, or else its last non-empty line, as
// a JSON object with a finite numeric "score"; per-task scores from "scores" ({task: number}) or
// shoal eval's "results" ({task: {"score": number}}). ok = false with a one-line error otherwise.
CandidateMetrics parse_command_metrics(const std::string& out);

}  // namespace shoal::evolve
