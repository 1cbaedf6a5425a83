// What every optimiser promises: the same seed gives the same run; save() -> JSON text ->
// load_optimizer() continues bit-identically, also between ask() and tell() and across IPOP
// restarts; bad input is a clear error. Plus the genetic algorithm's own behaviour.
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "evolve/test_functions.h"
#include "shoal/error.h"
#include "shoal/optimizer.h"

namespace shoal {
namespace {

using nlohmann::json;
using Population = std::vector<std::vector<double>>;
using test_functions::rosenbrock;
using test_functions::sphere;

OptimizerOptions options(OptimizerKind kind, int n, uint64_t seed) {
  OptimizerOptions o;
  o.kind = kind;
  o.dimension = n;
  o.x0.assign(n, 0.2);
  o.sigma0 = 0.3;
  o.seed = seed;
  return o;
}

std::vector<double> evaluate(const Population& pop) {
  std::vector<double> f;
  for (const auto& x : pop) f.push_back(rosenbrock(x));
  return f;
}

// Bitwise equality, so -0.0 vs 0.0 or a last-bit difference shows up.
bool same_bits(const Population& a, const Population& b) {
  if (a.size() != b.size()) return false;
  for (size_t k = 0; k < a.size(); ++k) {
    if (a[k].size() != b[k].size()) return false;
    if (std::memcmp(a[k].data(), b[k].data(), a[k].size() * sizeof(double)) != 0) return false;
  }
  return true;
}

Population run(Optimizer& opt, int generations) {
  Population last;
  for (int g = 0; g < generations; ++g) {
    last = opt.ask();
    opt.tell(evaluate(last));
  }
  return last;
}

const OptimizerKind kKinds[] = {OptimizerKind::kCmaEs, OptimizerKind::kSepCmaEs,
                                OptimizerKind::kGenetic};

TEST(Optimizer, SameSeedSameRunOtherSeedOtherRun) {
  for (OptimizerKind kind : kKinds) {
    auto a = make_optimizer(options(kind, 6, 42));
    auto b = make_optimizer(options(kind, 6, 42));
    auto c = make_optimizer(options(kind, 6, 43));
    EXPECT_TRUE(same_bits(run(*a, 30), run(*b, 30))) << optimizer_kind_name(kind);
    EXPECT_EQ(a->save(), b->save());
    run(*c, 30);
    EXPECT_FALSE(same_bits(a->ask(), c->ask())) << optimizer_kind_name(kind);
  }
}

TEST(Optimizer, AskTwiceReturnsTheSamePopulation) {
  for (OptimizerKind kind : kKinds) {
    auto a = make_optimizer(options(kind, 3, 1));
    const Population first = a->ask();
    EXPECT_TRUE(same_bits(first, a->ask()));
  }
}

// Saves after `split` generations (optionally after an extra ask), reloads from the JSON text and
// checks that both continue identically to the end.
void check_resume(OptimizerOptions o, int split, int total, bool mid_generation) {
  auto whole = make_optimizer(o);
  auto first = make_optimizer(o);
  run(*first, split);
  if (mid_generation) first->ask();
  const std::string text = first->save().dump();
  auto resumed = load_optimizer(json::parse(text));
  EXPECT_EQ(resumed->save(), first->save());
  run(*whole, split);
  for (int g = split; g < total; ++g) {
    const Population expected = whole->ask();
    ASSERT_TRUE(same_bits(expected, resumed->ask())) << "generation " << g;
    whole->tell(evaluate(expected));
    resumed->tell(evaluate(expected));
  }
  EXPECT_EQ(whole->save(), resumed->save());
  EXPECT_EQ(whole->best_fitness(), resumed->best_fitness());
  EXPECT_EQ(whole->restarts(), resumed->restarts());
}

TEST(Optimizer, ResumeFromJsonContinuesBitIdentically) {
  for (OptimizerKind kind : kKinds) {
    SCOPED_TRACE(optimizer_kind_name(kind));
    check_resume(options(kind, 5, 9), 17, 60, false);
    check_resume(options(kind, 5, 9), 17, 60, true);
    OptimizerOptions bounded = options(kind, 5, 4);
    bounded.lower.assign(5, -0.5);
    bounded.upper.assign(5, 0.5);
    bounded.bounds = BoundsMode::kResample;
    check_resume(bounded, 9, 30, true);
  }
}

TEST(Optimizer, ResumeAcrossIpopRestarts) {
  OptimizerOptions o = options(OptimizerKind::kCmaEs, 3, 5);
  o.tol_fun = 1e-3;  // stop early and often
  o.max_restarts = 3;
  o.lower.assign(3, -2.0);
  o.upper.assign(3, 2.0);
  auto probe = make_optimizer(o);
  int restart_generation = -1;
  for (int g = 0; g < 400 && restart_generation < 0; ++g) {
    run(*probe, 1);
    if (probe->restarts() == 1) restart_generation = g;
  }
  ASSERT_GT(restart_generation, 0) << "no restart happened";
  check_resume(o, restart_generation - 1, restart_generation + 40, false);
  check_resume(o, restart_generation + 1, restart_generation + 40, true);
}

TEST(Optimizer, NonFiniteValuesSurviveTheJsonRoundTrip) {
  auto a = make_optimizer(options(OptimizerKind::kCmaEs, 2, 1));
  EXPECT_EQ(a->best_fitness(), INFINITY);
  auto b = load_optimizer(json::parse(a->save().dump()));
  EXPECT_EQ(b->best_fitness(), INFINITY);
}

TEST(Optimizer, InvalidInputIsAClearError) {
  OptimizerOptions o = options(OptimizerKind::kCmaEs, 3, 1);
  o.dimension = 0;
  o.x0.clear();
  EXPECT_THROW(make_optimizer(o), ConfigError);
  try {
    make_optimizer(o);
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "optimizer: dimension must be at least 1, got 0");
  }
  auto bad = [](std::function<void(OptimizerOptions&)> change) {
    OptimizerOptions x = options(OptimizerKind::kCmaEs, 3, 1);
    change(x);
    EXPECT_THROW(make_optimizer(x), ConfigError);
  };
  bad([](auto& x) { x.x0.assign(4, 0.0); });
  bad([](auto& x) { x.sigma0 = 0; });
  bad([](auto& x) { x.sigma0 = NAN; });
  bad([](auto& x) { x.population = 1; });
  bad([](auto& x) { x.lower.assign(3, 0.0); });  // upper missing
  bad([](auto& x) { x.lower.assign(3, 1.0), x.upper.assign(3, 1.0); });
  bad([](auto& x) { x.lower.assign(3, 0.5), x.upper.assign(3, 1.0); });  // x0 = 0.2 outside
  bad([](auto& x) { x.kind = OptimizerKind::kGenetic, x.elites = x.population = 4; });

