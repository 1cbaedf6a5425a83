#include "infer/forward_amx.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "shoal/dtype.h"

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and then warn that it may be
// used uninitialised; every lane is written.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace shoal::infer {
namespace {

// How many K steps ahead the W rows are prefetched.
constexpr int64_t kAmxPrefetchSteps = 2;

// Linux keeps the 8 KiB tile-data state off until a process asks for it.
constexpr int kArchReqXcompPerm = 0x1023;
constexpr int kXfeatureXtileData = 18;

bool detect_amx() {
  const char* off = std::getenv("SHOAL_NO_AMX");
  if (off != nullptr && off[0] != '\0' && off[0] != '0') return false;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) return false;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  const bool amx_bf16 = (d >> 22) & 1u, amx_tile = (d >> 24) & 1u;
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d) == 0) return false;
  const bool avx512_bf16 = (a >> 5) & 1u;
  if (!amx_bf16 || !amx_tile || !avx512_bf16) return false;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtileData) == 0;
}

// The tile configuration: every tile 16 rows x 64 bytes. Tiles 0-3 hold a 32 x 32 block of
// f32 sums, 4-5 two 16-row slabs of W, 6-7 two 16-row blocks of packed activations.
struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
  TileConfig() {
    for (int t = 0; t < 8; ++t) {
      colsb[t] = 64;
      rows[t] = 16;
    }
  }
};

// In-register transpose of a 16 x 16 matrix of 32-bit elements (r[i] is row i; afterwards r[i]
// is column i): pairs of rows interleaved by 32 bits, then 64 bits, then 128-bit lanes twice.
[[gnu::target("avx512f,avx512bw")]] void transpose16x16(__m512i (&r)[16]) {
  __m512i t[16], u[16];
  for (int k = 0; k < 16; k += 2) {
    t[k] = _mm512_unpacklo_epi32(r[k], r[k + 1]);
    t[k + 1] = _mm512_unpackhi_epi32(r[k], r[k + 1]);
  }
  // u[4g + j]: element j of each 128-bit lane, rows 4g..4g+3 (in each lane's four slots).
  for (int g = 0; g < 16; g += 4) {
    u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
    u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
    u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
    u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    // Lanes {0, 2} and {1, 3} of rows 0-7, then of rows 8-15.
    const __m512i a0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);
    const __m512i a1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd);
    const __m512i b0 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
    const __m512i b1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
    r[j] = _mm512_shuffle_i32x4(a0, b0, 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(a0, b0, 0xdd);
    r[4 + j] = _mm512_shuffle_i32x4(a1, b1, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(a1, b1, 0xdd);
  }
}

// Packs activation rows [16 block, 16 block + 16) (zeros past m). Per K step, each row's 16
// BF16 pairs form one register; the tile wants pair r of row c at row r, column c, i.e. the
// transpose of those 16 registers, which is then stored as 16 contiguous tile rows.
[[gnu::target("avx512f,avx512bw,avx512bf16")]] void pack_block(const float* x, int64_t ldx,
                                                               int64_t m, int64_t block,
                                                               AmxActivations& out) {
  const int64_t steps = out.k / kAmxK;
  for (int64_t s = 0; s < steps; ++s) {
    __m512i hi[kAmxRows], lo[kAmxRows];
    for (int64_t c = 0; c < kAmxRows; ++c) {
      const int64_t i = block * kAmxRows + c;
      hi[c] = _mm512_setzero_si512();
      lo[c] = _mm512_setzero_si512();
      if (i >= m) continue;
      const float* src = x + i * ldx + s * kAmxK;
      const __m512 v0 = _mm512_loadu_ps(src), v1 = _mm512_loadu_ps(src + 16);
      const __m256i h0 = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v0));
      const __m256i h1 = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v1));
      hi[c] = _mm512_inserti64x4(_mm512_castsi256_si512(h0), h1, 1);
      if (!out.has_lo) continue;
      const __m512 f0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h0), 16));
      const __m512 f1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h1), 16));
      const __m256i l0 = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_sub_ps(v0, f0)));
      const __m256i l1 = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_sub_ps(v1, f1)));
      lo[c] = _mm512_inserti64x4(_mm512_castsi256_si512(l0), l1, 1);
    }
    transpose16x16(hi);
    auto* hi_tile = const_cast<uint16_t*>(out.tile(out.hi, block, s));
    for (int64_t r = 0; r < kAmxRows; ++r) _mm512_storeu_si512(hi_tile + r * kAmxK, hi[r]);
    if (!out.has_lo) continue;
    transpose16x16(lo);
    auto* lo_tile = const_cast<uint16_t*>(out.tile(out.lo, block, s));
    for (int64_t r = 0; r < kAmxRows; ++r) _mm512_storeu_si512(lo_tile + r * kAmxK, lo[r]);
  }
}

// Writes a 16 x 16 block of sums (row r: output column o + r, whose bias is bias[r]; column c:
// activation row i + c) into y.
[[gnu::target("avx512f,avx512bw")]] void write_block(const float* sums, const float* bias,
                                                     int64_t o, int64_t i, int64_t m, float* y,
                                                     int64_t ldy, bool accumulate) {
  const __m512i column =
      _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi32(16));
  const __m512 b = bias != nullptr ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
  for (int64_t c = 0; c < kAmxRows && i + c < m; ++c) {
    __m512 v = _mm512_add_ps(_mm512_i32gather_ps(column, sums + c, 4), b);
    float* dst = y + (i + c) * ldy + o;
    if (accumulate) v = _mm512_add_ps(_mm512_loadu_ps(dst), v);
    _mm512_storeu_ps(dst, v);
  }
}

}  // namespace

