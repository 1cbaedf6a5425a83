// Conjugate posteriors of AB-MCTS-A. Gaussian: Normal-Inverse-chi^2 (Murphy, "Probabilistic
// Machine Learning: Advanced Topics", sec. 3.4.3.3); Beta: the Bernoulli-style update with a
// fractional reward r adding r successes and 1 - r failures.
#include <algorithm>
#include <cmath>

#include "search/abmcts_a.h"

namespace shoal::search {

GaussianParams gaussian_posterior(const GaussianParams& prior, const ScoreStats& s) {
  if (s.n == 0) return prior;
  const double n = static_cast<double>(s.n);
  const double xbar = s.mean();
  const double d = prior.m - xbar;
  GaussianParams post;
  post.kappa = prior.kappa + n;
  post.nu = prior.nu + n;
  post.m = (prior.kappa * prior.m + n * xbar) / post.kappa;
  post.tau_sq =
      (prior.nu * prior.tau_sq + s.sq_dev() + n * prior.kappa * d * d / (prior.kappa + n)) /
      post.nu;
  return post;
}

BetaParams beta_posterior(const BetaParams& prior, const ScoreStats& s) {
  const double sum = dequantize_score(s.sum);
  return {prior.a + sum, prior.b + static_cast<double>(s.n) - sum};
}

double sample_gaussian_mean(const GaussianParams& post, SearchRng& rng) {
  // sigma^2 ~ InvGamma(nu/2, nu tau^2/2) then mu ~ N(m, sigma^2/kappa) is, marginally, mu =
  // m + sqrt(tau^2/kappa) T with T ~ Student-t(nu): one draw of T replaces the two draws.
  return post.m + std::sqrt(post.tau_sq / post.kappa) * rng.student_t(post.nu);
}

double sample_beta(const BetaParams& post, SearchRng& rng) {
  // A virtual loss can leave b (or a) at ~0 only transiently; keep the draw defined.
  constexpr double kTiny = 1e-12;
  return rng.beta(std::max(post.a, kTiny), std::max(post.b, kTiny));
}

}  // namespace shoal::search
