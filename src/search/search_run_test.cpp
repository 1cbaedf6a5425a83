// run_search end to end in-process: mock backends and the mock OpenAI server
// (llm_test_server.h), scorers written in sh/awk, and the output folder read back. Expected
// values come from the scorers' own formulas and the task's prompts, never from shoal.
#include <stdlib.h>

#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "core/test_support.h"
#include "search/llm_test_server.h"
#include "shoal/error.h"
#include "shoal/search_run.h"

namespace shoal {
namespace {

using nlohmann::json;

// Every answer scores 0.5 with feedback "fine".
const std::string kHalfScorer =
    R"(scorer: {command: "echo '{\"score\": 0.5, \"feedback\": \"fine\"}'"})"
    "\n";
// Scores an integer answer n as n / 1000 (awk prints it with 3 decimals: exact for n < 1000).
const char* kAwkScorer =
    R"(awk '{printf "{\"score\": %.3f, \"feedback\": \"got %s\"}\n", $1 / 1000, $1; exit}')";

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
json read_json(const std::filesystem::path& p) {
  return json::parse(read_text(p));
}
std::vector<json> read_jsonl(const std::filesystem::path& p) {
  std::vector<json> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

class SearchRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("SHOAL_TEST_API_KEY", "test-key-123", 1);
    ::setenv("SHOAL_TEST_OTHER_KEY", "wrong", 1);
  }

  SearchRunSummary run(const std::string& yaml, const std::string& out, bool resume = false,
                       const std::atomic<bool>* interrupt = nullptr) {
    const auto file = dir_.write("task.yml", yaml);
    SearchRunOptions o;
    o.out_dir = dir_ / out;
    o.resume = resume;
    o.log_mode = LogMode::kQuiet;
    o.interrupt = interrupt;
    return run_search(load_search_task(file), o);
  }

  std::string http_model(const std::string& name,
                         const std::string& key_env = "SHOAL_TEST_API_KEY") {
    return "  - {name: " + name + ", backend: http, base_url: '" + server_.base_url() +
           "', model: m, api_key_env: " + key_env + ", backoff_s: 0.01, backoff_max_s: 0.02}\n";
  }

  test::TempDir dir_;
  test::MockOpenAiServer server_;
};

TEST_F(SearchRunTest, WritesEveryOutput) {
  const auto s = run(std::string(R"(problem: pick a number
models:
  - {name: a, backend: mock, answers: ["{n}", "{n} </script><script>alert(1)</script>"],
     price_input: 2, price_output: 8}
  - {name: b, backend: mock, answers: ["{n}", "!error 500 flaky"]}
scorer:
  timeout_s: 10
  command: |
    )") + std::string(kAwkScorer) +
                         R"(
budget: {calls: 24}
concurrency: 3
best: 4
seed: 5
)",
                     "out");
  EXPECT_FALSE(s.fatal);
  EXPECT_FALSE(s.interrupted);
  EXPECT_EQ(s.stop_reason, "calls budget");
  EXPECT_EQ(s.calls, 24);
  EXPECT_EQ(s.generations + s.failed_calls, 24);
  EXPECT_GT(s.failed_calls, 0);  // b fails half its calls
  EXPECT_EQ(s.scorer_failures, 0);

