// run_evolve: the generation loop. Each generation: ask the optimiser, look every candidate up in
// the fitness cache (exact genome), evaluate the new ones as one batch, tell the optimiser
// (-score; +inf for a failed candidate), feed the archive, log every candidate, checkpoint. The
// loop is a pure function of the config and the fitness values, so a resumed run (the state
// read back from the checkpoint) ends exactly where an uninterrupted one does.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "evolve/evolve_run.h"
#include "shoal/error.h"

namespace shoal::evolve {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string format_duration(double s) {
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, int(s) / 60 % 60);
  }
  return buf;
}

// The progress line: redrawn on a terminal (human mode), a JSON line per generation (JSON mode).
class RunProgress {
 public:
  RunProgress(LogMode mode, const EvolveBudget& budget, int64_t told_before)
      : mode_(mode),
        budget_(budget),
        tty_(mode == LogMode::kHuman && ::isatty(2) == 1),
        told_before_(told_before) {}

  void generation(const RunState& s, int64_t new_evaluations, double session_s, double total_s) {
    evaluated_ += new_evaluations;
    const int64_t told = s.optimizer->evaluations();
    const int64_t gen = s.optimizer->generation();
    const auto best = s.best();
    const double best_score = best ? s.cache[*best].metrics.score : NAN;
    // Remaining time: each budget's remaining candidates at this session's pace; the wall-time
    // budget caps it.
    const double pace = told > told_before_ ? session_s / double(told - told_before_) : 0;
    double eta = INFINITY;
    if (budget_.evaluations > 0) eta = std::min(eta, double(budget_.evaluations - told) * pace);
    if (budget_.generations > 0) {
      eta = std::min(eta, double(budget_.generations - gen) * s.optimizer->population() * pace);
    }
    if (budget_.wall_time_s > 0) eta = std::min(eta, std::max(0.0, budget_.wall_time_s - total_s));
    if (mode_ == LogMode::kJson) {
      json j = {{"event", "generation"},   {"generation", gen},        {"evaluations", told},
                {"evaluated", evaluated_}, {"failures", s.failures()}, {"elapsed_s", total_s}};
      j["best_score"] = best ? json(best_score) : json(nullptr);
      j["eta_s"] = std::isfinite(eta) ? json(eta) : json(nullptr);
      std::fprintf(stderr, "%s\n", j.dump().c_str());
      return;
    }
    if (!tty_) return;
    std::string line = "evolve: generation " + std::to_string(gen);
    if (budget_.generations > 0) line += "/" + std::to_string(budget_.generations);
    line += " | " + std::to_string(told);
    if (budget_.evaluations > 0) line += "/" + std::to_string(budget_.evaluations);
    line += " candidates";
    char buf[64];
    if (best) {
      std::snprintf(buf, sizeof buf, " | best %.6g", best_score);
      line += buf;
    }
    if (s.failures() > 0) line += " | " + std::to_string(s.failures()) + " failed";
    line += " | " + format_duration(total_s);
    if (std::isfinite(eta)) line += " | ETA " + format_duration(eta);
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    std::fflush(stderr);
    open_ = true;
  }

  void message(const std::string& text) {
    end_line();
    if (mode_ == LogMode::kJson) {
      std::fprintf(stderr, "%s\n", json({{"event", "message"}, {"message", text}}).dump().c_str());
    } else if (mode_ == LogMode::kHuman) {
      std::fprintf(stderr, "evolve: %s\n", text.c_str());
    }
  }

  void end_line() {
    if (open_) std::fprintf(stderr, "\n");
    open_ = false;
  }

 private:
  LogMode mode_;
  EvolveBudget budget_;
  bool tty_;
  int64_t told_before_;
  bool open_ = false;
  int64_t evaluated_ = 0;
};

std::string insertion_name(Insertion i) {
  switch (i) {
    case Insertion::kNewCell:
      return "new_cell";
    case Insertion::kImproved:
      return "improved";
    case Insertion::kRejected:
      return "rejected";
  }
  return "?";
}

// The optimiser options for this genome: its size and box, x0 as configured (checked).
OptimizerOptions optimizer_options(const EvolveConfig& config, const RunGenome& genome) {
  if (!config.x0.empty() && config.x0.size() != genome.size()) {
    throw ConfigError(config.file.string() + ": optimizer.x0 has " +
                      std::to_string(config.x0.size()) + " values; the genome has " +
                      std::to_string(genome.size()) + " (" + genome.layout() + ")");
  }
  OptimizerOptions o = config.optimizer;
  o.dimension = int(genome.size());
  o.lower = genome.lower();
  o.upper = genome.upper();
  o.x0 = config.x0.empty() ? genome.start() : config.x0;
  try {
    return resolve_options(o);
  } catch (const ConfigError& e) {
    throw ConfigError(config.file.string() + ": " + e.what());
  }
}

