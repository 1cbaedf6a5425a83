#include "infer/forward_matmul.h"

#include <cblas.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "infer/forward_kernels.h"

namespace shoal::infer {
namespace {

// A converted W tile holds at most this many floats (4 MiB): big enough that sgemm's repacking
// of the activation block is amortised over >= 64 output columns, small enough to stay in L3.
constexpr int64_t kTileFloats = int64_t{1} << 20;
// Activation rows per GEMM task: each task converts its own tile, so a tile is converted
// ceil(m / kRowBlock) times; 512 rows make that under 1% of the task's flops.
constexpr int64_t kRowBlock = 512;
// Weight elements per task on the row-by-row path (64K elements = 128 KiB of BF16): enough work
// to amortise a task's dispatch, small enough to balance a few thousand rows over the threads.
constexpr int64_t kGemvTaskElems = int64_t{1} << 16;

int64_t tile_rows(int64_t n_in) {
  const int64_t r = std::clamp<int64_t>(kTileFloats / std::max<int64_t>(n_in, 1), 16, 256);
  return r / 16 * 16;
}

// Per-thread scratch, grown on demand and reused across calls.
float* scratch(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

void store(float* y, float v, bool accumulate) {
  *y = accumulate ? *y + v : v;
}

// Rows [o0, o1) of W against all m activation rows; a W row stays in L1 across the m rows.
void gemv_rows(const Linear& w, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy,
               bool accumulate, int64_t o0, int64_t o1) {
  for (int64_t o = o0; o < o1; ++o) {
    const float b = w.bias != nullptr ? w.bias[o] : 0.0f;
    for (int64_t i = 0; i < m; ++i) {
      store(y + i * ldy + o, dot_row(w.dtype, w.row(o), x + i * ldx, w.n_in) + b, accumulate);
    }
  }
}

void gemm_tile(const Linear& w, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy,
               bool accumulate, int64_t o0, int64_t n_o) {
  const float* b = reinterpret_cast<const float*>(w.row(o0));
  if (w.dtype != DType::kF32) {
    float* buf = scratch(static_cast<size_t>(n_o * w.n_in));
    convert_to_f32(w.dtype, w.row(o0), buf, n_o * w.n_in);
    b = buf;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n_o),
              static_cast<int>(w.n_in), 1.0f, x, static_cast<int>(ldx), b, static_cast<int>(w.n_in),
              accumulate ? 1.0f : 0.0f, y + o0, static_cast<int>(ldy));
  if (w.bias != nullptr) {
    for (int64_t i = 0; i < m; ++i) add_into(y + i * ldy + o0, w.bias + o0, n_o);
  }
}

}  // namespace

void linear(ThreadPool& pool, const Linear& w, const float* x, int64_t ldx, int64_t m, float* y,
            int64_t ldy, bool accumulate) {
  if (m <= 0) return;
  if (m <= kGemvMaxRows) {
    const int64_t per_task = std::max<int64_t>(1, kGemvTaskElems / std::max<int64_t>(w.n_in, 1));
    const int64_t n_tasks = (w.n_out + per_task - 1) / per_task;
    pool.parallel_for(static_cast<size_t>(n_tasks), [&](size_t t) {
      const int64_t o0 = static_cast<int64_t>(t) * per_task;
      gemv_rows(w, x, ldx, m, y, ldy, accumulate, o0, std::min(w.n_out, o0 + per_task));
    });
    return;
  }
  const int64_t tr = tile_rows(w.n_in);
  const int64_t n_tiles = (w.n_out + tr - 1) / tr;
  const int64_t n_blocks = (m + kRowBlock - 1) / kRowBlock;
  pool.parallel_for(static_cast<size_t>(n_tiles * n_blocks), [&](size_t task) {
    const int64_t t = static_cast<int64_t>(task) / n_blocks;
    const int64_t b = static_cast<int64_t>(task) % n_blocks;
    const int64_t i0 = b * kRowBlock;
    gemm_tile(w, x + i0 * ldx, ldx, std::min(kRowBlock, m - i0), y + i0 * ldy, ldy, accumulate,
              t * tr, std::min(tr, w.n_out - t * tr));
  });
}

void linear_reference(const Linear& w, const float* x, int64_t ldx, int64_t m, float* y,
                      int64_t ldy, bool accumulate) {
  std::vector<float> wr(static_cast<size_t>(w.n_in));
  for (int64_t o = 0; o < w.n_out; ++o) {
    ref::convert_to_f32(w.dtype, w.row(o), wr.data(), w.n_in);
    const float b = w.bias != nullptr ? w.bias[o] : 0.0f;
    for (int64_t i = 0; i < m; ++i) {
      store(y + i * ldy + o, ref::dot(x + i * ldx, wr.data(), w.n_in) + b, accumulate);
    }
  }
}

void use_single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

}  // namespace shoal::infer
