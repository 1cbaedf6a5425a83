// run_population end to end with mock models and evaluators written in sh: resume gives the same
// counts and programs as one uninterrupted run; Ctrl-C leaves a consistent database; evaluators
// that hang, crash, print garbage or allocate without bound are killed, score 0, are logged, and
// the run goes on; a diff that does not apply is logged and retried; a candidate identical to
// an island program is rejected before any evaluation. Expected values come from the scripts.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "core/test_support.h"
#include "search/program_db.h"
#include "shoal/population.h"
#include "shoal/search_run.h"

namespace shoal {
namespace {

using nlohmann::json;

// Scores "value = N" as N; special words make it misbehave. Each evaluation appends a line to
// evals.log in the task folder, so the test can count them.
const char* kEvaluator = R"(#!/bin/sh
echo "$SHOAL_SEARCH_PROPOSAL" >> "$SHOAL_TASK_DIR/evals.log"
p="$SHOAL_PROGRAM"
if grep -q HANG "$p"; then sleep 30; fi
if grep -q CRASH "$p"; then kill -SEGV $$; fi
if grep -q GARBAGE "$p"; then echo 'this is { not json'; exit 0; fi
if grep -q ALLOC "$p"; then
  exec /usr/bin/python3 -c 'x = []
while True: x.append(bytearray(10 ** 7))'
fi
n=$(sed -n 's/^value = \([0-9]*\)$/\1/p' "$p")
[ -n "$n" ] || { echo "no value line" >&2; exit 3; }
echo "evaluating $n"
printf '{"score": %s, "metrics": {"v": %s}, "feedback": "value %s"}\n' "$n" "$n" "$n"
)";

const char* kInitial = "# header\n# EVOLVE-BLOCK-START\nvalue = 1\n# EVOLVE-BLOCK-END\n";

class PopulationRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.write("initial.py", kInitial);
    dir_.write("eval.sh", kEvaluator);
  }

  // A task with one mock model answering `answers` (a YAML list).
  std::string task(const std::string& answers, int calls, const std::string& extra = "",
                   int concurrency = 1, const std::string& scorer_extra = "") const {
    return "problem: maximise value\n"
           "models:\n  - {name: m, backend: mock, answers: " +
           answers +
           "}\n"
           "scorer: {command: sh \"$SHOAL_TASK_DIR/eval.sh\", timeout_s: 2" +
           scorer_extra + "}\n" + "budget: {calls: " + std::to_string(calls) +
           "}\nconcurrency: " + std::to_string(concurrency) +
           "\nseed: 4\nalgorithm:\n  name: population\n  initial: initial.py\n"
           "  grid: [{metric: v, min: 0, max: 1000, bins: 10}]\n" +
           extra;
  }

  SearchRunSummary run(const std::string& yaml, const std::string& out, bool resume = false,
                       const std::atomic<bool>* interrupt = nullptr) {
    const auto file = dir_.write("task.yml", yaml);
    SearchRunOptions o;
    o.out_dir = dir_ / out;
    o.resume = resume;
    o.log_mode = LogMode::kQuiet;
    o.interrupt = interrupt;
    return run_search(load_search_task(file), o);  // dispatches to run_population
  }

  // (island, op, parent, code, score) of every program, in id order.
  std::vector<json> programs(const std::string& out) const {
    search::ProgramDb db = search::ProgramDb::open(dir_ / out / "population.db");
    std::vector<json> rows;
    for (const search::Program& p : db.load_programs()) {
      rows.push_back({p.island, p.op, p.parent, p.code, p.score, p.migrated_from});
    }
    return rows;
  }

  int evaluations() const {
    std::ifstream in(dir_ / "evals.log");
    int n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
  }

  test::TempDir dir_;
};

const std::string kGood = "[\"" + std::string("Idea.\\n```python\\n# EVOLVE-BLOCK-START\\n") +
                          "value = {n}\\n# EVOLVE-BLOCK-END\\n```\\n\"]";

