// The AMX-BF16 matrix product for BF16 weights (prefill, batched scoring). Implemented in
// src/infer/forward_amx.cpp; forward_matmul.cpp decides when it runs.
//
// Why this shape: the tile unit multiplies BF16 pairs into f32 sums. The weight rows are already
// in the layout of its left operand (rows of K contiguous BF16), so W is read in place, never
// repacked or copied; only the activations are packed, once per product, into the right
// operand's pair-interleaved layout. To keep f32-grade activations, each activation is split
// into hi = bf16(x) and lo = bf16(x - hi) and both are multiplied (x is then represented to
// about 2^-17 relative; the BF16 x BF16 products are exact in f32). The sums are f32, as on the
// other paths.
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

// Activations x [m, k] split into hi/lo BF16 and packed for the tile unit: rows padded with
// zeros to a multiple of 32, k a multiple of kAmxK. Tile (b, s) covers rows [16b, 16b + 16) and
// columns [32s, 32s + 32); inside it, element (r, 2c + j) holds x[16b + c][32s + 2r + j].
struct AmxActivations {
  std::vector<uint16_t> hi, lo;
  int64_t m = 0, m_pad = 0, k = 0;
  const uint16_t* tile(const std::vector<uint16_t>& part, int64_t block, int64_t step) const {
    return part.data() + (block * (k / kAmxK) + step) * kAmxRows * kAmxK;
  }
};

// Packs x (k % kAmxK == 0, has_amx_kernels()) into `out`, in parallel over row blocks.
void amx_pack_activations(ThreadPool& pool, const float* x, int64_t ldx, int64_t m, int64_t k,
                          AmxActivations& out);

// y[i, o] = (accumulate ? y[i, o] : 0) + (sum_k x[i, k] W[o, k] + bias[o]) for i < a.m and
// o in [o0, o1), where o1 - o0 is a multiple of 32; rows [i0, i1) of the 32-row blocks of `a`
// (i0 a multiple of 32). w: BF16 rows of length a.k. One thread; call from pool tasks.
void amx_linear_block(const uint16_t* w, const float* bias, const AmxActivations& a, int64_t o0,
                      int64_t o1, int64_t i0, int64_t i1, float* y, int64_t ldy, bool accumulate);

}  // namespace shoal::infer
