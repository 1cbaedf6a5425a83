// Standard MCTS (UCT). Like TreeQuest's StandardMCTS, a selected leaf is expanded
// samples_per_action times with every action before the search descends below it; here the
// expansions in flight (pending trials) take slots too, so parallel asks fill a node's slots
// instead of repeating one expansion. A node whose slots are all pending and that has no told
// child yet is widened (the caller asked for more work than the tree can absorb).
// Visits and values include pending trials at virtual_loss (a classic virtual loss).
#include "search/mcts.h"

#include <cmath>
#include <limits>

namespace shoal::search {

Mcts::Mcts(const MctsParams& p, nlohmann::json params, int n_actions, uint64_t seed)
    : TreeSearch("mcts", std::move(params), n_actions, seed),
      p_(p),
      n_act_(n_actions),
      virtual_q_(quantize_score(p.virtual_loss)),
      sub_(1) {}

std::pair<int64_t, int> Mcts::choose(int64_t /*trial_id*/) {
  const int64_t slots = static_cast<int64_t>(p_.samples_per_action) * n_act_;
  int64_t node = kRootNode;
  for (;;) {
    const SearchNode& n = tree()[static_cast<size_t>(node)];
    const int64_t used = static_cast<int64_t>(n.children.size()) + n.pending;
    if (used < slots || n.children.empty()) return {node, static_cast<int>(used % n_act_)};
    const double log_n = std::log(static_cast<double>(sub_[static_cast<size_t>(node)].n));
    double best_v = -std::numeric_limits<double>::infinity();
    int64_t best = n.children.front();
    for (int64_t ch : n.children) {
      const ScoreStats& s = sub_[static_cast<size_t>(ch)];
      const double v = s.mean() + p_.exploration * std::sqrt(log_n / static_cast<double>(s.n));
      if (v > best_v) best_v = v, best = ch;
    }
    node = best;
  }
}

void Mcts::observe(int64_t from, int64_t q, int sign) {
  for (int64_t c = from; c >= 0; c = tree()[static_cast<size_t>(c)].parent) {
    sub_[static_cast<size_t>(c)].add(q, sign);
  }
}

void Mcts::on_pending(const Trial& trial, int sign) {
  if (p_.pending_penalty) observe(trial.parent, virtual_q_, sign);
}

void Mcts::on_node(const SearchNode& node) {
  sub_.resize(tree().size());
  observe(node.id, quantize_score(node.score), +1);
}

}  // namespace shoal::search
