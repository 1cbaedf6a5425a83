// Task files and datasets: what a task file turns into, and the one-line errors for bad input.
#include <gtest/gtest.h>

#include "eval/template.h"
#include "eval/test_support.h"
#include "shoal/error.h"
#include "shoal/eval.h"

namespace shoal {
namespace {

using test::TempDir;

// Runs `f`, expects an exception of type E, and returns its message (which must be one line).
template <class E, class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const E& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    return m;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return {};
  }
  ADD_FAILURE() << "no exception";
  return {};
}

const char* kChoiceData =
    R"({"q": "Q1", "options": ["aaaa", "b"], "label": 0}
{"q": "Q2", "options": ["cc", "d"], "label": 1}
)";

TEST(Template, FieldsEscapesAndErrors) {
  std::string error;
  const auto t = eval::Template::parse("{{literal}} {q}: {nested.name}", &error);
  ASSERT_TRUE(t) << error;
  EXPECT_EQ(t->fields(), (std::vector<std::string>{"q", "nested.name"}));
  const nlohmann::json rec = {{"q", 7}, {"nested", {{"name", "x"}}}};
  EXPECT_EQ(t->render(rec, "d.jsonl:3", "prompt"), "{literal} 7: x");
  EXPECT_FALSE(eval::Template::parse("open {q", &error));
  EXPECT_FALSE(eval::Template::parse("stray }", &error));
  EXPECT_FALSE(eval::Template::parse("empty {}", &error));
  const std::string m = error_of<FormatError>([&] {
    (void)t->render({{"q", 1}}, "d.jsonl:3", "prompt");
  });
  EXPECT_NE(m.find("d.jsonl:3: missing field 'nested.name' (used by prompt)"), std::string::npos)
      << m;
  const std::string m2 = error_of<FormatError>([&] {
    (void)t->render({{"q", {1, 2}}, {"nested", {{"name", "x"}}}}, "d.jsonl:4", "prompt");
  });
  EXPECT_NE(m2.find("d.jsonl:4: field 'q' is [1,2], expected a string or a number"),
            std::string::npos)
      << m2;
}

TEST(ReadJsonl, MalformedLineGivesItsNumber) {
  TempDir dir;
  const auto file = dir.write("data.jsonl", "{\"a\": 1}\n\n{\"a\": 2}\r\n{\"a\": \n");
  const std::string m = error_of<FormatError>([&] { read_jsonl(file); });
  EXPECT_EQ(m.rfind(file.string() + ":4: not a valid JSON line", 0), 0u) << m;
  const auto array = dir.write("array.jsonl", "{\"a\": 1}\n[1, 2]\n");
  const std::string m2 = error_of<FormatError>([&] { read_jsonl(array); });
  EXPECT_EQ(m2, array.string() + ":2: expected a JSON object, got [1,2]");
  const auto ok = dir.write("ok.jsonl", "{\"a\": 1}\n\n{\"a\": 2}\r\n");
  const auto records = read_jsonl(ok);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].line, 3);  // the blank line counts
  EXPECT_EQ(records[1].value.at("a"), 2);
  EXPECT_THROW(read_jsonl(dir / "missing.jsonl"), IoError);
}

TEST(TaskFile, MultipleChoiceFields) {
  TempDir dir;
  dir.write("mc.jsonl", kChoiceData);
  const auto tasks = parse_tasks(R"(kind: multiple_choice
dataset: mc.jsonl
prompt: "{q}:"
choices: options
gold: label
weight: 2.5
metric: acc_norm
)",
                                 dir / "mc.yml");
  ASSERT_EQ(tasks.size(), 1u);
  const TaskSpec& t = tasks[0];
  EXPECT_EQ(t.name, "mc");  // the file's stem
  EXPECT_EQ(t.kind, TaskKind::kMultipleChoice);
  EXPECT_EQ(t.split, "test");
  EXPECT_EQ(t.data_file, dir / "mc.jsonl");
  EXPECT_EQ(t.weight, 2.5);
  EXPECT_EQ(t.metric, "acc_norm");
  EXPECT_EQ(t.target_delimiter, " ");
  EXPECT_EQ(t.fewshot_prefix, "");
  ASSERT_EQ(t.samples.size(), 2u);
  EXPECT_EQ(t.samples[1].prompt, "Q2:");
  EXPECT_EQ(t.samples[1].choices, (std::vector<std::string>{"cc", "d"}));
  EXPECT_EQ(t.samples[1].gold, 1);
  EXPECT_EQ(t.samples[1].line, 2);
}

