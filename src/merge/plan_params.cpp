// Parameter names, defaults, ranges and per-tensor resolution. The tables follow mergekit's
// parameter lists (see ../shared/specs/merge-methods.md); unlike mergekit, a name the method does
// not read is an error, never silently ignored.
#include "merge/plan_params.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "shoal/error.h"

namespace shoal::merge {
namespace {

// How a written value is checked, per key.
enum class Range { kAny, kUnit, kNonNegative, kBool };

struct KeyRule {
  std::string_view key;
  Range range;
};

constexpr KeyRule kKeyRules[] = {
    {"weight", Range::kAny},
    {"density", Range::kUnit},
    {"gamma", Range::kUnit},
    {"epsilon", Range::kNonNegative},
    {"scale", Range::kAny},
    {"normalize", Range::kBool},
    {"rescale", Range::kBool},
    {"lambda", Range::kAny},
    {"int8_mask", Range::kBool},
    {"t", Range::kUnit},
    {"nuslerp_flatten", Range::kBool},
    {"nuslerp_row_wise", Range::kBool},
    {"filter_wise", Range::kBool},
};

Range range_of(std::string_view key) {
  for (const auto& rule : kKeyRules) {
    if (rule.key == key) return rule.range;
  }
  return Range::kAny;
}

bool contains(const std::vector<std::string_view>& keys, std::string_view key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

std::string join(const std::vector<std::string_view>& keys) {
  std::string out;
  for (const auto& k : keys) out += (out.empty() ? "" : ", ") + std::string(k);
  return out.empty() ? "no parameters" : out;
}

// Shortest round-trip text for a number in a message ("0.7", not "0.700000").
std::string num(double v) {
  char buf[32] = "";
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

void check_value(const std::string& key, double v, int line, Problems& problems) {
  switch (range_of(key)) {
    case Range::kUnit:
      if (v < 0 || v > 1) problems.add(line, key + " " + num(v) + " is outside [0, 1]");
      break;
    case Range::kNonNegative:
      if (v < 0) problems.add(line, key + " " + num(v) + " is negative");
      break;
    case Range::kBool:
      if (v != 0 && v != 1) problems.add(line, key + " must be true or false (got " + num(v) + ")");
      break;
    case Range::kAny:
      break;
  }
}

// Checks the names and values of one parameter map. `per_model`: a model's own parameters,
// where method-wide keys have no effect.
void check_map(const ParamMap& params, bool per_model, Method method, const MethodTraits& traits,
               Problems& problems) {
  const std::string m(method_name(method));
  std::vector<std::string_view> accepted = traits.model_keys;
  accepted.insert(accepted.end(), traits.global_keys.begin(), traits.global_keys.end());
  for (const auto& [key, value] : params) {
    if (per_model && contains(traits.global_keys, key)) {
      problems.add(value.line, "parameter '" + key + "' applies to the whole merge in " + m +
                                   "; set it in the top-level or slice parameters, not per model");
      continue;
    }
    if (!contains(accepted, key)) {
      problems.add(value.line, "parameter '" + key + "' is not used by " + m + " (" + m +
                                   " accepts: " + join(accepted) + ")");
      continue;
    }
    for (const auto& entry : value.entries) {
      for (double v : entry.values) check_value(key, v, value.line, problems);
    }
  }
}

}  // namespace

MethodTraits method_traits(Method m) {
  MethodTraits tr;
  const auto task_vector = [&tr](Sparsify sparsify, bool normalize, bool rescale,
                                 std::vector<std::string_view> extra) {
    tr.model_keys = {"weight", "density"};
    tr.model_keys.insert(tr.model_keys.end(), extra.begin(), extra.end());
    tr.global_keys = {"normalize", "rescale", "lambda", "int8_mask"};
    tr.task_vector = true;
    tr.requires_base = true;
    tr.weight_required = true;
    tr.sparsify = sparsify;
    tr.defaults.normalize = normalize;
    tr.defaults.rescale = rescale;
  };
  switch (m) {
    case Method::kLinear:
      tr.model_keys = {"weight"};
      tr.global_keys = {"normalize"};
      tr.weight_required = true;
      tr.defaults.normalize = true;
      break;
    case Method::kSlerp:
      tr.global_keys = {"t"};
      tr.requires_base = true;
      break;
    case Method::kNuSlerp:
      tr.model_keys = {"weight"};
      tr.global_keys = {"nuslerp_flatten", "nuslerp_row_wise"};
      tr.optional_base = true;
      tr.weight_required = true;
      break;
    case Method::kTaskArithmetic:
      task_vector(Sparsify::kNone, false, false, {});
      break;
    case Method::kTies:
      task_vector(Sparsify::kMagnitude, true, false, {});
      break;
    case Method::kDareTies:
      task_vector(Sparsify::kRandom, false, true, {});
      break;
    case Method::kDareLinear:
      task_vector(Sparsify::kRandom, false, true, {});
      break;
    case Method::kBreadcrumbs:
      task_vector(Sparsify::kMagnitudeOutliers, false, false, {"gamma"});
      break;
    case Method::kBreadcrumbsTies:
      task_vector(Sparsify::kMagnitudeOutliers, false, false, {"gamma"});
      break;
    case Method::kDella:
      task_vector(Sparsify::kDellaMagprune, true, true, {"epsilon"});
      break;
    case Method::kDellaLinear:
      task_vector(Sparsify::kDellaMagprune, false, true, {"epsilon"});
      break;
    case Method::kModelStock:
      tr.global_keys = {"filter_wise"};
      tr.requires_base = true;
      break;
    case Method::kPassthrough:
      tr.model_keys = {"scale"};
      break;
  }
  return tr;
}

void Problems::add(int line, const std::string& message) {
  const std::string text =
      line > 0 ? file_ + ":" + std::to_string(line) + ": " + message : file_ + ": " + message;
  if (seen_.insert(text).second) lines_.push_back(text);
}

void Problems::add_once(const std::string& key, int line, const std::string& message) {
  if (seen_.insert("\x01" + key).second) add(line, message);
}

void Problems::throw_if_any() const {
  if (lines_.empty()) return;
  constexpr size_t kMaxLines = 50;
  std::string message;
  for (size_t i = 0; i < lines_.size() && i < kMaxLines; ++i) {
    if (i > 0) message += '\n';
    message += lines_[i];
  }
  if (lines_.size() > kMaxLines) {
    message +=
        "\n" + file_ + ": ... and " + std::to_string(lines_.size() - kMaxLines) + " more problems";
  }
  throw ConfigError(message);
}

std::optional<ResolvedParam> lookup_param(const ParamScope& scope, std::string_view key,
                                          std::string_view tensor, double t) {
  for (const ParamMap* level : {scope.source, scope.slice, scope.top}) {
    if (!level) continue;
    const auto it = level->find(std::string(key));
    if (it == level->end()) continue;
    if (const auto v = resolve_param(it->second, tensor, t))
      return ResolvedParam{*v, it->second.line};
  }
  return std::nullopt;
}

void check_recipe_params(const Recipe& recipe, Method method, Problems& problems,
                         std::vector<std::string>& warnings) {
  const MethodTraits traits = method_traits(method);
  check_map(recipe.params, false, method, traits, problems);
  bool density_written = recipe.params.contains("density");
  for (const auto& slice : recipe.slices) {
    check_map(slice.params, false, method, traits, problems);
    density_written |= slice.params.contains("density");
    for (const auto& source : slice.sources) {
      check_map(source.params, true, method, traits, problems);
      density_written |= source.params.contains("density");
    }
  }
  // mergekit reads `density` for task_arithmetic too but never sparsifies with it.
  if (method == Method::kTaskArithmetic && density_written) {
    warnings.push_back(
        "parameter 'density' has no effect with task_arithmetic (it does not sparsify; use "
        "ties, dare_linear or della_linear to drop part of each delta)");
  }
}

ModelParams resolve_model_params(Method method, const MethodTraits& traits, const ParamScope& scope,
                                 const TensorContext& tensor, const std::string& model_label,
                                 int model_line, Problems& problems) {
  const std::string m(method_name(method));
  ModelParams p;
  int density_line = 0;
  for (const auto key : traits.model_keys) {
    const auto r = lookup_param(scope, key, tensor.tensor, tensor.t);
    if (!r) {
      if (key == "weight" && traits.weight_required) {
        problems.add_once("weight|" + model_label, model_line,
                          "model '" + model_label + "' has no weight for tensor " +
                              std::string(tensor.tensor) + "; " + m +
                              " needs one for every merged model (set 'weight' in its "
                              "parameters or at the top level)");
      }
      continue;
    }
    if (key == "weight") p.weight = r->value;
    if (key == "density") {
      p.density = r->value;
      density_line = r->line;
    }
    if (key == "gamma") p.gamma = r->value;
    if (key == "epsilon") p.epsilon = r->value;
    if (key == "scale") p.scale = r->value;
  }
  const int line = density_line > 0 ? density_line : model_line;
  if (traits.sparsify == Sparsify::kDellaMagprune && p.density > 0 && p.density < 1 &&
      (p.density - p.epsilon <= 0 || p.density + p.epsilon >= 1)) {
    problems.add_once("della|" + model_label + "|" + num(p.density) + "|" + num(p.epsilon), line,
                      "model '" + model_label + "': " + m +
                          " needs density - epsilon and "
                          "density + epsilon strictly inside (0, 1); density " +
                          num(p.density) + " with epsilon " + num(p.epsilon) + " (tensor " +
                          std::string(tensor.tensor) + ")");
  }
  const bool magnitude =
      traits.sparsify == Sparsify::kMagnitude || traits.sparsify == Sparsify::kMagnitudeOutliers;
  if (magnitude && p.density < 1 &&
      static_cast<int64_t>(p.density * static_cast<double>(tensor.numel)) == 0) {
    problems.add_once("keep0|" + model_label + "|" + std::to_string(line), line,
                      "model '" + model_label + "': density " + num(p.density) +
                          " keeps no element of tensor " + std::string(tensor.tensor) + " (" +
                          std::to_string(tensor.numel) + " elements); " + m +
                          " needs int(density * elements) >= 1");
  }
  return p;
}

GlobalParams resolve_global_params(Method method, const MethodTraits& traits,
                                   const ParamScope& scope, const TensorContext& tensor,
                                   Problems& problems) {
  GlobalParams g = traits.defaults;
  const ParamScope method_wide{nullptr, scope.slice, scope.top};
  for (const auto key : traits.global_keys) {
    const auto r = lookup_param(method_wide, key, tensor.tensor, tensor.t);
    if (!r) {
      if (key == "t" && method == Method::kSlerp) {
        problems.add_once("slerp-t", 0,
                          "slerp needs parameter 't' (0 gives the base model, 1 the other); "
                          "none is set for tensor " +
                              std::string(tensor.tensor));
      }
      continue;
    }
    const bool on = r->value != 0;
    if (key == "normalize") g.normalize = on;
    if (key == "rescale") g.rescale = on;
    if (key == "lambda") g.lambda = r->value;
    if (key == "t") g.t = r->value;
    if (key == "nuslerp_flatten") g.nuslerp_flatten = on;
    if (key == "nuslerp_row_wise") g.nuslerp_row_wise = on;
    if (key == "filter_wise") g.filter_wise = on;
  }
  return g;
}

}  // namespace shoal::merge
