// The population in memory (internal to the search layer): programs, islands with a MAP-Elites
// grid each, the elite archive, parent / inspiration selection, migration and the model bandit.
// It is a pure function of the programs and proposals added in order, so the run rebuilds it
// from the database on --resume. Not thread-safe (the run's coordinator owns it). Implemented in
// population_state.cpp; the rules are in docs/POPULATION.md.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "shoal/population.h"
#include "shoal/rng.h"

namespace shoal::search {

struct Program {
  int64_t id = 0;  // 1, 2, ... in insertion order
  int island = 0;
  int64_t parent = -1, parent2 = -1;  // -1: none
  std::string op;                     // initial, new, diff, rewrite, crossover, fix, migration
  std::string model;                  // empty for initial and migration
  std::string code;
  double score = 0;
  bool correct = false;
  bool eval_ok = true;  // false: the evaluator failed (crash, timeout, no JSON)
  nlohmann::json metrics = nlohmann::json::object();
  std::string feedback, out_tail, err_tail;
  int64_t proposal = -1;   // the proposal that made it (-1: initial)
  int64_t generation = 0;  // proposed programs before and including it
  int64_t run = 0;         // 1 for the first run of the folder, ...
  double created = 0;      // Unix time
  int64_t migrated_from = -1;
  double eval_s = 0;
  // Derived (rebuilt, not stored):
  int children = 0;
  int64_t cell = -1;  // its grid cell (-1: not placed: incorrect, or a descriptor is missing)
  std::vector<uint64_t> signature;
};

struct InsertOutcome {
  int64_t cell = -1;
  bool placed = false;     // it is now the elite of its cell
  int64_t displaced = -1;  // the elite it replaced
};

// Per-model statistics of finished proposals.
struct ModelStats {
  int64_t n = 0;
  double reward = 0;
  double cost = 0;
};

class PopulationState {
 public:
  PopulationState(PopulationParams params, size_t n_models);

  // Adds the next program (its id must be size() + 1): children counts, the island's grid (only
  // correct programs; a cell keeps the higher score, the incumbent on ties), the archive.
  InsertOutcome add(Program p);
  const Program& program(int64_t id) const { return programs_.at(static_cast<size_t>(id - 1)); }
  size_t size() const { return programs_.size(); }
  const std::vector<Program>& programs() const { return programs_; }

  // The grid cell of a program's descriptors; -1 when a metric is missing or not a number.
  int64_t cell_of(const Program& p) const;
  std::vector<int64_t> elites(int island) const;                    // program ids, ascending
  int64_t elite_at(int island, int64_t cell) const;                 // -1: empty
  const std::vector<int64_t>& archive() const { return archive_; }  // best first
  const std::vector<int64_t>& members(int island) const { return members_.at(island); }
  int64_t best() const;  // the best correct program (else the best at all; -1: none)

  // Fitness-weighted choice among the island's elites, each weight divided by 1 + penalty *
  // children; -1 when the island has no elite. `draw` is a uniform number in [0, 1).
  int64_t select_parent(int island, double draw) const;
  std::vector<double> selection_weights(const std::vector<int64_t>& ids) const;
  // The fix operator's parent: the island's best program (latest among equal scores); -1: none.
  int64_t fix_parent(int island) const;
  // A crossover partner from another cell: from another island with probability cross_island;
  // -1 when there is none.
  int64_t select_partner(int island, int64_t first, const CounterRng& rng, uint64_t& counter) const;
  // Up to k programs to show as inspirations: the archive's best first, then elites of other
  // cells of the island, never one of `exclude`.
  std::vector<int64_t> inspirations(int island, const std::vector<int64_t>& exclude, int k,
                                    const CounterRng& rng, uint64_t& counter) const;

  // The most similar program of the island (similarity 0 and -1 when it is empty).
  std::pair<double, int64_t> most_similar(int island, const std::vector<uint64_t>& sig) const;
  bool island_has_code(int island, const std::string& code) const;
  std::vector<uint64_t> signature(const std::string& code) const;

  // The copies a migration makes: (source program, target island). Each island sends its best
  // ceil(fraction x elites) elites (at least one) to the next island of the ring; a program
  // whose code the target already holds is skipped.
  std::vector<std::pair<int64_t, int>> migrations() const;

  // Bandit over models (UCB on rewards in [0, 1], minus a cost term); in-flight proposals count
  // as tries with reward 0 so that parallel choices spread.
  void record(size_t model, double reward, double cost);
  size_t choose_model(const std::vector<int>& in_flight) const;
  const std::vector<ModelStats>& model_stats() const { return stats_; }

  const PopulationParams& params() const { return params_; }

 private:
  void update_archive(int64_t id);

  PopulationParams params_;
  std::vector<Program> programs_;
  std::vector<std::unordered_map<int64_t, int64_t>> grids_;  // per island: cell -> program
  std::vector<std::vector<int64_t>> members_;                // per island, ascending
  std::vector<std::unordered_set<std::string>> codes_;       // per island
  std::vector<int64_t> archive_;
  std::vector<ModelStats> stats_;
};

// The bandit's reward for a child scored `child` from a parent scored `parent` (0 when there is
// none): the relative improvement, clipped to [0, 1]; 0 for an incorrect child.
double improvement_reward(double parent, bool child_correct, double child);

}  // namespace shoal::search
