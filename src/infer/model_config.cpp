#include "infer/model_config.h"

#include <array>
#include <set>

#include "io/json_util.h"
#include "shoal/error.h"
#include "shoal/model_folder.h"

namespace shoal {
namespace {

using nlohmann::json;

struct ArchInfo {
  ModelArch arch;
  std::string_view class_name;
  std::string_view model_type;
  int64_t default_max_positions;  // transformers' config default
};

constexpr std::array<ArchInfo, 4> kArchs{{
    {ModelArch::kLlama, "LlamaForCausalLM", "llama", 2048},
    {ModelArch::kMistral, "MistralForCausalLM", "mistral", 4096 * 32},
    {ModelArch::kQwen2, "Qwen2ForCausalLM", "qwen2", 32768},
    {ModelArch::kQwen3, "Qwen3ForCausalLM", "qwen3", 32768},
}};

std::string supported_list() {
  std::string s;
  for (const auto& a : kArchs) {
    if (!s.empty()) s += ", ";
    s += std::string(a.class_name) + " (" + std::string(a.model_type) + ")";
  }
  return s;
}

// Reads config keys with one-line errors naming `where` and the key.
class ConfigReader {
 public:
  ConfigReader(const json& c, std::string_view where) : c_(c), where_(where) {}

  bool has(const char* key) const { return c_.contains(key) && !c_.at(key).is_null(); }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw ConfigError(where_ + ": config key '" + key + "' " + what);
  }

  int64_t integer(const char* key, std::optional<int64_t> fallback, int64_t min) const {
    if (!has(key)) {
      if (!fallback) fail(key, "is missing (the engine needs it)");
      return *fallback;
    }
    const json& v = c_.at(key);
    if (!v.is_number_integer() || v.get<int64_t>() < min) {
      fail(key, "must be an integer >= " + std::to_string(min) + ", got " + io::bounded_dump(v));
    }
    return v.get<int64_t>();
  }

  double number(const json& obj, const std::string& key, std::optional<double> fallback,
                bool positive) const {
    if (!obj.contains(key) || obj.at(key).is_null()) {
      if (!fallback) fail(key, "is missing (the engine needs it)");
      return *fallback;
    }
    const json& v = obj.at(key);
    if (!v.is_number() || (positive && !(v.get<double>() > 0.0))) {
      fail(key, std::string("must be a ") + (positive ? "positive " : "") + "number, got " +
                    io::bounded_dump(v));
    }
    return v.get<double>();
  }
  double number(const char* key, std::optional<double> fallback, bool positive) const {
    return number(c_, key, fallback, positive);
  }

  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = c_.at(key);
    if (!v.is_boolean()) fail(key, "must be true or false, got " + io::bounded_dump(v));
    return v.get<bool>();
  }

  std::optional<std::string> string(const char* key) const {
    if (!has(key)) return std::nullopt;
    const json& v = c_.at(key);
    if (!v.is_string()) fail(key, "must be a string, got " + io::bounded_dump(v));
    return v.get<std::string>();
  }

  const json& raw() const { return c_; }
  const std::string& where() const { return where_; }

 private:
  const json& c_;
  std::string where_;
};

const ArchInfo& resolve_arch(const ConfigReader& r) {
  const json& c = r.raw();
  std::optional<std::string> cls;
  if (r.has("architectures")) {
    const json& a = c.at("architectures");
    if (!a.is_array() || a.empty() || !a.at(0).is_string()) {
      r.fail("architectures",
             "must be a non-empty list of class names, got " + io::bounded_dump(a));
    }
    cls = a.at(0).get<std::string>();
  }
  const std::optional<std::string> type = r.string("model_type");
  const ArchInfo* by_cls = nullptr;
  const ArchInfo* by_type = nullptr;
  for (const auto& a : kArchs) {
    if (cls && *cls == a.class_name) by_cls = &a;
    if (type && *type == a.model_type) by_type = &a;
  }
  const ArchInfo* found = cls ? by_cls : by_type;
  if (found == nullptr || (cls && type && by_type != by_cls)) {
    throw ConfigError(r.where() + ": unsupported architecture: architectures " +
                      (cls ? io::quoted(*cls) : std::string("(absent)")) + ", model_type " +
                      (type ? io::quoted(*type) : std::string("(absent)")) +
                      "; supported: " + supported_list());
  }
  return *found;
}

