// The inference engine: a Llama-family decoder (Llama incl. Llama-3 RoPE scaling, Mistral,
// Qwen2, Qwen3) run on the CPU from weights as stored (BF16, F16 or F32; f32 activations and
// accumulation).
//
// - ModelConfig: the architecture and sizes read from config.json (parse_model_config).
// - Model: the loaded weights. Model::logits scores many token sequences in one batched forward
//   pass (an evaluator's log-likelihoods); Model::extend appends tokens to several Sessions at
//   once (batched decoding).
// - Session: one sequence's KV cache, for incremental decoding (a generator's stream).
//
// Ownership: a Model owns its WeightSource; views into it stay valid while the Model lives. A
// Session refers to its Model, which must outlive it (moving the Model is fine).
// Thread-safety: a Model is immutable after load. Its compute calls (logits, extend and the
// Session calls that compute) share the Model's one thread pool and are serialised by a mutex, so
// they may be called from any thread; a single Session must not be used from two threads at once.
//
// Implemented in src/infer/model_config.cpp (config), src/infer/model.cpp (Model, Session) and
// src/infer/forward*.cpp (the forward pass); docs/INFERENCE.md describes the numerics.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "shoal/weights.h"

namespace shoal {

namespace infer {
struct ModelImpl;
class KvCache;
}  // namespace infer

enum class ModelArch : uint8_t { kLlama, kMistral, kQwen2, kQwen3 };
// "llama", "mistral", "qwen2", "qwen3" (config.json's model_type).
std::string_view arch_name(ModelArch arch);

// RoPE frequency scaling (config.json's rope_scaling). kNone covers a null value and
// rope_type "default"; kLinear divides every frequency by factor (position interpolation);
// kLlama3 is Llama 3.1's band-wise scaling.
struct RopeScaling {
  enum class Kind : uint8_t { kNone, kLinear, kLlama3 };
  Kind kind = Kind::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  ModelArch arch = ModelArch::kLlama;
  std::string architecture;  // config.json's architectures[0], e.g. "LlamaForCausalLM"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // grouped-query attention: n_heads / n_kv_heads query heads per KV head
  int64_t head_dim = 0;    // config's head_dim, else hidden_size / n_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 0;  // informational: longer contexts are not refused
  // Attention window (Mistral): a query at position i sees keys j with i - j < sliding_window.
  // 0: no window.
  int64_t sliding_window = 0;
  bool tie_word_embeddings = false;  // the output projection is the token embedding
  bool qkv_bias = false;             // q_proj, k_proj, v_proj have biases (Qwen2; attention_bias)
  bool o_bias = false;               // o_proj has a bias (attention_bias of Llama / Qwen3)
  bool mlp_bias = false;             // gate/up/down_proj have biases (Llama's mlp_bias)
  bool qk_norm = false;              // RMSNorm of each q and k head before RoPE (Qwen3)
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;

  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
};

// Reads config.json's keys. Throws ConfigError (one line naming `where` and the key) for a
// missing or invalid size, an unsupported architecture (naming `architectures` / `model_type`
// and listing the supported ones), hidden_act other than silu, or an unsupported rope_scaling.
ModelConfig parse_model_config(const nlohmann::json& config, std::string_view where);

struct ModelOptions {
  int n_threads = 0;  // threads of the model's pool; 0: one per hardware thread
  // Keep an f32 copy of BF16/F16 matrices (twice the memory of BF16, faster prefill: no
  // conversion per GEMM). Off: 16-bit weights are converted tile by tile as they are used.
  bool f32_weights = false;
  // Round the inputs of products with BF16 matrices to BF16, as PyTorch's bf16 modules and
  // llama.cpp do: half the tile products of the default on AMX (prefill about twice as fast),
  // products good to about 3 significant digits. Off: activations keep f32-grade precision in
  // every product (within ~1e-5 of an f32 reference of the same BF16 weights). Sums, norms,
  // attention and the residual stream are f32 either way.
  bool bf16_activations = false;
  // Tokens per forward pass in Model::logits and Session prefill (bounds activation memory).
  // A single sequence longer than this still runs as one pass in Model::logits.
  int64_t max_batch_tokens = 2048;
};

// One sequence to score. positions: indices into ids whose next-token logits are wanted
// (logits at index i predict ids[i + 1]); empty: every position.
struct ScoreRequest {
  std::span<const int32_t> ids;
  std::vector<int64_t> positions;
};

// Row-major [rows, vocab] logits of one request, rows in the order of its positions.
struct LogitMatrix {
  int64_t rows = 0;
  int64_t vocab = 0;
  std::vector<float> data;
  std::span<const float> row(int64_t r) const {
    return {data.data() + r * vocab, static_cast<size_t>(vocab)};
  }
};

// Debug hook (the way llm.c checks activations against PyTorch): called once per stage of each
// forward pass with the hidden states of that pass's tokens, row-major [n_tokens, hidden_size],
// tokens packed in request order. Stage 0: token embeddings; stage l + 1: the residual stream
// after layer l; stage n_layers + 1: after the final norm.
using LayerObserver =
    std::function<void(int stage, std::span<const float> hidden, int64_t n_tokens)>;

// A data-flow path (evolutionary merging in the data-flow space; docs/EVOLVE.md): decoder layers
// drawn from several weight sources and run in the given order, a layer possibly more than once.
// Step k multiplies the residual stream x by input_scale (x <- s x, the whole hidden state, in
// f32; skipped when s is exactly 1), then runs layer `layer` of source `source` on it with a KV
// cache of its own. The token embeddings, the final norm and the output projection come from
// head_source, whose config describes the model (n_layers becomes the number of steps; an empty
// path runs embeddings -> final norm -> output projection).
struct LayerStep {
  int source = 0;            // index into the sources given to Model::load_path
  int64_t layer = 0;         // layer index within that source
  double input_scale = 1.0;  // finite; rounded to f32 once
};

struct LayerPath {
  std::vector<LayerStep> steps;
  int head_source = 0;
};

class Session;

class Model {
 public:
  // Validates the config and every tensor's presence, dtype and shape (FormatError naming the
  // tensor, expected and actual shape; ConfigError for the config).
  static Model load(std::unique_ptr<WeightSource> weights, const ModelOptions& options = {});
  // A model that runs `path` over layers of several sources (views into them, no copies; the
  // Model keeps the sources alive). Every source is validated as load() does, and all must
  // agree on the architecture and every size and setting the layers depend on (hidden,
  // intermediate and vocabulary sizes, heads, head_dim, biases, q/k norms, norm epsilon, RoPE,
  // sliding window): ConfigError naming both sources and the key. ConfigError also for no
  // sources, a step naming an unknown source or a layer outside it, a non-finite scale.
  // config() is the head source's config with n_layers = path.steps.size(); weights() is the
  // head source. With ModelOptions::f32_weights each distinct (source, layer) is converted once.
  static Model load_path(std::vector<std::shared_ptr<const WeightSource>> sources,
                         const LayerPath& path, const ModelOptions& options = {});

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelConfig& config() const;
  const WeightSource& weights() const;

