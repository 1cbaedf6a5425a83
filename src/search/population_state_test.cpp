// The population's rules on constructed cases: MAP-Elites insertion (empty cell, better, worse,
// tie, clamping, missing metric, incorrect), cell numbering in 2-D, migration along the ring with
// duplicates skipped, fitness-weighted selection with the child penalty (against the formula
// written out here), the UCB model bandit and the improvement reward.
#include <gtest/gtest.h>

#include <cmath>

#include "search/population_state.h"

namespace shoal::search {
namespace {

PopulationParams grid_params(int islands) {
  PopulationParams p;
  p.islands = islands;
  p.grid = {{"m", 0, 10, 5}};  // bins of width 2
  p.novelty.enabled = false;
  return p;
}

Program prog(const PopulationState& s, int island, double m, double score, bool correct = true,
             const std::string& code = "") {
  Program p;
  p.id = static_cast<int64_t>(s.size()) + 1;
  p.island = island;
  p.score = score;
  p.correct = correct;
  p.code = code.empty() ? "code " + std::to_string(p.id) : code;
  if (!std::isnan(m)) p.metrics = {{"m", m}};
  return p;
}

TEST(MapElites, InsertionRules) {
  PopulationState s(grid_params(1), 1);
  InsertOutcome o = s.add(prog(s, 0, 1.0, 1.0));  // #1 -> cell 0, empty
  EXPECT_TRUE(o.placed);
  EXPECT_EQ(o.cell, 0);
  o = s.add(prog(s, 0, 1.5, 0.5));  // #2: same cell, worse: not placed
  EXPECT_FALSE(o.placed);
  EXPECT_EQ(s.elite_at(0, 0), 1);
  o = s.add(prog(s, 0, 1.9, 2.0));  // #3: better: replaces #1
  EXPECT_TRUE(o.placed);
  EXPECT_EQ(o.displaced, 1);
  EXPECT_EQ(s.elite_at(0, 0), 3);
  o = s.add(prog(s, 0, 0.1, 2.0));  // #4: a tie keeps the incumbent
  EXPECT_FALSE(o.placed);
  EXPECT_EQ(s.elite_at(0, 0), 3);
  o = s.add(prog(s, 0, -50, 0.1));  // #5: below min -> first bin (worse: not placed)
  EXPECT_EQ(o.cell, 0);
  o = s.add(prog(s, 0, 99, 0.1));  // #6: above max -> last bin
  EXPECT_EQ(o.cell, 4);
  EXPECT_TRUE(o.placed);
  o = s.add(prog(s, 0, 5.0, 9.0, false));  // #7: incorrect: never placed
  EXPECT_EQ(o.cell, -1);
  o = s.add(prog(s, 0, NAN, 9.0));  // #8: metric missing: not placed
  EXPECT_EQ(o.cell, -1);
  EXPECT_EQ(s.elites(0), (std::vector<int64_t>{3, 6}));
  // The archive: correct programs, best first, ties to the earlier one; #7 is incorrect.
  EXPECT_EQ(s.archive()[0], 8);
  EXPECT_EQ(s.archive()[1], 3);
  EXPECT_EQ(s.archive()[2], 4);
}

TEST(MapElites, TwoDimensionalCells) {
  PopulationParams p = grid_params(1);
  p.grid = {{"a", 0, 3, 3}, {"b", 0, 1, 4}};
  PopulationState s(p, 1);
  Program x;
  x.metrics = {{"a", 2.5}, {"b", 0.3}};  // bins 2 and 1 -> 2 * 4 + 1
  EXPECT_EQ(s.cell_of(x), 9);
  x.metrics = {{"a", 0}, {"b", 1.0}};  // b at max -> last bin
  EXPECT_EQ(s.cell_of(x), 3);
  x.metrics = {{"a", 1}, {"b", "text"}};
  EXPECT_EQ(s.cell_of(x), -1);
  p.grid = {{"code_length", 0, 100, 10}};
  PopulationState c(p, 1);
  x.code = std::string(35, 'x');
  EXPECT_EQ(c.cell_of(x), 3);
}

TEST(Migration, RingWithDuplicatesSkipped) {
  PopulationParams p = grid_params(3);
  p.migration_fraction = 0.5;
  PopulationState s(p, 1);
  s.add(prog(s, 0, 1, 3.0, true, "A"));  // #1 island 0, cell 0
  s.add(prog(s, 0, 3, 2.0, true, "B"));  // #2 island 0, cell 1
  s.add(prog(s, 0, 5, 1.0, true, "C"));  // #3 island 0, cell 2
  s.add(prog(s, 1, 1, 0.5, true, "A"));  // #4 island 1 already holds A's code
  s.add(prog(s, 1, 9, 0.7, true, "D"));  // #5 island 1
  // Island 0 sends ceil(0.5 * 3) = 2 best (A, B); A is on island 1 already.
  // Island 1 sends ceil(0.5 * 2) = 1 best (D, 0.7) to island 2. Island 2 has no elite.
  const auto m = s.migrations();
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0], std::make_pair(int64_t{2}, 1));
  EXPECT_EQ(m[1], std::make_pair(int64_t{5}, 2));
  p.islands = 1;
  PopulationState one(p, 1);
  one.add(prog(one, 0, 1, 1.0));
  EXPECT_TRUE(one.migrations().empty());
}

