// Converting models between Hugging Face folders and llama.cpp's GGUF files (Llama, Mistral,
// Qwen2, Qwen3): llama.cpp's tensor names and metadata, its Q/K row order for llama-architecture
// models, the tokenizer as tokenizer.ggml.* metadata, and F32/F16/BF16/Q8_0 tensor types. The file
// formats and the decisions taken where they differ are in docs/GGUF.md. Implemented in
// src/io/gguf_convert.cpp (on gguf_model_writer, gguf_hf_model, gguf_tokenizer_*, gguf_config).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "shoal/progress.h"

namespace shoal {

struct ConvertOptions {
  // Tensor type of the output: "f32", "f16", "bf16", "q8_0" (GGUF output only), or "" to keep
  // the input's (a Q8_0 GGUF converts to F32 safetensors; to Q8_0 when the output is GGUF). 1-D
  // tensors (norms, biases) are F32 in GGUF whatever the type, as llama.cpp stores them.
  std::string type;
  bool force = false;  // replace an existing output
  int n_threads = 0;   // 0: one per hardware thread
  LogMode log_mode = LogMode::kHuman;
};

struct ConvertSummary {
  std::string from, to;  // "hf" or "gguf"
  size_t n_tensors = 0;
  uint64_t bytes_written = 0;
  std::vector<std::string> warnings;
  double seconds = 0;
};

// `in` is an HF model folder or a .gguf file. An HF folder becomes the GGUF file `out`; a GGUF file
// becomes the HF folder `out` (config.json, model.safetensors, tokenizer.json and
// tokenizer_config.json rebuilt from its vocabulary), or, when `out` ends in ".gguf", another GGUF
// file (e.g. quantised to Q8_0). The output is written under a temporary name and renamed when
// complete. Throws ConfigError / FormatError / IoError, one line naming the file and the key or
// tensor.
ConvertSummary convert_model(const std::filesystem::path& in, const std::filesystem::path& out,
                             const ConvertOptions& options);

}  // namespace shoal
