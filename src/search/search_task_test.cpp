// Task files of `shoal search`: every key lands where it should, defaults, and errors that name
// the file, the line and the key.
#include <gtest/gtest.h>

#include "core/test_support.h"
#include "shoal/error.h"
#include "shoal/search_run.h"

namespace shoal {
namespace {

const char* kFull = R"(problem: |
  Write fizzbuzz.
system: You are terse.
refine: "Improve this:\n{answer}\nFeedback: {feedback} ({score}). Literal {{braces}}."
models:
  - name: gpt
    backend: http
    base_url: http://localhost:8000/v1
    model: gpt-4o-mini
    api_key_env: MY_KEY
    temperature: 0.7
    top_p: 0.9
    max_tokens: 1024
    stop: ["END"]
    extra_body: {reasoning_effort: low, n: 1}
    timeout_s: 90
    connect_timeout_s: 5
    max_retries: 2
    backoff_s: 0.5
    backoff_max_s: 8
    retry_after_max_s: 30
    concurrency: 3
    price_input: 0.15
    price_output: 0.6
  - name: tiny
    backend: engine
    path: models/tiny
    max_tokens: 64
    temperature: 0.8
    top_k: 40
    top_p: 0.95
    stop: "\n\n"
    chat_template: false
    threads: 2
  - name: fake
    backend: mock
    answers: ["a {n}", b]
    latency_s: 0.01
    price_input: 1
scorer:
  command: python3 score.py --strict
  timeout_s: 5
  memory_mb: 512
  env: {LEVEL: "3"}
budget: {calls: 64, cost_usd: 1.5, wall_s: 600}
concurrency: 4
algorithm:
  name: ab-mcts-a
  distribution: beta
seed: 42
best: 3
)";

TEST(SearchTask, ReadsEveryKey) {
  const SearchTask t = parse_search_task(kFull, "/tasks/fizz.yml");
  EXPECT_EQ(t.problem, "Write fizzbuzz.\n");
  EXPECT_EQ(t.system, "You are terse.");
  EXPECT_EQ(t.refine,
            "Improve this:\n{answer}\nFeedback: {feedback} ({score}). Literal {{braces}}.");
  ASSERT_EQ(t.models.size(), 3u);
  const HttpBackendOptions& h = t.models[0].http;
  EXPECT_EQ(t.models[0].name, "gpt");
  EXPECT_EQ(t.models[0].backend, "http");
  EXPECT_EQ(h.name, "gpt");
  EXPECT_EQ(h.base_url, "http://localhost:8000/v1");
  EXPECT_EQ(h.model, "gpt-4o-mini");
  EXPECT_EQ(h.api_key_env, "MY_KEY");
  EXPECT_EQ(h.temperature, 0.7);
  EXPECT_EQ(h.top_p, 0.9);
  EXPECT_EQ(h.max_tokens, 1024);
  EXPECT_EQ(h.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(h.extra_body, nlohmann::json::parse(R"({"reasoning_effort": "low", "n": 1})"));
  EXPECT_EQ(h.timeout_s, 90);
  EXPECT_EQ(h.connect_timeout_s, 5);
  EXPECT_EQ(h.max_retries, 2);
  EXPECT_EQ(h.backoff_initial_s, 0.5);
  EXPECT_EQ(h.backoff_max_s, 8);
  EXPECT_EQ(h.retry_after_max_s, 30);
  EXPECT_EQ(h.concurrency, 3);
  EXPECT_EQ(h.prices.input_per_million, 0.15);
  EXPECT_EQ(h.prices.output_per_million, 0.6);
  EXPECT_EQ(h.seed, 42u);
  const EngineBackendOptions& e = t.models[1].engine;
  EXPECT_EQ(e.name, "tiny");
  EXPECT_EQ(e.model, std::filesystem::path("/tasks/models/tiny"));
  EXPECT_EQ(e.max_tokens, 64);
  EXPECT_FLOAT_EQ(e.temperature, 0.8f);
  EXPECT_EQ(e.top_k, 40);
  EXPECT_FLOAT_EQ(e.top_p, 0.95f);
  EXPECT_EQ(e.stop, std::vector<std::string>{"\n\n"});
  EXPECT_FALSE(e.chat_template);
  EXPECT_EQ(e.threads, 2);
  const MockBackendOptions& m = t.models[2].mock;
  EXPECT_EQ(m.answers, (std::vector<std::string>{"a {n}", "b"}));
  EXPECT_EQ(m.latency_s, 0.01);
  EXPECT_EQ(m.prices.input_per_million, 1);
  EXPECT_EQ(t.scorer.argv,
            (std::vector<std::string>{"/bin/sh", "-c", "python3 score.py --strict"}));
  EXPECT_EQ(t.scorer.working_dir, std::filesystem::path("/tasks"));
  EXPECT_EQ(t.scorer.timeout_s, 5);
  EXPECT_EQ(t.scorer.memory_limit_bytes, 512ull << 20);
  EXPECT_EQ(t.scorer.env, (std::vector<std::pair<std::string, std::string>>{{"LEVEL", "3"}}));
  EXPECT_EQ(t.budget.calls, 64);
  EXPECT_EQ(t.budget.cost_usd, 1.5);
  EXPECT_EQ(t.budget.wall_s, 600);
  EXPECT_EQ(t.concurrency, 4);
  EXPECT_EQ(t.algorithm, "ab-mcts-a");
  EXPECT_EQ(t.algorithm_params, nlohmann::json::parse(R"({"distribution": "beta"})"));
  EXPECT_EQ(t.seed, 42u);
  EXPECT_EQ(t.best, 3);
}

TEST(SearchTask, Defaults) {
  const SearchTask t = parse_search_task(R"(problem: p
models: [{name: a, backend: http, model: m}]
scorer: {command: [python3, s.py]}
budget: {calls: 3}
)",
                                         "t.yml");
  EXPECT_EQ(t.refine, kDefaultRefineTemplate);
  EXPECT_EQ(t.models[0].http.base_url, "https://api.openai.com/v1");
  EXPECT_EQ(t.models[0].http.api_key_env, "");
  EXPECT_EQ(t.scorer.argv, (std::vector<std::string>{"python3", "s.py"}));
  EXPECT_EQ(t.scorer.timeout_s, 60);
  EXPECT_EQ(t.concurrency, 1);
  EXPECT_EQ(t.algorithm, "ab-mcts-a");
  EXPECT_EQ(t.seed, 0u);
  EXPECT_EQ(t.best, 5);

  const SearchTask named = parse_search_task(R"(problem: p
models: [{name: a, backend: mock, answers: [x]}]
scorer: {command: "true"}
budget: {wall_s: 10}
algorithm: repeated-sampling
)",
                                             "t.yml");
  EXPECT_EQ(named.algorithm, "repeated-sampling");
}

