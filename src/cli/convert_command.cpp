// shoal convert IN OUT [--type f32|f16|bf16|q8_0]: HF folder <-> GGUF file (docs/GGUF.md).
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "shoal/error.h"
#include "shoal/gguf_convert.h"

namespace shoal::cli {
namespace {

struct ConvertFlags {
  std::string in;
  std::string out;
  std::string type;
  int threads = 0;
  bool force = false;
  bool quiet = false;
  bool log_json = false;
};

void run(const ConvertFlags& flags) {
  ConvertOptions options;
  options.type = flags.type;
  options.force = flags.force;
  options.n_threads = flags.threads;
  options.log_mode = flags.log_json ? LogMode::kJson
                     : flags.quiet  ? LogMode::kQuiet
                                    : LogMode::kHuman;
  const ConvertSummary s = convert_model(flags.in, flags.out, options);
  if (options.log_mode == LogMode::kHuman) {
    std::fprintf(stderr, "wrote %s (%s -> %s): %zu tensors, %s\n", flags.out.c_str(),
                 s.from.c_str(), s.to.c_str(), s.n_tensors, format_bytes(s.bytes_written).c_str());
  }
}

}  // namespace

void add_convert_command(CLI::App& app) {
  auto flags = std::make_shared<ConvertFlags>();
  CLI::App* cmd = app.add_subcommand(
      "convert", "Convert between a Hugging Face folder and a GGUF file (docs/GGUF.md)");
  cmd->add_option("in", flags->in, "HF model folder or .gguf file")->required();
  cmd->add_option("out", flags->out,
                  "Output: a .gguf file for an HF folder; for a GGUF file, an HF folder (or a "
                  ".gguf file to change its types)")
      ->required();
  cmd->add_option("--type", flags->type,
                  "Tensor type: f32, f16, bf16 or q8_0 (default: keep the input's)");
  cmd->add_option("--threads", flags->threads, "Worker threads (default: all cores)");
  cmd->add_flag("--force", flags->force, "Replace an existing output");
  cmd->add_flag("--quiet,-q", flags->quiet, "Print only warnings and errors");
  cmd->add_flag("--log-json", flags->log_json, "Write progress as JSON lines on stderr");
  cmd->callback([flags] { run(*flags); });
}

}  // namespace shoal::cli
