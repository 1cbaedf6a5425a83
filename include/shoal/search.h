// Tree search over generations: AB-MCTS-A, AB-MCTS-M, standard MCTS (UCT), repeated sampling and
// sequential refinement, all behind one ask/tell interface (docs/SEARCH.md, "Algorithms"; the
// behaviour follows ../shared/specs/ab-mcts.md).
//
// The search never generates anything itself. The caller asks for trials, runs each one (the
// action = which model to call; the parent = which answer to refine, or none), and tells the
// search the new state and its score, in any order:
//
//   auto search = make_search({.algorithm = "ab-mcts-a", .n_actions = 3, .seed = 7});
//   for (const Trial& t : search->ask(4)) {            // 4 parallel generations
//     std::string answer = call_model(t.action, parent_text(t.parent));
//     search->tell(t, answer, score(answer));          // score in [0, 1]
//   }
//
// Nodes: the root (id kRootNode = 0) stands for "no answer yet" and has no state or score. Every
// tell creates one node, with ids 1, 2, 3, ... in tell order. Trials are numbered 0, 1, 2, ... in
// ask order. Trials that were asked and not yet told are "pending": each one counts as a pending
// visit (a virtual loss) on the path it chose, so the k trials of one ask(k), or asks made while
// other trials are out, spread over the tree instead of repeating the same choice.
//
// Determinism: every random draw comes from CounterRng(seed) at a counter kept by the search, and
// the statistics are exact (order-independent) sums, so the same seed and the same sequence of
// ask/tell/cancel calls give the same trials on every machine. checkpoint() captures everything
// (tree, pending trials, the draw counter); resume_search() continues exactly as the uninterrupted
// search would.
//
// Thread safety: a Search is not thread-safe; callers running generations in parallel serialise
// their ask/tell calls (one mutex). Distinct Search objects are independent.
//
// Implemented in src/search/: tree.cpp (nodes, pending trials, top-k, the shared ask/tell
// bookkeeping), abmcts_a*.cpp, abmcts_m*.cpp, mcts.cpp, baselines.cpp, search_factory.cpp
// (names, parameters), checkpoint.cpp (JSON format).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace shoal {

constexpr int64_t kRootNode = 0;

// One generation to run: expand node `parent` (kRootNode: answer from scratch) with `action`.
struct Trial {
  int64_t id = -1;             // unique within a search: 0, 1, 2, ... in ask order
  int64_t parent = kRootNode;  // node whose state the generation refines
  int action = 0;              // in [0, n_actions): which model / prompt / strategy
};

// A node of the search tree, read-only for callers (Search::nodes()).
struct SearchNode {
  int64_t id = 0;       // kRootNode for the root; then 1, 2, ... in tell order
  int64_t parent = -1;  // -1 for the root
  int action = -1;      // action that generated it; -1 for the root
  int64_t trial = -1;   // the trial whose tell created it; -1 for the root
  int depth = 0;        // 0 for the root, 1 for answers from scratch, ...
  double score = 0.0;   // in [0, 1]; meaningless for the root (it has no score)
  std::string state;    // the answer text, opaque to the search; empty for the root
  nlohmann::json meta;  // opaque data given to tell() (feedback, tokens, cost); null if none
  std::vector<int64_t> children;  // node ids, in creation order
  int64_t visits = 0;             // scored nodes in this subtree, itself included (root: all nodes)
  int pending = 0;                // pending trials whose parent is this node
};

class Search {
 public:
  virtual ~Search() = default;

  // k >= 1 new trials (ConfigError otherwise). Always returns exactly k; each one becomes pending
  // before the next is chosen, so they spread out (pending-visit penalty).
  virtual std::vector<Trial> ask(int k = 1) = 0;

  // The result of a pending trial: adds a node under trial.parent and returns its id. Tells may
  // come in any order. Throws ConfigError, leaving the search unchanged, when the trial is not
  // pending (never asked, already told or cancelled, or its parent/action differ from what ask
  // returned) or when score is not a number in [0, 1].
  virtual int64_t tell(const Trial& trial, std::string state, double score,
                       nlohmann::json meta = nullptr) = 0;

  // Drops a pending trial whose generation failed, without adding a node (ConfigError when the
  // trial is not pending). Its pending-visit penalty is removed.
  virtual void cancel(const Trial& trial) = 0;

  // Trials asked and neither told nor cancelled, in ask order (after a resume: run them again).
  virtual std::vector<Trial> pending() const = 0;

  // Every node, indexed by id (nodes()[0] is the root). The span is invalidated by tell().
  virtual std::span<const SearchNode> nodes() const = 0;
  const SearchNode& node(int64_t id) const;  // ConfigError for an unknown id
  int64_t n_generations() const { return static_cast<int64_t>(nodes().size()) - 1; }

  // Ids of the k best-scored nodes (root excluded), best first; ties go to the earlier node.
  // Fewer than k when the tree is smaller.
  std::vector<int64_t> top_k(int k) const;

  // Everything needed to resume: the format is documented in docs/SEARCH.md. It also serves as a
  // complete description of the tree (nodes with state, score, meta, action, parent).
  virtual nlohmann::json checkpoint() const = 0;

  virtual std::string_view algorithm() const = 0;    // canonical name, e.g. "ab-mcts-a"
  virtual const nlohmann::json& params() const = 0;  // every parameter, defaults filled in
  virtual int n_actions() const = 0;
  virtual uint64_t seed() const = 0;
};

// What make_search needs. Parameters are per algorithm (docs/SEARCH.md lists them all):
//   "ab-mcts-a": distribution ("gaussian" | "beta"), model_selection ("thompson" | "ucb" |
//                "stack"), prior_means (one number per action, optional), gaussian_prior
//                ({m, kappa, nu, tau_sq}), beta_prior ({a, b}), pending_penalty (bool),
//                virtual_loss (the score a pending visit counts as, in [0, 1])
//   "ab-mcts-m": prior_mean, mu_sd, sigma_alpha_scale, sigma_y_scale, sigma_y_min, pruning
//                (bool), prune_min_obs, prune_fraction, pending_penalty, virtual_loss
//   "mcts":      exploration (UCT constant), samples_per_action, pending_penalty, virtual_loss
//   "repeated-sampling":     action ("round-robin" | "random" | an action index)
//   "sequential-refinement": action (as above), refine ("latest" | "best")
// Unknown keys, wrong types and out-of-range values are ConfigErrors naming the key.
struct SearchConfig {
  std::string algorithm = "ab-mcts-a";
  nlohmann::json params = nlohmann::json::object();
  int n_actions = 1;  // 1 to 65536
  uint64_t seed = 0;
};

// ConfigError for an unknown algorithm (the message lists the known ones), bad parameters or
// n_actions outside [1, 65536].
std::unique_ptr<Search> make_search(const SearchConfig& config);

// Rebuilds a search from checkpoint(); FormatError when the JSON is not a valid checkpoint.
std::unique_ptr<Search> resume_search(const nlohmann::json& checkpoint);

// The canonical algorithm names, in the order docs/SEARCH.md describes them.
std::vector<std::string> search_algorithms();

}  // namespace shoal
