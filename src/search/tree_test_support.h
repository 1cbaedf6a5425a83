// Test helpers for the search algorithms: trees built node by node through a checkpoint (the
// only way to give a search a tree of one's own choosing), and a deterministic "generator"
// that scores a trial from its ids alone.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "shoal/search.h"

namespace shoal::test {

struct NodeSpec {
  int64_t parent = 0;
  int action = 0;
  double score = 0.0;
};

// A search of `algorithm` whose tree holds `nodes` (node i + 1 = nodes[i]) and no pending trial.
inline std::unique_ptr<Search> search_with_tree(const std::string& algorithm,
                                                const nlohmann::json& params, int n_actions,
                                                uint64_t seed, const std::vector<NodeSpec>& nodes) {
  const auto fresh = make_search({algorithm, params, n_actions, seed});
  nlohmann::json cp = fresh->checkpoint();
  for (size_t i = 0; i < nodes.size(); ++i) {
    cp["nodes"].push_back({{"id", i + 1},
                           {"parent", nodes[i].parent},
                           {"action", nodes[i].action},
                           {"trial", i},
                           {"score", nodes[i].score},
                           {"state", "n" + std::to_string(i + 1)}});
  }
  cp["next_trial"] = nodes.size();
  return resume_search(cp);
}

// A score that depends only on the trial (so two runs that ask the same trials get the same
// scores), in [0, 1].
inline double fake_score(const Trial& t) {
  const uint64_t h = (static_cast<uint64_t>(t.id) * 0x9e3779b97f4a7c15ull) ^
                     (static_cast<uint64_t>(t.parent) << 20) ^ static_cast<uint64_t>(t.action);
  return static_cast<double>((h >> 11) % 1001) / 1000.0;
}

}  // namespace shoal::test
