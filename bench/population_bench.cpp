// Population search on a deceptive synthetic problem (bench/README.md, "population_bench"):
//   shoal_population_bench quality [--seeds N] [--calls C | --evaluations E]
//                                                     islands + novelty vs one island
//   shoal_population_bench overhead [--calls N]              time per proposal after N calls
// It drives the real loop (run_population: prompts, patches, novelty, database, migration)
// with a simulated LLM and an in-process evaluator.
//
// The problem. A program holds K = 6 blocks of B = 4 bits and a "style" s in {0, 1, 2}. Each
// block is a trap: u ones score B if u = B, else B - 1 - u, so every single-bit step away from
// all-ones looks better; the score is the sum / (K B), 1 at the optimum (all ones).
// The simulated LLM. A style-s program can only "understand" its own blocks (b mod 3 = s):
//   diff: 15% returns the parent unchanged (a duplicate), 55% flips one random bit, 30% redraws
//     one of its own-style blocks at random (all ones with chance 1/16);
//   rewrite: the same program under a new random style, one block redrawn;
//   crossover: per block the better of the two parents' blocks (80%) or parent A's; style A's;
//   after a novelty rejection ("propose something substantially different") it redraws one of
//     its own-style blocks;
//   new: a random style and random bits.
// So no lineage can reach the optimum alone: it needs recombination of different styles.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "search/program_db.h"
#include "shoal/llm.h"
#include "shoal/population.h"
#include "shoal/rng.h"
#include "shoal/search_run.h"

namespace {

constexpr int kBlocks = 6, kBits = 4, kStyles = 3;

struct Genome {
  int style = 0;
  std::vector<std::string> blocks;
};

std::string render(const Genome& g) {
  std::string s = "# EVOLVE-BLOCK-START\nstyle = " + std::to_string(g.style) + "\n";
  for (int b = 0; b < kBlocks; ++b) {
    s += "block" + std::to_string(b) + " = \"" + g.blocks[static_cast<size_t>(b)] + "\"\n";
  }
  return s + "# EVOLVE-BLOCK-END\n";
}

bool parse(const std::string& code, Genome& g) {
  g.blocks.assign(kBlocks, std::string(kBits, '0'));
  size_t p = code.find("style = ");
  if (p == std::string::npos) return false;
  g.style = code[p + 8] - '0';
  for (int b = 0; b < kBlocks; ++b) {
    const std::string key = "block" + std::to_string(b) + " = \"";
    p = code.find(key);
    if (p == std::string::npos) return false;
    g.blocks[static_cast<size_t>(b)] = code.substr(p + key.size(), kBits);
  }
  return true;
}

int trap(const std::string& block) {
  const int u = static_cast<int>(std::count(block.begin(), block.end(), '1'));
  return u == kBits ? kBits : kBits - 1 - u;
}

double fitness(const Genome& g) {
  int s = 0;
  for (const std::string& b : g.blocks) s += trap(b);
  return static_cast<double>(s) / (kBlocks * kBits);
}

// The fenced programs of a prompt, in order (parent A, parent B, then inspirations).
std::vector<std::string> fenced(const std::string& text) {
  std::vector<std::string> out;
  size_t p = 0;
  while ((p = text.find("```python\n", p)) != std::string::npos) {
    const size_t start = p + 10, end = text.find("```", start);
    if (end == std::string::npos) break;
    out.push_back(text.substr(start, end - start));
    p = end + 3;
  }
  return out;
}

class SimLlm : public shoal::LlmBackend {
 public:
  // fresh: every answer is a new random program (the overhead measurement wants a database
  // that grows by one program per call).
  explicit SimLlm(bool fresh = false) : LlmBackend("sim"), fresh_(fresh) {}
  std::string describe() const override { return "simulated LLM (deceptive traps)"; }