TEST(Selection, FitnessWeightsWithChildPenalty) {
  PopulationParams p = grid_params(1);
  p.selection_beta = 1;
  p.child_penalty = 1;
  PopulationState s(p, 1);
  s.add(prog(s, 0, 1, 1.0));     // #1
  s.add(prog(s, 0, 3, 2.0));     // #2
  s.add(prog(s, 0, 5, 3.0));     // #3
  for (int k = 0; k < 2; ++k) {  // two children of #3 (incorrect, so not in the grid)
    Program c = prog(s, 0, 7, 0, false);
    c.parent = 3;
    s.add(c);
  }
  // median 2; |deviations| 1, 0, 1 -> median 1 -> scale 1.4826.
  const auto sig = [](double z) { return 1 / (1 + std::exp(-z)); };
  const std::vector<double> w = s.selection_weights({1, 2, 3});
  EXPECT_NEAR(w[0], sig(-1 / 1.4826), 1e-12);
  EXPECT_NEAR(w[1], sig(0), 1e-12);
  EXPECT_NEAR(w[2], sig(1 / 1.4826) / 3, 1e-12);
  const double total = w[0] + w[1] + w[2];
  EXPECT_EQ(s.select_parent(0, 0.0), 1);
  EXPECT_EQ(s.select_parent(0, (w[0] + 0.5 * w[1]) / total), 2);
  EXPECT_EQ(s.select_parent(0, 0.999999), 3);
  EXPECT_EQ(s.fix_parent(0), 3);  // the best program of the island
}

TEST(Selection, PartnerAndInspirations) {
  PopulationParams p = grid_params(2);
  p.cross_island = 1.0;  // always from the other island when it has elites
  PopulationState s(p, 1);
  s.add(prog(s, 0, 1, 1.0, true, "A"));
  s.add(prog(s, 0, 3, 2.0, true, "B"));
  s.add(prog(s, 1, 1, 5.0, true, "C"));
  const CounterRng rng(7);
  uint64_t counter = 0;
  EXPECT_EQ(s.select_partner(0, 1, rng, counter), 3);
  p.cross_island = 0.0;  // same island, another cell
  PopulationState t(p, 1);
  t.add(prog(t, 0, 1, 1.0, true, "A"));
  t.add(prog(t, 0, 3, 2.0, true, "B"));
  EXPECT_EQ(t.select_partner(0, 1, rng, counter), 2);
  PopulationState lone(p, 1);
  lone.add(prog(lone, 0, 1, 1.0, true, "A"));
  EXPECT_EQ(lone.select_partner(0, 1, rng, counter), -1);
  // Inspirations: the archive's best (C) first, never a parent, no repeated code.
  const auto ins = s.inspirations(0, {1}, 2, rng, counter);
  ASSERT_EQ(ins.size(), 2u);
  EXPECT_EQ(ins[0], 3);
  EXPECT_EQ(ins[1], 2);
}

TEST(Bandit, UcbWithCostAndInFlight) {
  PopulationParams p = grid_params(1);
  p.bandit_exploration = 0.5;
  PopulationState s(p, 2);
  EXPECT_EQ(s.choose_model({0, 0}), 0u);  // untried first, in order
  EXPECT_EQ(s.choose_model({1, 0}), 1u);  // model 0 has one in flight
  for (int i = 0; i < 10; ++i) s.record(0, i % 2 == 0 ? 1.0 : 0.0, 1.0);
  for (int i = 0; i < 2; ++i) s.record(1, 0.0, 0.1);
  // 0: 0.5 + 0.5 sqrt(ln 12 / 10) = 0.749; 1: 0.5 sqrt(ln 12 / 2) = 0.557.
  EXPECT_EQ(s.choose_model({0, 0}), 0u);
  p.bandit_exploration = 2;  // 0: 1.497; 1: 2.229
  PopulationState t(p, 2);
  for (int i = 0; i < 10; ++i) t.record(0, i % 2 == 0 ? 1.0 : 0.0, 1.0);
  for (int i = 0; i < 2; ++i) t.record(1, 0.0, 0.1);
  EXPECT_EQ(t.choose_model({0, 0}), 1u);
  p.bandit_exploration = 0.5;
  p.bandit_cost_weight = 0.5;  // 0 pays 0.5 * 1 / 1: 0.249 < 0.557 - 0.5 * 0.1 = 0.507
  PopulationState c(p, 2);
  for (int i = 0; i < 10; ++i) c.record(0, i % 2 == 0 ? 1.0 : 0.0, 1.0);
  for (int i = 0; i < 2; ++i) c.record(1, 0.0, 0.1);
  EXPECT_EQ(c.choose_model({0, 0}), 1u);
}

TEST(Bandit, ImprovementReward) {
  EXPECT_DOUBLE_EQ(improvement_reward(2.0, true, 3.0), 0.5);
  EXPECT_DOUBLE_EQ(improvement_reward(2.0, true, 1.0), 0.0);
  EXPECT_DOUBLE_EQ(improvement_reward(2.0, false, 9.0), 0.0);
  EXPECT_DOUBLE_EQ(improvement_reward(0.0, true, 0.5), 1.0);
  EXPECT_DOUBLE_EQ(improvement_reward(-4.0, true, -2.0), 0.5);
}

}  // namespace
}  // namespace shoal::search
