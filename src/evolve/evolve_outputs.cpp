// The end of a run: the best candidate as a recipe (best.yml) and a model folder (best/), its
// score on the test split, report.html and summary.json; and the export of an archive elite.
// Every file is written under a temporary name and renamed.
#include <fstream>

#include "evolve/evolve_run.h"
#include "shoal/error.h"

namespace shoal::evolve {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

void write_text_atomic(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw IoError(errno_message("cannot write " + tmp.string()));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    throw IoError("cannot rename " + tmp.string() + " to " + path.string() + ": " + ec.message());
}

std::string recipe_header(const EvolveConfig& config, const std::string& what,
                          const fs::path& file) {
  std::string merge = "shoal merge " + file.filename().string() + " OUT";
  if (config.merge_seed != 0) merge += " --seed " + std::to_string(config.merge_seed);
  return "# " + what + "\n# `" + merge + "` reproduces the model bit for bit.\n";
}

}  // namespace

EvolveSummary write_outputs(RunContext& ctx, const std::string& stop_reason) {
  const EvolveConfig& config = ctx.config;
  const fs::path& out = ctx.options.out_dir;
  RunState& state = ctx.state;
  const auto best = state.best();

  EvolveSummary s;
  s.stop_reason = stop_reason;
  s.generations = state.optimizer->generation();
  s.evaluations = state.optimizer->evaluations();
  s.evaluated = int64_t(state.cache.size());
  s.failures = state.failures();
  json summary = {{"stop_reason", stop_reason},
                  {"generations", s.generations},
                  {"evaluations", s.evaluations},
                  {"evaluated", s.evaluated},
                  {"failures", s.failures}};

  std::optional<FinalScores> final_scores;
  if (best) {
    const std::vector<double>& g = state.cache[*best].genome;
    const CandidateMetrics& m = state.cache[*best].metrics;
    s.best_score = m.score;
    s.best_genome = g;
    size_t evaluation = 0;
    while (state.history[evaluation] != *best) ++evaluation;
    if (const auto yaml = ctx.genome->recipe_yaml(g)) {
      write_text_atomic(
          out / "best.yml",
          recipe_header(config,
                        "shoal evolve: the best of " + std::to_string(s.evaluations) +
                            " candidates (evaluation " + std::to_string(evaluation + 1) + ").",
                        out / "best.yml") +
              *yaml);
    }
    std::error_code ec;
    if (!ctx.genome->recipe_yaml(g)) fs::remove(out / "best.yml", ec);  // none is exact
    for (const auto& [name, text] : ctx.genome->extra_files(g)) {
      write_text_atomic(out / ("best_" + name), text);
    }
    ctx.genome->write_model(g, out / "best", ctx.options.n_threads, /*force=*/true, nullptr);

    final_scores = FinalScores{m, std::nullopt};
    if (ctx.engine && !ctx.test_tasks.empty()) {
      final_scores->test = ctx.engine->evaluate_on(g, ctx.test_tasks);
    } else if (ctx.command && config.fitness.test_split) {
      final_scores->test = ctx.command->run_on(out / "best", *config.fitness.test_split, nullptr);
    }
    json scores = {{"split", config.fitness.split}, {"search", metrics_to_json(m)}};
    if (final_scores->test) {
      const CandidateMetrics& t = *final_scores->test;
      scores["test_split"] = *config.fitness.test_split;
      scores["test"] = metrics_to_json(t);
      if (t.ok) {
        s.test_score = t.score;
        s.test_scores = t.task_scores;
      }
    }
    write_text_atomic(out / "scores.json", scores.dump(2) + "\n");
    summary["best"] = {{"evaluation", evaluation + 1}, {"genome", g}};
    summary["best"].update(metrics_to_json(m));
    if (final_scores->test) summary["test"] = metrics_to_json(*final_scores->test);
  }
  write_text_atomic(out / "report.html", render_report(ctx, stop_reason, final_scores));
  write_text_atomic(out / "summary.json", summary.dump(2) + "\n");
  if (!best) {
    std::string first;
    for (const size_t i : state.history) {
      if (!state.cache[i].metrics.ok) {
        first = state.cache[i].metrics.error;
        break;
      }
    }
    throw Error("evolve: no candidate could be evaluated (see " + (out / "log.jsonl").string() +
                "); the first error: " + first);
  }
  return s;
}

}  // namespace shoal::evolve

