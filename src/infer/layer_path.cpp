#include "infer/layer_path.h"

#include <cmath>
#include <ios>
#include <map>
#include <sstream>
#include <string>

#include "infer/model_config.h"
#include "shoal/error.h"

namespace shoal::infer {
namespace {

std::string source_name(size_t i, const WeightSource& s) {
  return "source " + std::to_string(i) + " (" + s.describe() + ")";
}

template <typename T>
std::string text(const T& v) {
  std::ostringstream out;
  out << std::boolalpha << v;
  return out.str();
}

// Everything a decoder layer's computation depends on must agree, or a layer would run with
// another model's sizes or numerics. The vocabulary size too: the models share one tokenizer.
void check_compatible(const ModelConfig& head, const std::string& head_name, const ModelConfig& c,
                      const std::string& name) {
  auto differ = [&](const char* key, const std::string& mine, const std::string& theirs) {
    throw ConfigError("Model::load_path: " + name + " has " + key + " " + mine + " but the head " +
                      head_name + " has " + theirs + "; the models of a path must share the " +
                      "architecture and sizes");
  };
  auto same = [&](const char* key, const auto& a, const auto& b) {
    if (a != b) differ(key, text(a), text(b));
  };
  if (c.arch != head.arch) {
    differ("model_type", std::string(arch_name(c.arch)), std::string(arch_name(head.arch)));
  }
  same("hidden_size", c.hidden_size, head.hidden_size);
  same("intermediate_size", c.intermediate_size, head.intermediate_size);
  same("vocab_size", c.vocab_size, head.vocab_size);
  same("num_attention_heads", c.n_heads, head.n_heads);
  same("num_key_value_heads", c.n_kv_heads, head.n_kv_heads);
  same("head_dim", c.head_dim, head.head_dim);
  same("rms_norm_eps", c.rms_norm_eps, head.rms_norm_eps);
  same("rope_theta", c.rope_theta, head.rope_theta);
  const RopeScaling &r = c.rope_scaling, &hr = head.rope_scaling;
  if (r.kind != hr.kind || r.factor != hr.factor || r.low_freq_factor != hr.low_freq_factor ||
      r.high_freq_factor != hr.high_freq_factor ||
      r.original_max_position_embeddings != hr.original_max_position_embeddings) {
    differ("rope_scaling", "different", "another");
  }
  same("sliding_window", c.sliding_window, head.sliding_window);
  same("q/k/v bias", c.qkv_bias, head.qkv_bias);
  same("o_proj bias", c.o_bias, head.o_bias);
  same("mlp_bias", c.mlp_bias, head.mlp_bias);
  same("q/k norm", c.qk_norm, head.qk_norm);
}

}  // namespace

PathModel bind_path(const std::vector<std::shared_ptr<const WeightSource>>& sources,
                    const LayerPath& path, const BindOptions& options) {
  if (sources.empty()) throw ConfigError("Model::load_path: no weight sources");
  const int n = static_cast<int>(sources.size());
  if (path.head_source < 0 || path.head_source >= n) {
    throw ConfigError("Model::load_path: head_source " + std::to_string(path.head_source) +
                      " is outside the " + std::to_string(n) + " sources");
  }
  std::vector<ModelConfig> configs;
  for (size_t i = 0; i < sources.size(); ++i) {
    if (!sources[i])
      throw ConfigError("Model::load_path: source " + std::to_string(i) + " is null");
    configs.push_back(parse_model_config(sources[i]->config(), sources[i]->describe()));
    check_tensors(configs.back(), *sources[i]);
  }
  const size_t head = static_cast<size_t>(path.head_source);
  const std::string head_name = source_name(head, *sources[head]);
  for (size_t i = 0; i < sources.size(); ++i) {
    if (i != head)
      check_compatible(configs[head], head_name, configs[i], source_name(i, *sources[i]));
  }

  PathModel pm;
  pm.config = configs[head];
  pm.config.n_layers = static_cast<int64_t>(path.steps.size());
  bind_head(configs[head], *sources[head], options, pm.weights);
  // Each distinct (source, layer) is bound once; a repeated layer shares its views and copies.
  std::map<std::pair<int, int64_t>, LayerWeights> bound;
  for (size_t k = 0; k < path.steps.size(); ++k) {
    const LayerStep& s = path.steps[k];
    const std::string where = "Model::load_path: step " + std::to_string(k);
    if (s.source < 0 || s.source >= n) {
      throw ConfigError(where + " names source " + std::to_string(s.source) + "; there are " +
                        std::to_string(n));
    }
    const ModelConfig& c = configs[static_cast<size_t>(s.source)];
    if (s.layer < 0 || s.layer >= c.n_layers) {
      throw ConfigError(where + " names layer " + std::to_string(s.layer) + " of " +
                        source_name(static_cast<size_t>(s.source), *sources[s.source]) +
                        ", which has " + std::to_string(c.n_layers));
    }
    if (!std::isfinite(static_cast<float>(s.input_scale))) {
      throw ConfigError(where + ": input_scale " + text(s.input_scale) + " is not a finite f32");
    }
    auto it = bound.find({s.source, s.layer});
    if (it == bound.end()) {
      it = bound
               .emplace(std::pair{s.source, s.layer},
                        bind_layer(c, *sources[s.source], s.layer, options, pm.weights))
               .first;
    }
    pm.weights.layers.push_back(it->second);
    pm.weights.input_scales.push_back(static_cast<float>(s.input_scale));
  }
  return pm;
}

}  // namespace shoal::infer