TEST(TaskFile, GoldAsTextLabelsOrOneBasedIndex) {
  TempDir dir;
  dir.write("g.jsonl", R"({"q": "a", "A": "x", "B": "y", "key": "B", "n": "2", "t": "y"})"
                       "\n");
  const auto gold_of = [&](const std::string& extra) {
    return parse_tasks(
               "kind: multiple_choice\ndataset: g.jsonl\nprompt: \"{q}\"\n"
               "choices: [\"{A}\", \"{B}\"]\n" +
                   extra,
               dir / "g.yml")[0]
        .samples[0];
  };
  const TaskSample s = gold_of("gold: key\ngold_labels: [A, B]\n");
  EXPECT_EQ(s.choices, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(s.gold, 1);
  EXPECT_EQ(gold_of("gold: n\ngold_base: 1\n").gold, 1);
  EXPECT_EQ(gold_of("gold: t\n").gold, 1);  // the text of a choice
  const std::string m = error_of<FormatError>([&] { gold_of("gold: n\n"); });
  EXPECT_NE(m.find("g.jsonl:1: gold \"2\" is out of range for 2 choices"), std::string::npos) << m;
}

TEST(TaskFile, FewShotPrefixFromTrainSplit) {
  TempDir dir;
  dir.write("train.jsonl", R"({"q": "T1", "options": ["yes", "no"], "label": 0}
{"q": "T2", "options": ["yes", "no"], "label": 1}
{"q": "T3", "options": ["yes", "no"], "label": 1}
)");
  dir.write("test.jsonl", kChoiceData);
  const auto t = parse_tasks(R"(name: fs
kind: multiple_choice
dataset: {train: train.jsonl, test: test.jsonl}
description: "Answer.\n\n"
prompt: "{q}:"
choices: options
gold: label
fewshot: {count: 2, separator: "\n--\n"}
limit: 1
)",
                             dir / "task.yml")[0];
  EXPECT_EQ(t.fewshot_prefix, "Answer.\n\nT1: yes\n--\nT2: no\n--\n");
  EXPECT_EQ(t.n_fewshot, 2u);
  EXPECT_EQ(t.samples.size(), 1u);  // limit
}

TEST(TaskFile, GenerationAnswerIsExtractedFromTheTarget) {
  TempDir dir;
  dir.write("g.jsonl", R"({"question": "q", "answer": "2 + 2 = 4\n#### 1,004"})"
                       "\n");
  const auto t = parse_tasks(R"y(kind: generation
dataset: g.jsonl
prompt: "Q: {question}\nA:"
target: "{answer}"
gold_extract: {regex: "#### (.*)"}
extract: last_number
normalize: {remove_commas: true}
max_tokens: 32
stop: ["\n\n", "Q:"]
)y",
                             dir / "g.yml")[0];
  EXPECT_EQ(t.samples[0].target, "2 + 2 = 4\n#### 1,004");
  EXPECT_EQ(t.samples[0].answer, "1004");
  EXPECT_EQ(t.extract.kind, Extraction::Kind::kLastNumber);
  EXPECT_EQ(t.max_tokens, 32);
  EXPECT_EQ(t.stop, (std::vector<std::string>{"\n\n", "Q:"}));
  EXPECT_TRUE(t.normalize.remove_commas);
  EXPECT_TRUE(t.normalize.strip);
  // The default stop is the few-shot separator.
  const auto d = parse_tasks(
      "kind: generation\ndataset: g.jsonl\nprompt: \"{question}\"\n"
      "target: \"{answer}\"\n",
      dir / "d.yml")[0];
  EXPECT_EQ(d.stop, (std::vector<std::string>{"\n\n"}));
  const std::string m = error_of<FormatError>([&] {
    parse_tasks(
        "kind: generation\ndataset: g.jsonl\nprompt: \"{question}\"\n"
        "target: \"{question}\"\ngold_extract: last_number\n",
        dir / "e.yml");
  });
  EXPECT_NE(m.find("g.jsonl:1: gold_extract finds no answer in the target 'q'"), std::string::npos)
      << m;
}

