// config.json <-> {arch}.* metadata for the llama family. The GGUF keys are llama.cpp's
// (gguf-py constants.py: LLM_KV_*); the HF keys are transformers' LlamaConfig / MistralConfig /
// Qwen2Config / Qwen3Config spellings with their defaults.
#include <charconv>
#include <cmath>

#include "io/gguf_arch.h"
#include "io/json_util.h"
#include "shoal/error.h"

namespace shoal::io {
namespace {

using nlohmann::json;

// ---- GGUF -> config.json ----------------------------------------------------------------------

class MetadataReader {
 public:
  explicit MetadataReader(const GgufFile& f) : f_(f) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError(f_.path().string() + ": " + what);
  }

  int64_t positive_int(const std::string& key, std::optional<int64_t> fallback) const {
    const std::optional<int64_t> v = f_.get_int(key);
    if (!v && !fallback) fail("key " + io::quoted(key) + " is missing");
    const int64_t x = v ? *v : *fallback;
    if (x <= 0) fail("key " + io::quoted(key) + " is " + std::to_string(x) + ", expected > 0");
    return x;
  }

 private:
  const GgufFile& f_;
};

}  // namespace

json gguf_to_hf_config(const GgufFile& file, const GgufArch& arch) {
  const MetadataReader m(file);
  const std::string a(arch.gguf_name);
  const int64_t hidden = m.positive_int(a + ".embedding_length", std::nullopt);
  const int64_t n_head = m.positive_int(a + ".attention.head_count", std::nullopt);
  const int64_t n_head_kv = m.positive_int(a + ".attention.head_count_kv", n_head);
  if (n_head % n_head_kv != 0) {
    m.fail("key '" + a + ".attention.head_count' (" + std::to_string(n_head) +
           ") is not a multiple of head_count_kv (" + std::to_string(n_head_kv) + ")");
  }
  if (!file.find(a + ".attention.key_length") && hidden % n_head != 0) {
    m.fail("key '" + a + ".embedding_length' (" + std::to_string(hidden) +
           ") is not a multiple of the head count " + std::to_string(n_head));
  }
  const int64_t head_dim = m.positive_int(a + ".attention.key_length", hidden / n_head);
  if (m.positive_int(a + ".attention.value_length", head_dim) != head_dim) {
    m.fail("key '" + a + ".attention.value_length' differs from the key length " +
           std::to_string(head_dim) + "; the engine needs them equal");
  }
  if (m.positive_int(a + ".rope.dimension_count", head_dim) != head_dim) {
    m.fail("key '" + a + ".rope.dimension_count' differs from the head size " +
           std::to_string(head_dim) + "; partial rotary embeddings are not supported");
  }
  const std::optional<double> eps = file.get_float(a + ".attention.layer_norm_rms_epsilon");
  if (!eps) m.fail("key '" + a + ".attention.layer_norm_rms_epsilon' is missing");

  const GgufTensorInfo* embd = file.find_tensor("token_embd.weight");
  if (embd == nullptr) m.fail("tensor 'token_embd.weight' is missing");
  int64_t vocab = embd->shape[0];
  if (const GgufArray* tokens = file.get_array("tokenizer.ggml.tokens")) {
    vocab = static_cast<int64_t>(tokens->values.size());
  }
  if (embd->shape != std::vector<int64_t>{vocab, hidden}) {
    m.fail("tensor 'token_embd.weight' has shape " + shape_to_string(embd->shape) + ", expected [" +
           std::to_string(vocab) + ", " + std::to_string(hidden) +
           "] (tokenizer.ggml.tokens by embedding_length)");
  }
  // Llama 3.1-style RoPE scaling is stored only as this tensor of per-frequency divisors; a
  // config without it would silently compute the wrong positions.
  if (file.find_tensor("rope_freqs.weight") != nullptr) {
    m.fail("tensor 'rope_freqs.weight' (llama3 RoPE scaling in GGUF form) is not supported yet");
  }

  json c;
  c["architectures"] = json::array({std::string(arch.hf_class)});
  c["model_type"] = std::string(arch.model_type);
  c["hidden_size"] = hidden;
  c["intermediate_size"] = m.positive_int(a + ".feed_forward_length", std::nullopt);
  c["num_hidden_layers"] = m.positive_int(a + ".block_count", std::nullopt);
  c["num_attention_heads"] = n_head;
  c["num_key_value_heads"] = n_head_kv;
  c["head_dim"] = head_dim;
  c["rms_norm_eps"] = *eps;
  c["rope_theta"] = file.get_float(a + ".rope.freq_base").value_or(10000.0);
  c["max_position_embeddings"] = m.positive_int(a + ".context_length", std::nullopt);
  c["vocab_size"] = vocab;
  c["tie_word_embeddings"] = file.find_tensor("output.weight") == nullptr;
  c["attention_bias"] = file.find_tensor("blk.0.attn_q.bias") != nullptr;
  c["hidden_act"] = "silu";
  c["torch_dtype"] = embd->type == GgmlType::kF16    ? "float16"
                     : embd->type == GgmlType::kBF16 ? "bfloat16"
                                                     : "float32";
  if (const auto bos = file.get_int("tokenizer.ggml.bos_token_id")) c["bos_token_id"] = *bos;
  if (const auto eos = file.get_int("tokenizer.ggml.eos_token_id")) c["eos_token_id"] = *eos;
  // Scaled RoPE is passed on as transformers spells it, for the engine to accept or refuse.
  const std::optional<std::string> scaling = file.get_string(a + ".rope.scaling.type");
  if (scaling && *scaling != "none") {
    json s = {{"rope_type", *scaling}};
    if (const auto f = file.get_float(a + ".rope.scaling.factor")) s["factor"] = *f;
    if (const auto n = file.get_int(a + ".rope.scaling.original_context_length")) {
      s["original_max_position_embeddings"] = *n;
    }
    c["rope_scaling"] = s;
  } else if (const auto f = file.get_float(a + ".rope.scale_linear"); f && *f != 1.0) {
    c["rope_scaling"] = {{"rope_type", "linear"}, {"factor", *f}};
  }
  return c;
}

