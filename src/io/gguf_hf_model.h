// A GGUF file of the llama family seen as a Hugging Face checkpoint: config.json keys, HF tensor
// names and HF layouts. Two things differ from the file: llama-architecture Q/K rows are
// un-interleaved (llama.cpp's converter interleaves them), and Q8_0 tensors read as F32. The GGUF
// weight source (infer), GGUF source models of merges (ModelFolder) and `shoal convert` share it.
// Internal to the io layer; implemented in src/io/gguf_hf_model.cpp.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/gguf_arch.h"
#include "shoal/gguf.h"

namespace shoal::io {

struct GgufHfTensor {
  std::string name;                      // HF name ("model.layers.0.self_attn.q_proj.weight")
  const GgufTensorInfo* info = nullptr;  // the tensor in the file
  DType dtype = DType::kF32;             // as HF sees it: the file's type, F32 for Q8_0
  std::vector<int64_t> shape;            // row-major, as in the file
  int64_t qk_heads = 0;                  // > 0: rows to un-interleave, per this many heads
  uint64_t nbytes() const { return static_cast<uint64_t>(shape_numel(shape)) * dtype_size(dtype); }
};

class GgufHfModel {
 public:
  // Checks the architecture, derives the config and maps every tensor name. Throws FormatError
  // "<file>: ..." naming the key or tensor (an unknown architecture, missing keys, two tensors
  // with one HF name, Q/K rows that do not split into heads).
  explicit GgufHfModel(GgufFile file);

  const GgufFile& file() const { return file_; }
  const GgufArch& arch() const { return *arch_; }
  const nlohmann::json& config() const { return config_; }
  // In file order.
  const std::vector<GgufHfTensor>& tensors() const { return tensors_; }
  const GgufHfTensor* find(std::string_view hf_name) const;

  // The file's bytes, when they are the tensor as HF has it (F32/F16/BF16, not permuted, aligned
  // to the element size); nullopt otherwise. Valid while this object lives.
  std::optional<TensorView> direct_view(const GgufHfTensor& t) const;
  // The tensor in HF layout and dtype, in a new buffer (Q8_0 dequantised, Q/K rows reordered).
  std::vector<std::byte> materialise(const GgufHfTensor& t) const;

 private:
  GgufFile file_;
  const GgufArch* arch_ = nullptr;
  nlohmann::json config_;
  std::vector<GgufHfTensor> tensors_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace shoal::io
