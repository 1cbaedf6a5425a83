// AB-MCTS-A: conjugate updates against hand-computed closed forms, the samplers' moments, and
// GEN/CONT and action choices on constructed trees, compared with probabilities computed here by
// independent quadrature over Student-t densities (the marginal of a Normal-Inverse-chi^2 mean).
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "search/abmcts_a.h"
#include "search/tree_test_support.h"
#include "shoal/search.h"

namespace shoal::search {
namespace {

using nlohmann::json;
constexpr double kPi = 3.14159265358979323846;

ScoreStats stats_of(std::initializer_list<double> xs) {
  ScoreStats s;
  for (double x : xs) s.add(quantize_score(x));
  return s;
}

TEST(ScoreStats, ExactSumsAndRemoval) {
  ScoreStats s = stats_of({0.2, 0.5, 0.9});
  EXPECT_EQ(s.n, 3);
  EXPECT_NEAR(s.mean(), 1.6 / 3, 1e-12);
  // S = 0.04 + 0.25 + 0.81 - 1.6^2 / 3 = 1.1 - 0.853333... = 0.246666...
  EXPECT_NEAR(s.sq_dev(), 1.1 - 2.56 / 3, 1e-12);
  const ScoreStats before = s;
  s.add(quantize_score(0.0), +1);  // a virtual loss, then its removal
  s.add(quantize_score(0.0), -1);
  EXPECT_EQ(s, before);
  // Order does not matter, bit for bit.
  EXPECT_EQ(stats_of({0.9, 0.2, 0.5}), before);
  EXPECT_EQ(stats_of({0.3}).sq_dev(), 0.0);
}

TEST(AbMctsAPosterior, GaussianMatchesHandComputedUpdate) {
  const ScoreStats s = stats_of({0.2, 0.5, 0.9});
  // Default prior m0 = 0, kappa0 = 1, nu0 = 1, tau0^2 = 0.1:
  // kappa = 4, nu = 4, m = 1.6 / 4 = 0.4,
  // tau^2 = (0.1 + 0.246667 + 3 * 1 * 0.533333^2 / 4) / 4 = (0.1 + 0.246667 + 0.213333) / 4 = 0.14.
  const GaussianParams p = gaussian_posterior(GaussianParams{}, s);
  EXPECT_DOUBLE_EQ(p.kappa, 4.0);
  EXPECT_DOUBLE_EQ(p.nu, 4.0);
  EXPECT_NEAR(p.m, 0.4, 1e-12);
  EXPECT_NEAR(p.tau_sq, 0.14, 1e-12);
  // Prior m0 = 0.5, kappa0 = 2, nu0 = 3, tau0^2 = 0.05: kappa = 5, nu = 6, m = (1 + 1.6) / 5,
  // tau^2 = (0.15 + 0.246667 + 3 * 2 * (0.5 - 0.533333)^2 / 5) / 6 = 0.398 / 6.
  const GaussianParams q = gaussian_posterior({0.5, 2.0, 3.0, 0.05}, s);
  EXPECT_DOUBLE_EQ(q.kappa, 5.0);
  EXPECT_DOUBLE_EQ(q.nu, 6.0);
  EXPECT_NEAR(q.m, 0.52, 1e-12);
  EXPECT_NEAR(q.tau_sq, 0.398 / 6, 1e-12);
  // No observation: the prior itself.
  const GaussianParams r = gaussian_posterior({0.5, 2.0, 3.0, 0.05}, ScoreStats{});
  EXPECT_EQ(r.m, 0.5);
  EXPECT_EQ(r.tau_sq, 0.05);
}

TEST(AbMctsAPosterior, BetaMatchesHandComputedUpdate) {
  // a = 0.5 + 1.6, b = 0.5 + (3 - 1.6).
  const BetaParams p = beta_posterior(BetaParams{}, stats_of({0.2, 0.5, 0.9}));
  EXPECT_NEAR(p.a, 2.1, 1e-12);
  EXPECT_NEAR(p.b, 1.9, 1e-12);
}

// ---- Independent reference: Student-t densities and closed-form CDFs -------------------------

double t_pdf(double nu, double t) {
  return std::exp(std::lgamma((nu + 1) / 2) - std::lgamma(nu / 2)) / std::sqrt(nu * kPi) *
         std::pow(1 + t * t / nu, -(nu + 1) / 2);
}
double t_cdf(double nu, double t) {  // closed forms for nu = 2 and 3
  if (nu == 2) return 0.5 + t / (2 * std::sqrt(2 + t * t));
  const double r3 = std::sqrt(3.0);
  return 0.5 + (t / (r3 * (1 + t * t / 3)) + std::atan(t / r3)) / kPi;
}
TEST(AbMctsAPosterior, SamplerMoments) {
  SearchRng rng(7);
  constexpr int kN = 200000;
  // Mean draws under NIX2(m = 0.3, kappa = 5, nu = 12, tau^2 = 0.2): Student-t with mean m and
  // variance nu tau^2 / ((nu - 2) kappa) = 12 * 0.2 / (10 * 5) = 0.048.
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < kN; ++i) {
    const double x = sample_gaussian_mean({0.3, 5.0, 12.0, 0.2}, rng);
    sum += x, sum_sq += x * x;
  }
  double mean = sum / kN, var = sum_sq / kN - mean * mean;
  EXPECT_NEAR(mean, 0.3, 0.003);
  EXPECT_NEAR(var, 0.048, 0.048 * 0.03);
  // Beta(2.1, 1.9): mean 2.1 / 4, variance a b / ((a + b)^2 (a + b + 1)) = 3.99 / 80.
  sum = sum_sq = 0;
  for (int i = 0; i < kN; ++i) {
    const double x = sample_beta({2.1, 1.9}, rng);
    sum += x, sum_sq += x * x;
  }
  mean = sum / kN, var = sum_sq / kN - mean * mean;
  EXPECT_NEAR(mean, 0.525, 0.002);
  EXPECT_NEAR(var, 3.99 / 80, 0.0015);
  // Student-t draws for nu = 1, 2, 3 (the closed-form paths and the general one) against the
  // closed-form CDFs (t_cdf below; Cauchy for nu = 1), at several points.
  for (double nu : {1.0, 2.0, 3.0}) {
    std::vector<double> draws;
    for (int i = 0; i < kN; ++i) draws.push_back(sample_gaussian_mean({0.3, 4.0, nu, 0.1}, rng));
    for (double x : {-0.5, 0.0, 0.2, 0.3, 0.45, 0.8, 2.0}) {
      const double t = (x - 0.3) / std::sqrt(0.1 / 4.0);
      const double want = nu == 1 ? 0.5 + std::atan(t) / kPi : t_cdf(nu, t);
      double got = 0;
      for (double d : draws) got += d <= x;
      EXPECT_NEAR(got / kN, want, 0.004) << nu << " " << x;
    }
  }
  // Gamma(k, 1): mean k, variance k, for shapes on both sides of 1.
  for (double k : {0.3, 1.0, 4.5}) {
    sum = sum_sq = 0;
    for (int i = 0; i < kN; ++i) {
      const double x = rng.gamma(k);
      sum += x, sum_sq += x * x;
    }
    mean = sum / kN, var = sum_sq / kN - mean * mean;
    EXPECT_NEAR(mean, k, 0.01 * std::max(k, 1.0)) << k;
    EXPECT_NEAR(var, k, 0.03 * std::max(k, 1.0)) << k;
  }
}

// The mean draw under NIX2(m, kappa, nu, tau^2) is t_nu(m, tau^2 / kappa).
struct T {
  double nu, m, scale;
};
T mean_marginal(double m, double kappa, double nu, double tau_sq) {
  return {nu, m, std::sqrt(tau_sq / kappa)};
}
// P(X > Y) for X ~ a, Y ~ b: integral of pdf_a(x) cdf_b(x), with x = m + s tan(theta).
double prob_greater(const T& a, const T& b) {
  constexpr int kSteps = 200000;
  double total = 0;
  for (int i = 0; i < kSteps; ++i) {
    const double th = -kPi / 2 + (i + 0.5) * kPi / kSteps;
    const double t = std::tan(th), x = a.m + a.scale * t;
    const double dx_dth = a.scale / (std::cos(th) * std::cos(th));
    total += t_pdf(a.nu, t) / a.scale * t_cdf(b.nu, (x - b.m) / b.scale) * dx_dth;
  }
  return total * kPi / kSteps;
}

// Tree: root -> n1 (0.3), n2 (0.6); n1 -> n3 (0.5). At the root GEN holds {0.3, 0.6} and CONT
// {0.5}; a trial's parent is the root exactly when GEN wins there, and n2 exactly when CONT
// wins and n2's draw beats n1's.
const std::vector<test::NodeSpec> kSmallTree = {{0, 0, 0.3}, {0, 0, 0.6}, {1, 0, 0.5}};

TEST(AbMctsA, GenContFrequenciesMatchGaussianPosteriors) {
  // GEN: n = 2, mean 0.45, S = 0.045 -> kappa 3, nu 3, m 0.3, tau^2 = (0.1 + 0.045 + 0.135) / 3.
  // CONT: {0.5} -> kappa 2, nu 2, m 0.25, tau^2 = (0.1 + 0.125) / 2.
  const T gen = mean_marginal(0.3, 3, 3, 0.28 / 3), cont = mean_marginal(0.25, 2, 2, 0.1125);
  // Children: n1 holds {0.3, 0.5} -> kappa 3, nu 3, m 0.8 / 3, tau^2 = (0.1 + 0.02 + 0.32 / 3) / 3;
  // n2 holds {0.6} -> kappa 2, nu 2, m 0.3, tau^2 = (0.1 + 0.18) / 2.
  const T n1 = mean_marginal(0.8 / 3, 3, 3, (0.12 + 0.32 / 3) / 3),
          n2 = mean_marginal(0.3, 2, 2, 0.14);
  const double p_gen = prob_greater(gen, cont);
  const double p_n2 = (1 - p_gen) * prob_greater(n2, n1);
  auto s = test::search_with_tree("ab-mcts-a", json::object(), 1, 11, kSmallTree);
  constexpr int kN = 40000;
  int at_root = 0, at_n2 = 0;
  for (int i = 0; i < kN; ++i) {
    const Trial t = s->ask(1)[0];
    at_root += t.parent == kRootNode;
    at_n2 += t.parent == 2;
    s->cancel(t);
  }
  // 4.5 standard errors.
  EXPECT_NEAR(at_root / double(kN), p_gen, 4.5 * std::sqrt(p_gen * (1 - p_gen) / kN));
  EXPECT_NEAR(at_n2 / double(kN), p_n2, 4.5 * std::sqrt(p_n2 * (1 - p_n2) / kN));
  EXPECT_GT(p_gen, 0.3);  // the case is not degenerate
  EXPECT_LT(p_gen, 0.7);
}

TEST(AbMctsA, GenFrequencyMatchesBetaPosteriors) {
  // GEN: Beta(0.5 + 0.9, 0.5 + 1.1) = Beta(1.4, 1.6); CONT: Beta(1, 1), uniform, so
  // P(GEN draw > CONT draw) = E[Beta(1.4, 1.6)] = 1.4 / 3.
  auto s = test::search_with_tree("ab-mcts-a", {{"distribution", "beta"}}, 1, 12, kSmallTree);
  constexpr int kN = 40000;
  int at_root = 0;
  for (int i = 0; i < kN; ++i) {
    const Trial t = s->ask(1)[0];
    at_root += t.parent == kRootNode;
    s->cancel(t);
  }
  const double p = 1.4 / 3;
  EXPECT_NEAR(at_root / double(kN), p, 4.5 * std::sqrt(p * (1 - p) / kN));
}

TEST(AbMctsA, GoesDeeperWhereDeeperPays) {
  // Root: n1 (0.9) and twenty leaves at 0.0; n1 has thirty children at 1.0. GEN at the root
  // (~0.04) never beats CONT (~0.97); CONT then mostly enters n1, though each zero leaf, known
  // from one score only, has a heavy-tailed draw (t with 2 degrees of freedom, scale 0.16) that
  // beats n1's about 1.3% of the time: n1's subtree gets ~77% of the trials.
  std::vector<test::NodeSpec> tree = {{0, 0, 0.9}};
  for (int i = 0; i < 20; ++i) tree.push_back({0, 0, 0.0});
  for (int i = 0; i < 30; ++i) tree.push_back({1, 0, 1.0});
  auto s = test::search_with_tree("ab-mcts-a", json::object(), 1, 3, tree);
  int deep = 0;
  for (int i = 0; i < 400; ++i) {
    const Trial t = s->ask(1)[0];
    ASSERT_NE(t.parent, kRootNode);
    deep += t.parent == 1 || t.parent >= 22;
    s->cancel(t);
  }
  EXPECT_GT(deep, 400 * 0.65);
}

TEST(AbMctsA, GoesWiderWhereWiderPays) {
  // Root: twenty children at 1.0 and one (n1) at 0.9 with thirty children at 0.0: GEN ~0.95
  // against CONT ~0: every trial expands the root.
  std::vector<test::NodeSpec> tree = {{0, 0, 0.9}};
  for (int i = 0; i < 20; ++i) tree.push_back({0, 0, 1.0});
  for (int i = 0; i < 30; ++i) tree.push_back({1, 0, 0.0});
  auto s = test::search_with_tree("ab-mcts-a", json::object(), 1, 4, tree);
  for (int i = 0; i < 300; ++i) {
    const Trial t = s->ask(1)[0];
    ASSERT_EQ(t.parent, kRootNode);
    s->cancel(t);
  }
}

TEST(AbMctsA, UcbActionsAndPendingPenaltySpreadsThem) {
  // Action 0 scored {0.5, 0.5}, action 1 {0.9}; N = 3.
  // UCB: a0 = 0.5 + sqrt(2 ln 3 / 2) = 1.548, a1 = 0.9 + sqrt(2 ln 3) = 2.382 -> action 1.
  // Pending (1) counts as a 0: a1 = {0.9, 0} (mean 0.45), N = 4: a0 = 0.5 + sqrt(ln 4) = 1.677,
  // a1 = 0.45 + sqrt(ln 4) = 1.627 -> action 0. Then a0 = {0.5, 0.5, 0}, N = 5:
  // a0 = 1/3 + sqrt(2 ln 5 / 3) = 1.370, a1 = 0.45 + sqrt(ln 5) = 1.719 -> action 1.
  const std::vector<test::NodeSpec> tree = {{0, 0, 0.5}, {0, 0, 0.5}, {0, 1, 0.9}};
  auto with = test::search_with_tree("ab-mcts-a", {{"model_selection", "ucb"}}, 2, 5, tree);
  std::vector<int> actions;
  for (const Trial& t : with->ask(3)) actions.push_back(t.action);
  EXPECT_EQ(actions, (std::vector<int>{1, 0, 1}));
  auto without = test::search_with_tree(
      "ab-mcts-a", {{"model_selection", "ucb"}, {"pending_penalty", false}}, 2, 5, tree);
  actions.clear();
  for (const Trial& t : without->ask(3)) actions.push_back(t.action);
  EXPECT_EQ(actions, (std::vector<int>{1, 1, 1}));
  // An untried action comes first.
  auto three = test::search_with_tree("ab-mcts-a", {{"model_selection", "ucb"}}, 3, 5, tree);
  EXPECT_EQ(three->ask(1)[0].action, 2);
}

TEST(AbMctsA, PendingPenaltySpreadsThompsonAsks) {
  // A tree where one subtree leads. Without the penalty the 8 trials of one ask are independent
  // draws and often refine the same answer several times; with it (each pending trial counts as
  // a 0 until told) an answer that just received a trial loses appeal. Measured: how many
  // trials of the batch repeat a refinement target (a non-root parent) already in the batch.
  std::vector<test::NodeSpec> tree;
  for (int i = 0; i < 4; ++i) tree.push_back({0, 0, 0.5 + 0.1 * i});
  for (int i = 0; i < 6; ++i) tree.push_back({4, 0, 0.9});
  double repeats_with = 0, repeats_without = 0;
  constexpr int kSeeds = 100;
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    for (bool penalty : {true, false}) {
      auto s = test::search_with_tree("ab-mcts-a", {{"pending_penalty", penalty}}, 1, seed, tree);
      std::set<int64_t> seen;
      int repeats = 0;
      for (const Trial& t : s->ask(8)) {
        if (t.parent != kRootNode) repeats += !seen.insert(t.parent).second;
      }
      (penalty ? repeats_with : repeats_without) += repeats / double(kSeeds);
    }
  }
  EXPECT_LT(repeats_with, repeats_without - 0.8);
}

