#include "search/baselines.h"

namespace shoal::search {

int baseline_action(const BaselineParams& p, int n_actions, int64_t trial_id, SearchRng& rng) {
  switch (p.action) {
    case BaselineParams::Action::kRoundRobin:
      return static_cast<int>(trial_id % n_actions);
    case BaselineParams::Action::kRandom:
      return static_cast<int>(rng.below(static_cast<uint64_t>(n_actions)));
    case BaselineParams::Action::kFixed:
      break;
  }
  return p.fixed_action;
}

RepeatedSampling::RepeatedSampling(const BaselineParams& p, nlohmann::json params, int n_actions,
                                   uint64_t seed)
    : TreeSearch("repeated-sampling", std::move(params), n_actions, seed), p_(p) {}

std::pair<int64_t, int> RepeatedSampling::choose(int64_t trial_id) {
  return {kRootNode, baseline_action(p_, n_actions(), trial_id, rng())};
}

SequentialRefinement::SequentialRefinement(const BaselineParams& p, nlohmann::json params,
                                           int n_actions, uint64_t seed)
    : TreeSearch("sequential-refinement", std::move(params), n_actions, seed), p_(p) {}

std::pair<int64_t, int> SequentialRefinement::choose(int64_t trial_id) {
  // The latest node is the one told last (the highest id); the root before any tell.
  const int64_t parent = p_.refine_best ? best_ : static_cast<int64_t>(tree().size()) - 1;
  return {parent, baseline_action(p_, n_actions(), trial_id, rng())};
}

void SequentialRefinement::on_node(const SearchNode& node) {
  if (best_ == kRootNode || node.score > tree()[static_cast<size_t>(best_)].score) best_ = node.id;
}

}  // namespace shoal::search
