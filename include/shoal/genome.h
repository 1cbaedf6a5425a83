// Genomes of `shoal evolve`: how a vector of numbers (what the optimisers search) becomes a merge
// recipe. See docs/EVOLVE.md.
//
// Parameter-space genome (Sakana AI's PS merging; the genome of mergekit-evolve): for each layer
// group x model x tensor filter, the merge method's per-model parameters:
//   linear, task_arithmetic: weight
//   ties, dare_ties, dare_linear, della: weight, density
//   slerp: t (one value per group x filter; the base and one other model)
// Layer groups are `layer_granularity` consecutive layers (the last group may be shorter); 0
// means one group for the whole model. Filters are tensor-name substrings with parameters of
// their own; the last parameter set of each (group, model) applies to every other tensor. Without
// `smooth`, each group becomes one slice of the recipe, so its values apply to its layers
// exactly; with `smooth`, the recipe has one `models:` entry per model whose values are gradients
// with one point per group, interpolated across the layers. Tensors outside the layers
// (embeddings, final norm, lm_head) follow mergekit's rule: the first slice's parameters for
// the embeddings, the last slice's for the rest (with `smooth`: the first gradient point).
//
// The gene vector is laid out [group][model][filter set][parameter], and every gene has a box
// (lower(), upper()) for the optimiser: weight [0, 1] ([-1, 1] with allow_negative_weights),
// density [0.1, 1] (at least one element kept in tensors of 10+ elements), della's density
// [epsilon + 0.01, 1 - epsilon - 0.01] with epsilon 0.15 (mergekit requires density +- epsilon
// strictly inside (0, 1)), t [0, 1]. Values are written to the recipe unchanged.
//
// Implemented in src/evolve/genome_ps.cpp (layout, bounds, names) and src/evolve/genome_ps_yaml.cpp
// (the recipe text).
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "shoal/merge_memory.h"
#include "shoal/recipe.h"
#include "shoal/weights.h"

namespace shoal {

struct PsGenomeOptions {
  std::string merge_method;               // one of the methods listed above
  std::vector<std::string> models;        // models whose parameters are searched, as written
                                          //   in the recipe; for slerp exactly one
  std::optional<std::string> base_model;  // required by every method but linear
  int layer_granularity = 0;              // layers per group; 0: one group
  std::vector<std::string> filters;       // e.g. {"self_attn", "mlp"}; first match wins
  bool allow_negative_weights = false;
  bool smooth = false;
  std::map<std::string, double> parameters;  // fixed method-wide parameters (normalize, lambda)
  std::optional<std::string> dtype;          // recipe dtype ("bfloat16", ...)
  std::optional<std::string> tokenizer_source;
};

class PsGenome {
 public:
  // Checks the options and counts the layers of the models (every model must have the same
  // count); relative paths are tried against the current directory, then `recipe_dir`. Throws
  // ConfigError naming the option or model.
  PsGenome(PsGenomeOptions options, const std::filesystem::path& recipe_dir);

  const PsGenomeOptions& options() const { return options_; }
  size_t size() const { return lower_.size(); }
  int n_layers() const { return n_layers_; }
  int n_groups() const { return static_cast<int>(groups_.size()); }
  // [begin, end) layers of each group.
  const std::vector<std::pair<int, int>>& groups() const { return groups_; }
  const std::vector<std::string>& param_names() const { return param_names_; }
  // Models that carry genes (for slerp: one slot, the non-base model).
  int n_model_slots() const;
  int n_filter_sets() const { return static_cast<int>(options_.filters.size()) + 1; }
  size_t index(int group, int model_slot, int filter_set, int param) const;

  const std::vector<double>& lower() const { return lower_; }
  const std::vector<double>& upper() const { return upper_; }
  // "group 0 (layers 0-1) / a / mlp / weight"; the default filter set is called "*".
  std::string gene_name(size_t i) const;

  // The mergekit YAML recipe for a genome (numbers in shortest round-trip form, so parsing the
  // text gives the genome's values exactly). Throws ConfigError for a genome of the wrong size
  // or with a non-finite value.
  std::string to_yaml(const std::vector<double>& genome) const;
  // parse_recipe(to_yaml(genome)): the Recipe that `shoal merge` of the YAML file would run.
  Recipe decode(const std::vector<double>& genome) const;

 private:
  PsGenomeOptions options_;
  int n_layers_ = 0;
  std::vector<std::pair<int, int>> groups_;
  std::vector<std::string> param_names_;
  std::vector<double> lower_, upper_;
};

// A merged model held in memory, seen by the inference engine like a model folder: views into
// the MemoryModel's tensors, no copies; tokenizer_dir() is the folder run_merge would copy the
// tokenizer files from. (In the evolve layer because WeightSource belongs to infer, above
// merge.) Implemented in src/evolve/memory_weights.cpp.
std::unique_ptr<WeightSource> memory_model_weights(std::shared_ptr<const MemoryModel> model,
                                                   std::string label = "merged in memory");

}  // namespace shoal
