// The collapsed grid sampler of abmcts_m_model.h. Derivation (docs/SEARCH.md has it in full):
// for group j with n_j scores, mean ybar_j and squared deviations S_j, integrating alpha_j out
// leaves sigma_y^-(n_j - 1) exp(-S_j / 2 sigma_y^2) N(ybar_j; mu, v_j), v_j = sigma_alpha^2 +
// sigma_y^2 / n_j. Integrating mu ~ N(m0, s0^2) out of the product of those Gaussians leaves
//   -1/2 sum_j log v_j - 1/2 log P - 1/2 (C - B^2 / P),
//   P = 1/s0^2 + sum_j 1/v_j,  B = m0/s0^2 + sum_j ybar_j/v_j,  C = m0^2/s0^2 + sum_j ybar_j^2/v_j.
// Groups of equal size share v_j, so each sum runs over the K distinct sizes only.
#include "search/abmcts_m_model.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "shoal/error.h"

namespace shoal::search {
namespace {

constexpr int kGrid = 24;      // cells per dimension and level
constexpr int kMaxLevels = 4;  // zoom steps for posteriors narrower than a cell
constexpr int kMinCells = 8;   // a level resolves the posterior when it spans this many cells
constexpr double kSignificant = 14.0;   // cells within e^-14 of the peak count as posterior mass
constexpr double kLowSigmaAlpha = 8.0;  // the grid reaches e^-8 times sigma_alpha's prior scale

}  // namespace

void HierPosterior::fit(const HierParams& params, std::span<const GroupData> groups,
                        int64_t extra_singletons, double extra_value) {
  p_ = params;
  groups_.assign(groups.begin(), groups.end());
  within_ss_ = 0.0;
  within_df_ = 0.0;
  double mean_sum = 0.0, mean_count = 0.0;
  for (const GroupData& g : groups_) {
    if (g.n == 0) continue;
    within_ss_ += g.sq_dev;
    within_df_ += static_cast<double>(g.n - 1);
    mean_sum += g.mean;
    mean_count += 1.0;
  }
  mean_sum += static_cast<double>(extra_singletons) * extra_value;
  mean_count += static_cast<double>(extra_singletons);
  centre_ = mean_count > 0 ? mean_sum / mean_count : p_.mu_mean;

  // Buckets by group size, in increasing size.
  std::vector<std::pair<int64_t, double>> sizes;  // (n, centred mean)
  for (const GroupData& g : groups_) {
    if (g.n > 0) sizes.emplace_back(g.n, g.mean - centre_);
  }
  for (int64_t i = 0; i < extra_singletons; ++i) sizes.emplace_back(1, extra_value - centre_);
  std::sort(sizes.begin(), sizes.end());
  buckets_.clear();
  for (const auto& [n, m] : sizes) {
    if (buckets_.empty() || buckets_.back().n != static_cast<double>(n)) {
      buckets_.push_back({static_cast<double>(n), 0, 0, 0});
    }
    Bucket& b = buckets_.back();
    b.count += 1;
    b.sum += m;
    b.sum_sq += m * m;
  }

  double u0 = std::log(p_.sigma_alpha_scale) - kLowSigmaAlpha;
  double u1 = std::log(std::max(6.0 * p_.sigma_alpha_scale, 1.5));
  double w0 = std::log(p_.sigma_y_min);
  double w1 = std::log(std::max(6.0 * p_.sigma_y_scale, 1.5));
  SHOAL_ASSERT(u1 > u0 && w1 > w0);
  std::vector<double> logd(kGrid * kGrid);
  for (int level = 0;; ++level) {
    const double du = (u1 - u0) / kGrid, dw = (w1 - w0) / kGrid;
    double peak = -std::numeric_limits<double>::infinity();
    for (int i = 0; i < kGrid; ++i) {
      for (int k = 0; k < kGrid; ++k) {
        const double l = log_density(u0 + (i + 0.5) * du, w0 + (k + 0.5) * dw);
        logd[i * kGrid + k] = l;
        peak = std::max(peak, l);
      }
    }
    SHOAL_ASSERT(std::isfinite(peak));
    int i0 = kGrid, i1 = -1, k0 = kGrid, k1 = -1;
    for (int i = 0; i < kGrid; ++i) {
      for (int k = 0; k < kGrid; ++k) {
        if (logd[i * kGrid + k] < peak - kSignificant) continue;
        i0 = std::min(i0, i), i1 = std::max(i1, i);
        k0 = std::min(k0, k), k1 = std::max(k1, k);
      }
    }
    const bool resolved = i1 - i0 + 1 >= kMinCells && k1 - k0 + 1 >= kMinCells;
    if (resolved || level + 1 == kMaxLevels) {
      u0_ = u0, du_ = du, w0_ = w0, dw_ = dw;
      cdf_.resize(logd.size());
      double total = 0.0;
      for (size_t c = 0; c < logd.size(); ++c) {
        total += std::exp(logd[c] - peak);
        cdf_[c] = total;
      }
      return;
    }
    // Zoom on the significant cells, one cell of margin on each side.
    const double nu0 = u0 + std::max(i0 - 1, 0) * du, nu1 = u0 + std::min(i1 + 2, kGrid) * du;
    const double nw0 = w0 + std::max(k0 - 1, 0) * dw, nw1 = w0 + std::min(k1 + 2, kGrid) * dw;
    u0 = nu0, u1 = nu1, w0 = nw0, w1 = nw1;
  }
}

double HierPosterior::log_density(double u, double w) const {
  const double sa2 = std::exp(2.0 * u), sy2 = std::exp(2.0 * w);
  const double s0_2 = p_.mu_sd * p_.mu_sd;
  const double m0 = p_.mu_mean - centre_;
  double l = u + w;  // Jacobian of (sigma_alpha, sigma_y) -> (u, w)
  l -= sa2 / (2.0 * p_.sigma_alpha_scale * p_.sigma_alpha_scale);
  l -= sy2 / (2.0 * p_.sigma_y_scale * p_.sigma_y_scale);
  l -= within_df_ * w + within_ss_ / (2.0 * sy2);
  double prec = 1.0 / s0_2, b = m0 / s0_2, c = m0 * m0 / s0_2, log_v = 0.0;
  for (const Bucket& bk : buckets_) {
    const double v = sa2 + sy2 / bk.n, iv = 1.0 / v;
    prec += bk.count * iv;
    b += bk.sum * iv;
    c += bk.sum_sq * iv;
    log_v += bk.count * std::log(v);
  }
  return l - 0.5 * log_v - 0.5 * std::log(prec) - 0.5 * (c - b * b / prec);
}

void HierPosterior::mu_conditional(double sa2, double sy2, double* prec, double* mean) const {
  const double s0_2 = p_.mu_sd * p_.mu_sd;
  double p = 1.0 / s0_2, b = (p_.mu_mean - centre_) / s0_2;
  for (const Bucket& bk : buckets_) {
    const double iv = 1.0 / (sa2 + sy2 / bk.n);
    p += bk.count * iv;
    b += bk.sum * iv;
  }
  *prec = p;
  *mean = b / p;
}

HierDraw HierPosterior::draw_hyper(SearchRng& rng) const {
  SHOAL_ASSERT(!cdf_.empty());
  const double r = rng.uniform() * cdf_.back();
  const size_t cell = std::min<size_t>(
      static_cast<size_t>(std::upper_bound(cdf_.begin(), cdf_.end(), r) - cdf_.begin()),
      cdf_.size() - 1);
  const double u = u0_ + (static_cast<double>(cell / kGrid) + rng.uniform()) * du_;
  const double w = w0_ + (static_cast<double>(cell % kGrid) + rng.uniform()) * dw_;
  HierDraw h;
  h.sigma_alpha = std::exp(u);
  h.sigma_y = std::exp(w);
  double prec, mean;
  mu_conditional(h.sigma_alpha * h.sigma_alpha, h.sigma_y * h.sigma_y, &prec, &mean);
  h.mu = centre_ + mean + rng.normal() / std::sqrt(prec);
  return h;
}

double HierPosterior::draw_alpha(const HierDraw& h, int j, SearchRng& rng) const {
  const GroupData& g = groups_[static_cast<size_t>(j)];
  const double ia = 1.0 / (h.sigma_alpha * h.sigma_alpha);
  if (g.n == 0) return h.mu + h.sigma_alpha * rng.normal();
  const double iy = static_cast<double>(g.n) / (h.sigma_y * h.sigma_y);
  const double prec = ia + iy;
  return (h.mu * ia + g.mean * iy) / prec + rng.normal() / std::sqrt(prec);
}

double HierPosterior::draw_predictive(int j, SearchRng& rng) const {
  const HierDraw h = draw_hyper(rng);
  const double alpha = j < 0 ? h.mu + h.sigma_alpha * rng.normal() : draw_alpha(h, j, rng);
  return alpha + h.sigma_y * rng.normal();
}

}  // namespace shoal::search
