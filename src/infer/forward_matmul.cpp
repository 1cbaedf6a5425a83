#include "infer/forward_matmul.h"

#include <cblas.h>

#include <algorithm>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include "infer/forward_amx.h"
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

// Whether the product rounds its activations to BF16 first.
bool rounds_activations(const Linear& w) {
  return w.bf16_activations && w.dtype == DType::kBF16;
}

// x [m, n] rounded to BF16 values, in f32, row stride n: the activations a rounding product
// multiplies on paths that take f32 (the calling thread's buffer, valid until its next call).
const float* rounded_rows(const float* x, int64_t ldx, int64_t m, int64_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < static_cast<size_t>(m * n)) buf.resize(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t k = 0; k < n; ++k) buf[i * n + k] = bf16_to_f32(f32_to_bf16(x[i * ldx + k]));
  }
  return buf.data();
}

// The activations of the row-by-row path, as its loop reads them: rounded where the product
// rounds, in pair order for the paired BF16 loop (in the calling thread's buffers).
struct GemvInput {
  const float* x;
  int64_t ldx;
  bool paired;
};

GemvInput prepare_gemv(const Linear& w, const float* x, int64_t ldx, int64_t m) {
  const int64_t n = w.n_in;
  if (rounds_activations(w)) {
    x = rounded_rows(x, ldx, m, n);
    ldx = n;
  }
  if (w.dtype != DType::kBF16 || !has_paired_bf16_kernel()) return {x, ldx, false};
  thread_local std::vector<float> paired;
  if (paired.size() < static_cast<size_t>(m * n)) paired.resize(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i) to_pair_order(x + i * ldx, n, paired.data() + i * n);
  return {paired.data(), n, true};
}

// Rows [o0, o1) of W against all m activation rows; a W row stays in L1 across the m rows.
void gemv_rows(const Linear& w, const GemvInput& in, int64_t m, float* y, int64_t ldy,
               bool accumulate, int64_t o0, int64_t o1) {
  for (int64_t o = o0; o < o1; ++o) {
    const float b = w.bias != nullptr ? w.bias[o] : 0.0f;
    for (int64_t i = 0; i < m; ++i) {
      const float* xi = in.x + i * in.ldx;
      const float dot = in.paired ? dot_row_bf16_paired(w.row(o), xi, w.n_in)
                                  : dot_row(w.dtype, w.row(o), xi, w.n_in);
      store(y + i * ldy + o, dot + b, accumulate);
    }
  }
}

