// The tensors a ModelConfig implies: names (as in Hugging Face checkpoints) and shapes, checked
// against a WeightSource at load. Implemented in src/infer/model_config.cpp, which also holds
// parse_model_config (include/shoal/model.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shoal/model.h"

namespace shoal::infer {

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};

// Every tensor the forward pass reads, in load order. With tied embeddings lm_head.weight is not
// listed (it is ignored when present, as transformers does).
std::vector<TensorSpec> expected_tensors(const ModelConfig& c);

// "model.layers.<layer>.<rest>"
std::string layer_tensor(int64_t layer, const std::string& rest);

// Throws FormatError (one line naming `where` and the tensor) when a required tensor is absent,
// is not F32/F16/BF16, or has a shape other than expected; or when a tensor of a layer is one
// the config does not account for (a bias the config does not declare, a layer index at or
// beyond num_hidden_layers), since silently ignoring it would change the model's outputs.
void check_tensors(const ModelConfig& c, const WeightSource& weights);

}  // namespace shoal::infer
