#include "search/tree.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "shoal/error.h"

namespace shoal {

const SearchNode& Search::node(int64_t id) const {
  const auto all = nodes();
  if (id < 0 || id >= static_cast<int64_t>(all.size())) {
    throw ConfigError("search: unknown node id " + std::to_string(id) + " (the tree has " +
                      std::to_string(all.size()) + " nodes)");
  }
  return all[static_cast<size_t>(id)];
}

std::vector<int64_t> Search::top_k(int k) const {
  const auto all = nodes();
  std::vector<int64_t> ids;
  ids.reserve(all.size());
  for (size_t i = 1; i < all.size(); ++i) ids.push_back(static_cast<int64_t>(i));
  const size_t take = std::min(ids.size(), static_cast<size_t>(std::max(k, 0)));
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(take), ids.end(),
                    [&](int64_t a, int64_t b) {
                      const double sa = all[static_cast<size_t>(a)].score;
                      const double sb = all[static_cast<size_t>(b)].score;
                      return sa != sb ? sa > sb : a < b;
                    });
  ids.resize(take);
  return ids;
}

namespace search {

TreeSearch::TreeSearch(std::string algorithm, nlohmann::json params, int n_actions, uint64_t seed)
    : algorithm_(std::move(algorithm)),
      params_(std::move(params)),
      n_actions_(n_actions),
      seed_(seed),
      rng_(seed) {
  SHOAL_ASSERT(n_actions_ >= 1);
  nodes_.emplace_back();  // the root
}

std::vector<Trial> TreeSearch::ask(int k) {
  if (k < 1) throw ConfigError("search ask: k = " + std::to_string(k) + ", expected >= 1");
  std::vector<Trial> trials;
  trials.reserve(static_cast<size_t>(k));
  for (int i = 0; i < k; ++i) {
    Trial t;
    t.id = next_trial_;
    const auto [parent, action] = choose(t.id);
    SHOAL_ASSERT(parent >= 0 && parent < static_cast<int64_t>(nodes_.size()));
    SHOAL_ASSERT(action >= 0 && action < n_actions_);
    t.parent = parent;
    t.action = action;
    ++next_trial_;
    set_pending(t, +1);
    trials.push_back(t);
  }
  return trials;
}

const Trial& TreeSearch::find_pending(const Trial& trial, const char* what) const {
  const auto it = pending_.find(trial.id);
  if (it == pending_.end()) {
    throw ConfigError(std::string("search ") + what + ": trial " + std::to_string(trial.id) +
                      " is not pending (never asked, already told or cancelled)");
  }
  if (it->second.parent != trial.parent || it->second.action != trial.action) {
    throw ConfigError(std::string("search ") + what + ": trial " + std::to_string(trial.id) +
                      " was asked as (parent " + std::to_string(it->second.parent) + ", action " +
                      std::to_string(it->second.action) + "), not (parent " +
                      std::to_string(trial.parent) + ", action " + std::to_string(trial.action) +
                      ")");
  }
  return it->second;
}

void TreeSearch::set_pending(const Trial& trial, int sign) {
  if (sign > 0) {
    pending_.emplace(trial.id, trial);
    ++nodes_[static_cast<size_t>(trial.parent)].pending;
    on_pending(trial, +1);
  } else {
    on_pending(trial, -1);
    --nodes_[static_cast<size_t>(trial.parent)].pending;
    pending_.erase(trial.id);
  }
}

int64_t TreeSearch::tell(const Trial& trial, std::string state, double score, nlohmann::json meta) {
  const Trial t = find_pending(trial, "tell");
  if (!(score >= 0.0 && score <= 1.0)) {  // also rejects NaN
    throw ConfigError("search tell: score " + std::to_string(score) + " of trial " +
                      std::to_string(t.id) + " is outside [0, 1]");
  }
  set_pending(t, -1);
  return add_node(t, std::move(state), score, std::move(meta));
}

void TreeSearch::cancel(const Trial& trial) {
  const Trial t = find_pending(trial, "cancel");
  set_pending(t, -1);
}

std::vector<Trial> TreeSearch::pending() const {
  std::vector<Trial> out;
  out.reserve(pending_.size());
  for (const auto& [id, t] : pending_) out.push_back(t);
  return out;
}

int64_t TreeSearch::add_node(const Trial& trial, std::string state, double score,
                             nlohmann::json meta) {
  const int64_t id = static_cast<int64_t>(nodes_.size());
  SearchNode n;
  n.id = id;
  n.parent = trial.parent;
  n.action = trial.action;
  n.trial = trial.id;
  n.depth = nodes_[static_cast<size_t>(trial.parent)].depth + 1;
  n.score = score;
  n.state = std::move(state);
  n.meta = std::move(meta);
  n.visits = 1;
  nodes_.push_back(std::move(n));
  nodes_[static_cast<size_t>(trial.parent)].children.push_back(id);
  for (int64_t c = trial.parent; c >= 0; c = nodes_[static_cast<size_t>(c)].parent) {
    ++nodes_[static_cast<size_t>(c)].visits;
  }
  on_node(nodes_.back());
  return id;
}

}  // namespace search
}  // namespace shoal
