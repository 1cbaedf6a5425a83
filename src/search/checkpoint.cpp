// Checkpoints: the whole search as one JSON object (format in docs/SEARCH.md). Only the tree,
// the pending trials and two counters are stored; every algorithm statistic is rebuilt from them
// on resume, exactly, because the statistics are integer sums (tree_stats.h).
#include <string>
#include <unordered_set>

#include "search/tree.h"
#include "shoal/error.h"

namespace shoal::search {
namespace {

constexpr const char* kFormat = "shoal-search";
constexpr int kVersion = 1;

[[noreturn]] void bad(const std::string& key, const std::string& expected) {
  throw FormatError("search checkpoint: " + key + ": expected " + expected);
}

const nlohmann::json& field(const nlohmann::json& obj, const char* key, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end()) bad(where + key, "a value (missing)");
  return *it;
}

int64_t get_int(const nlohmann::json& obj, const char* key, const std::string& where, int64_t lo,
                int64_t hi) {
  const auto& v = field(obj, key, where);
  if (!v.is_number_integer()) bad(where + key, "an integer");
  const int64_t x =
      v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX ? INT64_MAX : v.get<int64_t>();
  if (x < lo || x > hi) {
    bad(where + key, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return x;
}

uint64_t get_u64(const nlohmann::json& obj, const char* key) {
  const auto& v = field(obj, key, "");
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0)) {
    bad(key, "a non-negative integer");
  }
  return v.get<uint64_t>();
}

}  // namespace

nlohmann::json TreeSearch::checkpoint() const {
  nlohmann::json nodes = nlohmann::json::array();
  for (size_t i = 1; i < nodes_.size(); ++i) {
    const SearchNode& n = nodes_[i];
    nlohmann::json j = {{"id", n.id},       {"parent", n.parent}, {"action", n.action},
                        {"trial", n.trial}, {"depth", n.depth},   {"score", n.score},
                        {"state", n.state}};
    if (!n.meta.is_null()) j["meta"] = n.meta;
    nodes.push_back(std::move(j));
  }
  nlohmann::json pending = nlohmann::json::array();
  for (const auto& [id, t] : pending_) {
    pending.push_back({{"id", t.id}, {"parent", t.parent}, {"action", t.action}});
  }
  return {{"format", kFormat},
          {"version", kVersion},
          {"algorithm", algorithm_},
          {"params", params_},
          {"n_actions", n_actions_},
          {"seed", seed_},
          {"rng_counter", rng_.counter()},
          {"next_trial", next_trial_},
          {"nodes", std::move(nodes)},
          {"pending", std::move(pending)}};
}

void TreeSearch::restore(const nlohmann::json& cp) {
  SHOAL_ASSERT(nodes_.size() == 1 && pending_.empty() && next_trial_ == 0);
  rng_ = SearchRng(seed_, get_u64(cp, "rng_counter"));
  next_trial_ = get_int(cp, "next_trial", "", 0, INT64_MAX);
  const auto& nodes = field(cp, "nodes", "");
  const auto& pending = field(cp, "pending", "");
  if (!nodes.is_array()) bad("nodes", "an array");
  if (!pending.is_array()) bad("pending", "an array");
  // Statistics hold at most kMaxObservations scores (tree_stats.h).
  if (nodes.size() + pending.size() >= static_cast<size_t>(kMaxObservations)) {
    bad("nodes", "fewer than " + std::to_string(kMaxObservations) + " nodes and pending trials");
  }

  std::unordered_set<int64_t> trial_used;  // trial ids seen, to reject duplicates
  auto claim_trial = [&](int64_t id, const std::string& where) {
    if (!trial_used.insert(id).second) bad(where + "id", "a trial id used only once");
  };

  for (size_t i = 0; i < nodes.size(); ++i) {
    const auto& j = nodes[i];
    const std::string where = "nodes[" + std::to_string(i) + "].";
    if (!j.is_object()) bad("nodes[" + std::to_string(i) + "]", "an object");
    const int64_t id = static_cast<int64_t>(i) + 1;
    get_int(j, "id", where, id, id);
    Trial t;
    t.id = get_int(j, "trial", where, 0, next_trial_ - 1);
    t.parent = get_int(j, "parent", where, 0, id - 1);
    t.action = static_cast<int>(get_int(j, "action", where, 0, n_actions_ - 1));
    claim_trial(t.id, where + "trial ");
    const auto& score = field(j, "score", where);
    if (!score.is_number() || !(score.get<double>() >= 0.0 && score.get<double>() <= 1.0)) {
      bad(where + "score", "a number in [0, 1]");
    }
    const auto& state = field(j, "state", where);
    if (!state.is_string()) bad(where + "state", "a string");
    const auto meta = j.find("meta");
    add_node(t, state.get<std::string>(), score.get<double>(),
             meta == j.end() ? nlohmann::json() : *meta);
  }
  for (size_t i = 0; i < pending.size(); ++i) {
    const auto& j = pending[i];
    const std::string where = "pending[" + std::to_string(i) + "].";
    if (!j.is_object()) bad("pending[" + std::to_string(i) + "]", "an object");
    Trial t;
    t.id = get_int(j, "id", where, 0, next_trial_ - 1);
    t.parent = get_int(j, "parent", where, 0, static_cast<int64_t>(nodes_.size()) - 1);
    t.action = static_cast<int>(get_int(j, "action", where, 0, n_actions_ - 1));
    claim_trial(t.id, where);
    set_pending(t, +1);
  }
}

}  // namespace shoal::search