  const auto out = dir_ / "out";
  const json tree = read_json(out / "tree.json");
  EXPECT_EQ(tree["format"], "shoal-search-run");
  EXPECT_EQ(tree["status"], "finished: calls budget");
  EXPECT_EQ(tree["algorithm"], "ab-mcts-a");
  EXPECT_EQ(tree["models"][0]["name"], "a");
  EXPECT_EQ(tree["totals"]["calls"], 24);
  EXPECT_EQ(tree["totals"]["failed_calls"], s.failed_calls);
  EXPECT_EQ(tree["totals"]["runs"], 1);
  const json& nodes = tree["search"]["nodes"];
  ASSERT_EQ(static_cast<int64_t>(nodes.size()), s.generations);
  double cost = 0;
  int64_t input_tokens = 0;
  for (const json& n : nodes) {
    const std::string answer = n["state"];
    const int value = std::stoi(answer);
    EXPECT_EQ(n["score"].get<double>(), value / 1000.0) << answer;
    EXPECT_EQ(n["meta"]["feedback"], "got " + std::to_string(value));
    EXPECT_EQ(n["meta"]["model"], n["action"] == 0 ? "a" : "b");
    EXPECT_EQ(n["meta"]["scorer_ok"], true);
    cost += n["meta"]["cost_usd"].get<double>();
    input_tokens += n["meta"]["input_tokens"].get<int64_t>();
    if (n["action"] == 0) {
      // The mock counts ceil(bytes / 4) tokens; a's prices are 2 and 8 USD per million.
      const int64_t out_tokens = (static_cast<int64_t>(answer.size()) + 3) / 4;
      EXPECT_EQ(n["meta"]["output_tokens"], out_tokens);
      EXPECT_DOUBLE_EQ(n["meta"]["cost_usd"].get<double>(),
                       (n["meta"]["input_tokens"].get<int64_t>() * 2.0 + out_tokens * 8.0) / 1e6);
    }
  }
  EXPECT_NEAR(tree["totals"]["cost_usd"].get<double>(), cost, 1e-12);
  EXPECT_EQ(tree["totals"]["input_tokens"], input_tokens);
  EXPECT_NEAR(s.cost_usd, cost, 1e-12);

  // calls.jsonl: one line per call; the ok ones are the tree's nodes.
  const auto lines = read_jsonl(out / "calls.jsonl");
  ASSERT_EQ(lines.size(), 24u);
  std::set<int64_t> logged_nodes;
  for (const json& l : lines) {
    if (l["status"] == "ok") {
      logged_nodes.insert(l["node"].get<int64_t>());
      EXPECT_EQ(l["score"], nodes[l["node"].get<size_t>() - 1]["score"]);
      EXPECT_TRUE(l.contains("latency_s") && l.contains("cost_usd") && l.contains("input_tokens"));
    } else {
      EXPECT_EQ(l["status"], "failed");
      EXPECT_EQ(l["model"], "b");
      EXPECT_EQ(l["error"], "backend 'b' (mock): HTTP 500: flaky");
      EXPECT_EQ(l["http_status"], 500);
      EXPECT_TRUE(l["node"].is_null());
    }
  }
  EXPECT_EQ(static_cast<int64_t>(logged_nodes.size()), s.generations);

  // best/: the top 4 by score, best first; ties go to the earlier node.
  std::vector<std::pair<double, int64_t>> ranked;
  for (const json& n : nodes) ranked.push_back({-n["score"].get<double>(), n["id"].get<int64_t>()});
  std::sort(ranked.begin(), ranked.end());
  const json best = read_json(out / "best" / "best.json");
  ASSERT_EQ(best.size(), 4u);
  for (size_t r = 0; r < 4; ++r) {
    EXPECT_EQ(best[r]["node"], ranked[r].second);
    EXPECT_EQ(best[r]["rank"], r + 1);
    EXPECT_EQ(read_text(out / "best" / (std::to_string(r + 1) + ".txt")),
              nodes[ranked[r].second - 1]["state"].get<std::string>());
  }
  EXPECT_EQ(s.best_node, ranked[0].second);

  // tree.html: self-contained, the answers' "</script>" escaped inside the data block.
  const std::string html = read_text(out / "tree.html");
  EXPECT_TRUE(html.starts_with("<!DOCTYPE html>"));
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  size_t closes = 0;
  for (size_t at = html.find("</script>"); at != std::string::npos;
       at = html.find("</script>", at + 1))
    ++closes;
  EXPECT_EQ(closes, 2u);
  const std::string open = "<script type=\"application/json\" id=\"data\">";
  const size_t begin = html.find(open) + open.size();
  const json data = json::parse(html.substr(begin, html.find("</script>", begin) - begin));
  EXPECT_EQ(data["nodes"].size(), nodes.size());
  EXPECT_EQ(data["nodes"][0]["state"], nodes[0]["state"]);
}

