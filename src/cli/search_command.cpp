// shoal search TASK.yml [--out DIR] [--resume]: flags -> SearchRunOptions -> shoal::run_search.
// Exit codes: 0 when a budget ended the search, 1 for errors (a fatal backend error such as a 401
// stops the search with its tree saved), 130 after Ctrl-C (the tree is saved; --resume goes on).
#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "shoal/error.h"
#include "shoal/search_run.h"

namespace shoal::cli {
namespace {

std::atomic<bool> g_interrupted{false};

// The first Ctrl-C (or SIGTERM) stops the search and saves it; a second one kills the process.
void on_signal(int sig) {
  g_interrupted.store(true);
  std::signal(sig, SIG_DFL);
}

struct SearchFlags {
  std::string task;
  std::string out_dir;
  bool resume = false;
  bool quiet = false;
  bool log_json = false;
};

void run(const SearchFlags& flags) {
  const SearchTask task = load_search_task(flags.task);
  SearchRunOptions options;
  options.out_dir = flags.out_dir.empty()
                        ? std::filesystem::path(task.file.stem().string() + "-search")
                        : std::filesystem::path(flags.out_dir);
  options.resume = flags.resume;
  options.log_mode = flags.log_json ? LogMode::kJson
                     : flags.quiet  ? LogMode::kQuiet
                                    : LogMode::kHuman;
  options.interrupt = &g_interrupted;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const SearchRunSummary s = run_search(task, options);
  const nlohmann::json summary = {
      {"out", options.out_dir.string()}, {"stop_reason", s.stop_reason},
      {"generations", s.generations},    {"calls", s.calls},
      {"failed_calls", s.failed_calls},  {"scorer_failures", s.scorer_failures},
      {"cost_usd", s.cost_usd},          {"best_node", s.best_node},
      {"best_score", s.best_score}};
  std::printf("%s\n", summary.dump().c_str());
  // What --resume reads: the tree checkpoint, or a population run's program database.
  const std::string saved =
      (options.out_dir / (task.algorithm == "population" ? "population.db" : "tree.json")).string();
  if (s.interrupted) {
    std::fprintf(stderr, "shoal: search interrupted; %s is saved, --resume continues it\n",
                 saved.c_str());
    set_exit_code(130);
  } else if (s.fatal) {
    std::fprintf(stderr,
                 "shoal: error: %s\nshoal: the search stopped; %s is saved, "
                 "--resume continues it\n",
                 s.stop_reason.c_str(), saved.c_str());
    set_exit_code(1);
  }
}

}  // namespace

void add_search_command(CLI::App& app) {
  auto flags = std::make_shared<SearchFlags>();
  CLI::App* cmd = app.add_subcommand(
      "search",
      "Search answers with several LLMs: AB-MCTS, population search, baselines (docs/SEARCH.md)");
  cmd->add_option("task", flags->task, "Search task (YAML)")->required();
  cmd->add_option("--out,-o", flags->out_dir,
                  "Output folder (default: <task name>-search in the current folder)");
  cmd->add_flag("--resume", flags->resume, "Continue the search saved in the output folder");
  cmd->add_flag("--quiet,-q", flags->quiet, "Print only warnings and errors");
  cmd->add_flag("--log-json", flags->log_json, "Write progress as JSON lines on stderr");
  cmd->callback([flags] { run(*flags); });
}

}  // namespace shoal::cli
