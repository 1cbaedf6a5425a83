// Planning: recipe + model folders -> one TensorTask per output tensor. Everything that can be
// wrong with a merge is found before a byte is written, and reported together: models that do
// not open, method arity, layer ranges, missing tensors, shapes, parameter names and ranges.
// This file: models, slices and the output config; plan_tensors.cpp: the tasks;
// plan_params.cpp: parameters.
#include <algorithm>
#include <memory>

#include "merge/planner.h"
#include "shoal/error.h"

namespace shoal::merge {
namespace planning {

MergePlan Planner::run() {
  const auto method = parse_method(recipe_.merge_method);
  if (!method) problems_.add(0, "unknown merge_method '" + recipe_.merge_method + "'");
  problems_.throw_if_any();
  method_ = *method;
  traits_ = method_traits(method_);
  plan_.method = method_;
  check_recipe_params(recipe_, method_, problems_, plan_.warnings);
  if (recipe_.slices.empty()) problems_.add(0, "the recipe names no models");
  if (recipe_.tokenizer_source == "union") {
    problems_.add(0, "tokenizer_source: union is not supported yet; use 'base' or a model path");
  }
  // Without every model open and a valid slice structure nothing below is meaningful.
  if (recipe_.slices.empty()) problems_.throw_if_any();
  build_slices();
  if (!structure_ok_) problems_.throw_if_any();
  resolve_layer_ranges();
  if (!structure_ok_) problems_.throw_if_any();
  plan_tensors();
  report_missing();
  choose_tokenizer();
  write_config();
  problems_.throw_if_any();
  return std::move(plan_);
}

// Where a model path written in the recipe points: absolute as is; relative to the current
// directory, else to the recipe's folder.
std::optional<fs::path> Planner::resolve_path(const std::string& written) const {
  std::error_code ec;
  const fs::path p(written);
  if (fs::exists(p, ec)) return p;
  if (!p.is_absolute() && !recipe_dir_.empty() && fs::exists(recipe_dir_ / p, ec)) {
    return recipe_dir_ / p;
  }
  return std::nullopt;
}

// Identity of a model: its canonical folder, so two spellings of one folder are one model.
std::string Planner::model_key(const std::string& written) const {
  const auto p = resolve_path(written);
  if (!p) return "?" + written;
  std::error_code ec;
  const fs::path canonical = fs::weakly_canonical(*p, ec);
  return ec ? p->string() : canonical.string();
}

// Index of a model in the plan, opening it the first time.
int Planner::model_index(const std::string& written, int line) {
  const std::string key = model_key(written);
  if (const auto it = index_.find(key); it != index_.end()) return it->second;
  const int index = static_cast<int>(plan_.models.size());
  index_[key] = index;
  const auto path = resolve_path(written);
  plan_.model_paths.push_back(path.value_or(fs::path(written)));
  plan_.models.push_back(nullptr);
  if (!path) {
    std::string tried = fs::path(written).is_absolute() ? written : "./" + written;
    if (!recipe_dir_.empty() && !fs::path(written).is_absolute()) {
      tried += " or " + (recipe_dir_ / written).string();
    }
    problems_.add(line, "model '" + written + "' not found (looked for " + tried +
                            "; shoal reads local model folders)");
    return index;
  }
  try {
    plan_.models.back() = std::make_unique<ModelFolder>(ModelFolder::open(*path));
  } catch (const Error& e) {
    problems_.add(line, "model '" + written + "': " + e.what());
  }
  return index;
}

void Planner::build_slices() {
  if (recipe_.uses_models) {
    build_models_slice();
  } else {
    for (size_t i = 0; i < recipe_.slices.size(); ++i) build_slice(i);
  }
  if (traits_.requires_base && !recipe_.base_model &&
      std::any_of(slices_.begin(), slices_.end(), [](const Slice& s) { return s.base < 0; })) {
    problems_.add(0, std::string(method_name(method_)) + " needs a base_model");
    structure_ok_ = false;
  }
  for (const auto& s : slices_) {
    check_arity(s);
    // A model that failed to open is left out of the checks below, except where it defines
    // the output's tensors.
    if (!plan_.models[s.sources[s.ref()].model]) structure_ok_ = false;
  }
  // R: the top-level base when a slice uses it, else the first slice's reference.
  reference_ = slices_.front().sources[slices_.front().ref()].model;
  if (recipe_.base_model) {
    const std::string key = model_key(*recipe_.base_model);
    if (index_.contains(key)) {
      for (const auto& s : slices_) {
        if (s.base >= 0 && s.sources[s.base].model == index_[key]) {
          reference_ = plan_.base_model = index_[key];
        }
      }
    }
  }
}

void Planner::build_models_slice() {
  Slice s;
  s.where = "models";
  s.line = recipe_.slices.front().line;
  std::map<int, size_t> seen;
  for (size_t i = 0; i < recipe_.slices.size(); ++i) {
    const RecipeSource& rs = recipe_.slices[i].sources.front();
    const int m = model_index(rs.model, rs.line);
    if (const auto it = seen.find(m); it != seen.end()) {
      problems_.add(rs.line, "models[" + std::to_string(i) + "]: model '" + rs.model +
                                 "' is listed twice (also models[" + std::to_string(it->second) +
                                 "])");
    }
    seen.emplace(m, i);
    s.sources.push_back({m, rs.model, std::nullopt, 0, 0, &rs.params, rs.line});
  }
  if (recipe_.base_model) set_base(s, *recipe_.base_model, true);
  slices_.push_back(std::move(s));
}

void Planner::build_slice(size_t i) {
  const RecipeSlice& rs = recipe_.slices[i];
  Slice s;
  s.where = "slices[" + std::to_string(i) + "]";
  s.line = rs.line;
  s.params = &rs.params;
  for (const auto& src : rs.sources) {
    s.sources.push_back({model_index(src.model, src.line), src.model, src.layer_range, 0, 0,
                         &src.params, src.line});
  }
  const auto base = rs.base_model ? rs.base_model : recipe_.base_model;
  if (base) set_base(s, *base, false);
  slices_.push_back(std::move(s));
}

// Finds the slice's base among its sources. In `models:` form a base that is not listed is
// added (for the methods that use one); in `slices:` form it must be listed, since only its
// layer_range says which of its layers to use.
void Planner::set_base(Slice& s, const std::string& base, bool may_add) {
  const std::string key = model_key(base);
  for (size_t k = 0; k < s.sources.size(); ++k) {
    if (index_.contains(key) && s.sources[k].model == index_.at(key)) {
      s.base = static_cast<int>(k);
      return;
    }
  }
  if (!uses_base()) {
    add_warning_once("base_model '" + base + "' is not among the merged models; " +
                     std::string(method_name(method_)) +
                     " does not use a base, so it takes no part");
    return;
  }
  if (!may_add) {
    problems_.add(s.line, s.where + ": base_model '" + base +
                              "' is not one of the slice's sources; list it with a layer_range "
                              "so that shoal knows which of its layers to use");
    structure_ok_ = false;
    return;
  }
  s.sources.push_back({model_index(base, 0), base, std::nullopt, 0, 0, &kNoParams, 0});
  s.base = static_cast<int>(s.sources.size()) - 1;
}

void Planner::check_arity(const Slice& s) {
  const std::string m(method_name(method_));
  const int n = static_cast<int>(s.sources.size());
  const int others = n - (s.base >= 0 ? 1 : 0);
  const std::string has = " (" + s.where + " has " + std::to_string(n) + ")";
  std::string problem;
  if (method_ == Method::kSlerp && n != 2) {
    problem = "slerp merges exactly 2 models, one of them the base_model" + has;
  } else if (method_ == Method::kNuSlerp && others != 2) {
    problem = "nuslerp merges exactly 2 models besides the optional base_model" + has;
  } else if (method_ == Method::kModelStock && s.base >= 0 && others < 2) {
    problem = "model_stock needs the base_model and at least 2 other models" + has;
  } else if (method_ == Method::kPassthrough && n != 1) {
    problem = recipe_.uses_models
                  ? "passthrough takes exactly one model" + has + "; stack layers with slices"
                  : "passthrough takes exactly one source per slice" + has;
  }
  if (!problem.empty()) problems_.add(s.line, problem);
}

void Planner::resolve_layer_ranges() {
  int out_layer = 0;
  for (auto& s : slices_) {
    for (auto& src : s.sources) {
      if (!plan_.models[src.model]) continue;  // reported when it failed to open
      const int n = model(src.model).layers().n_layers;
      const auto [a, b] = src.range.value_or(std::pair(0, n));
      // Without a layer_range the source is the whole model, which may have no layers at all.
      const bool empty_whole_model = !src.range && n == 0;
      if (!empty_whole_model && (a < 0 || a >= b || b > n)) {
        problems_.add(src.line, s.where + ": layer_range [" + std::to_string(a) + ", " +
                                    std::to_string(b) + "] does not fit model '" + src.label +
                                    "', which has " + std::to_string(n) +
                                    " layers (need 0 <= begin < end <= " + std::to_string(n) + ")");
        structure_ok_ = false;
      }
      src.begin = a;
      src.end = b;
    }
    std::string counts;
    bool differ = false;
    const Src& ref = s.sources[s.ref()];
    for (const auto& src : s.sources) {
      if (!plan_.models[src.model]) continue;
      counts += (counts.empty() ? "" : ", ") + quoted(src.label) + " " +
                std::to_string(src.end - src.begin);
      differ |= src.end - src.begin != ref.end - ref.begin;
    }
    if (differ) {
      problems_.add(s.line,
                    recipe_.uses_models
                        ? "models have different layer counts: " + counts +
                              "; merge models of different depth with slices"
                        : s.where + ": sources cover different numbers of layers: " + counts);
      structure_ok_ = false;
    }
    s.n_layers = ref.end - ref.begin;
    s.out_begin = out_layer;
    out_layer += s.n_layers;
  }
  plan_.out_layers = out_layer;
}

void Planner::choose_tokenizer() {
  const std::string& source = recipe_.tokenizer_source;
  if (source == "base" || source == "union") {
    plan_.tokenizer_model = reference_;
    return;
  }
  if (!resolve_path(source)) {
    problems_.add(
        0, "tokenizer_source '" + source + "' is neither 'base' nor a model folder that exists");
    return;
  }
  plan_.tokenizer_model = model_index(source, 0);  // opened here if it merges nothing
}

void Planner::write_config() {
  const ModelFolder& r = model(reference_);
  if (recipe_.out_dtype || recipe_.dtype) {
    plan_.out_dtype = recipe_.out_dtype.value_or(recipe_.dtype.value_or(DType::kF32));
  } else {
    // R's most common float type, by tensor count; the first seen wins a tie.
    std::vector<std::pair<DType, int>> counts;
    for (const auto& name : r.tensor_names()) {
      const DType t = r.find(name)->dtype;
      if (!is_compute_float(t)) continue;
      auto it = std::find_if(counts.begin(), counts.end(), [t](auto& c) { return c.first == t; });
      if (it == counts.end())
        counts.push_back({t, 1});
      else
        ++it->second;
    }
    plan_.out_dtype = DType::kF32;
    int best = 0;
    for (const auto& [t, n] : counts) {
      if (n > best) {
        plan_.out_dtype = t;
        best = n;
      }
    }
  }
  nlohmann::json config = r.config().is_object() ? r.config() : nlohmann::json::object();
  config["torch_dtype"] = torch_dtype_name(plan_.out_dtype);
  bool has_layer_key = false;
  for (const char* key : {"num_hidden_layers", "n_layer", "num_layers"}) {
    if (config.contains(key)) {
      config[key] = plan_.out_layers;
      has_layer_key = true;
    }
  }
  if (!has_layer_key && plan_.out_layers > 0) config["num_hidden_layers"] = plan_.out_layers;
  if (vocab_rows_) config["vocab_size"] = *vocab_rows_;
  plan_.out_config = std::move(config);
}

void Planner::add_warning_once(const std::string& warning) {
  if (std::find(plan_.warnings.begin(), plan_.warnings.end(), warning) == plan_.warnings.end()) {
    plan_.warnings.push_back(warning);
  }
}

}  // namespace planning

MergePlan plan_merge(const Recipe& recipe, const std::filesystem::path& recipe_dir) {
  return planning::Planner(recipe, recipe_dir).run();
}

}  // namespace shoal::merge
