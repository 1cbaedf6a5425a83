// run_evolve end to end on tiny generated models with the real engine: the outputs (best.yml that
// `shoal merge` turns into best/ bit for bit, equal to the in-memory model; scores that the disk
// model reproduces), resume after a budget or an interrupt reaching byte-identical outputs, the
// fitness cache, a command that fails some candidates, archive export, and the errors (genome
// sizes, corrupt checkpoints, another config).
#include <fstream>
#include <functional>
#include <sstream>

#include <gtest/gtest.h>

#include "core/test_support.h"
#include "evolve/evolve_fitness.h"
#include "evolve/evolve_state.h"
#include "evolve/evolve_test_support.h"
#include "shoal/engine.h"
#include "shoal/error.h"
#include "shoal/eval_engine.h"
#include "shoal/evolve.h"
#include "shoal/merge.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  EXPECT_TRUE(in.good()) << p;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The log without the wall times.
std::string log_without_seconds(const fs::path& p) {
  std::istringstream in(read_file(p));
  std::string out, line;
  while (std::getline(in, line)) {
    json j = json::parse(line);
    j.erase("seconds");
    out += j.dump() + "\n";
  }
  return out;
}

class EvolveRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_evolve_models(dir_.path());
    test::write_evolve_tasks(dir_.path());
  }

  EvolveConfig config(const std::string& text) {
    return parse_evolve_config(text, dir_ / "evolve.yml", dir_.path());
  }

  // dare_ties (seeded masks) over 2 layer groups, a perplexity task and a multiple-choice one,
  // the multiple-choice score binned by the archive.
  static std::string qd_config(const std::string& optimizer, int generations) {
    return "models:\n  base: base\n  experts: [a, b]\n"
           "genome:\n  merge_method: dare_ties\n  layer_granularity: 2\n"
           "optimizer:\n" +
           optimizer + "seed: 3\nmerge_seed: 5\n" +
           "fitness:\n  tasks: [tasks/ppl.yml, {file: tasks/mc.yml, weight: 0.1}]\n"
           "quality_diversity:\n  axes: [{task: mc, bins: 3}]\n"
           "budget:\n  generations: " +
           std::to_string(generations) + "\n";
  }

  EvolveSummary run(const EvolveConfig& c, const std::string& out, bool resume = false,
                    const std::atomic<bool>* interrupt = nullptr) {
    EvolveRunOptions o;
    o.out_dir = dir_ / out;
    o.resume = resume;
    o.log_mode = LogMode::kQuiet;
    o.n_threads = 2;
    o.interrupt = interrupt;
    return run_evolve(c, o);
  }

  // Every output that must not depend on how the run was split into sessions.
  void expect_same_outputs(const std::string& a, const std::string& b) {
    for (const char* f :
         {"best.yml", "best_path.json", "scores.json", "summary.json", "report.html",
          "archive.json", "best/model.safetensors", "best/config.json"}) {
      ASSERT_EQ(fs::exists(dir_ / a / f), fs::exists(dir_ / b / f)) << f;
      if (fs::exists(dir_ / a / f)) {
        EXPECT_EQ(read_file(dir_ / a / f), read_file(dir_ / b / f)) << f;
      }
    }
    EXPECT_EQ(log_without_seconds(dir_ / a / "log.jsonl"),
              log_without_seconds(dir_ / b / "log.jsonl"));
  }

  template <typename E>
  std::string error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const E& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
      return m;
    }
    ADD_FAILURE() << "no error thrown";
    return "";
  }

  test::TempDir dir_;
};