std::string error_of(const std::string& yaml) {
  try {
    parse_search_task(yaml, "task.yml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(SearchTask, ErrorsNameTheLineAndKey) {
  const std::string base = "problem: p\nscorer: {command: s}\nbudget: {calls: 2}\n";
  EXPECT_EQ(error_of(base + "models:\n  - {name: a, backend: mock, answers: [x], temprature: 1}\n"),
            "task.yml:5: unknown key 'temprature' in models[0] (backend mock) (known: name, "
            "backend, answers, latency_s, price_input, price_output)");
  EXPECT_EQ(error_of(base + "models:\n  - {name: a, backend: grpc}\n"),
            "task.yml:5: models[0]: backend 'grpc' is not one of http, engine, mock");
  EXPECT_EQ(error_of(base + "models:\n  - {name: a, backend: http, model: m, temperature: hot}\n"),
            "task.yml:5: 'temperature' must be a number in [0, 10]");
  EXPECT_EQ(error_of(base + "models:\n  - {name: a, backend: http}\n"),
            "task.yml:5: models[0]: 'model' (the server's model name) is required");
  EXPECT_EQ(error_of(base + "models:\n  - {name: a, backend: mock, answers: [x]}\n"
                            "  - {name: a, backend: mock, answers: [y]}\n"),
            "task.yml:6: two models are named 'a'");
  const std::string models = "models: [{name: a, backend: mock, answers: [x]}]\n";
  EXPECT_EQ(error_of(models + "scorer: {command: s}\nbudget: {calls: 2}\n"),
            "task.yml:1: 'problem' (the prompt) is required");
  EXPECT_EQ(error_of(models + "problem: p\nscorer: {command: s}\nbudget: {}\n"),
            "task.yml:1: 'budget' needs at least one of calls, cost_usd, wall_s");
  EXPECT_EQ(error_of(base + models + "refine: 'Do better: {answr}'\n"),
            "task.yml:5: 'refine' uses {answr}; the fields are {problem}, {answer}, {feedback}, "
            "{score} (write {{ and }} for literal braces)");
  EXPECT_EQ(error_of(base + models + "refine: 'Try again: {problem}'\n"),
            "task.yml:5: 'refine' must use {answer} or {feedback}: it refines an answer");
  EXPECT_EQ(error_of(models + "problem: p\nscorer: {command: s}\nbudget: {cost_usd: 1}\n"),
            "task.yml:1: 'budget' has only cost_usd, and no model has prices (price_input, "
            "price_output): the search would never stop; add calls or wall_s");
  EXPECT_EQ(error_of(base + models + "concurrency: 0\n"),
            "task.yml:5: 'concurrency' must be an integer in [1, 1024]");
  EXPECT_EQ(error_of(base + models + "colour: blue\n").substr(0, 36),
            "task.yml:5: unknown key 'colour' in ");
  EXPECT_NE(
      error_of(base + models + "algorithm: {name: ab-mcts-z}\n").find("task.yml:5: 'algorithm': "),
      std::string::npos);
  EXPECT_NE(error_of(base + models + "algorithm: {name: ab-mcts-a, distributon: beta}\n")
                .find("distributon"),
            std::string::npos);
  EXPECT_EQ(error_of("problem: [oops"), error_of("problem: [oops"));  // stable
  EXPECT_TRUE(error_of("problem: [oops").starts_with("task.yml:1: invalid YAML: "));
}

TEST(SearchTask, LoadsAFileAndResolvesPathsBesideIt) {
  test::TempDir dir;
  const auto file = dir.write("task.yml", R"(problem: p
models: [{name: t, backend: engine, path: m.gguf}]
scorer: {command: ./score.sh}
budget: {calls: 1}
)");
  const SearchTask t = load_search_task(file);
  EXPECT_EQ(t.file, file);
  EXPECT_EQ(t.models[0].engine.model, dir.path() / "m.gguf");
  EXPECT_EQ(t.scorer.working_dir, dir.path());
  EXPECT_THROW(load_search_task(dir / "missing.yml"), IoError);
}

}  // namespace
}  // namespace shoal