TEST(AbMctsA, PriorMeansBiasTheFirstActions) {
  // Empty tree, prior means 0.1 and 0.9: each action's mean draw is Cauchy (nu = 1) with scale
  // sqrt(0.1); the difference of two is Cauchy with scale 2 sqrt(0.1), so
  // P(action 1) = 1/2 + atan(0.8 / (2 sqrt(0.1))) / pi.
  auto s = make_search({"ab-mcts-a", {{"prior_means", {0.1, 0.9}}}, 2, 8});
  constexpr int kN = 20000;
  int ones = 0;
  for (int i = 0; i < kN; ++i) {
    const Trial t = s->ask(1)[0];
    ones += t.action;
    s->cancel(t);
  }
  const double p = 0.5 + std::atan(0.8 / (2 * std::sqrt(0.1))) / kPi;
  EXPECT_NEAR(ones / double(kN), p, 4.5 * std::sqrt(p * (1 - p) / kN));
}

TEST(AbMctsA, StackPicksTheActionThatScoresAtThisNode) {
  // Root children by action 0 all scored 0.05, by action 1 all 0.95: the per-node per-action
  // distributions make action 1 certain.
  std::vector<test::NodeSpec> tree;
  for (int i = 0; i < 20; ++i) tree.push_back({0, 0, 0.05});
  for (int i = 0; i < 20; ++i) tree.push_back({0, 1, 0.95});
  auto s = test::search_with_tree("ab-mcts-a", {{"model_selection", "stack"}}, 2, 9, tree);
  for (int i = 0; i < 300; ++i) {
    const Trial t = s->ask(1)[0];
    // GEN at the root uses action 1; CONT only enters children made by action 1 (ids 21..40),
    // where the leaf's own per-action distributions (prior only) pick the action.
    if (t.parent == kRootNode) {
      ASSERT_EQ(t.action, 1);
    }
    ASSERT_TRUE(t.parent == kRootNode || t.parent >= 21) << t.parent;
    s->cancel(t);
  }
}

}  // namespace
}  // namespace shoal::search
