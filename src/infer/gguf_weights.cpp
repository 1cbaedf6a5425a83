// A GGUF file of the llama family (llama, qwen2, qwen3) presented as a Hugging Face checkpoint:
// config.json's keys derived from the metadata, HF tensor names, and HF's tensor layouts. Three
// things differ from the file:
// - llama.cpp's converter permutes the rows of Q and K for the llama architecture (HF's
//   rotate-half RoPE layout -> interleaved pairs, as Meta's original checkpoints had them); this
//   source undoes that, in a copy it owns;
// - Q8_0 tensors are dequantised to F32 once, at open (owned);
// - an F32/F16/BF16 tensor whose data is not aligned to its element size (a file with
//   general.alignment 1 or 2) is copied, so the engine may read it as float/uint16 arrays.
// Every other tensor is a zero-copy view into the mapped file.
#include <algorithm>
#include <cstring>
#include <map>

#include "io/json_util.h"
#include "shoal/error.h"
#include "shoal/gguf.h"
#include "shoal/weights.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct GgufArch {
  std::string_view gguf_name;   // general.architecture
  std::string_view hf_class;    // config.json "architectures"
  std::string_view model_type;  // config.json "model_type"
  bool interleaved_qk;          // llama.cpp's converter permuted Q/K rows
};

