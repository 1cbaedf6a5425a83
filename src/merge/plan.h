// Planning: from a parsed recipe and the opened source models to one task per output tensor,
// with every check done up front. Implemented in src/merge/plan.cpp.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "merge/methods.h"
#include "shoal/model_folder.h"
#include "shoal/recipe.h"

namespace shoal::merge {

struct PlannedInput {
  int model = -1;      // index into MergePlan::models
  std::string tensor;  // the tensor's name in that model (may differ from the output name
                       // when slices move layers, or for a tied lm_head read from embed_tokens)
  ModelParams params;
};

struct TensorTask {
  std::string name;  // output tensor name
  std::vector<int64_t> shape;
  DType dtype = DType::kF32;
  Method method = Method::kLinear;
  std::vector<PlannedInput> inputs;  // non-base models, recipe order
  std::optional<PlannedInput> base;  // set when the method uses a base model
  GlobalParams params;
  // Tensors whose dtype is not F32/F16/BF16 (integer buffers etc.) are copied byte for byte from
  // the first input; `copy_only` marks them.
  bool copy_only = false;
};

struct MergePlan {
  Method method = Method::kLinear;
  std::vector<std::filesystem::path> model_paths;  // resolved folders
  std::vector<std::unique_ptr<ModelFolder>> models;
  int base_model = -1;            // index into models, -1 if none
  std::vector<TensorTask> tasks;  // output order
  nlohmann::json out_config;      // config.json to write (num_hidden_layers, torch_dtype updated)
  int out_layers = 0;
  DType out_dtype = DType::kF32;  // for config.json's torch_dtype
  int tokenizer_model = -1;       // model whose tokenizer files are copied, -1 for none
  std::vector<std::string> warnings;
};

// Opens the models the recipe names (relative paths: current directory first, then
// `recipe_dir`), resolves every parameter per tensor and checks everything. Collects every
// problem found and throws one ConfigError with one problem per line.
MergePlan plan_merge(const Recipe& recipe, const std::filesystem::path& recipe_dir);

}  // namespace shoal::merge