// rope_scaling (or transformers 5's rope_parameters). `theta` is updated from rope_parameters
// when config.json has no rope_theta of its own.
RopeScaling parse_rope(const ConfigReader& r, double& theta) {
  const json& c = r.raw();
  const char* key = r.has("rope_scaling") ? "rope_scaling" : "rope_parameters";
  if (!r.has(key)) return {};
  const json& s = c.at(key);
  if (!s.is_object()) r.fail(key, "must be an object or null, got " + io::bounded_dump(s));
  if (std::string_view(key) == "rope_parameters" && !r.has("rope_theta") &&
      s.contains("rope_theta")) {
    theta = r.number(s, "rope_theta", std::nullopt, true);
  }
  std::string type = "default";
  for (const char* k : {"rope_type", "type"}) {
    if (s.contains(k) && s.at(k).is_string()) {
      type = s.at(k).get<std::string>();
      break;
    }
  }
  if (type == "default") return {};
  if (type != "llama3" && type != "linear") {
    r.fail(key, "has rope_type " + io::quoted(type) + "; supported: default, linear, llama3");
  }
  RopeScaling rs;
  rs.factor = r.number(s, "factor", std::nullopt, true);
  if (type == "linear") {
    rs.kind = RopeScaling::Kind::kLinear;
    return rs;
  }
  rs.kind = RopeScaling::Kind::kLlama3;
  rs.low_freq_factor = r.number(s, "low_freq_factor", std::nullopt, true);
  rs.high_freq_factor = r.number(s, "high_freq_factor", std::nullopt, true);
  if (!(rs.high_freq_factor > rs.low_freq_factor)) {
    r.fail(key, "needs high_freq_factor > low_freq_factor");
  }
  const json& omp = s.contains("original_max_position_embeddings")
                        ? s.at("original_max_position_embeddings")
                        : json();
  if (!omp.is_number_integer() || omp.get<int64_t>() <= 0) {
    r.fail(key, "needs original_max_position_embeddings as a positive integer, got " +
                    io::bounded_dump(omp));
  }
  rs.original_max_position_embeddings = omp.get<int64_t>();
  return rs;
}

std::vector<int32_t> parse_eos(const ConfigReader& r) {
  if (!r.has("eos_token_id")) return {};
  const json& v = r.raw().at("eos_token_id");
  std::vector<int32_t> ids;
  auto add = [&](const json& x) {
    if (!x.is_number_integer() || x.get<int64_t>() < 0) {
      r.fail("eos_token_id", "must be a token id or a list of them, got " + io::bounded_dump(v));
    }
    ids.push_back(static_cast<int32_t>(x.get<int64_t>()));
  };
  if (v.is_array()) {
    for (const json& x : v) add(x);
  } else {
    add(v);
  }
  return ids;
}

}  // namespace

std::string_view arch_name(ModelArch arch) {
  for (const auto& a : kArchs) {
    if (a.arch == arch) return a.model_type;
  }
  return "unknown";
}

ModelConfig parse_model_config(const nlohmann::json& config, std::string_view where) {
  if (!config.is_object()) throw ConfigError(std::string(where) + ": config is not a JSON object");
  const ConfigReader r(config, where);
  const ArchInfo& arch = resolve_arch(r);

  ModelConfig c;
  c.arch = arch.arch;
  c.architecture = arch.class_name;
  c.vocab_size = r.integer("vocab_size", std::nullopt, 1);
  c.hidden_size = r.integer("hidden_size", std::nullopt, 1);
  c.intermediate_size = r.integer("intermediate_size", std::nullopt, 1);
  c.n_layers = r.integer("num_hidden_layers", std::nullopt, 1);
  c.n_heads = r.integer("num_attention_heads", std::nullopt, 1);
  c.n_kv_heads = r.integer("num_key_value_heads", c.n_heads, 1);
  if (c.n_heads % c.n_kv_heads != 0) {
    r.fail("num_key_value_heads", "(" + std::to_string(c.n_kv_heads) +
                                      ") must divide num_attention_heads (" +
                                      std::to_string(c.n_heads) + ")");
  }
  if (!r.has("head_dim") && c.hidden_size % c.n_heads != 0) {
    r.fail("hidden_size",
           "(" + std::to_string(c.hidden_size) +
               ") must be a multiple of num_attention_heads when head_dim is absent");
  }
  c.head_dim = r.integer("head_dim", c.hidden_size / c.n_heads, 2);
  if (c.head_dim % 2 != 0) r.fail("head_dim", "must be even (RoPE rotates pairs)");

  c.rms_norm_eps = r.number("rms_norm_eps", 1e-6, true);
  c.rope_theta = r.number("rope_theta", 10000.0, true);
  c.rope_scaling = parse_rope(r, c.rope_theta);
  c.max_position_embeddings = r.integer("max_position_embeddings", arch.default_max_positions, 1);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);

  if (const auto act = r.string("hidden_act"); act && *act != "silu") {
    r.fail("hidden_act", "is " + io::quoted(*act) + "; the engine supports silu");
  }

  switch (c.arch) {
    case ModelArch::kLlama:
      c.qkv_bias = c.o_bias = r.boolean("attention_bias", false);
      c.mlp_bias = r.boolean("mlp_bias", false);
      break;
    case ModelArch::kMistral:
      // transformers' default for Mistral is a 4096-token window; null means none.
      c.sliding_window =
          config.contains("sliding_window") ? r.integer("sliding_window", 0, 1) : 4096;
      break;
    case ModelArch::kQwen2:
    case ModelArch::kQwen3:
      if (r.boolean("use_sliding_window", false)) {
        r.fail("use_sliding_window",
               "is true; the engine does not implement Qwen's per-layer sliding window");
      }
      if (c.arch == ModelArch::kQwen2) {
        c.qkv_bias = true;  // Qwen2's q/k/v projections always have biases, o_proj never
      } else {
        c.qkv_bias = c.o_bias = r.boolean("attention_bias", false);
        c.qk_norm = true;
      }
      break;
  }

  if (r.has("bos_token_id")) {
    const int64_t bos = r.integer("bos_token_id", std::nullopt, 0);
    c.bos_token_id = static_cast<int32_t>(bos);
  }
  c.eos_token_ids = parse_eos(r);
  return c;
}

