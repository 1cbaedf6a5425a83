// The scorer subprocess: a good scorer, one that logs before its JSON, and every way one can go
// wrong (fails, hangs, prints garbage or nothing, an out-of-range score, too much memory), each
// a score of 0 with the reason as feedback.
#include <gtest/gtest.h>

#include "core/test_support.h"
#include "shoal/search_run.h"
#include "shoal/subprocess.h"

namespace shoal {
namespace {

ScorerOptions python(const std::string& code, double timeout_s = 10) {
  ScorerOptions s;
  s.argv = {"/usr/bin/python3", "-c", code};
  s.timeout_s = timeout_s;
  return s;
}

TEST(Scorer, ReadsTheAnswerAndReturnsScoreAndFeedback) {
  const ScoreResult r = run_scorer(
      python("import sys, json\n"
             "a = sys.stdin.read()\n"
             "print(json.dumps({'score': len(a) / 10, 'feedback': 'length ' + str(len(a))}))"),
      "hello");
  EXPECT_TRUE(r.ok) << r.feedback;
  EXPECT_DOUBLE_EQ(r.score, 0.5);
  EXPECT_EQ(r.feedback, "length 5");
  EXPECT_GT(r.seconds, 0);

  // Logging first, the JSON on the last line; the environment reaches the scorer.
  const ScoreResult logged =
      run_scorer(python("import os\n"
                        "print('running 3 tests...')\n"
                        "print('{\"score\": 1, \"feedback\": \"' + os.environ['SHOAL_X'] + '\"}')"),
                 "", {{"SHOAL_X", "from the run"}});
  EXPECT_TRUE(logged.ok) << logged.feedback;
  EXPECT_EQ(logged.score, 1.0);
  EXPECT_EQ(logged.feedback, "from the run");
}

TEST(Scorer, AFailingScorerScoresZeroWithItsError) {
  const ScoreResult r =
      run_scorer(python("import sys\nsys.stdin.read()\nraise ValueError('boom')"), "x");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.score, 0.0);
  EXPECT_TRUE(r.feedback.starts_with("scorer failed: exit status 1: ")) << r.feedback;
  EXPECT_TRUE(r.feedback.ends_with("ValueError: boom")) << r.feedback;
}

TEST(Scorer, AHangingScorerIsKilledAtItsTimeout) {
  ScorerOptions s;
  s.argv = shell_argv("sleep 30");
  s.timeout_s = 0.4;
  const ScoreResult r = run_scorer(s, "x");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.score, 0.0);
  EXPECT_LT(r.seconds, 3);
  EXPECT_TRUE(r.feedback.starts_with("scorer failed: timed out after 0.4")) << r.feedback;
}

TEST(Scorer, GarbageNothingAndBadScores) {
  struct Case {
    std::string code;
    std::string feedback;
  };
  for (const Case& c : std::vector<Case>{
           {"print('all good!')", "scorer failed: its output is not a JSON object: all good!"},
           {"pass",
            "scorer failed: it printed nothing (expected {\"score\": x, \"feedback\": ...})"},
           {"print('{\"score\": 1.5}')", "scorer failed: score 1.5 is outside [0, 1]"},
           {"print('{\"score\": -0.1}')", "scorer failed: score -0.1 is outside [0, 1]"},
           {"print('{\"score\": \"0.5\"}')",
            "scorer failed: its JSON has no numeric 'score': {\"score\":\"0.5\"}"},
           {"print('{\"feedback\": \"no score\"}')",
            "scorer failed: its JSON has no numeric 'score': {\"feedback\":\"no score\"}"},
       }) {
    const ScoreResult r = run_scorer(python(c.code), "answer");
    EXPECT_FALSE(r.ok) << c.code;
    EXPECT_EQ(r.score, 0.0) << c.code;
    EXPECT_EQ(r.feedback, c.feedback) << c.code;
  }
}

TEST(Scorer, AScorerOverItsMemoryLimitFails) {
  ScorerOptions s = python("x = bytearray(1 << 30)\nprint('{\"score\": 1}')");
  s.memory_limit_bytes = 200ull << 20;
  const ScoreResult r = run_scorer(s, "");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.score, 0.0);
  EXPECT_NE(r.feedback.find("MemoryError"), std::string::npos) << r.feedback;
}

TEST(Scorer, ParsesOutputDirectly) {
  EXPECT_EQ(parse_scorer_output("{\"score\": 0.25, \"feedback\": [1, 2]}").feedback, "[1,2]");
  EXPECT_EQ(parse_scorer_output("{\"score\": 0}").score, 0.0);
  EXPECT_TRUE(parse_scorer_output("{\"score\": 0}").ok);
  EXPECT_TRUE(parse_scorer_output("  {\"score\": 1,\n \"feedback\": \"multi-line JSON\"}\n").ok);
  EXPECT_FALSE(parse_scorer_output("{\"score\": true}").ok);
}

}  // namespace
}  // namespace shoal
