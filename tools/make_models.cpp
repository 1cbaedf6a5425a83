// shoal_make_models: writes small (or large) random Llama-shaped model folders — a base and
// experts that are the base plus a small random task vector — for the quick-start demo and the
// benchmarks. Deterministic for a given --seed. Not part of the `shoal` CLI: a developer tool.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "shoal/dtype.h"
#include "shoal/error.h"
#include "shoal/rng.h"
#include "shoal/safetensors.h"
#include "shoal/thread_pool.h"

namespace {

namespace fs = std::filesystem;
using shoal::DType;

struct Shape {
  int hidden = 64;
  int layers = 4;
  int intermediate = 172;
  int vocab = 256;
  int heads = 4;
  int kv_heads = 2;
};

struct TensorPlan {
  std::string name;
  std::vector<int64_t> shape;
  float scale;  // values are uniform in [-scale, scale] (norm weights: 1 +- scale)
  bool is_norm;
};

std::vector<TensorPlan> llama_tensors(const Shape& s) {
  const int64_t h = s.hidden, kv = s.hidden / s.heads * s.kv_heads, ff = s.intermediate;
  std::vector<TensorPlan> t;
  t.push_back({"model.embed_tokens.weight", {s.vocab, h}, 0.02f, false});
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back({p + "input_layernorm.weight", {h}, 0.05f, true});
    t.push_back({p + "self_attn.q_proj.weight", {h, h}, 0.02f, false});
    t.push_back({p + "self_attn.k_proj.weight", {kv, h}, 0.02f, false});
    t.push_back({p + "self_attn.v_proj.weight", {kv, h}, 0.02f, false});
    t.push_back({p + "self_attn.o_proj.weight", {h, h}, 0.02f, false});
    t.push_back({p + "post_attention_layernorm.weight", {h}, 0.05f, true});
    t.push_back({p + "mlp.gate_proj.weight", {ff, h}, 0.02f, false});
    t.push_back({p + "mlp.up_proj.weight", {ff, h}, 0.02f, false});
    t.push_back({p + "mlp.down_proj.weight", {h, ff}, 0.02f, false});
  }
  t.push_back({"model.norm.weight", {h}, 0.05f, true});
  t.push_back({"lm_head.weight", {s.vocab, h}, 0.02f, false});
  return t;
}

nlohmann::json llama_config(const Shape& s, DType dtype) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", s.hidden},
          {"intermediate_size", s.intermediate},
          {"num_hidden_layers", s.layers},
          {"num_attention_heads", s.heads},
          {"num_key_value_heads", s.kv_heads},
          {"vocab_size", s.vocab},
          {"max_position_embeddings", 2048},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"hidden_act", "silu"},
          {"tie_word_embeddings", false},
          {"bos_token_id", 1},
          {"eos_token_id", 2},
          {"torch_dtype", std::string(shoal::torch_dtype_name(dtype))}};
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw shoal::IoError("cannot write " + path.string());
}

// model_index 0 is the base; model i > 0 adds a delta of relative size `delta` drawn from its
// own stream.
void write_model(const fs::path& dir, const Shape& shape, DType dtype, uint64_t seed,
                 int model_index, float delta, uint64_t shard_size, shoal::ThreadPool& pool) {
  fs::create_directories(dir);
  const auto plan = llama_tensors(shape);
  std::vector<shoal::OutputTensorSpec> specs;
  for (const auto& t : plan) specs.push_back({t.name, dtype, t.shape});
  shoal::SafetensorsWriter writer(dir, specs, shard_size);
  const shoal::CounterRng base_rng(seed);
  const shoal::CounterRng delta_rng = shoal::CounterRng(seed).stream(1000 + model_index);
  constexpr size_t kChunk = 1 << 16;
  for (size_t ti = 0; ti < plan.size(); ++ti) {
    const auto& t = plan[ti];
    const uint64_t stream_id = shoal::hash_name(t.name);
    const auto brng = base_rng.stream(stream_id), drng = delta_rng.stream(stream_id);
    const size_t n = static_cast<size_t>(shoal::shape_numel(t.shape));
    const size_t n_chunks = (n + kChunk - 1) / kChunk;
    pool.parallel_for(n_chunks, [&](size_t c) {
      const size_t begin = c * kChunk, count = std::min(kChunk, n - begin);
      std::vector<float> values(count);
      std::vector<std::byte> bytes(count * shoal::dtype_size(dtype));
      for (size_t k = 0; k < count; ++k) {
        const size_t i = begin + k;
        float v = t.scale * static_cast<float>(2.0 * brng.uniform(i) - 1.0);
        if (model_index > 0) v += delta * t.scale * static_cast<float>(2.0 * drng.uniform(i) - 1.0);
        values[k] = t.is_norm ? 1.0f + v : v;
      }
      shoal::from_f32(values.data(), dtype, bytes.data(), count);
      writer.write(ti, begin * shoal::dtype_size(dtype), bytes.data(), bytes.size());
    });
  }
  writer.finish();
  write_text(dir / "config.json", llama_config(shape, dtype).dump(2) + "\n");
  write_text(
      dir / "tokenizer_config.json",
      nlohmann::json{{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"model_max_length", 2048}}.dump(
          2) +
          "\n");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Write random Llama-shaped model folders: DIR/base, DIR/expert1, ..."};
  std::string out_dir, dtype_name = "bfloat16";
  Shape shape;
  int n_experts = 2, threads = 0;
  uint64_t seed = 1, shard_size = 5'000'000'000, sharded_shard_size = 0;
  float delta = 0.1f;
  app.add_option("out_dir", out_dir, "Folder to create the models in")->required();
  app.add_option("--hidden", shape.hidden);
  app.add_option("--layers", shape.layers);
  app.add_option("--intermediate", shape.intermediate);
  app.add_option("--vocab", shape.vocab);
  app.add_option("--heads", shape.heads);
  app.add_option("--kv-heads", shape.kv_heads);
  app.add_option("--dtype", dtype_name, "bfloat16, float16 or float32");
  app.add_option("--experts", n_experts, "Number of experts besides the base");
  app.add_option("--delta", delta, "Task-vector size relative to the weights");
  app.add_option("--seed", seed);
  app.add_option("--threads", threads);
  app.add_option("--shard-size", shard_size, "Shard size of every model, bytes");
  app.add_option("--last-expert-shard-size", sharded_shard_size,
                 "Shard size of the last expert only (to have one sharded model)");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto dtype = shoal::parse_torch_dtype(dtype_name);
    if (!dtype) throw shoal::ConfigError("--dtype: unknown dtype '" + dtype_name + "'");
    shoal::ThreadPool pool(threads);
    for (int m = 0; m <= n_experts; ++m) {
      const fs::path dir = fs::path(out_dir) / (m == 0 ? "base" : "expert" + std::to_string(m));
      const uint64_t shards =
          (m == n_experts && sharded_shard_size) ? sharded_shard_size : shard_size;
      write_model(dir, shape, *dtype, seed, m, delta, shards, pool);
      std::fprintf(stderr, "wrote %s\n", dir.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shoal_make_models: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