TEST_F(PopulationRunTest, ResumeGivesTheSameCountsAndPrograms) {
  const std::string extra =
      "  islands: 2\n  migration_interval: 3\n  novelty: false\n"
      "  operators: {rewrite: 1, diff: 0, crossover: 0}\n";
  const SearchRunSummary whole = run(task(kGood, 12, extra), "whole");
  EXPECT_EQ(whole.stop_reason, "calls budget");
  EXPECT_EQ(whole.calls, 12);
  const SearchRunSummary first = run(task(kGood, 5, extra), "split");
  EXPECT_EQ(first.calls, 5);
  const SearchRunSummary again = run(task(kGood, 5, extra), "split", true);  // nothing left
  EXPECT_EQ(again.calls, 5);
  EXPECT_EQ(again.generations, first.generations);
  const SearchRunSummary rest = run(task(kGood, 12, extra), "split", true);
  EXPECT_EQ(rest.calls, 12);
  EXPECT_EQ(rest.generations, whole.generations);
  EXPECT_EQ(rest.best_score, whole.best_score);
  EXPECT_EQ(programs("split"), programs("whole"));
  // 12 proposals of one call each, 2 initial programs, migrations every 3rd program.
  search::ProgramDb db = search::ProgramDb::open(dir_ / "split" / "population.db");
  const search::DbTotals t = db.totals();
  EXPECT_EQ(t.proposals, 12);
  EXPECT_EQ(t.runs, 3);
  int64_t migrated = 0, proposed = 0;
  for (const json& p : programs("split")) {
    migrated += p[1] == "migration" ? 1 : 0;
    proposed += p[1] == "rewrite" ? 1 : 0;
  }
  EXPECT_EQ(proposed, 12);
  EXPECT_GT(migrated, 0);
  EXPECT_EQ(t.programs, 2 + proposed + migrated);
  EXPECT_TRUE(std::filesystem::exists(dir_ / "split" / "report.html"));
  EXPECT_TRUE(std::filesystem::exists(dir_ / "split" / "best" / "1.py"));
  // Another task's database is refused.
  EXPECT_THROW(run(task(kGood, 12, "  islands: 3\n"), "split", true), ConfigError);
  EXPECT_THROW(run(task(kGood, 12, extra), "split"), ConfigError);  // exists, no --resume
}

