// shoal evolve CONFIG.yml [--out DIR] [--resume] [--log-json] [--threads N]: flags ->
// EvolveRunOptions -> shoal::run_evolve; `shoal evolve export RUN_DIR OUT [--rank K | --cell i,j]`
// writes one elite of a quality-diversity run. Exit codes: 0 when the budget (or the optimiser)
// ended the search, 1 for errors, 130 after Ctrl-C (the checkpoint is kept; --resume goes on).
#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "shoal/error.h"
#include "shoal/evolve.h"

namespace shoal::cli {
namespace {

namespace fs = std::filesystem;

std::atomic<bool> g_interrupted{false};

// The first Ctrl-C (or SIGTERM) stops the run at its checkpoint; a second one kills the process.
void on_signal(int sig) {
  g_interrupted.store(true);
  std::signal(sig, SIG_DFL);
}

struct EvolveFlags {
  std::string config;
  std::string out_dir;
  bool resume = false;
  bool quiet = false;
  bool log_json = false;
  int threads = 0;
};

struct ExportFlags {
  std::string run_dir;
  std::string out_dir;
  int rank = 0;
  std::string cell;
  bool force = false;
  int threads = 0;
};

// Default output folder: <config stem>-evolve, or <config's folder>-evolve for a config named
// evolve.yml (examples/tiny/evolve.yml -> tiny-evolve).
fs::path default_out(const fs::path& config) {
  std::string stem = config.stem().string();
  if (stem == "evolve") stem = fs::absolute(config).parent_path().filename().string();
  return stem + "-evolve";
}

void run(const EvolveFlags& flags) {
  const EvolveConfig config = load_evolve_config(flags.config);
  EvolveRunOptions options;
  options.out_dir = flags.out_dir.empty() ? default_out(flags.config) : fs::path(flags.out_dir);
  options.resume = flags.resume;
  options.log_mode = flags.log_json ? LogMode::kJson
                     : flags.quiet  ? LogMode::kQuiet
                                    : LogMode::kHuman;
  options.n_threads = flags.threads;
  options.interrupt = &g_interrupted;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const EvolveSummary s = run_evolve(config, options);
  nlohmann::json summary = {{"out", options.out_dir.string()}, {"stop_reason", s.stop_reason},
                            {"generations", s.generations},    {"evaluations", s.evaluations},
                            {"evaluated", s.evaluated},        {"failures", s.failures},
                            {"best_score", s.best_score},      {"seconds", s.seconds}};
  if (s.test_score) summary["test_score"] = *s.test_score;
  std::printf("%s\n", summary.dump().c_str());
  if (s.interrupted) {
    std::fprintf(stderr,
                 "shoal: evolve interrupted; %s/checkpoint.json is saved, --resume continues it\n",
                 options.out_dir.string().c_str());
    set_exit_code(130);
  }
}

void run_export(const ExportFlags& flags) {
  EliteExportOptions options;
  options.run_dir = flags.run_dir;
  options.out_dir = flags.out_dir;
  options.rank = flags.rank;
  options.force = flags.force;
  options.n_threads = flags.threads;
  if (!flags.cell.empty()) {
    std::vector<int> cell;
    std::stringstream in(flags.cell);
    std::string part;
    while (std::getline(in, part, ',')) {
      try {
        size_t used = 0;
        cell.push_back(std::stoi(part, &used));
        if (used != part.size()) throw std::invalid_argument(part);
      } catch (const std::exception&) {
        throw ConfigError("--cell must be bin indices separated by commas, e.g. 3,1");
      }
    }
    options.cell = cell;
  }
  const EliteExport e = export_elite(options);
  nlohmann::json j = {{"model", e.model.string()}, {"cell", e.cell}, {"score", -e.fitness}};
  if (!e.recipe.empty()) j["recipe"] = e.recipe.string();
  std::printf("%s\n", j.dump().c_str());
}

}  // namespace

void add_evolve_command(CLI::App& app) {
  auto flags = std::make_shared<EvolveFlags>();
  auto export_flags = std::make_shared<ExportFlags>();
  CLI::App* cmd = app.add_subcommand(
      "evolve", "Search merge recipes by evolution, fitness measured in memory (docs/EVOLVE.md)");
  cmd->add_option("config", flags->config, "Evolve config (YAML)");
  cmd->add_option("--out,-o", flags->out_dir,
                  "Output folder (default: <config name>-evolve in the current folder)");
  cmd->add_flag("--resume", flags->resume, "Continue the run saved in the output folder");
  cmd->add_flag("--quiet,-q", flags->quiet, "Print only warnings and errors");
  cmd->add_flag("--log-json", flags->log_json, "Write progress as JSON lines on stderr");
  cmd->add_option("--threads", flags->threads, "Threads (default: all cores)");

  CLI::App* exp = cmd->add_subcommand(
      "export", "Write one elite of a quality-diversity run as a recipe and a model folder");
  exp->add_option("run", export_flags->run_dir, "The run's output folder")->required();
  exp->add_option("out", export_flags->out_dir, "Model folder to write (recipe: OUT.yml)")
      ->required();
  exp->add_option("--rank", export_flags->rank, "Elite by rank, 0 = best (default 0)");
  exp->add_option("--cell", export_flags->cell, "Elite by cell: bin indices, e.g. 3,1");
  exp->add_flag("--force", export_flags->force, "Replace an existing output folder");
  exp->add_option("--threads", export_flags->threads, "Threads (default: all cores)");
  exp->callback([export_flags] { run_export(*export_flags); });

  cmd->callback([cmd, exp, flags] {
    if (exp->parsed()) return;
    if (flags->config.empty())
      throw ConfigError("evolve: no config given (shoal evolve CONFIG.yml)");
    run(*flags);
  });
}

}  // namespace shoal::cli
