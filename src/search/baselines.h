// Baselines in the same interface: repeated sampling (every trial answers from scratch) and
// sequential refinement (every trial refines the latest, or the best, answer so far).
// Implemented in baselines.cpp.
#pragma once

#include <cstdint>
#include <utility>

#include "search/tree.h"

namespace shoal::search {

struct BaselineParams {
  enum class Action { kRoundRobin, kRandom, kFixed };
  Action action = Action::kRoundRobin;  // round robin by trial id, uniform random, or fixed
  int fixed_action = 0;
  bool refine_best = false;  // sequential refinement: refine the best node, not the latest
};

class RepeatedSampling final : public TreeSearch {
 public:
  RepeatedSampling(const BaselineParams& p, nlohmann::json params, int n_actions, uint64_t seed);

 protected:
  std::pair<int64_t, int> choose(int64_t trial_id) override;

 private:
  BaselineParams p_;
};

class SequentialRefinement final : public TreeSearch {
 public:
  SequentialRefinement(const BaselineParams& p, nlohmann::json params, int n_actions,
                       uint64_t seed);

 protected:
  std::pair<int64_t, int> choose(int64_t trial_id) override;
  void on_node(const SearchNode& node) override;

 private:
  BaselineParams p_;
  int64_t best_ = kRootNode;  // best-scored node (the earliest among equals)
};

// The action a baseline uses for trial `trial_id`.
int baseline_action(const BaselineParams& p, int n_actions, int64_t trial_id, SearchRng& rng);

}  // namespace shoal::search
