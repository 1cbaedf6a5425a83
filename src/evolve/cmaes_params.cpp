#include "evolve/cmaes_params.h"

#include <algorithm>
#include <cmath>

namespace shoal::evolve {

CmaParameters cma_parameters(int n_int, int lambda, bool separable, int eigen_interval_option) {
  CmaParameters p;
  const double n = n_int;
  p.n = n_int;
  p.lambda = lambda;
  p.mu = lambda / 2;

  // Preliminary weights w'_i = ln((lambda + 1) / 2) - ln i; positive for i <= mu.
  std::vector<double> w(lambda);
  for (int i = 0; i < lambda; ++i) w[i] = std::log((lambda + 1) / 2.0) - std::log(i + 1.0);
  double sum_pos = 0, sum_pos_sq = 0, sum_neg = 0, sum_neg_sq = 0;
  for (double x : w) {
    if (x > 0) {
      sum_pos += x;
      sum_pos_sq += x * x;
    } else {
      sum_neg += x;
      sum_neg_sq += x * x;
    }
  }
  p.mueff = sum_pos * sum_pos / sum_pos_sq;
  const double mueff_neg = sum_neg_sq > 0 ? sum_neg * sum_neg / sum_neg_sq : 0;

  p.c_sigma = (p.mueff + 2) / (n + p.mueff + 5);
  p.d_sigma = 1 + 2 * std::max(0.0, std::sqrt((p.mueff - 1) / (n + 1)) - 1) + p.c_sigma;
  p.c_c = (4 + p.mueff / n) / (n + 4 + 2 * p.mueff / n);
  constexpr double kAlphaCov = 2;
  p.c_1 = kAlphaCov / ((n + 1.3) * (n + 1.3) + p.mueff);
  p.c_mu = std::min(1 - p.c_1, kAlphaCov * (p.mueff - 2 + 1 / p.mueff) /
                                   ((n + 2) * (n + 2) + kAlphaCov * p.mueff / 2));
  p.chi_n = std::sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n));

  p.weights.assign(lambda, 0.0);
  if (separable) {
    const double scale = (n + 2) / 3;
    p.c_1 *= scale;
    p.c_mu = std::min(1 - p.c_1, p.c_mu * scale);
    for (int i = 0; i < lambda; ++i) p.weights[i] = w[i] > 0 ? w[i] / sum_pos : 0;
  } else {
    // Negative weights scaled by min(alpha_mu^-, alpha_mueff^-, alpha_posdef^-) / sum |w'^-|.
    const double alpha_mu = 1 + p.c_1 / p.c_mu;
    const double alpha_mueff = 1 + 2 * mueff_neg / (p.mueff + 2);
    const double alpha_posdef = (1 - p.c_1 - p.c_mu) / (n * p.c_mu);
    const double neg_scale = std::min({alpha_mu, alpha_mueff, alpha_posdef}) / -sum_neg;
    for (int i = 0; i < lambda; ++i) {
      p.weights[i] = w[i] >= 0 ? w[i] / sum_pos : w[i] * neg_scale;
    }
  }
  p.eigen_interval = eigen_interval_option > 0
                         ? eigen_interval_option
                         : std::max(1, static_cast<int>(1 / (10 * n * (p.c_1 + p.c_mu))));
  if (separable) p.eigen_interval = 1;  // the diagonal's square root costs O(n)
  return p;
}

}  // namespace shoal::evolve
