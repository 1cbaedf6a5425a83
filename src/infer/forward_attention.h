// Causal grouped-query attention over packed sequences. Implemented in
// src/infer/forward_attention.cpp.
#pragma once

#include <cstdint>
#include <span>

#include "shoal/thread_pool.h"

namespace shoal::infer {

// One sequence's part of a forward pass: its new tokens are rows [row0, row0 + n_new) of the
// packed q / output matrices, at absolute positions [pos0, pos0 + n_new). Keys and values of
// positions [0, pos0 + n_new) are rows of `keys` / `values` ([positions, kv_dim], row stride
// kv_dim): a KV cache, or the pass's own k/v activations when pos0 == 0.
struct AttentionSegment {
  int64_t row0 = 0;
  int64_t n_new = 0;
  int64_t pos0 = 0;
  const float* keys = nullptr;
  const float* values = nullptr;
};

struct AttentionShape {
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t sliding_window = 0;  // 0: none; else a query at i sees keys j with i - j < window
};

// out[r, h * head_dim + d] = sum_j softmax_j(q_h[r] . k_g[j] / sqrt(head_dim)) v_g[j, d] over the
// keys j the query may see, with g = h / (n_heads / n_kv_heads). q, out: [rows, n_heads *
// head_dim]. Work is split into fixed (segment, kv head, block of 64 queries) tasks.
void attention(ThreadPool& pool, const AttentionShape& shape,
               std::span<const AttentionSegment> segments, const float* q, float* out);

}  // namespace shoal::infer
