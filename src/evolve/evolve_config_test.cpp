// The evolve config: every field read, paths made absolute against the config's folder, and each
// mistake (unknown key at any level, wrong type, missing section, options of another optimiser,
// a genome kind not built yet) one ConfigError naming the file and line.
#include <gtest/gtest.h>

#include "core/test_support.h"
#include "shoal/error.h"
#include "shoal/evolve.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;

class EvolveConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* m : {"base", "a", "b"}) fs::create_directories(dir_ / m);
    fs::create_directories(dir_ / "tasks");
    dir_.write("tasks/t.yml", "kind: perplexity\n");
    dir_.write("tasks/u.yml", "kind: perplexity\n");
  }

  EvolveConfig parse(const std::string& text) {
    return parse_evolve_config(text, dir_ / "evolve.yml", dir_.path());
  }

  // The message of the ConfigError that parsing `text` throws.
  std::string error_of(const std::string& text) {
    try {
      parse(text);
    } catch (const ConfigError& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.find('\n'), std::string::npos) << "one line: " << m;
      return m;
    }
    ADD_FAILURE() << "no ConfigError for:\n" << text;
    return "";
  }

  static std::string with(const std::string& extra) {
    return "models:\n  base: base\n  experts: [a, b]\n"
           "genome:\n  merge_method: ties\n"
           "fitness:\n  tasks: [tasks/t.yml]\n"
           "budget:\n  generations: 3\n" +
           extra;
  }

  test::TempDir dir_;
};

TEST_F(EvolveConfigTest, ReadsEveryField) {
  const EvolveConfig c = parse(
      "models:\n  base: base\n  experts: [a, b]\n"
      "genome:\n  kind: ps\n  merge_method: dare_ties\n  layer_granularity: 2\n"
      "  filters: [self_attn, mlp]\n  smooth: true\n  allow_negative_weights: true\n"
      "  parameters: {normalize: true, lambda: 0.5}\n  dtype: bfloat16\n  tokenizer_source: a\n"
      "optimizer:\n  kind: sep_cmaes\n  sigma0: 0.25\n  population: 12\n  ipop: 2\n"
      "  ipop_factor: 3\n  bounds: resample\n  x0: [0.5, 0.5]\n"
      "seed: 42\nmerge_seed: 7\n"
      "fitness:\n  tasks:\n    - tasks/t.yml\n    - {file: tasks/u.yml, weight: 0.25}\n"
      "  split: dev\n  test_split: test\n  limit: 10\n  batch_size: 8\n"
      "quality_diversity:\n  axes:\n    - {task: t, bins: 5, lower: -1, upper: 2}\n"
      "budget:\n  generations: 10\n  evaluations: 100\n  wall_time: 60\n");
  const fs::path d = fs::absolute(dir_.path()).lexically_normal();
  EXPECT_EQ(c.genome_kind, GenomeKind::kPs);
  EXPECT_EQ(c.ps.merge_method, "dare_ties");
  EXPECT_EQ(*c.ps.base_model, (d / "base").string());
  EXPECT_EQ(c.ps.models, (std::vector<std::string>{(d / "a").string(), (d / "b").string()}));
  EXPECT_EQ(c.ps.layer_granularity, 2);
  EXPECT_EQ(c.ps.filters, (std::vector<std::string>{"self_attn", "mlp"}));
  EXPECT_TRUE(c.ps.smooth);
  EXPECT_TRUE(c.ps.allow_negative_weights);
  EXPECT_EQ(c.ps.parameters, (std::map<std::string, double>{{"normalize", 1}, {"lambda", 0.5}}));
  EXPECT_EQ(*c.ps.dtype, "bfloat16");
  EXPECT_EQ(*c.ps.tokenizer_source, (d / "a").string());
  EXPECT_EQ(c.optimizer.kind, OptimizerKind::kSepCmaEs);
  EXPECT_EQ(c.optimizer.sigma0, 0.25);
  EXPECT_EQ(c.optimizer.population, 12);
  EXPECT_EQ(c.optimizer.max_restarts, 2);
  EXPECT_EQ(c.optimizer.ipop_factor, 3);
  EXPECT_EQ(c.optimizer.bounds, BoundsMode::kResample);
  EXPECT_EQ(c.optimizer.seed, 42u);
  EXPECT_EQ(c.x0, (std::vector<double>{0.5, 0.5}));
  EXPECT_EQ(c.merge_seed, 7u);
  ASSERT_EQ(c.fitness.tasks.size(), 2u);
  EXPECT_EQ(c.fitness.tasks[0].file, d / "tasks" / "t.yml");
  EXPECT_EQ(c.fitness.tasks[0].weight, 1);
  EXPECT_EQ(c.fitness.tasks[1].weight, 0.25);
  EXPECT_EQ(*c.fitness.limit, 10u);
  EXPECT_EQ(c.fitness.batch_size, 8u);
  ASSERT_EQ(c.qd_axes.size(), 1u);
  EXPECT_EQ(c.qd_axes[0].name, "t");
  EXPECT_EQ(c.qd_axes[0].bins, 5);
  EXPECT_EQ(c.qd_axes[0].lower, -1);
  EXPECT_EQ(c.qd_axes[0].upper, 2);
  EXPECT_EQ(c.budget.generations, 10);
  EXPECT_EQ(c.budget.evaluations, 100);
  EXPECT_EQ(c.budget.wall_time_s, 60);
}

