// The classic optimiser test functions, shared by the evolve tests and bench/cmaes_bench.cpp.
// All have their minimum 0: sphere and ellipsoid at x = 0, Rosenbrock at x = 1.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

namespace shoal::test_functions {

inline double sphere(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return s;
}

// Condition 1e6: f = sum_i 10^(6 i / (n - 1)) x_i^2 (i from 0).
inline double ellipsoid(const std::vector<double>& x) {
  const size_t n = x.size();
  double s = 0;
  for (size_t i = 0; i < n; ++i) {
    s += std::pow(1e6, static_cast<double>(i) / static_cast<double>(n - 1)) * x[i] * x[i];
  }
  return s;
}

inline double rosenbrock(const std::vector<double>& x) {
  double s = 0;
  for (size_t i = 0; i + 1 < x.size(); ++i) {
    const double a = x[i] * x[i] - x[i + 1], b = x[i] - 1;
    s += 100 * a * a + b * b;
  }
  return s;
}

}  // namespace shoal::test_functions