namespace shoal {

EliteExport export_elite(const EliteExportOptions& options) {
  using namespace evolve;
  const fs::path& run = options.run_dir;
  const json checkpoint = read_json_file(run / "checkpoint.json");
  if (!checkpoint.is_object() || !checkpoint.contains("config_dir") ||
      !checkpoint["config_dir"].is_string()) {
    throw FormatError((run / "checkpoint.json").string() + ": not a shoal evolve checkpoint");
  }
  std::ifstream in(run / "config.yml", std::ios::binary);
  if (!in) throw IoError(errno_message("cannot open " + (run / "config.yml").string()));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EvolveConfig config =
      parse_evolve_config(text, run / "config.yml", checkpoint["config_dir"].get<std::string>());
  if (config.genome_kind == GenomeKind::kPsThenDfs) {
    // A phase folder (OUT/ps or OUT/dfs) of a two-phase run.
    const std::string phase = checkpoint.value("phase", "");
    if (phase != "ps" && phase != "dfs") {
      throw ConfigError(run.string() + ": export from the phase folders, " + (run / "ps").string() +
                        " or " + (run / "dfs").string());
    }
    config = phase_config(config, phase, fs::absolute(run).parent_path());
  }
  if (config.qd_axes.empty() || !fs::exists(run / "archive.json")) {
    throw ConfigError(run.string() + ": this run has no archive (quality_diversity is off)");
  }
  const MapElitesArchive archive = MapElitesArchive::load(run / "archive.json");
  const std::vector<Elite> elites = archive.elites();
  const Elite* elite = nullptr;
  if (options.cell) {
    if (options.cell->size() != archive.axes().size()) {
      throw ConfigError("--cell: the archive has " + std::to_string(archive.axes().size()) +
                        " axes");
    }
    for (size_t k = 0; k < options.cell->size(); ++k) {
      if ((*options.cell)[k] < 0 || (*options.cell)[k] >= archive.axes()[k].bins) {
        throw ConfigError("--cell: bin " + std::to_string((*options.cell)[k]) + " of axis " +
                          archive.axes()[k].name + " is outside [0, " +
                          std::to_string(archive.axes()[k].bins) + ")");
      }
    }
    elite = archive.at(*options.cell);
    if (elite == nullptr) throw ConfigError("--cell: that cell of the archive is empty");
  } else {
    if (options.rank < 0 || size_t(options.rank) >= elites.size()) {
      throw ConfigError("--rank " + std::to_string(options.rank) + ": the archive has " +
                        std::to_string(elites.size()) + " elites (ranks 0 to " +
                        std::to_string(int(elites.size()) - 1) + ")");
    }
    elite = &elites[size_t(options.rank)];
  }
  auto genome = make_run_genome(config, options.n_threads);
  if (elite->genome.size() != genome->size()) {
    throw ConfigError(run.string() + ": the elite has " + std::to_string(elite->genome.size()) +
                      " genes; the config's genome has " + std::to_string(genome->size()));
  }
  EliteExport result;
  result.fitness = elite->fitness;
  result.cell = elite->cell;
  result.model = options.out_dir;
  if (const auto yaml = genome->recipe_yaml(elite->genome)) {
    std::string cell;
    for (size_t k = 0; k < elite->cell.size(); ++k)
      cell += (k ? "," : "") + std::to_string(elite->cell[k]);
    result.recipe = options.out_dir.string() + ".yml";
    write_text_atomic(result.recipe, recipe_header(config,
                                                   "shoal evolve: archive elite in cell [" + cell +
                                                       "] of " + run.string() + ".",
                                                   result.recipe) +
                                         *yaml);
  }
  for (const auto& [name, text] : genome->extra_files(elite->genome)) {
    write_text_atomic(options.out_dir.string() + "_" + name, text);
  }
  genome->write_model(elite->genome, options.out_dir, options.n_threads, options.force, nullptr);
  return result;
}

}  // namespace shoal