TEST_F(EvolveConfigTest, GeneticAlgorithmAndCommandFitness) {
  const EvolveConfig c = parse(
      "models:\n  experts: [a, b]\ngenome:\n  merge_method: linear\n"
      "optimizer:\n  kind: ga\n  elites: 2\n  mutation_rate: 0.2\n  tournament_size: 2\n"
      "fitness:\n  command: python3 score.py {model}\n  timeout: 5\n  test_split: null\n"
      "budget:\n  evaluations: 40\n");
  EXPECT_EQ(c.optimizer.kind, OptimizerKind::kGenetic);
  EXPECT_EQ(c.optimizer.elites, 2);
  EXPECT_EQ(c.optimizer.mutation_rate, 0.2);
  EXPECT_FALSE(c.ps.base_model);
  EXPECT_EQ(c.fitness.command, "python3 score.py {model}");
  EXPECT_EQ(c.fitness.timeout_s, 5);
  EXPECT_FALSE(c.fitness.test_split);
}

TEST_F(EvolveConfigTest, DataFlowGenome) {
  const EvolveConfig c = parse(
      "models:\n  base: base\n  experts: [a, b]\n"
      "genome:\n  kind: dfs\n  repeats: 3\n  head_model: a\n  search_scales: false\n"
      "  scale_lower: 0.25\n  scale_upper: 2\n  max_path_length: 9\n"
      "fitness:\n  tasks: [tasks/t.yml]\nbudget:\n  generations: 3\n");
  const fs::path d = fs::absolute(dir_.path()).lexically_normal();
  EXPECT_EQ(c.genome_kind, GenomeKind::kDfs);
  // The pool: the base, then the experts.
  EXPECT_EQ(c.dfs.models, (std::vector<std::string>{(d / "base").string(), (d / "a").string(),
                                                    (d / "b").string()}));
  EXPECT_EQ(c.dfs.repeats, 3);
  EXPECT_EQ(c.dfs.head_model, (d / "a").string());
  EXPECT_FALSE(c.dfs.search_scales);
  EXPECT_EQ(c.dfs.scale_lower, 0.25);
  EXPECT_EQ(c.dfs.scale_upper, 2);
  EXPECT_EQ(c.dfs.max_path_length, 9);
  const EvolveConfig both = parse(
      with("").replace(with("").find("  merge_method"), 0, "  kind: ps_then_dfs\n  repeats: 1\n"));
  EXPECT_EQ(both.genome_kind, GenomeKind::kPsThenDfs);
  EXPECT_EQ(both.dfs.repeats, 1);
  EXPECT_EQ(both.ps.merge_method, "ties");
}

