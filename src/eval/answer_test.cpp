// Answer extraction and normalisation, including the real GSM8K test set: the number after
// "#### " in each gold answer must be what last-number extraction finds.
#include <gtest/gtest.h>

#include "core/test_support.h"

#include <filesystem>

#include "shoal/error.h"
#include "shoal/eval.h"

namespace shoal {
namespace {

TEST(LastNumber, SignsCommasDecimals) {
  EXPECT_EQ(last_number("She makes 9 * 2 = $18 every day.\n#### 18"), "18");
  EXPECT_EQ(last_number("It costs $1,234.50."), "1,234.50");
  EXPECT_EQ(last_number("x = -7"), "-7");
  EXPECT_EQ(last_number("-3.25"), "-3.25");
  EXPECT_EQ(last_number("from 3-5"), "5");       // a hyphen between numbers is not a sign
  EXPECT_EQ(last_number("the x-2 model"), "2");  // nor one glued to a word
  EXPECT_EQ(last_number("(-4)"), "-4");
  EXPECT_EQ(last_number("1,000,000 people,"), "1,000,000");  // a trailing comma is not kept
  EXPECT_EQ(last_number("3, 4 and 5."), "5");    // a sentence's period is not a decimal point
  EXPECT_EQ(last_number("0.5 then .75"), "75");  // a decimal needs a leading digit
  EXPECT_EQ(last_number("no digits here"), std::nullopt);
  EXPECT_EQ(last_number(""), std::nullopt);
}

TEST(ExtractAnswer, RegexFirstLastAndGroups) {
  Extraction x{Extraction::Kind::kRegex, "answer is (-?[0-9.,]+)", false};
  const std::string text = "The answer is 12 - no, the answer is -1,300.";
  EXPECT_EQ(extract_answer(x, text), "12");
  x.last_match = true;
  EXPECT_EQ(extract_answer(x, text), "-1,300.");  // the pattern itself allows the period
  // Without a group, the whole match; with alternatives, the group that took part.
  EXPECT_EQ(extract_answer({Extraction::Kind::kRegex, "[A-D]\\)", false}, "pick C) now"), "C)");
  EXPECT_EQ(
      extract_answer({Extraction::Kind::kRegex, "#### (\\d+)|final: (\\w+)", false}, "final: yes"),
      "yes");
  EXPECT_EQ(extract_answer(x, "nothing"), std::nullopt);
  EXPECT_EQ(extract_answer({}, "  as is "), "  as is ");
  EXPECT_EQ(extract_answer({Extraction::Kind::kLastNumber, "", false}, "1 then 2"), "2");
  EXPECT_THROW(extract_answer({Extraction::Kind::kRegex, "(unclosed", false}, "x"), ConfigError);
}

TEST(NormalizeAnswer, Options) {
  EXPECT_EQ(normalize_answer({}, "  Yes \n"), "Yes");  // strip is on by default
  Normalization n;
  n.strip = false;
  EXPECT_EQ(normalize_answer(n, " Yes "), " Yes ");
  n = {};
  n.lower = true;
  EXPECT_EQ(normalize_answer(n, "YeS"), "yes");
  n = {};
  n.remove_commas = true;
  EXPECT_EQ(normalize_answer(n, "1,234,567 and a, b"), "1234567 and a, b");
  n = {};
  n.numbers = true;
  EXPECT_EQ(normalize_answer(n, "+018.50"), "18.5");
  EXPECT_EQ(normalize_answer(n, "-0.00"), "0");
  EXPECT_EQ(normalize_answer(n, "1,000"), "1000");
  EXPECT_EQ(normalize_answer(n, "18."), "18");
  EXPECT_EQ(normalize_answer(n, ".5"), "0.5");
  EXPECT_EQ(normalize_answer(n, "-7"), "-7");
  EXPECT_EQ(normalize_answer(n, "18 eggs"), "18 eggs");  // not one number: unchanged
  EXPECT_EQ(normalize_answer(n, "1,00,"), "1,00,");
  n = {};
  n.ignore = {"\\$", "\\.$"};
  EXPECT_EQ(normalize_answer(n, " $18. "), "18");  // stripped before and after the regexes
}

TEST(Gsm8k, LastNumberOfEveryGoldAnswerIsTheNumberAfterHashes) {
  const auto file = test::shared_data_dir() / "gsm8k" / "test.jsonl";
  ASSERT_TRUE(std::filesystem::exists(file))
      << file << " is missing: set SHOAL_SHARED_DATA to the shared/data folder";
  const std::vector<JsonlRecord> records = read_jsonl(file);
  ASSERT_EQ(records.size(), 1319u);
  size_t with_commas = 0;
  for (const JsonlRecord& r : records) {
    const std::string answer = r.value.at("answer").get<std::string>();
    const size_t hashes = answer.rfind("#### ");
    ASSERT_NE(hashes, std::string::npos) << "line " << r.line;
    const std::string expected = answer.substr(hashes + 5);
    EXPECT_EQ(last_number(answer), expected) << "line " << r.line;
    with_commas += expected.find(',') != std::string::npos;
  }
  EXPECT_EQ(with_commas, 14u);  // counted with Python: "2,125", "1,450,000", ...

  // The same through a generation task: its gold answers are what exact match compares with.
  const auto tasks = parse_tasks("kind: generation\ndataset: \"" + file.string() +
                                     "\"\nprompt: \"Question: {question}\\nAnswer:\"\n"
                                     "target: \"{answer}\"\ngold_extract: last_number\n",
                                 "gsm8k.yml");
  ASSERT_EQ(tasks.size(), 1u);
  ASSERT_EQ(tasks[0].samples.size(), 1319u);
  for (size_t i = 0; i < records.size(); ++i) {
    const std::string answer = records[i].value.at("answer").get<std::string>();
    EXPECT_EQ(tasks[0].samples[i].answer, answer.substr(answer.rfind("#### ") + 5));
    EXPECT_EQ(tasks[0].samples[i].prompt,
              "Question: " + records[i].value.at("question").get<std::string>() + "\nAnswer:");
  }
}

}  // namespace
}  // namespace shoal
