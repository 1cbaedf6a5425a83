// The population database: every field survives a round trip, totals count what was written
// (aborted calls excluded), the state rebuilt from the file equals the live one, and files that
// are not population databases are refused. Values are written by the test and read back.
#include <gtest/gtest.h>

#include <fstream>

#include "core/test_support.h"
#include "search/population_run.h"
#include "search/program_db.h"
#include "shoal/error.h"

namespace shoal::search {
namespace {

Program make(int64_t id, int island, double score, const std::string& code) {
  Program p;
  p.id = id;
  p.island = island;
  p.score = score;
  p.correct = score > 0;
  p.eval_ok = score >= 0;
  p.code = code;
  p.op = id == 1 ? "initial" : "diff";
  p.model = id == 1 ? "" : "m1";
  p.parent = id == 1 ? -1 : 1;
  p.parent2 = id == 3 ? 2 : -1;
  p.metrics = {{"m", static_cast<double>(id) * 1.5}, {"name", "x"}};
  p.feedback = "fb " + std::to_string(id) + " 'quoted' \"double\" \n newline";
  p.out_tail = "out";
  p.err_tail = "err\x01";
  p.proposal = id == 1 ? -1 : id;
  p.generation = id - 1;
  p.run = 1;
  p.created = 1.7e9 + static_cast<double>(id);
  p.migrated_from = id == 4 ? 2 : -1;
  p.eval_s = 0.25;
  return p;
}

TEST(ProgramDbTest, RoundTripAndTotals) {
  test::TempDir dir;
  const auto path = dir / "population.db";
  PopulationParams params;
  params.islands = 2;
  params.grid = {{"m", 0, 10, 5}};
  PopulationState live(params, 2);
  {
    ProgramDb db = ProgramDb::create(path, {{"models", {"m1", "m2"}}, {"seed", 3}});
    EXPECT_THROW(ProgramDb::create(path, {}), IoError);
    const int64_t run = db.begin_run(1.7e9);
    EXPECT_EQ(run, 1);
    db.begin();
    for (int64_t id = 1; id <= 4; ++id) {
      Program p = make(id, static_cast<int>(id % 2), static_cast<double>(id),
                       "code\n" + std::to_string(id));
      const InsertOutcome o = live.add(p);
      p.cell = o.cell;
      db.insert_program(p);
      if (o.placed) db.set_elite(p.island, o.cell, p.id);
    }
    db.set_archive(live.archive());
    CallRow c;
    c.run = run;
    c.proposal = 2;
    c.model = "m1";
    c.status = "ok";
    c.result = "accepted";
    c.input_tokens = 100;
    c.output_tokens = 40;
    c.cost_usd = 0.5;
    db.insert_call(c);
    c.status = "failed";
    c.result.clear();
    c.proposal = 5;
    c.error = "HTTP 500";
    c.http_status = 500;
    db.insert_call(c);
    c.status = "aborted";
    c.proposal = 7;
    db.insert_call(c);
    ProposalRow r;
    r.id = 2;
    r.run = run;
    r.island = 0;
    r.op = "diff";
    r.model = "m2";
    r.parent = 1;
    r.inspirations = {1, 3};
    r.outcome = "evaluated";
    r.program = 2;
    r.calls = 1;
    r.reward = 0.75;
    r.cost_usd = 0.5;
    db.insert_proposal(r);
    live.record(1, 0.75, 0.5);
    db.commit();
    db.end_run(run, "finished: calls budget", "calls budget", 12.5);
  }
  ProgramDb db = ProgramDb::open(path);
  EXPECT_EQ(db.meta()["format"], kPopulationDbFormat);
  EXPECT_EQ(db.meta()["seed"], 3);
  const std::vector<Program> back = db.load_programs();
  ASSERT_EQ(back.size(), 4u);
  for (const Program& p : back) {
    const Program want = make(p.id, static_cast<int>(p.id % 2), static_cast<double>(p.id),
                              "code\n" + std::to_string(p.id));
    EXPECT_EQ(p.island, want.island);
    EXPECT_EQ(p.parent, want.parent);
    EXPECT_EQ(p.parent2, want.parent2);
    EXPECT_EQ(p.op, want.op);
    EXPECT_EQ(p.model, want.model);
    EXPECT_EQ(p.code, want.code);
    EXPECT_EQ(p.score, want.score);
    EXPECT_EQ(p.correct, want.correct);
    EXPECT_EQ(p.eval_ok, want.eval_ok);
    EXPECT_EQ(p.metrics, want.metrics);
    EXPECT_EQ(p.feedback, want.feedback);
    EXPECT_EQ(p.err_tail, want.err_tail);
    EXPECT_EQ(p.proposal, want.proposal);
    EXPECT_EQ(p.generation, want.generation);
    EXPECT_EQ(p.created, want.created);
    EXPECT_EQ(p.migrated_from, want.migrated_from);
  }
  const std::vector<ProposalRow> props = db.load_proposals();
  ASSERT_EQ(props.size(), 1u);
  EXPECT_EQ(props[0].inspirations, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(props[0].reward, 0.75);
  const DbTotals t = db.totals();
  EXPECT_EQ(t.calls, 2);  // the aborted call is not counted
  EXPECT_EQ(t.failed_calls, 1);
  EXPECT_EQ(t.input_tokens, 300);
  EXPECT_DOUBLE_EQ(t.cost_usd, 1.5);  // its tokens and cost are
  EXPECT_EQ(t.programs, 4);
  EXPECT_EQ(t.proposals, 1);
  EXPECT_EQ(t.runs, 1);
  EXPECT_EQ(t.wall_s, 12.5);
  EXPECT_EQ(db.next_proposal(), 8);  // after the aborted call's proposal 7

  // The rebuilt state has the same grids, archive, children and bandit statistics.
  const PopulationState again = rebuild_state(db, params, {"m1", "m2"});
  for (int i = 0; i < 2; ++i) EXPECT_EQ(again.elites(i), live.elites(i));
  EXPECT_EQ(again.archive(), live.archive());
  EXPECT_EQ(again.program(1).children, live.program(1).children);
  EXPECT_EQ(again.program(1).children, 3);
  EXPECT_EQ(again.model_stats()[1].n, 1);
  EXPECT_EQ(again.model_stats()[1].reward, 0.75);
  EXPECT_THROW(rebuild_state(db, params, {"other"}), FormatError);
}

TEST(ProgramDbTest, RefusesOtherFiles) {
  test::TempDir dir;
  const auto text = dir.write("x.db", "not a database at all, just text\n");
  EXPECT_THROW(ProgramDb::open(text), Error);
  EXPECT_THROW(ProgramDb::open(dir / "missing.db"), IoError);
}

TEST(ProgramDbTest, MetaMismatchIsAConfigError) {
  const nlohmann::json now = {
      {"algorithm", "population"},
      {"models", {"a"}},
      {"seed", 1},
      {"params", {{"islands", 2}, {"templates", nlohmann::json::object()}}}};
  nlohmann::json other = now;
  other["params"]["templates"] = {{"diff", "changed"}};
  EXPECT_NO_THROW(check_meta(other, now, "p.db"));  // templates may change
  other["params"]["islands"] = 3;
  EXPECT_THROW(check_meta(other, now, "p.db"), ConfigError);
  other = now;
  other["models"] = {"b"};
  EXPECT_THROW(check_meta(other, now, "p.db"), ConfigError);
}

}  // namespace
}  // namespace shoal::search