TEST_F(EvolveConfigTest, IdentityIgnoresTheBudgetOnly) {
  const EvolveConfig a = parse(with(""));
  EXPECT_EQ(a.identity(), parse(with("").replace(with("").find("3"), 1, "9")).identity());
  EXPECT_NE(a.identity(), parse(with("seed: 2\n")).identity());
  EXPECT_NE(a.identity(), parse(with("merge_seed: 2\n")).identity());
}

TEST_F(EvolveConfigTest, UnknownKeysAtEveryLevel) {
  const std::string f = (dir_ / "evolve.yml").string();
  EXPECT_EQ(error_of(with("sead: 1\n")),
            f + ":10: unknown key 'sead' in the config (expected: models, genome, optimizer, seed, "
                "fitness, merge_seed, quality_diversity, budget)");
  EXPECT_NE(
      error_of(with("optimizer:\n  sigma: 0.2\n")).find(":11: unknown key 'sigma' in optimizer"),
      std::string::npos);
  EXPECT_NE(error_of(with("").replace(with("").find("experts"), 7, "expert"))
                .find(":3: unknown key 'expert' in models"),
            std::string::npos);
  EXPECT_NE(error_of(with("quality_diversity:\n  axes:\n    - {task: t, bin: 3}\n"))
                .find(":12: unknown key 'bin' in an archive axis"),
            std::string::npos);
  EXPECT_NE(error_of(with("budget:\n  generations: 2\n")).find("appears twice"), std::string::npos);
}

TEST_F(EvolveConfigTest, ClearErrors) {
  const auto has = [&](const std::string& text, const std::string& part) {
    const std::string m = error_of(text);
    EXPECT_NE(m.find(part), std::string::npos) << m;
  };
  has("genome:\n  merge_method: ties\n", ":1: missing 'models'");
  has(with("").replace(with("").find("base: base"), 10, "base: nowhere"),
      ":2: model 'nowhere' not found");
  has(with("").replace(with("").find("tasks/t.yml"), 11, "tasks/x.yml"),
      "task file 'tasks/x.yml' not found");
  has(with("").replace(with("").find("ties"), 4, "linear"), "linear uses no base model");
  has(with("").replace(with("").find("  merge_method"), 0, "  kind: dfs\n"),
      ":6: genome.merge_method applies to the ps and ps_then_dfs genomes");
  has(with("").replace(with("").find("  merge_method"), 0, "  repeats: 3\n"),
      ":5: genome.repeats applies to the dfs and ps_then_dfs genomes");
  has(with("").replace(with("").find("  merge_method"), 0, "  kind: dense\n"),
      "unknown genome kind 'dense' (expected: ps, dfs, ps_then_dfs)");
  has(with("optimizer:\n  kind: pso\n"),
      ":11: unknown optimizer kind 'pso' (expected: cmaes, sep_cmaes, ga)");
  has(with("optimizer:\n  elites: 2\n"), ":11: optimizer.elites applies to ga only");
  has(with("optimizer:\n  kind: ga\n  ipop: 2\n"),
      ":12: optimizer.ipop applies to cmaes and sep_cmaes");
  has(with("optimizer:\n  sigma0: -1\n"), "optimizer.sigma0 must be > 0");
  has(with("optimizer:\n  population: many\n"), ":11: population must be an integer");
  has(with("").replace(with("").find("  tasks"), 0, "  command: x\n"), "either tasks");
  has(with("").replace(with("").find("generations: 3"), 14, "{}"), "budget needs generations");
  has(with("seed: -3\n"), ":10: seed must be a non-negative integer");
  has(with("quality_diversity:\n  axes:\n    - {task: t, lower: 1, upper: 1}\n"), "lower < upper");
  has("models: [", ":1: invalid YAML");
}

// The embedded default stays a valid config (its models and task files exist and its keys are
// known).
TEST(EvolveExample, TinyConfigLoads) {
  const fs::path file = fs::path(__FILE__).parent_path().parent_path().parent_path() / "examples" /
                        "tiny" / "evolve.yml";
  const EvolveConfig c = load_evolve_config(file);
  EXPECT_EQ(c.genome_kind, GenomeKind::kPs);
  EXPECT_EQ(c.ps.models.size(), 2u);
  EXPECT_EQ(c.fitness.tasks.size(), 2u);
}

}  // namespace
}  // namespace shoal