TEST_F(SearchRunTest, CallsRunInParallelAndRetriesAreInvisible) {
  const auto s = run("problem: fail:busy pick\nmodels:\n" + http_model("h") + kHalfScorer +
                         "budget: {calls: 8}\nconcurrency: 4\n",
                     "busy");
  EXPECT_EQ(s.generations, 8);
  EXPECT_EQ(s.scorer_failures, 0);
  EXPECT_EQ(server_.max_in_flight(), 4);

  // The first request with each distinct prompt gets a 500: retried, so no call fails, and the
  // attempts are one per call plus one per distinct prompt (a node's answer echoes its prompt).
  const auto r = run("problem: fail:500x1 pick\nmodels:\n" + http_model("h") + kHalfScorer +
                         "budget: {calls: 6}\nconcurrency: 2\n",
                     "retry");
  EXPECT_EQ(r.failed_calls, 0);
  EXPECT_EQ(r.generations, 6);
  std::set<std::string> prompts;
  const json retry_tree = read_json(dir_ / "retry" / "tree.json");
  for (const json& n : retry_tree["search"]["nodes"]) {
    prompts.insert(n["state"]);
  }
  int64_t attempts = 0;
  for (const json& l : read_jsonl(dir_ / "retry" / "calls.jsonl"))
    attempts += l["attempts"].get<int64_t>();
  EXPECT_EQ(attempts, 6 + static_cast<int64_t>(prompts.size()));
  EXPECT_GT(prompts.size(), 1u);
}

TEST_F(SearchRunTest, A401StopsCleanlyAndResumeContinues) {
  const std::string models =
      "models:\n" + http_model("good") + http_model("keyless", "SHOAL_TEST_OTHER_KEY");
  const std::string rest =
      kHalfScorer +
      "budget: {calls: 6}\nalgorithm: {name: repeated-sampling, action: round-robin}\n";
  const auto s = run("problem: hello\n" + models + rest, "out");
  EXPECT_TRUE(s.fatal);
  EXPECT_EQ(s.stop_reason, "backend 'keyless' (http m at " + server_.base_url() +
                               "): HTTP 401: Incorrect API key provided");
  EXPECT_EQ(s.generations, 1);  // trial 0 (good) was told before trial 1 (keyless) failed
  EXPECT_EQ(s.calls, 2);
  EXPECT_EQ(server_.requests("hello"), 2);  // no retry of the 401
  const json tree = read_json(dir_ / "out" / "tree.json");
  EXPECT_EQ(tree["status"], "stopped: " + s.stop_reason);
  ASSERT_EQ(tree["search"]["nodes"].size(), 1u);
  const json first = tree["search"]["nodes"][0];
  EXPECT_EQ(first["state"], "echo: hello");
  EXPECT_TRUE(std::filesystem::exists(dir_ / "out" / "best" / "1.txt"));
  EXPECT_TRUE(std::filesystem::exists(dir_ / "out" / "tree.html"));

  ::setenv("SHOAL_TEST_OTHER_KEY", "test-key-123", 1);  // the user fixes the key
  const auto r = run("problem: hello\n" + models + rest, "out", /*resume=*/true);
  EXPECT_FALSE(r.fatal);
  EXPECT_EQ(r.stop_reason, "calls budget");
  EXPECT_EQ(r.calls, 6);
  EXPECT_EQ(r.generations, 5);
  const json after = read_json(dir_ / "out" / "tree.json");
  EXPECT_EQ(after["search"]["nodes"][0], first);
  EXPECT_EQ(after["totals"]["runs"], 2);
  const auto lines = read_jsonl(dir_ / "out" / "calls.jsonl");
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[1]["status"], "failed");
  EXPECT_EQ(lines[1]["http_status"], 401);
  EXPECT_EQ(lines[2]["run"], 2);
}

TEST_F(SearchRunTest, MalformedRepliesFailCallsUntilFiveInARowStop) {
  const auto s = run("problem: fail:malformed\nmodels:\n" + http_model("h") + kHalfScorer +
                         "budget: {calls: 50}\n",
                     "out");
  EXPECT_TRUE(s.fatal);
  EXPECT_EQ(s.calls, 5);
  EXPECT_EQ(s.failed_calls, 5);
  EXPECT_EQ(s.generations, 0);
  EXPECT_TRUE(s.stop_reason.starts_with("model 'h' failed 5 calls in a row; the last: backend 'h'"))
      << s.stop_reason;
  EXPECT_NE(s.stop_reason.find("the reply is not a JSON object (HTTP 200"), std::string::npos);
  EXPECT_EQ(read_json(dir_ / "out" / "tree.json")["search"]["pending"].size(), 0u);
}