namespace {

double shortest_f32(double x) {
  const float f = static_cast<float>(x);
  if (static_cast<double>(f) != x || !std::isfinite(f)) return x;
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, f);
  double out = x;
  std::from_chars(buf, res.ptr, out);
  return out;
}

}  // namespace

void shorten_f32_config_values(json& config) {
  for (const char* key : {"rms_norm_eps", "rope_theta"}) {
    if (config.contains(key) && config[key].is_number_float()) {
      config[key] = shortest_f32(config[key].get<double>());
    }
  }
  if (config.contains("rope_scaling") && config["rope_scaling"].is_object()) {
    json& s = config["rope_scaling"];
    if (s.contains("factor") && s["factor"].is_number_float()) {
      s["factor"] = shortest_f32(s["factor"].get<double>());
    }
  }
}

// ---- config.json -> GGUF ----------------------------------------------------------------------

namespace {

class ConfigKeys {
 public:
  ConfigKeys(const json& c, std::string where) : c_(c), where_(std::move(where)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw ConfigError(where_ + ": config key " + io::quoted(key) + " " + what);
  }
  bool has(const char* key) const { return c_.contains(key) && !c_.at(key).is_null(); }
  int64_t positive_int(const char* key, std::optional<int64_t> fallback) const {
    if (!has(key)) {
      if (!fallback) fail(key, "is missing");
      return *fallback;
    }
    const json& v = c_.at(key);
    if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > UINT32_MAX) {
      fail(key, "must be a positive 32-bit integer, got " + io::bounded_dump(v));
    }
    return v.get<int64_t>();
  }
  double positive_number(const json& obj, const char* key, std::optional<double> fallback) const {
    if (!obj.contains(key) || obj.at(key).is_null()) {
      if (!fallback) fail(key, "is missing");
      return *fallback;
    }
    const json& v = obj.at(key);
    if (!v.is_number() || !(v.get<double>() > 0.0) || !std::isfinite(v.get<double>())) {
      fail(key, "must be a positive number, got " + io::bounded_dump(v));
    }
    return v.get<double>();
  }
  const json& raw() const { return c_; }

 private:
  const json& c_;
  std::string where_;
};

}  // namespace

