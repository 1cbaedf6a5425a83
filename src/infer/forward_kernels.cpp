#include "infer/forward_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and then warn that it may be
// used uninitialised; every lane is written.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace shoal::infer {
namespace {

// One check at load time; every x86-64 machine since Haswell / Zen has all three. The baseline
// build targets plain x86-64, so these paths are compiled per function. __builtin_cpu_init must
// run first: this initialiser may run before libgcc's own constructor has filled in the CPU model.
bool detect_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}
const bool kHasAvx2 = detect_avx2();

bool detect_avx512() {
  __builtin_cpu_init();
  return detect_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}
const bool kHasAvx512 = detect_avx512();

[[gnu::target("avx2,fma,f16c")]] void bf16_to_f32_avx2(const std::byte* src, float* dst,
                                                       int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
  }
  ref::convert_to_f32(DType::kBF16, src + 2 * i, dst + i, n - i);
}

[[gnu::target("avx2,fma,f16c")]] void f16_to_f32_avx2(const std::byte* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  ref::convert_to_f32(DType::kF16, src + 2 * i, dst + i, n - i);
}

// How far ahead of its loads a decode kernel asks for the weight stream, into L2. One core's
// hardware prefetchers alone left the BF16 loop at ~8 GB/s from memory and two cores at ~17.5;
// with prefetcht1 8 KiB ahead two cores read ~22-24.5 GB/s (the paired loop below ~26-27, as fast
// as a plain sum of the same bytes), where prefetcht0 2 KiB ahead gave ~19. Past the end of a
// task's rows the requests fetch the next task's rows: a few percent of the traffic at most.
constexpr int64_t kPrefetchBytes = 8192;

// Requests the two cache lines of 128 stream bytes at p, kPrefetchBytes ahead, into L2.
inline void prefetch_stream(const void* p) {
  const char* c = static_cast<const char*>(p) + kPrefetchBytes;
  __builtin_prefetch(c, 0, 2);
  __builtin_prefetch(c + 64, 0, 2);
}

