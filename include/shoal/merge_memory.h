// Merging into memory: a recipe becomes tensors held in RAM instead of a model folder, with a
// per-tensor cache so that, when the next recipe differs only in some tensors' parameters, only
// those tensors are merged again. This is what `shoal evolve` runs for every candidate. The
// bytes are exactly those `shoal merge` writes (same plan, same kernels, same seeds).
// Implemented in src/merge/memory_merge.cpp. A MemoryMerger is not thread-safe; the models it
// returns are immutable and may be read from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "shoal/dtype.h"
#include "shoal/recipe.h"

namespace shoal {

struct MemoryTensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  // Shared between the models of successive merges when a tensor did not change.
  std::shared_ptr<const std::vector<std::byte>> bytes;
  TensorView view() const { return {dtype, shape, bytes->data(), bytes->size()}; }
};

// A merged model in memory: what run_merge would have written, without the files.
struct MemoryModel {
  nlohmann::json config;                  // config.json as run_merge writes it
  std::vector<std::string> tensor_names;  // output order
  std::map<std::string, MemoryTensor, std::less<>> tensors;
  // Folder of the model whose tokenizer files run_merge would copy (empty when none), and the
  // recipe's chat template, resolved to Jinja text, when it sets one.
  std::filesystem::path tokenizer_dir;
  std::optional<std::string> chat_template;
  std::vector<std::string> warnings;  // the planner's
};

struct MemoryMergeOptions {
  uint64_t seed = 0;                 // DARE / DELLA masks, as MergeOptions::seed
  int n_threads = 0;                 // 0: one per hardware thread
  std::filesystem::path recipe_dir;  // as MergeOptions::recipe_dir
};

// What the last merge() did.
struct MemoryMergeStats {
  size_t n_tensors = 0;
  size_t n_merged = 0;  // computed by a kernel (or copied) in this call
  size_t n_reused = 0;  // taken from the cache: same inputs, parameters, method and seed
  uint64_t bytes_merged = 0;
  double seconds = 0;
};

class MemoryMerger {
 public:
  explicit MemoryMerger(MemoryMergeOptions options = {});
  ~MemoryMerger();
  MemoryMerger(const MemoryMerger&) = delete;
  MemoryMerger& operator=(const MemoryMerger&) = delete;

  // Plans the recipe with every check of run_merge (ConfigError listing the problems) and
  // merges it. A tensor whose task (method, input models and tensors, resolved parameters,
  // output shape and dtype, seed) equals the one cached under its name is reused, not
  // recomputed; the cache then holds exactly this model's tensors. The source model files must
  // not change between calls.
  std::shared_ptr<const MemoryModel> merge(const Recipe& recipe);

  const MemoryMergeStats& last_stats() const { return stats_; }
  void clear_cache();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  MemoryMergeStats stats_;
};

}  // namespace shoal
