// config.json -> ModelConfig for each supported architecture, transformers' defaults, the
// tensors a config implies, and one-line errors for what the engine refuses.
#include "infer/model_config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "infer/forward.h"
#include "shoal/error.h"

namespace shoal::infer {
namespace {

using nlohmann::json;

json llama() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", 64},
          {"intermediate_size", 88},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"vocab_size", 97}};
}

std::string error_of(const json& c) {
  try {
    parse_model_config(c, "m");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ModelConfig, LlamaDefaults) {
  const ModelConfig c = parse_model_config(llama(), "m");
  EXPECT_EQ(c.arch, ModelArch::kLlama);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.q_dim(), 64);
  EXPECT_EQ(c.kv_dim(), 32);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.kind, RopeScaling::Kind::kNone);
  EXPECT_FALSE(c.tie_word_embeddings || c.qkv_bias || c.o_bias || c.mlp_bias || c.qk_norm);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FALSE(c.bos_token_id.has_value());
}

TEST(ModelConfig, NumKeyValueHeadsDefaultsToHeads) {
  json j = llama();
  j.erase("num_key_value_heads");
  EXPECT_EQ(parse_model_config(j, "m").n_kv_heads, 4);
  j["num_key_value_heads"] = nullptr;
  EXPECT_EQ(parse_model_config(j, "m").n_kv_heads, 4);
}

TEST(ModelConfig, ArchitectureFeatures) {
  json j = llama();
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  j["bos_token_id"] = 1;
  j["eos_token_id"] = json::array({2, 7});
  ModelConfig c = parse_model_config(j, "m");
  EXPECT_TRUE(c.qkv_bias && c.o_bias && c.mlp_bias);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2, 7}));

  j = llama();
  j["architectures"] = {"MistralForCausalLM"};
  j["model_type"] = "mistral";
  EXPECT_EQ(parse_model_config(j, "m").sliding_window, 4096);  // transformers' default
  j["sliding_window"] = nullptr;
  EXPECT_EQ(parse_model_config(j, "m").sliding_window, 0);
  j["sliding_window"] = 5;
  j["head_dim"] = 24;
  c = parse_model_config(j, "m");
  EXPECT_EQ(c.arch, ModelArch::kMistral);
  EXPECT_EQ(c.sliding_window, 5);
  EXPECT_EQ(c.q_dim(), 96);

  j = llama();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["model_type"] = "qwen2";
  j["sliding_window"] = 32768;  // ignored: use_sliding_window is false by default
  j["tie_word_embeddings"] = true;
  c = parse_model_config(j, "m");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_TRUE(c.tie_word_embeddings);
  j["use_sliding_window"] = true;
  EXPECT_NE(error_of(j).find("use_sliding_window"), std::string::npos);

  j = llama();
  j["architectures"] = {"Qwen3ForCausalLM"};
  j["model_type"] = "qwen3";
  j["head_dim"] = 32;
  c = parse_model_config(j, "m");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.head_dim, 32);

  j = llama();
  j.erase("architectures");  // model_type alone is enough
  EXPECT_EQ(parse_model_config(j, "m").arch, ModelArch::kLlama);
}

TEST(ModelConfig, RopeScaling) {
  json j = llama();
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  ModelConfig c = parse_model_config(j, "m");
  EXPECT_EQ(c.rope_scaling.kind, RopeScaling::Kind::kLlama3);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  j["rope_scaling"] = {{"type", "default"}};
  EXPECT_EQ(parse_model_config(j, "m").rope_scaling.kind, RopeScaling::Kind::kNone);
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_EQ(parse_model_config(j, "m").rope_scaling.kind, RopeScaling::Kind::kLinear);
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  const std::string e = error_of(j);
  EXPECT_NE(e.find("rope_scaling"), std::string::npos) << e;
  EXPECT_NE(e.find("llama3"), std::string::npos) << e;
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  EXPECT_NE(error_of(j).find("low_freq_factor"), std::string::npos);
  // transformers 5 keeps theta inside rope_parameters.
  j = llama();
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};
  EXPECT_EQ(parse_model_config(j, "m").rope_theta, 500000.0);
}

TEST(ModelConfig, InverseFrequenciesByHand) {
  json j = llama();
  j["hidden_size"] = 16;  // head_dim 4: frequencies 1 and 1/100
  ModelConfig c = parse_model_config(j, "m");
  std::vector<float> f = rope_inv_freq(c);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  EXPECT_FLOAT_EQ(f[1], 0.01f);
  c.rope_scaling.kind = RopeScaling::Kind::kLinear;
  c.rope_scaling.factor = 4.0;
  f = rope_inv_freq(c);
  EXPECT_FLOAT_EQ(f[0], 0.25f);
  EXPECT_FLOAT_EQ(f[1], 0.0025f);
  // Llama 3: wavelengths 2 pi and 200 pi against bands [old / high, old / low] = [100, 400]:
  // the first is kept, the second (628 > 400) is divided by the factor.
  c.rope_scaling = {RopeScaling::Kind::kLlama3, 8.0, 1.0, 4.0, 400};
  f = rope_inv_freq(c);
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  EXPECT_FLOAT_EQ(f[1], 0.01f / 8.0f);
  // Old length 1000: band [250, 1000] holds 628.3, interpolated with
  // smooth = (1000 / 628.3 - 1) / 3.
  c.rope_scaling.original_max_position_embeddings = 1000;
  f = rope_inv_freq(c);
  const double smooth = (1000.0 / (2.0 * std::numbers::pi / 0.01f) - 1.0) / 3.0;
  EXPECT_NEAR(f[1], (1.0 - smooth) * 0.01f / 8.0 + smooth * 0.01f, 1e-9);
}