TEST_F(EvolveRunTest, OutputsReproducedByShoalMergeAndByTheDiskModel) {
  const EvolveConfig c = config(qd_config("  population: 6\n", 3));
  const EvolveSummary s = run(c, "out");
  EXPECT_EQ(s.stop_reason, "generations");
  EXPECT_EQ(s.generations, 3);
  EXPECT_EQ(s.evaluations, 18);
  EXPECT_EQ(s.failures, 0);
  const fs::path out = dir_ / "out";

  // best.yml through run_merge (what `shoal merge best.yml X --seed 5` does) == best/ == memory.
  const Recipe recipe = load_recipe(out / "best.yml");
  MergeOptions mo;
  mo.out_dir = dir_ / "remerged";
  mo.seed = 5;
  mo.n_threads = 1;
  mo.log_mode = LogMode::kQuiet;
  run_merge(recipe, mo);
  EXPECT_EQ(read_file(dir_ / "remerged" / "model.safetensors"),
            read_file(out / "best" / "model.safetensors"));
  MemoryMerger merger({5, 2, dir_.path()});
  test::expect_same_model(out / "best", *merger.merge(recipe));
  // The recipe is the best genome's.
  PsGenome genome(c.ps, dir_.path());
  EXPECT_NE(read_file(out / "best.yml").find(genome.to_yaml(s.best_genome)), std::string::npos);

  // The search's best score and the test score, measured again on the folder.
  const LoadedModel loaded = load_model(out / "best");
  const auto dev = evolve::load_fitness_tasks(c.fitness, "dev");
  const auto test = evolve::load_fitness_tasks(c.fitness, "test");
  EXPECT_EQ(score(loaded.model, loaded.tokenizer, dev).score, s.best_score);
  ASSERT_TRUE(s.test_score);
  EXPECT_EQ(score(loaded.model, loaded.tokenizer, test).score, *s.test_score);
  const json scores = json::parse(read_file(out / "scores.json"));
  EXPECT_EQ(scores["test"]["score"].get<double>(), *s.test_score);

  // The log: one line per candidate, the best flagged, scores as in the cache.
  std::istringstream log(read_file(out / "log.jsonl"));
  std::string line;
  int n = 0;
  double best = -INFINITY;
  while (std::getline(log, line)) {
    const json j = json::parse(line);
    EXPECT_EQ(j["evaluation"], ++n);
    EXPECT_TRUE(j["ok"].get<bool>());
    const double sc = j["score"].get<double>();
    EXPECT_EQ(j.contains("best"), sc > best);
    best = std::max(best, sc);
    EXPECT_EQ(j["genome"].size(), 8u);
  }
  EXPECT_EQ(n, 18);
  EXPECT_EQ(best, s.best_score);
  const std::string report = read_file(out / "report.html");
  size_t svgs = 0;
  for (size_t p = 0; (p = report.find("<svg", p)) != std::string::npos; ++p) ++svgs;
  EXPECT_GE(svgs, 4u);  // fitness, per task, per layer, archive
}

TEST_F(EvolveRunTest, ResumeAfterABudgetOrAnInterruptGivesTheSameOutputs) {
  const std::string cma = "  population: 6\n";
  run(config(qd_config(cma, 4)), "whole");
  // Two generations, then the budget raised to four.
  EXPECT_EQ(run(config(qd_config(cma, 2)), "split").generations, 2);
  EXPECT_EQ(run(config(qd_config(cma, 4)), "split", true).generations, 4);
  expect_same_outputs("whole", "split");
  // Interrupted before the first generation: the checkpoint is the fresh state.
  std::atomic<bool> stop{true};
  const EvolveSummary i = run(config(qd_config(cma, 4)), "interrupted", false, &stop);
  EXPECT_TRUE(i.interrupted);
  EXPECT_EQ(i.generations, 0);
  EXPECT_TRUE(fs::exists(dir_ / "interrupted" / "checkpoint.json"));
  EXPECT_FALSE(fs::exists(dir_ / "interrupted" / "best.yml"));
  run(config(qd_config(cma, 4)), "interrupted", true);
  expect_same_outputs("whole", "interrupted");
}

TEST_F(EvolveRunTest, GeneticAlgorithmReusesCachedGenomes) {
  const std::string ga = "  kind: ga\n  population: 6\n  elites: 2\n";
  const EvolveSummary s = run(config(qd_config(ga, 4)), "ga");
  EXPECT_EQ(s.evaluations, 24);
  EXPECT_LT(s.evaluated, 24);  // the elites are asked again each generation
  std::istringstream log(read_file(dir_ / "ga" / "log.jsonl"));
  std::string line;
  int cached = 0;
  while (std::getline(log, line)) cached += json::parse(line)["cached"].get<bool>() ? 1 : 0;
  EXPECT_EQ(cached, 24 - s.evaluated);
  run(config(qd_config(ga, 2)), "ga2");
  run(config(qd_config(ga, 4)), "ga2", true);
  expect_same_outputs("ga", "ga2");
}

