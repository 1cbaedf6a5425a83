// Evaluators: the in-memory one scores exactly what the model folder written by `shoal merge`
// scores; the command one passes the model folder, reads JSON metrics, and turns a command that
// fails, hangs or prints garbage into a failed candidate (one-line error) without stopping, and
// removes every candidate folder.
#include <gtest/gtest.h>

#include <thread>

#include "core/test_support.h"
#include "evolve/evolve_fitness.h"
#include "evolve/evolve_test_support.h"
#include "shoal/engine.h"
#include "shoal/error.h"
#include "shoal/eval_engine.h"
#include "shoal/merge.h"

namespace shoal::evolve {
namespace {

namespace fs = std::filesystem;

class FitnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_evolve_models(dir_.path());
    test::write_evolve_tasks(dir_.path());
  }

  EvolveConfig config(const std::string& fitness) {
    return parse_evolve_config(
        "models:\n  base: base\n  experts: [a, b]\n"
        "genome:\n  merge_method: task_arithmetic\n  layer_granularity: 2\n"
        "fitness:\n" +
            fitness + "budget:\n  generations: 1\n",
        dir_ / "evolve.yml", dir_.path());
  }

  test::TempDir dir_;
};

TEST_F(FitnessTest, InMemoryScoreEqualsTheMergedFolder) {
  const EvolveConfig c = config("  tasks: [tasks/ppl.yml, {file: tasks/mc.yml, weight: 0.5}]\n");
  auto genome = make_run_genome(c, 2);
  const auto tasks = load_fitness_tasks(c.fitness, "dev");
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0].split, "dev");
  EXPECT_EQ(tasks[1].weight, 0.5);
  EngineEvaluator evaluator(*genome, tasks, c.fitness, 2);
  const std::vector<std::vector<double>> genomes = {{0.3, 0.9, 0.6, 0.1}, {1, 0, 0.5, 0.5}};
  const auto results = evaluator.evaluate(genomes, nullptr);
  ASSERT_EQ(results.size(), 2u);
  for (size_t i = 0; i < genomes.size(); ++i) {
    ASSERT_TRUE(results[i].ok) << results[i].error;
    // The same candidate through the disk: run_merge of the recipe, loaded like `shoal eval`.
    const fs::path folder = dir_ / ("disk" + std::to_string(i));
    genome->write_model(genomes[i], folder, 2, false, nullptr);
    const LoadedModel loaded = load_model(folder);
    const EvalResult disk = score(loaded.model, loaded.tokenizer, tasks);
    EXPECT_EQ(results[i].score, disk.score);
    EXPECT_EQ(results[i].score, disk.tasks[0].score + 0.5 * disk.tasks[1].score);
    EXPECT_EQ(results[i].task_scores.at("ppl"), disk.tasks[0].score);
    EXPECT_EQ(results[i].task_scores.at("mc"), disk.tasks[1].score);
  }
  EXPECT_NE(results[0].score, results[1].score);
  // The test split is another set of texts.
  const auto test_tasks = load_fitness_tasks(c.fitness, "test");
  EXPECT_NE(evaluator.evaluate_on(genomes[0], test_tasks).score, results[0].score);
}

TEST_F(FitnessTest, ABadCandidateIsAFailureNotAnError) {
  const EvolveConfig c = config("  tasks: [tasks/ppl.yml]\n");
  auto genome = make_run_genome(c, 2);
  EngineEvaluator evaluator(*genome, load_fitness_tasks(c.fitness, "dev"), c.fitness, 2);
  // A genome of the wrong size cannot become a recipe.
  const auto r = evaluator.evaluate(std::vector<std::vector<double>>{{0.5}}, nullptr);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_FALSE(r[0].ok);
  EXPECT_NE(r[0].error.find("1 values given; this genome has 4"), std::string::npos) << r[0].error;
}

TEST_F(FitnessTest, TaskSplitsAndNames) {
  FitnessOptions f;
  f.tasks = {{dir_ / "tasks" / "ppl.yml", 2.0}};
  EXPECT_THROW(load_fitness_tasks(f, "train"), ConfigError);
  f.tasks.push_back({dir_ / "tasks" / "ppl.yml", 1.0});
  try {
    load_fitness_tasks(f, "dev");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("task 'ppl' has the name of another fitness task"),
              std::string::npos);
  }
}

