// The text operations of the population search, on hand-written cases: EVOLVE blocks,
// SEARCH/REPLACE diffs (applied, and every way one fails), fenced code, rewrites spliced into
// the parent, MinHash against the exact Jaccard similarity of shingle sets, the evaluator's JSON,
// and the parameters' checks.
#include <gtest/gtest.h>

#include <set>

#include "search/population_diff.h"
#include "search/population_eval.h"
#include "search/population_novelty.h"
#include "shoal/error.h"
#include "shoal/population.h"

namespace shoal::search {
namespace {

const std::string kProgram =
    "import math\n"
    "# EVOLVE-BLOCK-START\n"
    "def f(x):\n"
    "    return x + 1\n"
    "\n"
    "def g(x):\n"
    "    return x + 1\n"
    "# EVOLVE-BLOCK-END\n"
    "def frozen():\n"
    "    return 42\n";

std::string block(const std::string& search, const std::string& replace) {
  return "<<<<<<< SEARCH\n" + search + "=======\n" + replace + ">>>>>>> REPLACE\n";
}

TEST(EvolveRanges, MarkersAndWholeProgram) {
  const auto r = evolve_ranges(split_lines(kProgram));
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0], std::make_pair(size_t{2}, size_t{7}));
  const auto whole = evolve_ranges(split_lines("a\nb\n"));
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ((*whole)[0], std::make_pair(size_t{0}, size_t{2}));
  EXPECT_FALSE(evolve_ranges(split_lines("# EVOLVE-BLOCK-START\nx\n")).has_value());
  EXPECT_FALSE(evolve_ranges(split_lines("# EVOLVE-BLOCK-END\n")).has_value());
}

TEST(SearchReplace, AppliesInOrder) {
  const std::string answer =
      "I change f, then the new f again.\n" +
      block("def f(x):\n    return x + 1\n", "def f(x):\n    return x * 2\n") + "and\n" +
      block("    return x * 2\n", "    return x * 3\n");
  const PatchResult r = apply_search_replace(kProgram, answer);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.blocks, 2);
  EXPECT_EQ(r.code,
            "import math\n# EVOLVE-BLOCK-START\ndef f(x):\n    return x * 3\n\ndef g(x):\n"
            "    return x + 1\n# EVOLVE-BLOCK-END\ndef frozen():\n    return 42\n");
}

TEST(SearchReplace, TrailingWhitespaceIsForgiven) {
  const PatchResult r = apply_search_replace(kProgram, block("def g(x):   \n", "def g(y):\n"));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_NE(r.code.find("def g(y):\n    return x + 1"), std::string::npos);
}

TEST(SearchReplace, EveryFailureIsNamed) {
  // Nothing matches.
  PatchResult r = apply_search_replace(kProgram, block("    return x - 1\n", "pass\n"));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error,
            "SEARCH block 1 does not match any lines of the program's EVOLVE-BLOCK (first line: "
            "'    return x - 1')");
  // Ambiguous: "return x + 1" is in f and in g.
  r = apply_search_replace(kProgram, block("    return x + 1\n", "    return 0\n"));
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("matches 2 places"), std::string::npos) << r.error;
  // Frozen code outside the block.
  r = apply_search_replace(kProgram, block("    return 42\n", "    return 43\n"));
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("outside the EVOLVE-BLOCK"), std::string::npos) << r.error;
  // No block at all, an unclosed one, a missing separator, a removed marker.
  r = apply_search_replace(kProgram, "just prose");
  EXPECT_NE(r.error.find("no SEARCH/REPLACE block"), std::string::npos);
  r = apply_search_replace(kProgram, "<<<<<<< SEARCH\ndef f(x):\n=======\nx\n");
  EXPECT_NE(r.error.find("not closed"), std::string::npos);
  r = apply_search_replace(kProgram, "<<<<<<< SEARCH\ndef f(x):\n>>>>>>> REPLACE\n");
  EXPECT_NE(r.error.find("malformed"), std::string::npos);
  r = apply_search_replace(kProgram, block("def g(x):\n    return x + 1\n# EVOLVE-BLOCK-END\n",
                                           "def g(x):\n    return 1\n"));
  EXPECT_FALSE(r.ok);  // the END marker line is outside the editable range
  // A second block failing after a good first one: nothing is half-applied in the result.
  r = apply_search_replace(kProgram, block("def f(x):\n", "def f(y):\n") + block("zzz\n", "y\n"));
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.code.empty());
  EXPECT_EQ(r.error.rfind("SEARCH block 2", 0), 0u) << r.error;
}

TEST(ExtractCode, PrefersTheLanguageTag) {
  const std::string a = "text\n```\nplain\n```\nmore\n```python\nx = 1\n\ny = 2\n```\n";
  EXPECT_EQ(extract_code(a, "python"), "x = 1\n\ny = 2\n");
  EXPECT_EQ(extract_code(a, "cpp"), "plain\n");
  EXPECT_FALSE(extract_code("```python\nunclosed\n", "python").has_value());
  EXPECT_FALSE(extract_code("no code", "python").has_value());
}