constexpr GgufArch kArchs[] = {
    {"llama", "LlamaForCausalLM", "llama", true},
    {"qwen2", "Qwen2ForCausalLM", "qwen2", false},
    {"qwen3", "Qwen3ForCausalLM", "qwen3", false},
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

// "blk.12.attn_q.weight" -> "model.layers.12.self_attn.q_proj.weight". A name shoal does not
// know is kept as it is, so that the engine's tensor check reports it rather than skipping it.
std::string hf_name(std::string_view gguf) {
  const size_t dot = gguf.rfind('.');
  if (dot == std::string_view::npos) return std::string(gguf);
  const std::string_view stem = gguf.substr(0, dot);
  const std::string suffix(gguf.substr(dot));
  for (const auto& [from, to] : kGlobalNames) {
    if (stem == from) return std::string(to) + suffix;
  }
  if (!stem.starts_with("blk.")) return std::string(gguf);
  const std::string_view rest = stem.substr(4);
  const size_t dot2 = rest.find('.');
  if (dot2 == std::string_view::npos) return std::string(gguf);
  const std::string_view layer = rest.substr(0, dot2);
  const std::string_view part = rest.substr(dot2 + 1);
  const bool canonical_number =
      !layer.empty() && (layer.size() == 1 || layer[0] != '0') &&
      std::all_of(layer.begin(), layer.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
  if (!canonical_number) return std::string(gguf);
  for (const auto& [from, to] : kBlockNames) {
    if (part == from) return "model.layers." + std::string(layer) + "." + std::string(to) + suffix;
  }
  return std::string(gguf);
}

// llama.cpp's converter stores each head of Q and K with its rows interleaved: row 2i + s of a
// head holds HF's row s * head_dim / 2 + i (s = 0, 1 picks the half that HF's rotate_half
// pairs with the other). This is the inverse, a row gather into a new buffer.
std::vector<std::byte> unpermute_rows(const std::byte* src, int64_t rows, size_t row_bytes,
                                      int64_t n_head) {
  const int64_t head_dim = rows / n_head;
  const int64_t half = head_dim / 2;
  std::vector<std::byte> out(static_cast<size_t>(rows) * row_bytes);
  for (int64_t h = 0; h < n_head; ++h) {
    for (int64_t s = 0; s < 2; ++s) {
      for (int64_t i = 0; i < half; ++i) {
        const int64_t dst_row = h * head_dim + s * half + i;
        const int64_t src_row = h * head_dim + 2 * i + s;
        std::memcpy(out.data() + dst_row * row_bytes, src + src_row * row_bytes, row_bytes);
      }
    }
  }
  return out;
}

class GgufWeights : public WeightSource {
 public:
  explicit GgufWeights(GgufFile file) : file_(std::move(file)) {
    const GgufArch& arch = find_arch();
    build_config(arch);
    const int64_t n_head = config_.at("num_attention_heads").get<int64_t>();
    const int64_t n_head_kv = config_.at("num_key_value_heads").get<int64_t>();
    for (const GgufTensorInfo& t : file_.tensors()) add_tensor(t, arch, n_head, n_head_kv);
  }

  const json& config() const override { return config_; }
  std::optional<TensorView> tensor(std::string_view name) const override {
    const auto it = views_.find(name);
    if (it == views_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<std::string> tensor_names() const override { return names_; }
  std::string describe() const override { return file_.path().string(); }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError(file_.path().string() + ": " + what);
  }

  const GgufArch& find_arch() const {
    const std::optional<std::string> name = file_.get_string("general.architecture");
    if (!name) fail("key 'general.architecture' is missing");
    for (const GgufArch& a : kArchs) {
      if (a.gguf_name == *name) return a;
    }
    fail("key 'general.architecture' is " + io::quoted(*name) +
         "; shoal reads llama, qwen2 and qwen3");
  }

  int64_t positive_int(const std::string& key, std::optional<int64_t> fallback) const {
    const std::optional<int64_t> v = file_.get_int(key);
    if (!v && !fallback) fail("key " + io::quoted(key) + " is missing");
    const int64_t x = v ? *v : *fallback;
    if (x <= 0) fail("key " + io::quoted(key) + " is " + std::to_string(x) + ", expected > 0");
    return x;
  }

  void build_config(const GgufArch& arch) {
    const std::string a(arch.gguf_name);
    const int64_t hidden = positive_int(a + ".embedding_length", std::nullopt);
    const int64_t n_head = positive_int(a + ".attention.head_count", std::nullopt);
    const int64_t n_head_kv = positive_int(a + ".attention.head_count_kv", n_head);
    if (n_head % n_head_kv != 0) {
      fail("key '" + a + ".attention.head_count' (" + std::to_string(n_head) +
           ") is not a multiple of head_count_kv (" + std::to_string(n_head_kv) + ")");
    }
    if (!file_.find(a + ".attention.key_length") && hidden % n_head != 0) {
      fail("key '" + a + ".embedding_length' (" + std::to_string(hidden) +
           ") is not a multiple of the head count " + std::to_string(n_head));
    }
    const int64_t head_dim = positive_int(a + ".attention.key_length", hidden / n_head);
    if (positive_int(a + ".attention.value_length", head_dim) != head_dim) {
      fail("key '" + a + ".attention.value_length' differs from the key length " +
           std::to_string(head_dim) + "; the engine needs them equal");
    }
    if (positive_int(a + ".rope.dimension_count", head_dim) != head_dim) {
      fail("key '" + a + ".rope.dimension_count' differs from the head size " +
           std::to_string(head_dim) + "; partial rotary embeddings are not supported");
    }
    const std::optional<double> eps = file_.get_float(a + ".attention.layer_norm_rms_epsilon");
    if (!eps) fail("key '" + a + ".attention.layer_norm_rms_epsilon' is missing");

    const GgufTensorInfo* embd = file_.find_tensor("token_embd.weight");
    if (embd == nullptr) fail("tensor 'token_embd.weight' is missing");
    int64_t vocab = embd->shape[0];
    if (const GgufArray* tokens = file_.get_array("tokenizer.ggml.tokens")) {
      vocab = static_cast<int64_t>(tokens->values.size());
    }
    if (embd->shape != std::vector<int64_t>{vocab, hidden}) {
      fail("tensor 'token_embd.weight' has shape " + shape_to_string(embd->shape) + ", expected [" +
           std::to_string(vocab) + ", " + std::to_string(hidden) +
           "] (tokenizer.ggml.tokens by embedding_length)");
    }
    // Llama 3.1-style RoPE scaling is stored only as this tensor of per-frequency divisors; a
    // config without it would silently compute the wrong positions.
    if (file_.find_tensor("rope_freqs.weight") != nullptr) {
      fail("tensor 'rope_freqs.weight' (llama3 RoPE scaling in GGUF form) is not supported yet");
    }

    json c;
    c["architectures"] = json::array({std::string(arch.hf_class)});
    c["model_type"] = std::string(arch.model_type);
    c["hidden_size"] = hidden;
    c["intermediate_size"] = positive_int(a + ".feed_forward_length", std::nullopt);
    c["num_hidden_layers"] = positive_int(a + ".block_count", std::nullopt);
    c["num_attention_heads"] = n_head;
    c["num_key_value_heads"] = n_head_kv;
    c["head_dim"] = head_dim;
    c["rms_norm_eps"] = *eps;
    c["rope_theta"] = file_.get_float(a + ".rope.freq_base").value_or(10000.0);
    c["max_position_embeddings"] = positive_int(a + ".context_length", std::nullopt);
    c["vocab_size"] = vocab;
    c["tie_word_embeddings"] = file_.find_tensor("output.weight") == nullptr;
    c["attention_bias"] = file_.find_tensor("blk.0.attn_q.bias") != nullptr;
    c["hidden_act"] = "silu";
    c["torch_dtype"] = embd->type == GgmlType::kF16    ? "float16"
                       : embd->type == GgmlType::kBF16 ? "bfloat16"
                                                       : "float32";
    if (const auto bos = file_.get_int("tokenizer.ggml.bos_token_id")) c["bos_token_id"] = *bos;
    if (const auto eos = file_.get_int("tokenizer.ggml.eos_token_id")) c["eos_token_id"] = *eos;
    // Scaled RoPE is passed on as transformers spells it, for the engine to accept or refuse.
    const std::optional<std::string> scaling = file_.get_string(a + ".rope.scaling.type");
    if (scaling && *scaling != "none") {
      json s = {{"rope_type", *scaling}};
      if (const auto f = file_.get_float(a + ".rope.scaling.factor")) s["factor"] = *f;
      if (const auto n = file_.get_int(a + ".rope.scaling.original_context_length")) {
        s["original_max_position_embeddings"] = *n;
      }
      c["rope_scaling"] = s;
    } else if (const auto f = file_.get_float(a + ".rope.scale_linear"); f && *f != 1.0) {
      c["rope_scaling"] = {{"rope_type", "linear"}, {"factor", *f}};
    }
    config_ = std::move(c);
  }

  void add_tensor(const GgufTensorInfo& t, const GgufArch& arch, int64_t n_head,
                  int64_t n_head_kv) {
    std::string name = hf_name(t.name);
    if (views_.contains(name)) {
      fail("tensor " + io::quoted(t.name) + " maps to " + io::quoted(name) +
           ", which another tensor already has");
    }
    TensorView v = file_.raw_view(t);
    bool owned = false;
    if (t.type == GgmlType::kQ8_0) {
      std::vector<std::byte> f32(static_cast<size_t>(shape_numel(t.shape)) * sizeof(float));
      dequantize_q8_0(v.data, reinterpret_cast<float*>(f32.data()), shape_numel(t.shape));
      v = own(DType::kF32, t.shape, std::move(f32));
      owned = true;
    }

    const bool is_q =
        name.ends_with("self_attn.q_proj.weight") || name.ends_with("self_attn.q_proj.bias");
    const bool is_k =
        name.ends_with("self_attn.k_proj.weight") || name.ends_with("self_attn.k_proj.bias");
    if (arch.interleaved_qk && (is_q || is_k)) {
      const int64_t heads = is_q ? n_head : n_head_kv;
      const int64_t rows = v.shape[0];
      if (rows % (2 * heads) != 0) {
        fail("tensor " + io::quoted(t.name) + " has " + std::to_string(rows) +
             " rows, which do not split into " + std::to_string(heads) + " heads of even size");
      }
      const size_t row_bytes = v.nbytes / static_cast<size_t>(rows);
      std::vector<std::byte> hf = unpermute_rows(v.data, rows, row_bytes, heads);
      if (owned) owned_.pop_back();  // the dequantised copy, now permuted into `hf`
      v = own(v.dtype, v.shape, std::move(hf));
    } else if (reinterpret_cast<uintptr_t>(v.data) % dtype_size(v.dtype) != 0) {
      v = own(v.dtype, v.shape, std::vector<std::byte>(v.data, v.data + v.nbytes));
    }
    names_.push_back(name);
    views_.emplace(std::move(name), std::move(v));
  }

  // Keeps `bytes` alive with this source and returns a view of them.
  TensorView own(DType dtype, const std::vector<int64_t>& shape, std::vector<std::byte> bytes) {
    owned_.push_back(std::move(bytes));  // moving a vector keeps its heap buffer in place
    const std::vector<std::byte>& b = owned_.back();
    return TensorView{dtype, shape, b.data(), b.size()};
  }

  GgufFile file_;
  json config_;
  std::vector<std::string> names_;  // HF names, in file order
  std::map<std::string, TensorView, std::less<>> views_;
  std::vector<std::vector<std::byte>> owned_;
};

}  // namespace

std::unique_ptr<WeightSource> open_gguf_weights(const fs::path& file) {
  return std::make_unique<GgufWeights>(GgufFile::open(file));
}

}  // namespace shoal
