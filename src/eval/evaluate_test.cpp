// evaluate() against the fake backend of test_support.h, whose scores are computed by hand here:
// ln p(t | previous) = -0.5 for a repeated token, else -1; tokens are bytes; BOS is id 256.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "eval/test_support.h"
#include "shoal/error.h"
#include "shoal/eval.h"

namespace shoal {
namespace {

using test::FakeBackend;
using test::TempDir;

std::vector<int32_t> bytes(std::string_view s) {
  return std::vector<int32_t>(s.begin(), s.end());
}
std::vector<int32_t> bos_and(std::string_view s) {
  std::vector<int32_t> ids{FakeBackend::kBos};
  for (char c : s) ids.push_back(static_cast<unsigned char>(c));
  return ids;
}

// Choices: " aaaa" after ':' = -1 (space) -1 (a) -0.5 * 3 = -3.5, per byte of "aaaa": -0.875.
// Per sample, (raw logprobs) -> pred, (per byte) -> pred_norm, gold:
//   Q1 [-3.5, -2]   -> 1, [-0.875, -2]    -> 0, gold 0: acc 0, acc_norm 1
//   Q2 [-2.5, -2]   -> 1, [-1.25, -2]     -> 0, gold 1: acc 1, acc_norm 0
//   Q3 [-4, -2.5]   -> 1, [-1.333, -1.25] -> 1, gold 1: acc 1, acc_norm 1
//   Q4 [-3, -2]     -> 1, [-1, -2]        -> 0, gold 0: acc 0, acc_norm 1
// acc = 2/4, acc_norm = 3/4.
const char* kChoiceData = R"({"q": "Q1", "options": ["aaaa", "b"], "label": 0}
{"q": "Q2", "options": ["cc", "d"], "label": 1}
{"q": "Q3", "options": ["xyz", "ww"], "label": "ww"}
{"q": "Q4", "options": ["eee", "f"], "label": 0}
)";

const char* kChoiceTask = R"(kind: multiple_choice
dataset: mc.jsonl
prompt: "{q}:"
choices: options
gold: label
)";

// Gold answers by last number: "1,234" -> 1234, "-7", "2.5", "12". Outputs (cut at "\n\n"):
//   " It is 1,234."               -> 1234: match
//   " minus 3-5 gives x = -7.00"  -> -7 (numbers: true): match
//   " 2.50 or 3"                  -> 3: no match
//   " no number"                  -> nothing: no match
const char* kGenData = R"({"question": "one", "answer": "so #### 1,234"}
{"question": "two", "answer": "#### -7"}
{"question": "three", "answer": "#### 2.5"}
{"question": "four", "answer": "#### 12"}
)";

const char* kGenTask = R"(kind: generation
dataset: gen.jsonl
prompt: "Q: {question}\nA:"
target: "{answer}"
gold_extract: last_number
extract: last_number
normalize: {remove_commas: true, numbers: true}
max_tokens: 16
)";

// "aabbb" after BOS: -1 (a) -0.5 (a) -1 (b) -0.5 (b) -0.5 (b) = -3.5 over 5 tokens;
// "ab": -1 -1 = -2 over 2 tokens. Total NLL 5.5 over 7 tokens and 7 bytes.
const char* kTextData = R"({"body": "aabbb"}
{"body": "ab"}
)";

const char* kTextTask = R"(kind: perplexity
dataset: text.jsonl
text: "{body}"
)";

class Evaluate : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.write("mc.jsonl", kChoiceData);
    dir_.write("gen.jsonl", kGenData);
    dir_.write("text.jsonl", kTextData);
    backend_.replies = {{"<s>Q: one\nA:", " It is 1,234.\n\nQ: next"},
                        {"<s>Q: two\nA:", " minus 3-5 gives x = -7.00"},
                        {"<s>Q: three\nA:", " 2.50 or 3"},
                        {"<s>Q: four\nA:", " no number"}};
  }
  TaskSpec task(const std::string& yaml, const std::string& name = "task") {
    auto tasks = parse_tasks(yaml, dir_ / (name + ".yml"));
    EXPECT_EQ(tasks.size(), 1u);
    return tasks.at(0);
  }
  TaskResult run(const TaskSpec& t, EvalOptions options = {}) {
    options.keep_samples = true;
    EvalResult r = evaluate(backend_, std::span<const TaskSpec>(&t, 1), options);
    EXPECT_EQ(r.tasks.size(), 1u);
    return r.tasks.at(0);
  }

  TempDir dir_;
  FakeBackend backend_;
};

