// The forward pass's kernels against plain scalar references: conversions bit for bit, dot
// products and both matrix-product paths within an error bound derived from f32's epsilon,
// sizes swept around the vector width and the GEMM block sizes.
#include "infer/forward_kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "infer/forward_amx.h"
#include "infer/forward_matmul.h"
#include "shoal/rng.h"

namespace shoal::infer {
namespace {

std::vector<float> random_floats(size_t n, uint64_t seed, float scale = 1.0f) {
  const CounterRng rng(seed);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>(2.0 * rng.uniform(i) - 1.0);
  return v;
}

// Values stored as `type` (rounded), plus the exact f32 values they hold.
struct Stored {
  std::vector<std::byte> bytes;
  std::vector<float> values;
};
Stored store(const std::vector<float>& v, DType type) {
  Stored s;
  if (v.empty()) return s;
  s.bytes.resize(v.size() * dtype_size(type));
  from_f32(v.data(), type, s.bytes.data(), v.size());
  s.values.resize(v.size());
  to_f32(type, s.bytes.data(), s.values.data(), v.size());
  return s;
}

const int64_t kSizes[] = {0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 258};

// The fast paths must really run where the CPU has them (a detection made before the CPU model
// is initialised would silently test the scalar code twice).
TEST(ForwardKernels, VectorPathsActiveWhereSupported) {
  __builtin_cpu_init();
  EXPECT_EQ(has_avx2_kernels(), __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                                    __builtin_cpu_supports("f16c"));
}

TEST(ForwardKernels, ConvertMatchesCoreConversionBitForBit) {
  for (const DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (const int64_t n : kSizes) {
      for (const size_t misalign : {size_t{0}, size_t{2}}) {
        const Stored s = store(random_floats(static_cast<size_t>(n), 1, 3.0f), type);
        std::vector<std::byte> shifted(s.bytes.size() + misalign);
        if (n > 0) std::memcpy(shifted.data() + misalign, s.bytes.data(), s.bytes.size());
        std::vector<float> got(static_cast<size_t>(n), -1.0f);
        convert_to_f32(type, shifted.data() + misalign, got.data(), n);
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(std::memcmp(&got[i], &s.values[i], 4), 0) << dtype_name(type) << " n=" << n;
        }
      }
    }
  }
}

TEST(ForwardKernels, ConvertKeepsSpecialValues) {
  const uint16_t bf16[] = {0x7f80, 0xff80, 0x7fc1, 0x0001, 0x8000};  // inf, -inf, NaN, tiny, -0
  const uint16_t f16[] = {0x7c00, 0xfc00, 0x7e01, 0x0001, 0x8000};   // same, 0x0001 subnormal
  std::vector<uint16_t> b(bf16, bf16 + 5), h(f16, f16 + 5);
  for (int rep = 0; rep < 3; ++rep) {  // past one vector of 8
    b.insert(b.end(), bf16, bf16 + 5);
    h.insert(h.end(), f16, f16 + 5);
  }
  std::vector<float> got(b.size());
  convert_to_f32(DType::kBF16, reinterpret_cast<const std::byte*>(b.data()), got.data(),
                 static_cast<int64_t>(b.size()));
  for (size_t i = 0; i < b.size(); ++i) {
    const float want = bf16_to_f32(b[i]);
    EXPECT_EQ(std::memcmp(&got[i], &want, 4), 0) << i;
  }
  convert_to_f32(DType::kF16, reinterpret_cast<const std::byte*>(h.data()), got.data(),
                 static_cast<int64_t>(h.size()));
  for (size_t i = 0; i < h.size(); ++i) {
    const float want = f16_to_f32(h[i]);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got[i])) << i;
    } else {
      EXPECT_EQ(std::memcmp(&got[i], &want, 4), 0) << i;
    }
  }
}

