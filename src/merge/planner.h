// The planner's internal state, shared by plan.cpp (models, slices, output config) and
// plan_tensors.cpp (one task per output tensor). Not a public interface.
//
// Model roles:
// - a slice's reference source: its base model when it has one, else its first source. Its
//   tensor names (within the slice's layers) and dtypes define the output's.
// - the reference model R: the top-level base model when a slice uses it, else the first
//   slice's reference. Its non-layer tensor names, layer prefix and config.json define the
//   output's.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "merge/plan.h"
#include "merge/plan_params.h"

namespace shoal::merge::planning {

namespace fs = std::filesystem;

inline const ParamMap kNoParams;

inline std::string quoted(const std::string& s) {
  return "'" + s + "'";
}

// A source of a planning slice, with its layer range resolved.
struct Src {
  int model = -1;                            // index into MergePlan::models
  std::string label;                         // the model as written in the recipe
  std::optional<std::pair<int, int>> range;  // as written
  int begin = 0, end = 0;
  const ParamMap* params = &kNoParams;
  int line = 0;
};

struct Slice {
  std::string where;  // "models" or "slices[i]", for messages
  std::vector<Src> sources;
  int base = -1;  // index into sources, -1 when the slice has no base model
  const ParamMap* params = &kNoParams;
  int line = 0;
  int n_layers = 0;
  int out_begin = 0;  // first output layer
  int ref() const { return base >= 0 ? base : 0; }
};

class Planner {
 public:
  Planner(const Recipe& recipe, const fs::path& recipe_dir)
      : recipe_(recipe),
        recipe_dir_(recipe_dir),
        problems_(recipe.file.empty() ? "recipe" : recipe.file.string()) {}

  MergePlan run();

 private:
  // --- models -------------------------------------------------------------------------------

  // Where a model path written in the recipe points: absolute as is; relative to the current
  // directory, else to the recipe's folder.
  std::optional<fs::path> resolve_path(const std::string& written) const;

  // Identity of a model: its canonical folder, so two spellings of one folder are one model.
  std::string model_key(const std::string& written) const;

  // Index of a model in the plan, opening it the first time.
  int model_index(const std::string& written, int line);

  const ModelFolder& model(int index) const { return *plan_.models[index]; }

  // --- slices -------------------------------------------------------------------------------

  void build_slices();

  void build_models_slice();

  void build_slice(size_t i);

  bool uses_base() const { return traits_.requires_base || traits_.optional_base; }

  // Finds the slice's base among its sources. In `models:` form a base that is not listed is
  // added (for the methods that use one); in `slices:` form it must be listed, since only its
  // layer_range says which of its layers to use.
  void set_base(Slice& s, const std::string& base, bool may_add);

  void check_arity(const Slice& s);

  void resolve_layer_ranges();

  // --- tensors ------------------------------------------------------------------------------

  // The tensor names of one layer of a model, without the layer prefix, in file order.
  const std::vector<std::string>& layer_rests(int m, int layer);

  bool is_layer_tensor(const ModelFolder& m, const std::string& name) const;

  static double gradient_t(int j, int n) { return n > 1 ? double(j) / double(n - 1) : 1.0; }

  void plan_tensors();

  struct Found {
    const Src* src = nullptr;
    std::string name;
    const TensorInfo* info = nullptr;
    bool unavailable = false;  // the model failed to open (already reported)
  };

  // Where a source keeps the tensor: layer `offset` of its range, or the same non-layer name;
  // a tied model's lm_head is its input embedding.
  Found find_input(const Src& src, const std::string& out_name, int offset,
                   const std::string& rest) const;

  void plan_tensor(const std::string& out_name, const Slice& s, int offset, const std::string& rest,
                   double t);

  static std::string describe(const TensorInfo& info);

  // Task-vector methods read an embedding's top-left block when it is at least the base's size.
  static bool fits_base(const TensorInfo& in, const TensorInfo& base, bool embedding);

  // Equal shapes, or for embeddings (all 2-D) the common top-left block.
  std::optional<std::vector<int64_t>> common_shape(const std::string& out_name,
                                                   const std::vector<Found>& found,
                                                   const std::vector<size_t>& all, bool embedding);

  // Warns when an embedding keeps fewer rows than some model's vocabulary (mergekit truncates
  // silently, its issue #425) and makes config.json's vocab_size follow the output rows.
  void note_vocabulary(const TensorTask& task);

  std::string recipe_label(int m) const;

  void report_missing();

  // --- output -------------------------------------------------------------------------------

  void choose_tokenizer();

  void write_config();

  void add_warning_once(const std::string& warning);

  const Recipe& recipe_;
  fs::path recipe_dir_;
  Problems problems_;
  Method method_ = Method::kLinear;
  MethodTraits traits_;
  MergePlan plan_;
  bool structure_ok_ = true;
  std::map<std::string, int> index_;  // model identity -> index into plan_.models
  std::vector<Slice> slices_;
  int reference_ = 0;  // R
  std::map<int, std::vector<std::vector<std::string>>> layer_rests_;
  std::map<std::pair<std::string, int>, std::vector<std::string>> missing_;  // errors
  std::optional<int64_t> vocab_rows_;
};

}  // namespace shoal::merge::planning
