// The evaluator subprocess of the population search; see population_eval.h.
#include "search/population_eval.h"

#include <stdlib.h>

#include <cmath>
#include <fstream>

#include "search/llm_common.h"
#include "shoal/error.h"
#include "shoal/subprocess.h"

namespace shoal::search {
namespace {

std::string tail(const std::string& text, size_t max) {
  if (text.size() <= max) return text;
  return "..." + text.substr(text.size() - max);
}

// A fresh folder for one evaluation, removed when the evaluation ends.
class ScratchDir {
 public:
  explicit ScratchDir(const std::filesystem::path& root) {
    const std::filesystem::path base = root.empty() ? std::filesystem::temp_directory_path() : root;
    std::filesystem::create_directories(base);
    std::string templ = (base / "shoal-eval-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) {
      throw IoError(errno_message("cannot create a folder in " + base.string()));
    }
    path_ = templ;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

ProgramEvaluation run_stage(const std::vector<std::string>& argv, double timeout_s, uint64_t memory,
                            const std::vector<std::pair<std::string, std::string>>& env,
                            const std::filesystem::path& dir, const std::string& code,
                            size_t max_chars, const std::atomic<bool>* cancel) {
  ProcessOptions p;
  p.argv = argv;
  p.stdin_data = code;
  p.timeout_s = timeout_s;
  p.memory_limit_bytes = memory;
  p.working_dir = dir;
  p.extra_env = env;
  p.cancel = cancel;
  const ProcessResult pr = run_process(p);
  ProgramEvaluation e;
  if (pr.cancelled) {
    e.cancelled = true;
    e.feedback = "evaluation cancelled";
  } else if (!pr.ok()) {
    e.feedback = "evaluator failed: " + pr.describe();
    if (!pr.err.empty()) e.feedback += ": " + one_line(tail(pr.err, 300), 320);
  } else {
    e = parse_evaluation(pr.out);
  }
  e.out_tail = tail(pr.out, max_chars);
  e.err_tail = tail(pr.err, max_chars);
  e.seconds = pr.seconds;
  return e;
}

}  // namespace

ProgramEvaluation parse_evaluation(const std::string& out) {
  ProgramEvaluation e;
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  if (!j.is_object()) {
    const size_t end = out.find_last_not_of(" \t\r\n");
    if (end != std::string::npos) {
      const size_t start = out.find_last_of('\n', end);
      const size_t from = start == std::string::npos ? 0 : start + 1;
      j = nlohmann::json::parse(out.substr(from, end + 1 - from), nullptr, false);
    }
  }
  if (!j.is_object()) {
    e.feedback = out.empty()
                     ? "evaluator failed: it printed nothing (expected a JSON object "
                       "{\"score\": x, \"correct\": true, \"metrics\": {...}})"
                     : "evaluator failed: its output is not a JSON object: " + one_line(out, 120);
    return e;
  }
  const auto score = j.find("score");
  if (score == j.end() || !score->is_number() || !std::isfinite(score->get<double>())) {
    e.feedback =
        "evaluator failed: its JSON has no finite numeric 'score': " + one_line(j.dump(), 120);
    return e;
  }
  const auto correct = j.find("correct");
  if (correct != j.end() && !correct->is_boolean()) {
    e.feedback = "evaluator failed: 'correct' must be true or false, got " + correct->dump();
    return e;
  }
  const auto metrics = j.find("metrics");
  if (metrics != j.end() && !metrics->is_object() && !metrics->is_null()) {
    e.feedback =
        "evaluator failed: 'metrics' must be an object, got " + one_line(metrics->dump(), 60);
    return e;
  }
  e.ok = true;
  e.correct = correct == j.end() || correct->get<bool>();
  e.score = e.correct ? score->get<double>() : 0;
  if (metrics != j.end() && metrics->is_object()) e.metrics = *metrics;
  if (const auto fb = j.find("feedback"); fb != j.end() && !fb->is_null()) {
    e.feedback = fb->is_string() ? fb->get<std::string>() : fb->dump();
  }
  return e;
}

ProgramEvaluation evaluate_program(const EvaluatorOptions& options, const std::string& code,
                                   const std::vector<std::pair<std::string, std::string>>& env,
                                   const std::atomic<bool>* cancel) {
  try {
    ScratchDir dir(options.temp_root);
    const std::filesystem::path file = dir.path() / options.file_name;
    {
      std::ofstream out(file, std::ios::binary);
      out.write(code.data(), static_cast<std::streamsize>(code.size()));
      if (!out) throw IoError(errno_message("cannot write " + file.string()));
    }
    std::vector<std::pair<std::string, std::string>> all = options.scorer.env;
    all.insert(all.end(), env.begin(), env.end());
    all.emplace_back("SHOAL_PROGRAM", file.string());
    all.emplace_back("SHOAL_TASK_DIR", std::filesystem::absolute(options.task_dir).string());
    double seconds = 0;
    if (!options.cascade.argv.empty()) {
      auto stage_env = all;
      stage_env.emplace_back("SHOAL_STAGE", "1");
      ProgramEvaluation first = run_stage(options.cascade.argv, options.cascade.timeout_s,
                                          options.scorer.memory_limit_bytes, stage_env, dir.path(),
                                          code, options.max_feedback_chars, cancel);
      seconds = first.seconds;
      first.stage = 1;
      if (first.cancelled || !first.ok || !first.correct ||
          first.score < options.cascade.min_score) {
        if (first.ok) {
          first.feedback = "first stage not passed (score " + nlohmann::json(first.score).dump() +
                           ", needs " + nlohmann::json(options.cascade.min_score).dump() +
                           (first.correct ? "" : ", incorrect") + ")" +
                           (first.feedback.empty() ? "" : ": " + first.feedback);
          first.correct = false;
          first.score = 0;
        }
        return first;
      }
    }
    all.emplace_back("SHOAL_STAGE", "2");
    ProgramEvaluation e =
        run_stage(options.scorer.argv, options.scorer.timeout_s, options.scorer.memory_limit_bytes,
                  all, dir.path(), code, options.max_feedback_chars, cancel);
    e.seconds += seconds;
    return e;
  } catch (const std::exception& ex) {
    ProgramEvaluation e;
    e.feedback = std::string("evaluator failed: ") + ex.what();
    return e;
  }
}

}  // namespace shoal::search
