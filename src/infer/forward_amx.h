// The AMX-BF16 matrix product for BF16 weights (prefill, batched scoring). Implemented in
// src/infer/forward_amx.cpp; forward_matmul.cpp decides when it runs.
//
// Why this shape: the tile unit multiplies BF16 pairs into f32 sums. The weight rows are already
// in the layout of its left operand (rows of K contiguous BF16), so W is read in place, never
// repacked or copied; only the activations are packed, once per product, into the right
// operand's pair-interleaved layout. To keep f32-grade activations, each activation is split
// into hi = bf16(x) and lo = bf16(x - hi) and both are multiplied (x is then represented to
// about 2^-17 relative; the BF16 x BF16 products are exact in f32). A model that rounds its
// activations to BF16 (ModelOptions::bf16_activations, PyTorch's and llama.cpp's arithmetic)
// multiplies hi alone: half the tile products. The sums are f32, as on the other paths.
#pragma once

#include <cstdint>
#include <vector>

#include "shoal/thread_pool.h"

namespace shoal::infer {

// Rows of W per tile and steps of K per tile product.
inline constexpr int64_t kAmxRows = 16;
inline constexpr int64_t kAmxK = 32;

// Whether the AMX path can run: the CPU has AMX-TILE, AMX-BF16, AVX512-BF16 and AVX512-BW, the
// kernel granted this process the tile-data state, and SHOAL_NO_AMX is not set. Decided once.
bool has_amx_kernels();

// Activations x [m, k] split into hi/lo BF16 (or hi alone) and packed for the tile unit: rows
// padded with zeros to a multiple of 32, k a multiple of kAmxK. Tile (b, s) covers rows [16b, 16b +
// 16) and columns [32s, 32s + 32); inside it, element (r, 2c + j) holds x[16b + c][32s + 2r + j].
struct AmxActivations {
  std::vector<uint16_t> hi, lo;
  bool has_lo = true;  // false: x rounded to BF16, lo not packed
  int64_t m = 0, m_pad = 0, k = 0;
  const uint16_t* tile(const std::vector<uint16_t>& part, int64_t block, int64_t step) const {
    return part.data() + (block * (k / kAmxK) + step) * kAmxRows * kAmxK;
  }
};

// Packs x (k % kAmxK == 0, has_amx_kernels()) into `out`, in parallel over row blocks; lo only
// when with_lo.
void amx_pack_activations(ThreadPool& pool, const float* x, int64_t ldx, int64_t m, int64_t k,
                          bool with_lo, AmxActivations& out);

// A slab of W rows in BF16 as the tile unit reads them: `rows` (a multiple of 32) rows of a.k
// values, row r at hi + r * ld. F32 weights come split like the activations, W = hi + lo, and
// the product takes the three terms hi*hi + hi*lo + lo*hi (the dropped lo*lo is below 2^-16 of
// each product). Output row r of the slab is column first_column + r of y.
struct AmxWeights {
  const uint16_t* hi = nullptr;
  const uint16_t* lo = nullptr;  // null for BF16 weights
  int64_t ld = 0;
  int64_t rows = 0;
  const float* bias = nullptr;  // bias of the slab's first row, or null
  int64_t first_column = 0;
};

// Splits F32 weight rows into the hi/lo BF16 halves of an AmxWeights slab (n values each).
void amx_split_weights(const float* w, int64_t n, uint16_t* hi, uint16_t* lo);

// y[i, c + r] = (accumulate ? y[i, c + r] : 0) + (sum_k x[i, k] W[r, k] + bias[r]) for i < a.m
// and the slab's rows r (c = w.first_column); activation rows [i0, i1) of `a`'s 32-row blocks
// (i0 a multiple of 32). One thread; call from pool tasks, only when has_amx_kernels().
void amx_linear_block(const AmxWeights& w, const AmxActivations& a, int64_t i0, int64_t i1,
                      float* y, int64_t ldy, bool accumulate);

}  // namespace shoal::infer