TEST(ForwardKernels, DotWithinF32Bound) {
  for (const int64_t n : kSizes) {
    const auto a = random_floats(static_cast<size_t>(n), 2),
               b = random_floats(static_cast<size_t>(n), 3);
    double exact = 0.0, mag = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      exact += static_cast<double>(a[i]) * b[i];
      mag += std::fabs(static_cast<double>(a[i]) * b[i]);
    }
    // Any summation order: |error| <= n * eps * sum |a_i b_i| (first order).
    const double bound = static_cast<double>(n + 1) * 0x1p-24 * mag + 1e-30;
    EXPECT_NEAR(dot(a.data(), b.data(), n), exact, bound) << n;
    EXPECT_NEAR(ref::dot(a.data(), b.data(), n), exact, bound) << n;
  }
}

TEST(ForwardKernels, DotRowConvertsInRegisters) {
  for (const DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (const int64_t n : kSizes) {
      const Stored w = store(random_floats(static_cast<size_t>(n) + 1, 8), type);
      const auto x = random_floats(static_cast<size_t>(n), 9);
      // Row data starting at an odd element: unaligned loads.
      const std::byte* row = w.bytes.data() + dtype_size(type);
      double exact = 0.0, mag = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        exact += static_cast<double>(x[i]) * w.values[i + 1];
        mag += std::fabs(static_cast<double>(x[i]) * w.values[i + 1]);
      }
      const double bound = static_cast<double>(n + 1) * 0x1p-24 * mag + 1e-30;
      EXPECT_NEAR(dot_row(type, row, x.data(), n), exact, bound) << dtype_name(type) << n;
      EXPECT_NEAR(ref::dot_row(type, row, x.data(), n), exact, bound) << dtype_name(type) << n;
    }
  }
}

// The paired BF16 loop (the AVX-512 one where the CPU has it): x put in pair order (each block of
// 32: even-indexed values, then odd), against the float64 product, for sizes around the 32- and
// 64-value steps, unaligned rows.
TEST(ForwardKernels, PairedBf16DotRow) {
  const int64_t sizes[] = {0, 1, 31, 32, 33, 63, 64, 65, 95, 96, 97, 128, 768, 2050};
  for (const int64_t n : sizes) {
    const Stored w = store(random_floats(static_cast<size_t>(n) + 1, 12), DType::kBF16);
    const auto x = random_floats(static_cast<size_t>(n), 13);
    std::vector<float> paired(static_cast<size_t>(n));
    to_pair_order(x.data(), n, paired.data());
    for (int64_t b = 0; b + 32 <= n; b += 32) {  // the order, by hand
      for (int64_t j = 0; j < 16; ++j) {
        ASSERT_EQ(paired[static_cast<size_t>(b + j)], x[static_cast<size_t>(b + 2 * j)]);
        ASSERT_EQ(paired[static_cast<size_t>(b + 16 + j)], x[static_cast<size_t>(b + 2 * j + 1)]);
      }
    }
    const std::byte* row = w.bytes.data() + 2;  // an odd element: unaligned loads
    double exact = 0.0, mag = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      exact += static_cast<double>(x[i]) * w.values[i + 1];
      mag += std::fabs(static_cast<double>(x[i]) * w.values[i + 1]);
    }
    const double bound = static_cast<double>(n + 1) * 0x1p-24 * mag + 1e-30;
    EXPECT_NEAR(dot_row_bf16_paired(row, paired.data(), n), exact, bound) << n;
  }
}