// 4 accumulators x 8 lanes: two FMA ports with 4-cycle latency need 8 independent chains to
// stay busy; 4 already saturate the loads at L1/L2 bandwidth, which bounds this loop.
// kPrefetchWeights: b is a weight row of a decode product, a stream worth prefetching.
template <bool kPrefetchWeights>
[[gnu::target("avx2,fma,f16c")]] float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    if constexpr (kPrefetchWeights) prefetch_stream(b + i);
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
  float sum = _mm_cvtss_f32(q);
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// Eight 16-bit weights -> eight floats, in registers.
[[gnu::target("avx2,fma,f16c")]] inline __m256 load8(DType type, const std::byte* w) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
  if (type == DType::kF16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

[[gnu::target("avx2,fma,f16c")]] float dot_row16_avx2(DType type, const std::byte* w,
                                                      const float* x, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(load8(type, w + 2 * i), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(load8(type, w + 2 * (i + 8)), _mm256_loadu_ps(x + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(load8(type, w + 2 * (i + 16)), _mm256_loadu_ps(x + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(load8(type, w + 2 * (i + 24)), _mm256_loadu_ps(x + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) {
    acc0 = _mm256_fmadd_ps(load8(type, w + 2 * i), _mm256_loadu_ps(x + i), acc0);
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
  return _mm_cvtss_f32(q) + ref::dot_row(type, w + 2 * i, x + i, n - i);
}

// GCC 12's AVX-512 intrinsics use _mm512_undefined_* internally, which its own -Wuninitialized
// reports as uninitialised use (a known false positive); silence it for these kernels only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// Sixteen 16-bit weights -> sixteen floats, in registers.
[[gnu::target("avx512f,avx512bw,avx2,fma,f16c")]] inline __m512 load16(DType type,
                                                                       const std::byte* w) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  if (type == DType::kF16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// The AVX2 kernel at twice the width: decoding reads each weight once, and at 8 lanes the
// widening and shifting per weight byte kept the loop from streaming weights as fast as
// memory delivers them.
[[gnu::target("avx512f,avx512bw,avx2,fma,f16c")]] float dot_row16_avx512(DType type,
                                                                         const std::byte* w,
                                                                         const float* x,
                                                                         int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    prefetch_stream(w + 2 * i);
    acc0 = _mm512_fmadd_ps(load16(type, w + 2 * i), _mm512_loadu_ps(x + i), acc0);
    acc1 = _mm512_fmadd_ps(load16(type, w + 2 * (i + 16)), _mm512_loadu_ps(x + i + 16), acc1);
    acc2 = _mm512_fmadd_ps(load16(type, w + 2 * (i + 32)), _mm512_loadu_ps(x + i + 32), acc2);
    acc3 = _mm512_fmadd_ps(load16(type, w + 2 * (i + 48)), _mm512_loadu_ps(x + i + 48), acc3);
  }
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm512_fmadd_ps(load16(type, w + 2 * i), _mm512_loadu_ps(x + i), acc0);
  }
  const __m512 s = _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3));
  return _mm512_reduce_add_ps(s) + ref::dot_row(type, w + 2 * i, x + i, n - i);
}

// BF16 pairs share a 32-bit lane: lane j of 64 loaded bytes holds weights 2j (low half) and
// 2j + 1 (high half), so a shift and a mask make the f32 values of the even and of the odd
// weights, with no widening; x comes in pair order to match (to_pair_order).
[[gnu::target("avx512f,avx512bw")]] inline __m512 even_weights(__m512i v) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
[[gnu::target("avx512f,avx512bw")]] inline __m512 odd_weights(__m512i v) {
  return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

[[gnu::target("avx512f,avx512bw")]] float dot_bf16_paired_avx512(const std::byte* w,
                                                                 const float* xp, int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    prefetch_stream(w + 2 * i);
    const __m512i v0 = _mm512_loadu_si512(w + 2 * i), v1 = _mm512_loadu_si512(w + 2 * i + 64);
    acc0 = _mm512_fmadd_ps(even_weights(v0), _mm512_loadu_ps(xp + i), acc0);
    acc1 = _mm512_fmadd_ps(odd_weights(v0), _mm512_loadu_ps(xp + i + 16), acc1);
    acc2 = _mm512_fmadd_ps(even_weights(v1), _mm512_loadu_ps(xp + i + 32), acc2);
    acc3 = _mm512_fmadd_ps(odd_weights(v1), _mm512_loadu_ps(xp + i + 48), acc3);
  }
  if (i + 32 <= n) {
    const __m512i v0 = _mm512_loadu_si512(w + 2 * i);
    acc0 = _mm512_fmadd_ps(even_weights(v0), _mm512_loadu_ps(xp + i), acc0);
    acc1 = _mm512_fmadd_ps(odd_weights(v0), _mm512_loadu_ps(xp + i + 16), acc1);
    i += 32;
  }
  const __m512 s = _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3));
  return _mm512_reduce_add_ps(s) + ref::dot_row(DType::kBF16, w + 2 * i, xp + i, n - i);
}

#pragma GCC diagnostic pop

}  // namespace

bool has_paired_bf16_kernel() {
  return kHasAvx512;
}

void to_pair_order(const float* x, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int64_t j = 0; j < 16; ++j) {
      out[i + j] = x[i + 2 * j];
      out[i + 16 + j] = x[i + 2 * j + 1];
    }
  }
  for (; i < n; ++i) out[i] = x[i];
}

float dot_row_bf16_paired(const std::byte* w, const float* x_paired, int64_t n) {
  if (kHasAvx512) return dot_bf16_paired_avx512(w, x_paired, n);
  float sum = 0.0f;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    float wv[32];
    ref::convert_to_f32(DType::kBF16, w + 2 * i, wv, 32);
    for (int64_t j = 0; j < 16; ++j) {
      sum += wv[2 * j] * x_paired[i + j] + wv[2 * j + 1] * x_paired[i + 16 + j];
    }
  }
  return sum + ref::dot_row(DType::kBF16, w + 2 * i, x_paired + i, n - i);
}

