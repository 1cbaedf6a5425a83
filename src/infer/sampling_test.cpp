// Sampling and log-probability helpers against hand-computed distributions.
#include "shoal/sampling.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>

#include "shoal/error.h"

namespace shoal {
namespace {

TEST(Sampling, ArgmaxTiesAndNan) {
  EXPECT_EQ(argmax(std::vector<float>{1.0f, 3.0f, 3.0f, 2.0f}), 1);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(argmax(std::vector<float>{nan, -1.0f, nan, -0.5f}), 3);
  EXPECT_EQ(argmax(std::vector<float>{-std::numeric_limits<float>::infinity()}), 0);
}

TEST(Sampling, LogSoftmaxAndTopLogprobs) {
  const std::vector<float> logits = {0.0f, std::log(2.0f), std::log(5.0f), 1000.0f};
  std::vector<float> lp = log_softmax(std::span<const float>(logits).first(3));
  EXPECT_NEAR(lp[0], std::log(1.0 / 8.0), 1e-6);
  EXPECT_NEAR(lp[1], std::log(2.0 / 8.0), 1e-6);
  EXPECT_NEAR(lp[2], std::log(5.0 / 8.0), 1e-6);
  lp = log_softmax(logits);  // no overflow with a huge logit
  EXPECT_NEAR(lp[3], 0.0, 1e-6);
  EXPECT_NEAR(lp[0], -1000.0, 1e-3);

  const std::vector<float> l2 = {1.0f, 3.0f, 3.0f, 2.0f};
  const auto top = top_logprobs(l2, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].id, 1);  // tie: lower id first
  EXPECT_EQ(top[1].id, 2);
  EXPECT_EQ(top[2].id, 3);
  const double z = std::exp(1.0) + 2 * std::exp(3.0) + std::exp(2.0);
  EXPECT_NEAR(top[0].logprob, 3.0 - std::log(z), 1e-6);
  EXPECT_NEAR(top[2].logprob, 2.0 - std::log(z), 1e-6);
  EXPECT_EQ(top_logprobs(l2, 10).size(), 4u);
  EXPECT_TRUE(top_logprobs(l2, 0).empty());
}

TEST(Sampling, GreedyCases) {
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f};
  for (const SamplingParams p : {SamplingParams{0.0f, 0, 1.0f, 1}, SamplingParams{1.0f, 1, 1.0f, 2},
                                 SamplingParams{5.0f, 1, 0.5f, 3}}) {
    Sampler s(p);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(logits), 1);
  }
}

TEST(Sampling, InvalidParams) {
  EXPECT_THROW(Sampler(SamplingParams{1.0f, -1, 1.0f, 0}), ConfigError);
  EXPECT_THROW(Sampler(SamplingParams{1.0f, 0, 0.0f, 0}), ConfigError);
  EXPECT_THROW(Sampler(SamplingParams{1.0f, 0, 1.5f, 0}), ConfigError);
}

// Empirical frequencies of n draws against expected probabilities: every count within 5
// standard deviations, and tokens of probability 0 never drawn.
void expect_distribution(const SamplingParams& p, const std::vector<float>& logits,
                         const std::vector<double>& expected, int n = 40000) {
  Sampler s(p);
  std::vector<int> counts(logits.size());
  for (int i = 0; i < n; ++i) ++counts[static_cast<size_t>(s.sample(logits))];
  for (size_t t = 0; t < logits.size(); ++t) {
    if (expected[t] == 0.0) {
      EXPECT_EQ(counts[t], 0) << "token " << t;
      continue;
    }
    const double sd = std::sqrt(n * expected[t] * (1 - expected[t]));
    EXPECT_NEAR(counts[t], n * expected[t], 5 * sd + 1) << "token " << t;
  }
}

TEST(Sampling, Distributions) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1.
  const std::vector<float> logits = {std::log(0.3f), std::log(0.05f), std::log(0.5f),
                                     std::log(0.15f)};
  expect_distribution({1.0f, 0, 1.0f, 7}, logits, {0.3, 0.05, 0.5, 0.15});
  // top-k 2: {0.5, 0.3} renormalised.
  expect_distribution({1.0f, 2, 1.0f, 8}, logits, {0.3 / 0.8, 0.0, 0.5 / 0.8, 0.0});
  // top-p 0.7: 0.5 kept (nothing before it), 0.3 kept (0.5 before it < 0.7), 0.15 dropped
  // (0.8 before it). top-p 0.85 keeps 0.15 too (0.8 < 0.85).
  expect_distribution({1.0f, 0, 0.7f, 9}, logits, {0.3 / 0.8, 0.0, 0.5 / 0.8, 0.0});
  expect_distribution({1.0f, 0, 0.85f, 10}, logits, {0.3 / 0.95, 0.0, 0.5 / 0.95, 0.15 / 0.95});
  // Temperature 0.5 squares the probabilities before renormalising.
  const double z = 0.09 + 0.0025 + 0.25 + 0.0225;
  expect_distribution({0.5f, 0, 1.0f, 11}, logits, {0.09 / z, 0.0025 / z, 0.25 / z, 0.0225 / z});
  // top-k then top-p on the renormalised top-k: top-3 gives 0.5/0.95, 0.3/0.95, 0.15/0.95;
  // top-p 0.6 keeps 0.526 and then 0.316 (0.526 before it < 0.6).
  expect_distribution({1.0f, 3, 0.6f, 12}, logits, {0.3 / 0.8, 0.0, 0.5 / 0.8, 0.0});
}

TEST(Sampling, SeedFixesTheStream) {
  std::vector<float> logits(50);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i));
  auto draw = [&](uint64_t seed) {
    Sampler s({0.8f, 20, 0.95f, seed});
    std::vector<int32_t> ids;
    for (int i = 0; i < 64; ++i) ids.push_back(s.sample(logits));
    return ids;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
  Sampler s({0.8f, 20, 0.95f, 42});
  s.sample(logits);
  EXPECT_EQ(s.draws(), 1u);
}

}  // namespace
}  // namespace shoal
