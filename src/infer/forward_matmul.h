// Matrix products of the forward pass: y = x W^T (+ b) for a weight matrix W kept in its stored
// dtype. Implemented in src/infer/forward_matmul.cpp.
//
// Two paths, both parallel over fixed blocks of W's rows (and of x's rows), so that every output
// element is computed by the same code whatever the thread count:
// - few activation rows (decoding): each W row is dotted with every activation row, converted to
//   f32 in registers (the row stays in L1 across the activation rows). Bandwidth-bound: reads W
//   once, at its stored width.
// - many rows (prefill, batched scoring): the AMX tile unit for BF16 and F32 weights where the
//   CPU has it (forward_amx.h); otherwise tiles of W are converted to f32 and multiplied by
//   single-threaded OpenBLAS sgemm (the model's pool supplies the threads). The conversion is
//   O(tile) per O(rows x tile) flops, i.e. a few percent once a block has hundreds of rows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "shoal/dtype.h"
#include "shoal/thread_pool.h"

namespace shoal::infer {

// A weight matrix [n_out, n_in], row-major as in the checkpoint (row o holds output o's
// weights), with an optional f32 bias [n_out].
struct Linear {
  DType dtype = DType::kF32;
  const std::byte* data = nullptr;
  int64_t n_out = 0;
  int64_t n_in = 0;
  const float* bias = nullptr;
  // Round the activations to BF16 before multiplying (BF16 weights only; ModelOptions::
  // bf16_activations): the arithmetic of PyTorch's bf16 modules and llama.cpp, one AMX product
  // per output instead of two. Otherwise the products keep f32-grade activations.
  bool bf16_activations = false;

  const std::byte* row(int64_t o) const {
    return data + static_cast<size_t>(o) * static_cast<size_t>(n_in) * dtype_size(dtype);
  }
};

// Activation rows at or below this count take the row-by-row path.
inline constexpr int64_t kGemvMaxRows = 4;

// y[i, o] = sum_k x[i, k] W[o, k] + b[o] for i < m, o < n_out. x: [m, n_in] with row stride
// ldx; y: [m, n_out] with row stride ldy. accumulate: y += instead of y = (the residual add).
void linear(ThreadPool& pool, const Linear& w, const float* x, int64_t ldx, int64_t m, float* y,
            int64_t ldy, bool accumulate);

// One destination of linear_shared: y = x W^T (+ b), y with row stride ldy.
struct LinearOutput {
  const Linear* w;
  float* y;
  int64_t ldy;
};

// Several products of the same x (q, k and v; gate and up), without accumulation: the same
// results as one linear() call each, with x prepared once for all of them.
void linear_shared(ThreadPool& pool, std::span<const LinearOutput> outputs, const float* x,
                   int64_t ldx, int64_t m);

// The same through the plain path only (tests compare both paths against this).
void linear_reference(const Linear& w, const float* x, int64_t ldx, int64_t m, float* y,
                      int64_t ldy, bool accumulate);

// Limits OpenBLAS to one thread (the model's pool supplies the threads). Idempotent.
void use_single_threaded_blas();

}  // namespace shoal::infer
