// Internal pieces of run_evolve shared by the loop (evolve_run.cpp), the final outputs
// (evolve_outputs.cpp) and the report (evolve_report.cpp).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "evolve/evolve_fitness.h"
#include "evolve/evolve_genome.h"
#include "evolve/evolve_state.h"
#include "shoal/evolve.h"

namespace shoal::evolve {

struct RunContext {
  const EvolveConfig& config;
  const EvolveRunOptions& options;
  std::unique_ptr<RunGenome> genome;
  std::vector<TaskSpec> search_tasks;  // in-process fitness only
  std::vector<TaskSpec> test_tasks;    //   (empty without a test split)
  std::unique_ptr<EngineEvaluator> engine;
  std::unique_ptr<CommandEvaluator> command;
  Evaluator* evaluator = nullptr;  // one of the two
  RunState state;
};

// The best candidate's final scores: on the search split (from the run) and on the test split
// (measured once, at the end).
struct FinalScores {
  CandidateMetrics search;
  std::optional<CandidateMetrics> test;
};

// One search with a given genome: the loop of run_evolve (evolve_run.cpp). `phase` ("", "ps" or
// "dfs") is recorded in the checkpoint, for export.
EvolveSummary run_with_genome(const EvolveConfig& config, const EvolveRunOptions& options,
                              std::unique_ptr<RunGenome> genome, const std::string& phase);

// ps_then_dfs (evolve_phases.cpp): a PS run in OUT/ps, then a DFS run in OUT/dfs whose pool
// starts with the PS result (OUT/ps/best). Both phases run under the config's budget.
EvolveSummary run_ps_then_dfs(const EvolveConfig& config, const EvolveRunOptions& options);
// The config of one phase of a ps_then_dfs run whose output folder is `run_dir`.
EvolveConfig phase_config(const EvolveConfig& config, const std::string& phase,
                          const std::filesystem::path& run_dir);

// Writes best.yml, best/, scores.json, report.html and summary.json into the output folder and
// returns the summary. Throws Error when no candidate succeeded (after writing the report).
EvolveSummary write_outputs(RunContext& ctx, const std::string& stop_reason);

// report.html: the run's plots (inline SVG) and tables; deterministic for a given state.
std::string render_report(const RunContext& ctx, const std::string& stop_reason,
                          const std::optional<FinalScores>& final_scores);

}  // namespace shoal::evolve
