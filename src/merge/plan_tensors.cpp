// Planning, tensor by tensor: which output tensors exist (R's names, layers renumbered across
// slices), where each input reads from (layer offsets, tied lm_head), shapes, dtypes and the
// resolved parameters of every input.
#include <algorithm>

#include "merge/planner.h"

namespace shoal::merge::planning {
namespace {

bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// Output projections (lm_head): the tensors a tied model does not store.
bool is_output_projection(std::string_view name) {
  return contains(name, "lm_head") || contains(name, "embed_out") || name.starts_with("output.");
}

// Non-layer tensors before the layers (token and position embeddings); the rest (final norm,
// lm_head) come after them. Decides which slice's models they are taken from.
bool is_pre_tensor(std::string_view name) {
  if (is_output_projection(name)) return false;
  for (std::string_view part : {"embed", "wte", "wpe", "word_embeddings", "token_embd"}) {
    if (contains(name, part)) return true;
  }
  return false;
}

// The input token embedding of a model, read in place of lm_head when the model ties them.
std::optional<std::string> input_embedding_name(const ModelFolder& m) {
  for (const auto& name : m.tensor_names()) {
    if (is_embedding_name(name) && is_pre_tensor(name) && m.find(name)->shape.size() == 2) {
      return name;
    }
  }
  return std::nullopt;
}

// Float types the kernels read.
bool is_mergeable(DType t) {
  return is_compute_float(t) || t == DType::kF64;
}

std::string list_names(const std::vector<std::string>& names) {
  constexpr size_t kShown = 3;
  std::string out;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > kShown) out += " and " + std::to_string(names.size() - kShown) + " more";
  return out;
}

}  // namespace

// The tensor names of one layer of a model, without the layer prefix, in file order.
const std::vector<std::string>& Planner::layer_rests(int m, int layer) {
  auto& table = layer_rests_[m];
  if (table.empty()) {
    const LayerLayout layout = model(m).layers();
    table.resize(layout.n_layers);
    for (const auto& name : model(m).tensor_names()) {
      const auto split = split_layer_name(name);
      if (split && split->prefix == layout.prefix && split->layer < layout.n_layers) {
        table[split->layer].push_back(split->rest);
      }
    }
  }
  return table.at(layer);
}

bool Planner::is_layer_tensor(const ModelFolder& m, const std::string& name) const {
  const auto split = split_layer_name(name);
  return split && !m.layers().prefix.empty() && split->prefix == m.layers().prefix;
}

void Planner::plan_tensors() {
  const ModelFolder& r = model(reference_);
  if (recipe_.uses_models) {
    // One slice over every layer: the output has R's names in R's file order.
    const Slice& s = slices_.front();
    for (const auto& name : r.tensor_names()) {
      if (is_layer_tensor(r, name)) {
        const auto split = split_layer_name(name);
        plan_tensor(name, s, split->layer, split->rest, gradient_t(split->layer, s.n_layers));
      } else {
        plan_tensor(name, s, -1, "", 0.0);
      }
    }
    return;
  }
  std::string out_prefix = r.layers().prefix;
  if (out_prefix.empty()) out_prefix = model(slices_.front().sources.front().model).layers().prefix;
  for (const auto& name : r.tensor_names()) {
    if (!is_layer_tensor(r, name) && is_pre_tensor(name))
      plan_tensor(name, slices_.front(), -1, "", 0.0);
  }
  for (const auto& s : slices_) {
    const Src& ref = s.sources[s.ref()];
    for (int j = 0; j < s.n_layers; ++j) {
      for (const auto& rest : layer_rests(ref.model, ref.begin + j)) {
        plan_tensor(join_layer_name({out_prefix, s.out_begin + j, rest}), s, j, rest,
                    gradient_t(j, s.n_layers));
      }
    }
  }
  for (const auto& name : r.tensor_names()) {
    if (!is_layer_tensor(r, name) && !is_pre_tensor(name))
      plan_tensor(name, slices_.back(), -1, "", 0.0);
  }
}

