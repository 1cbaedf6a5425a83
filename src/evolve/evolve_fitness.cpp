// Evaluators of `shoal evolve`: in memory through the engine, or through a user's command.
#include "evolve/evolve_fitness.h"

#include <chrono>
#include <cmath>
#include <set>

#include "shoal/error.h"
#include "shoal/eval_engine.h"
#include "shoal/merge.h"
#include "shoal/subprocess.h"

namespace shoal::evolve {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// First line of a message, at most 300 characters: log lines stay one line.
std::string one_line(std::string_view s) {
  const size_t nl = s.find('\n');
  std::string out(s.substr(0, std::min(nl, size_t{300})));
  if (out.size() < s.size()) out += " ...";
  return out;
}

std::string last_line(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) {
    s.remove_suffix(1);
  }
  const size_t nl = s.rfind('\n');
  return one_line(nl == std::string_view::npos ? s : s.substr(nl + 1));
}

CandidateMetrics failure(std::string error, double seconds) {
  CandidateMetrics m;
  m.error = one_line(error);
  m.seconds = seconds;
  return m;
}

CandidateMetrics metrics_of(const EvalResult& r) {
  CandidateMetrics m;
  m.ok = std::isfinite(r.score);
  m.score = r.score;
  for (const TaskResult& t : r.tasks) {
    m.task_scores[t.name] = t.score;
    if (!std::isfinite(t.score)) m.ok = false;
  }
  if (!m.ok) m.error = "the score is not finite (the merged weights overflow or divide by zero)";
  return m;
}

}  // namespace

std::vector<TaskSpec> load_fitness_tasks(const FitnessOptions& fitness, const std::string& split) {
  std::vector<TaskSpec> out;
  std::set<std::string> names;
  for (const FitnessTask& f : fitness.tasks) {
    for (TaskSpec& t : load_tasks(f.file, split)) {
      if (!names.insert(t.name).second) {
        throw ConfigError(f.file.string() + ": task '" + t.name +
                          "' has the name of another fitness task; rename one (name: ...)");
      }
      t.weight *= f.weight;
      out.push_back(std::move(t));
    }
  }
  return out;
}

// ---- In memory ------------------------------------------------------------------------------

EngineEvaluator::EngineEvaluator(RunGenome& genome, std::vector<TaskSpec> tasks,
                                 const FitnessOptions& fitness, int n_threads)
    : genome_(genome), tasks_(std::move(tasks)), tokenizer_(genome.tokenizer()) {
  eval_options_.limit = fitness.limit;
  eval_options_.batch_size = fitness.batch_size;
  model_options_.n_threads = n_threads;
}

CandidateMetrics EngineEvaluator::evaluate_on(const std::vector<double>& genome,
                                              std::span<const TaskSpec> tasks) {
  const auto t0 = Clock::now();
  try {
    const Model model = genome_.load_model(genome, model_options_);
    CandidateMetrics m = metrics_of(score(model, tokenizer_, tasks, eval_options_));
    m.seconds = seconds_since(t0);
    return m;
  } catch (const Error& e) {
    // The candidate's recipe or weights are bad (a merge check, a tensor the engine refuses);
    // anything else (out of memory, a bug) stops the run.
    return failure(e.what(), seconds_since(t0));
  }
}

std::vector<CandidateMetrics> EngineEvaluator::evaluate(
    std::span<const std::vector<double>> genomes, const std::atomic<bool>* cancel) {
  std::vector<CandidateMetrics> out;
  for (const auto& g : genomes) {
    if (cancel != nullptr && cancel->load()) break;
    out.push_back(evaluate_on(g, tasks_));
  }
  return out;
}

// ---- Through a command ----------------------------------------------------------------------

