// Exact sufficient statistics of scores, and the random draws the search algorithms use.
//
// Why exact: a search must continue identically after a checkpoint is reloaded, and a reload
// rebuilds every statistic from the tree in a different order than the live search added them.
// Floating-point sums depend on the order; integer sums do not. Scores are therefore quantised
// to multiples of 2^-40 (an error below 1e-12, far under any meaningful score difference) and
// summed as integers; pending-visit penalties are added and later removed exactly.
#pragma once

#include <cmath>
#include <cstdint>

#include "shoal/error.h"
#include "shoal/rng.h"

namespace shoal::search {

__extension__ typedef unsigned __int128 U128;

constexpr int kScoreBits = 40;
// The most observations one statistic may hold: keeps n * sum of squares below 2^127.
constexpr int64_t kMaxObservations = int64_t{1} << 23;

// A score in [0, 1] as a multiple of 2^-40.
inline int64_t quantize_score(double score) {
  return static_cast<int64_t>(std::llround(std::ldexp(score, kScoreBits)));
}
inline double dequantize_score(int64_t q) {
  return std::ldexp(static_cast<double>(q), -kScoreBits);
}

// Count, sum and sum of squares of quantised scores; O(1) add and remove.
struct ScoreStats {
  int64_t n = 0;
  int64_t sum = 0;  // <= n * 2^40 < 2^63
  U128 sum_sq = 0;  // <= n * 2^80

  void add(int64_t q, int sign = 1) {
    n += sign;
    sum += sign * q;
    const U128 q2 = static_cast<U128>(q) * static_cast<U128>(q);
    if (sign > 0) {
      sum_sq += q2;
    } else {
      sum_sq -= q2;
    }
    SHOAL_ASSERT(n >= 0 && n < kMaxObservations);
  }
  void merge(const ScoreStats& o) {
    n += o.n;
    sum += o.sum;
    sum_sq += o.sum_sq;
  }
  double mean() const { return n == 0 ? 0.0 : dequantize_score(sum) / static_cast<double>(n); }
  // Sum of squared deviations from the mean, S = sum (x - mean)^2, from n*sum_sq - sum^2,
  // which is exact in 128 bits.
  double sq_dev() const {
    if (n <= 1) return 0.0;
    const U128 s = static_cast<U128>(sum);
    const U128 num = static_cast<U128>(n) * sum_sq - s * s;
    return std::ldexp(static_cast<double>(num), -2 * kScoreBits) / static_cast<double>(n);
  }
  bool operator==(const ScoreStats&) const = default;
};

// Draws from one counter-based stream: draw i uses CounterRng(seed).uniform(i). The counter is
// the only state, so a checkpoint that stores it resumes the exact sequence.
class SearchRng {
 public:
  explicit SearchRng(uint64_t seed, uint64_t counter = 0) : rng_(seed), counter_(counter) {}
  uint64_t counter() const { return counter_; }

  double uniform() { return rng_.uniform(counter_++); }
  // Uniform in (0, 1]: safe for log().
  double uniform_pos() { return 1.0 - uniform(); }
  uint64_t below(uint64_t n) { return static_cast<uint64_t>(uniform() * static_cast<double>(n)); }

  // Standard normal by Box-Muller (two uniforms, one output: no cached spare, so the state
  // stays one counter).
  double normal() {
    const double r = std::sqrt(-2.0 * std::log(uniform_pos()));
    return r * std::cos(2.0 * 3.14159265358979323846 * uniform());
  }

  // Gamma(shape, 1) by Marsaglia and Tsang (2000); shape < 1 via Gamma(shape + 1) * U^(1/shape).
  double gamma(double shape) {
    SHOAL_ASSERT(shape > 0);
    if (shape < 1.0) {
      const double g = gamma(shape + 1.0);
      return g * std::exp(std::log(uniform_pos()) / shape);
    }
    const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      double x, v;
      do {
        x = normal();
        v = 1.0 + c * x;
      } while (v <= 0.0);
      v = v * v * v;
      const double u = uniform_pos();
      if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
      if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
    }
  }

  // Student-t with nu degrees of freedom. nu = 1 and 2 (a leaf's and a one-score node's
  // posterior under the default prior: most draws on a wide node) invert their closed-form CDFs
  // from one uniform; otherwise Z / sqrt(chi^2_nu / nu).
  double student_t(double nu) {
    if (nu == 1.0) return std::tan(3.14159265358979323846 * (uniform() - 0.5));
    if (nu == 2.0) {
      double p = uniform();  // in [0, 1 - 2^-53]; 0 moved inside so both tails stay finite
      if (p == 0.0) p = 0x1p-54;
      return (2.0 * p - 1.0) / std::sqrt(2.0 * p * (1.0 - p));
    }
    const double z = normal();
    return z / std::sqrt(gamma(0.5 * nu) / (0.5 * nu));
  }

  double beta(double a, double b) {
    const double x = gamma(a), y = gamma(b);
    return x / (x + y);
  }

 private:
  CounterRng rng_;
  uint64_t counter_;
};

}  // namespace shoal::search
