// CMA-ES and separable CMA-ES with IPOP restarts, written from Hansen's tutorial (arXiv:1604.00772,
// the algorithm in its Appendix A and the stopping criteria of its Appendix B.3) and Ros & Hansen
// 2008 for the diagonal variant. Parameters: cmaes_params.cpp.
//
// The distribution N(m, sigma^2 C) lives in unbounded space; with a box, candidates are folded
// into it (BoundsMode::kReflect) or redrawn (kResample) and the update uses the unfolded samples.
#include <algorithm>
#include <cmath>

#include <Eigen/Dense>

#include "evolve/cmaes_params.h"
#include "evolve/optimizer_impl.h"
#include "shoal/error.h"

namespace shoal::evolve {
namespace {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using nlohmann::json;

VectorXd to_eigen(const std::vector<double>& v) {
  return Eigen::Map<const VectorXd>(v.data(), static_cast<Eigen::Index>(v.size()));
}
std::vector<double> from_eigen(const VectorXd& v) {
  return {v.data(), v.data() + v.size()};
}

class CmaEs final : public Optimizer {
 public:
  explicit CmaEs(const OptimizerOptions& o)
      : Optimizer(o), separable_(o.kind == OptimizerKind::kSepCmaEs) {
    start(o.population, to_eigen(o.x0));
  }

  CmaEs(const OptimizerOptions& o, const json& j)
      : Optimizer(o), separable_(o.kind == OptimizerKind::kSepCmaEs) {
    load_common(j);
    const auto n = static_cast<size_t>(o.dimension);
    restart_ = static_cast<int>(read_int(j, "restart"));
    const auto lambda = read_int(j, "lambda");
    if (restart_ < 0 || restart_ > o.max_restarts || lambda < 2 || lambda > (int64_t{1} << 24)) {
      throw FormatError("optimizer state: restart or lambda out of range");
    }
    p_ = cma_parameters(o.dimension, static_cast<int>(lambda), separable_, o.eigen_interval);
    mean_ = to_eigen(read_vector(j, "mean", n));
    sigma_ = read_double(j, "sigma");
    pc_ = to_eigen(read_vector(j, "pc", n));
    ps_ = to_eigen(read_vector(j, "ps", n));
    d_ = to_eigen(read_vector(j, "D", n));
    if (separable_) {
      c_diag_ = to_eigen(read_vector(j, "C", n));
    } else {
      c_ = read_square(j, "C", n);
      b_ = read_square(j, "B", n);
    }
    gen_in_restart_ = read_int(j, "gen_in_restart");
    eigen_generation_ = read_int(j, "eigen_generation");
    const json& history = member(j, "history");
    history_ = read_vector(j, "history", history.is_array() ? history.size() : 0);
    asked_ = member(j, "asked").get<bool>();
    if (asked_) {
      for (const auto& row : read_matrix(j, "samples", p_.lambda, n)) samples_.push_back(row);
      for (const auto& x : samples_) population_.push_back(fold(options_, x));
    }
    const json& reason = member(j, "stop_reason");
    if (!reason.is_string()) throw FormatError("optimizer state: 'stop_reason' must be a string");
    stop_reason_ = reason.get<std::string>();
    done_ = member(j, "done").get<bool>();
    if (!(sigma_ > 0) || !std::isfinite(sigma_) || !(d_.minCoeff() > 0) || !d_.allFinite()) {
      throw FormatError("optimizer state: sigma and D must be positive and finite");
    }
  }

  const std::vector<std::vector<double>>& ask() override {
    if (!asked_) sample();
    return population_;
  }

  void tell(const std::vector<double>& fitness) override {
    if (!asked_) record({}, fitness);  // throws: nothing was asked
    record(population_, fitness);
    update(fitness);
    asked_ = false;
    samples_.clear();
    population_.clear();
  }

  bool done() const override { return done_; }
  std::string stop_reason() const override { return stop_reason_; }
  std::vector<double> center() const override { return fold(options_, from_eigen(mean_)); }
  double sigma() const override { return sigma_; }
  int population() const override { return p_.lambda; }
  int restarts() const override { return restart_; }

  json save() const override {
    json j = save_common();
    j["restart"] = restart_;
    j["lambda"] = p_.lambda;
    j["mean"] = to_json(from_eigen(mean_));
    j["sigma"] = to_json(sigma_);
    j["pc"] = to_json(from_eigen(pc_));
    j["ps"] = to_json(from_eigen(ps_));
    j["D"] = to_json(from_eigen(d_));
    if (separable_) {
      j["C"] = to_json(from_eigen(c_diag_));
    } else {
      j["C"] = square_to_json(c_);
      j["B"] = square_to_json(b_);
    }
    j["gen_in_restart"] = gen_in_restart_;
    j["eigen_generation"] = eigen_generation_;
    j["history"] = to_json(history_);
    j["asked"] = asked_;
    j["samples"] = to_json(samples_);
    j["stop_reason"] = stop_reason_;
    j["done"] = done_;
    return j;
  }

