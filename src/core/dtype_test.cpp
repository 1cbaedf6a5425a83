#include "shoal/dtype.h"

#include <bit>
#include <cmath>
#include <limits>

#include "shoal/error.h"

#include <gtest/gtest.h>

namespace shoal {
namespace {

float from_bits(uint32_t u) {
  return std::bit_cast<float>(u);
}

TEST(DType, NamesRoundTrip) {
  for (auto name : {"BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2", "I16", "U16", "F16", "BF16", "I32",
                    "U32", "F32", "I64", "U64", "F64"}) {
    auto t = parse_dtype(name);
    ASSERT_TRUE(t) << name;
    EXPECT_EQ(dtype_name(*t), name);
  }
  EXPECT_FALSE(parse_dtype("F17"));
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_EQ(dtype_size(DType::kF64), 8u);
  EXPECT_EQ(parse_torch_dtype("bfloat16"), DType::kBF16);
  EXPECT_EQ(parse_torch_dtype("torch.float16"), DType::kF16);
  EXPECT_FALSE(parse_torch_dtype("int4"));
}

// Hand-worked round-to-nearest-even cases: 1.0 is 0x3f800000; bf16 keeps the top 16 bits.
TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808000)), 0x3f80);  // halfway, 0x3f80 is even
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f818000)), 0x3f82);  // halfway, 0x3f82 is even
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808001)), 0x3f81);  // just above halfway
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f807fff)), 0x3f80);  // just below
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
  EXPECT_EQ(f32_to_bf16(from_bits(0x7f7fffff)), 0x7f80);  // FLT_MAX rounds up to infinity
  EXPECT_EQ(bf16_to_f32(0x3f81), 1.0078125f);
}

TEST(DType, F16EveryValueRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    ASSERT_EQ(f32_to_f16(f), h) << "half 0x" << std::hex << h;
  }
}

TEST(DType, F16HandWorkedValues) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f), 0x3c00);      // halfway, even stays
  EXPECT_EQ(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);  // halfway, rounds to even 0x3c02
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);             // largest finite half
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // halfway to 65536, rounds to even = infinity
  EXPECT_EQ(f32_to_f16(0x1p-14f), 0x0400);  // smallest normal
  EXPECT_EQ(f32_to_f16(0x1p-24f), 0x0001);  // smallest subnormal
  EXPECT_EQ(f32_to_f16(0x1p-25f), 0x0000);  // halfway to the smallest subnormal: even is 0
  EXPECT_EQ(f32_to_f16(1.5f * 0x1p-25f), 0x0001);
  EXPECT_EQ(f32_to_f16(3 * 0x1p-25f), 0x0002);  // halfway between 1 and 2 steps: even
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f16_to_f32(0x0001), 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x8400), -0x1p-14f);
}

// Rounding a double straight to 16 bits must not round twice: 1 + 2^-8 + 2^-30 lies just above
// the bf16 midpoint 1 + 2^-8, but rounding to f32 first lands exactly on the midpoint, and then
// ties-to-even would give 1.0.
TEST(DType, F64RoundsOnceTo16Bits) {
  const double bf16_case = 1.0 + 0x1p-8 + 0x1p-30;
  const double f16_case = 1.0 + 0x1p-11 + 0x1p-40;
  uint16_t out;
  from_f64(&bf16_case, DType::kBF16, &out, 1);
  EXPECT_EQ(out, 0x3f81);
  from_f64(&f16_case, DType::kF16, &out, 1);
  EXPECT_EQ(out, 0x3c01);
  const double exact_mid = 1.0 + 0x1p-8;
  from_f64(&exact_mid, DType::kBF16, &out, 1);
  EXPECT_EQ(out, 0x3f80);
  const double below_mid = -(1.0 + 0x1p-8 - 0x1p-40);
  from_f64(&below_mid, DType::kBF16, &out, 1);
  EXPECT_EQ(out, 0xbf80);
}

TEST(DType, BulkConversionsMatchScalar) {
  const float values[] = {0.0f, -1.5f, 3.14159f, 1e-6f, -65504.0f, 1e30f};
  uint16_t h[6];
  float back[6];
  for (DType t : {DType::kBF16, DType::kF16}) {
    from_f32(values, t, h, 6);
    to_f32(t, h, back, 6);
    for (int i = 0; i < 6; ++i) {
      const uint16_t expect = t == DType::kBF16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
      EXPECT_EQ(h[i], expect);
      const float expect_back = t == DType::kBF16 ? bf16_to_f32(expect) : f16_to_f32(expect);
      EXPECT_EQ(back[i], expect_back);
    }
  }
  double d[6];
  to_f64(DType::kF16, h, d, 6);
  EXPECT_EQ(d[1], -1.5);
  EXPECT_THROW(to_f32(DType::kI32, h, back, 1), FormatError);
}

TEST(DType, ShapeHelpers) {
  const std::vector<int64_t> scalar, mat{3, 4};
  EXPECT_EQ(shape_numel(scalar), 1);
  EXPECT_EQ(shape_numel(mat), 12);
  EXPECT_EQ(shape_to_string(mat), "[3, 4]");
}

}  // namespace
}  // namespace shoal