TEST(ForwardKernels, RmsNormSiluRopeByHand) {
  const float x[4] = {1.0f, -2.0f, 3.0f, -4.0f};  // mean of squares 7.5
  const float w[4] = {1.0f, 0.5f, 2.0f, -1.0f};
  float out[4];
  rms_norm(x, w, 4, 0.5, out);  // 1 / sqrt(8) each
  const float inv = 1.0f / std::sqrt(8.0f);
  EXPECT_FLOAT_EQ(out[0], inv);
  EXPECT_FLOAT_EQ(out[1], -inv);
  EXPECT_FLOAT_EQ(out[2], 6.0f * inv);
  EXPECT_FLOAT_EQ(out[3], 4.0f * inv);

  float gate[3] = {0.0f, 1.0f, -2.0f};
  const float up[3] = {5.0f, 2.0f, 3.0f};
  silu_mul(gate, up, 3);
  EXPECT_FLOAT_EQ(gate[0], 0.0f);
  EXPECT_FLOAT_EQ(gate[1], 2.0f / (1.0f + std::exp(-1.0f)));
  EXPECT_FLOAT_EQ(gate[2], 3.0f * -2.0f / (1.0f + std::exp(2.0f)));

  // Rotate-half pairs (x0, x2) and (x1, x3): a quarter turn and no turn.
  float head[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  const float c[2] = {0.0f, 1.0f}, s[2] = {1.0f, 0.0f};
  rope_rotate_half(head, c, s, 2);
  EXPECT_FLOAT_EQ(head[0], -3.0f);
  EXPECT_FLOAT_EQ(head[2], 1.0f);
  EXPECT_FLOAT_EQ(head[1], 2.0f);
  EXPECT_FLOAT_EQ(head[3], 4.0f);
}

// The vector SiLU gate (its own exp) against double-precision math, across the range where
// silu changes shape and where exp over- or underflows.
TEST(ForwardKernels, SiluMulMatchesDoubleReference) {
  const size_t n = 2003;  // not a multiple of the vector width
  auto gate = random_floats(n, 31, 40.0f);
  gate[0] = 95.0f;
  gate[1] = -95.0f;
  gate[2] = 0.0f;
  const auto up = random_floats(n, 32);
  auto got = gate;
  silu_mul(got.data(), up.data(), static_cast<int64_t>(n));
  for (size_t i = 0; i < n; ++i) {
    const double g = gate[i];
    const double want = g / (1.0 + std::exp(-g)) * up[i];
    ASSERT_NEAR(got[i], want, 4e-7 * std::fabs(want) + 1e-30) << "gate " << g;
  }
}

// Softmax numerators and their sum against double-precision math, scores down to where exp
// underflows in f32 (the vector exp clamps at -100: 3.7e-44 instead of 0, far below any sum).
TEST(ForwardKernels, ExpShiftedSumMatchesDoubleReference) {
  for (const int64_t n : {int64_t{1}, int64_t{15}, int64_t{16}, int64_t{17}, int64_t{300}}) {
    auto row = random_floats(static_cast<size_t>(n), 33, 60.0f);
    row[0] = -140.0f;
    const float shift = 25.0f;
    auto got = row;
    const double sum = exp_shifted_sum(got.data(), shift, n);
    double want_sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const float arg = row[i] - shift;  // the subtraction is f32, as in the kernel
      const double want = std::exp(static_cast<double>(arg));
      want_sum += want;
      ASSERT_NEAR(got[i], want, 4e-7 * want + 1e-40) << "score " << row[i];
    }
    EXPECT_NEAR(sum, want_sum, 1e-6 * want_sum + 1e-40) << n;
  }
}

