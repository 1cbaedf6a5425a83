// The ask/tell contract every algorithm shares: validation, any tell order, determinism for a
// seed, checkpoint/resume in the middle of a search with trials pending.
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "search/tree_test_support.h"
#include "shoal/error.h"
#include "shoal/search.h"

namespace shoal {
namespace {

using nlohmann::json;

struct Variant {
  std::string algorithm;
  json params;
};

std::vector<Variant> variants() {
  return {
      {"ab-mcts-a", json::object()},
      {"ab-mcts-a", {{"distribution", "beta"}, {"model_selection", "ucb"}}},
      {"ab-mcts-a", {{"model_selection", "stack"}, {"prior_means", {0.2, 0.5, 0.8}}}},
      {"ab-mcts-a", {{"pending_penalty", false}}},
      {"ab-mcts-m", json::object()},
      {"ab-mcts-m", {{"model_selection", "ucb"}, {"pruning", false}}},
      {"mcts", json::object()},
      {"repeated-sampling", {{"action", "random"}}},
      {"sequential-refinement", {{"refine", "best"}}},
      {"sequential-refinement", {{"action", 1}}},
  };
}

std::string name_of(const Variant& v) {
  return v.algorithm + " " + v.params.dump();
}

// A generation as the test sees it: refines its parent's score up or down by a trial-dependent
// amount, so the trees the algorithms grow are not trivial.
double generate(const Search& s, const Trial& t) {
  const double base = t.parent == kRootNode ? 0.3 : s.node(t.parent).score;
  const double step = test::fake_score(t) - 0.45;
  return std::clamp(base + 0.4 * step + 0.05 * t.action, 0.0, 1.0);
}

// One step of a fixed schedule: ask 1-3 trials, tell one or two pending ones picked by index
// (not in ask order), cancel one now and then. Returns what was asked.
std::vector<Trial> step(Search& s, int i) {
  std::vector<Trial> asked = s.ask(1 + i % 3);
  for (int r = 0; r < 1 + (i % 2); ++r) {
    const std::vector<Trial> p = s.pending();
    if (p.empty()) break;
    const Trial& t = p[static_cast<size_t>(i * 7 + r) % p.size()];
    if (i % 9 == 4) {
      s.cancel(t);
    } else {
      s.tell(t, "answer of trial " + std::to_string(t.id), generate(s, t), json{{"feedback", i}});
    }
  }
  return asked;
}

void expect_same_trials(const std::vector<Trial>& a, const std::vector<Trial>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].id, b[i].id);
    EXPECT_EQ(a[i].parent, b[i].parent);
    EXPECT_EQ(a[i].action, b[i].action);
  }
}

TEST(Search, RejectsScoresOutsideUnitInterval) {
  for (const Variant& v : variants()) {
    SCOPED_TRACE(name_of(v));
    auto s = make_search({v.algorithm, v.params, 3, 1});
    const Trial t = s->ask(1)[0];
    const json before = s->checkpoint();
    for (double bad : {-0.001, 1.0000001, 2.0, std::numeric_limits<double>::quiet_NaN(),
                       std::numeric_limits<double>::infinity()}) {
      EXPECT_THROW(s->tell(t, "x", bad), ConfigError);
    }
    EXPECT_EQ(s->checkpoint(), before);  // unchanged, trial still pending
    EXPECT_EQ(s->tell(t, "x", 1.0), 1);
    EXPECT_EQ(s->node(1).score, 1.0);
  }
}

TEST(Search, RejectsTrialsThatAreNotPending) {
  auto s = make_search({"ab-mcts-a", json::object(), 2, 1});
  const std::vector<Trial> t = s->ask(2);
  s->tell(t[1], "b", 0.5);
  EXPECT_THROW(s->tell(t[1], "b", 0.5), ConfigError);  // told twice
  Trial never;
  never.id = 99;
  EXPECT_THROW(s->tell(never, "x", 0.5), ConfigError);
  Trial wrong = t[0];
  wrong.action = 1 - wrong.action;
  EXPECT_THROW(s->tell(wrong, "x", 0.5), ConfigError);
  s->cancel(t[0]);
  EXPECT_THROW(s->cancel(t[0]), ConfigError);
  EXPECT_THROW(s->ask(0), ConfigError);
  EXPECT_TRUE(s->pending().empty());
  EXPECT_EQ(s->n_generations(), 1);
}