// The row-by-row path for products of one x (one call, or q/k/v, gate/up sharing their input
// and dtype): tasks of whole W rows of every output in one parallel loop, so a decoded token
// waits for the pool once per group rather than once per matrix.
void gemv(ThreadPool& pool, std::span<const LinearOutput> outputs, const float* x, int64_t ldx,
          int64_t m, bool accumulate) {
  const GemvInput in = prepare_gemv(*outputs[0].w, x, ldx, m);
  struct Task {
    size_t output;
    int64_t o0, o1;  // W rows [o0, o1)
  };
  std::vector<Task> tasks;
  for (size_t j = 0; j < outputs.size(); ++j) {
    const Linear& w = *outputs[j].w;
    const int64_t per_task = std::max<int64_t>(1, kGemvTaskElems / std::max<int64_t>(w.n_in, 1));
    for (int64_t o0 = 0; o0 < w.n_out; o0 += per_task) {
      tasks.push_back({j, o0, std::min(w.n_out, o0 + per_task)});
    }
  }
  pool.parallel_for(tasks.size(), [&](size_t t) {
    const Task& task = tasks[t];
    const LinearOutput& out = outputs[task.output];
    gemv_rows(*out.w, in, m, out.y, out.ldy, accumulate, task.o0, task.o1);
  });
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

// The AMX path: BF16 weights whose rows split into whole K steps (every model width in practice).
bool amx_fits(const Linear& w) {
  return (w.dtype == DType::kBF16 || w.dtype == DType::kF32) && w.n_in % kAmxK == 0 &&
         w.n_out >= 2 * kAmxRows && has_amx_kernels();
}

// W rows and activation rows per AMX task: each activation chunk is reused by the 4 W pairs of
// the slab, whose chunk (128 rows x 256 columns, 64 KiB) stays in L2.
constexpr int64_t kAmxTaskRows = 128;
constexpr int64_t kAmxTaskActivations = 256;

// Products of one activation matrix with several weights (q, k, v; gate, up): the activations
// are packed once, and the tasks of all products share one parallel loop.
void amx_linear(ThreadPool& pool, std::span<const LinearOutput> outputs, const float* x,
                int64_t ldx, int64_t m, bool accumulate) {
  // The caller's buffer, named by a reference: a lambda naming a thread_local would see the
  // worker thread's own instance.
  thread_local AmxActivations buffer;
  AmxActivations& packed = buffer;
  amx_pack_activations(pool, x, ldx, m, outputs[0].w->n_in, !rounds_activations(*outputs[0].w),
                       packed);
  const int64_t n_blocks = (packed.m_pad + kAmxTaskActivations - 1) / kAmxTaskActivations;
  // Task t of output j covers W rows [t * kAmxTaskRows, ...) of its whole 32-row pairs; one more
  // task per output does a remainder of < 32 rows through sgemm.
  std::vector<std::pair<size_t, int64_t>> tasks;  // (output, first W row or -1 for remainder)
  bool has_remainder = false;
  for (size_t j = 0; j < outputs.size(); ++j) {
    const Linear& w = *outputs[j].w;
    const int64_t n_main = w.n_out / (2 * kAmxRows) * (2 * kAmxRows);
    for (int64_t o0 = 0; o0 < n_main; o0 += kAmxTaskRows) {
      for (int64_t b = 0; b < n_blocks; ++b) tasks.emplace_back(j, o0 * n_blocks + b);
    }
    if (n_main < w.n_out) {
      tasks.emplace_back(j, -1);
      has_remainder = true;
    }
  }
  // The remainder's sgemm takes f32 activations: rounded ones where the packing rounded.
  const float* x_remainder = x;
  int64_t ld_remainder = ldx;
  if (has_remainder && !packed.has_lo) {
    x_remainder = rounded_rows(x, ldx, m, packed.k);
    ld_remainder = packed.k;
  }
  pool.parallel_for(tasks.size(), [&](size_t task) {
    const auto [j, where] = tasks[task];
    const Linear& w = *outputs[j].w;
    float* y = outputs[j].y;
    const int64_t ldy = outputs[j].ldy;
    const int64_t n_main = w.n_out / (2 * kAmxRows) * (2 * kAmxRows);
    if (where < 0) {
      gemm_tile(w, x_remainder, ld_remainder, m, y, ldy, accumulate, n_main, w.n_out - n_main);
      return;
    }
    const int64_t o0 = where / n_blocks, i0 = where % n_blocks * kAmxTaskActivations;
    AmxWeights slab{reinterpret_cast<const uint16_t*>(w.row(o0)),
                    nullptr,
                    w.n_in,
                    std::min(n_main, o0 + kAmxTaskRows) - o0,
                    w.bias != nullptr ? w.bias + o0 : nullptr,
                    o0};
    if (w.dtype == DType::kF32) {
      // The task's own split of its slab: O(slab) work against O(slab x 256 rows) of products.
      thread_local std::vector<uint16_t> hi, lo;
      const size_t n = static_cast<size_t>(slab.rows * w.n_in);
      if (hi.size() < n) {
        hi.resize(n);
        lo.resize(n);
      }
      amx_split_weights(reinterpret_cast<const float*>(w.row(o0)), slab.rows * w.n_in, hi.data(),
                        lo.data());
      slab.hi = hi.data();
      slab.lo = lo.data();
    }
    amx_linear_block(slab, packed, i0, std::min(packed.m_pad, i0 + kAmxTaskActivations), y, ldy,
                     accumulate);
  });
}

}  // namespace

void linear(ThreadPool& pool, const Linear& w, const float* x, int64_t ldx, int64_t m, float* y,
            int64_t ldy, bool accumulate) {
  if (m <= 0) return;
  if (m <= kGemvMaxRows) {
    const LinearOutput out{&w, y, ldy};
    gemv(pool, {&out, 1}, x, ldx, m, accumulate);
    return;
  }
  if (amx_fits(w)) {
    const LinearOutput out{&w, y, ldy};
    amx_linear(pool, {&out, 1}, x, ldx, m, accumulate);
    return;
  }
  if (rounds_activations(w)) {
    x = rounded_rows(x, ldx, m, w.n_in);
    ldx = w.n_in;
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

void linear_shared(ThreadPool& pool, std::span<const LinearOutput> outputs, const float* x,
                   int64_t ldx, int64_t m) {
  if (outputs.empty() || m <= 0) return;
  // One preparation of x serves all outputs when they read it alike.
  const Linear& first = *outputs[0].w;
  const bool alike = std::all_of(outputs.begin(), outputs.end(), [&](const LinearOutput& o) {
    return o.w->n_in == first.n_in && o.w->dtype == first.dtype &&
           rounds_activations(*o.w) == rounds_activations(first);
  });
  if (alike && m <= kGemvMaxRows) {
    gemv(pool, outputs, x, ldx, m, false);
    return;
  }
  const bool all_amx =
      alike && m > kGemvMaxRows &&
      std::all_of(outputs.begin(), outputs.end(), [](auto& o) { return amx_fits(*o.w); });
  if (all_amx) {
    amx_linear(pool, outputs, x, ldx, m, false);
    return;
  }
  for (const LinearOutput& o : outputs) linear(pool, *o.w, x, ldx, m, o.y, o.ldy, false);
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