TEST_F(Evaluate, MultipleChoiceRawAndLengthNormalisedDiffer) {
  const TaskResult r = run(task(kChoiceTask));
  EXPECT_EQ(r.n_samples, 4u);
  EXPECT_DOUBLE_EQ(r.metrics.at("acc"), 0.5);
  EXPECT_DOUBLE_EQ(r.metrics.at("acc_norm"), 0.75);
  EXPECT_DOUBLE_EQ(r.metrics.at("acc_stderr"), std::sqrt(0.5 * 0.5 / 3));
  EXPECT_DOUBLE_EQ(r.metrics.at("acc_norm_stderr"), std::sqrt(0.75 * 0.25 / 3));
  EXPECT_EQ(r.metric, "acc");
  EXPECT_DOUBLE_EQ(r.score, 0.5);
  ASSERT_EQ(r.samples.size(), 4u);
  EXPECT_EQ(r.samples[0]["logprobs"], nlohmann::json({-3.5, -2.0}));
  EXPECT_EQ(r.samples[0]["pred"], 1);
  EXPECT_EQ(r.samples[0]["pred_norm"], 0);
  EXPECT_EQ(r.samples[0]["greedy"], nlohmann::json({false, false}));
  EXPECT_EQ(r.samples[2]["gold"], 1);  // gold given as the choice's text
  EXPECT_EQ(r.samples[2]["logprobs"], nlohmann::json({-4.0, -2.5}));
  // The context is the prompt; the continuation is the delimiter and the choice.
  const LoglikelihoodRequest& first = backend_.ll_calls.at(0).at(0);
  EXPECT_EQ(first.context, bos_and("Q1:"));
  EXPECT_EQ(first.continuation, bytes(" aaaa"));
}

TEST_F(Evaluate, MultipleChoiceGreedyTiesAndWhitespace) {
  dir_.write("z.jsonl", R"({"q": "z", "options": ["zzz", "y"], "label": 0})"
                        "\n");
  // No delimiter: "zzz" after "z" = -1.5 and greedy; "y" = -1. Per byte -0.5 vs -1.
  TaskResult r =
      run(task("kind: multiple_choice\ndataset: z.jsonl\nprompt: \"{q}\"\n"
               "choices: options\ngold: label\ntarget_delimiter: \"\"\n"));
  EXPECT_EQ(r.samples[0]["logprobs"], nlohmann::json({-1.5, -1.0}));
  EXPECT_EQ(r.samples[0]["greedy"], nlohmann::json({true, false}));
  EXPECT_DOUBLE_EQ(r.metrics.at("acc"), 0.0);
  EXPECT_DOUBLE_EQ(r.metrics.at("acc_norm"), 1.0);
  EXPECT_TRUE(std::isnan(r.metrics.at("acc_stderr")));  // one sample
  // Trailing whitespace of the prompt moves to the continuation.
  backend_.ll_calls.clear();
  run(
      task("kind: multiple_choice\ndataset: z.jsonl\nprompt: \"{q}: \"\n"
           "choices: options\ngold: label\ntarget_delimiter: \"\"\n"));
  EXPECT_EQ(backend_.ll_calls.at(0).at(0).context, bos_and("z:"));
  EXPECT_EQ(backend_.ll_calls.at(0).at(0).continuation, bytes(" zzz"));
}

TEST_F(Evaluate, MultipleChoiceContextIsCutFromTheLeft) {
  backend_.context = 6;  // reads ctx + cont - 1 <= 6: " aaaa" (5 tokens) keeps 2 context tokens
  const TaskResult r = run(task(kChoiceTask), {.limit = 1});
  EXPECT_EQ(backend_.ll_calls.at(0).at(0).context, bytes("1:"));
  EXPECT_EQ(r.samples[0]["logprobs"], nlohmann::json({-3.5, -2.0}));
  backend_.context = 4;  // " aaaa" alone does not fit
  EXPECT_THROW(run(task(kChoiceTask)), ConfigError);
}