std::string fitness_command_line(const std::string& command, const fs::path& model) {
  std::string quoted = "'";
  for (const char c : model.string())
    quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted += "'";
  static constexpr std::string_view kPlaceholder = "{model}";
  if (command.find(kPlaceholder) == std::string::npos) return command + " " + quoted;
  std::string out;
  size_t pos = 0;
  for (size_t at; (at = command.find(kPlaceholder, pos)) != std::string::npos;
       pos = at + kPlaceholder.size()) {
    out += command.substr(pos, at - pos) + quoted;
  }
  return out + command.substr(pos);
}

CandidateMetrics parse_command_metrics(const std::string& out) {
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    j = nlohmann::json::parse(last_line(out), nullptr, false);
  }
  const auto bad = [&](const std::string& why) {
    return failure("fitness command output: " + why + " (stdout ends with: " +
                       (out.empty() ? std::string("nothing") : "'" + last_line(out) + "'") + ")",
                   0);
  };
  if (j.is_discarded() || !j.is_object()) return bad("no JSON object");
  const auto score = j.find("score");
  if (score == j.end() || !score->is_number() || !std::isfinite(score->get<double>())) {
    return bad("no finite number under \"score\"");
  }
  CandidateMetrics m;
  m.ok = true;
  m.score = score->get<double>();
  if (const auto s = j.find("scores"); s != j.end() && s->is_object()) {
    for (const auto& [task, v] : s->items()) {
      if (!v.is_number()) return bad("\"scores\"." + task + " is not a number");
      m.task_scores[task] = v.get<double>();
    }
  } else if (const auto r = j.find("results"); r != j.end() && r->is_object()) {
    for (const auto& [task, v] : r->items()) {
      if (!v.is_object() || !v.contains("score") || !v["score"].is_number()) {
        return bad("\"results\"." + task + " has no numeric \"score\"");
      }
      m.task_scores[task] = v["score"].get<double>();
    }
  }
  for (const auto& [task, v] : m.task_scores) {
    if (!std::isfinite(v)) return bad("the score of " + task + " is not finite");
  }
  return m;
}

CommandEvaluator::CommandEvaluator(RunGenome& genome, const FitnessOptions& fitness,
                                   fs::path work_dir, int n_threads)
    : genome_(genome), fitness_(fitness), work_dir_(std::move(work_dir)), n_threads_(n_threads) {
  fs::create_directories(work_dir_);
}

CandidateMetrics CommandEvaluator::run_on(const fs::path& model_dir, const std::string& split,
                                          const std::atomic<bool>* cancel, bool* cancelled) const {
  ProcessOptions p;
  p.argv = shell_argv(fitness_command_line(fitness_.command, model_dir));
  p.timeout_s = fitness_.timeout_s;
  p.extra_env = {{"SHOAL_EVOLVE_MODEL", model_dir.string()}, {"SHOAL_EVOLVE_SPLIT", split}};
  p.cancel = cancel;
  const ProcessResult r = run_process(p);
  if (cancelled != nullptr) *cancelled = r.cancelled;
  if (!r.ok()) {
    const std::string err = last_line(r.err);
    return failure("fitness command " + r.describe() + (err.empty() ? "" : ": " + err), r.seconds);
  }
  CandidateMetrics m = parse_command_metrics(r.out);
  m.seconds = r.seconds;
  return m;
}

std::vector<CandidateMetrics> CommandEvaluator::evaluate(
    std::span<const std::vector<double>> genomes, const std::atomic<bool>* cancel) {
  std::vector<CandidateMetrics> out;
  for (const auto& g : genomes) {
    if (cancel != nullptr && cancel->load()) break;
    const auto t0 = Clock::now();
    const fs::path dir = work_dir_ / ("candidate-" + std::to_string(++n_written_));
    CandidateMetrics m;
    bool cancelled = false;
    try {
      genome_.write_model(g, dir, n_threads_, /*force=*/true, cancel);
      m = run_on(dir, fitness_.split, cancel, &cancelled);
    } catch (const Interrupted&) {
      cancelled = true;
    } catch (const Error& e) {
      m = failure(e.what(), 0);
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (cancelled) break;
    m.seconds = seconds_since(t0);
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace shoal::evolve