TEST(TaskFile, SeveralTasksInOneFile) {
  TempDir dir;
  dir.write("mc.jsonl", kChoiceData);
  dir.write("text.jsonl", R"({"body": "hello"})"
                          "\n");
  const auto tasks = parse_tasks(R"(tasks:
  - {name: a, kind: multiple_choice, dataset: mc.jsonl, prompt: "{q}", choices: options, gold: label}
  - name: b
    kind: perplexity
    dataset: text.jsonl
    text: "{body}"
    stride: 8
    metric: bits_per_byte
)",
                                 dir / "all.yml");
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[1].name, "b");
  EXPECT_EQ(tasks[1].samples[0].prompt, "hello");
  EXPECT_EQ(tasks[1].stride, 8);
  EXPECT_EQ(tasks[1].line, 3);
}

// ---- Errors: one line each, naming the file and line ------------------------------------------

class TaskFileErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.write("mc.jsonl", kChoiceData);
    dir_.write("train.jsonl", kChoiceData);
  }
  template <class E>
  std::string error(const std::string& yaml) {
    return error_of<E>([&] { parse_tasks(yaml, dir_ / "task.yml"); });
  }
  std::string file() const { return (dir_ / "task.yml").string(); }
  TempDir dir_;
};

constexpr const char* kMcBody =
    "dataset: mc.jsonl\nprompt: \"{q}\"\nchoices: options\ngold: label\n";

TEST_F(TaskFileErrors, UnknownKeyWithLine) {
  const std::string m = error<ConfigError>(
      "kind: multiple_choice\ndataset: mc.jsonl\nchoices: options\npromt: \"{q}\"\ngold: label\n");
  EXPECT_EQ(m.rfind(file() + ":4: unknown key 'promt' in the task (expected: name, kind,", 0), 0u)
      << m;
  const std::string nested = error<ConfigError>(std::string("kind: multiple_choice\n") + kMcBody +
                                                "fewshot:\n  count: 1\n  seperator: x\n");
  EXPECT_EQ(nested.rfind(file() + ":8: unknown key 'seperator' in fewshot", 0), 0u) << nested;
}

TEST_F(TaskFileErrors, KeyOfAnotherKind) {
  const std::string m =
      error<ConfigError>("kind: perplexity\ndataset: mc.jsonl\ntext: \"{q}\"\nchoices: options\n");
  EXPECT_EQ(m.rfind(file() + ":4: key 'choices' does not apply to kind perplexity", 0), 0u) << m;
}

TEST_F(TaskFileErrors, UnknownTaskKind) {
  const std::string m = error<ConfigError>(std::string("name: x\nkind: ranking\n") + kMcBody);
  EXPECT_EQ(m, file() +
                   ":2: unknown task kind 'ranking' (expected one of: multiple_choice, "
                   "generation, perplexity)");
  const std::string missing = error<ConfigError>(kMcBody);
  EXPECT_NE(missing.find(":1: missing 'kind'"), std::string::npos) << missing;
}

TEST_F(TaskFileErrors, MissingFieldNamesFieldFileAndLine) {
  dir_.write("holes.jsonl", R"({"q": "Q1", "options": ["a", "b"], "label": 0}
{"options": ["a", "b"], "label": 0}
)");
  const std::string m = error<FormatError>(
      "kind: multiple_choice\ndataset: holes.jsonl\nprompt: \"Question: {q}\"\n"
      "choices: options\ngold: label\n");
  EXPECT_EQ(m, (dir_ / "holes.jsonl").string() + ":2: missing field 'q' (used by prompt, " +
                   file() + ":3)");
  const std::string choices = error<FormatError>(
      "kind: multiple_choice\ndataset: holes.jsonl\nprompt: \"x\"\nchoices: opts\ngold: label\n");
  EXPECT_NE(choices.find("holes.jsonl:1: missing field 'opts'"), std::string::npos) << choices;
}

