// Q8_0 quantisation as llama.cpp's reference quantizer does it (ggml-quants.c,
// quantize_row_q8_0_ref; gguf-py's quants.py gives the same bytes): per block of 32 values,
// d = amax / 127 and q = round(x / d) with halves away from zero. Every step is the same f32
// operation in the same order, so the bytes are identical, not merely close.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "shoal/error.h"
#include "shoal/gguf.h"

namespace shoal {

void quantize_q8_0(const float* src, void* blocks, int64_t n) {
  SHOAL_ASSERT(n % kQ8BlockSize == 0);
  auto* out = static_cast<unsigned char*>(blocks);
  for (int64_t b = 0; b < n / kQ8BlockSize; ++b, src += kQ8BlockSize, out += kQ8BlockBytes) {
    float amax = 0.0f;
    for (int64_t j = 0; j < kQ8BlockSize; ++j) amax = std::max(amax, std::fabs(src[j]));
    const float d = amax / 127.0f;
    // The reciprocal of the unrounded f32 scale, as the reference computes it; the f16 scale
    // that is stored is only used for dequantising.
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t d_bits = f32_to_f16(d);
    std::memcpy(out, &d_bits, 2);
    for (int64_t j = 0; j < kQ8BlockSize; ++j) {
      // roundf: nearest, halves away from zero. |x * id| <= 127 for finite blocks; the clamp
      // and the NaN check only keep a block holding NaN or infinity from undefined behaviour.
      const float r = std::roundf(src[j] * id);
      const float q = std::isnan(r) ? 0.0f : std::clamp(r, -127.0f, 127.0f);
      out[2 + j] = static_cast<unsigned char>(static_cast<int8_t>(q));
    }
  }
}

}  // namespace shoal