  for (OptimizerKind kind : kKinds) {
    auto opt = make_optimizer(options(kind, 3, 1));
    EXPECT_THROW(opt->tell({1, 2, 3}), ConfigError);  // nothing asked yet
    const size_t n = opt->ask().size();
    EXPECT_THROW(opt->tell(std::vector<double>(n - 1, 1.0)), ConfigError);
    std::vector<double> f(n, 1.0);
    f[1] = NAN;
    try {
      opt->tell(f);
      ADD_FAILURE() << "NaN accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("fitness 1 is NaN"), std::string::npos) << e.what();
    }
    f[1] = 2.0;
    EXPECT_NO_THROW(opt->tell(f));  // the failed calls changed nothing
    EXPECT_EQ(opt->evaluations(), static_cast<int64_t>(n));
  }
}

TEST(Optimizer, CorruptOrForeignStateIsAFormatError) {
  const json good = make_optimizer(options(OptimizerKind::kCmaEs, 3, 1))->save();
  EXPECT_NO_THROW(load_optimizer(good));
  auto broken = [&](std::function<void(json&)> change) {
    json j = good;
    change(j);
    EXPECT_THROW(load_optimizer(j), FormatError) << j.dump().substr(0, 200);
  };
  broken([](json& j) { j = json::array(); });
  broken([](json& j) { j["format"] = "something-else"; });
  broken([](json& j) { j["version"] = 2; });
  broken([](json& j) { j.erase("mean"); });
  broken([](json& j) { j["mean"] = json::array({1, 2}); });
  broken([](json& j) { j["C"][1] = "x"; });
  broken([](json& j) { j["sigma"] = -1; });
  broken([](json& j) { j["asked"] = 3; });
  broken([](json& j) { j["options"]["colour"] = "blue"; });
  broken([](json& j) { j["options"]["kind"] = "annealing"; });
  broken([](json& j) { j["options"]["dimension"] = 0; });
  const json ga = make_optimizer(options(OptimizerKind::kGenetic, 3, 1))->save();
  json g = ga;
  g["generation"] = 5;  // claims progress but has no parents
  EXPECT_THROW(load_optimizer(g), FormatError);
}

TEST(Optimizer, OptionsRoundTripThroughJson) {
  OptimizerOptions o = options(OptimizerKind::kSepCmaEs, 4, 77);
  o.lower = {-1, -2, -3, -4};
  o.upper = {1, 2, 3, 4};
  o.bounds = BoundsMode::kResample;
  o.max_restarts = 2;
  const OptimizerOptions back = options_from_json(options_to_json(o));
  EXPECT_EQ(options_to_json(back), options_to_json(o));
  EXPECT_EQ(back.seed, 77u);
}

TEST(Genetic, ElitismKeepsTheBestAndTheRunImproves) {
  OptimizerOptions o = options(OptimizerKind::kGenetic, 5, 3);
  o.x0.assign(5, 1.0);
  o.elites = 2;
  auto ga = make_optimizer(o);
  EXPECT_EQ(ga->population(), 20);
  const Population first = ga->ask();
  EXPECT_TRUE(same_bits({first[0]}, {o.x0}));  // the start point itself is a candidate
  double previous_best = INFINITY;
  for (int g = 0; g < 400; ++g) {
    const Population pop = ga->ask();
    std::vector<double> f;
    for (const auto& x : pop) f.push_back(sphere(x));
    ga->tell(f);
    EXPECT_LE(ga->best_fitness(), previous_best);
    previous_best = ga->best_fitness();
    // The next population starts with the two best of this one, unchanged.
    std::vector<size_t> order(pop.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return f[a] < f[b]; });
    const Population next = ga->ask();
    ASSERT_TRUE(same_bits({next[0], next[1]}, {pop[order[0]], pop[order[1]]})) << g;
  }
  EXPECT_LT(ga->best_fitness(), 1e-2);  // 5 at the start
}

TEST(Genetic, CandidatesStayInTheBox) {
  OptimizerOptions o = options(OptimizerKind::kGenetic, 4, 8);
  o.lower.assign(4, 0.0);
  o.upper.assign(4, 0.25);
  o.sigma0 = 1.0;  // large steps: most children need folding
  o.mutation_rate = 1.0;
  auto ga = make_optimizer(o);
  for (int g = 0; g < 30; ++g) {
    const Population pop = ga->ask();
    for (const auto& x : pop) {
      for (double v : x) ASSERT_TRUE(v >= 0.0 && v <= 0.25) << v;
    }
    ga->tell(std::vector<double>(pop.size(), 1.0));
  }
}

}  // namespace
}  // namespace shoal