// Where a source keeps the tensor: layer `offset` of its range, or the same non-layer name;
// a tied model's lm_head is its input embedding.
Planner::Found Planner::find_input(const Src& src, const std::string& out_name, int offset,
                                   const std::string& rest) const {
  Found f{&src, out_name, nullptr};
  if (!plan_.models[src.model]) {
    f.unavailable = true;
    return f;
  }
  const ModelFolder& m = model(src.model);
  if (offset >= 0) f.name = join_layer_name({m.layers().prefix, src.begin + offset, rest});
  f.info = m.find(f.name);
  if (!f.info && is_output_projection(f.name) && m.ties_word_embeddings()) {
    if (const auto embed = input_embedding_name(m)) {
      f.name = *embed;
      f.info = m.find(f.name);
    }
  }
  return f;
}

void Planner::plan_tensor(const std::string& out_name, const Slice& s, int offset,
                          const std::string& rest, double t) {
  std::vector<Found> found;
  for (const auto& src : s.sources) found.push_back(find_input(src, out_name, offset, rest));
  const bool base_used = traits_.requires_base || (traits_.optional_base && s.base >= 0);
  const Found& ref = found[s.ref()];
  if (!ref.info) {
    missing_[{ref.src->label, ref.src->line}].push_back(ref.name);
    return;
  }
  TensorTask task;
  task.name = out_name;
  task.method = method_;
  if (!is_compute_float(ref.info->dtype)) {
    // Integer buffers and F64/F8 tensors are not merged: copied from the reference.
    task.shape = ref.info->shape;
    task.dtype = ref.info->dtype;
    task.copy_only = true;
    task.inputs.push_back({ref.src->model, ref.name, {}});
    plan_.tasks.push_back(std::move(task));
    return;
  }
  task.dtype = recipe_.out_dtype.value_or(recipe_.dtype.value_or(ref.info->dtype));

  // The inputs: indices into `found` (non-base when base_used). A model that failed to open
  // is left out, but its parameters are still checked so that all problems show at once.
  std::vector<size_t> members;
  bool unavailable = false;
  for (size_t k = 0; k < found.size(); ++k) {
    if (base_used && static_cast<int>(k) == s.base) continue;
    if (!found[k].unavailable) {
      members.push_back(k);
      continue;
    }
    unavailable = true;
    const Src& src = *found[k].src;
    resolve_model_params(method_, traits_, {src.params, s.params, &recipe_.params},
                         {out_name, t, ref.info->numel()}, src.label, src.line, problems_);
  }
  if (unavailable && !traits_.task_vector) return;
  const bool embedding = is_embedding_name(out_name);
  if (traits_.task_vector) {
    task.shape = ref.info->shape;
    std::vector<size_t> kept;
    for (size_t k : members) {
      const Found& f = found[k];
      if (!f.info) {
        missing_[{f.src->label, f.src->line}].push_back(f.name);
      } else if (!fits_base(*f.info, *ref.info, embedding)) {
        plan_.warnings.push_back("tensor " + out_name + ": model '" + f.src->label + "' has " +
                                 describe(*f.info) + ", the base has " + describe(*ref.info) +
                                 "; it is left out of this tensor");
      } else {
        kept.push_back(k);
      }
    }
    members = kept;
  } else {
    std::vector<size_t> all = members;
    if (base_used) all.push_back(static_cast<size_t>(s.base));
    bool complete = true;
    for (size_t k : all) {
      const Found& f = found[k];
      if (!f.info) {
        missing_[{f.src->label, f.src->line}].push_back(f.name);
        complete = false;
      } else if (!is_mergeable(f.info->dtype)) {
        problems_.add(f.src->line, "tensor " + f.name + " of model '" + f.src->label + "' is " +
                                       std::string(dtype_name(f.info->dtype)) +
                                       "; only float tensors can be merged");
        complete = false;
      }
    }
    if (!complete) return;
    const auto shape = common_shape(out_name, found, all, embedding);
    if (!shape) return;
    task.shape = *shape;
  }

  const TensorContext ctx{out_name, t, shape_numel(task.shape)};
  for (size_t k : members) {
    const Src& src = *found[k].src;
    const ParamScope scope{src.params, s.params, &recipe_.params};
    task.inputs.push_back(
        {src.model, found[k].name,
         resolve_model_params(method_, traits_, scope, ctx, src.label, src.line, problems_)});
  }
  if (base_used) task.base = PlannedInput{found[s.base].src->model, found[s.base].name, {}};
  task.params =
      resolve_global_params(method_, traits_, {nullptr, s.params, &recipe_.params}, ctx, problems_);
  if (embedding && task.shape.size() == 2) note_vocabulary(task);
  plan_.tasks.push_back(std::move(task));
}