TEST(Search, TreeBookkeepingWithTellsInAnyOrder) {
  for (const Variant& v : variants()) {
    SCOPED_TRACE(name_of(v));
    auto s = make_search({v.algorithm, v.params, 3, 5});
    std::vector<Trial> t = s->ask(5);
    for (size_t i = 0; i < t.size(); ++i) EXPECT_EQ(t[i].id, static_cast<int64_t>(i));
    EXPECT_EQ(s->node(kRootNode).pending, 5);
    // Tell in reverse order: nodes are numbered in tell order.
    for (int i = 4; i >= 0; --i) {
      const int64_t id = s->tell(t[static_cast<size_t>(i)], "s" + std::to_string(i), 0.1 * i);
      EXPECT_EQ(id, 5 - i);
      EXPECT_EQ(s->node(id).trial, i);
      EXPECT_EQ(s->node(id).depth, 1);
      EXPECT_EQ(s->node(id).state, "s" + std::to_string(i));
    }
    EXPECT_EQ(s->node(kRootNode).pending, 0);
    EXPECT_EQ(s->node(kRootNode).visits, 5);
    EXPECT_EQ(s->node(kRootNode).children, (std::vector<int64_t>{1, 2, 3, 4, 5}));
    EXPECT_EQ(s->top_k(2), (std::vector<int64_t>{1, 2}));  // scores 0.4, 0.3
    for (int i = 0; i < 30; ++i) step(*s, i);
    // visits = size of each subtree, by a direct count.
    std::vector<int64_t> count(s->nodes().size(), 0);
    for (const SearchNode& n : s->nodes()) {
      if (n.id == kRootNode) continue;
      for (int64_t c = n.id; c >= 0; c = s->node(c).parent) ++count[static_cast<size_t>(c)];
      EXPECT_EQ(n.depth, s->node(n.parent).depth + 1);
    }
    for (const SearchNode& n : s->nodes()) EXPECT_EQ(n.visits, count[static_cast<size_t>(n.id)]);
  }
}

TEST(Search, TopKBreaksTiesByAge) {
  auto s = test::search_with_tree("repeated-sampling", json::object(), 1, 0,
                                  {{0, 0, 0.5}, {0, 0, 0.9}, {0, 0, 0.5}, {2, 0, 0.9}});
  EXPECT_EQ(s->top_k(10), (std::vector<int64_t>{2, 4, 1, 3}));
  EXPECT_EQ(s->top_k(1), (std::vector<int64_t>{2}));
  EXPECT_TRUE(s->top_k(0).empty());
}

TEST(Search, SameSeedAndTellOrderGiveTheSameSearch) {
  for (const Variant& v : variants()) {
    SCOPED_TRACE(name_of(v));
    auto a = make_search({v.algorithm, v.params, 3, 42});
    auto b = make_search({v.algorithm, v.params, 3, 42});
    auto c = make_search({v.algorithm, v.params, 3, 43});
    bool differs = false;
    for (int i = 0; i < 40; ++i) {
      const std::vector<Trial> ta = step(*a, i), tb = step(*b, i), tc = step(*c, i);
      expect_same_trials(ta, tb);
      for (size_t j = 0; j < ta.size(); ++j) {
        differs = differs || ta[j].parent != tc[j].parent || ta[j].action != tc[j].action;
      }
    }
    EXPECT_EQ(a->checkpoint(), b->checkpoint());
    const bool random = v.algorithm.starts_with("ab-mcts") || v.params.contains("action");
    if (random && v.params.value("action", json()) != 1) {
      EXPECT_TRUE(differs);
    }
  }
}

TEST(Search, ResumeInTheMiddleContinuesIdentically) {
  for (const Variant& v : variants()) {
    SCOPED_TRACE(name_of(v));
    auto live = make_search({v.algorithm, v.params, 3, 9});
    for (int i = 0; i < 37; ++i) step(*live, i);
    ASSERT_FALSE(live->pending().empty());  // trials outstanding at the checkpoint
    const json cp = live->checkpoint();
    auto resumed = resume_search(json::parse(cp.dump()));  // through text, as on disk
    EXPECT_EQ(resumed->checkpoint(), cp);
    EXPECT_EQ(resumed->algorithm(), v.algorithm);
    EXPECT_EQ(resumed->params(), live->params());
    for (int i = 37; i < 80; ++i) {
      expect_same_trials(step(*live, i), step(*resumed, i));
      if (i == 60) {  // and a resume of the resumed search
        resumed = resume_search(resumed->checkpoint());
      }
    }
    EXPECT_EQ(live->checkpoint(), resumed->checkpoint());
  }
}