TEST(FitnessCommand, CommandLineQuotesThePath) {
  EXPECT_EQ(fitness_command_line("score {model} --x {model}", "/t/it's"),
            "score '/t/it'\\''s' --x '/t/it'\\''s'");
  EXPECT_EQ(fitness_command_line("score", "/t/m"), "score '/t/m'");
}

TEST(FitnessCommand, ParsesMetrics) {
  auto m =
      parse_command_metrics("loading...\n{\"score\": 0.5, \"scores\": {\"a\": 1, \"b\": 0}}\n");
  ASSERT_TRUE(m.ok) << m.error;
  EXPECT_EQ(m.score, 0.5);
  EXPECT_EQ(m.task_scores, (std::map<std::string, double>{{"a", 1}, {"b", 0}}));
  // shoal eval's output, several lines.
  m = parse_command_metrics(
      "{\n  \"results\": {\"t\": {\"kind\": \"perplexity\", \"score\": -2.5}},"
      "\n  \"score\": -2.5\n}\n");
  ASSERT_TRUE(m.ok) << m.error;
  EXPECT_EQ(m.task_scores.at("t"), -2.5);
  for (const std::string bad :
       {"", "not json", "[1, 2]", "{\"score\": \"high\"}", "{\"accuracy\": 1}",
        "{\"score\": 1, \"scores\": {\"a\": \"x\"}}", "{\"score\": NaN}"}) {
    m = parse_command_metrics(bad);
    EXPECT_FALSE(m.ok) << bad;
    EXPECT_EQ(m.error.find('\n'), std::string::npos);
    EXPECT_EQ(m.error.rfind("fitness command output: ", 0), 0u) << m.error;
  }
}

TEST_F(FitnessTest, CommandOkFailingHangingGarbage) {
  const std::vector<double> g = {0.5, 0.5, 0.5, 0.5};
  const auto run = [&](const std::string& command, double timeout = 20) {
    EvolveConfig c = config("  command: \"" + command + "\"\n");
    c.fitness.timeout_s = timeout;
    auto genome = make_run_genome(c, 2);
    CommandEvaluator evaluator(*genome, c.fitness, dir_ / "work", 2);
    auto r = evaluator.evaluate(std::vector<std::vector<double>>{g, g}, nullptr);
    EXPECT_EQ(r.size(), 2u);
    // Every candidate folder is gone.
    EXPECT_TRUE(fs::is_empty(dir_ / "work"));
    return r[1];
  };
  // The command sees the merged folder: its score is the size of the folder's config.json.
  CandidateMetrics m = run("printf '{\\\"score\\\": %s}' $(wc -c < {model}/config.json)");
  ASSERT_TRUE(m.ok) << m.error;
  make_run_genome(config("  command: x\n"), 2)->write_model(g, dir_ / "ref", 2, false, nullptr);
  EXPECT_EQ(m.score, double(fs::file_size(dir_ / "ref" / "config.json")));
  m = run("echo boom >&2; exit 3 #");
  EXPECT_FALSE(m.ok);
  EXPECT_EQ(m.error, "fitness command exit status 3: boom");
  m = run("echo garbage #");
  EXPECT_FALSE(m.ok);
  EXPECT_EQ(m.error, "fitness command output: no JSON object (stdout ends with: 'garbage')");
  m = run("sleep 30 #", 0.3);
  EXPECT_FALSE(m.ok);
  EXPECT_NE(m.error.find("timed out"), std::string::npos) << m.error;
  EXPECT_LT(m.seconds, 10);
  // The environment tells the command the split.
  m = run("echo '{\\\"score\\\": 1, \\\"scores\\\": {\\\"'$SHOAL_EVOLVE_SPLIT'\\\": 2}}' #");
  ASSERT_TRUE(m.ok) << m.error;
  EXPECT_EQ(m.task_scores.at("dev"), 2);
}

TEST_F(FitnessTest, CancelStopsTheBatch) {
  EvolveConfig c = config("  command: \"sleep 30 #\"\n");
  auto genome = make_run_genome(c, 2);
  CommandEvaluator evaluator(*genome, c.fitness, dir_ / "work", 2);
  std::atomic<bool> cancel{false};
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    cancel.store(true);
  });
  const std::vector<double> g = {0.5, 0.5, 0.5, 0.5};
  const auto r = evaluator.evaluate(std::vector<std::vector<double>>{g, g}, &cancel);
  stopper.join();
  EXPECT_TRUE(r.empty());
  EXPECT_TRUE(fs::is_empty(dir_ / "work"));
}

}  // namespace
}  // namespace shoal::evolve