  // Scores all requests, batching them into forward passes of up to max_batch_tokens tokens
  // (no padding: sequences are packed). Throws ConfigError for an empty sequence, a token id
  // outside [0, vocab_size) or a position outside the sequence.
  std::vector<LogitMatrix> logits(std::span<const ScoreRequest> requests,
                                  const LayerObserver& observer = {}) const;

  // Appends ids[i] to sessions[i] for every i in one forward pass (batched decoding: one id per
  // session gives one GEMM over all of them); afterwards each session's next_logits() predicts
  // the token after its last one. Sessions must be distinct and belong to this model.
  void extend(std::span<Session* const> sessions,
              std::span<const std::span<const int32_t>> ids) const;

 private:
  friend class Session;
  explicit Model(std::unique_ptr<infer::ModelImpl> impl);
  static void extend_impl(const infer::ModelImpl& m, std::span<Session* const> sessions,
                          std::span<const std::span<const int32_t>> ids);
  std::unique_ptr<infer::ModelImpl> impl_;
};

// One sequence's KV cache (f32, grown as needed) and the logits after its last token.
class Session {
 public:
  explicit Session(const Model& model);
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;
  ~Session();

  // Appends tokens (in passes of up to max_batch_tokens) and computes the logits after the last.
  void prefill(std::span<const int32_t> ids);
  void append(int32_t id) { prefill(std::span<const int32_t>(&id, 1)); }
  // Logits for the token after the last one appended, [vocab_size]. Throws Error when none are
  // available (empty session, or after truncate).
  std::span<const float> next_logits() const;

  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
  std::span<const int32_t> tokens() const { return tokens_; }
  // Keeps the first n tokens (their cache stays valid: a shared prompt can be reused); the
  // logits are unavailable until the next prefill or append.
  void truncate(int64_t n);
  void clear() { truncate(0); }

 private:
  friend class Model;
  const infer::ModelImpl* model_;
  std::unique_ptr<infer::KvCache> cache_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_;
  bool has_logits_ = false;
};

}  // namespace shoal
