// The decoder's forward pass over packed sequences: token embeddings, then per layer
// x += o_proj(attention(rope(q), rope(k), v)) of rms_norm(x), x += down(silu(gate) * up) of
// rms_norm(x); then the final norm and the output projection at the requested rows only.
// Implemented in src/infer/forward.cpp (weights binding, the layer loop) with the pieces in
// forward_kernels.cpp, forward_matmul.cpp and forward_attention.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "infer/forward_matmul.h"
#include "infer/kv_cache.h"
#include "shoal/model.h"
#include "shoal/thread_pool.h"

namespace shoal::infer {

struct LayerWeights {
  const float* attn_norm = nullptr;  // [hidden]
  Linear q, k, v, o;
  const float* q_norm = nullptr;  // [head_dim], Qwen3 only
  const float* k_norm = nullptr;
  const float* mlp_norm = nullptr;  // [hidden]
  Linear gate, up, down;
};

// Views of the model's matrices as stored (or of f32 copies, with ModelOptions::f32_weights);
// norm weights and biases are converted to f32 once (they are vectors: a few KiB).
struct ModelWeights {
  Linear embed;  // [vocab, hidden]; rows are looked up
  std::vector<LayerWeights> layers;
  const float* final_norm = nullptr;
  Linear lm_head;  // the embedding itself when tied
  // Per layer, the factor applied to the residual stream before it (a LayerPath); empty: none.
  std::vector<float> input_scales;
  std::vector<std::unique_ptr<float[]>> owned;
  size_t owned_bytes = 0;
};

// How matrices are bound (from ModelOptions).
struct BindOptions {
  bool f32_matrices = false;      // f32 copies of 16-bit matrices
  bool bf16_activations = false;  // Linear::bf16_activations on every matrix
};

// Binds every tensor (check_tensors must have passed).
ModelWeights bind_weights(const ModelConfig& c, const WeightSource& source,
                          const BindOptions& options);
// The pieces of bind_weights, for a LayerPath: the embeddings, final norm and output projection
// into `mw`; one layer of `source` (f32 copies are owned by `owner`).
void bind_head(const ModelConfig& c, const WeightSource& source, const BindOptions& options,
               ModelWeights& mw);
LayerWeights bind_layer(const ModelConfig& c, const WeightSource& source, int64_t layer,
                        const BindOptions& options, ModelWeights& owner);

// RoPE inverse frequencies [head_dim / 2], rounded to f32 as transformers computes them, with
// Llama-3 scaling applied when configured.
std::vector<float> rope_inv_freq(const ModelConfig& c);

// One sequence's share of a forward pass: n_new tokens at positions [pos0, pos0 + n_new).
// With a cache, keys/values of earlier positions are read from it and the new ones written to
// it (capacity must already cover pos0 + n_new); without one, pos0 must be 0.
struct Segment {
  const int32_t* ids = nullptr;
  int64_t n_new = 0;
  int64_t pos0 = 0;
  KvCache* cache = nullptr;
};

// Runs forward passes, reusing its activation buffers. Not thread-safe (ModelImpl serialises).
class Forward {
 public:
  Forward(const ModelConfig& config, const ModelWeights& weights, ThreadPool& pool);

  // logit_rows: indices into the packed tokens (segment after segment) whose logits to compute;
  // row i's [vocab] logits are written to logit_dest[i]. Token ids must be valid.
  void run(std::span<const Segment> segments, std::span<const int64_t> logit_rows,
           std::span<float* const> logit_dest, const LayerObserver* observer);

 private:
  float* buffer(std::vector<float>& b, int64_t n);
  void fill_rope_tables(std::span<const Segment> segments, int64_t n_tokens);
  void run_layer(int64_t layer, std::span<const Segment> segments, int64_t n_tokens);
  // fn(row) for rows [0, n), in fixed blocks across the pool.
  template <typename Fn>
  void for_rows(int64_t n, int64_t row_cost, Fn&& fn);

  const ModelConfig& c_;
  const ModelWeights& w_;
  ThreadPool& pool_;
  std::vector<float> inv_freq_;
  // Activations, [n_tokens, width] row-major.
  std::vector<float> x_, xn_, q_, k_, v_, att_, gate_, up_, rope_cos_, rope_sin_, gathered_,
      logits_tmp_;
};

}  // namespace shoal::infer
