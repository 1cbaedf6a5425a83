// Search algorithms on a synthetic problem (bench/README.md, "search_bench"):
//   shoal_search_bench quality [--seeds N] [--batch K] [--no-penalty]   best score after 16 / 64 /
//   256 generations shoal_search_bench timing [--max-nodes N]            the algorithm's own time
//   per generation
// Uses only the public header include/shoal/search.h, like any embedding program.
//
// The synthetic models. Every answer has a hidden ceiling c (how good its approach can get) and
// a quality q <= c; the score is q. A draft from model m draws c ~ N(ceiling_mean, ceiling_sd)
// and reaches q = c * N(draft_frac, 0.1). A refinement keeps c and closes a share of the gap,
// q' = q + refine_rate (c - q) + N(0, refine_noise). So going wider finds better ceilings and
// going deeper approaches them; the models differ in both, and in their noise.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "shoal/rng.h"
#include "shoal/search.h"

namespace {

using nlohmann::json;

struct SimModel {
  const char* name;
  double ceiling_mean, ceiling_sd, draft_frac, refine_rate, refine_noise;
};
constexpr SimModel kModels[] = {
    {"drafter", 0.55, 0.15, 0.65, 0.10, 0.04},  // good first drafts, weak refinement
    {"refiner", 0.40, 0.10, 0.50, 0.40, 0.04},  // poor drafts, strong refinement
    {"wild", 0.45, 0.25, 0.60, 0.20, 0.12},     // high variance in both
};
constexpr int kNumModels = 3;

struct Hidden {
  double q = 0, c = 0;
};

// Draws for the simulated generations come from their own stream, indexed by trial id, so every
// algorithm faces the same luck for the same trial number.
class Environment {
 public:
  explicit Environment(uint64_t seed) : rng_(shoal::CounterRng(seed).stream(77)) {}
  Hidden generate(const Hidden* parent, int model, int64_t trial) {
    const SimModel& m = kModels[model];
    uint64_t i = static_cast<uint64_t>(trial) * 8;
    auto normal = [&] {
      const double u1 = 1.0 - rng_.uniform(i++), u2 = rng_.uniform(i++);
      return std::sqrt(-2 * std::log(u1)) * std::cos(2 * 3.14159265358979323846 * u2);
    };
    Hidden h;
    if (parent == nullptr) {
      h.c = std::clamp(m.ceiling_mean + m.ceiling_sd * normal(), 0.0, 1.0);
      h.q = std::clamp(h.c * (m.draft_frac + 0.1 * normal()), 0.0, h.c);
    } else {
      h.c = parent->c;
      h.q = std::clamp(parent->q + m.refine_rate * (h.c - parent->q) + m.refine_noise * normal(),
                       0.0, h.c);
    }
    return h;
  }