TEST_F(Evaluate, FewShotPromptAssembly) {
  dir_.write("train.jsonl", R"({"q": "T1", "options": ["yes", "no"], "label": 0}
{"q": "T2", "options": ["yes", "no"], "label": 1}
)");
  const TaskSpec t = task(R"(kind: multiple_choice
dataset: {train: train.jsonl, test: mc.jsonl}
description: "Answer.\n\n"
prompt: "{q}:"
choices: options
gold: label
fewshot: {count: 2}
)");
  run(t, {.limit = 1});
  const LoglikelihoodRequest& r = backend_.ll_calls.at(0).at(0);
  EXPECT_EQ(backend_.decode(r.context), "<s>Answer.\n\nT1: yes\n\nT2: no\n\nQ1:");
  EXPECT_EQ(backend_.decode(r.continuation), " aaaa");

  dir_.write("gen_train.jsonl", R"({"question": "t1", "answer": "r1 #### 1"})"
                                "\n");
  const TaskSpec g = task(R"(kind: generation
dataset: {train: gen_train.jsonl, test: gen.jsonl}
prompt: "Q: {question}\nA:"
target: "{answer}"
fewshot: {count: 1, separator: "\n###\n"}
max_tokens: 16
)");
  run(g, {.limit = 1});
  const GenerationRequest& q = backend_.gen_calls.at(0).at(0);
  EXPECT_EQ(backend_.decode(q.prompt), "<s>Q: t1\nA: r1 #### 1\n###\nQ: one\nA:");
  EXPECT_EQ(q.stop, (std::vector<std::string>{"\n###\n"}));  // the separator by default
}

TEST_F(Evaluate, GenerationLastNumberExactMatch) {
  const TaskResult r = run(task(kGenTask));
  EXPECT_DOUBLE_EQ(r.metrics.at("exact_match"), 0.5);
  EXPECT_DOUBLE_EQ(r.metrics.at("exact_match_stderr"), std::sqrt(0.25 / 3));
  EXPECT_DOUBLE_EQ(r.score, 0.5);
  ASSERT_EQ(r.samples.size(), 4u);
  EXPECT_EQ(r.samples[0]["output"], " It is 1,234.");  // cut at the stop string
  EXPECT_EQ(r.samples[0]["extracted"], "1,234");
  EXPECT_EQ(r.samples[0]["prediction"], "1234");
  EXPECT_EQ(r.samples[0]["answer"], "1234");
  EXPECT_EQ(r.samples[1]["extracted"], "-7.00");
  EXPECT_EQ(r.samples[1]["prediction"], "-7");
  EXPECT_EQ(r.samples[1]["exact_match"], 1);
  EXPECT_EQ(r.samples[2]["prediction"], "3");
  EXPECT_EQ(r.samples[2]["answer"], "2.5");
  EXPECT_TRUE(r.samples[3]["extracted"].is_null());
  EXPECT_EQ(r.samples[3]["exact_match"], 0);
  const GenerationRequest& q = backend_.gen_calls.at(0).at(0);
  EXPECT_EQ(q.prompt, bos_and("Q: one\nA:"));
  EXPECT_EQ(q.max_tokens, 16);
  EXPECT_EQ(q.stop, (std::vector<std::string>{"\n\n"}));
}

