// open_gguf_weights: the real stories260K.gguf (llama.cpp's CI model) checked tensor by tensor
// against llama2.c's stories260K.bin, an independent file of the same weights (Q and K taken to
// HF's layout with transformers' own permutation); hand-built llama files with Q8_0, F16 and
// BF16 tensors, GQA and a Q bias; qwen2/qwen3 name mapping; and the errors a file can raise.
#include <algorithm>
#include <cstring>
#include <map>

#include <gtest/gtest.h>

#include "io/gguf_test_support.h"
#include "io/test_support.h"
#include "shoal/dtype.h"
#include "shoal/error.h"
#include "shoal/gguf.h"
#include "shoal/weights.h"

namespace shoal {
namespace {

using namespace test;

// transformers' convert_llama_weights_to_hf permutation, written as its tensor ops:
// w.view(n_heads, rows / n_heads / 2, 2, cols).transpose(1, 2).reshape(rows, cols), on any
// element type (elem bytes per element).
std::string hf_permute(const std::string& w, int64_t n_heads, int64_t rows, int64_t cols,
                       size_t elem) {
  const int64_t d0 = n_heads, d1 = rows / n_heads / 2, d2 = 2, d3 = cols;
  std::string out(w.size(), '\0');
  // out[a][c][b][d] (shape d0, d2, d1, d3) = in[a][b][c][d] (shape d0, d1, d2, d3)
  for (int64_t a = 0; a < d0; ++a) {
    for (int64_t b = 0; b < d1; ++b) {
      for (int64_t c = 0; c < d2; ++c) {
        for (int64_t d = 0; d < d3; ++d) {
          const int64_t in = ((a * d1 + b) * d2 + c) * d3 + d;
          const int64_t o = ((a * d2 + c) * d1 + b) * d3 + d;
          std::memcpy(&out[o * elem], &w[in * elem], elem);
        }
      }
    }
  }
  return out;
}

std::string view_bytes(const TensorView& v) {
  return std::string(reinterpret_cast<const char*>(v.data), v.nbytes);
}

// llama2.c's checkpoint: a header of 7 int32 then float32 arrays, each [n_layers, out, in] for
// the matrices, in the order of run.c's memory_map_weights.
struct Llama2c {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
  std::string emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final;
};

Llama2c read_llama2c(const std::filesystem::path& path) {
  const std::string all = read_file(path);
  Llama2c m{};
  std::memcpy(&m.dim, all.data(), 7 * 4);
  const int64_t kv_dim = int64_t{m.dim} * m.n_kv_heads / m.n_heads;
  const int64_t L = m.n_layers;
  const int64_t vocab = m.vocab_size > 0 ? m.vocab_size : -m.vocab_size;
  size_t at = 28;
  auto take = [&](int64_t floats) {
    std::string s = all.substr(at, static_cast<size_t>(floats) * 4);
    at += static_cast<size_t>(floats) * 4;
    return s;
  };
  m.emb = take(vocab * m.dim);
  m.rms_att = take(L * m.dim);
  m.wq = take(L * m.dim * m.dim);
  m.wk = take(L * kv_dim * m.dim);
  m.wv = take(L * kv_dim * m.dim);
  m.wo = take(L * m.dim * m.dim);
  m.rms_ffn = take(L * m.dim);
  m.w1 = take(L * m.hidden_dim * m.dim);
  m.w2 = take(L * m.dim * m.hidden_dim);
  m.w3 = take(L * m.hidden_dim * m.dim);
  m.rms_final = take(m.dim);
  const int64_t head_size = m.dim / m.n_heads;
  at += static_cast<size_t>(2 * m.seq_len * head_size / 2) * 4;  // freq_cis_real, freq_cis_imag
  EXPECT_EQ(at, all.size()) << "unexpected size of " << path;
  return m;
}

// Layer l's slice of a [n_layers, ...] array of `floats` floats per layer.
std::string layer(const std::string& all, int64_t l, int64_t floats) {
  return all.substr(static_cast<size_t>(l * floats) * 4, static_cast<size_t>(floats) * 4);
}

TEST(GgufWeights, Stories260KMatchesLlama2cCheckpoint) {
  const auto dir = shared_data_dir() / "stories260k";
  ASSERT_TRUE(std::filesystem::exists(dir / "stories260K.gguf") &&
              std::filesystem::exists(dir / "stories260K.bin"))
      << dir << " lacks stories260K.gguf/.bin: set SHOAL_SHARED_DATA to the shared data folder";
  const Llama2c m = read_llama2c(dir / "stories260K.bin");
  ASSERT_EQ(m.dim, 64);
  ASSERT_EQ(m.vocab_size, 512);  // positive: the classifier is the embedding
  const auto w = open_weights(dir / "stories260K.gguf");

  const nlohmann::json& c = w->config();
  EXPECT_EQ(c.at("architectures"), nlohmann::json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(c.at("model_type"), "llama");
  EXPECT_EQ(c.at("hidden_size"), m.dim);
  EXPECT_EQ(c.at("intermediate_size"), m.hidden_dim);
  EXPECT_EQ(c.at("num_hidden_layers"), m.n_layers);
  EXPECT_EQ(c.at("num_attention_heads"), m.n_heads);
  EXPECT_EQ(c.at("num_key_value_heads"), m.n_kv_heads);
  EXPECT_EQ(c.at("head_dim"), 8);
  EXPECT_EQ(c.at("vocab_size"), 512);
  EXPECT_EQ(c.at("max_position_embeddings"), 2048);  // the GGUF's context_length
  EXPECT_EQ(c.at("rms_norm_eps").get<double>(), static_cast<double>(1e-5f));
  EXPECT_EQ(c.at("rope_theta"), 10000.0);
  EXPECT_EQ(c.at("tie_word_embeddings"), false);  // this GGUF stores output.weight
  EXPECT_EQ(c.at("attention_bias"), false);
  EXPECT_EQ(c.at("bos_token_id"), 1);
  EXPECT_EQ(c.at("eos_token_id"), 2);
  EXPECT_EQ(c.at("torch_dtype"), "float32");
  EXPECT_EQ(w->tokenizer_dir(), std::filesystem::path());

  const int64_t d = m.dim, h = m.hidden_dim, kv = d * m.n_kv_heads / m.n_heads;
  std::map<std::string, std::string> want = {
      {"model.embed_tokens.weight", m.emb},
      {"lm_head.weight", m.emb},
      {"model.norm.weight", m.rms_final},
  };
  for (int64_t l = 0; l < m.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    want[p + "input_layernorm.weight"] = layer(m.rms_att, l, d);
    want[p + "self_attn.q_proj.weight"] = hf_permute(layer(m.wq, l, d * d), m.n_heads, d, d, 4);
    want[p + "self_attn.k_proj.weight"] =
        hf_permute(layer(m.wk, l, kv * d), m.n_kv_heads, kv, d, 4);
    want[p + "self_attn.v_proj.weight"] = layer(m.wv, l, kv * d);
    want[p + "self_attn.o_proj.weight"] = layer(m.wo, l, d * d);
    want[p + "post_attention_layernorm.weight"] = layer(m.rms_ffn, l, d);
    want[p + "mlp.gate_proj.weight"] = layer(m.w1, l, h * d);
    want[p + "mlp.down_proj.weight"] = layer(m.w2, l, d * h);
    want[p + "mlp.up_proj.weight"] = layer(m.w3, l, h * d);
  }
  std::vector<std::string> names = w->tensor_names();
  std::sort(names.begin(), names.end());
  std::vector<std::string> want_names;
  for (const auto& [name, bytes] : want) want_names.push_back(name);
  EXPECT_EQ(names, want_names);
  for (const auto& [name, bytes] : want) {
    const auto v = w->tensor(name);
    ASSERT_TRUE(v.has_value()) << name;
    EXPECT_EQ(v->dtype, DType::kF32) << name;
    EXPECT_EQ(view_bytes(*v), bytes) << name;  // bit-exact
  }
  EXPECT_EQ(w->tensor("model.layers.0.mlp.down_proj.weight")->shape,
            (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(w->tensor("model.layers.0.self_attn.k_proj.weight")->shape,
            (std::vector<int64_t>{32, 64}));
  EXPECT_FALSE(w->tensor("token_embd.weight").has_value());

  // Unpermuted tensors are views into the mapping: their distances are the file's offsets.
  const std::byte* embd = w->tensor("model.embed_tokens.weight")->data;
  EXPECT_EQ(w->tensor("model.norm.weight")->data - embd, 131072);
  EXPECT_EQ(w->tensor("model.layers.4.post_attention_layernorm.weight")->data - embd, 1170944);
  EXPECT_NE(w->tensor("model.layers.0.self_attn.q_proj.weight")->data - embd, 262400);
}

// A llama GGUF as llama.cpp's converter writes one: Q and K interleaved, here with GQA
// (4 heads, 2 KV heads, head_dim 8), a Q8_0 Q, an F16 K, a BF16 V and a Q bias.
struct SmallLlama {
  HandGguf g;
  std::string q_f32;  // Q's values as the file holds them (dequantised by hand)
  std::string bias, k_f16, v_bf16;
};

SmallLlama small_llama() {
  SmallLlama s;
  Bytes q8, qf;
  for (int row = 0; row < 32; ++row) {
    q8.u16(0x3c00);  // scale 1.0
    for (int col = 0; col < 32; ++col) {
      const int q = (row * 7 + col * 3) % 101 - 50;
      q8.i8(static_cast<int8_t>(q));
      qf.f32(static_cast<float>(q));
    }
  }
  s.q_f32 = qf;
  Bytes kf;
  for (int i = 0; i < 16 * 32; ++i) kf.u16(f32_to_f16(static_cast<float>(i)));
  s.k_f16 = kf;
  Bytes vb;
  for (int i = 0; i < 16 * 32; ++i) vb.u16(f32_to_bf16(static_cast<float>(i % 200) - 100.f));
  s.v_bf16 = vb;
  s.bias = f32_series(32, -1.f, 0.25f);
  s.g.kvs = {
      kv_str("general.architecture", "llama"),
      kv_u32("llama.embedding_length", 32),
      kv_u32("llama.feed_forward_length", 48),
      kv_u32("llama.block_count", 1),
      kv_u32("llama.attention.head_count", 4),
      kv_u32("llama.attention.head_count_kv", 2),
      kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-6f),
      kv_f32("llama.rope.freq_base", 500000.f),
      kv_u32("llama.context_length", 128),
      kv_strings("tokenizer.ggml.tokens", {"a", "b", "c", "d", "e", "f"}),
      kv_u32("tokenizer.ggml.bos_token_id", 1),
      kv_u32("tokenizer.ggml.eos_token_id", 2),
  };
  s.g.tensors = {
      {"token_embd.weight", kGgmlF32, {32, 6}, f32_series(6 * 32, 0.f, 0.5f)},
      {"blk.0.attn_q.weight", kGgmlQ8_0, {32, 32}, q8},
      {"blk.0.attn_q.bias", kGgmlF32, {32}, s.bias},
      {"blk.0.attn_k.weight", kGgmlF16, {32, 16}, s.k_f16},
      {"blk.0.attn_v.weight", kGgmlBF16, {32, 16}, s.v_bf16},
      {"blk.0.ffn_down.weight", kGgmlF32, {48, 32}, f32_series(32 * 48, 1.f, 1.f)},
      {"output_norm.weight", kGgmlF32, {32}, f32_series(32, 1.f, 0.f)},
  };
  return s;
}

TEST(GgufWeights, LlamaQ8F16Bf16GqaAndBias) {
  TempDir dir;
  const SmallLlama s = small_llama();
  write_file(dir / "small.gguf", s.g.build());
  const auto w = open_gguf_weights(dir / "small.gguf");
  EXPECT_EQ(w->describe(), (dir / "small.gguf").string());

  const nlohmann::json want = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", 32},
      {"intermediate_size", 48},
      {"num_hidden_layers", 1},
      {"num_attention_heads", 4},
      {"num_key_value_heads", 2},
      {"head_dim", 8},
      {"rms_norm_eps", static_cast<double>(1e-6f)},
      {"rope_theta", 500000.0},
      {"max_position_embeddings", 128},
      {"vocab_size", 6},
      {"tie_word_embeddings", true},  // no output.weight
      {"attention_bias", true},
      {"hidden_act", "silu"},
      {"torch_dtype", "float32"},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
  };
  EXPECT_EQ(w->config(), want) << w->config().dump();

  EXPECT_EQ(w->tensor_names(),
            (std::vector<std::string>{
                "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                "model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.k_proj.weight",
                "model.layers.0.self_attn.v_proj.weight", "model.layers.0.mlp.down_proj.weight",
                "model.norm.weight"}));
  EXPECT_FALSE(w->tensor("lm_head.weight").has_value());

  const auto q = w->tensor("model.layers.0.self_attn.q_proj.weight");
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->dtype, DType::kF32);  // Q8_0 dequantised
  EXPECT_EQ(q->shape, (std::vector<int64_t>{32, 32}));
  EXPECT_EQ(view_bytes(*q), hf_permute(s.q_f32, 4, 32, 32, 4));
  const auto bias = w->tensor("model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ(view_bytes(*bias), hf_permute(s.bias, 4, 32, 1, 4));
  const auto k = w->tensor("model.layers.0.self_attn.k_proj.weight");
  EXPECT_EQ(k->dtype, DType::kF16);  // permuted, type kept
  EXPECT_EQ(k->shape, (std::vector<int64_t>{16, 32}));
  EXPECT_EQ(view_bytes(*k), hf_permute(s.k_f16, 2, 16, 32, 2));
  const auto v = w->tensor("model.layers.0.self_attn.v_proj.weight");
  EXPECT_EQ(v->dtype, DType::kBF16);
  EXPECT_EQ(view_bytes(*v), s.v_bf16);
  EXPECT_EQ(w->tensor("model.layers.0.mlp.down_proj.weight")->shape,
            (std::vector<int64_t>{32, 48}));
  // A first row of an HF Q head is the file's row 0, its second the file's row 2.
  float q_row1[32], file_row2[32];
  std::memcpy(q_row1, q->data + 32 * 4, sizeof q_row1);
  std::memcpy(file_row2, s.q_f32.data() + 2 * 32 * 4, sizeof file_row2);
  EXPECT_EQ(std::memcmp(q_row1, file_row2, sizeof q_row1), 0);
}

TEST(GgufWeights, Qwen2AndQwen3KeepTheirLayout) {
  TempDir dir;
  for (const std::string arch : {"qwen2", "qwen3"}) {
    SCOPED_TRACE(arch);
    HandGguf g;
    g.kvs = {
        kv_str("general.architecture", arch),
        kv_u32(arch + ".embedding_length", 32),
        kv_u32(arch + ".feed_forward_length", 64),
        kv_u32(arch + ".block_count", 2),
        kv_u32(arch + ".attention.head_count", 4),
        kv_u32(arch + ".attention.head_count_kv", 2),
        kv_u32(arch + ".attention.key_length", 16),  // head_dim != hidden / heads (Qwen3 style)
        kv_u32(arch + ".attention.value_length", 16),
        kv_f32(arch + ".attention.layer_norm_rms_epsilon", 1e-6f),
        kv_u32(arch + ".context_length", 4096),
    };
    const std::string q = f32_series(64 * 32, 0.f, 1.f);
    g.tensors = {
        {"token_embd.weight", kGgmlF32, {32, 10}, f32_series(320, 0.f, 1.f)},
        {"output.weight", kGgmlF32, {32, 10}, f32_series(320, 1.f, 1.f)},
        {"blk.1.attn_q.weight", kGgmlF32, {32, 64}, q},
        {"blk.1.attn_q.bias", kGgmlF32, {64}, f32_series(64, 0.f, 1.f)},
        {"blk.1.attn_q_norm.weight", kGgmlF32, {16}, f32_series(16, 0.f, 1.f)},
        {"blk.1.attn_k_norm.weight", kGgmlF32, {16}, f32_series(16, 0.f, 1.f)},
        {"blk.1.attn_output.weight", kGgmlF32, {64, 32}, q},
        {"blk.1.attn_norm.weight", kGgmlF32, {32}, f32_series(32, 0.f, 1.f)},
        {"blk.1.ffn_norm.weight", kGgmlF32, {32}, f32_series(32, 0.f, 1.f)},
        {"blk.1.ffn_gate.weight", kGgmlF32, {32, 64}, q},
        {"blk.1.ffn_up.weight", kGgmlF32, {32, 64}, q},
    };
    write_file(dir / "q.gguf", g.build());
    const auto w = open_gguf_weights(dir / "q.gguf");
    const nlohmann::json& c = w->config();
    EXPECT_EQ(c.at("architectures")[0], arch == "qwen2" ? "Qwen2ForCausalLM" : "Qwen3ForCausalLM");
    EXPECT_EQ(c.at("model_type"), arch);
    EXPECT_EQ(c.at("head_dim"), 16);
    EXPECT_EQ(c.at("vocab_size"), 10);  // no token list: the embedding's rows
    EXPECT_EQ(c.at("tie_word_embeddings"), false);
    EXPECT_EQ(c.at("rope_theta"), 10000.0);  // GGUF's default
    EXPECT_FALSE(c.contains("bos_token_id"));
    EXPECT_EQ(
        w->tensor_names(),
        (std::vector<std::string>{
            "model.embed_tokens.weight", "lm_head.weight", "model.layers.1.self_attn.q_proj.weight",
            "model.layers.1.self_attn.q_proj.bias", "model.layers.1.self_attn.q_norm.weight",
            "model.layers.1.self_attn.k_norm.weight", "model.layers.1.self_attn.o_proj.weight",
            "model.layers.1.input_layernorm.weight",
            "model.layers.1.post_attention_layernorm.weight", "model.layers.1.mlp.gate_proj.weight",
            "model.layers.1.mlp.up_proj.weight"}));
    // No permutation for these architectures: Q is the file's bytes, in place.
    const auto qv = w->tensor("model.layers.1.self_attn.q_proj.weight");
    EXPECT_EQ(view_bytes(*qv), q);
    EXPECT_EQ(qv->data - w->tensor("model.embed_tokens.weight")->data, 2 * 1280);
  }
}

TEST(GgufWeights, UnknownTensorNamesAreKept) {
  TempDir dir;
  SmallLlama s = small_llama();
  s.g.tensors.push_back({"blk.0.ffn_gate_exps.weight", kGgmlF32, {4}, f32_series(4, 0.f, 1.f)});
  s.g.tensors.push_back({"blk.01.attn_v.weight", kGgmlF32, {4}, f32_series(4, 0.f, 1.f)});
  write_file(dir / "x.gguf", s.g.build());
  const auto names = open_gguf_weights(dir / "x.gguf")->tensor_names();
  EXPECT_EQ(names[names.size() - 2], "blk.0.ffn_gate_exps.weight");
  EXPECT_EQ(names.back(), "blk.01.attn_v.weight");
}

void expect_open_error(const TempDir& dir, const HandGguf& g,
                       const std::vector<std::string>& needles) {
  const auto path = dir / "bad.gguf";
  write_file(path, g.build());
  try {
    (void)open_gguf_weights(path);
    ADD_FAILURE() << "no error; expected " << needles.at(0);
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind(path.string() + ": ", 0), 0u) << msg;
    for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << msg;
  }
}

TEST(GgufWeights, ErrorsNameTheKeyOrTensor) {
  TempDir dir;
  auto without_key = [](const std::string& key) {
    SmallLlama s = small_llama();
    std::erase_if(s.g.kvs, [&](const std::string& e) { return e.find(key) != std::string::npos; });
    return s.g;
  };
  SmallLlama s = small_llama();
  s.g.kvs[0] = kv_str("general.architecture", "gemma");
  expect_open_error(dir, s.g, {"'gemma'", "llama, qwen2 and qwen3"});
  expect_open_error(dir, without_key("general.architecture"),
                    {"key 'general.architecture' is missing"});
  expect_open_error(dir, without_key("llama.block_count"), {"key 'llama.block_count' is missing"});
  expect_open_error(dir, without_key("layer_norm_rms_epsilon"),
                    {"key 'llama.attention.layer_norm_rms_epsilon' is missing"});
  s = small_llama();
  s.g.kvs[8] = kv("llama.context_length", kTI32, Bytes().i32(-1));
  expect_open_error(dir, s.g, {"key 'llama.context_length' is -1, expected > 0"});
  s = small_llama();
  s.g.kvs[5] = kv_u32("llama.attention.head_count_kv", 3);
  expect_open_error(dir, s.g, {"not a multiple of head_count_kv (3)"});
  s = small_llama();
  s.g.kvs.push_back(kv_u32("llama.rope.dimension_count", 4));
  expect_open_error(dir, s.g, {"partial rotary"});
  s = small_llama();
  s.g.kvs[9] = kv_strings("tokenizer.ggml.tokens", {"a", "b"});
  expect_open_error(dir, s.g, {"tensor 'token_embd.weight' has shape [6, 32], expected [2, 32]"});
  s = small_llama();
  s.g.tensors.push_back({"rope_freqs.weight", kGgmlF32, {4}, f32_series(4, 1.f, 0.f)});
  expect_open_error(dir, s.g, {"tensor 'rope_freqs.weight'", "not supported"});
  s = small_llama();
  s.g.tensors[3].dims = {32, 12};
  s.g.tensors[3].data.resize(12 * 32 * 2);
  s.g.kvs[5] = kv_u32("llama.attention.head_count_kv", 4);
  expect_open_error(dir, s.g, {"tensor 'blk.0.attn_k.weight' has 12 rows", "4 heads of even size"});
  s = small_llama();
  s.g.tensors.push_back({"lm_head.weight", kGgmlF32, {4}, f32_series(4, 1.f, 0.f)});
  s.g.tensors.push_back({"output.weight", kGgmlF32, {4}, f32_series(4, 1.f, 0.f)});
  expect_open_error(dir, s.g, {"tensor 'output.weight' maps to 'lm_head.weight'"});
}

}  // namespace
}  // namespace shoal