TEST(ModelConfig, Errors) {
  json j = llama();
  j["architectures"] = {"GPT2LMHeadModel"};
  j["model_type"] = "gpt2";
  std::string e = error_of(j);
  for (const char* word :
       {"architectures", "model_type", "GPT2LMHeadModel", "gpt2", "LlamaForCausalLM",
        "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"}) {
    EXPECT_NE(e.find(word), std::string::npos) << word << " in " << e;
  }
  EXPECT_EQ(e.find('\n'), std::string::npos);
  j = llama();
  j["model_type"] = "qwen2";  // contradicts architectures
  EXPECT_NE(error_of(j).find("architectures"), std::string::npos);
  j = llama();
  j.erase("hidden_size");
  EXPECT_NE(error_of(j).find("'hidden_size' is missing"), std::string::npos);
  j = llama();
  j["num_key_value_heads"] = 3;
  EXPECT_NE(error_of(j).find("num_key_value_heads"), std::string::npos);
  j = llama();
  j["num_attention_heads"] = "4";
  EXPECT_NE(error_of(j).find("num_attention_heads"), std::string::npos);
  j = llama();
  j["hidden_act"] = "gelu";
  EXPECT_NE(error_of(j).find("hidden_act"), std::string::npos);
  j = llama();
  j["hidden_size"] = 66;  // not a multiple of 4 heads, and no head_dim
  EXPECT_NE(error_of(j).find("hidden_size"), std::string::npos);
  j = llama();
  j["head_dim"] = 15;
  EXPECT_NE(error_of(j).find("head_dim"), std::string::npos);
  EXPECT_THROW(parse_model_config(json::array(), "m"), ConfigError);
}

TEST(ModelConfig, ExpectedTensors) {
  json j = llama();
  j["tie_word_embeddings"] = true;
  ModelConfig c = parse_model_config(j, "m");
  auto t = expected_tensors(c);
  EXPECT_EQ(t.size(), 1u + 2 * 9 + 1);  // no lm_head when tied
  EXPECT_EQ(t.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(t[2].name, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(t[3].shape, (std::vector<int64_t>{32, 64}));  // k_proj
  j["architectures"] = {"Qwen3ForCausalLM"};
  j["model_type"] = "qwen3";
  j["tie_word_embeddings"] = false;
  j["attention_bias"] = true;
  c = parse_model_config(j, "m");
  t = expected_tensors(c);
  EXPECT_EQ(t.size(), 1u + 2 * (9 + 4 + 2) + 2);
  EXPECT_EQ(t.back().name, "lm_head.weight");
}

TEST(ModelConfig, CheckTensors) {
  const ModelConfig c = parse_model_config(llama(), "m");
  auto make = [&] {
    auto w = std::make_unique<MemoryWeights>(llama(), "mem");
    for (const TensorSpec& s : expected_tensors(c)) {
      w->put(s.name, DType::kBF16, s.shape,
             std::vector<std::byte>(static_cast<size_t>(shape_numel(s.shape)) * 2));
    }
    return w;
  };
  auto message = [&](const WeightSource& w) -> std::string {
    try {
      check_tensors(c, w);
    } catch (const FormatError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(message(*make()), "");

  auto w = make();
  w->put("model.layers.1.mlp.up_proj.weight", DType::kBF16, {88, 65},
         std::vector<std::byte>(88 * 65 * 2));
  EXPECT_EQ(message(*w),
            "mem: tensor model.layers.1.mlp.up_proj.weight has shape [88, 65], expected "
            "[88, 64] from config.json");
  w = make();
  w->put("model.layers.0.self_attn.o_proj.bias", DType::kBF16, {64}, std::vector<std::byte>(128));
  EXPECT_NE(message(*w).find("unexpected tensor model.layers.0.self_attn.o_proj.bias"),
            std::string::npos);
  w = make();
  w->put("model.layers.2.input_layernorm.weight", DType::kBF16, {64}, std::vector<std::byte>(128));
  EXPECT_NE(message(*w).find("beyond num_hidden_layers 2"), std::string::npos);
  w = make();
  w->put("model.norm.weight", DType::kI32, {64}, std::vector<std::byte>(256));
  EXPECT_NE(message(*w).find("dtype I32"), std::string::npos);
  // Missing: a source without lm_head.weight.
  auto partial = std::make_unique<MemoryWeights>(llama(), "mem");
  for (const TensorSpec& s : expected_tensors(c)) {
    if (s.name == "lm_head.weight") continue;
    partial->put(s.name, DType::kF32, s.shape,
                 std::vector<std::byte>(static_cast<size_t>(shape_numel(s.shape)) * 4));
  }
  const std::string e = message(*partial);
  EXPECT_NE(e.find("missing tensor lm_head.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("tie_word_embeddings"), std::string::npos) << e;
}

}  // namespace
}  // namespace shoal::infer