 private:
  shoal::CounterRng rng_;
};

struct Config {
  std::string label, algorithm;
  json params;
};

// With no_penalty, the algorithms that have a pending-visit penalty run without it.
std::vector<Config> configs(bool no_penalty = false) {
  std::vector<Config> c;
  for (int m = 0; m < kNumModels; ++m) {
    c.push_back({std::string("repeated sampling, ") + kModels[m].name,
                 "repeated-sampling",
                 {{"action", m}}});
  }
  c.push_back({"repeated sampling, round robin", "repeated-sampling", json::object()});
  c.push_back({"sequential refinement (latest)", "sequential-refinement", json::object()});
  c.push_back({"sequential refinement (best)", "sequential-refinement", {{"refine", "best"}}});
  c.push_back({"mcts (uct)", "mcts", json::object()});
  c.push_back({"ab-mcts-a gaussian thompson", "ab-mcts-a", json::object()});
  c.push_back({"ab-mcts-a gaussian ucb", "ab-mcts-a", {{"model_selection", "ucb"}}});
  c.push_back({"ab-mcts-a gaussian stack", "ab-mcts-a", {{"model_selection", "stack"}}});
  c.push_back({"ab-mcts-a beta thompson", "ab-mcts-a", {{"distribution", "beta"}}});
  c.push_back({"ab-mcts-m thompson", "ab-mcts-m", json::object()});
  if (no_penalty) {
    for (Config& x : c) {
      if (x.algorithm == "mcts" || x.algorithm.starts_with("ab-mcts")) {
        x.params["pending_penalty"] = false;
        x.label += " (no penalty)";
      }
    }
  }
  return c;
}

// Runs one search for `budget` generations, asking `batch` trials at a time and telling them in
// ask order; returns the best score after each generation.
std::vector<double> run(const Config& cfg, uint64_t seed, int budget, int batch) {
  auto s = shoal::make_search({cfg.algorithm, cfg.params, kNumModels, seed});
  Environment env(seed);
  std::vector<Hidden> hidden(1);
  std::vector<double> best;
  double b = 0;
  while (static_cast<int>(best.size()) < budget) {
    const int k = std::min(batch, budget - static_cast<int>(best.size()));
    for (const shoal::Trial& t : s->ask(k)) {
      const Hidden* parent = t.parent == shoal::kRootNode ? nullptr : &hidden[t.parent];
      const Hidden h = env.generate(parent, t.action, t.id);
      s->tell(t, "", h.q);
      hidden.push_back(h);
      b = std::max(b, h.q);
      best.push_back(b);
    }
  }
  return best;
}

int quality(int seeds, int batch, bool no_penalty) {
  const int budgets[] = {16, 64, 256};
  std::printf("best score after N generations, mean over %d seeds (batch %d)\n", seeds, batch);
  std::printf("%-44s %8s %8s %8s\n", "algorithm", "16", "64", "256");
  for (const Config& cfg : configs(no_penalty)) {
    double sum[3] = {0, 0, 0};
    for (int seed = 0; seed < seeds; ++seed) {
      const std::vector<double> best = run(cfg, static_cast<uint64_t>(seed), 256, batch);
      for (int i = 0; i < 3; ++i) sum[i] += best[static_cast<size_t>(budgets[i] - 1)];
    }
    std::printf("%-44s %8.4f %8.4f %8.4f\n", cfg.label.c_str(), sum[0] / seeds, sum[1] / seeds,
                sum[2] / seeds);
    std::fflush(stdout);
  }
  return 0;
}

// The worst shape for a Thompson descent: a root with 10,000 leaf children (scores uniform in
// [0, 1]), built through a checkpoint; 500 generations are timed from there.
void wide_stress() {
  using Clock = std::chrono::steady_clock;
  std::printf("stress: root with 10000 leaf children, microseconds per generation\n");
  for (const char* algorithm : {"ab-mcts-a", "ab-mcts-m", "mcts"}) {
    json cp = shoal::make_search({algorithm, json::object(), kNumModels, 1})->checkpoint();
    const shoal::CounterRng rng(3);
    for (int i = 0; i < 10000; ++i) {
      cp["nodes"].push_back({{"id", i + 1},
                             {"parent", 0},
                             {"action", i % kNumModels},
                             {"trial", i},
                             {"score", rng.uniform(static_cast<uint64_t>(i))},
                             {"state", ""}});
    }
    cp["next_trial"] = 10000;
    auto s = shoal::resume_search(cp);
    std::vector<double> times;
    for (int i = 0; i < 500; ++i) {
      const auto t0 = Clock::now();
      const shoal::Trial t = s->ask(1)[0];
      s->tell(t, "", rng.uniform(static_cast<uint64_t>(20000 + i)));
      times.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    double mean = 0;
    for (double x : times) mean += x / static_cast<double>(times.size());
    std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
    std::printf("%-30s %10.2f (%.2f)\n", algorithm, times[times.size() / 2], mean);
  }
}

// Grows a tree with the algorithm itself and times ask + tell (the generation itself excluded)
// for a window of generations once the tree holds 100, 1,000, 10,000 nodes.
int timing(int max_nodes) {
  using Clock = std::chrono::steady_clock;
  std::printf("algorithm's own time per generation (ask + tell), microseconds: median (mean)\n");
  std::printf("%-30s %18s %18s %18s\n", "algorithm", "100 nodes", "1000 nodes", "10000 nodes");
  const std::vector<Config> all = configs();
  for (const Config& cfg : all) {
    if (cfg.algorithm == "repeated-sampling" && cfg.params.contains("action")) continue;
    auto s = shoal::make_search({cfg.algorithm, cfg.params, kNumModels, 1});
    Environment env(1);
    std::vector<Hidden> hidden(1);
    std::printf("%-30s", cfg.label.c_str());
    for (int target : {100, 1000, 10000}) {
      if (target > max_nodes) {
        std::printf(" %18s", "-");
        continue;
      }
      const int window = std::max(20, target / 10);
      std::vector<double> times;
      while (s->n_generations() < target + window) {
        const auto t0 = Clock::now();
        const shoal::Trial t = s->ask(1)[0];
        const auto t1 = Clock::now();
        const Hidden* parent = t.parent == shoal::kRootNode ? nullptr : &hidden[t.parent];
        const Hidden h = env.generate(parent, t.action, t.id);
        const auto t2 = Clock::now();
        s->tell(t, "", h.q);
        const auto t3 = Clock::now();
        hidden.push_back(h);
        if (s->n_generations() > target) {
          times.push_back(std::chrono::duration<double, std::micro>((t1 - t0) + (t3 - t2)).count());
        }
      }
      // The median resists preemption by other processes; the mean is the honest total.
      double mean = 0;
      for (double x : times) mean += x / static_cast<double>(times.size());
      std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
      char cell[64];
      std::snprintf(cell, sizeof cell, "%.2f (%.2f)", times[times.size() / 2], mean);
      std::printf(" %18s", cell);
      std::fflush(stdout);
    }
    const auto& root = s->node(shoal::kRootNode);
    int depth = 0;
    for (const shoal::SearchNode& n : s->nodes()) depth = std::max(depth, n.depth);
    std::printf("   (root children %zu, max depth %d)\n", root.children.size(), depth);
  }
  if (max_nodes >= 10000) wide_stress();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  int seeds = 32, batch = 1, max_nodes = 10000;
  bool no_penalty = false;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--no-penalty") == 0) {
      no_penalty = true;
      continue;
    }
    if (i + 1 >= argc) break;
    if (std::strcmp(argv[i], "--seeds") == 0)
      seeds = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--batch") == 0)
      batch = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--max-nodes") == 0)
      max_nodes = std::atoi(argv[++i]);
  }
  if (mode == "quality") return quality(seeds, std::max(batch, 1), no_penalty);
  if (mode == "timing") return timing(max_nodes);
  std::fprintf(stderr,
               "usage: shoal_search_bench quality [--seeds N] [--batch K] [--no-penalty]\n"
               "       shoal_search_bench timing [--max-nodes N]\n");
  return 2;
}
