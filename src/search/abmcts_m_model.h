// The hierarchical model of AB-MCTS-M and its sampler (docs/SEARCH.md, "The AB-MCTS-M sampler").
//
//   mu ~ N(mu_mean, mu_sd^2), sigma_alpha ~ HalfNormal(sigma_alpha_scale),
//   sigma_y ~ HalfNormal(sigma_y_scale) truncated to [sigma_y_min, inf),
//   alpha_j ~ N(mu, sigma_alpha^2), y_i ~ N(alpha_group(i), sigma_y^2).
//
// Given (sigma_alpha, sigma_y) everything else is Gaussian, so mu and every alpha_j integrate
// out in closed form and the posterior of the two scales is a 2-D density computable in O(K)
// per point, K = the number of distinct group sizes. HierPosterior::fit tabulates that density
// on an adaptive grid in (log sigma_alpha, log sigma_y); a draw picks a cell by its mass,
// jitters uniformly inside it, then draws mu and alpha_j exactly from their Gaussian
// conditionals. Draws are independent (no Markov chain, no burn-in, no convergence to watch).
// Implemented in abmcts_m_model.cpp.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "search/tree_stats.h"

namespace shoal::search {

struct HierParams {
  double mu_mean = 0.5;
  double mu_sd = 0.2;
  double sigma_alpha_scale = 0.2;
  double sigma_y_scale = 0.3;
  double sigma_y_min = 0.01;  // keeps the posterior proper when every score in a group repeats
};

// One group's observations: count, mean and sum of squared deviations.
struct GroupData {
  int64_t n = 0;
  double mean = 0.0;
  double sq_dev = 0.0;
};

// One posterior draw of the model's parameters.
struct HierDraw {
  double sigma_alpha = 0.0;
  double sigma_y = 0.0;
  double mu = 0.0;
};

class HierPosterior {
 public:
  // Tabulates the posterior of (sigma_alpha, sigma_y) given the groups (some may be empty).
  // `extra_singletons` adds that many one-observation groups of value `extra_value` (pending
  // new children counted at their virtual loss); they are fitted but never predicted.
  void fit(const HierParams& params, std::span<const GroupData> groups,
           int64_t extra_singletons = 0, double extra_value = 0.0);

  // (sigma_alpha, sigma_y, mu) from the posterior.
  HierDraw draw_hyper(SearchRng& rng) const;
  // alpha_j given a hyper draw (j indexes the groups given to fit).
  double draw_alpha(const HierDraw& h, int j, SearchRng& rng) const;
  // One posterior-predictive draw of a new observation in group j, or in a new group (j < 0).
  double draw_predictive(int j, SearchRng& rng) const;

  // Log of the unnormalised posterior density of (u, w) = (log sigma_alpha, log sigma_y).
  double log_density(double u, double w) const;

 private:
  struct Bucket {  // the groups of one size n (centred means)
    double n = 0, count = 0, sum = 0, sum_sq = 0;
  };
  // Posterior of mu given the scales: precision and mean (centred).
  void mu_conditional(double sa2, double sy2, double* prec, double* mean) const;
  void tabulate(double u0, double u1, double w0, double w1);

  HierParams p_;
  std::vector<GroupData> groups_;
  std::vector<Bucket> buckets_;
  double centre_ = 0.0;  // subtracted from every mean (numerical conditioning)
  double within_ss_ = 0.0;
  double within_df_ = 0.0;  // N - (number of non-empty groups)
  // The final grid: cell (i, k) spans [u0 + i du, u0 + (i+1) du] x [w0 + k dw, ...].
  double u0_ = 0, du_ = 0, w0_ = 0, dw_ = 0;
  std::vector<double> cdf_;  // cumulative cell masses, row-major (i * kGrid + k)
};

}  // namespace shoal::search
