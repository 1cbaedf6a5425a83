// Standard MCTS with UCT, as a baseline: descend by Q + c sqrt(ln N_parent / N_child) until a
// node that still has expansion slots (samples_per_action per action, filled in round-robin
// order), then expand it. Implemented in mcts.cpp.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "search/tree.h"

namespace shoal::search {

struct MctsParams {
  double exploration = 1.4142135623730951;  // c in the UCT bonus (sqrt 2)
  int samples_per_action = 2;               // children per action before a node is descended
  bool pending_penalty = true;
  double virtual_loss = 0.0;
};

class Mcts final : public TreeSearch {
 public:
  Mcts(const MctsParams& p, nlohmann::json params, int n_actions, uint64_t seed);

 protected:
  std::pair<int64_t, int> choose(int64_t trial_id) override;
  void on_pending(const Trial& trial, int sign) override;
  void on_node(const SearchNode& node) override;

 private:
  void observe(int64_t from, int64_t q, int sign);

  MctsParams p_;
  int n_act_;
  int64_t virtual_q_;
  std::vector<ScoreStats> sub_;  // per node: its subtree's scores (pending included)
};

}  // namespace shoal::search
