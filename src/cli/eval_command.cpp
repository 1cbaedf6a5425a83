// shoal eval MODEL TASK.yml: evaluate a model on tasks, print JSON metrics.
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "shoal/engine.h"
#include "shoal/error.h"
#include "shoal/eval_engine.h"

namespace shoal::cli {
namespace {

struct EvalFlags {
  std::string model;
  std::string tasks;
  size_t limit = 0;
  std::string samples;
  size_t batch_size = 32;
  int threads = 0;
  bool bf16_activations = false;
};

void run(const EvalFlags& flags) {
  // Tasks first: a bad task file fails before the model is loaded.
  const auto tasks = load_tasks(flags.tasks);
  ModelOptions options;
  options.n_threads = flags.threads;
  options.bf16_activations = flags.bf16_activations;
  const LoadedModel loaded = load_model(flags.model, options);
  EvalOptions eval_options;
  if (flags.limit > 0) eval_options.limit = flags.limit;
  eval_options.batch_size = flags.batch_size;
  eval_options.keep_samples = !flags.samples.empty();
  const EvalResult result = score(loaded.model, loaded.tokenizer, tasks, eval_options);
  if (!flags.samples.empty()) {
    std::ofstream out(flags.samples);
    if (!out) throw IoError(errno_message("cannot write " + flags.samples));
    write_samples_jsonl(out, result);
  }
  std::printf("%s\n", to_json(result).dump(2).c_str());
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto flags = std::make_shared<EvalFlags>();
  CLI::App* cmd = app.add_subcommand("eval", "Evaluate a model on tasks (docs/EVAL.md)");
  cmd->add_option("model", flags->model, "Model folder or .gguf file")->required();
  cmd->add_option("tasks", flags->tasks, "Task file (YAML)")->required();
  cmd->add_option("--limit", flags->limit, "At most N samples per task");
  cmd->add_option("--samples", flags->samples, "Write per-sample records (JSONL) to this file");
  cmd->add_option("--batch-size", flags->batch_size, "Requests per forward pass (default 32)");
  cmd->add_option("--threads", flags->threads, "Threads (default: all cores)");
  cmd->add_flag("--bf16-activations", flags->bf16_activations,
                "Round activations to BF16 in products with BF16 weights, as PyTorch and "
                "llama.cpp do (faster prefill; default: f32-grade activations)");
  cmd->callback([flags] { run(*flags); });
}

}  // namespace shoal::cli
