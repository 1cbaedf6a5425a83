// AB-MCTS-A (node aggregation): Thompson sampling between GEN (a new child) and CONT (descend
// into an existing child) at every node, with conjugate Gaussian or Beta posteriors kept as
// O(1) running statistics. Implemented in abmcts_a.cpp; the posteriors in abmcts_a_posterior.cpp.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "search/tree.h"
#include "search/tree_stats.h"

namespace shoal::search {

// Normal-Inverse-chi^2 parameters: prior (m0, kappa0, nu0, tau0^2) or posterior (m_n, ...).
struct GaussianParams {
  double m = 0.0;
  double kappa = 1.0;
  double nu = 1.0;
  double tau_sq = 0.1;
};
struct BetaParams {
  double a = 0.5;
  double b = 0.5;
};

// Posterior after the observations summarised by `s` (conjugate updates, docs/SEARCH.md).
GaussianParams gaussian_posterior(const GaussianParams& prior, const ScoreStats& s);
BetaParams beta_posterior(const BetaParams& prior, const ScoreStats& s);
// One draw of the mean: sigma^2 ~ InvGamma(nu/2, nu tau^2 / 2), mu ~ N(m, sigma^2 / kappa).
double sample_gaussian_mean(const GaussianParams& posterior, SearchRng& rng);
double sample_beta(const BetaParams& posterior, SearchRng& rng);

enum class Posterior { kGaussian, kBeta };
enum class ModelSelection { kThompson, kUcb, kStack };

struct AbMctsAParams {
  Posterior distribution = Posterior::kGaussian;
  ModelSelection model_selection = ModelSelection::kThompson;
  std::vector<double> prior_means;  // empty, or one per action: prior mean of that action
  GaussianParams gaussian_prior;
  BetaParams beta_prior;
  bool pending_penalty = true;
  double virtual_loss = 0.0;  // the score a pending visit counts as until its tell
};

class AbMctsA final : public TreeSearch {
 public:
  AbMctsA(const AbMctsAParams& p, nlohmann::json params, int n_actions, uint64_t seed);

 protected:
  std::pair<int64_t, int> choose(int64_t trial_id) override;
  void on_pending(const Trial& trial, int sign) override;
  void on_node(const SearchNode& node) override;

 private:
  struct Choice {
    bool gen = true;
    int action = 0;     // for GEN
    int64_t child = 0;  // for CONT
  };
  Choice select_next(int64_t node);
  int pick_action();
  // Thompson draw from a distribution holding `s`; action >= 0 uses that action's prior.
  double draw(const ScoreStats& s, int action = -1);
  void observe(int64_t parent, int action, int64_t q, int sign);
  void refresh_child(int64_t node);
  double draw_child(int64_t node);  // a draw from sub_[node]'s posterior (default prior)
  void grow();

  ScoreStats& gen_a(int64_t node, int a) { return per_action_[(node * n_act_ + a) * 2]; }
  ScoreStats& cont_a(int64_t node, int a) { return per_action_[(node * n_act_ + a) * 2 + 1]; }

  AbMctsAParams p_;
  int n_act_;
  int64_t virtual_q_;
  std::vector<ScoreStats> gen_, cont_, sub_;  // per node id
  // Per node: sub_'s posterior, ready to draw: Gaussian (m, sqrt(tau^2 / kappa), nu) of the
  // Student-t mean draw, or Beta (a, b, unused).
  struct ChildPosterior {
    double x = 0, y = 0, z = 0;
  };
  std::vector<ChildPosterior> child_post_;
  std::vector<ScoreStats> per_action_;  // stack only: per node, per action: GEN, CONT
  std::vector<ScoreStats> rewards_;     // per action, over the whole tree
};

}  // namespace shoal::search
