// AB-MCTS-A, following ../shared/specs/ab-mcts.md. Every statistic is a ScoreStats kept
// current on each tell (O(depth) per tell), so a decision costs O(depth + children visited)
// distribution draws and never rebuilds anything from the list of rewards.
//
// Per node P (all derivable from the tree, which is what makes checkpoints exact):
//   gen_[P]  = scores of P's children;           cont_[P] = scores deeper under P;
//   sub_[C]  = scores in C's subtree (C itself included): C's distribution at its parent.
//   stack:   the same GEN / CONT split restricted to children made by each action.
// A pending trial (P, a) counts as one observation of virtual_loss along its path, exactly as
// its tell will count its score, and is removed when it is told or cancelled.
#include "search/abmcts_a.h"

#include <cmath>
#include <limits>

namespace shoal::search {

AbMctsA::AbMctsA(const AbMctsAParams& p, nlohmann::json params, int n_actions, uint64_t seed)
    : TreeSearch("ab-mcts-a", std::move(params), n_actions, seed),
      p_(p),
      n_act_(n_actions),
      virtual_q_(quantize_score(p.virtual_loss)),
      rewards_(static_cast<size_t>(n_actions)) {
  grow();
}

void AbMctsA::grow() {
  const size_t n = tree().size();
  if (gen_.size() >= n) return;
  gen_.resize(n);
  cont_.resize(n);
  sub_.resize(n);
  child_post_.resize(n);
  if (p_.model_selection == ModelSelection::kStack) {
    per_action_.resize(n * static_cast<size_t>(n_act_) * 2);
  }
}

double AbMctsA::draw(const ScoreStats& s, int action) {
  const bool own_prior = action >= 0 && !p_.prior_means.empty();
  if (p_.distribution == Posterior::kGaussian) {
    GaussianParams prior = p_.gaussian_prior;
    if (own_prior) prior.m = p_.prior_means[static_cast<size_t>(action)];
    return sample_gaussian_mean(gaussian_posterior(prior, s), rng());
  }
  BetaParams prior = p_.beta_prior;
  if (own_prior) {
    prior.a = p_.prior_means[static_cast<size_t>(action)];
    prior.b = 1.0 - prior.a;
  }
  return sample_beta(beta_posterior(prior, s), rng());
}

// A wide node's CONT draws one value per child, so each child's posterior is kept ready
// (updated with its statistics, O(depth) per tell) and a draw is one Student-t or Beta variate.
void AbMctsA::refresh_child(int64_t node) {
  const ScoreStats& s = sub_[static_cast<size_t>(node)];
  ChildPosterior& c = child_post_[static_cast<size_t>(node)];
  if (p_.distribution == Posterior::kGaussian) {
    const GaussianParams g = gaussian_posterior(p_.gaussian_prior, s);
    c = {g.m, std::sqrt(g.tau_sq / g.kappa), g.nu};
  } else {
    const BetaParams b = beta_posterior(p_.beta_prior, s);
    c = {b.a, b.b, 0.0};
  }
}

double AbMctsA::draw_child(int64_t node) {
  const ChildPosterior& c = child_post_[static_cast<size_t>(node)];
  if (p_.distribution == Posterior::kGaussian) return c.x + c.y * rng().student_t(c.z);
  return sample_beta({c.x, c.y}, rng());
}

int AbMctsA::pick_action() {
  if (n_act_ == 1) return 0;
  int best = 0;
  if (p_.model_selection == ModelSelection::kUcb) {
    int64_t total = 0;
    for (const ScoreStats& r : rewards_) total += r.n;
    double best_v = -std::numeric_limits<double>::infinity();
    for (int a = 0; a < n_act_; ++a) {
      const ScoreStats& r = rewards_[static_cast<size_t>(a)];
      if (r.n == 0) return a;  // untried: +inf, and the first one wins ties
      const double v = r.mean() + std::sqrt(2.0) * std::sqrt(std::log(static_cast<double>(total)) /
                                                             static_cast<double>(r.n));
      if (v > best_v) best_v = v, best = a;
    }
    return best;
  }
  double best_v = -std::numeric_limits<double>::infinity();
  for (int a = 0; a < n_act_; ++a) {
    const double v = draw(rewards_[static_cast<size_t>(a)], a);
    if (v > best_v) best_v = v, best = a;
  }
  return best;
}

AbMctsA::Choice AbMctsA::select_next(int64_t node) {
  const std::vector<int64_t>& children = tree()[static_cast<size_t>(node)].children;
  Choice c;
  if (p_.model_selection == ModelSelection::kStack) {
    // First the action, from this node's per-action distributions (GEN and CONT together).
    int action = 0;
    if (n_act_ > 1) {
      double best_v = -std::numeric_limits<double>::infinity();
      for (int a = 0; a < n_act_; ++a) {
        ScoreStats s = gen_a(node, a);
        s.merge(cont_a(node, a));
        const double v = draw(s, a);
        if (v > best_v) best_v = v, action = a;
      }
    }
    c.action = action;
    bool any = false;
    for (int64_t ch : children) any = any || tree()[static_cast<size_t>(ch)].action == action;
    if (!any) return c;
    const double g = draw(gen_a(node, action));
    const double k = draw(cont_a(node, action));
    if (!(k > g)) return c;
    double best_v = -std::numeric_limits<double>::infinity();
    for (int64_t ch : children) {
      if (tree()[static_cast<size_t>(ch)].action != action) continue;
      const double v = draw_child(ch);
      if (v > best_v) best_v = v, c.child = ch;
    }
    c.gen = false;
    return c;
  }
  if (!children.empty()) {
    const double g = draw(gen_[static_cast<size_t>(node)]);
    const double k = draw(cont_[static_cast<size_t>(node)]);
    if (k > g) {
      double best_v = -std::numeric_limits<double>::infinity();
      for (int64_t ch : children) {
        const double v = draw_child(ch);
        if (v > best_v) best_v = v, c.child = ch;
      }
      c.gen = false;
      return c;
    }
  }
  c.action = pick_action();
  return c;
}

std::pair<int64_t, int> AbMctsA::choose(int64_t /*trial_id*/) {
  int64_t node = kRootNode;
  for (;;) {
    const Choice c = select_next(node);
    if (c.gen) return {node, c.action};
    node = c.child;
  }
}

void AbMctsA::observe(int64_t parent, int action, int64_t q, int sign) {
  const bool stack = p_.model_selection == ModelSelection::kStack;
  gen_[static_cast<size_t>(parent)].add(q, sign);
  rewards_[static_cast<size_t>(action)].add(q, sign);
  if (stack) gen_a(parent, action).add(q, sign);
  for (int64_t c = parent; c != kRootNode;) {
    const SearchNode& cn = tree()[static_cast<size_t>(c)];
    sub_[static_cast<size_t>(c)].add(q, sign);
    refresh_child(c);
    cont_[static_cast<size_t>(cn.parent)].add(q, sign);
    if (stack) cont_a(cn.parent, cn.action).add(q, sign);
    c = cn.parent;
  }
}

void AbMctsA::on_pending(const Trial& trial, int sign) {
  if (p_.pending_penalty) observe(trial.parent, trial.action, virtual_q_, sign);
}

void AbMctsA::on_node(const SearchNode& node) {
  grow();
  const int64_t q = quantize_score(node.score);
  sub_[static_cast<size_t>(node.id)].add(q);
  refresh_child(node.id);
  observe(node.parent, node.action, q, +1);
}

}  // namespace shoal::search
