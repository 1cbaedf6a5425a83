// shoal_evolve_bench: candidates evaluated per minute by `shoal evolve`'s in-memory path against
// a merge-to-disk-then-load loop, on the same genomes, recipe and tasks, in one process. Prints
// one JSON line. Driven by evolve_bench.py (bench/README.md).
//
// - memory: the evolve layer's own pieces — RunGenome::load_model (PsGenome -> recipe ->
//   MemoryMerger, only tensors whose parameters changed re-merged -> Model::load on the tensors
//   in place), then score() with the tokenizer loaded once;
// - disk: the recipe written to a file, run_merge into a fresh folder (what `shoal merge` does),
//   load_model on the folder (weights and tokenizer, as `shoal eval` does), score(), the folder
//   removed. No process start-up is counted against it.
// Genomes: `all` draws every gene anew for each candidate (CMA-ES: every tensor changes), `one`
// changes one gene per candidate (a GA mutation: only that gene's tensors change).
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include <CLI/CLI.hpp>

#include "evolve/evolve_fitness.h"
#include "evolve/evolve_genome.h"
#include "shoal/engine.h"
#include "shoal/eval_engine.h"
#include "shoal/evolve.h"
#include "shoal/merge.h"
#include "shoal/rng.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::vector<std::vector<double>> genomes(const shoal::evolve::RunGenome& g, int n,
                                         const std::string& mode, uint64_t seed) {
  const shoal::CounterRng rng(seed);
  uint64_t k = 0;
  std::vector<std::vector<double>> out;
  std::vector<double> x(g.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.5 * (g.lower()[i] + g.upper()[i]);
  for (int c = 0; c < n; ++c) {
    if (mode == "all") {
      for (size_t i = 0; i < x.size(); ++i) {
        x[i] = g.lower()[i] + rng.uniform(k++) * (g.upper()[i] - g.lower()[i]);
      }
    } else {
      const size_t i = size_t(rng.uniform(k++) * double(x.size()));
      x[i] = g.lower()[i] + rng.uniform(k++) * (g.upper()[i] - g.lower()[i]);
    }
    out.push_back(x);
  }
  return out;
}

// fsync of every file of a folder: the candidate on the disk itself, not only in the page cache
// (what a loop that writes a model per candidate pays in steady state, once writeback can no
// longer hide it).
void sync_folder(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const int fd = ::open(e.path().c_str(), O_RDONLY);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Candidates per minute: in-memory evaluation vs merge to disk, then load");
  std::string config_file, mode = "all", work = "/tmp/shoal-evolve-bench-work";
  int candidates = 8, threads = 2, reps = 1;
  uint64_t seed = 1;
  app.add_option("config", config_file, "evolve config (models, genome, fitness.tasks)")
      ->required();
  app.add_option("--candidates", candidates);
  app.add_option("--mode", mode)->check(CLI::IsMember({"all", "one"}));
  app.add_option("--threads", threads);
  app.add_option("--reps", reps);
  app.add_option("--seed", seed);
  app.add_option("--work", work, "scratch folder for the disk loop's models");
  CLI11_PARSE(app, argc, argv);
  try {
    const shoal::EvolveConfig config = shoal::load_evolve_config(config_file);
    auto genome = shoal::evolve::make_run_genome(config, threads);
    const auto tasks = shoal::evolve::load_fitness_tasks(config.fitness, config.fitness.split);
    const shoal::Tokenizer tokenizer = genome->tokenizer();
    shoal::ModelOptions mo;
    mo.n_threads = threads;
    shoal::EvalOptions eo;
    eo.batch_size = config.fitness.batch_size;
    eo.limit = config.fitness.limit;
    const auto gs = genomes(*genome, candidates, mode, seed);
    fs::create_directories(work);

    double best_memory = 1e300, best_disk = 1e300;
    double mem_build = 0, mem_eval = 0, disk_merge = 0, disk_load = 0, disk_eval = 0;
    double disk_sync = 0;
    bool same_scores = true;
    for (int r = 0; r < reps; ++r) {
      // Memory: a fresh merger per repetition, so its cache starts empty each time.
      auto g = shoal::evolve::make_run_genome(config, threads);
      std::vector<double> mem_scores;
      double build = 0, eval = 0;
      const auto t0 = Clock::now();
      for (const auto& x : gs) {
        const auto t = Clock::now();
        const shoal::Model m = g->load_model(x, mo);
        build += since(t);
        const auto t2 = Clock::now();
        mem_scores.push_back(shoal::score(m, tokenizer, tasks, eo).score);
        eval += since(t2);
      }
      const double memory_s = since(t0);

      double merge = 0, load = 0, deval = 0, sync = 0;
      const auto t1 = Clock::now();
      for (size_t i = 0; i < gs.size(); ++i) {
        const fs::path recipe_file = fs::path(work) / "candidate.yml";
        const fs::path dir = fs::path(work) / "candidate";
        auto t = Clock::now();
        std::ofstream(recipe_file) << *genome->recipe_yaml(gs[i]);
        shoal::MergeOptions o;
        o.out_dir = dir;
        o.seed = config.merge_seed;
        o.n_threads = threads;
        o.log_mode = shoal::LogMode::kQuiet;
        o.recipe_dir = fs::path(work);
        shoal::run_merge(shoal::load_recipe(recipe_file), o);
        merge += since(t);
        t = Clock::now();
        sync_folder(dir);
        sync += since(t);
        t = Clock::now();
        const shoal::LoadedModel loaded = shoal::load_model(dir, mo);
        load += since(t);
        t = Clock::now();
        const double s = shoal::score(loaded.model, loaded.tokenizer, tasks, eo).score;
        deval += since(t);
        same_scores = same_scores && s == mem_scores[i];
        fs::remove_all(dir);
      }
      const double disk_s = since(t1) - sync;  // the fsync is reported on its own
      if (memory_s < best_memory) best_memory = memory_s, mem_build = build, mem_eval = eval;
      if (disk_s < best_disk) {
        best_disk = disk_s, disk_merge = merge, disk_load = load, disk_eval = deval;
        disk_sync = sync;
      }
    }
    const double n = double(candidates);
    std::printf(
        "{\"mode\": \"%s\", \"candidates\": %d, \"genes\": %zu, \"memory_per_min\": %.3f, "
        "\"disk_per_min\": %.3f, \"ratio\": %.3f, \"memory_build_s\": %.4f, "
        "\"memory_eval_s\": %.4f, \"disk_merge_s\": %.4f, \"disk_load_s\": %.4f, "
        "\"disk_eval_s\": %.4f, \"disk_sync_s\": %.4f, \"disk_sync_per_min\": %.3f, "
        "\"same_scores\": %s}\n",
        mode.c_str(), candidates, genome->size(), 60 * n / best_memory, 60 * n / best_disk,
        best_disk / best_memory, mem_build / n, mem_eval / n, disk_merge / n, disk_load / n,
        disk_eval / n, disk_sync / n, 60 * n / (best_disk + disk_sync),
        same_scores ? "true" : "false");
    fs::remove_all(work);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shoal_evolve_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