void check_axes(const EvolveConfig& config, const std::vector<TaskSpec>& tasks) {
  if (tasks.empty()) return;  // a command's scores are checked per candidate
  for (const ArchiveAxis& a : config.qd_axes) {
    std::string names;
    bool found = false;
    for (const TaskSpec& t : tasks) {
      found = found || t.name == a.name;
      names += (names.empty() ? "" : ", ") + t.name;
    }
    if (!found) {
      throw ConfigError(config.file.string() + ": quality_diversity axis '" + a.name +
                        "' is not a fitness task (tasks: " + names + ")");
    }
  }
}

}  // namespace

EvolveSummary run_with_genome(const EvolveConfig& config, const EvolveRunOptions& options,
                              std::unique_ptr<RunGenome> run_genome, const std::string& phase) {
  const auto t_session = Clock::now();
  const fs::path& out = options.out_dir;
  if (out.empty()) throw ConfigError("evolve: no output folder given (--out)");
  const fs::path checkpoint = out / "checkpoint.json";
  const fs::path log_path = out / "log.jsonl";
  std::error_code ec;
  if (!options.resume && fs::exists(checkpoint, ec)) {
    throw ConfigError(out.string() +
                      " already holds a run (checkpoint.json); continue it with "
                      "--resume or choose another --out");
  }
  if (options.resume && !fs::exists(checkpoint, ec)) {
    throw ConfigError("--resume: " + checkpoint.string() + " does not exist");
  }

  RunContext ctx{config, options, std::move(run_genome)};
  RunGenome& genome = *ctx.genome;
  const OptimizerOptions opt_options = optimizer_options(config, genome);
  if (config.budget.evaluations > 0 && config.budget.evaluations < opt_options.population) {
    throw ConfigError(config.file.string() + ": budget.evaluations (" +
                      std::to_string(config.budget.evaluations) +
                      ") is smaller than one generation (" +
                      std::to_string(opt_options.population) + " candidates)");
  }
  genome.check(opt_options.x0);
  if (!config.fitness.tasks.empty()) {
    ctx.search_tasks = load_fitness_tasks(config.fitness, config.fitness.split);
    if (config.fitness.test_split) {
      ctx.test_tasks = load_fitness_tasks(config.fitness, *config.fitness.test_split);
    }
  }
  check_axes(config, ctx.search_tasks);

  RunState& state = ctx.state;
  state.phase = phase;
  if (options.resume) {
    state = state_from_json(read_json_file(checkpoint), config, genome.size(), checkpoint);
    state.phase = phase;
    if (!fs::exists(log_path, ec) || fs::file_size(log_path, ec) < state.log_bytes) {
      throw FormatError(log_path.string() + " is shorter than checkpoint.json says (" +
                        std::to_string(state.log_bytes) + " bytes)");
    }
    fs::resize_file(log_path, state.log_bytes);  // drops lines of an unfinished generation
  } else {
    fs::create_directories(out);
    state.optimizer = make_optimizer(opt_options);
    if (!config.qd_axes.empty()) state.archive.emplace(config.qd_axes);
    std::ofstream(out / "config.yml", std::ios::binary | std::ios::trunc) << config.text;
    std::ofstream(log_path, std::ios::binary | std::ios::trunc);
  }

  if (ctx.search_tasks.empty()) {
    ctx.command = std::make_unique<CommandEvaluator>(genome, config.fitness, out / "candidates",
                                                     options.n_threads);
    ctx.evaluator = ctx.command.get();
  } else {
    ctx.engine = std::make_unique<EngineEvaluator>(genome, ctx.search_tasks, config.fitness,
                                                   options.n_threads);
    ctx.evaluator = ctx.engine.get();
  }

  std::ofstream log(log_path, std::ios::binary | std::ios::app);
  if (!log) throw IoError(errno_message("cannot open " + log_path.string()));
  const double elapsed_before = state.elapsed_s;
  const auto session_s = [&] {
    return std::chrono::duration<double>(Clock::now() - t_session).count();
  };
  const auto save = [&] {
    state.elapsed_s = elapsed_before + session_s();
    write_json_atomic(checkpoint, state_to_json(state, config));
    if (state.archive) state.archive->save(out / "archive.json");
  };
  if (!options.resume) save();

  RunProgress progress(options.log_mode, config.budget, state.optimizer->evaluations());
  Optimizer& opt = *state.optimizer;
  std::string stop;
  bool interrupted = false;
  while (true) {
    if (options.interrupt != nullptr && options.interrupt->load()) {
      interrupted = true;
      break;
    }
    if (config.budget.generations > 0 && opt.generation() >= config.budget.generations) {
      stop = "generations";
      break;
    }
    if (config.budget.wall_time_s > 0 &&
        elapsed_before + session_s() >= config.budget.wall_time_s) {
      stop = "wall_time";
      break;
    }
    if (opt.done()) {
      stop = "optimizer: " + opt.stop_reason();
      break;
    }
    const std::vector<std::vector<double>> population = opt.ask();
    if (config.budget.evaluations > 0 &&
        opt.evaluations() + int64_t(population.size()) > config.budget.evaluations) {
      stop = "evaluations";
      break;
    }

    // New genomes of this generation, each once, in order of first appearance.
    std::vector<std::vector<double>> todo;
    std::map<std::vector<double>, size_t> todo_index;
    for (const auto& g : population) {
      if (!state.cache_index.count(g) && todo_index.emplace(g, todo.size()).second) {
        todo.push_back(g);
      }
    }
    std::vector<CandidateMetrics> results = ctx.evaluator->evaluate(todo, options.interrupt);
    if (results.size() < todo.size()) {
      interrupted = true;
      break;
    }
    for (CandidateMetrics& m : results) {
      for (const ArchiveAxis& a : config.qd_axes) {
        if (m.ok && !m.task_scores.count(a.name)) {
          m.ok = false;
          m.error =
              "fitness command output: no score for archive axis '" + a.name + "' under \"scores\"";
        }
      }
    }

    // Tell, archive, log.
    std::vector<double> fitness;
    std::vector<json> lines;
    std::optional<size_t> best = state.best();
    const int64_t generation = opt.generation();
    for (size_t k = 0; k < population.size(); ++k) {
      const auto& g = population[k];
      const auto hit = todo_index.find(g);
      const bool fresh = hit != todo_index.end() && !state.cache_index.count(g);
      const size_t index = state.remember(g, fresh ? results[hit->second] : CandidateMetrics{});
      const CandidateMetrics& m = state.cache[index].metrics;
      fitness.push_back(m.ok ? -m.score : INFINITY);
      state.history.push_back(index);
      json line = {{"evaluation", state.history.size()},
                   {"generation", generation},
                   {"candidate", k},
                   {"cached", !fresh}};
      line.update(metrics_to_json(m));
      if (m.ok && (!best || m.score > state.cache[*best].metrics.score)) {
        best = index;
        line["best"] = true;
      }
      if (fresh && state.archive && m.ok) {
        std::vector<double> d;
        for (const ArchiveAxis& a : config.qd_axes) d.push_back(m.task_scores.at(a.name));
        const Insertion ins = state.archive->insert(
            g, -m.score, d, {{"evaluation", state.history.size()}, {"score", m.score}});
        line["archive"] = insertion_name(ins);
      }
      line["seconds"] = fresh ? results[hit->second].seconds : 0.0;
      line["genome"] = g;
      lines.push_back(std::move(line));
    }
    opt.tell(fitness);
    state.generation_ends.push_back(state.history.size());
    for (const json& line : lines) log << line.dump() << '\n';
    log.flush();
    if (!log) throw IoError(errno_message("cannot write " + log_path.string()));
    state.log_bytes = uint64_t(log.tellp());
    save();
    progress.generation(state, int64_t(todo.size()), session_s(), elapsed_before + session_s());
  }
  progress.end_line();

  if (interrupted) {
    save();  // the state of the last whole generation, with the time spent
    EvolveSummary s;
    s.interrupted = true;
    s.stop_reason = "interrupted";
    s.generations = opt.generation();
    s.evaluations = opt.evaluations();
    s.evaluated = int64_t(state.cache.size());
    s.failures = state.failures();
    if (const auto b = state.best()) {
      s.best_score = state.cache[*b].metrics.score;
      s.best_genome = state.cache[*b].genome;
    }
    s.seconds = session_s();
    return s;
  }
  progress.message("search stopped (" + stop + "); writing the best model and the report");
  EvolveSummary s = write_outputs(ctx, stop);
  s.seconds = session_s();
  return s;
}

}  // namespace shoal::evolve

namespace shoal {

EvolveSummary run_evolve(const EvolveConfig& config, const EvolveRunOptions& options) {
  if (config.genome_kind == GenomeKind::kPsThenDfs) return evolve::run_ps_then_dfs(config, options);
  return evolve::run_with_genome(config, options,
                                 evolve::make_run_genome(config, options.n_threads), "");
}

}  // namespace shoal
