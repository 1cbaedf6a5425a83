// The genome as the run loop sees it: a box of numbers the optimiser searches, and what a point
// of it becomes — a model the engine runs in memory, a model folder on disk, a recipe, and
// per-layer curves for the report. The parameter-space genome (PsGenome + MemoryMerger) is the
// one implementation so far; the data-flow-space genome and "PS then DFS" plug in here (a new
// RunGenome and a case in make_run_genome) without touching the loop, the evaluators or the
// checkpoint. Implemented in src/evolve/evolve_genome.cpp. Not thread-safe.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shoal/evolve.h"
#include "shoal/model.h"
#include "shoal/tokenizer.h"

namespace shoal::evolve {

// One curve of the report's "parameters per layer" plot: a value per layer.
struct LayerSeries {
  std::string name;            // e.g. "a / mlp / weight"
  std::vector<double> values;  // one per layer
};

class RunGenome {
 public:
  virtual ~RunGenome() = default;

  virtual size_t size() const = 0;
  virtual const std::vector<double>& lower() const = 0;
  virtual const std::vector<double>& upper() const = 0;
  virtual std::string gene_name(size_t i) const = 0;
  // "2 groups x 2 models x 1 filter set x 2 parameters": how size() comes about, for messages.
  virtual std::string layout() const = 0;

  // Where the optimiser starts when the config gives no x0; empty: the box's centre.
  virtual std::vector<double> start() const { return {}; }
  // Throws ConfigError when this candidate cannot be built at all, whatever its values (models
  // whose tensors do not fit together): the run checks its start point before searching.
  virtual void check(const std::vector<double>& genome) const = 0;
  // The tokenizer every candidate uses (the in-process evaluator loads it once). Throws
  // ConfigError when the models have none.
  virtual Tokenizer tokenizer() const = 0;

  // The candidate as a model the engine runs, built in memory (nothing written). Throws for a
  // candidate that cannot be built; the caller records it as failed.
  virtual Model load_model(const std::vector<double>& genome, const ModelOptions& options) = 0;
  // Writes the candidate as a model folder (the same tensors load_model runs); `out_dir` must not
  // exist unless `force`.
  virtual void write_model(const std::vector<double>& genome, const std::filesystem::path& out_dir,
                           int n_threads, bool force, const std::atomic<bool>* cancel) = 0;
  // The mergekit YAML that `shoal merge --seed <merge_seed>` turns into that folder; nullopt for
  // a genome that is not a weight merge.
  virtual std::optional<std::string> recipe_yaml(const std::vector<double>& genome) const = 0;
  // Files written beside a candidate's model folder (name, text), e.g. the DFS path as JSON.
  virtual std::vector<std::pair<std::string, std::string>> extra_files(
      const std::vector<double>& /*genome*/) const {
    return {};
  }
  // The genome's values laid out per layer (PS) or per step of the path (DFS), for the report.
  virtual std::vector<LayerSeries> layer_series(const std::vector<double>& genome) const = 0;
  virtual std::string layer_axis() const { return "layer"; }
  // A one-line description of a candidate for the report ("" when the recipe says it all).
  virtual std::string describe(const std::vector<double>& /*genome*/) const { return ""; }
};

// The genome a config asks for (ps or dfs; a ps_then_dfs run builds its phases itself). Throws
// ConfigError for options that do not fit the models.
std::unique_ptr<RunGenome> make_run_genome(const EvolveConfig& config, int n_threads);

// A DFS genome over models already open: sources[i] is config.dfs.models[i] (then a label, and
// the path written into recipes), e.g. the PS phase's result held in memory. Implemented in
// src/evolve/evolve_genome_dfs.cpp.
std::unique_ptr<RunGenome> make_dfs_run_genome(
    const EvolveConfig& config, std::vector<std::shared_ptr<const WeightSource>> sources);

}  // namespace shoal::evolve