 private:
  static json square_to_json(const MatrixXd& m) {
    std::vector<std::vector<double>> rows(m.rows());
    for (Eigen::Index r = 0; r < m.rows(); ++r) rows[r] = from_eigen(m.row(r).transpose());
    return to_json(rows);
  }
  static MatrixXd read_square(const json& j, const char* key, size_t n) {
    const auto rows = read_matrix(j, key, n, n);
    MatrixXd m(n, n);
    for (size_t r = 0; r < n; ++r) {
      for (size_t c = 0; c < n; ++c) m(r, c) = rows[r][c];
    }
    return m;
  }

  // A fresh distribution at `mean` with step sigma0 and C = I.
  void start(int lambda, const VectorXd& mean) {
    const int n = options_.dimension;
    p_ = cma_parameters(n, lambda, separable_, options_.eigen_interval);
    mean_ = mean;
    sigma_ = options_.sigma0;
    pc_ = VectorXd::Zero(n);
    ps_ = VectorXd::Zero(n);
    d_ = VectorXd::Ones(n);
    if (separable_) {
      c_diag_ = VectorXd::Ones(n);
    } else {
      c_ = MatrixXd::Identity(n, n);
      b_ = MatrixXd::Identity(n, n);
    }
    gen_in_restart_ = 0;
    eigen_generation_ = 0;
    history_.clear();
    stop_reason_.clear();
  }

  // y = B D z (sep: D z).
  VectorXd transform(const VectorXd& z) const {
    const VectorXd dz = d_.cwiseProduct(z);
    return separable_ ? dz : VectorXd(b_ * dz);
  }
  // C^{-1/2} y = B D^{-1} B^T y.
  VectorXd inv_sqrt(const VectorXd& y) const {
    if (separable_) return y.cwiseQuotient(d_);
    return b_ * (b_.transpose() * y).cwiseQuotient(d_);
  }

  void sample() {
    const int n = options_.dimension;
    const bool resample = bounded(options_) && options_.bounds == BoundsMode::kResample;
    for (int k = 0; k < p_.lambda; ++k) {
      RandomCursor rnd(options_.seed, Stream::kSample, restart_, generation_, k);
      std::vector<double> x;
      for (int attempt = 0; attempt < 100; ++attempt) {
        VectorXd z(n);
        for (int i = 0; i < n; ++i) z[i] = rnd.gaussian();
        x = from_eigen(mean_ + sigma_ * transform(z));
        if (!resample || inside(options_, x)) break;
      }
      samples_.push_back(x);
      population_.push_back(fold(options_, x));
    }
    asked_ = true;
  }

  void update(const std::vector<double>& f) {
    const int n = options_.dimension, lambda = p_.lambda;
    const std::vector<int> order = ranking(f);
    std::vector<VectorXd> y(lambda);  // steps of the ranked samples, in units of sigma
    for (int i = 0; i < lambda; ++i) y[i] = (to_eigen(samples_[order[i]]) - mean_) / sigma_;

    VectorXd y_w = VectorXd::Zero(n);
    for (int i = 0; i < p_.mu; ++i) y_w += p_.weights[i] * y[i];
    mean_ += sigma_ * y_w;  // c_m = 1

    ps_ = (1 - p_.c_sigma) * ps_ +
          std::sqrt(p_.c_sigma * (2 - p_.c_sigma) * p_.mueff) * inv_sqrt(y_w);
    const double g1 = static_cast<double>(gen_in_restart_ + 1);
    const double ps_norm = ps_.norm();
    const bool h_sigma = ps_norm / std::sqrt(1 - std::pow(1 - p_.c_sigma, 2 * g1)) <
                         (1.4 + 2.0 / (n + 1)) * p_.chi_n;
    pc_ = (1 - p_.c_c) * pc_ + (h_sigma ? std::sqrt(p_.c_c * (2 - p_.c_c) * p_.mueff) : 0.0) * y_w;

    double weight_sum = 0;
    for (double w : p_.weights) weight_sum += w;
    const double delta_h = h_sigma ? 0.0 : p_.c_c * (2 - p_.c_c);
    const double keep = 1 + p_.c_1 * delta_h - p_.c_1 - p_.c_mu * weight_sum;
    if (separable_) {
      VectorXd rank_mu = VectorXd::Zero(n);
      for (int i = 0; i < lambda; ++i) {
        if (p_.weights[i] != 0) rank_mu += p_.weights[i] * y[i].cwiseAbs2();
      }
      c_diag_ = keep * c_diag_ + p_.c_1 * pc_.cwiseAbs2() + p_.c_mu * rank_mu;
    } else {
      MatrixXd rank_mu = MatrixXd::Zero(n, n);
      for (int i = 0; i < lambda; ++i) {
        double w = p_.weights[i];
        if (w == 0) continue;
        // Negative weights are rescaled by n / ||C^{-1/2} y||^2 (tutorial, eq. 46).
        if (w < 0) w *= n / inv_sqrt(y[i]).squaredNorm();
        rank_mu.noalias() += w * y[i] * y[i].transpose();
      }
      c_ = keep * c_ + p_.c_1 * pc_ * pc_.transpose() + p_.c_mu * rank_mu;
    }
    sigma_ *= std::exp((p_.c_sigma / p_.d_sigma) * (ps_norm / p_.chi_n - 1));
    ++gen_in_restart_;

    bool degenerate = false;
    if (generation_ - eigen_generation_ >= p_.eigen_interval) degenerate = decompose();
    check_stop(f, degenerate);
  }