TEST(Search, CheckpointKeepsStateAndMeta) {
  auto s = make_search({"mcts", json::object(), 2, 3});
  const Trial t = s->ask(1)[0];
  s->tell(t, "line one\nline \"two\" \xc3\xa9", 0.1 + 0.2, json{{"feedback", "ok"}, {"cost", 0.5}});
  const auto r = resume_search(json::parse(s->checkpoint().dump()));
  EXPECT_EQ(r->node(1).state, "line one\nline \"two\" \xc3\xa9");
  EXPECT_EQ(r->node(1).score, 0.1 + 0.2);  // the exact double survives
  EXPECT_EQ(r->node(1).meta, (json{{"feedback", "ok"}, {"cost", 0.5}}));
}

TEST(Search, BadCheckpointsAreFormatErrors) {
  auto s = make_search({"ab-mcts-a", json::object(), 2, 3});
  for (int i = 0; i < 5; ++i) step(*s, i);
  const json good = s->checkpoint();
  EXPECT_NO_THROW(resume_search(good));
  auto broken = [&](auto edit) {
    json cp = good;
    edit(cp);
    return cp;
  };
  EXPECT_THROW(resume_search(json::array()), FormatError);
  EXPECT_THROW(resume_search(broken([](json& c) { c["format"] = "pickle"; })), FormatError);
  EXPECT_THROW(resume_search(broken([](json& c) { c["version"] = 2; })), FormatError);
  EXPECT_THROW(resume_search(broken([](json& c) { c["algorithm"] = "x"; })), FormatError);
  EXPECT_THROW(resume_search(broken([](json& c) { c["params"]["bogus"] = 1; })), FormatError);
  EXPECT_THROW(resume_search(broken([](json& c) { c["nodes"][0]["score"] = 1.5; })), FormatError);
  EXPECT_THROW(resume_search(broken([](json& c) { c["nodes"][0]["parent"] = 7; })), FormatError);
  EXPECT_THROW(resume_search(broken([](json& c) { c["nodes"][0]["action"] = 2; })), FormatError);
  EXPECT_THROW(resume_search(broken([](json& c) { c["nodes"][0].erase("state"); })), FormatError);
  EXPECT_THROW(resume_search(broken([](json& c) { c["pending"].push_back(c["pending"][0]); })),
               FormatError);
  EXPECT_THROW(resume_search(broken([](json& c) { c["rng_counter"] = -1; })), FormatError);
}

TEST(Search, FactoryRejectsBadConfigs) {
  EXPECT_THROW(make_search({"ab-mcts-z", json::object(), 2, 0}), ConfigError);
  EXPECT_THROW(make_search({"ab-mcts-a", json::object(), 0, 0}), ConfigError);
  EXPECT_THROW(make_search({"ab-mcts-a", json::array(), 2, 0}), ConfigError);
  const std::vector<std::pair<std::string, json>> bad = {
      {"ab-mcts-a", {{"temperature", 1}}},
      {"ab-mcts-a", {{"distribution", "normal"}}},
      {"ab-mcts-a", {{"virtual_loss", 1.5}}},
      {"ab-mcts-a", {{"prior_means", {0.5}}}},
      {"ab-mcts-a", {{"distribution", "beta"}, {"prior_means", {0.0, 0.5}}}},
      {"ab-mcts-a", {{"gaussian_prior", {{"kappa", 0}}}}},
      {"ab-mcts-a", {{"gaussian_prior", {{"lambda", 1}}}}},
      {"ab-mcts-a", {{"pending_penalty", "yes"}}},
      {"ab-mcts-m", {{"model_selection", "stack"}}},
      {"ab-mcts-m", {{"prune_min_obs", 0}}},
      {"ab-mcts-m", {{"sigma_y_min", 0}}},
      {"mcts", {{"samples_per_action", 1.5}}},
      {"repeated-sampling", {{"action", 2}}},
      {"repeated-sampling", {{"action", "best"}}},
      {"sequential-refinement", {{"refine", "worst"}}},
  };
  for (const auto& [algorithm, params] : bad) {
    SCOPED_TRACE(algorithm + " " + params.dump());
    EXPECT_THROW(make_search({algorithm, params, 2, 0}), ConfigError);
  }
  try {
    make_search({"ab-mcts-a", {{"temprature", 1}}, 2, 0});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown key 'temprature'"), std::string::npos);
  }
  const auto s = make_search({"ab-mcts-a", json::object(), 2, 0});
  EXPECT_EQ(s->params().at("distribution"), "gaussian");
  EXPECT_EQ(s->params().at("gaussian_prior").at("tau_sq"), 0.1);
  EXPECT_EQ(search_algorithms().size(), 5u);
}

}  // namespace
}  // namespace shoal
