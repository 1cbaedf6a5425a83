// Repeated sampling and sequential refinement: exact parents and actions.
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "search/tree_test_support.h"

namespace shoal {
namespace {

using nlohmann::json;

std::vector<int> actions_of(const std::vector<Trial>& trials) {
  std::vector<int> out;
  for (const Trial& t : trials) out.push_back(t.action);
  return out;
}

TEST(RepeatedSampling, AlwaysFromScratch) {
  auto rr = make_search({"repeated-sampling", json::object(), 3, 0});
  const std::vector<Trial> t = rr->ask(7);
  EXPECT_EQ(actions_of(t), (std::vector<int>{0, 1, 2, 0, 1, 2, 0}));
  for (size_t i = 0; i < t.size(); ++i) rr->tell(t[i], "x", 0.1 * static_cast<double>(i));
  for (const Trial& u : rr->ask(5)) EXPECT_EQ(u.parent, kRootNode);

  auto fixed = make_search({"repeated-sampling", {{"action", 2}}, 3, 0});
  EXPECT_EQ(actions_of(fixed->ask(3)), (std::vector<int>{2, 2, 2}));

  auto random = make_search({"repeated-sampling", {{"action", "random"}}, 3, 0});
  std::vector<int> counts(3, 0);
  for (int a : actions_of(random->ask(300))) ++counts[static_cast<size_t>(a)];
  for (int c : counts) EXPECT_GT(c, 60);
}

TEST(SequentialRefinement, RefinesTheLatestAnswer) {
  auto s = make_search({"sequential-refinement", json::object(), 2, 0});
  Trial t = s->ask(1)[0];
  EXPECT_EQ(t.parent, kRootNode);
  s->tell(t, "a", 0.8);
  t = s->ask(1)[0];
  EXPECT_EQ(t.parent, 1);
  EXPECT_EQ(t.action, 1);  // round robin by trial id
  s->tell(t, "b", 0.2);    // worse, but the latest
  t = s->ask(1)[0];
  EXPECT_EQ(t.parent, 2);
}

TEST(SequentialRefinement, RefinesTheBestAnswer) {
  auto s = test::search_with_tree("sequential-refinement", {{"refine", "best"}}, 1, 0,
                                  {{0, 0, 0.5}, {1, 0, 0.9}, {2, 0, 0.3}, {0, 0, 0.9}});
  EXPECT_EQ(s->ask(1)[0].parent, 2);  // 0.9, earliest of the two
  auto empty = make_search({"sequential-refinement", {{"refine", "best"}}, 1, 0});
  EXPECT_EQ(empty->ask(1)[0].parent, kRootNode);
}

}  // namespace
}  // namespace shoal
