// AB-MCTS-M decisions on constructed trees: leaves go GEN, GEN/CONT where the outcome is
// statistically certain, pruning (including its rounding), and action choice.
#include <map>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "search/abmcts_m.h"
#include "search/tree_test_support.h"

namespace shoal::search {
namespace {

using nlohmann::json;

AbMctsM& as_m(Search& s) {
  return dynamic_cast<AbMctsM&>(s);
}

TEST(AbMctsM, EmptyTreeAndLeavesGoGen) {
  auto s = make_search({"ab-mcts-m", json::object(), 2, 1});
  const Trial t = s->ask(1)[0];
  EXPECT_EQ(t.parent, kRootNode);
  s->tell(t, "a", 0.5);
  // Root -> n1: at the root, GEN or n1; at n1 (a leaf) always GEN.
  for (int i = 0; i < 50; ++i) {
    const Trial u = s->ask(1)[0];
    EXPECT_TRUE(u.parent == kRootNode || u.parent == 1);
    s->cancel(u);
  }
}

TEST(AbMctsM, GoesDeeperWhereDeeperPays) {
  // Root: n1 at 0.95 with 20 children scored 0.9-1.0 (the 0.95 bin holds < 75%, so no pruning),
  // and 20 leaves at 0.05: a new child of the root predicts ~0.1, n1's group ~0.95.
  std::vector<test::NodeSpec> tree = {{0, 0, 0.95}};
  for (int i = 0; i < 20; ++i) tree.push_back({0, 0, 0.05 + 0.001 * i});
  for (int i = 0; i < 20; ++i) tree.push_back({1, 0, 0.9 + 0.005 * i});
  auto s = test::search_with_tree("ab-mcts-m", json::object(), 1, 2, tree);
  int in_n1 = 0;
  for (int i = 0; i < 200; ++i) {
    const Trial t = s->ask(1)[0];
    in_n1 += t.parent == 1 || t.parent >= 22;
    s->cancel(t);
  }
  EXPECT_GE(in_n1, 196);
}

TEST(AbMctsM, GoesWiderWhereWiderPays) {
  // Root: 20 children around 0.9 and one (n1, 0.3) whose 20 children score ~0.05.
  std::vector<test::NodeSpec> tree = {{0, 0, 0.3}};
  for (int i = 0; i < 20; ++i) tree.push_back({0, 0, 0.85 + 0.005 * i});
  for (int i = 0; i < 20; ++i) tree.push_back({1, 0, 0.02 + 0.003 * i});
  auto s = test::search_with_tree("ab-mcts-m", json::object(), 1, 3, tree);
  int deep = 0;
  for (int i = 0; i < 200; ++i) {
    const Trial t = s->ask(1)[0];
    deep += t.parent == 1 || t.parent >= 22;
    s->cancel(t);
  }
  EXPECT_LE(deep, 4);
}

TEST(AbMctsM, PruningSkipsSubtreesStuckOnOneScore) {
  // n1 (0.9) has four children all at 0.9: five identical scores, pruned. n2, n3 are weak.
  const std::vector<test::NodeSpec> tree = {{0, 0, 0.9}, {0, 0, 0.3}, {0, 0, 0.35}, {1, 0, 0.9},
                                            {1, 0, 0.9}, {1, 0, 0.9}, {1, 0, 0.9}};
  for (bool pruning : {true, false}) {
    auto s = test::search_with_tree("ab-mcts-m", {{"pruning", pruning}}, 1, 4, tree);
    EXPECT_EQ(as_m(*s).pruned(1), pruning);
    EXPECT_FALSE(as_m(*s).pruned(2));
    int in_n1 = 0;
    for (int i = 0; i < 200; ++i) {
      const Trial t = s->ask(1)[0];
      in_n1 += t.parent == 1 || t.parent >= 4;
      s->cancel(t);
    }
    if (pruning) {
      EXPECT_EQ(in_n1, 0);
    } else {
      EXPECT_GT(in_n1, 100);
    }
  }
}

TEST(AbMctsM, PruningRuleAndRounding) {
  // Bins are round(100 r) with halves to even (Python's round): 0.125 -> 12, like 0.12.
  // n1's subtree {0.125, 0.12, 0.12, 0.13}: bins 12, 12, 12, 13 -> 3/4 >= 0.75 -> pruned.
  // n2's subtree {0.2, 0.2, 0.2}: all equal but only 3 scores (< 4) -> not pruned.
  // n3's subtree {0.5, 0.5, 0.6, 0.7}: 2/4 -> not pruned.
  const std::vector<test::NodeSpec> tree = {{0, 0, 0.125}, {0, 0, 0.2},  {0, 0, 0.5}, {1, 0, 0.12},
                                            {1, 0, 0.12},  {1, 0, 0.13}, {2, 0, 0.2}, {2, 0, 0.2},
                                            {3, 0, 0.5},   {3, 0, 0.6},  {3, 0, 0.7}};
  auto s = test::search_with_tree("ab-mcts-m", json::object(), 1, 5, tree);
  EXPECT_TRUE(as_m(*s).pruned(1));
  EXPECT_FALSE(as_m(*s).pruned(2));
  EXPECT_FALSE(as_m(*s).pruned(3));
  auto strict = test::search_with_tree("ab-mcts-m", {{"prune_fraction", 0.8}}, 1, 5, tree);
  EXPECT_FALSE(as_m(*strict).pruned(1));
}

TEST(AbMctsM, AllChildrenPrunedMeansGen) {
  std::vector<test::NodeSpec> tree = {{0, 0, 0.9}};
  for (int i = 0; i < 4; ++i) tree.push_back({1, 0, 0.9});
  auto s = test::search_with_tree("ab-mcts-m", json::object(), 2, 6, tree);
  for (int i = 0; i < 50; ++i) {
    const Trial t = s->ask(1)[0];
    ASSERT_EQ(t.parent, kRootNode);
    s->cancel(t);
  }
}

TEST(AbMctsM, ActionModelPrefersTheActionThatScores) {
  // Over the whole tree, action 1 scored ~0.9 and action 0 ~0.1 (ten scores each).
  std::vector<test::NodeSpec> tree;
  for (int i = 0; i < 10; ++i) tree.push_back({0, 0, 0.1 + 0.01 * i});
  for (int i = 0; i < 10; ++i) tree.push_back({0, 1, 0.85 + 0.01 * i});
  auto s = test::search_with_tree("ab-mcts-m", json::object(), 2, 7, tree);
  std::map<int, int> count;
  for (int i = 0; i < 200; ++i) {
    const Trial t = s->ask(1)[0];
    ++count[t.action];
    s->cancel(t);
  }
  EXPECT_GE(count[1], 196);
  // An action never tried is predicted like a new group, drawn from the population of actions.
  auto three = test::search_with_tree("ab-mcts-m", json::object(), 3, 7, tree);
  int untried = 0;
  for (int i = 0; i < 400; ++i) {
    const Trial t = three->ask(1)[0];
    untried += t.action == 2;
    three->cancel(t);
  }
  EXPECT_GT(untried, 10);
  EXPECT_LT(untried, 300);
}

TEST(AbMctsM, PendingPenaltySpreadsAsks) {
  // A tree where one subtree leads. Without the penalty the 8 trials of one ask are independent
  // draws and often refine the same answer several times; with it (each pending trial counts as
  // a 0 until told) an answer that just received a trial loses appeal. Measured: how many
  // trials of the batch repeat a refinement target (a non-root parent) already in the batch.
  std::vector<test::NodeSpec> tree;
  for (int i = 0; i < 4; ++i) tree.push_back({0, 0, 0.5 + 0.1 * i});
  for (int i = 0; i < 6; ++i) tree.push_back({4, 0, 0.85 + 0.02 * i});
  double repeats_with = 0, repeats_without = 0;
  constexpr int kSeeds = 150;
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    for (bool penalty : {true, false}) {
      auto s = test::search_with_tree("ab-mcts-m", {{"pending_penalty", penalty}}, 1, seed, tree);
      std::set<int64_t> seen;
      int repeats = 0;
      for (const Trial& t : s->ask(8)) {
        if (t.parent != kRootNode) repeats += !seen.insert(t.parent).second;
      }
      (penalty ? repeats_with : repeats_without) += repeats / double(kSeeds);
    }
  }
  EXPECT_LT(repeats_with, repeats_without - 0.25);
}

}  // namespace
}  // namespace shoal::search