 protected:
  shoal::LlmResponse do_complete(const shoal::LlmRequest& req, int& attempts) override {
    attempts = 1;
    const shoal::CounterRng rng(req.seed);
    uint64_t i = 0;
    const auto u = [&] { return rng.uniform(i++); };
    const auto pick = [&](int n) { return std::min(n - 1, static_cast<int>(u() * n)); };
    const std::string& prompt = req.messages.at(1).content;
    const bool retry_novelty = req.messages.back().content.find("too similar") != std::string::npos;
    const std::vector<std::string> programs = fenced(prompt);
    Genome g, other;
    const auto redraw = [&](int b) {
      for (char& c : g.blocks[static_cast<size_t>(b)]) c = u() < 0.5 ? '0' : '1';
    };
    const auto own_block = [&] { return g.style + kStyles * pick(kBlocks / kStyles); };
    const auto flip = [&] {
      char& c = g.blocks[static_cast<size_t>(pick(kBlocks))][static_cast<size_t>(pick(kBits))];
      c = c == '0' ? '1' : '0';
    };
    if (fresh_ || programs.empty() || !parse(programs[0], g)) {  // new
      g.style = pick(kStyles);
      g.blocks.assign(kBlocks, std::string(kBits, '0'));
      for (int b = 0; b < kBlocks; ++b) redraw(b);
    } else if (prompt.find("Program B") != std::string::npos && programs.size() >= 2 &&
               parse(programs[1], other)) {
      Genome a = g;
      for (int b = 0; b < kBlocks; ++b) {
        const std::string& x = a.blocks[static_cast<size_t>(b)];
        const std::string& y = other.blocks[static_cast<size_t>(b)];
        g.blocks[static_cast<size_t>(b)] = u() < 0.8 ? (trap(y) > trap(x) ? y : x) : x;
      }
    } else if (prompt.find("Rewrite the program") != std::string::npos) {
      g.style = pick(kStyles);
      redraw(pick(kBlocks));
    } else if (retry_novelty) {  // "substantially different": another idea for its own blocks
      redraw(own_block());
    } else {
      const double r = u();
      if (r < 0.55) {
        flip();
      } else if (r >= 0.70) {
        redraw(own_block());
      }  // else unchanged
    }
    shoal::LlmResponse out;
    out.text = "```python\n" + render(g) + "```\n";
    return out;
  }

