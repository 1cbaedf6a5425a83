// The user's scorer as a subprocess (shoal/subprocess.h): the answer on stdin, one JSON object on
// stdout. Whatever goes wrong (exit status, signal, timeout, memory, no JSON, a score outside
// [0, 1]) becomes a score of 0 with the reason as feedback, so the search goes on and the model
// that wrote the answer hears why it failed.
#include <cmath>
#include <string>

#include "search/llm_common.h"
#include "shoal/search_run.h"
#include "shoal/subprocess.h"

namespace shoal {
namespace {

ScoreResult failure(std::string why) {
  ScoreResult r;
  r.feedback = "scorer failed: " + std::move(why);
  return r;
}

// The last `max` bytes of a stream, on one line: where error messages usually are.
std::string tail(const std::string& text, size_t max = 300) {
  std::string_view s(text);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  if (s.size() > max) s = s.substr(s.size() - max);
  return search::one_line(s, max);
}

}  // namespace

ScoreResult parse_scorer_output(const std::string& out) {
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  if (!j.is_object()) {
    // Else the last non-empty line: scorers may log before their result.
    size_t end = out.find_last_not_of(" \t\r\n");
    if (end != std::string::npos) {
      const size_t start = out.find_last_of('\n', end);
      const std::string last =
          out.substr(start == std::string::npos ? 0 : start + 1, end + 1 - (start + 1));
      j = nlohmann::json::parse(last, nullptr, false);
    }
  }
  if (!j.is_object()) {
    return failure(out.empty() ? "it printed nothing (expected {\"score\": x, \"feedback\": ...})"
                               : "its output is not a JSON object: " + search::one_line(out, 120));
  }
  const auto score = j.find("score");
  if (score == j.end() || !score->is_number()) {
    return failure("its JSON has no numeric 'score': " + search::one_line(j.dump(), 120));
  }
  const double x = score->get<double>();
  if (!std::isfinite(x) || x < 0 || x > 1) {
    return failure("score " + score->dump() + " is outside [0, 1]");
  }
  ScoreResult r;
  r.ok = true;
  r.score = x;
  if (const auto fb = j.find("feedback"); fb != j.end() && !fb->is_null()) {
    r.feedback = fb->is_string() ? fb->get<std::string>() : fb->dump();
  }
  return r;
}

ScoreResult run_scorer(const ScorerOptions& scorer, const std::string& answer,
                       const std::vector<std::pair<std::string, std::string>>& extra_env,
                       const std::atomic<bool>* cancel) {
  ProcessOptions p;
  p.argv = scorer.argv;
  p.stdin_data = answer;
  p.timeout_s = scorer.timeout_s;
  p.memory_limit_bytes = scorer.memory_limit_bytes;
  p.working_dir = scorer.working_dir;
  p.extra_env = scorer.env;
  p.extra_env.insert(p.extra_env.end(), extra_env.begin(), extra_env.end());
  p.cancel = cancel;
  const ProcessResult pr = run_process(p);
  ScoreResult r;
  if (pr.cancelled) {
    r.cancelled = true;
    r.feedback = "scorer cancelled";
  } else if (!pr.ok()) {
    std::string why = pr.describe();
    if (!pr.err.empty()) why += ": " + tail(pr.err);
    r = failure(why);
  } else {
    r = parse_scorer_output(pr.out);
  }
  r.seconds = pr.seconds;
  return r;
}

}  // namespace shoal
