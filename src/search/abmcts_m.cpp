// AB-MCTS-M, following ../shared/specs/ab-mcts.md, with the collapsed grid sampler of
// abmcts_m_model.h in place of NUTS. Per decision at node P: fit the model to the scores under
// P grouped by child (pending trials under a child count as scores of virtual_loss in its
// group; pending new children of P as one-score groups), then draw one posterior-predictive
// value per option, independently (as TreeQuest picks one random draw per option), and take
// the highest: the new child (GEN, evaluated first, so it wins ties) or an unpruned child.
#include "search/abmcts_m.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace shoal::search {

AbMctsM::AbMctsM(const AbMctsMParams& p, nlohmann::json params, int n_actions, uint64_t seed)
    : TreeSearch("ab-mcts-m", std::move(params), n_actions, seed),
      p_(p),
      n_act_(n_actions),
      virtual_q_(quantize_score(p.virtual_loss)),
      rewards_(static_cast<size_t>(n_actions)) {
  grow();
}

void AbMctsM::grow() {
  const size_t n = tree().size();
  if (sub_.size() >= n) return;
  sub_.resize(n);
  pending_gen_.resize(n, 0);
  hist_.resize(n, std::array<int32_t, kBins>{});
  hist_max_.resize(n, 0);
}

GroupData AbMctsM::group_of(const ScoreStats& s) {
  return {s.n, s.mean(), s.sq_dev()};
}

bool AbMctsM::pruned(int64_t node) const {
  if (!p_.pruning || node == kRootNode) return false;
  const int64_t n = tree()[static_cast<size_t>(node)].visits;
  return n >= p_.prune_min_obs && static_cast<double>(hist_max_[static_cast<size_t>(node)]) >=
                                      p_.prune_fraction * static_cast<double>(n);
}

int AbMctsM::pick_action() {
  if (n_act_ == 1) return 0;
  int best = 0;
  double best_v = -std::numeric_limits<double>::infinity();
  if (p_.model_selection == ModelSelection::kUcb) {
    int64_t total = 0;
    for (const ScoreStats& r : rewards_) total += r.n;
    for (int a = 0; a < n_act_; ++a) {
      const ScoreStats& r = rewards_[static_cast<size_t>(a)];
      if (r.n == 0) return a;
      const double v = r.mean() + std::sqrt(2.0) * std::sqrt(std::log(static_cast<double>(total)) /
                                                             static_cast<double>(r.n));
      if (v > best_v) best_v = v, best = a;
    }
    return best;
  }
  groups_.clear();
  for (const ScoreStats& r : rewards_) groups_.push_back(group_of(r));
  posterior_.fit(p_.model, groups_);
  for (int a = 0; a < n_act_; ++a) {
    const double v = posterior_.draw_predictive(a, rng());
    if (v > best_v) best_v = v, best = a;
  }
  return best;
}

std::pair<int64_t, int> AbMctsM::choose(int64_t /*trial_id*/) {
  int64_t node = kRootNode;
  for (;;) {
    const std::vector<int64_t>& children = tree()[static_cast<size_t>(node)].children;
    if (children.empty()) return {node, pick_action()};
    groups_.clear();
    for (int64_t ch : children) groups_.push_back(group_of(sub_[static_cast<size_t>(ch)]));
    posterior_.fit(p_.model, groups_, pending_gen_[static_cast<size_t>(node)],
                   dequantize_score(virtual_q_));
    const double gen = posterior_.draw_predictive(-1, rng());
    double best_v = gen;
    int64_t best = -1;
    for (size_t j = 0; j < children.size(); ++j) {
      if (pruned(children[j])) continue;
      const double v = posterior_.draw_predictive(static_cast<int>(j), rng());
      if (v > best_v) best_v = v, best = children[j];
    }
    if (best < 0) return {node, pick_action()};
    node = best;
  }
}

void AbMctsM::observe(int64_t parent, int action, int64_t q, int sign) {
  rewards_[static_cast<size_t>(action)].add(q, sign);
  for (int64_t c = parent; c != kRootNode; c = tree()[static_cast<size_t>(c)].parent) {
    sub_[static_cast<size_t>(c)].add(q, sign);
  }
}

void AbMctsM::on_pending(const Trial& trial, int sign) {
  if (!p_.pending_penalty) return;
  pending_gen_[static_cast<size_t>(trial.parent)] += sign;
  observe(trial.parent, trial.action, virtual_q_, sign);
}

void AbMctsM::on_node(const SearchNode& node) {
  grow();
  const int64_t q = quantize_score(node.score);
  sub_[static_cast<size_t>(node.id)].add(q);
  observe(node.parent, node.action, q, +1);
  // Python's round(): halves to even, as std::nearbyint does in the default rounding mode.
  const int bin = static_cast<int>(std::nearbyint(node.score * 100.0));
  for (int64_t c = node.id; c != kRootNode; c = tree()[static_cast<size_t>(c)].parent) {
    const size_t i = static_cast<size_t>(c);
    hist_max_[i] = std::max(hist_max_[i], ++hist_[i][static_cast<size_t>(bin)]);
  }
}

}  // namespace shoal::search
