// One sequence's attention keys and values, per layer: row p of keys(layer) holds the k
// projection of position p, after RoPE, for all KV heads (row-major [capacity, kv_dim], f32,
// head h at columns [h * head_dim, (h + 1) * head_dim)). values(layer) is laid out the same.
// That is the layout of the forward pass's k/v activations, so appending is a row copy and the
// attention GEMMs read the cache in place. Implemented in src/infer/kv_cache.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace shoal::infer {

class KvCache {
 public:
  KvCache(int64_t n_layers, int64_t kv_dim);

  // Makes room for n_positions rows per layer, keeping rows [0, n_used). Grows geometrically,
  // so appending token by token costs amortised O(1) copies per token.
  void reserve(int64_t n_positions, int64_t n_used);
  int64_t capacity() const { return capacity_; }
  int64_t kv_dim() const { return kv_dim_; }

  float* keys(int64_t layer) { return layers_[layer].data(); }
  float* values(int64_t layer) { return layers_[layer].data() + capacity_ * kv_dim_; }
  // Bytes held (for memory accounting).
  size_t bytes() const;

 private:
  int64_t kv_dim_;
  int64_t capacity_ = 0;
  std::vector<std::vector<float>> layers_;  // per layer: keys [capacity, kv_dim], then values
};

}  // namespace shoal::infer