std::vector<GgufKv> hf_to_gguf_metadata(const json& config, const GgufArch& arch,
                                        int64_t vocab_rows, uint32_t file_type,
                                        const std::string& name, const std::string& where,
                                        std::vector<std::string>& warnings) {
  const ConfigKeys k(config, where);
  const std::string a(arch.gguf_name);
  const std::string model_type = config.value("model_type", std::string());
  int64_t default_ctx = 2048;
  if (model_type == "mistral") default_ctx = 4096 * 32;
  if (model_type == "qwen2" || model_type == "qwen3") default_ctx = 32768;

  const int64_t hidden = k.positive_int("hidden_size", std::nullopt);
  const int64_t n_head = k.positive_int("num_attention_heads", std::nullopt);
  const int64_t n_head_kv = k.positive_int("num_key_value_heads", n_head);
  if (n_head % n_head_kv != 0) {
    k.fail("num_key_value_heads", "(" + std::to_string(n_head_kv) +
                                      ") must divide num_attention_heads (" +
                                      std::to_string(n_head) + ")");
  }
  if (!k.has("head_dim") && hidden % n_head != 0) {
    k.fail("hidden_size", "must be a multiple of num_attention_heads when head_dim is absent");
  }
  const int64_t head_dim = k.positive_int("head_dim", hidden / n_head);
  if (k.has("hidden_act") && config.at("hidden_act") != "silu") {
    k.fail("hidden_act", "is " + io::bounded_dump(config.at("hidden_act")) +
                             "; llama.cpp's llama-family models use silu");
  }
  if (k.has("use_sliding_window") && config.at("use_sliding_window") == true) {
    k.fail("use_sliding_window", "is true; GGUF's qwen2/qwen3 models have no sliding window");
  }
  const int64_t ctx = k.positive_int("max_position_embeddings", default_ctx);
  if (model_type == "mistral") {
    // transformers' Mistral default is a 4096-token window; llama.cpp's llama architecture
    // attends to the whole context, as its converter stores Mistral.
    const int64_t window = k.has("sliding_window")             ? k.positive_int("sliding_window", 0)
                           : config.contains("sliding_window") ? 0
                                                               : 4096;
    if (window > 0 && window < ctx) {
      warnings.push_back(where + ": sliding_window " + std::to_string(window) +
                         " is dropped (GGUF stores Mistral as llama, which attends to the whole "
                         "context; outputs differ only past " +
                         std::to_string(window) + " tokens)");
    }
  }

  std::vector<GgufKv> kv;
  kv.push_back(GgufKv::str("general.architecture", a));
  kv.push_back(GgufKv::str("general.name", name));
  kv.push_back(GgufKv::u32("general.file_type", file_type));
  kv.push_back(GgufKv::u32("general.quantization_version", 2));
  kv.push_back(GgufKv::u32(a + ".vocab_size", static_cast<uint32_t>(vocab_rows)));
  kv.push_back(GgufKv::u32(a + ".context_length", static_cast<uint32_t>(ctx)));
  kv.push_back(GgufKv::u32(a + ".embedding_length", static_cast<uint32_t>(hidden)));
  kv.push_back(GgufKv::u32(a + ".block_count",
                           static_cast<uint32_t>(k.positive_int("num_hidden_layers", {}))));
  kv.push_back(GgufKv::u32(a + ".feed_forward_length",
                           static_cast<uint32_t>(k.positive_int("intermediate_size", {}))));
  kv.push_back(GgufKv::u32(a + ".attention.head_count", static_cast<uint32_t>(n_head)));
  kv.push_back(GgufKv::u32(a + ".attention.head_count_kv", static_cast<uint32_t>(n_head_kv)));
  if (k.has("head_dim") || head_dim * n_head != hidden) {
    kv.push_back(GgufKv::u32(a + ".attention.key_length", static_cast<uint32_t>(head_dim)));
    kv.push_back(GgufKv::u32(a + ".attention.value_length", static_cast<uint32_t>(head_dim)));
  }
  kv.push_back(GgufKv::u32(a + ".rope.dimension_count", static_cast<uint32_t>(head_dim)));
  kv.push_back(GgufKv::f32(a + ".rope.freq_base",
                           static_cast<float>(k.positive_number(config, "rope_theta", 10000.0))));
  kv.push_back(GgufKv::f32(a + ".attention.layer_norm_rms_epsilon",
                           static_cast<float>(k.positive_number(config, "rms_norm_eps", 1e-6))));

  if (k.has("rope_scaling")) {
    const json& s = config.at("rope_scaling");
    if (!s.is_object()) k.fail("rope_scaling", "must be an object or null");
    std::string type = "default";
    for (const char* t : {"rope_type", "type"}) {
      if (s.contains(t) && s.at(t).is_string()) {
        type = s.at(t).get<std::string>();
        break;
      }
    }
    if (type == "linear") {
      kv.push_back(GgufKv::str(a + ".rope.scaling.type", "linear"));
      kv.push_back(GgufKv::f32(a + ".rope.scaling.factor",
                               static_cast<float>(k.positive_number(s, "factor", std::nullopt))));
    } else if (type != "default") {
      k.fail("rope_scaling", "has rope_type " + io::quoted(type) +
                                 "; shoal writes GGUF for default and linear RoPE only");
    }
  }
  return kv;
}

}  // namespace shoal::io
