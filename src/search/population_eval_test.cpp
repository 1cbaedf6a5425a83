// The evaluator subprocess (fresh folder per program, removed after; environment; the cascade's
// first stage gating the full evaluation), the operators' prompts (fields, overrides), and the
// HTML report's side-by-side diff and escaping, on hand-made cases.
#include <gtest/gtest.h>

#include <fstream>

#include "core/test_support.h"
#include "search/population_eval.h"
#include "search/population_prompt.h"
#include "search/population_run.h"
#include "search/program_db.h"
#include "shoal/population.h"
#include "shoal/subprocess.h"

namespace shoal::search {
namespace {

EvaluatorOptions options(const test::TempDir& dir, const std::string& script) {
  EvaluatorOptions o;
  o.scorer.argv = shell_argv(script);
  o.scorer.timeout_s = 10;
  o.file_name = "prog.txt";
  o.task_dir = dir.path();
  o.temp_root = dir / "tmp";
  return o;
}

TEST(Evaluator, FreshFolderEnvironmentAndCleanup) {
  test::TempDir dir;
  // Lists the folder (sorted), then leaves a file behind; prints the program's first word.
  const EvaluatorOptions o = options(
      dir,
      "ls; touch leftover; w=$(head -c 5 \"$SHOAL_PROGRAM\"); "
      "test \"$(cat)\" = \"$(cat \"$SHOAL_PROGRAM\")\" || exit 9; "
      "printf '{\"score\": 1.5, \"metrics\": {\"w\": 1}, \"feedback\": \"%s %s\"}\\n' \"$w\" "
      "\"$(basename \"$SHOAL_TASK_DIR\")\"");
  for (int i = 0; i < 2; ++i) {
    const ProgramEvaluation e = evaluate_program(o, "hello world", {{"X", "1"}}, nullptr);
    ASSERT_TRUE(e.ok) << e.feedback;
    EXPECT_EQ(e.score, 1.5);
    EXPECT_EQ(e.feedback, "hello " + dir.path().filename().string());
    EXPECT_EQ(e.out_tail.substr(0, 9), "prog.txt\n");  // only the program: no leftover
    EXPECT_EQ(e.stage, 2);
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir / "tmp"));
}

TEST(Evaluator, CascadeGatesTheFullEvaluation) {
  test::TempDir dir;
  EvaluatorOptions o = options(dir, "touch \"$SHOAL_TASK_DIR/full_ran\"; echo '{\"score\": 7}'");
  o.cascade.argv = shell_argv(
      "n=$(cat); echo \"{\\\"score\\\": $n, \\\"feedback\\\": \\\"stage $SHOAL_STAGE\\\"}\"");
  o.cascade.min_score = 0.5;
  ProgramEvaluation e = evaluate_program(o, "0.25", {}, nullptr);
  EXPECT_EQ(e.stage, 1);
  EXPECT_FALSE(e.correct);
  EXPECT_EQ(e.score, 0);
  EXPECT_EQ(e.feedback, "first stage not passed (score 0.25, needs 0.5): stage 1");
  EXPECT_FALSE(std::filesystem::exists(dir / "full_ran"));
  e = evaluate_program(o, "0.75", {}, nullptr);
  EXPECT_EQ(e.stage, 2);
  EXPECT_TRUE(e.correct);
  EXPECT_EQ(e.score, 7);
  EXPECT_TRUE(std::filesystem::exists(dir / "full_ran"));
  // A first stage that crashes stops there too.
  o.cascade.argv = shell_argv("exit 4");
  std::filesystem::remove(dir / "full_ran");
  e = evaluate_program(o, "1", {}, nullptr);
  EXPECT_FALSE(e.ok);
  EXPECT_EQ(e.feedback.rfind("evaluator failed: exit status 4", 0), 0u) << e.feedback;
  EXPECT_FALSE(std::filesystem::exists(dir / "full_ran"));
}

Program with(int64_t id, const std::string& code, double score) {
  Program p;
  p.id = id;
  p.code = code;
  p.score = score;
  p.correct = true;
  p.metrics = {{"n", id}};
  p.feedback = "fb" + std::to_string(id);
  p.err_tail = "warn" + std::to_string(id);
  return p;
}

TEST(Prompts, CrossoverShowsBothParentsAndInspirations) {
  SearchTask task;
  task.problem = "THE PROBLEM";
  PopulationParams params;
  const Program a = with(3, "A_CODE\n", 1.5), b = with(5, "B_CODE\n", 2),
                c = with(8, "C_CODE\n", 3);
  PromptInput in{&task, &params, "crossover", &a, &b, {&c}};
  const auto m = build_prompt(in);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].role, "system");
  const std::string& u = m[1].content;
  EXPECT_EQ(u.rfind("THE PROBLEM", 0), 0u);
  const size_t pa = u.find("Program A (score 1.5, metrics {\"n\":3})");
  const size_t pb = u.find("Program B (score 2, metrics {\"n\":5})");
  ASSERT_NE(pa, std::string::npos);
  ASSERT_NE(pb, std::string::npos);
  EXPECT_LT(pa, u.find("```python\nA_CODE\n```"));
  EXPECT_LT(pb, u.find("```python\nB_CODE\n```"));
  EXPECT_NE(u.find("fb3\nstderr (end):\nwarn3"), std::string::npos);
  EXPECT_NE(u.find("Program #8 (score 3"), std::string::npos);
  // An override with {{ }} braces and the partner's fields.
  params.templates["crossover"] = "{{x}} {program2}|{score2}|{feedback2}";
  task.system = "SYS";
  const auto o = build_prompt(in);
  EXPECT_EQ(o[0].content, "SYS");
  EXPECT_EQ(o[1].content, "{x} B_CODE\n|2|fb5\nstderr (end):\nwarn5");
}

TEST(Report, SideBySideDiffAndEscaping) {
  test::TempDir dir;
  const auto path = dir / "population.db";
  PopulationParams params;
  params.islands = 1;
  {
    ProgramDb db = ProgramDb::create(path, {{"algorithm", "population"},
                                            {"params", params.to_json()},
                                            {"models", {"m"}},
                                            {"seed", 0},
                                            {"problem", "pack <circles>"}});
    db.begin_run(0);
    db.begin();
    Program p = with(1, "a\nb\nc\n", 1);
    p.op = "initial";
    db.insert_program(p);
    Program q = with(2, "a\nB<script>\nc\nd\n", 2);
    q.parent = 1;
    q.op = "diff";
    q.model = "m";
    db.insert_program(q);
    db.commit();
  }
  const std::string html = population_report_html(path);
  EXPECT_NE(html.find("pack &lt;circles&gt;"), std::string::npos);
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_NE(html.find("<tr><td>a</td><td>a</td></tr>"), std::string::npos);
  EXPECT_NE(html.find("<tr><td class=del>b</td><td class=add>B&lt;script&gt;</td></tr>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr><td class=empty></td><td class=add>d</td></tr>"), std::string::npos);
  EXPECT_NE(html.find("<h3>#2: diff by m, island 0, score 2"), std::string::npos);
}

}  // namespace
}  // namespace shoal::search