TEST_F(Evaluate, GenerationRegexExactMatch) {
  // "is (...)", last match: " It is 1,234." -> "1,234." -> ignore "\.$", commas -> "1234".
  // The others have no "is ": only the first matches.
  const TaskResult r = run(task(R"y(kind: generation
dataset: gen.jsonl
prompt: "Q: {question}\nA:"
target: "{answer}"
gold_extract: {regex: "#### (.*)"}
extract: {regex: "is (-?[0-9.,]+)", match: last}
normalize: {ignore: ["\\.$"], remove_commas: true}
stop: []
max_tokens: 16
)y"));
  EXPECT_DOUBLE_EQ(r.metrics.at("exact_match"), 0.25);
  EXPECT_EQ(r.samples[0]["output"], " It is 1,234.\n\nQ: next");  // no stop strings
  EXPECT_EQ(r.samples[0]["extracted"], "1,234.");
  EXPECT_EQ(r.samples[0]["prediction"], "1234");
  EXPECT_EQ(r.samples[1]["answer"], "-7");
}

TEST_F(Evaluate, GenerationPromptKeepsItsEnd) {
  backend_.context = 20;  // 16 new tokens leave 4 for the prompt
  run(task(kGenTask), {.limit = 1});
  EXPECT_EQ(backend_.gen_calls.at(0).at(0).prompt, bytes("e\nA:"));
  backend_.context = 16;
  EXPECT_THROW(run(task(kGenTask)), ConfigError);
}

TEST_F(Evaluate, PerplexityByHand) {
  const TaskResult r = run(task(kTextTask));
  EXPECT_DOUBLE_EQ(r.metrics.at("total_nll"), 5.5);
  EXPECT_DOUBLE_EQ(r.metrics.at("token_count"), 7);
  EXPECT_DOUBLE_EQ(r.metrics.at("byte_count"), 7);
  EXPECT_DOUBLE_EQ(r.metrics.at("perplexity"), std::exp(5.5 / 7));
  EXPECT_DOUBLE_EQ(r.metrics.at("bits_per_byte"), 5.5 / (7 * std::log(2.0)));
  EXPECT_DOUBLE_EQ(r.score, -5.5 / 7);  // -ln(perplexity)
  EXPECT_EQ(r.samples[0]["nll"], 3.5);
  EXPECT_EQ(r.samples[0]["token_count"], 5);
  EXPECT_EQ(r.samples[0]["windows"], 1);
  // One window per text: everything after BOS.
  ASSERT_EQ(backend_.ll_calls.size(), 1u);
  EXPECT_EQ(backend_.ll_calls[0][0].context, (std::vector<int32_t>{FakeBackend::kBos}));
  EXPECT_EQ(backend_.ll_calls[0][0].continuation, bytes("aabbb"));
}

TEST_F(Evaluate, PerplexityRollingWindows) {
  using Ids = std::vector<int32_t>;
  const Ids bos{FakeBackend::kBos};
  // Context of 3: x = BOS a a b b b. The first window predicts x[1..3] from BOS; the next
  // predicts the last two with the tokens before them that fit (a b).
  backend_.context = 3;
  TaskResult r = run(task(kTextTask));
  EXPECT_DOUBLE_EQ(r.metrics.at("total_nll"), 5.5);
  EXPECT_DOUBLE_EQ(r.metrics.at("token_count"), 7);
  auto calls = backend_.ll_calls;
  ASSERT_EQ(calls.size(), 1u);
  ASSERT_EQ(calls[0].size(), 3u);
  EXPECT_EQ(calls[0][0].context, bos);
  EXPECT_EQ(calls[0][0].continuation, bytes("aab"));
  EXPECT_EQ(calls[0][1].context, bytes("ab"));
  EXPECT_EQ(calls[0][1].continuation, bytes("bb"));
  EXPECT_EQ(calls[0][2].context, bos);
  EXPECT_EQ(calls[0][2].continuation, bytes("ab"));
  EXPECT_EQ(r.samples[0]["windows"], 2);

  // stride 1: after the first window, one token at a time with a full context.
  backend_.ll_calls.clear();
  r = run(task(std::string(kTextTask) + "stride: 1\n"));
  EXPECT_DOUBLE_EQ(r.metrics.at("total_nll"), 5.5);
  calls = backend_.ll_calls;
  ASSERT_EQ(calls[0].size(), 4u);
  EXPECT_EQ(calls[0][1].context, bytes("aab"));
  EXPECT_EQ(calls[0][1].continuation, bytes("b"));
  EXPECT_EQ(calls[0][2].context, bytes("abb"));
  EXPECT_EQ(calls[0][2].continuation, bytes("b"));

  // Without a BOS token the first token is context only: "aabbb" scores -0.5 -1 -0.5 -0.5 over
  // 4 tokens, "ab" -1 over 1.
  backend_.has_bos = false;
  backend_.ll_calls.clear();
  r = run(task(kTextTask));
  EXPECT_DOUBLE_EQ(r.metrics.at("total_nll"), 3.5);
  EXPECT_DOUBLE_EQ(r.metrics.at("token_count"), 5);
  calls = backend_.ll_calls;
  EXPECT_EQ(calls[0][0].context, bytes("a"));
  EXPECT_EQ(calls[0][0].continuation, bytes("abb"));
  EXPECT_EQ(calls[0][1].context, bytes("abb"));
  EXPECT_EQ(calls[0][1].continuation, bytes("b"));

  backend_.context = 3;
  EXPECT_THROW(run(task(std::string(kTextTask) + "stride: 4\n")), ConfigError);
}

TEST_F(Evaluate, BatchesUpToTheBatchSize) {
  const TaskSpec t = task(kChoiceTask);
  std::vector<std::pair<size_t, size_t>> progress;
  EvalOptions options;
  options.batch_size = 3;
  options.on_progress = [&](const std::string& name, size_t done, size_t total) {
    EXPECT_EQ(name, "task");
    progress.emplace_back(done, total);
  };
  const TaskResult small = run(t, options);
  std::vector<size_t> sizes;
  for (const auto& call : backend_.ll_calls) sizes.push_back(call.size());
  EXPECT_EQ(sizes, (std::vector<size_t>{3, 3, 2}));  // 4 samples x 2 choices
  EXPECT_EQ(progress, (std::vector<std::pair<size_t, size_t>>{{3, 8}, {6, 8}, {8, 8}}));

  backend_.ll_calls.clear();
  options.batch_size = 100;
  const TaskResult big = run(t, options);
  ASSERT_EQ(backend_.ll_calls.size(), 1u);  // every request in one call
  EXPECT_EQ(backend_.ll_calls[0].size(), 8u);
  EXPECT_EQ(small.metrics, big.metrics);
  EXPECT_EQ(small.samples, big.samples);

  options.batch_size = 3;
  run(task(kGenTask), options);
  ASSERT_EQ(backend_.gen_calls.size(), 1u + 1u);
  EXPECT_EQ(backend_.gen_calls[0].size(), 3u);
  EXPECT_EQ(backend_.gen_calls[1].size(), 1u);
}

TEST_F(Evaluate, WeightedScoreAndJson) {
  std::vector<TaskSpec> tasks = {
      task(std::string(kChoiceTask) + "weight: 2\nmetric: acc_norm\n", "mc"), task(kGenTask, "gen"),
      task(std::string(kTextTask) + "weight: 0.5\n", "text")};
  EvalOptions options;
  options.keep_samples = true;
  const EvalResult r = evaluate(backend_, tasks, options);
  const double expected = 2 * 0.75 + 1 * 0.5 + 0.5 * (-5.5 / 7);
  EXPECT_DOUBLE_EQ(r.score, expected);
  const nlohmann::json j = to_json(r);
  EXPECT_DOUBLE_EQ(j.at("score").get<double>(), expected);
  const auto& mc = j.at("results").at("mc");
  EXPECT_EQ(mc.at("kind"), "multiple_choice");
  EXPECT_EQ(mc.at("samples"), 4);
  EXPECT_EQ(mc.at("metric"), "acc_norm");
  EXPECT_EQ(mc.at("weight"), 2.0);
  EXPECT_EQ(mc.at("acc"), 0.5);
  EXPECT_EQ(mc.at("acc_norm"), 0.75);
  EXPECT_EQ(j.at("results").at("gen").at("exact_match"), 0.5);
  EXPECT_EQ(j.at("results").at("text").at("token_count"), 7.0);
  EXPECT_EQ(j.at("results").at("text").at("total_nll"), 5.5);

  std::ostringstream out;
  write_samples_jsonl(out, r);
  std::istringstream lines(out.str());
  std::string line;
  std::vector<nlohmann::json> records;
  while (std::getline(lines, line)) records.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(records.size(), 4u + 4u + 2u);
  EXPECT_EQ(records[0].at("task"), "mc");
  EXPECT_EQ(records[0].at("line"), 1);
  EXPECT_EQ(records[4].at("task"), "gen");
  EXPECT_EQ(records[9].at("task"), "text");
  EXPECT_EQ(records[9].at("index"), 1);

  // Without keep_samples no records are kept; the limit caps every task.
  options = {};
  options.limit = 2;
  const EvalResult capped = evaluate(backend_, tasks, options);
  EXPECT_TRUE(capped.tasks[0].samples.empty());
  EXPECT_EQ(capped.tasks[0].n_samples, 2u);
  EXPECT_EQ(capped.tasks[2].metrics.at("token_count"), 7.0);
}

TEST_F(Evaluate, Errors) {
  std::vector<TaskSpec> twice = {task(kChoiceTask), task(kChoiceTask)};
  EXPECT_THROW(evaluate(backend_, twice), ConfigError);

  class Broken : public FakeBackend {
    std::vector<LoglikelihoodResult> loglikelihood(std::span<const LoglikelihoodRequest>) override {
      return {};
    }
  } broken;
  const TaskSpec t = task(kChoiceTask);
  try {
    evaluate(broken, std::span<const TaskSpec>(&t, 1));
    ADD_FAILURE() << "no exception";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "evaluation backend returned 0 results for 8 requests (task task)");
  }
  EvalOptions zero;
  zero.limit = 0;
  EXPECT_THROW(evaluate(backend_, std::span<const TaskSpec>(&t, 1), zero), ConfigError);
}

}  // namespace
}  // namespace shoal