TEST_F(SearchRunTest, ScorerFailuresScoreZeroAndTheSearchGoesOn) {
  const auto s = run(R"(problem: p
models: [{name: m, backend: mock, answers: [hang, junk, fail, good]}]
scorer:
  command: |
    read x
    case $x in
      hang) sleep 30;;
      junk) echo junk;;
      fail) echo broken >&2; exit 3;;
      *) echo '{"score": 0.5, "feedback": "fine"}';;
    esac
  timeout_s: 0.3
budget: {calls: 12}
concurrency: 4
)",
                     "out");
  EXPECT_FALSE(s.fatal);
  EXPECT_EQ(s.generations, 12);
  const json nodes = read_json(dir_ / "out" / "tree.json")["search"]["nodes"];
  std::map<std::string, int> seen;
  int failures = 0;
  for (const json& n : nodes) {
    const std::string a = n["state"];
    const std::string fb = n["meta"]["feedback"];
    ++seen[a];
    if (a == "good") {
      EXPECT_EQ(n["score"], 0.5);
      EXPECT_EQ(fb, "fine");
      continue;
    }
    ++failures;
    EXPECT_EQ(n["score"], 0.0) << a;
    EXPECT_EQ(n["meta"]["scorer_ok"], false);
    if (a == "hang") {
      EXPECT_TRUE(fb.starts_with("scorer failed: timed out after 0.3")) << fb;
    } else if (a == "junk") {
      EXPECT_EQ(fb, "scorer failed: its output is not a JSON object: junk");
    } else {
      EXPECT_EQ(a, "fail");
      EXPECT_EQ(fb, "scorer failed: exit status 3: broken");
    }
  }
  EXPECT_EQ(s.scorer_failures, failures);
  EXPECT_GE(seen.size(), 3u);
}

TEST_F(SearchRunTest, InterruptKeepsPendingTrialsAndResumeRunsThemFirst) {
  const std::string yaml = R"(problem: p
models: [{name: m, backend: mock, answers: ["{n}"], latency_s: 0.3}]
scorer:
  command: |
    )" + std::string(kAwkScorer) +
                           R"(
budget: {calls: 6}
concurrency: 2
)";
  std::atomic<bool> interrupt{false};
  std::thread ctrl_c([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(450));
    interrupt.store(true);
  });
  const auto s = run(yaml, "out", false, &interrupt);
  ctrl_c.join();
  EXPECT_TRUE(s.interrupted);
  const json tree = read_json(dir_ / "out" / "tree.json");
  EXPECT_EQ(tree["status"], "interrupted");
  std::vector<int64_t> pending;
  for (const json& t : tree["search"]["pending"]) pending.push_back(t["id"]);
  EXPECT_EQ(static_cast<int64_t>(pending.size()) + s.generations,
            static_cast<int64_t>(read_jsonl(dir_ / "out" / "calls.jsonl").size()));
  const json told = tree["search"]["nodes"];

  const auto r = run(yaml, "out", /*resume=*/true);
  EXPECT_FALSE(r.interrupted);
  EXPECT_EQ(r.calls, 6);
  EXPECT_EQ(r.generations, 6);
  const json after = read_json(dir_ / "out" / "tree.json");
  EXPECT_EQ(after["search"]["pending"].size(), 0u);
  for (size_t i = 0; i < told.size(); ++i) EXPECT_EQ(after["search"]["nodes"][i], told[i]);
  // The second run's first calls are the trials the interrupt left pending.
  std::vector<int64_t> rerun;
  for (const json& l : read_jsonl(dir_ / "out" / "calls.jsonl")) {
    if (l["run"] == 2 && rerun.size() < pending.size()) rerun.push_back(l["trial"]);
  }
  std::sort(rerun.begin(), rerun.end());
  EXPECT_EQ(rerun, pending);
}