TEST_F(PopulationRunTest, InterruptLeavesAConsistentDatabase) {
  std::atomic<bool> stop{false};
  std::thread stopper([&] {
    for (int i = 0; i < 200 && evaluations() < 4; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    stop.store(true);
  });
  const std::string slow =
      "[\"Idea.\\n```python\\n# EVOLVE-BLOCK-START\\nvalue = {n}\\n"
      "# EVOLVE-BLOCK-END\\n```\\n\"], latency_s: 0.05";
  const std::string yaml = task(slow, 400, "  islands: 2\n", 3);
  const SearchRunSummary s = run(yaml, "out", false, &stop);
  stopper.join();
  EXPECT_TRUE(s.interrupted);
  EXPECT_LT(s.calls, 400);
  search::ProgramDb db = search::ProgramDb::open(dir_ / "out" / "population.db");
  // Every evaluated proposal has its program; every program of a proposal has its row.
  int64_t evaluated = 0;
  for (const search::ProposalRow& r : db.load_proposals()) {
    if (r.outcome == "evaluated") {
      ++evaluated;
      EXPECT_GT(r.program, 0);
    }
  }
  const auto progs = db.load_programs();
  int64_t from_proposals = 0;
  for (const search::Program& p : progs) from_proposals += p.proposal > 0 && p.op != "migration";
  EXPECT_EQ(from_proposals, evaluated);
  const search::DbTotals before = db.totals();
  EXPECT_EQ(before.calls, s.calls);
  const SearchRunSummary more = run(task(slow, before.calls + 3, "  islands: 2\n", 3), "out", true);
  EXPECT_EQ(more.calls, before.calls + 3);
}

TEST_F(PopulationRunTest, BadEvaluationsAreKilledScoredZeroAndLogged) {
  const std::string answers =
      "[\"" +
      std::string(
          "```python\\n# EVOLVE-BLOCK-START\\nvalue = {n}  # HANG\\n# EVOLVE-BLOCK-END\\n```\", ") +
      "\"```python\\n# EVOLVE-BLOCK-START\\nvalue = {n}  # CRASH\\n# EVOLVE-BLOCK-END\\n```\", " +
      "\"```python\\n# EVOLVE-BLOCK-START\\nvalue = {n}  # GARBAGE\\n# EVOLVE-BLOCK-END\\n```\", " +
      "\"```python\\n# EVOLVE-BLOCK-START\\nvalue = {n}  # ALLOC\\n# EVOLVE-BLOCK-END\\n```\", " +
      "\"```python\\n# EVOLVE-BLOCK-START\\nvalue = {n}\\n# EVOLVE-BLOCK-END\\n```\"]";
  const auto t0 = std::chrono::steady_clock::now();
  const SearchRunSummary s =
      run(task(answers, 16, "  islands: 1\n  novelty: false\n", 4, ", memory_mb: 300"), "out");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(s.fatal);
  EXPECT_EQ(s.calls, 16);
  EXPECT_LT(secs, 30);  // hangs are cut at 2 s
  search::ProgramDb db = search::ProgramDb::open(dir_ / "out" / "population.db");
  std::map<std::string, int> seen;
  for (const search::Program& p : db.load_programs()) {
    const auto word = [&](const char* w) { return p.code.find(w) != std::string::npos; };
    const std::string kind = word("HANG")      ? "hang"
                             : word("CRASH")   ? "crash"
                             : word("GARBAGE") ? "garbage"
                             : word("ALLOC")   ? "alloc"
                                               : "good";
    seen[kind] += 1;
    if (kind == "good") {
      EXPECT_TRUE(p.eval_ok);
      EXPECT_EQ(p.out_tail.rfind("evaluating ", 0), 0u);  // stdout is kept as feedback
      continue;
    }
    EXPECT_FALSE(p.eval_ok) << kind;
    EXPECT_FALSE(p.correct) << kind;
    EXPECT_EQ(p.score, 0) << kind;
    if (kind == "hang") {
      EXPECT_NE(p.feedback.find("timed out after 2"), std::string::npos) << p.feedback;
    }
    if (kind == "crash") {  // sh -c reports its child's SIGSEGV as status 128 + 11
      EXPECT_TRUE(p.feedback.find("signal 11") != std::string::npos ||
                  p.feedback.find("exit status 139") != std::string::npos)
          << p.feedback;
    }
    if (kind == "garbage") {
      EXPECT_NE(p.feedback.find("not a JSON object"), std::string::npos);
    }
    if (kind == "alloc") {
      EXPECT_NE(p.err_tail.find("MemoryError"), std::string::npos) << p.err_tail;
    }
  }
  for (const char* k : {"hang", "crash", "garbage", "alloc", "good"}) EXPECT_GT(seen[k], 0) << k;
  EXPECT_EQ(s.scorer_failures, seen["hang"] + seen["crash"] + seen["garbage"] + seen["alloc"]);
}

TEST_F(PopulationRunTest, DiffThatDoesNotApplyIsLoggedAndRetried) {
  const std::string answers =
      "[\"<<<<<<< SEARCH\\nvalue = 999999\\n=======\\nvalue = 5\\n>>>>>>> REPLACE\\n\"]";
  const SearchRunSummary s = run(
      task(answers, 6,
           "  islands: 1\n  diff_retries: 2\n  operators: {diff: 1, rewrite: 0, crossover: 0}\n"),
      "out");
  EXPECT_EQ(s.calls, 6);
  EXPECT_EQ(s.generations, 1);  // the initial program only
  search::ProgramDb db = search::ProgramDb::open(dir_ / "out" / "population.db");
  const auto props = db.load_proposals();
  ASSERT_EQ(props.size(), 2u);  // 3 calls each: the first try and 2 retries
  for (const search::ProposalRow& r : props) {
    EXPECT_EQ(r.outcome, "patch_failed");
    EXPECT_EQ(r.calls, 3);
    EXPECT_EQ(r.patch_failures, 3);
    EXPECT_NE(r.error.find("SEARCH block 1 does not match"), std::string::npos) << r.error;
  }
  EXPECT_EQ(evaluations(), 1);  // the initial program; no failed patch was evaluated
  std::ifstream log(dir_ / "out" / "calls.jsonl");
  int failed = 0;
  for (std::string line; std::getline(log, line);) {
    const json j = json::parse(line);
    if (j.value("result", json()) == "patch_failed") ++failed;
  }
  EXPECT_EQ(failed, 6);
}

TEST_F(PopulationRunTest, NoveltyRejectsBeforeEvaluation) {
  // Every answer is the initial program again (layout changed): rejected, re-asked, dropped.
  const std::string answers =
      "[\"```python\\n# EVOLVE-BLOCK-START\\nvalue   =   1\\n# EVOLVE-BLOCK-END\\n```\"]";
  const SearchRunSummary s =
      run(task(answers, 6, "  islands: 1\n  novelty: {threshold: 0.9, retries: 1}\n"), "out");
  EXPECT_EQ(s.calls, 6);
  EXPECT_EQ(s.generations, 1);
  EXPECT_EQ(evaluations(), 1);
  search::ProgramDb db = search::ProgramDb::open(dir_ / "out" / "population.db");
  const auto props = db.load_proposals();
  ASSERT_EQ(props.size(), 3u);
  for (const search::ProposalRow& r : props) {
    EXPECT_EQ(r.outcome, "novelty_rejected");
    EXPECT_EQ(r.novelty_rejections, 2);
    EXPECT_NE(r.error.find("similarity 1.000 to program #1"), std::string::npos) << r.error;
  }
  // Without the check the same answers are evaluated.
  const SearchRunSummary off = run(task(answers, 3, "  islands: 1\n  novelty: false\n"), "off");
  EXPECT_EQ(off.generations, 4);
}

}  // namespace
}  // namespace shoal

