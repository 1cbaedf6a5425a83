#include "infer/kv_cache.h"

#include <algorithm>
#include <cstring>

namespace shoal::infer {

KvCache::KvCache(int64_t n_layers, int64_t kv_dim)
    : kv_dim_(kv_dim), layers_(static_cast<size_t>(n_layers)) {}

void KvCache::reserve(int64_t n_positions, int64_t n_used) {
  if (n_positions <= capacity_) return;
  // Start at 256 positions, then double: a long generation reallocates O(log n) times.
  const int64_t cap = std::max({n_positions, 2 * capacity_, int64_t{256}});
  const size_t row_bytes = static_cast<size_t>(kv_dim_) * sizeof(float);
  for (auto& layer : layers_) {
    std::vector<float> grown(static_cast<size_t>(2 * cap * kv_dim_));
    if (n_used > 0) {
      std::memcpy(grown.data(), layer.data(), n_used * row_bytes);
      std::memcpy(grown.data() + cap * kv_dim_, layer.data() + capacity_ * kv_dim_,
                  n_used * row_bytes);
    }
    layer = std::move(grown);
  }
  capacity_ = cap;
}

size_t KvCache::bytes() const {
  return layers_.size() * static_cast<size_t>(2 * capacity_ * kv_dim_) * sizeof(float);
}

}  // namespace shoal::infer
