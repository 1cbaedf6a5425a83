// Element-wise and row kernels of the forward pass: 16-bit -> f32 conversion of weight rows,
// f32 dot products, RMSNorm, SiLU gating, RoPE. The AVX2/FMA/F16C versions are chosen at run
// time; the plain loops in namespace `ref` are the references the kernel tests compare against.
// Kernels never throw: shapes and dtypes are validated when the model loads. Implemented in
// src/infer/forward_kernels.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "shoal/dtype.h"

namespace shoal::infer {

// sum_i x[i] * w[i] for a weight row w stored as F32, F16 or BF16 (any alignment), converted in
// registers: the decode path's inner loop, bound by reading w once at its stored width.
float dot_row(DType type, const std::byte* w, const float* x, int64_t n);

// The BF16 decode loop on AVX-512 (has_paired_bf16_kernel(); a plain loop elsewhere): x in pair
// order, made by
// to_pair_order once per activation row, where each whole block of 32 values holds its 16
// even-indexed values and then its 16 odd-indexed ones (a tail of n % 32 stays in place). Two
// BF16 weights share a 32-bit lane, so this order lets the loop take 64 weight bytes at a time
// and make their f32 values with one shift or mask each instead of widening. Same products as
// dot_row, summed in another order.
bool has_paired_bf16_kernel();
void to_pair_order(const float* x, int64_t n, float* out);
float dot_row_bf16_paired(const std::byte* w, const float* x_paired, int64_t n);

// dst[i] = src element i as f32 (src: F32, F16 or BF16 bytes, any alignment). Exact.
void convert_to_f32(DType type, const std::byte* src, float* dst, int64_t n);

// sum_i a[i] * b[i] in f32. The vector version keeps 32 partial sums combined in a fixed order,
// so a result depends on n and the machine's ISA, never on threads or timing.
float dot(const float* a, const float* b, int64_t n);

// out[i] = w[i] * (x[i] / sqrt(mean(x^2) + eps)); the mean of squares is accumulated in double.
// out may alias x.
void rms_norm(const float* x, const float* w, int64_t n, double eps, float* out);

// row[i] = exp(row[i] - shift) for i < n (softmax numerators); returns their sum, accumulated
// in double. The AVX-512 exp is within an f32 ulp of the correctly rounded one.
double exp_shifted_sum(float* row, float shift, int64_t n);

// gate[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)).
void silu_mul(float* gate, const float* up, int64_t n);

// y[i] += x[i]
void add_into(float* y, const float* x, int64_t n);

// Rotate-half RoPE of one head vector x[0, 2 * half): for i < half,
// (x[i], x[i + half]) <- (x[i] c_i - x[i + half] s_i, x[i + half] c_i + x[i] s_i).
void rope_rotate_half(float* x, const float* cos, const float* sin, int64_t half);

// Whether the AVX2/FMA/F16C versions run (decided once, at load).
bool has_avx2_kernels();

namespace ref {
void convert_to_f32(DType type, const std::byte* src, float* dst, int64_t n);
float dot(const float* a, const float* b, int64_t n);
float dot_row(DType type, const std::byte* w, const float* x, int64_t n);
}  // namespace ref

}  // namespace shoal::infer
