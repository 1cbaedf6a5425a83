// TreeSearch: the bookkeeping every algorithm shares (nodes, pending trials, validation, the
// random stream, checkpoints). An algorithm derives from it and supplies choose() plus hooks
// that keep its statistics in step with the tree. Implemented in tree.cpp and checkpoint.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "search/tree_stats.h"
#include "shoal/search.h"

namespace shoal::search {

class TreeSearch : public Search {
 public:
  std::vector<Trial> ask(int k) final;
  int64_t tell(const Trial& trial, std::string state, double score, nlohmann::json meta) final;
  void cancel(const Trial& trial) final;
  std::vector<Trial> pending() const final;
  std::span<const SearchNode> nodes() const final { return nodes_; }
  nlohmann::json checkpoint() const final;
  std::string_view algorithm() const final { return algorithm_; }
  const nlohmann::json& params() const final { return params_; }
  int n_actions() const final { return n_actions_; }
  uint64_t seed() const final { return seed_; }

  // Rebuilds the tree, the pending trials and the random counter from a checkpoint's fields
  // (checkpoint.cpp); the search must be freshly constructed with the same parameters.
  void restore(const nlohmann::json& checkpoint);

 protected:
  TreeSearch(std::string algorithm, nlohmann::json params, int n_actions, uint64_t seed);

  // The next trial's (parent, action), given the tree and the trials already pending.
  virtual std::pair<int64_t, int> choose(int64_t trial_id) = 0;
  // A trial became pending (sign +1) or stopped being pending (sign -1, before its node, if
  // any, is added). Algorithms apply or remove their pending-visit penalty here.
  virtual void on_pending(const Trial& /*trial*/, int /*sign*/) {}
  // A node was added (nodes_ already holds it, with parent links and visits updated).
  virtual void on_node(const SearchNode& /*node*/) {}

  SearchRng& rng() { return rng_; }
  const std::vector<SearchNode>& tree() const { return nodes_; }
  const std::map<int64_t, Trial>& pending_map() const { return pending_; }

 private:
  const Trial& find_pending(const Trial& trial, const char* what) const;
  int64_t add_node(const Trial& trial, std::string state, double score, nlohmann::json meta);
  void set_pending(const Trial& trial, int sign);

  std::string algorithm_;
  nlohmann::json params_;
  int n_actions_;
  uint64_t seed_;
  SearchRng rng_;
  int64_t next_trial_ = 0;
  std::vector<SearchNode> nodes_;
  std::map<int64_t, Trial> pending_;  // by trial id (= ask order)
};

}  // namespace shoal::search
