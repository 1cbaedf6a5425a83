// Test helper (merge and evolve tests): small random Llama-shaped model folders written with the
// io layer's writer — a base and experts that are the base plus a random task vector, as
// tools/make_models.cpp makes them — and a byte-for-byte comparison of a MemoryModel against a
// model folder written by run_merge.
#pragma once

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "shoal/dtype.h"
#include "shoal/merge_memory.h"
#include "shoal/model_folder.h"
#include "shoal/rng.h"
#include "shoal/safetensors.h"

namespace shoal::test {

struct TinyLlama {
  int layers = 4;
  int hidden = 16;
  int intermediate = 24;
  int vocab = 32;
  DType dtype = DType::kBF16;
};

// Writes `dir` (config.json + model.safetensors). Values: base uniform in [-0.05, 0.05] (norms
// 1 +- 0.05) from `base_seed`; expert_seed != 0 adds a task vector of a fifth of that size.
inline void write_tiny_llama(const std::filesystem::path& dir, const TinyLlama& s,
                             uint64_t base_seed, uint64_t expert_seed) {
  std::filesystem::create_directories(dir);
  const int64_t h = s.hidden, ff = s.intermediate;
  std::vector<OutputTensorSpec> specs;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    specs.push_back({name, s.dtype, std::move(shape)});
  };
  add("model.embed_tokens.weight", {s.vocab, h});
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {h});
    add(p + "self_attn.q_proj.weight", {h, h});
    add(p + "self_attn.k_proj.weight", {h / 2, h});
    add(p + "self_attn.v_proj.weight", {h / 2, h});
    add(p + "self_attn.o_proj.weight", {h, h});
    add(p + "post_attention_layernorm.weight", {h});
    add(p + "mlp.gate_proj.weight", {ff, h});
    add(p + "mlp.up_proj.weight", {ff, h});
    add(p + "mlp.down_proj.weight", {h, ff});
  }
  add("model.norm.weight", {h});
  add("lm_head.weight", {s.vocab, h});
  {
    SafetensorsWriter writer(dir, specs, uint64_t{1} << 40);
    for (size_t t = 0; t < specs.size(); ++t) {
      const bool norm = specs[t].name.find("norm") != std::string::npos;
      const CounterRng base = CounterRng(base_seed).stream(hash_name(specs[t].name));
      const CounterRng delta = CounterRng(expert_seed).stream(hash_name(specs[t].name));
      const int64_t n = shape_numel(specs[t].shape);
      std::vector<float> values(n);
      for (int64_t i = 0; i < n; ++i) {
        double v = (norm ? 1.0 : 0.0) + 0.1 * (base.uniform(i) - 0.5);
        if (expert_seed != 0) v += 0.02 * (delta.uniform(i) - 0.5);
        values[i] = static_cast<float>(v);
      }
      std::vector<std::byte> bytes(n * dtype_size(s.dtype));
      from_f32(values.data(), s.dtype, bytes.data(), n);
      writer.write(t, 0, bytes.data(), bytes.size());
    }
    writer.finish();
  }
  const nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}},
                                 {"model_type", "llama"},
                                 {"hidden_size", h},
                                 {"intermediate_size", ff},
                                 {"num_hidden_layers", s.layers},
                                 {"num_attention_heads", 4},
                                 {"num_key_value_heads", 2},
                                 {"vocab_size", s.vocab},
                                 {"rms_norm_eps", 1e-5},
                                 {"tie_word_embeddings", false},
                                 {"torch_dtype", "bfloat16"}};
  std::ofstream(dir / "config.json") << config.dump(2);
}

// Every tensor of `folder` (written by run_merge) equals the MemoryModel's byte for byte, in the
// same order, and config.json is the same.
inline void expect_same_model(const std::filesystem::path& folder, const MemoryModel& memory) {
  const ModelFolder disk = ModelFolder::open(folder);
  EXPECT_EQ(disk.tensor_names(), memory.tensor_names);
  for (const std::string& name : disk.tensor_names()) {
    const TensorView a = disk.view(name);
    const auto it = memory.tensors.find(name);
    ASSERT_NE(it, memory.tensors.end()) << name;
    const TensorView b = it->second.view();
    EXPECT_EQ(a.dtype, b.dtype) << name;
    EXPECT_EQ(a.shape, b.shape) << name;
    ASSERT_EQ(a.nbytes, b.nbytes) << name;
    EXPECT_EQ(0, std::memcmp(a.data, b.data, a.nbytes)) << name << " differs";
  }
  EXPECT_EQ(disk.config(), memory.config);
}

}  // namespace shoal::test