// Both matrix-product paths against the scalar reference, for activation row counts on either
// side of kGemvMaxRows and of the 512-row GEMM block, weight rows crossing several tiles, with
// bias and accumulation, and bit-identical results for 1 and 3 threads.
TEST(ForwardKernels, LinearPathsMatchReference) {
  ThreadPool one(1), three(3);
  struct Case {
    int64_t m, n_out, n_in;
  };
  // The last three fit the AMX path for BF16 (n_in % 32 == 0): whole 32-row slabs of W, a
  // remainder of rows through sgemm, activation rows that do not fill a 32-row block.
  const Case cases[] = {{1, 33, 17},   {4, 70, 64}, {5, 70, 64},  {17, 300, 4100},
                        {513, 40, 24}, {5, 64, 32}, {40, 96, 64}, {300, 80, 96}};
  for (const DType type : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (const Case& c : cases) {
      const Stored w = store(random_floats(static_cast<size_t>(c.n_out * c.n_in), 4), type);
      const auto bias = random_floats(static_cast<size_t>(c.n_out), 5);
      const int64_t ldx = c.n_in + 3, ldy = c.n_out + 2;  // strided rows
      const auto x = random_floats(static_cast<size_t>(c.m * ldx), 6);
      const auto y0 = random_floats(static_cast<size_t>(c.m * ldy), 7);
      for (const bool accumulate : {false, true}) {
        for (const bool with_bias : {false, true}) {
          const Linear lin{type, w.bytes.data(), c.n_out, c.n_in,
                           with_bias ? bias.data() : nullptr};
          auto want = y0, got1 = y0, got3 = y0;
          linear_reference(lin, x.data(), ldx, c.m, want.data(), ldy, accumulate);
          linear(one, lin, x.data(), ldx, c.m, got1.data(), ldy, accumulate);
          linear(three, lin, x.data(), ldx, c.m, got3.data(), ldy, accumulate);
          ASSERT_EQ(got1, got3) << "thread count changed results";
          for (int64_t i = 0; i < c.m; ++i) {
            for (int64_t o = 0; o < ldy; ++o) {
              const size_t k = static_cast<size_t>(i * ldy + o);
              if (o >= c.n_out) {
                ASSERT_EQ(got1[k], y0[k]) << "wrote past n_out";
                continue;
              }
              double mag = std::fabs(accumulate ? y0[k] : 0.0f) + (with_bias ? 1.0 : 0.0);
              for (int64_t j = 0; j < c.n_in; ++j) {
                mag += std::fabs(static_cast<double>(x[static_cast<size_t>(i * ldx + j)]) *
                                 w.values[static_cast<size_t>(o * c.n_in + j)]);
              }
              // f32 accumulation; on the AMX path also the hi/lo splits of x (and of F32 W):
              // each product is off by at most about 4 x 2^-18 of its size.
              const bool amx = has_amx_kernels() && c.m > kGemvMaxRows && c.n_in % kAmxK == 0;
              const double bound =
                  (2.0 * static_cast<double>(c.n_in + 2) * 0x1p-24 + (amx ? 0x1p-16 : 0.0)) * mag;
              ASSERT_NEAR(got1[k], want[k], bound)
                  << dtype_name(type) << " m=" << c.m << " n_out=" << c.n_out << " i=" << i
                  << " o=" << o;
            }
          }
        }
      }
    }
  }
}

// Products sharing one x (q/k/v, gate/up) give exactly what one linear() call each gives, on
// every path: BF16 weights that fit the AMX path and mixed shapes, F32 and a batch of one row.
TEST(ForwardKernels, SharedInputEqualsSeparateProducts) {
  ThreadPool pool(2);
  for (const DType type : {DType::kBF16, DType::kF32}) {
    for (const int64_t m : {int64_t{1}, int64_t{70}}) {
      const int64_t n_in = 96;
      const int64_t n_outs[] = {96, 48, 80};
      std::vector<Stored> ws;
      for (size_t j = 0; j < 3; ++j) {
        ws.push_back(store(random_floats(static_cast<size_t>(n_outs[j] * n_in), 10 + j), type));
      }
      const auto x = random_floats(static_cast<size_t>(m * n_in), 20);
      std::vector<Linear> lins;
      std::vector<std::vector<float>> shared(3), separate(3);
      std::vector<LinearOutput> outs;
      for (size_t j = 0; j < 3; ++j) {
        lins.push_back(Linear{type, ws[j].bytes.data(), n_outs[j], n_in, nullptr});
        shared[j].assign(static_cast<size_t>(m * n_outs[j]), -1.0f);
        separate[j] = shared[j];
      }
      for (size_t j = 0; j < 3; ++j) outs.push_back({&lins[j], shared[j].data(), n_outs[j]});
      linear_shared(pool, outs, x.data(), n_in, m);
      for (size_t j = 0; j < 3; ++j) {
        linear(pool, lins[j], x.data(), n_in, m, separate[j].data(), n_outs[j], false);
        EXPECT_EQ(shared[j], separate[j]) << dtype_name(type) << " m=" << m << " output " << j;
      }
    }
  }
}