bool has_amx_kernels() {
  static const bool kHasAmx = detect_amx();
  return kHasAmx;
}

void amx_pack_activations(ThreadPool& pool, const float* x, int64_t ldx, int64_t m, int64_t k,
                          bool with_lo, AmxActivations& out) {
  out.m = m;
  out.has_lo = with_lo;
  out.m_pad = (m + 2 * kAmxRows - 1) / (2 * kAmxRows) * (2 * kAmxRows);
  out.k = k;
  const size_t n = static_cast<size_t>(out.m_pad * k);
  if (out.hi.size() < n) out.hi.resize(n);
  if (with_lo && out.lo.size() < n) out.lo.resize(n);
  pool.parallel_for(static_cast<size_t>(out.m_pad / kAmxRows),
                    [&](size_t b) { pack_block(x, ldx, m, static_cast<int64_t>(b), out); });
}

[[gnu::target("avx512f,avx512bw,avx512bf16")]] void amx_split_weights(const float* w, int64_t n,
                                                                      uint16_t* hi, uint16_t* lo) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(w + i);
    const __m256i h = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
    const __m512 f = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    const __m256i l = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_sub_ps(v, f)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi + i), h);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo + i), l);
  }
  for (; i < n; ++i) {
    hi[i] = f32_to_bf16(w[i]);
    lo[i] = f32_to_bf16(w[i] - bf16_to_f32(hi[i]));
  }
}

[[gnu::target("amx-tile,amx-bf16,avx512f,avx512bw")]] void amx_linear_block(const AmxWeights& w,
                                                                            const AmxActivations& a,
                                                                            int64_t i0, int64_t i1,
                                                                            float* y, int64_t ldy,
                                                                            bool accumulate) {
  static const TileConfig kConfig;
  constexpr int64_t kPair = 2 * kAmxRows, kTile = kAmxRows * kAmxRows;
  alignas(64) float sums[4 * kTile];
  const int64_t steps = a.k / kAmxK;
  const int64_t stride = w.ld * static_cast<int64_t>(sizeof(uint16_t));
  _tile_loadconfig(&kConfig);
  // The sums stay in tiles for the whole of K: parking them between K chunks (so that an
  // activation chunk stays in L1) measured slower than streaming both operands from L2.
  for (int64_t r = 0; r < w.rows; r += kPair) {
    const uint16_t* w0 = w.hi + r * w.ld;
    const uint16_t* w1 = w0 + kAmxRows * w.ld;
    const uint16_t* l0 = w.lo != nullptr ? w.lo + r * w.ld : nullptr;
    const uint16_t* l1 = l0 != nullptr ? l0 + kAmxRows * w.ld : nullptr;
    for (int64_t i = i0; i < i1; i += kPair) {
      const int64_t block = i / kAmxRows;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int64_t s = 0; s < steps; ++s) {
        // The W tiles' 32 rows are 32 separate streams, more than the L1 prefetchers follow:
        // asking for them kAmxPrefetchSteps ahead made the kernel 8-12% faster (one thread, m =
        // 512, Llama-sized W); the activation tiles are contiguous and gain nothing from it.
        if (s + kAmxPrefetchSteps < steps) {
          for (int64_t row = 0; row < kAmxRows; ++row) {
            const int64_t at = row * w.ld + (s + kAmxPrefetchSteps) * kAmxK;
            _mm_prefetch(reinterpret_cast<const char*>(w0 + at), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(w1 + at), _MM_HINT_T0);
          }
        }
        _tile_loadd(4, w0 + s * kAmxK, stride);
        _tile_loadd(5, w1 + s * kAmxK, stride);
        _tile_loadd(6, a.tile(a.hi, block, s), 64);
        _tile_loadd(7, a.tile(a.hi, block + 1, s), 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
        if (l0 != nullptr) {  // W_lo * x_hi, while x_hi is in tiles 6-7
          _tile_loadd(4, l0 + s * kAmxK, stride);
          _tile_loadd(5, l1 + s * kAmxK, stride);
          _tile_dpbf16ps(0, 4, 6);
          _tile_dpbf16ps(1, 4, 7);
          _tile_dpbf16ps(2, 5, 6);
          _tile_dpbf16ps(3, 5, 7);
          if (!a.has_lo) continue;
          _tile_loadd(4, w0 + s * kAmxK, stride);
          _tile_loadd(5, w1 + s * kAmxK, stride);
        }
        if (!a.has_lo) continue;
        _tile_loadd(6, a.tile(a.lo, block, s), 64);
        _tile_loadd(7, a.tile(a.lo, block + 1, s), 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_stored(0, sums, 64);
      _tile_stored(1, sums + kTile, 64);
      _tile_stored(2, sums + 2 * kTile, 64);
      _tile_stored(3, sums + 3 * kTile, 64);
      const float* b0 = w.bias != nullptr ? w.bias + r : nullptr;
      const float* b1 = w.bias != nullptr ? w.bias + r + kAmxRows : nullptr;
      const int64_t c0 = w.first_column + r, c1 = c0 + kAmxRows;
      write_block(sums, b0, c0, i, a.m, y, ldy, accumulate);
      write_block(sums + kTile, b0, c0, i + kAmxRows, a.m, y, ldy, accumulate);
      write_block(sums + 2 * kTile, b1, c1, i, a.m, y, ldy, accumulate);
      write_block(sums + 3 * kTile, b1, c1, i + kAmxRows, a.m, y, ldy, accumulate);
    }
  }
  _tile_release();
}

}  // namespace shoal::infer