TEST(SpliceRewrite, KeepsFrozenCode) {
  const std::string answer =
      "```python\nimport os  # changed frozen line: ignored\n# EVOLVE-BLOCK-START\n"
      "def f(x):\n    return 7\n# EVOLVE-BLOCK-END\ndef frozen():\n    return 0\n```\n";
  const PatchResult r = splice_rewrite(kProgram, answer, "python");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.code,
            "import math\n# EVOLVE-BLOCK-START\ndef f(x):\n    return 7\n# EVOLVE-BLOCK-END\n"
            "def frozen():\n    return 42\n");
  const PatchResult lost = splice_rewrite(kProgram, "```python\ndef f(x): pass\n```\n", "python");
  EXPECT_FALSE(lost.ok);
  EXPECT_NE(lost.error.find("EVOLVE-BLOCK"), std::string::npos);
  const PatchResult plain = splice_rewrite("x = 1\n", "```python\nx = 2\n```", "python");
  ASSERT_TRUE(plain.ok);
  EXPECT_EQ(plain.code, "x = 2\n");
}

// Exact Jaccard similarity of the shingle sets, computed independently with std::set of strings.
double exact_jaccard(const std::string& a, const std::string& b, int k) {
  const auto shingles = [&](const std::string& s) {
    const std::vector<std::string_view> t = code_tokens(s);
    std::set<std::string> out;
    for (size_t i = 0; i + k <= t.size(); ++i) {
      std::string sh;
      for (int j = 0; j < k; ++j) sh += std::string(t[i + j]) + "\x1f";
      out.insert(sh);
    }
    return out;
  };
  const auto sa = shingles(a), sb = shingles(b);
  size_t inter = 0;
  for (const auto& s : sa) inter += sb.count(s);
  return static_cast<double>(inter) / static_cast<double>(sa.size() + sb.size() - inter);
}

TEST(Novelty, TokensIgnoreLayout) {
  EXPECT_EQ(code_tokens("x=a.b+ 12\n  (y)"),
            (std::vector<std::string_view>{"x", "=", "a.b", "+", "12", "(", "y", ")"}));
  EXPECT_EQ(minhash("def f(x):\n  return x", 3, 32), minhash("def   f( x ):  return x", 3, 32));
}

TEST(Novelty, MinHashEstimatesJaccard) {
  std::string base, far;
  for (int i = 0; i < 60; ++i) {
    const std::string n = std::to_string(i);
    base.append("v").append(n).append(" = f(v").append(n).append(")\n");
    far.append("u").append(n).append(" = h(").append(n).append(")\n");
  }
  std::string near = base;
  near.replace(near.find("v30 = f(v30)"), 12, "w30 = g(w30)");
  for (const std::string* other : {&near, &far, &base}) {
    const double exact = exact_jaccard(base, *other, 3);
    const double est = minhash_similarity(minhash(base, 3, 256), minhash(*other, 3, 256));
    // 256 hashes: standard error sqrt(J (1 - J) / 256) <= 0.032; 4 of them is a safe bound.
    EXPECT_NEAR(est, exact, 0.125) << exact;
  }
  EXPECT_EQ(minhash_similarity(minhash(base, 3, 64), minhash(base, 3, 64)), 1.0);
}

TEST(EvaluationJson, ParsesAndRejects) {
  ProgramEvaluation e = parse_evaluation(
      "log line\n{\"score\": 2.5, \"metrics\": {\"n\": 3}, \"feedback\": \"ok\"}\n");
  EXPECT_TRUE(e.ok);
  EXPECT_TRUE(e.correct);
  EXPECT_EQ(e.score, 2.5);
  EXPECT_EQ(e.metrics["n"], 3);
  EXPECT_EQ(e.feedback, "ok");
  e = parse_evaluation("{\"score\": 2.5, \"correct\": false}");
  EXPECT_TRUE(e.ok);
  EXPECT_FALSE(e.correct);
  EXPECT_EQ(e.score, 0);  // an incorrect program scores 0
  for (const char* bad : {"", "garbage \x01\x02", "{\"score\": \"high\"}", "{\"score\": 1e999}",
                          "{\"score\": 1, \"correct\": 1}", "{\"score\": 1, \"metrics\": [1]}"}) {
    e = parse_evaluation(bad);
    EXPECT_FALSE(e.ok) << bad;
    EXPECT_EQ(e.score, 0) << bad;
    EXPECT_EQ(e.feedback.rfind("evaluator failed: ", 0), 0u) << e.feedback;
  }
}

TEST(PopulationParamsTest, DefaultsAndErrors) {
  const PopulationParams p = parse_population_params(nlohmann::json::object(), ".");
  EXPECT_EQ(p.islands, 4);
  EXPECT_TRUE(p.novelty.enabled);
  EXPECT_EQ(p.to_json()["grid"][0]["metric"], "code_length");
  const auto err = [](const nlohmann::json& j) {
    try {
      parse_population_params(j, ".");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(err({{"islandz", 2}}).find("unknown key 'islandz'"), std::string::npos);
  EXPECT_NE(err({{"islands", 0}}).find("'islands': expected an integer in [1, 64]"),
            std::string::npos);
  EXPECT_NE(err({{"novelty", {{"threshold", 2}}}}).find("'threshold'"), std::string::npos);
  EXPECT_NE(err({{"grid", {{{"metric", "x"}, {"min", 1}, {"max", 1}}}}}).find("'max'"),
            std::string::npos);
  EXPECT_NE(err({{"templates", {{"diff", "{nope}"}}}}).find("uses {nope}"), std::string::npos);
  EXPECT_NE(err({{"initial", "missing.py"}}).find("is not a file"), std::string::npos);
  EXPECT_NE(err({{"file_name", "../x.py"}}).find("'file_name'"), std::string::npos);
}

}  // namespace
}  // namespace shoal::search