// x rounded to the nearest BF16 value (ties to even), written here from the format's definition
// rather than with the library's conversion.
float round_to_bf16(float x) {
  uint32_t u = 0;
  std::memcpy(&u, &x, sizeof(u));
  u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  std::memcpy(&x, &u, sizeof(u));
  return x;
}

// With Linear::bf16_activations, every path multiplies BF16 weights by the activations rounded
// to BF16: the result is the plain product of the rounded x within the f32 accumulation bound
// (BF16 x BF16 products are exact in f32), and it is really coarser than the default's: the
// rounding shows. F32 and F16 weights ignore the flag. Thread count never changes a bit.
TEST(ForwardKernels, Bf16ActivationsRoundTheInputs) {
  ThreadPool one(1), two(2);
  struct Case {
    int64_t m, n_out, n_in;
  };
  // Decode rows, AMX-sized products (and sgemm where AMX is absent), n_in off the AMX step.
  const Case cases[] = {{1, 70, 64}, {3, 33, 100}, {40, 96, 64}, {300, 80, 96}, {37, 50, 88}};
  for (const DType type : {DType::kBF16, DType::kF32, DType::kF16}) {
    for (const Case& c : cases) {
      const Stored w = store(random_floats(static_cast<size_t>(c.n_out * c.n_in), 40), type);
      const auto bias = random_floats(static_cast<size_t>(c.n_out), 41);
      const auto x = random_floats(static_cast<size_t>(c.m * c.n_in), 42);
      auto x_rounded = x;
      for (float& v : x_rounded) v = round_to_bf16(v);
      const bool rounds = type == DType::kBF16;
      Linear lin{type, w.bytes.data(), c.n_out, c.n_in, bias.data()};
      lin.bf16_activations = true;
      Linear exact = lin;
      exact.bf16_activations = false;
      const size_t n_y = static_cast<size_t>(c.m * c.n_out);
      std::vector<float> want(n_y), got1(n_y), got2(n_y), plain(n_y);
      linear_reference(exact, rounds ? x_rounded.data() : x.data(), c.n_in, c.m, want.data(),
                       c.n_out, false);
      linear(one, lin, x.data(), c.n_in, c.m, got1.data(), c.n_out, false);
      linear(two, lin, x.data(), c.n_in, c.m, got2.data(), c.n_out, false);
      linear(one, exact, x.data(), c.n_in, c.m, plain.data(), c.n_out, false);
      ASSERT_EQ(got1, got2) << "thread count changed results";
      double largest_change = 0.0;
      for (int64_t i = 0; i < c.m; ++i) {
        for (int64_t o = 0; o < c.n_out; ++o) {
          const size_t k = static_cast<size_t>(i * c.n_out + o);
          double mag = 1.0;
          for (int64_t j = 0; j < c.n_in; ++j) {
            mag += std::fabs(static_cast<double>(x[static_cast<size_t>(i * c.n_in + j)]) *
                             w.values[static_cast<size_t>(o * c.n_in + j)]);
          }
          // As LinearPathsMatchReference; the AMX split of F32 W as well where it applies.
          const bool amx = has_amx_kernels() && c.m > kGemvMaxRows && c.n_in % kAmxK == 0;
          const double bound =
              (2.0 * static_cast<double>(c.n_in + 2) * 0x1p-24 + (amx ? 0x1p-16 : 0.0)) * mag;
          ASSERT_NEAR(got1[k], want[k], bound)
              << dtype_name(type) << " m=" << c.m << " n_in=" << c.n_in << " i=" << i << " o=" << o;
          largest_change = std::max(largest_change, std::fabs(double{got1[k]} - plain[k]));
        }
      }
      // Rounding x to 8 significant bits moves some output by far more than f32 noise.
      if (rounds) {
        EXPECT_GT(largest_change, 1e-3) << "m=" << c.m << " n_in=" << c.n_in;
      } else {
        EXPECT_EQ(largest_change, 0.0) << dtype_name(type) << " ignores the flag";
      }
    }
  }
}

}  // namespace
}  // namespace shoal::infer
