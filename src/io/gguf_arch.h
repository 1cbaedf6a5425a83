// What llama.cpp's GGUF files and Hugging Face checkpoints of the llama family (Llama, Mistral,
// Qwen2, Qwen3) call the same things: architectures, tensor names, the Q/K row order, and
// config.json keys <-> {arch}.* metadata. Shared by the GGUF weight source (infer), GGUF source
// models of merges (ModelFolder), `shoal convert` and `shoal merge --format gguf`. Internal to
// the io layer; implemented in src/io/gguf_arch.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "shoal/gguf.h"

namespace shoal::io {

struct GgufArch {
  std::string_view gguf_name;   // general.architecture
  std::string_view hf_class;    // config.json "architectures" written for it
  std::string_view model_type;  // config.json "model_type" written for it
  // llama.cpp's converter stores each head of Q and K with its rows interleaved (Meta's original
  // RoPE layout) rather than in HF's rotate-half order.
  bool interleaved_qk;
};

// The architecture of a GGUF file (llama, qwen2, qwen3); nullptr for any other.
const GgufArch* find_gguf_arch(std::string_view general_architecture);
// The GGUF architecture an HF config.json converts to, as llama.cpp's converter maps it
// (LlamaForCausalLM and MistralForCausalLM -> llama, Qwen2 -> qwen2, Qwen3 -> qwen3). Throws
// ConfigError naming `where` for any other.
const GgufArch& gguf_arch_for_config(const nlohmann::json& config, const std::string& where);

// "blk.12.attn_q.weight" -> "model.layers.12.self_attn.q_proj.weight"; a name shoal does not
// know is returned unchanged (so that the engine's tensor check reports it).
std::string gguf_to_hf_name(std::string_view gguf_name);
// The inverse; nullopt for an HF name that has no GGUF spelling.
std::optional<std::string> hf_to_gguf_name(std::string_view hf_name);
// Whether an HF tensor is a Q or K projection (weight or bias), whose rows llama.cpp interleaves.
enum class QkKind { kNone, kQ, kK };
QkKind qk_kind(std::string_view hf_name);

// Row r of a head in HF's rotate-half layout is row 2 (r mod d/2) + r div (d/2) of that head in
// llama.cpp's (d = rows / n_head, the head size).
int64_t gguf_qk_row(int64_t hf_row, int64_t rows, int64_t n_head);
// Gathers whole rows between the two layouts: to_gguf true for HF -> GGUF.
void permute_qk_rows(const std::byte* src, std::byte* dst, int64_t rows, size_t row_bytes,
                     int64_t n_head, bool to_gguf);

// config.json keys (transformers' spelling) derived from a GGUF file's metadata and tensors.
// FormatError "<file>: key '...' ..." for what is missing or inconsistent.
nlohmann::json gguf_to_hf_config(const GgufFile& file, const GgufArch& arch);

// GGUF stores rms_norm_eps, rope_theta and RoPE factors as f32: 1e-5 reads back as
// 9.99999974737875e-06. For a config.json people read, each such value that is exactly an f32 is
// replaced by the shortest decimal that rounds to the same f32 (1e-05); the engine, which rounds
// them to f32, sees no difference.
void shorten_f32_config_values(nlohmann::json& config);

// {arch}.* and general.* metadata for an HF config.json (see docs/GGUF.md for the keys).
// `vocab_rows`: the embedding's rows; `file_type`: llama.cpp's general.file_type. Throws
// ConfigError naming `where` and the key for a config llama.cpp cannot represent. Warnings (what
// llama.cpp drops, e.g. Mistral's sliding window) are appended to `warnings`.
std::vector<GgufKv> hf_to_gguf_metadata(const nlohmann::json& config, const GgufArch& arch,
                                        int64_t vocab_rows, uint32_t file_type,
                                        const std::string& name, const std::string& where,
                                        std::vector<std::string>& warnings);

}  // namespace shoal::io