namespace shoal {
namespace {

TEST_F(PopulationRunTest, WallBudgetCutsTheInitialEvaluation) {
  dir_.write("initial.py", "# EVOLVE-BLOCK-START\nvalue = 1  # HANG\n# EVOLVE-BLOCK-END\n");
  std::string yaml = task(kGood, 10, "", 1, "");
  yaml.replace(yaml.find("timeout_s: 2"), 12, "timeout_s: 60");
  yaml.replace(yaml.find("budget: {calls: 10}"), 19, "budget: {calls: 10, wall_s: 0.5}");
  const auto t0 = std::chrono::steady_clock::now();
  const SearchRunSummary s = run(yaml, "out");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(s.stop_reason, "wall-time budget");
  EXPECT_LT(secs, 10);  // the 60 s evaluation was killed
  EXPECT_EQ(s.generations, 0);
  EXPECT_EQ(s.calls, 0);
  // The resumed run evaluates the initial program again (here it succeeds).
  dir_.write("initial.py", kInitial);
  yaml.replace(yaml.find("wall_s: 0.5"), 11, "wall_s: 600");
  const SearchRunSummary r = run(yaml, "out", true);
  EXPECT_EQ(r.stop_reason, "calls budget");
  EXPECT_EQ(r.calls, 10);
  EXPECT_GE(r.best_score, 1);
}

}  // namespace
}  // namespace shoal
