// shoal merge RECIPE.yml OUT_DIR: flags -> MergeOptions -> shoal::run_merge.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "shoal/error.h"

#include "cli/commands.h"
#include "shoal/merge.h"

namespace shoal::cli {
namespace {

std::atomic<bool> g_interrupted{false};

// First Ctrl-C (or SIGTERM) asks the merge to stop between tensors and clean up; a second one
// kills the process the usual way.
void on_signal(int sig) {
  g_interrupted.store(true);
  std::signal(sig, SIG_DFL);
}

struct MergeFlags {
  std::string recipe;
  std::string out_dir;
  std::string out_shard_size = "5G";
  std::string format = "safetensors";
  uint64_t seed = 0;
  int threads = 0;
  bool force = false;
  bool quiet = false;
  bool log_json = false;
  bool dry_run = false;
  bool no_tokenizer = false;
};

// "5000000000", "5G", "500M", "64K" (decimal units, as disk sizes are quoted) -> bytes.
uint64_t parse_byte_size(const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = text.substr(used);
  double scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  if (unit == "K" || unit == "KB") scale = 1e3;
  if (unit == "M" || unit == "MB") scale = 1e6;
  if (unit == "G" || unit == "GB") scale = 1e9;
  if (unit == "T" || unit == "TB") scale = 1e12;
  if (used == 0 || scale == 0 || !(value >= 0) || value * scale > 1.8e19) {
    throw ConfigError("--out-shard-size: '" + text +
                      "' is not a size in bytes (e.g. 5000000000, 5G, 500M)");
  }
  return static_cast<uint64_t>(value * scale);
}

void run(const MergeFlags& flags) {
  const Recipe recipe = load_recipe(flags.recipe);
  MergeOptions options;
  options.out_dir = flags.out_dir;
  if (flags.format == "gguf") {
    options.format = OutputFormat::kGguf;
  } else if (flags.format != "safetensors") {
    throw ConfigError("--format: '" + flags.format + "' is not safetensors or gguf");
  }
  options.out_shard_size = parse_byte_size(flags.out_shard_size);
  options.seed = flags.seed;
  options.n_threads = flags.threads;
  options.force = flags.force;
  options.copy_tokenizer = !flags.no_tokenizer;
  options.log_mode = flags.log_json ? LogMode::kJson
                     : flags.quiet  ? LogMode::kQuiet
                                    : LogMode::kHuman;
  options.recipe_dir = recipe.file.parent_path();
  options.cancel = &g_interrupted;

  if (flags.dry_run) {
    check_merge(recipe, options);
    if (!flags.quiet)
      std::fprintf(stderr, "%s: recipe and models check out\n", flags.recipe.c_str());
    return;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  try {
    const MergeSummary summary = run_merge(recipe, options);
    if (options.log_mode == LogMode::kHuman) {
      std::fprintf(stderr, "wrote %s: %zu tensors, %d layers, %zu file(s)\n", flags.out_dir.c_str(),
                   summary.n_tensors, summary.n_layers, summary.files.size());
    }
  } catch (const Interrupted& e) {
    std::fprintf(stderr, "shoal: %s\n", e.what());
    set_exit_code(130);
  }
}

}  // namespace

void add_merge_command(CLI::App& app) {
  auto flags = std::make_shared<MergeFlags>();
  CLI::App* cmd =
      app.add_subcommand("merge", "Merge models with a mergekit-compatible YAML recipe");
  cmd->add_option("recipe", flags->recipe, "Recipe file (YAML)")->required();
  cmd->add_option("out_dir", flags->out_dir,
                  "Output model folder (a .gguf file with --format gguf)")
      ->required();
  cmd->add_option("--format", flags->format,
                  "safetensors (an HF folder, the default) or gguf (one llama.cpp file)");
  cmd->add_option("--out-shard-size", flags->out_shard_size,
                  "Largest shard, in bytes of tensor data: 5000000000, 5G, 500M (default 5G)");
  cmd->add_option("--seed", flags->seed, "Seed of the random masks (DARE, DELLA)");
  cmd->add_option("--threads", flags->threads, "Worker threads (default: all cores)");
  cmd->add_flag("--force", flags->force, "Replace a non-empty output folder");
  cmd->add_flag("--quiet,-q", flags->quiet, "Print only warnings and errors");
  cmd->add_flag("--log-json", flags->log_json, "Write progress as JSON lines on stderr");
  cmd->add_flag("--dry-run", flags->dry_run, "Check the recipe and models, write nothing");
  cmd->add_flag("--no-tokenizer", flags->no_tokenizer, "Do not copy tokenizer files");
  cmd->callback([flags] { run(*flags); });
}

}  // namespace shoal::cli