TEST_F(EvolveRunTest, CommandFailuresAreLoggedAndTheRunGoesOn) {
  // Every third call prints garbage; the others score the merged weights' checksum.
  const std::string count = (dir_ / "count").string();
  const std::string cmd =
      "n=$(cat " + count + " 2>/dev/null || echo 0); n=$((n+1)); echo $n > " + count +
      "; "
      "if [ $((n % 3)) -eq 0 ]; then echo garbage; else "
      "printf '{\\\"score\\\": %s}' $(cksum < {model}/model.safetensors | cut -c1-4); fi";
  EvolveConfig c = config(
      "models:\n  base: base\n  experts: [a, b]\ngenome:\n  merge_method: task_arithmetic\n"
      "optimizer:\n  population: 6\nfitness:\n  command: \"" +
      cmd + "\"\n  test_split: null\nbudget:\n  evaluations: 12\n");
  const EvolveSummary s = run(c, "cmd");
  EXPECT_EQ(s.evaluations, 12);
  EXPECT_EQ(s.failures, 4);
  EXPECT_TRUE(fs::exists(dir_ / "cmd" / "best" / "model.safetensors"));
  EXPECT_TRUE(fs::is_empty(dir_ / "cmd" / "candidates"));
  EXPECT_NE(
      read_file(dir_ / "cmd" / "log.jsonl").find("\"error\":\"fitness command output: no JSON"),
      std::string::npos);

  c.fitness.command = "exit 1";
  const std::string m = error_of<Error>([&] { run(c, "cmd_fails"); });
  EXPECT_NE(m.find("no candidate could be evaluated"), std::string::npos) << m;
  EXPECT_NE(m.find("fitness command exit status 1"), std::string::npos) << m;
  EXPECT_TRUE(fs::exists(dir_ / "cmd_fails" / "report.html"));
}

TEST_F(EvolveRunTest, ExportAnElite) {
  const EvolveConfig c = config(qd_config("  population: 6\n", 2));
  run(c, "qd");
  const MapElitesArchive archive = MapElitesArchive::load(dir_ / "qd" / "archive.json");
  ASSERT_GE(archive.size(), 1u);
  EliteExportOptions o;
  o.run_dir = dir_ / "qd";
  o.out_dir = dir_ / "elite0";
  o.n_threads = 2;
  const EliteExport e = export_elite(o);
  const Elite best = archive.elites()[0];
  EXPECT_EQ(e.cell, best.cell);
  EXPECT_EQ(e.recipe, dir_ / "elite0.yml");
  MemoryMerger merger({5, 2, dir_.path()});
  test::expect_same_model(dir_ / "elite0",
                          *merger.merge(PsGenome(c.ps, dir_.path()).decode(best.genome)));
  // By cell.
  o.out_dir = dir_ / "elite_cell";
  o.cell = best.cell;
  EXPECT_EQ(export_elite(o).fitness, best.fitness);
  o.cell = std::nullopt;
  o.rank = 99;
  EXPECT_NE(error_of<ConfigError>([&] { export_elite(o); }).find("--rank 99: the archive has"),
            std::string::npos);
}

// A DFS run: the best path written as a model folder scores on disk what it scored in memory
// (all scales 1: the folder's layers are byte copies of the path's).
TEST_F(EvolveRunTest, DataFlowRunWritesItsBestPath) {
  const EvolveConfig c = config(
      "models:\n  base: base\n  experts: [a, b]\n"
      "genome:\n  kind: dfs\n  repeats: 2\n  search_scales: false\n"
      "optimizer:\n  kind: sep_cmaes\n  population: 8\nseed: 2\n"
      "fitness:\n  tasks: [tasks/ppl.yml]\nbudget:\n  generations: 2\n");
  const EvolveSummary s = run(c, "dfs");
  EXPECT_EQ(s.evaluations, 16);
  EXPECT_EQ(s.best_genome.size(), 24u);  // 3 models x 4 layers x 2 repeats
  const json path = json::parse(read_file(dir_ / "dfs" / "best_path.json"));
  const LoadedModel loaded = load_model(dir_ / "dfs" / "best");
  EXPECT_EQ(size_t(loaded.model.config().n_layers), path["steps"].size());
  EXPECT_EQ(
      score(loaded.model, loaded.tokenizer, evolve::load_fitness_tasks(c.fitness, "dev")).score,
      s.best_score);
}

// ps_then_dfs: the PS phase in ps/, the DFS phase in dfs/ with the PS result first in its pool;
// resuming with a larger budget (both phases go on) gives an uninterrupted run's outputs.
TEST_F(EvolveRunTest, PsThenDfsResumesAcrossPhases) {
  const auto text = [](int generations) {
    return "models:\n  base: base\n  experts: [a, b]\n"
           "genome:\n  kind: ps_then_dfs\n  merge_method: task_arithmetic\n"
           "  layer_granularity: 2\n  repeats: 1\n"
           "optimizer:\n  population: 6\nseed: 2\n"
           "fitness:\n  tasks: [tasks/ppl.yml]\n  test_split: null\n"
           "budget:\n  generations: " +
           std::to_string(generations) + "\n";
  };
  const EvolveSummary s = run(config(text(2)), "whole");
  EXPECT_EQ(s.generations, 4);
  const json dfs_cp = json::parse(read_file(dir_ / "whole" / "dfs" / "checkpoint.json"));
  EXPECT_EQ(dfs_cp["config"]["genome"]["dfs"]["models"][0],
            fs::absolute(dir_ / "whole" / "ps" / "best").lexically_normal().string());
  EXPECT_TRUE(fs::exists(dir_ / "whole" / "summary.json"));
  run(config(text(1)), "split");
  run(config(text(2)), "split", true);
  expect_same_outputs("whole/ps", "split/ps");
  // The DFS pool names its folder: compare what does not name it.
  for (const char* f : {"best_path.json", "best/model.safetensors", "scores.json"}) {
    const std::string a = read_file(dir_ / "whole" / "dfs" / f);
    std::string b = read_file(dir_ / "split" / "dfs" / f);
    for (size_t p; (p = b.find("/split/")) != std::string::npos;) b.replace(p, 7, "/whole/");
    EXPECT_EQ(a, b) << f;
  }
}

