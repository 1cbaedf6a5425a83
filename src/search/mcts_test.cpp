// Standard MCTS (UCT): expansion slots, UCT descent and the virtual loss, with every choice
// computed by hand.
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "search/tree_test_support.h"

namespace shoal {
namespace {

using nlohmann::json;

std::vector<std::pair<int64_t, int>> targets(const std::vector<Trial>& trials) {
  std::vector<std::pair<int64_t, int>> out;
  for (const Trial& t : trials) out.emplace_back(t.parent, t.action);
  return out;
}

TEST(Mcts, FillsSlotsRoundRobinThenWidens) {
  // Two actions, two samples each: the root takes four trials, actions 0, 1, 0, 1; a fifth
  // while all four are pending and none told widens the root.
  auto s = make_search({"mcts", json::object(), 2, 0});
  EXPECT_EQ(targets(s->ask(5)),
            (std::vector<std::pair<int64_t, int>>{{0, 0}, {0, 1}, {0, 0}, {0, 1}, {0, 0}}));
}

// Root children n1..n4 scored 0.9, 0.5, 0.2, 0.3: the root's four slots are full.
const std::vector<test::NodeSpec> kTree = {{0, 0, 0.9}, {0, 1, 0.5}, {0, 0, 0.2}, {0, 1, 0.3}};

TEST(Mcts, UctWithVirtualLoss) {
  // 1st: N = 4, every child n = 1, equal bonus sqrt(2 ln 4): n1 (0.9) wins; it has no child,
  //      so it is expanded with action 0.
  // 2nd: n1 = {0.9, 0} -> 0.45 + sqrt(2) sqrt(ln 5 / 2) = 1.719; n2 = 0.5 + sqrt(2 ln 5) = 2.294
  //      beats n3 (2.094) and n4 (2.194): expand n2, action 0.
  // 3rd: N = 6: n1 = 0.45 + sqrt(ln 6) = 1.789, n2 = 0.25 + 1.339 = 1.589,
  //      n3 = 0.2 + sqrt(2 ln 6) = 2.093, n4 = 0.3 + 1.893 = 2.193: expand n4, action 0.
  auto s = test::search_with_tree("mcts", json::object(), 2, 0, kTree);
  EXPECT_EQ(targets(s->ask(3)), (std::vector<std::pair<int64_t, int>>{{1, 0}, {2, 0}, {4, 0}}));
}

TEST(Mcts, WithoutVirtualLossTheBatchFillsOneNode) {
  // Root statistics do not move, so UCT keeps choosing n1, whose slots fill in action order.
  auto s = test::search_with_tree("mcts", {{"pending_penalty", false}}, 2, 0, kTree);
  EXPECT_EQ(targets(s->ask(3)), (std::vector<std::pair<int64_t, int>>{{1, 0}, {1, 1}, {1, 0}}));
}

TEST(Mcts, DescendsBelowFullNodes) {
  // n1 also has its four children n5..n8 (0.9, 0.95, 0.9, 0.9); exploration c = 0.1.
  // Root, N = 8: n1 = 0.91 + 0.1 sqrt(ln 8 / 5) = 0.974; n2 = 0.5 + 0.1 sqrt(ln 8) = 0.644;
  // n3, n4 lower -> n1, whose slots are full. In n1, N = 5, every child n = 1: n6 (0.95) wins
  // and, a leaf, is expanded with action 0.
  std::vector<test::NodeSpec> tree = kTree;
  for (double x : {0.9, 0.95, 0.9, 0.9}) tree.push_back({1, 0, x});
  auto s = test::search_with_tree("mcts", {{"exploration", 0.1}}, 2, 0, tree);
  EXPECT_EQ(targets(s->ask(1)), (std::vector<std::pair<int64_t, int>>{{6, 0}}));
}

}  // namespace
}  // namespace shoal
