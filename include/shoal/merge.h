// Weight-space merging: recipe -> validated plan -> streamed, multi-threaded merge into a model
// folder that transformers loads. Implemented in src/merge/plan.cpp and src/merge/executor.cpp.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "shoal/error.h"
#include "shoal/progress.h"
#include "shoal/recipe.h"

namespace shoal {

// kGguf: out_dir names one .gguf file, written with llama.cpp's tensor names, metadata and
// tokenizer (docs/GGUF.md) instead of a Hugging Face folder.
enum class OutputFormat { kSafetensors, kGguf };

struct MergeOptions {
  std::filesystem::path out_dir;
  OutputFormat format = OutputFormat::kSafetensors;
  uint64_t out_shard_size = 5'000'000'000;  // bytes of tensor data per shard
  uint64_t seed = 0;                        // DARE / DELLA masks
  int n_threads = 0;                        // 0: one per hardware thread
  bool force = false;                       // replace a non-empty out_dir
  bool copy_tokenizer = true;
  LogMode log_mode = LogMode::kHuman;
  // Directory that relative model paths are tried against after the current directory
  // (normally the recipe's folder).
  std::filesystem::path recipe_dir;
  // Set (e.g. from a SIGINT handler) to stop between tensors: the temporary folder is removed
  // and run_merge throws Interrupted. Not owned; may be null.
  const std::atomic<bool>* cancel = nullptr;
};

// Thrown by run_merge when `cancel` was set.
class Interrupted : public Error {
 public:
  using Error::Error;
};

struct MergeSummary {
  size_t n_tensors = 0;
  uint64_t bytes_written = 0;
  int n_layers = 0;
  std::vector<std::string> files;  // relative to out_dir
  std::vector<std::string> warnings;
  double seconds = 0;
};

// Checks everything (models exist, tensors exist, shapes agree, layer ranges, parameter ranges)
// and throws one ConfigError listing every problem, one per line, before writing anything.
// Then merges into a temporary folder beside out_dir and renames it to out_dir when complete.
MergeSummary run_merge(const Recipe& recipe, const MergeOptions& options);

// Only the validation step of run_merge: throws the same ConfigError, writes nothing.
void check_merge(const Recipe& recipe, const MergeOptions& options);

}  // namespace shoal