  // B and D from C; returns true when C has lost positive definiteness.
  bool decompose() {
    eigen_generation_ = generation_;
    if (separable_) {
      d_ = c_diag_.cwiseMax(1e-300).cwiseSqrt();
      return c_diag_.minCoeff() <= 0 || !c_diag_.allFinite();
    }
    c_ = c_.triangularView<Eigen::Upper>();
    c_.triangularView<Eigen::StrictlyLower>() = c_.transpose();
    Eigen::SelfAdjointEigenSolver<MatrixXd> solver(c_);
    if (solver.info() != Eigen::Success || !solver.eigenvalues().allFinite()) return true;
    b_ = solver.eigenvectors();
    const VectorXd ev = solver.eigenvalues();
    d_ = ev.cwiseMax(1e-300).cwiseSqrt();
    return ev.minCoeff() <= 0;
  }

  void check_stop(const std::vector<double>& f, bool degenerate) {
    const int n = options_.dimension, lambda = p_.lambda;
    const std::vector<int> order = ranking(f);
    const size_t window = 10 + static_cast<size_t>(std::ceil(30.0 * n / lambda));
    history_.push_back(f[order[0]]);
    if (history_.size() > window) history_.erase(history_.begin());

    std::string reason;
    const double range_now = f[order[lambda - 1]] - f[order[0]];
    const auto [lo, hi] = std::minmax_element(history_.begin(), history_.end());
    const double max_d = d_.maxCoeff(), min_d = d_.minCoeff();
    if (degenerate || max_d > 1e7 * min_d) {
      reason = "condition_cov";  // condition number of C above 1e14
    } else if (history_.size() == window && *hi - *lo < options_.tol_fun &&
               range_now < options_.tol_fun) {
      reason = "tol_fun";
    } else if (sigma_ * max_d > 1e4 * options_.sigma0) {
      reason = "tol_x_up";
    } else {
      bool small = true, coord_no_effect = false;
      for (int i = 0; i < n; ++i) {
        const double c_ii = separable_ ? c_diag_[i] : c_(i, i);
        const double sd = sigma_ * std::sqrt(c_ii);
        small = small && sigma_ * std::abs(pc_[i]) < options_.tol_x * options_.sigma0 &&
                sd < options_.tol_x * options_.sigma0;
        coord_no_effect = coord_no_effect || mean_[i] + 0.2 * sd == mean_[i];
      }
      const int axis = static_cast<int>(gen_in_restart_ % n);
      VectorXd e = VectorXd::Zero(n);
      e[axis] = 1;
      const VectorXd shifted = mean_ + 0.1 * sigma_ * d_[axis] * (separable_ ? e : b_.col(axis));
      if (small) {
        reason = "tol_x";
      } else if (shifted == mean_) {
        reason = "no_effect_axis";
      } else if (coord_no_effect) {
        reason = "no_effect_coord";
      }
    }
    if (reason.empty()) return;
    stop_reason_ = reason;
    if (restart_ >= options_.max_restarts) {
      done_ = true;
      return;
    }
    // IPOP: a larger population from a new start; uniform in the box when there is one.
    ++restart_;
    VectorXd mean = to_eigen(options_.x0);
    if (bounded(options_)) {
      RandomCursor rnd(options_.seed, Stream::kRestartMean, restart_, generation_, 0);
      for (int i = 0; i < n; ++i) {
        mean[i] = options_.lower[i] + rnd.uniform() * (options_.upper[i] - options_.lower[i]);
      }
    }
    const double grown = std::ceil(lambda * options_.ipop_factor);
    start(static_cast<int>(std::min(grown, double(1 << 24))), mean);
    stop_reason_ = reason;  // kept for the log until the next stop
  }

  bool separable_;
  CmaParameters p_;
  int restart_ = 0;
  VectorXd mean_, pc_, ps_, d_, c_diag_;
  MatrixXd c_, b_;
  double sigma_ = 0;
  int64_t gen_in_restart_ = 0;
  int64_t eigen_generation_ = 0;
  std::vector<double> history_;  // best fitness of the last generations of this restart
  bool asked_ = false;
  std::vector<std::vector<double>> samples_;     // unfolded, as drawn
  std::vector<std::vector<double>> population_;  // folded into the box
  std::string stop_reason_;
  bool done_ = false;
};

}  // namespace

std::unique_ptr<Optimizer> make_cmaes(const OptimizerOptions& options) {
  return std::make_unique<CmaEs>(options);
}

std::unique_ptr<Optimizer> load_cmaes(const OptimizerOptions& options, const json& j) {
  try {
    return std::make_unique<CmaEs>(options, j);
  } catch (const json::exception& e) {
    throw FormatError(std::string("optimizer state: ") + e.what());
  }
}

}  // namespace shoal::evolve