 private:
  bool fresh_;
};

shoal::ProgramEvaluation evaluate(const std::string& code) {
  shoal::ProgramEvaluation e;
  Genome g;
  if (!parse(code, g)) {
    e.feedback = "unparsable";
    return e;
  }
  int ones = 0;
  for (const std::string& b : g.blocks)
    ones += static_cast<int>(std::count(b.begin(), b.end(), '1'));
  e.ok = e.correct = true;
  e.score = fitness(g);
  e.metrics = {{"ones", ones}};
  e.feedback = "score " + std::to_string(e.score);
  return e;
}

std::string task_yaml(int islands, bool novelty, int64_t calls, uint64_t seed, int64_t evals) {
  return "problem: maximise the traps\n"
         "models: [{name: sim, backend: mock, answers: [x]}]\n"
         "scorer: {command: 'true'}\n"
         "budget: {calls: " +
         std::to_string(calls) +
         ", wall_s: 3600}\n"
         "seed: " +
         std::to_string(seed) +
         "\n"
         "algorithm:\n  name: population\n  islands: " +
         std::to_string(islands) +
         "\n  migration_interval: 10\n  migration_fraction: 0.2\n"
         "  grid: [{metric: ones, min: 0, max: 25, bins: 12}]\n"
         "  operators: {diff: 0.6, rewrite: 0.2, crossover: 0.2}\n"
         "  inspirations: 1\n  max_evaluations: " +
         std::to_string(evals) +
         "\n"
         "  novelty: " +
         (novelty ? "{threshold: 0.95, retries: 2}" : "false") + "\n";
}

struct Result {
  double best = 0;
  int distinct_high = 0;  // distinct programs scoring >= 0.9
  bool optimum = false;
  double seconds = 0;
  int64_t programs = 0;
  int64_t evaluations = 0;  // programs that were evaluated (migrated copies are not)
};

Result run_one(const std::filesystem::path& dir, int islands, bool novelty, int64_t calls,
               uint64_t seed, bool resume = false, int64_t evals = 0, bool fresh = false) {
  const std::filesystem::path task = dir / "task.yml";
  {
    FILE* f = std::fopen(task.c_str(), "w");
    const std::string y = task_yaml(islands, novelty, calls, seed, evals);
    std::fwrite(y.data(), 1, y.size(), f);
    std::fclose(f);
  }
  SimLlm llm(fresh);
  shoal::SearchRunOptions o;
  o.out_dir = dir / "out";
  o.resume = resume;
  o.log_mode = shoal::LogMode::kQuiet;
  o.backends = {&llm};
  shoal::PopulationHooks hooks;
  hooks.evaluator = evaluate;
  const auto t0 = std::chrono::steady_clock::now();
  const shoal::SearchRunSummary s = shoal::run_population(shoal::load_search_task(task), o, hooks);
  Result r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.best = s.best_score;
  r.optimum = s.best_score >= 1.0;
  r.programs = s.generations;
  shoal::search::ProgramDb db = shoal::search::ProgramDb::open(o.out_dir / "population.db");
  std::set<std::string> high;
  for (const auto& p : db.load_programs()) {
    r.evaluations += p.op != "migration" ? 1 : 0;
    if (p.score >= 0.9) high.insert(p.code.substr(p.code.find("block0")));  // style aside
  }
  r.distinct_high = static_cast<int>(high.size());
  return r;
}

std::filesystem::path fresh(const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() /
                 ("shoal-population-bench-" + std::to_string(::getpid()) + "-" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

// Equal budgets: `calls` LLM calls (evals = 0), or `evals` evaluations (calls = 0: unbounded).
void quality(int seeds, int64_t calls, int64_t evals) {
  if (evals > 0) {
    std::printf(
        "deceptive traps, %d blocks x %d bits, %d styles; %lld evaluations per run; "
        "seeds 1..%d\n",
        kBlocks, kBits, kStyles, static_cast<long long>(evals), seeds);
  } else {
    std::printf(
        "deceptive traps, %d blocks x %d bits, %d styles; %lld calls per run; seeds 1..%d\n",
        kBlocks, kBits, kStyles, static_cast<long long>(calls), seeds);
  }
  std::printf("%-24s %9s %8s %13s %11s %7s\n", "configuration", "mean best", "optimum",
              "distinct>=0.9", "evaluations", "s/run");
  const struct {
    const char* name;
    int islands;
    bool novelty;
  } configs[] = {{"4 islands + novelty", 4, true},
                 {"4 islands, no novelty", 4, false},
                 {"1 island + novelty", 1, true},
                 {"1 island, no novelty", 1, false}};
  for (const auto& c : configs) {
    double best = 0, secs = 0, distinct = 0, evaluated = 0;
    int optimum = 0;
    std::string per_seed;
    for (int s = 1; s <= seeds; ++s) {
      const auto dir = fresh("q");
      const Result r = run_one(dir, c.islands, c.novelty, evals > 0 ? 0 : calls,
                               static_cast<uint64_t>(s), false, evals);
      std::filesystem::remove_all(dir);
      best += r.best;
      secs += r.seconds;
      distinct += r.distinct_high;
      evaluated += static_cast<double>(r.evaluations);
      optimum += r.optimum ? 1 : 0;
      char buf[32];
      std::snprintf(buf, sizeof buf, " %.3f", r.best);
      per_seed += buf;
    }
    std::printf("%-24s %9.3f %5d/%-2d %13.1f %11.0f %7.2f   best per seed:%s\n", c.name,
                best / seeds, optimum, seeds, distinct / seeds, evaluated / seeds, secs / seeds,
                per_seed.c_str());
  }
}

// The loop's own time per proposal (prompt with inspirations, patch, novelty check against the
// island, database transaction, migration), with an instant LLM answering fresh random programs
// and an in-process evaluator: a resumed run of `timed` proposals minus a resumed run of none
// (which pays only the rebuild from the database and the report). Best of three.
void overhead(int64_t calls) {
  const auto dir = fresh("o");
  const int64_t timed = 2000;
  int64_t done = 0;
  for (int64_t target : {int64_t{500}, calls}) {
    const Result grow = run_one(dir, 4, true, target, 1, done > 0, 0, true);
    done = target;
    double best = 1e300, base_s = 0;
    for (int rep = 0; rep < 3; ++rep) {
      const Result base = run_one(dir, 4, true, done, 1, true, 0, true);
      const Result next = run_one(dir, 4, true, done + timed, 1, true, 0, true);
      best = std::min(best, (next.seconds - base.seconds) / timed);
      base_s = base.seconds;
      done += timed;
    }
    std::printf(
        "%6lld programs in the database: %.3f ms per proposal (open + rebuild + report: "
        "%.2f s; growing took %.1f s)\n",
        static_cast<long long>(grow.programs), 1e3 * best, base_s, grow.seconds);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(
        stderr,
        "usage: %s quality [--seeds N] [--calls C | --evaluations E] | overhead [--calls N]\n",
        argv[0]);
    return 2;
  }
  int seeds = 5;
  int64_t calls = 400, programs = 10000, evals = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--seeds") == 0) seeds = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--calls") == 0) calls = std::atoll(argv[i + 1]);
    if (std::strcmp(argv[i], "--evaluations") == 0) evals = std::atoll(argv[i + 1]);
  }
  if (std::strcmp(argv[1], "quality") == 0)
    quality(seeds, calls, evals);
  else if (std::strcmp(argv[1], "overhead") == 0)
    overhead(calls == 400 ? programs : calls);  // default: 10,000 calls
  else
    return 2;
  return 0;
}
