#include "infer/forward_attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "infer/forward_kernels.h"

namespace shoal::infer {
namespace {

// Queries per task: the score block [64, keys] stays small (64 x 4096 floats = 1 MiB) and the
// masked upper triangle it computes in vain is at most 64 x 64 per block.
constexpr int64_t kQueryBlock = 64;

float* scratch(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

struct Task {
  size_t segment;
  int64_t kv_head;
  int64_t i0;  // first query (index into the segment's new tokens)
};

void run_task(const AttentionShape& s, const AttentionSegment& seg, const Task& t, const float* q,
              float* out) {
  const int64_t q_dim = s.n_heads * s.head_dim, kv_dim = s.n_kv_heads * s.head_dim;
  const int64_t group = s.n_heads / s.n_kv_heads;
  const int64_t nq = std::min(kQueryBlock, seg.n_new - t.i0);
  const int64_t first_pos = seg.pos0 + t.i0;  // absolute position of the block's first query
  // Keys [k0, k1) cover every key some query of the block sees.
  const int64_t k1 = first_pos + nq;
  const int64_t k0 =
      s.sliding_window > 0 ? std::max<int64_t>(0, first_pos - s.sliding_window + 1) : 0;
  const int64_t nk = k1 - k0;
  const float* kg = seg.keys + k0 * kv_dim + t.kv_head * s.head_dim;
  const float* vg = seg.values + k0 * kv_dim + t.kv_head * s.head_dim;
  float* scores = scratch(static_cast<size_t>(nq * nk));
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.head_dim)));

  for (int64_t h = t.kv_head * group; h < (t.kv_head + 1) * group; ++h) {
    const float* qh = q + (seg.row0 + t.i0) * q_dim + h * s.head_dim;
    float* oh = out + (seg.row0 + t.i0) * q_dim + h * s.head_dim;
    // scores[i, j] = scale * q_h[i] . k_g[k0 + j]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nq), static_cast<int>(nk),
                static_cast<int>(s.head_dim), scale, qh, static_cast<int>(q_dim), kg,
                static_cast<int>(kv_dim), 0.0f, scores, static_cast<int>(nk));
    for (int64_t i = 0; i < nq; ++i) {
      float* row = scores + i * nk;
      const int64_t pos = first_pos + i;
      // Visible keys: [lo, hi] in absolute positions.
      const int64_t lo =
          s.sliding_window > 0 ? std::max<int64_t>(0, pos - s.sliding_window + 1) : 0;
      const int64_t hi = pos;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = lo; j <= hi; ++j) mx = std::max(mx, row[j - k0]);
      std::fill(row, row + (lo - k0), 0.0f);
      std::fill(row + (hi - k0 + 1), row + nk, 0.0f);
      const double sum = exp_shifted_sum(row + (lo - k0), mx, hi - lo + 1);
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = lo - k0; j <= hi - k0; ++j) row[j] *= inv;
    }
    // out_h[i] = sum_j p[i, j] v_g[k0 + j]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(nq),
                static_cast<int>(s.head_dim), static_cast<int>(nk), 1.0f, scores,
                static_cast<int>(nk), vg, static_cast<int>(kv_dim), 0.0f, oh,
                static_cast<int>(q_dim));
  }
}

}  // namespace

void attention(ThreadPool& pool, const AttentionShape& shape,
               std::span<const AttentionSegment> segments, const float* q, float* out) {
  std::vector<Task> tasks;
  for (size_t si = 0; si < segments.size(); ++si) {
    for (int64_t g = 0; g < shape.n_kv_heads; ++g) {
      for (int64_t i0 = 0; i0 < segments[si].n_new; i0 += kQueryBlock) tasks.push_back({si, g, i0});
    }
  }
  pool.parallel_for(tasks.size(), [&](size_t i) {
    run_task(shape, segments[tasks[i].segment], tasks[i], q, out);
  });
}

}  // namespace shoal::infer