TEST_F(TaskFileErrors, MalformedDatasetLine) {
  dir_.write("bad.jsonl", "{\"q\": \"a\", \"options\": [\"x\"], \"label\": 0}\n{\"q\": oops}\n");
  const std::string m = error<FormatError>(
      "kind: multiple_choice\ndataset: bad.jsonl\nprompt: \"{q}\"\nchoices: options\ngold: "
      "label\n");
  EXPECT_EQ(m.rfind((dir_ / "bad.jsonl").string() + ":2: not a valid JSON line", 0), 0u) << m;
}

TEST_F(TaskFileErrors, FewShotFromTheEvaluatedSplitIsRefused) {
  const std::string same_split = error<ConfigError>(std::string("kind: multiple_choice\n") +
                                                    kMcBody + "fewshot: {count: 1, split: test}\n");
  EXPECT_EQ(same_split.rfind(file() + ":6: few-shot examples would come from the evaluated split "
                                      "'test'",
                             0),
            0u)
      << same_split;
  // Another split name for the same file is refused too.
  const std::string same_file = error<ConfigError>(
      "kind: multiple_choice\ndataset: {train: ./mc.jsonl, test: mc.jsonl}\nprompt: \"{q}\"\n"
      "choices: options\ngold: label\nfewshot: {count: 1}\n");
  EXPECT_NE(same_file.find(":6: few-shot examples would come from the evaluated split"),
            std::string::npos)
      << same_file;
  // A single dataset file is the test split: there is no train split to draw from.
  const std::string no_train = error<ConfigError>(std::string("kind: multiple_choice\n") + kMcBody +
                                                  "fewshot: {count: 1}\n");
  EXPECT_NE(no_train.find(":6: few-shot split 'train' is not in dataset"), std::string::npos)
      << no_train;
  const std::string too_many = error<ConfigError>(
      "kind: multiple_choice\ndataset: {train: train.jsonl, test: mc.jsonl}\nprompt: \"{q}\"\n"
      "choices: options\ngold: label\nfewshot: {count: 3}\n");
  EXPECT_NE(too_many.find(":6: fewshot count 3 but"), std::string::npos) << too_many;
}

TEST_F(TaskFileErrors, ValuesAndStructure) {
  const std::string kind = "kind: multiple_choice\n";
  // An unquoted template starting with '{' is a YAML mapping.
  EXPECT_NE(error<ConfigError>(kind + "dataset: mc.jsonl\nprompt: {q}\nchoices: options\n"
                                      "gold: label\n")
                .find(":3: prompt must be a string; quote a template"),
            std::string::npos);
  EXPECT_NE(
      error<ConfigError>(kind + kMcBody + "prompt: x\n").find(":6: key 'prompt' appears twice"),
      std::string::npos);
  EXPECT_NE(error<ConfigError>(kind + kMcBody + "limit: 0\n").find(":6: limit must be at least 1"),
            std::string::npos);
  EXPECT_NE(error<ConfigError>(kind + kMcBody + "metric: f1\n").find(":6: metric 'f1' is not one"),
            std::string::npos);
  EXPECT_NE(error<ConfigError>(kind + kMcBody + "split: dev\n").find(":6: split 'dev' is not in"),
            std::string::npos);
  EXPECT_NE(error<ConfigError>(kind + "dataset: mc.jsonl\nprompt: \"{q\"\nchoices: options\n"
                                      "gold: label\n")
                .find(":3: prompt: '{' at offset 0 is not closed"),
            std::string::npos);
  EXPECT_NE(error<ConfigError>(kind + "dataset: mc.jsonl\nprompt: x\ngold: label\n")
                .find(":1: missing 'choices'"),
            std::string::npos);
  EXPECT_NE(error<ConfigError>("kind: generation\ndataset: mc.jsonl\nprompt: x\ntarget: y\n"
                               "extract: {regex: \"(\"}\n")
                .find(":5: invalid regex '('"),
            std::string::npos);
  EXPECT_NE(error<ConfigError>("kind: [a\n").find("invalid YAML"), std::string::npos);
  EXPECT_THROW(parse_tasks(kind + "dataset: nowhere.jsonl\nprompt: x\nchoices: [a]\ngold: g\n",
                           dir_ / "task.yml"),
               IoError);
}

}  // namespace
}  // namespace shoal
