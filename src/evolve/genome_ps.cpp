// Parameter-space genome: option checks, layer groups, gene layout, bounds and names. The recipe
// text is written by genome_ps_yaml.cpp.
#include <algorithm>
#include <cmath>
#include <set>

#include "shoal/error.h"
#include "shoal/genome.h"
#include "shoal/model_folder.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;

constexpr double kDellaEpsilon = 0.15;  // mergekit's default, which the recipe leaves in place

[[noreturn]] void fail(const std::string& message) {
  throw ConfigError("evolve genome: " + message);
}

// Per-model parameters each method searches.
std::vector<std::string> searched_params(const std::string& method) {
  if (method == "linear" || method == "task_arithmetic") return {"weight"};
  if (method == "ties" || method == "dare_ties" || method == "dare_linear" || method == "della") {
    return {"weight", "density"};
  }
  if (method == "slerp") return {"t"};
  fail("merge_method '" + method +
       "' cannot be searched; use linear, task_arithmetic, ties, dare_ties, dare_linear, della "
       "or slerp");
}

// Relative paths: the current directory first, then the recipe's folder (as the planner does).
fs::path resolve(const std::string& written, const fs::path& recipe_dir) {
  std::error_code ec;
  const fs::path p(written);
  if (fs::exists(p, ec)) return p;
  if (!p.is_absolute() && !recipe_dir.empty() && fs::exists(recipe_dir / p, ec)) {
    return recipe_dir / p;
  }
  fail("model '" + written + "' not found");
}

int count_layers(const std::string& written, const fs::path& recipe_dir) {
  const ModelFolder folder = ModelFolder::open(resolve(written, recipe_dir));
  const int n = folder.layers().n_layers;
  if (n < 1) fail("model '" + written + "' has no numbered layers");
  return n;
}

}  // namespace

PsGenome::PsGenome(PsGenomeOptions options, const fs::path& recipe_dir)
    : options_(std::move(options)) {
  const PsGenomeOptions& o = options_;
  param_names_ = searched_params(o.merge_method);
  if (o.models.empty()) fail("no models to merge");
  std::set<std::string> seen(o.models.begin(), o.models.end());
  if (seen.size() != o.models.size()) fail("a model is listed twice");
  if (o.merge_method == "linear") {
    if (o.base_model) fail("linear uses no base_model");
    if (o.models.size() < 2) fail("linear needs at least 2 models");
  } else {
    if (!o.base_model) fail(o.merge_method + " needs a base_model");
    if (seen.count(*o.base_model)) {
      fail("base_model '" + *o.base_model + "' must not be among the searched models");
    }
  }
  if (o.merge_method == "slerp" && o.models.size() != 1) {
    fail("slerp merges the base_model with exactly one other model");
  }
  if (o.layer_granularity < 0) fail("layer_granularity must be >= 0");
  std::set<std::string> filters;
  for (const auto& f : o.filters) {
    if (f.empty() || f == "*") fail("a filter must be a non-empty tensor-name substring");
    if (!filters.insert(f).second) fail("filter '" + f + "' is listed twice");
  }
  for (const auto& [name, value] : o.parameters) {
    if (std::find(param_names_.begin(), param_names_.end(), name) != param_names_.end()) {
      fail("parameter '" + name + "' is searched by the genome; it cannot also be fixed");
    }
    if (!std::isfinite(value)) fail("parameter '" + name + "' must be a finite number");
  }

  // Every model must have the same number of layers: groups are layer ranges of all of them.
  std::vector<std::string> all = o.models;
  if (o.base_model) all.insert(all.begin(), *o.base_model);
  for (const auto& m : all) {
    const int n = count_layers(m, recipe_dir);
    if (n_layers_ != 0 && n != n_layers_) {
      fail("model '" + m + "' has " + std::to_string(n) + " layers, '" + all[0] + "' has " +
           std::to_string(n_layers_));
    }
    n_layers_ = n;
  }
  const int g = o.layer_granularity == 0 ? n_layers_ : o.layer_granularity;
  for (int b = 0; b < n_layers_; b += g) groups_.emplace_back(b, std::min(b + g, n_layers_));

  const double w_lo = o.allow_negative_weights ? -1.0 : 0.0;
  for (int group = 0; group < n_groups(); ++group) {
    for (int slot = 0; slot < n_model_slots(); ++slot) {
      for (int set = 0; set < n_filter_sets(); ++set) {
        for (const auto& p : param_names_) {
          if (p == "weight") {
            lower_.push_back(w_lo), upper_.push_back(1.0);
          } else if (p == "density" && o.merge_method == "della") {
            lower_.push_back(kDellaEpsilon + 0.01), upper_.push_back(1 - kDellaEpsilon - 0.01);
          } else if (p == "density") {
            lower_.push_back(0.1), upper_.push_back(1.0);
          } else {  // t
            lower_.push_back(0.0), upper_.push_back(1.0);
          }
        }
      }
    }
  }
}

int PsGenome::n_model_slots() const {
  return static_cast<int>(options_.models.size());
}

size_t PsGenome::index(int group, int model_slot, int filter_set, int param) const {
  SHOAL_ASSERT(group >= 0 && group < n_groups() && model_slot >= 0 &&
               model_slot < n_model_slots() && filter_set >= 0 && filter_set < n_filter_sets() &&
               param >= 0 && param < static_cast<int>(param_names_.size()));
  return ((static_cast<size_t>(group) * n_model_slots() + model_slot) * n_filter_sets() +
          filter_set) *
             param_names_.size() +
         param;
}

std::string PsGenome::gene_name(size_t i) const {
  SHOAL_ASSERT(i < size());
  const size_t n_params = param_names_.size();
  const size_t param = i % n_params;
  const size_t set = (i / n_params) % n_filter_sets();
  const size_t slot = (i / n_params / n_filter_sets()) % n_model_slots();
  const size_t group = i / n_params / n_filter_sets() / n_model_slots();
  const auto [begin, end] = groups_[group];
  return "group " + std::to_string(group) + " (layers " + std::to_string(begin) + "-" +
         std::to_string(end - 1) + ") / " + options_.models[slot] + " / " +
         (set < options_.filters.size() ? options_.filters[set] : std::string("*")) + " / " +
         param_names_[param];
}

}  // namespace shoal