TEST_F(EvolveRunTest, GenomeSizeErrors) {
  const auto base = [](const std::string& extra) {
    return "models:\n  base: base\n  experts: [a, b]\n"
           "genome:\n  merge_method: ties\n  layer_granularity: 2\n"
           "fitness:\n  tasks: [tasks/ppl.yml]\nbudget:\n  generations: 1\n" +
           extra;
  };
  EXPECT_EQ(
      error_of<ConfigError>([&] { run(config(base("optimizer:\n  x0: [0.5, 0.5, 0.5]\n")), "x"); }),
      (dir_ / "evolve.yml").string() +
          ": optimizer.x0 has 3 values; the genome has 8 (2 layer groups x 2 models x 1 "
          "filter set x 2 parameters)");
  EXPECT_NE(error_of<ConfigError>([&] {
              run(config(base("optimizer:\n  x0: [2, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]\n")), "x");
            }).find(": optimizer: x0[0] = 2.0 is outside its bounds"),
            std::string::npos);
  // A model with another number of layers.
  test::TinyLlama deep;
  deep.layers = 6;
  deep.vocab = 256;
  test::write_tiny_llama(dir_ / "deep", deep, 1, 4);
  test::write_byte_tokenizer(dir_ / "deep");
  EXPECT_NE(error_of<ConfigError>([&] {
              run(config(base("").replace(base("").find("[a, b]"), 6, "[a, deep]")), "x");
            }).find("model '" + (dir_ / "deep").string() + "' has 6 layers"),
            std::string::npos);
  EXPECT_NE(error_of<ConfigError>([&] {
              run(config(base("").replace(base("").find("generations: 1"), 14, "evaluations: 3")),
                  "x");
            }).find("budget.evaluations (3) is smaller than one generation"),
            std::string::npos);
}

TEST_F(EvolveRunTest, CheckpointErrors) {
  const EvolveConfig c = config(qd_config("  population: 6\n", 1));
  run(c, "run");
  const fs::path cp = dir_ / "run" / "checkpoint.json";
  // A second fresh run into the same folder, a resume of nothing.
  EXPECT_NE(error_of<ConfigError>([&] { run(c, "run"); }).find("already holds a run"),
            std::string::npos);
  EXPECT_NE(error_of<ConfigError>([&] { run(c, "none", true); }).find("--resume: "),
            std::string::npos);
  // Another config.
  EXPECT_NE(error_of<ConfigError>([&] {
              run(config(qd_config("  population: 8\n", 1)), "run", true);
            }).find("written by a run with another config (optimizer.population differs)"),
            std::string::npos);
  const json good = json::parse(read_file(cp));
  const auto corrupt = [&](const std::string& text) {
    std::ofstream(cp, std::ios::trunc) << text;
    return error_of<FormatError>([&] { run(c, "run", true); });
  };
  EXPECT_NE(corrupt("{\"format\": \"shoal-evolve-run\"").find("checkpoint.json: not valid JSON"),
            std::string::npos);
  json j = good;
  j.erase("history");
  EXPECT_NE(corrupt(j.dump()).find("missing key 'history'"), std::string::npos);
  j = good;
  j["history"][0] = 1000;
  EXPECT_NE(corrupt(j.dump()).find("a history entry points past 'evaluated'"), std::string::npos);
  j = good;
  j["optimizer"]["sigma"] = -1;
  EXPECT_NE(corrupt(j.dump()).find("checkpoint.json: "), std::string::npos);
  j = good;
  j["evaluated"][0]["genome"].erase(0);
  EXPECT_NE(corrupt(j.dump()).find("evaluated[0].genome must be a list of 8 numbers"),
            std::string::npos);
  EXPECT_NE(corrupt("[]").find("not a shoal evolve checkpoint"), std::string::npos);
}

}  // namespace
}  // namespace shoal
