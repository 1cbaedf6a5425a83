// MemoryMerger: run_merge's plan and kernels with a memory sink, and a per-tensor cache keyed by
// everything that determines a tensor's bytes. The kernel arguments are built exactly as the
// executor builds them (executor.cpp, kernel_args), so the bytes are identical to the files.
#include "shoal/merge_memory.h"

#include <chrono>
#include <cstring>
#include <unordered_map>

#include "merge/methods.h"
#include "merge/output_folder.h"
#include "merge/plan.h"
#include "shoal/rng.h"
#include "shoal/thread_pool.h"

namespace shoal {
namespace {

// Appends the exact bits of a value to a cache key.
template <typename T>
void put(std::string& key, const T& value) {
  static_assert(std::is_trivially_copyable_v<T>);
  key.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

void put_string(std::string& key, const std::string& s) {
  put(key, s.size());
  key += s;
}

void put_input(std::string& key, const merge::MergePlan& plan, const merge::PlannedInput& in) {
  put_string(key, plan.model_paths[in.model].string());
  put_string(key, in.tensor);
  const merge::ModelParams& p = in.params;
  for (double v : {p.weight, p.density, p.gamma, p.epsilon, p.scale}) put(key, v);
}

// Everything that decides a task's output bytes. Model folders are named by their resolved
// path: their files are assumed not to change while the merger lives.
std::string task_key(const merge::MergePlan& plan, const merge::TensorTask& task, uint64_t seed) {
  std::string key;
  put(key, task.method);
  put(key, task.dtype);
  put(key, task.copy_only);
  put(key, task.shape.size());
  for (int64_t d : task.shape) put(key, d);
  put(key, task.inputs.size());
  for (const auto& in : task.inputs) put_input(key, plan, in);
  put(key, task.base.has_value());
  if (task.base) put_input(key, plan, *task.base);
  const merge::GlobalParams& g = task.params;
  for (bool b : {g.normalize, g.rescale, g.nuslerp_flatten, g.nuslerp_row_wise, g.filter_wise}) {
    put(key, b);
  }
  put(key, g.lambda);
  put(key, g.t);
  put(key, seed);
  return key;
}

}  // namespace

struct MemoryMerger::Impl {
  explicit Impl(MemoryMergeOptions o) : options(std::move(o)), pool(options.n_threads) {}

  struct Cached {
    std::string key;
    MemoryTensor tensor;
  };

  MemoryTensor compute(const merge::MergePlan& plan, const merge::TensorTask& task) {
    const size_t nbytes = static_cast<size_t>(shape_numel(task.shape)) * dtype_size(task.dtype);
    auto bytes = std::make_shared<std::vector<std::byte>>(nbytes);
    std::byte* out = bytes->data();
    if (task.copy_only) {
      const auto& input = task.base ? *task.base : task.inputs.at(0);
      const TensorView src = plan.models[input.model]->view(input.tensor);
      std::memcpy(out, src.data, std::min(nbytes, src.nbytes));
    } else {
      merge::KernelArgs args;
      args.method = task.method;
      for (const auto& input : task.inputs) {
        args.inputs.push_back({plan.models[input.model]->view(input.tensor), input.params});
      }
      if (task.base) args.base = plan.models[task.base->model]->view(task.base->tensor);
      args.params = task.params;
      args.out_shape = task.shape;
      args.out_dtype = task.dtype;
      args.rng = CounterRng(options.seed).stream(hash_name(task.name));
      merge::merge_tensor(args, pool, [out](uint64_t offset, const void* data, size_t n) {
        std::memcpy(out + offset, data, n);
      });
    }
    return MemoryTensor{task.dtype, task.shape, std::move(bytes)};
  }

  MemoryMergeOptions options;
  ThreadPool pool;
  std::unordered_map<std::string, Cached> cache;  // output tensor name -> last merge
};

MemoryMerger::MemoryMerger(MemoryMergeOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

MemoryMerger::~MemoryMerger() = default;

void MemoryMerger::clear_cache() {
  impl_->cache.clear();
}

std::shared_ptr<const MemoryModel> MemoryMerger::merge(const Recipe& recipe) {
  const auto start = std::chrono::steady_clock::now();
  auto model = std::make_shared<MemoryModel>();
  model->chat_template = merge::resolve_chat_template(recipe);
  const merge::MergePlan plan = merge::plan_merge(recipe, impl_->options.recipe_dir);

  MemoryMergeStats stats;
  std::unordered_map<std::string, Impl::Cached> next;
  for (const merge::TensorTask& task : plan.tasks) {
    std::string key = task_key(plan, task, impl_->options.seed);
    Impl::Cached entry;
    if (auto it = impl_->cache.find(task.name); it != impl_->cache.end() && it->second.key == key) {
      entry = std::move(it->second);
      ++stats.n_reused;
    } else {
      entry = {std::move(key), impl_->compute(plan, task)};
      ++stats.n_merged;
      stats.bytes_merged += entry.tensor.bytes->size();
    }
    model->tensor_names.push_back(task.name);
    model->tensors[task.name] = entry.tensor;
    next[task.name] = std::move(entry);
  }
  impl_->cache = std::move(next);

  model->config = plan.out_config;
  if (plan.tokenizer_model >= 0) model->tokenizer_dir = plan.models[plan.tokenizer_model]->dir();
  model->warnings = plan.warnings;
  stats.n_tensors = plan.tasks.size();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stats_ = stats;
  return model;
}

}  // namespace shoal