TEST_F(SearchRunTest, ResumeContinuesExactlyAsOneRun) {
  const auto task = [](int calls) {
    return R"(problem: p
models:
  - {name: a, backend: mock, answers: ["{n}"]}
  - {name: b, backend: mock, answers: ["{n}", "!error 503"]}
scorer:
  command: |
    )" + std::string(kAwkScorer) +
           R"(
budget: {calls: )" +
           std::to_string(calls) + "}\nseed: 11\n";
  };
  run(task(14), "straight");
  run(task(5), "split");
  run(task(14), "split", /*resume=*/true);
  const json a = read_json(dir_ / "straight" / "tree.json");
  const json b = read_json(dir_ / "split" / "tree.json");
  ASSERT_EQ(a["search"]["nodes"].size(), b["search"]["nodes"].size());
  for (size_t i = 0; i < a["search"]["nodes"].size(); ++i) {
    json x = a["search"]["nodes"][i], y = b["search"]["nodes"][i];
    x.erase("meta");  // latencies differ
    y.erase("meta");
    EXPECT_EQ(x, y) << i;
  }
  EXPECT_EQ(a["totals"]["calls"], b["totals"]["calls"]);
  EXPECT_EQ(a["totals"]["failed_calls"], b["totals"]["failed_calls"]);
}

TEST_F(SearchRunTest, WallAndCostBudgets) {
  const auto w = run(R"(problem: p
models: [{name: m, backend: mock, answers: ["1"], latency_s: 30}]
scorer: {command: "true"}
budget: {wall_s: 0.3}
)",
                     "wall");
  EXPECT_EQ(w.stop_reason, "wall-time budget");
  EXPECT_EQ(w.calls, 0);
  EXPECT_EQ(read_json(dir_ / "wall" / "tree.json")["search"]["pending"].size(), 1u);

  // Output tokens only, at 1000 USD per million: 0.001 USD per call ("abcd" is one token).
  const auto c = run(R"(problem: p
models: [{name: m, backend: mock, answers: [abcd], price_output: 1000}]
scorer: {command: "echo '{\"score\": 0.1}'"}
budget: {cost_usd: 0.0035, calls: 100}
)",
                     "cost");
  EXPECT_EQ(c.stop_reason, "cost budget");
  EXPECT_EQ(c.calls, 4);
  EXPECT_NEAR(c.cost_usd, 0.004, 1e-12);
}

TEST_F(SearchRunTest, RefusesToOverwriteAndChecksTheTaskOnResume) {
  const std::string yaml = R"(problem: p
models: [{name: m, backend: mock, answers: ["1"]}]
scorer: {command: "echo '{\"score\": 0.1}'"}
budget: {calls: 2}
)";
  run(yaml, "out");
  EXPECT_THROW(run(yaml, "out"), ConfigError);
  EXPECT_THROW(run(yaml, "elsewhere", /*resume=*/true), ConfigError);
  std::string renamed = yaml;
  renamed.replace(renamed.find("name: m"), 7, "name: x");
  try {
    run(renamed, "out", true);
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("was searched with models [m], the task has [x]"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(run(yaml + "seed: 3\n", "out", true), ConfigError);
  std::filesystem::create_directories(dir_ / "junk");
  dir_.write("junk/tree.json", "{\"format\": \"something else\"}");
  EXPECT_THROW(run(yaml, "junk", true), FormatError);
  EXPECT_THROW(run(yaml + "algorithm: mcts\n", "out", true), ConfigError);
}

TEST_F(SearchRunTest, RefinementPromptsCarryTheParent) {
  const auto s =
      run("problem: start\nsystem: sys\nrefine: 'Fix: {answer} | {feedback} | {score}'\n"
          "models:\n" +
              http_model("h") +
              "scorer: {command: \"echo '{\\\"score\\\": 0.25, \\\"feedback\\\": \\\"fb\\\"}'\"}\n"
              "budget: {calls: 4}\nalgorithm: sequential-refinement\n",
          "out");
  ASSERT_EQ(s.generations, 4);
  const json nodes = read_json(dir_ / "out" / "tree.json")["search"]["nodes"];
  EXPECT_EQ(nodes[0]["state"], "echo: start");
  for (size_t i = 1; i < nodes.size(); ++i) {
    const json& parent = nodes[nodes[i]["parent"].get<size_t>() - 1];
    EXPECT_EQ(nodes[i]["state"],
              "echo: Fix: " + parent["state"].get<std::string>() + " | fb | 0.25");
  }
  EXPECT_EQ(server_.last_body()["messages"][0], json({{"role", "system"}, {"content", "sys"}}));
}

}  // namespace
}  // namespace shoal
