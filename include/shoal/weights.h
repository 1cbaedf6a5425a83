// Where the inference engine reads weights from: an HF folder (safetensors, mmap'd), a GGUF file
// (mmap'd; Q8_0 dequantised once on load), or tensors held in memory (a merged model that was
// never written to disk). Tensors are named as in Hugging Face checkpoints
// ("model.layers.0.self_attn.q_proj.weight") whatever the source. Implemented in
// src/infer/weights.cpp and src/infer/gguf_weights.cpp.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "shoal/dtype.h"

namespace shoal {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // The model's config in config.json's keys (for GGUF: derived from its metadata).
  virtual const nlohmann::json& config() const = 0;
  // A tensor in F32, F16 or BF16, or nullopt if absent. The view stays valid while the source
  // lives. Never copies a tensor whose dtype the engine can use as is.
  virtual std::optional<TensorView> tensor(std::string_view hf_name) const = 0;
  virtual std::vector<std::string> tensor_names() const = 0;
  // Path or label for messages.
  virtual std::string describe() const = 0;
  // Folder holding tokenizer files, when the source has one (HF folders); empty otherwise.
  virtual std::filesystem::path tokenizer_dir() const { return {}; }
};

// Opens an HF folder or a .gguf file.
std::unique_ptr<WeightSource> open_weights(const std::filesystem::path& path);
std::unique_ptr<WeightSource> open_folder_weights(const std::filesystem::path& dir);
std::unique_ptr<WeightSource> open_gguf_weights(const std::filesystem::path& file);

// Tensors owned in memory, e.g. by the merge engine's in-memory output.
class MemoryWeights : public WeightSource {
 public:
  MemoryWeights(nlohmann::json config, std::string label);
  // Adds or replaces a tensor; `bytes` must hold shape_numel(shape) * dtype_size(dtype) bytes.
  void put(const std::string& name, DType dtype, std::vector<int64_t> shape,
           std::vector<std::byte> bytes);

  const nlohmann::json& config() const override { return config_; }
  std::optional<TensorView> tensor(std::string_view hf_name) const override;
  std::vector<std::string> tensor_names() const override;
  std::string describe() const override { return label_; }

 private:
  struct Owned {
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<std::byte> bytes;
  };
  nlohmann::json config_;
  std::string label_;
  std::map<std::string, Owned, std::less<>> tensors_;
};

}  // namespace shoal
