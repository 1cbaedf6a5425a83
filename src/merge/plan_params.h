// The parameter half of planning: what each method reads from a recipe, its defaults, name and
// range checks, and per-tensor resolution with mergekit's precedence. Used by plan.cpp only.
// Implemented in src/merge/plan_params.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "merge/methods.h"
#include "shoal/recipe.h"

namespace shoal::merge {

// What a merge method reads from a recipe (mergekit's parameter lists) and its defaults.
struct MethodTraits {
  std::vector<std::string_view> model_keys;   // per-model parameters it reads
  std::vector<std::string_view> global_keys;  // method-wide parameters it reads
  bool task_vector = false;      // merges deltas from the base; skips mismatched models
  bool requires_base = false;    // task-vector family, model_stock, slerp
  bool optional_base = false;    // nuslerp: uses the base when one is given
  bool weight_required = false;  // every merged (non-base) model needs a weight
  Sparsify sparsify = Sparsify::kNone;
  GlobalParams defaults;
};
MethodTraits method_traits(Method m);

// Problems found while planning, each "<file>:<line>: message" (or "<file>: message" when no
// line is known), thrown together as one ConfigError with one problem per line.
class Problems {
 public:
  explicit Problems(std::string file) : file_(std::move(file)) {}
  const std::string& file() const { return file_; }
  void add(int line, const std::string& message);
  // Adds the problem only the first time `key` is seen (one bad value shared by many tensors).
  void add_once(const std::string& key, int line, const std::string& message);
  bool empty() const { return lines_.empty(); }
  void throw_if_any() const;

 private:
  std::string file_;
  std::vector<std::string> lines_;
  std::set<std::string> seen_;
};

// The parameter maps a lookup walks, most specific first; any may be null.
struct ParamScope {
  const ParamMap* source = nullptr;
  const ParamMap* slice = nullptr;
  const ParamMap* top = nullptr;
};

struct ResolvedParam {
  double value = 0;
  int line = 0;  // where the value was written
};

// The value of `key` for one tensor: the first level (source, slice, top) that has the key and
// an entry matching the tensor; a level whose filters all miss falls through, as in mergekit.
std::optional<ResolvedParam> lookup_param(const ParamScope& scope, std::string_view key,
                                          std::string_view tensor, double t);

// Checks every parameter name written in the recipe against the method (unknown or misplaced
// names are problems) and every written number against its key's range.
void check_recipe_params(const Recipe& recipe, Method method, Problems& problems,
                         std::vector<std::string>& warnings);

// One tensor of one slice, for resolution.
struct TensorContext {
  std::string_view tensor;  // output name (filters match it)
  double t = 0;             // gradient position
  int64_t numel = 0;        // output element count (sparsification checks)
};

// Per-model parameters of one input; reports a missing required weight and per-tensor range
// problems (della's density +- epsilon, magnitude sparsification keeping nothing).
ModelParams resolve_model_params(Method method, const MethodTraits& traits, const ParamScope& scope,
                                 const TensorContext& tensor, const std::string& model_label,
                                 int model_line, Problems& problems);
// Method-wide parameters for one tensor (slice and top level only); reports a missing slerp t.
GlobalParams resolve_global_params(Method method, const MethodTraits& traits,
                                   const ParamScope& scope, const TensorContext& tensor,
                                   Problems& problems);

}  // namespace shoal::merge
