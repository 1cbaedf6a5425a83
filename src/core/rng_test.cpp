#include "shoal/rng.h"

#include <cmath>

#include <gtest/gtest.h>

namespace shoal {
namespace {

// SplitMix64 reference values: the published generator seeded with 0 yields, as its first
// output, mix64(0x9e3779b97f4a7c15) = 0xe220a8397b1dcdaf.
TEST(CounterRng, MixerMatchesSplitMix64) {
  EXPECT_EQ(mix64(0x9e3779b97f4a7c15ull), 0xe220a8397b1dcdafull);
}

TEST(CounterRng, FnvHashOfKnownStrings) {
  EXPECT_EQ(hash_name(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(hash_name("a"), 0xaf63dc4c8601ec8cull);
}

TEST(CounterRng, PureFunctionOfSeedStreamAndIndex) {
  const CounterRng a = CounterRng(42).stream(7), b = CounterRng(42).stream(7);
  const CounterRng other_seed = CounterRng(43).stream(7), other_stream = CounterRng(42).stream(8);
  int same_seed_diffs = 0, same_stream_diffs = 0;
  for (uint64_t i = 0; i < 1000; ++i) {
    ASSERT_EQ(a.bits(i), b.bits(i));
    same_seed_diffs += a.bits(i) != other_seed.bits(i);
    same_stream_diffs += a.bits(i) != other_stream.bits(i);
  }
  EXPECT_EQ(same_seed_diffs, 1000);
  EXPECT_EQ(same_stream_diffs, 1000);
}

// Mean and variance of 1e6 uniforms within 6 standard errors of 1/2 and 1/12.
TEST(CounterRng, UniformMoments) {
  const CounterRng rng = CounterRng(1).stream(2);
  const int n = 1'000'000;
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < n; ++i) {
    const double u = rng.uniform(i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sum_sq += u * u;
  }
  const double mean = sum / n, var = sum_sq / n - mean * mean;
  EXPECT_NEAR(mean, 0.5, 6 * std::sqrt(1.0 / 12 / n));
  EXPECT_NEAR(var, 1.0 / 12, 6 * std::sqrt(1.0 / 180 / n));
}

}  // namespace
}  // namespace shoal
