// The llama family in GGUF and in Hugging Face form: architecture names, tensor names, Q/K row
// order, and the metadata <-> config.json keys, written from llama.cpp's published key list
// (gguf-py constants) and its converter's behaviour (convert_hf_to_gguf.py, LlamaModel /
// Qwen2Model / Qwen3Model).
#include "io/gguf_arch.h"

#include <algorithm>
#include <cstring>

#include "io/json_util.h"
#include "shoal/error.h"

namespace shoal::io {
namespace {

using nlohmann::json;

constexpr GgufArch kArchs[] = {
    {"llama", "LlamaForCausalLM", "llama", true},
    {"qwen2", "Qwen2ForCausalLM", "qwen2", false},
    {"qwen3", "Qwen3ForCausalLM", "qwen3", false},
};

// HF classes -> GGUF architecture. Mistral is stored as llama, as llama.cpp's converter does.
struct HfClass {
  std::string_view hf_class, model_type, gguf_name;
  int64_t default_max_positions;  // transformers' config default
};
constexpr HfClass kHfClasses[] = {
    {"LlamaForCausalLM", "llama", "llama", 2048},
    {"MistralForCausalLM", "mistral", "llama", 4096 * 32},
    {"Qwen2ForCausalLM", "qwen2", "qwen2", 32768},
    {"Qwen3ForCausalLM", "qwen3", "qwen3", 32768},
};

// GGUF tensor name stems -> HF module paths; the ".weight"/".bias" suffix carries over.
constexpr std::pair<std::string_view, std::string_view> kGlobalNames[] = {
    {"token_embd", "model.embed_tokens"},
    {"output_norm", "model.norm"},
    {"output", "lm_head"},
};
constexpr std::pair<std::string_view, std::string_view> kBlockNames[] = {
    {"attn_norm", "input_layernorm"},    {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},      {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"}, {"attn_q_norm", "self_attn.q_norm"},
    {"attn_k_norm", "self_attn.k_norm"}, {"ffn_norm", "post_attention_layernorm"},
    {"ffn_gate", "mlp.gate_proj"},       {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
};

bool is_layer_number(std::string_view s) {
  return !s.empty() && (s.size() == 1 || s[0] != '0') &&
         std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

// Splits "a.b.weight" into ("a.b", ".weight"); the suffix must be .weight or .bias.
std::optional<std::pair<std::string_view, std::string_view>> split_suffix(std::string_view name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string_view::npos) return std::nullopt;
  return std::make_pair(name.substr(0, dot), name.substr(dot));
}

}  // namespace

const GgufArch* find_gguf_arch(std::string_view general_architecture) {
  for (const GgufArch& a : kArchs) {
    if (a.gguf_name == general_architecture) return &a;
  }
  return nullptr;
}

const GgufArch& gguf_arch_for_config(const json& config, const std::string& where) {
  std::string cls, type;
  if (config.contains("architectures") && config["architectures"].is_array() &&
      !config["architectures"].empty() && config["architectures"][0].is_string()) {
    cls = config["architectures"][0].get<std::string>();
  }
  if (config.contains("model_type") && config["model_type"].is_string()) {
    type = config["model_type"].get<std::string>();
  }
  for (const HfClass& c : kHfClasses) {
    if ((!cls.empty() && cls == c.hf_class) || (cls.empty() && type == c.model_type)) {
      return *find_gguf_arch(c.gguf_name);
    }
  }
  throw ConfigError(where + ": architecture " + io::quoted(cls.empty() ? type : cls) +
                    " has no GGUF form in shoal (supported: LlamaForCausalLM, MistralForCausalLM, "
                    "Qwen2ForCausalLM, Qwen3ForCausalLM)");
}

std::string gguf_to_hf_name(std::string_view gguf) {
  const auto split = split_suffix(gguf);
  if (!split) return std::string(gguf);
  const auto [stem, suffix] = *split;
  for (const auto& [from, to] : kGlobalNames) {
    if (stem == from) return std::string(to) + std::string(suffix);
  }
  if (!stem.starts_with("blk.")) return std::string(gguf);
  const std::string_view rest = stem.substr(4);
  const size_t dot = rest.find('.');
  if (dot == std::string_view::npos) return std::string(gguf);
  const std::string_view layer = rest.substr(0, dot);
  const std::string_view part = rest.substr(dot + 1);
  if (!is_layer_number(layer)) return std::string(gguf);
  for (const auto& [from, to] : kBlockNames) {
    if (part == from) {
      return "model.layers." + std::string(layer) + "." + std::string(to) + std::string(suffix);
    }
  }
  return std::string(gguf);
}

std::optional<std::string> hf_to_gguf_name(std::string_view hf) {
  const auto split = split_suffix(hf);
  if (!split) return std::nullopt;
  const auto [stem, suffix] = *split;
  if (suffix != ".weight" && suffix != ".bias") return std::nullopt;
  for (const auto& [to, from] : kGlobalNames) {
    if (stem == from) return std::string(to) + std::string(suffix);
  }
  constexpr std::string_view kPrefix = "model.layers.";
  if (!stem.starts_with(kPrefix)) return std::nullopt;
  const std::string_view rest = stem.substr(kPrefix.size());
  const size_t dot = rest.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const std::string_view layer = rest.substr(0, dot);
  const std::string_view part = rest.substr(dot + 1);
  if (!is_layer_number(layer)) return std::nullopt;
  for (const auto& [to, from] : kBlockNames) {
    if (part == from) {
      return "blk." + std::string(layer) + "." + std::string(to) + std::string(suffix);
    }
  }
  return std::nullopt;
}

QkKind qk_kind(std::string_view hf_name) {
  for (std::string_view s : {".weight", ".bias"}) {
    if (!hf_name.ends_with(s)) continue;
    const std::string_view stem = hf_name.substr(0, hf_name.size() - s.size());
    if (stem.ends_with("self_attn.q_proj")) return QkKind::kQ;
    if (stem.ends_with("self_attn.k_proj")) return QkKind::kK;
  }
  return QkKind::kNone;
}

int64_t gguf_qk_row(int64_t hf_row, int64_t rows, int64_t n_head) {
  const int64_t head_dim = rows / n_head;
  const int64_t half = head_dim / 2;
  const int64_t h = hf_row / head_dim, r = hf_row % head_dim;
  return h * head_dim + 2 * (r % half) + r / half;
}

void permute_qk_rows(const std::byte* src, std::byte* dst, int64_t rows, size_t row_bytes,
                     int64_t n_head, bool to_gguf) {
  for (int64_t hf = 0; hf < rows; ++hf) {
    const int64_t gg = gguf_qk_row(hf, rows, n_head);
    const int64_t from = to_gguf ? hf : gg;
    const int64_t to = to_gguf ? gg : hf;
    std::memcpy(dst + to * row_bytes, src + from * row_bytes, row_bytes);
  }
}

}  // namespace shoal::io