namespace ref {

float dot_row(DType type, const std::byte* w, const float* x, int64_t n) {
  float sum = 0.0f;
  float buf[64];
  for (int64_t i = 0; i < n; i += 64) {
    const int64_t len = std::min<int64_t>(64, n - i);
    convert_to_f32(type, w + i * static_cast<int64_t>(dtype_size(type)), buf, len);
    for (int64_t j = 0; j < len; ++j) sum += x[i + j] * buf[j];
  }
  return sum;
}

void convert_to_f32(DType type, const std::byte* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    switch (type) {
      case DType::kBF16: {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
        break;
      }
      case DType::kF16: {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = f16_to_f32(h);
        break;
      }
      default:
        std::memcpy(dst + i, src + 4 * i, 4);
        break;
    }
  }
}

float dot(const float* a, const float* b, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

}  // namespace ref

bool has_avx2_kernels() {
  return kHasAvx2;
}

void convert_to_f32(DType type, const std::byte* src, float* dst, int64_t n) {
  if (n <= 0) return;
  if (type == DType::kF32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
  } else if (kHasAvx2 && type == DType::kBF16) {
    bf16_to_f32_avx2(src, dst, n);
  } else if (kHasAvx2 && type == DType::kF16) {
    f16_to_f32_avx2(src, dst, n);
  } else {
    ref::convert_to_f32(type, src, dst, n);
  }
}

float dot_row(DType type, const std::byte* w, const float* x, int64_t n) {
  if (type == DType::kF32) {
    const float* wf = reinterpret_cast<const float*>(w);
    return kHasAvx2 ? dot_avx2<true>(x, wf, n) : ref::dot(x, wf, n);
  }
  if (kHasAvx512) return dot_row16_avx512(type, w, x, n);
  return kHasAvx2 ? dot_row16_avx2(type, w, x, n) : ref::dot_row(type, w, x, n);
}

float dot(const float* a, const float* b, int64_t n) {
  return kHasAvx2 ? dot_avx2<false>(a, b, n) : ref::dot(a, b, n);
}

void rms_norm(const float* x, const float* w, int64_t n, double eps, float* out) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = w[i] * (x[i] * inv);
}

namespace {

// exp(x) for 16 lanes: x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two so that r is exact
// to f32 precision), exp(r) by its degree-7 Taylor polynomial (truncation error below 6e-9
// relative, under half an f32 ulp), then scaled by 2^n. Inputs are clamped to +-100, beyond which
// f32 exp is 0 or infinity anyway.
[[gnu::target("avx512f,avx512bw,avx2,fma,f16c")]] __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(100.0f)), _mm512_set1_ps(-100.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

[[gnu::target("avx512f,avx512bw,avx2,fma,f16c")]] int64_t silu_mul_avx512(float* gate,
                                                                          const float* up,
                                                                          int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 g = _mm512_loadu_ps(gate + i);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
    const __m512 s = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    _mm512_storeu_ps(gate + i, _mm512_mul_ps(s, _mm512_loadu_ps(up + i)));
  }
  return i;
}

// exp(row[j] - shift) in place for 16 lanes at a time; returns how many were done and adds
// their sum, lane sums taken in f32 per 16 and accumulated in double, to *sum.
[[gnu::target("avx512f,avx512bw,avx2,fma,f16c")]] int64_t exp_shifted_avx512(float* row,
                                                                             float shift, int64_t n,
                                                                             double* sum) {
  const __m512 s = _mm512_set1_ps(shift);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(row + i), s));
    _mm512_storeu_ps(row + i, e);
    *sum += static_cast<double>(_mm512_reduce_add_ps(e));
  }
  return i;
}

}  // namespace

double exp_shifted_sum(float* row, float shift, int64_t n) {
  double sum = 0.0;
  const int64_t done = kHasAvx512 ? exp_shifted_avx512(row, shift, n, &sum) : 0;
  for (int64_t i = done; i < n; ++i) {
    row[i] = std::exp(row[i] - shift);
    sum += row[i];
  }
  return sum;
}

void silu_mul(float* gate, const float* up, int64_t n) {
  const int64_t done = kHasAvx512 ? silu_mul_avx512(gate, up, n) : 0;
  for (int64_t i = done; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void add_into(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void rope_rotate_half(float* x, const float* cos, const float* sin, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] - b * sin[i];
    x[i + half] = b * cos[i] + a * sin[i];
  }
}

}  // namespace shoal::infer
