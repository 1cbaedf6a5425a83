// AB-MCTS-M (mixed model): at every node, one hierarchical model over the scores grouped by
// child subtree decides between a new child (GEN) and the existing children; a second one,
// over the whole tree's scores grouped by action, picks the action for GEN. Children whose
// subtree keeps producing the same score are pruned. Implemented in abmcts_m.cpp; the model and
// its sampler in abmcts_m_model.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "search/abmcts_a.h"
#include "search/abmcts_m_model.h"
#include "search/tree.h"

namespace shoal::search {

struct AbMctsMParams {
  HierParams model;
  ModelSelection model_selection = ModelSelection::kThompson;  // kThompson or kUcb
  bool pruning = true;
  int prune_min_obs = 4;         // a subtree needs this many scores before it can be pruned
  double prune_fraction = 0.75;  // ... of which at least this share have one round(100 r)
  bool pending_penalty = true;
  double virtual_loss = 0.0;
};

class AbMctsM final : public TreeSearch {
 public:
  AbMctsM(const AbMctsMParams& p, nlohmann::json params, int n_actions, uint64_t seed);

  // Whether the subtree of `node` is pruned right now (for tests and the tree view).
  bool pruned(int64_t node) const;

 protected:
  std::pair<int64_t, int> choose(int64_t trial_id) override;
  void on_pending(const Trial& trial, int sign) override;
  void on_node(const SearchNode& node) override;

 private:
  static constexpr int kBins = 101;  // round(100 r) in 0..100
  int pick_action();
  void observe(int64_t parent, int action, int64_t q, int sign);
  void grow();
  static GroupData group_of(const ScoreStats& s);

  AbMctsMParams p_;
  int n_act_;
  int64_t virtual_q_;
  std::vector<ScoreStats> sub_;       // per node: its subtree's scores (pending included)
  std::vector<int64_t> pending_gen_;  // per node: pending trials that would add a child
  std::vector<std::array<int32_t, kBins>> hist_;  // per node: told scores of its subtree by bin
  std::vector<int32_t> hist_max_;                 // per node: the largest bin of hist_
  std::vector<ScoreStats> rewards_;               // per action, pending included
  HierPosterior posterior_;                       // scratch, refitted per decision
  std::vector<GroupData> groups_;                 // scratch
};

}  // namespace shoal::search