std::string Planner::describe(const TensorInfo& info) {
  return "shape " + shape_to_string(info.shape) + " " + std::string(dtype_name(info.dtype));
}

// Task-vector methods read an embedding's top-left block when it is at least the base's size.
bool Planner::fits_base(const TensorInfo& in, const TensorInfo& base, bool embedding) {
  if (!is_mergeable(in.dtype)) return false;
  if (in.shape == base.shape) return true;
  return embedding && in.shape.size() == 2 && base.shape.size() == 2 &&
         in.shape[0] >= base.shape[0] && in.shape[1] >= base.shape[1];
}

// Equal shapes, or for embeddings (all 2-D) the common top-left block.
std::optional<std::vector<int64_t>> Planner::common_shape(const std::string& out_name,
                                                          const std::vector<Found>& found,
                                                          const std::vector<size_t>& all,
                                                          bool embedding) {
  const auto& first = found[all.front()].info->shape;
  bool same = true, all_2d = true;
  for (size_t k : all) {
    same &= found[k].info->shape == first;
    all_2d &= found[k].info->shape.size() == 2;
  }
  if (same) return first;
  if (embedding && all_2d) {
    std::vector<int64_t> out = first;
    for (size_t k : all) {
      out[0] = std::min(out[0], found[k].info->shape[0]);
      out[1] = std::min(out[1], found[k].info->shape[1]);
    }
    return out;
  }
  std::string shapes;
  for (size_t k : all) {
    shapes += (shapes.empty() ? "" : ", ") + quoted(found[k].src->label) + " " +
              shape_to_string(found[k].info->shape);
  }
  problems_.add(0, "tensor " + out_name + ": shapes differ (" + shapes + "); " +
                       std::string(method_name(method_)) +
                       " needs equal shapes (only embeddings may differ in vocabulary size)");
  return std::nullopt;
}

// Warns when an embedding keeps fewer rows than some model's vocabulary (mergekit truncates
// silently, its issue #425) and makes config.json's vocab_size follow the output rows.
void Planner::note_vocabulary(const TensorTask& task) {
  const int64_t rows = task.shape[0];
  std::vector<std::string> cut;
  const auto check = [&](const PlannedInput& in) {
    const TensorInfo* info = model(in.model).find(in.tensor);
    if (info && info->shape[0] > rows) {
      cut.push_back(quoted(recipe_label(in.model)) + " (" + std::to_string(info->shape[0]) + ")");
    }
  };
  for (const auto& in : task.inputs) check(in);
  if (task.base) check(*task.base);
  if (cut.empty()) return;
  std::string who;
  for (const auto& c : cut) who += (who.empty() ? "" : ", ") + c;
  plan_.warnings.push_back("tensor " + task.name + " keeps " + std::to_string(rows) +
                           " rows; the rows past that of " + who +
                           " are dropped, so those tokens are lost (mergekit does the same)");
  const TensorInfo* r = model(reference_).find(task.name);
  if (r && r->shape.size() == 2 && r->shape[0] != rows) {
    vocab_rows_ = std::min(vocab_rows_.value_or(rows), rows);
  }
}

std::string Planner::recipe_label(int m) const {
  for (const auto& s : slices_) {
    for (const auto& src : s.sources) {
      if (src.model == m) return src.label;
    }
  }
  return plan_.model_paths[m].string();
}

void Planner::report_missing() {
  const std::string m(method_name(method_));
  for (const auto& [who, names] : missing_) {
    const std::string what = names.size() == 1 ? "has no tensor " + names.front()
                                               : "lacks " + std::to_string(names.size()) +
                                                     " tensors: " + list_names(names);
    problems_.add(who.second, "model '" + who.first + "' " + what + "; " + m +
                                  " needs every tensor in every model it merges");
  }
}

}  // namespace shoal::merge::planning
