// The AB-MCTS-M sampler against independent references: the collapsed log density against
// brute-force quadrature of the uncollapsed model, and posterior-predictive moments against
// importance sampling from the prior.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "search/abmcts_m_model.h"

namespace shoal::search {
namespace {

constexpr double kPi = 3.14159265358979323846;

const std::vector<std::vector<double>> kData = {{0.2, 0.4}, {0.7}, {0.5, 0.6, 0.9}};

std::vector<GroupData> groups_of(const std::vector<std::vector<double>>& data) {
  std::vector<GroupData> g;
  for (const auto& ys : data) {
    double m = 0;
    for (double y : ys) m += y;
    m /= static_cast<double>(ys.size());
    double s = 0;
    for (double y : ys) s += (y - m) * (y - m);
    g.push_back({static_cast<int64_t>(ys.size()), m, s});
  }
  return g;
}

double normal_pdf(double x, double m, double sd) {
  return std::exp(-0.5 * (x - m) * (x - m) / (sd * sd)) / (sd * std::sqrt(2 * kPi));
}

// log p(y | sigma_alpha, sigma_y) by nested midpoint quadrature over mu and each alpha_j.
double brute_log_likelihood(double sa, double sy) {
  const HierParams p;
  constexpr int kN = 1000;
  const double mu0 = p.mu_mean - 8 * p.mu_sd, dmu = 16 * p.mu_sd / kN;
  double total = 0;
  for (int i = 0; i < kN; ++i) {
    const double mu = mu0 + (i + 0.5) * dmu;
    double prod = normal_pdf(mu, p.mu_mean, p.mu_sd);
    for (const auto& ys : kData) {
      // alpha ranges over where either factor matters.
      const double lo = std::min(mu - 8 * sa, -0.5 - 8 * sy),
                   hi = std::max(mu + 8 * sa, 1.5 + 8 * sy);
      const double da = (hi - lo) / kN;
      double inner = 0;
      for (int k = 0; k < kN; ++k) {
        const double a = lo + (k + 0.5) * da;
        double f = normal_pdf(a, mu, sa);
        for (double y : ys) f *= normal_pdf(y, a, sy);
        inner += f;
      }
      prod *= inner * da;
    }
    total += prod;
  }
  return std::log(total * dmu);
}

TEST(HierPosterior, CollapsedDensityMatchesBruteForce) {
  const HierParams p;
  HierPosterior post;
  const auto groups = groups_of(kData);
  post.fit(p, groups);
  // Posterior in (u, w) = (log sa, log sy): likelihood x half-normal priors x Jacobian sa sy.
  auto reference = [&](double sa, double sy) {
    return brute_log_likelihood(sa, sy) -
           sa * sa / (2 * p.sigma_alpha_scale * p.sigma_alpha_scale) -
           sy * sy / (2 * p.sigma_y_scale * p.sigma_y_scale) + std::log(sa) + std::log(sy);
  };
  const double sa0 = 0.15, sy0 = 0.2;
  const double ref0 = reference(sa0, sy0), got0 = post.log_density(std::log(sa0), std::log(sy0));
  for (const auto& [sa, sy] :
       std::vector<std::pair<double, double>>{{0.05, 0.1}, {0.3, 0.15}, {0.02, 0.4}, {0.5, 0.05}}) {
    const double want = reference(sa, sy) - ref0;
    const double got = post.log_density(std::log(sa), std::log(sy)) - got0;
    EXPECT_NEAR(got, want, 1e-5 * std::max(1.0, std::abs(want))) << sa << " " << sy;
  }
}

TEST(HierPosterior, PredictiveMomentsMatchImportanceSampling) {
  const HierParams p;
  // Reference: draw every parameter from the prior, weight by the likelihood.
  SearchRng rng(1);
  double w_sum = 0, m_new = 0, m2_new = 0, m_0 = 0, m2_0 = 0, m_sy = 0;
  for (int i = 0; i < 3000000; ++i) {
    const double mu = p.mu_mean + p.mu_sd * rng.normal();
    const double sa = std::abs(p.sigma_alpha_scale * rng.normal());
    const double sy = std::abs(p.sigma_y_scale * rng.normal());
    if (sy < p.sigma_y_min) continue;  // the truncated prior
    double w = 1;
    double alpha0 = 0;
    for (size_t j = 0; j < kData.size(); ++j) {
      const double a = mu + sa * rng.normal();
      if (j == 0) alpha0 = a;
      for (double y : kData[j]) w *= normal_pdf(y, a, sy);
    }
    const double y_new = mu + sa * rng.normal() + sy * rng.normal();
    const double y_0 = alpha0 + sy * rng.normal();
    w_sum += w;
    m_new += w * y_new, m2_new += w * y_new * y_new;
    m_0 += w * y_0, m2_0 += w * y_0 * y_0;
    m_sy += w * sy;
  }
  m_new /= w_sum, m2_new /= w_sum, m_0 /= w_sum, m2_0 /= w_sum, m_sy /= w_sum;

  HierPosterior post;
  post.fit(p, groups_of(kData));
  SearchRng r2(2);
  constexpr int kN = 400000;
  double g_new = 0, g2_new = 0, g_0 = 0, g2_0 = 0, g_sy = 0;
  for (int i = 0; i < kN; ++i) {
    const double a = post.draw_predictive(-1, r2), b = post.draw_predictive(0, r2);
    g_new += a, g2_new += a * a, g_0 += b, g2_0 += b * b;
    g_sy += post.draw_hyper(r2).sigma_y;
  }
  g_new /= kN, g2_new /= kN, g_0 /= kN, g2_0 /= kN, g_sy /= kN;
  EXPECT_NEAR(g_new, m_new, 0.005);
  EXPECT_NEAR(g2_new - g_new * g_new, m2_new - m_new * m_new, 0.004);
  EXPECT_NEAR(g_0, m_0, 0.005);
  EXPECT_NEAR(g2_0 - g_0 * g_0, m2_0 - m_0 * m_0, 0.004);
  EXPECT_NEAR(g_sy, m_sy, 0.005);
}

TEST(HierPosterior, ManyLargeGroupsConcentrateOnTheTruth) {
  // 60 groups of 40 scores, group means 0.3 + 0.01 j, within-group sd 0.05: the posterior of
  // sigma_y must sit at ~0.05 (its sd is ~0.05 / sqrt(2 * 2340)), far narrower than a first-level
  // grid cell, which exercises the zoom.
  std::vector<GroupData> groups;
  for (int j = 0; j < 60; ++j) groups.push_back({40, 0.3 + 0.01 * j, 39 * 0.05 * 0.05});
  HierPosterior post;
  post.fit(HierParams{}, groups);
  SearchRng rng(3);
  double sy = 0, sy2 = 0, mu = 0;
  constexpr int kN = 20000;
  for (int i = 0; i < kN; ++i) {
    const HierDraw h = post.draw_hyper(rng);
    sy += h.sigma_y, sy2 += h.sigma_y * h.sigma_y, mu += h.mu;
  }
  sy /= kN, sy2 /= kN, mu /= kN;
  EXPECT_NEAR(sy, 0.05, 0.002);
  EXPECT_GT(std::sqrt(sy2 - sy * sy), 0.0002);  // a spread, not a single grid point
  EXPECT_LT(std::sqrt(sy2 - sy * sy), 0.0015);
  EXPECT_NEAR(mu, 0.595, 0.03);
}

TEST(HierPosterior, RepeatedScoresStayProper) {
  // Every score identical: without the sigma_y floor the posterior would be improper at 0.
  std::vector<GroupData> groups = {{200, 0.5, 0.0}, {3, 0.5, 0.0}};
  HierPosterior post;
  post.fit(HierParams{}, groups, 2, 0.0);
  SearchRng rng(4);
  for (int i = 0; i < 1000; ++i) {
    const double y = post.draw_predictive(i % 3 - 1, rng);
    ASSERT_TRUE(std::isfinite(y));
    ASSERT_GE(post.draw_hyper(rng).sigma_y, HierParams{}.sigma_y_min);
  }
}

}  // namespace
}  // namespace shoal::search