namespace infer {

std::string layer_tensor(int64_t layer, const std::string& rest) {
  return "model.layers." + std::to_string(layer) + "." + rest;
}

namespace {

// (name within a layer, shape) for one layer.
std::vector<TensorSpec> layer_specs(const ModelConfig& c) {
  const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), ff = c.intermediate_size;
  std::vector<TensorSpec> t;
  t.push_back({"input_layernorm.weight", {h}});
  t.push_back({"self_attn.q_proj.weight", {q, h}});
  if (c.qkv_bias) t.push_back({"self_attn.q_proj.bias", {q}});
  t.push_back({"self_attn.k_proj.weight", {kv, h}});
  if (c.qkv_bias) t.push_back({"self_attn.k_proj.bias", {kv}});
  t.push_back({"self_attn.v_proj.weight", {kv, h}});
  if (c.qkv_bias) t.push_back({"self_attn.v_proj.bias", {kv}});
  t.push_back({"self_attn.o_proj.weight", {h, q}});
  if (c.o_bias) t.push_back({"self_attn.o_proj.bias", {h}});
  if (c.qk_norm) {
    t.push_back({"self_attn.q_norm.weight", {c.head_dim}});
    t.push_back({"self_attn.k_norm.weight", {c.head_dim}});
  }
  t.push_back({"post_attention_layernorm.weight", {h}});
  t.push_back({"mlp.gate_proj.weight", {ff, h}});
  if (c.mlp_bias) t.push_back({"mlp.gate_proj.bias", {ff}});
  t.push_back({"mlp.up_proj.weight", {ff, h}});
  if (c.mlp_bias) t.push_back({"mlp.up_proj.bias", {ff}});
  t.push_back({"mlp.down_proj.weight", {h, ff}});
  if (c.mlp_bias) t.push_back({"mlp.down_proj.bias", {h}});
  return t;
}

}  // namespace

std::vector<TensorSpec> expected_tensors(const ModelConfig& c) {
  std::vector<TensorSpec> all;
  all.push_back({"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}});
  const std::vector<TensorSpec> per_layer = layer_specs(c);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    for (const auto& s : per_layer) all.push_back({layer_tensor(l, s.name), s.shape});
  }
  all.push_back({"model.norm.weight", {c.hidden_size}});
  if (!c.tie_word_embeddings) all.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}});
  return all;
}

void check_tensors(const ModelConfig& c, const WeightSource& weights) {
  const std::string where = weights.describe();
  for (const TensorSpec& spec : expected_tensors(c)) {
    const std::optional<TensorView> t = weights.tensor(spec.name);
    if (!t) {
      std::string hint;
      if (spec.name == "lm_head.weight") hint = "; config.json says tie_word_embeddings false";
      throw FormatError(where + ": missing tensor " + spec.name + " (expected shape " +
                        shape_to_string(spec.shape) + " from config.json" + hint + ")");
    }
    if (!is_compute_float(t->dtype)) {
      throw FormatError(where + ": tensor " + spec.name + " has dtype " +
                        std::string(dtype_name(t->dtype)) + ", expected F32, F16 or BF16");
    }
    if (t->shape != spec.shape) {
      throw FormatError(where + ": tensor " + spec.name + " has shape " +
                        shape_to_string(t->shape) + ", expected " + shape_to_string(spec.shape) +
                        " from config.json");
    }
  }
  // A layer tensor the config does not account for would be silently ignored; refuse it.
  std::set<std::string, std::less<>> known;
  for (const auto& s : layer_specs(c)) known.insert(s.name);
  known.insert("self_attn.rotary_emb.inv_freq");  // a buffer some old checkpoints carry
  for (const std::string& name : weights.tensor_names()) {
    const std::optional<LayerName> ln = split_layer_name(name);
    if (!ln || ln->prefix != "model.layers") continue;
    if (ln->layer >= c.n_layers) {
      throw FormatError(where + ": tensor " + name + " is beyond num_hidden_layers " +
                        std::to_string(c.n_layers) + " of config.json");
    }
    if (!known.contains(ln->rest)) {
      throw FormatError(where + ": unexpected tensor " + name + " for " + c.architecture +
                        " as config.json describes it (check attention_bias / mlp_bias)");
    }
  }
}

}  // namespace infer
}  // namespace shoal
