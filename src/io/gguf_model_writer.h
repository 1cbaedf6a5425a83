// Writes a Hugging Face checkpoint of the llama family as a llama.cpp GGUF file, tensor bytes
// arriving in HF names, dtypes and layouts, in any order and from any thread: each range is
// renamed, row-permuted (llama Q/K), converted or quantised on its way into a GgufWriter. Shared by
// `shoal convert` and `shoal merge --format gguf`. Internal to the io layer; implemented in
// src/io/gguf_model_writer.cpp.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/gguf_arch.h"
#include "shoal/gguf.h"
#include "shoal/safetensors.h"

namespace shoal::io {

// The type the matrices are stored in. 1-D tensors, norms and biases are always F32, as
// llama.cpp's converter stores them; kQ8_0 falls back to F16 for rows that are not a multiple of
// 32 (llama.cpp's fallback). kKeep keeps each matrix's own dtype.
enum class GgufOutType { kKeep, kF32, kF16, kBF16, kQ8_0 };
// "f32", "f16", "bf16", "q8_0"; nullopt for anything else.
std::optional<GgufOutType> parse_gguf_out_type(std::string_view name);

class GgufModelWriter {
 public:
  // hf_tensors: every tensor the caller will write, in HF names, dtypes and shapes. tokenizer:
  // tokenizer.* entries (see gguf_tokenizer.h). Throws ConfigError naming `where` and the tensor
  // or key for what has no GGUF form; IoError when the file cannot be created.
  GgufModelWriter(const std::filesystem::path& path, const nlohmann::json& hf_config,
                  const std::vector<OutputTensorSpec>& hf_tensors, std::vector<GgufKv> tokenizer,
                  GgufOutType type, const std::string& name, const std::string& where);
  ~GgufModelWriter();
  GgufModelWriter(const GgufModelWriter&) = delete;
  GgufModelWriter& operator=(const GgufModelWriter&) = delete;

  // Whether HF tensor i is left out (rotary_emb.inv_freq; lm_head of a tied model): its writes
  // are ignored.
  bool skipped(size_t i) const { return plan_[i].out < 0; }
  // Bytes [byte_offset, byte_offset + n) of HF tensor i, whole elements in its HF dtype and
  // layout. A tensor stored as Q8_0 takes whole 32-element blocks (any range that starts and ends
  // at multiples of 32 elements). Thread-safe; distinct ranges may arrive in any order.
  void write(size_t i, uint64_t byte_offset, const void* data, size_t n);
  // Checks every byte came, then renames the file into place.
  void finish();

  const std::vector<std::string>& warnings() const { return warnings_; }
  // The GGUF type tensor i is stored as (meaningless when skipped).
  GgmlType stored_type(size_t i) const { return plan_[i].type; }
  uint64_t file_bytes() const { return file_bytes_; }

 private:
  struct Planned {
    int64_t out = -1;  // index in the GGUF tensor list, -1: skipped
    DType src = DType::kF32;
    GgmlType type = GgmlType::kF32;
    int64_t rows = 1, cols = 1;
    int64_t qk_heads = 0;  // > 0: rows interleaved for llama.cpp
  };
  // `count` elements of `src` to the stored tensor from element `dst_elem` on.
  void write_segment(const Planned& p, int64_t dst_elem, const std::byte* src, int64_t count);

  std::vector<Planned> plan_;
  std::vector<std::string> warnings_;
  uint64_t file_bytes_ = 0;
  std::unique_ptr<GgufWriter> writer_;
};

}  // namespace shoal::io
