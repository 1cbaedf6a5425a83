// run_merge: plan, then stream every output tensor through its kernel into a sharded writer in a
// temporary folder, then rename (or, with OutputFormat::kGguf, into one GGUF file written under a
// temporary name). Memory stays bounded: kernels read the mmap'd inputs in chunks,
// output bytes go straight to the shard files with pwrite, and each input tensor's pages are
// dropped from the resident set once it has been merged.
#include <algorithm>
#include <atomic>
#include <functional>
#include <system_error>

#include "io/gguf_model_writer.h"
#include "io/gguf_tokenizer.h"
#include "io/temp_folder.h"
#include "merge/methods.h"
#include "merge/output_folder.h"
#include "merge/plan.h"
#include "shoal/merge.h"
#include "shoal/rng.h"
#include "shoal/thread_pool.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;

using io::TempFolder;

void check_output_dir(const MergeOptions& options) {
  if (options.out_dir.empty()) throw ConfigError("no output folder given");
  std::error_code ec;
  if (options.format == OutputFormat::kGguf) {
    if (fs::is_directory(options.out_dir, ec)) {
      throw ConfigError(options.out_dir.string() + " is a folder; --format gguf writes one file");
    }
    if (fs::exists(options.out_dir, ec) && !options.force) {
      throw ConfigError(options.out_dir.string() + " exists (use --force to replace it)");
    }
    return;
  }
  if (options.out_shard_size == 0) throw ConfigError("--out-shard-size must be at least 1 byte");
  if (!fs::exists(options.out_dir, ec)) return;
  if (!fs::is_directory(options.out_dir, ec)) {
    throw ConfigError(options.out_dir.string() + " exists and is not a folder");
  }
  if (!fs::is_empty(options.out_dir, ec) && !options.force) {
    throw ConfigError(options.out_dir.string() +
                      " exists and is not empty (use --force to replace it)");
  }
}

std::vector<OutputTensorSpec> output_specs(const merge::MergePlan& plan) {
  std::vector<OutputTensorSpec> specs;
  specs.reserve(plan.tasks.size());
  for (const auto& task : plan.tasks) specs.push_back({task.name, task.dtype, task.shape});
  return specs;
}

// Tensors whose inputs together exceed this are released chunk by chunk while they merge;
// smaller ones all at once when done. Bounds RSS by about this plus the chunks in flight.
constexpr uint64_t kStreamReleaseBytes = 32u << 20;

// The bytes of `view` that hold output elements [begin, end) of an output of `out_shape`
// (the top-left block when a 2-D input is wider or taller than the output).
std::pair<uint64_t, uint64_t> input_byte_range(const TensorView& view,
                                               const std::vector<int64_t>& out_shape, int64_t begin,
                                               int64_t end) {
  const uint64_t esize = dtype_size(view.dtype);
  if (view.shape == out_shape || view.shape.size() != 2 || out_shape.size() != 2) {
    return {begin * esize, (end - begin) * esize};
  }
  const int64_t out_cols = out_shape[1], in_cols = view.shape[1];
  const int64_t r0 = begin / out_cols, r1 = (end + out_cols - 1) / out_cols;
  return {static_cast<uint64_t>(r0 * in_cols) * esize,
          static_cast<uint64_t>((r1 - r0) * in_cols) * esize};
}

// KernelArgs::release for a task whose inputs are large: drops the pages a pass is done with.
void attach_streaming_release(const merge::MergePlan& plan, const merge::TensorTask& task,
                              merge::KernelArgs& args) {
  std::vector<std::pair<const merge::PlannedInput*, TensorView>> inputs;
  uint64_t total = 0;
  for (size_t j = 0; j < task.inputs.size(); ++j) {
    inputs.emplace_back(&task.inputs[j], args.inputs[j].view);
    total += args.inputs[j].view.nbytes;
  }
  if (task.base) {
    inputs.emplace_back(&*task.base, *args.base);
    total += args.base->nbytes;
  }
  if (total < kStreamReleaseBytes) return;
  // Releasing every chunk costs more in unmapping (TLB shootdowns) than it saves, so pages go
  // in windows of kReleaseWindow elements, one window behind the chunk that just finished: the
  // chunks other threads still work on are left alone. (Releasing too early is only slower,
  // never wrong: the pages come back from the page cache.) The executor releases the rest when
  // the tensor is done.
  constexpr int64_t kReleaseWindow = int64_t{1} << 21;
  args.release = [&plan, inputs, out_shape = task.shape](int64_t begin, int64_t end) {
    const int64_t window = end / kReleaseWindow;
    if (window == begin / kReleaseWindow || window < 2) return;
    for (const auto& [input, view] : inputs) {
      const auto [offset, n] = input_byte_range(view, out_shape, (window - 2) * kReleaseWindow,
                                                (window - 1) * kReleaseWindow);
      plan.models[input->model]->release(input->tensor, offset, n);
    }
  };
}

merge::KernelArgs kernel_args(const merge::MergePlan& plan, const merge::TensorTask& task,
                              uint64_t seed) {
  merge::KernelArgs args;
  args.method = task.method;
  for (const auto& input : task.inputs) {
    args.inputs.push_back({plan.models[input.model]->view(input.tensor), input.params});
  }
  if (task.base) args.base = plan.models[task.base->model]->view(task.base->tensor);
  args.params = task.params;
  args.out_shape = task.shape;
  args.out_dtype = task.dtype;
  args.rng = CounterRng(seed).stream(hash_name(task.name));
  attach_streaming_release(plan, task, args);
  return args;
}

void release_inputs(const merge::MergePlan& plan, const merge::TensorTask& task) {
  for (const auto& input : task.inputs) plan.models[input.model]->release(input.tensor);
  if (task.base) plan.models[task.base->model]->release(task.base->tensor);
}

// Where output bytes go: (tensor index, byte offset, bytes, count).
using WriteFn = std::function<void(size_t, uint64_t, const void*, size_t)>;

// Copies a tensor that is not merged (integer buffers) in bounded pieces.
void copy_tensor(const TensorView& src, size_t index, const WriteFn& write, ThreadPool& pool) {
  constexpr size_t kPiece = 8u << 20;
  const size_t n_pieces = std::max<size_t>(1, (src.nbytes + kPiece - 1) / kPiece);
  pool.parallel_for(n_pieces, [&](size_t p) {
    const size_t begin = p * kPiece;
    const size_t n = std::min(kPiece, src.nbytes - std::min(begin, src.nbytes));
    if (n > 0) write(index, begin, src.data + begin, n);
  });
}

// Runs every task of the plan (except those `skip` names) into `write`.
void merge_tasks(const merge::MergePlan& plan, const MergeOptions& options, Progress& progress,
                 const WriteFn& write, const std::function<bool(size_t)>& skip) {
  ThreadPool pool(options.n_threads);
  for (size_t i = 0; i < plan.tasks.size(); ++i) {
    if (options.cancel && options.cancel->load()) {
      throw Interrupted("merge interrupted; nothing was written to " + options.out_dir.string());
    }
    const merge::TensorTask& task = plan.tasks[i];
    const uint64_t nbytes = static_cast<uint64_t>(shape_numel(task.shape)) * dtype_size(task.dtype);
    if (skip(i)) {
      progress.advance(task.name, nbytes);
      continue;
    }
    if (task.copy_only) {
      const auto& input = task.base ? *task.base : task.inputs.at(0);
      copy_tensor(plan.models[input.model]->view(input.tensor), i, write, pool);
    } else {
      merge::merge_tensor(
          kernel_args(plan, task, options.seed), pool,
          [&](uint64_t offset, const void* data, size_t n) { write(i, offset, data, n); });
    }
    release_inputs(plan, task);
    progress.advance(task.name, nbytes);
  }
}

// The tokenizer.* metadata of the output GGUF: the tokenizer model's GGUF vocabulary as stored,
// or its tokenizer.json converted.
std::vector<GgufKv> gguf_tokenizer(const merge::MergePlan& plan, const std::string& where,
                                   const std::optional<std::string>& chat_template,
                                   bool copy_tokenizer, Progress& progress) {
  if (!copy_tokenizer || plan.tokenizer_model < 0) return {};
  const ModelFolder& m = *plan.models[plan.tokenizer_model];
  if (const GgufFile* g = m.gguf()) return io::gguf_tokenizer_entries(*g, chat_template);
  int64_t rows = 0;
  for (const auto& task : plan.tasks) {
    if (task.name == "model.embed_tokens.weight") rows = task.shape.at(0);
  }
  if (!std::filesystem::exists(m.dir() / "tokenizer.json")) {
    progress.warn(where + ": " + m.dir().string() +
                  " has no tokenizer.json; the GGUF has no vocabulary (llama.cpp needs one)");
    return {};
  }
  return io::hf_tokenizer_to_gguf(m.dir(), rows, chat_template);
}

MergeSummary run_merge_gguf(const Recipe& recipe, const MergeOptions& options,
                            const merge::MergePlan& plan) {
  uint64_t total_bytes = 0;
  for (const auto& task : plan.tasks) {
    total_bytes += static_cast<uint64_t>(shape_numel(task.shape)) * dtype_size(task.dtype);
  }
  Progress progress("merge", "tensors", plan.tasks.size(), total_bytes, options.log_mode);
  for (const auto& warning : plan.warnings) progress.warn(warning);
  const std::string where = recipe.file.empty() ? "merge" : recipe.file.string();
  io::GgufModelWriter writer(options.out_dir, plan.out_config, output_specs(plan),
                             gguf_tokenizer(plan, where, merge::resolve_chat_template(recipe),
                                            options.copy_tokenizer, progress),
                             io::GgufOutType::kKeep, options.out_dir.stem().string(), where);
  for (const std::string& w : writer.warnings()) progress.warn(w);
  merge_tasks(
      plan, options, progress,
      [&](size_t i, uint64_t offset, const void* data, size_t n) {
        writer.write(i, offset, data, n);
      },
      [&](size_t i) { return writer.skipped(i); });
  writer.finish();
  progress.finish();

  MergeSummary summary;
  summary.n_tensors = plan.tasks.size();
  summary.bytes_written = writer.file_bytes();
  summary.n_layers = plan.out_layers;
  summary.files = {options.out_dir.filename().string()};
  summary.warnings = plan.warnings;
  summary.warnings.insert(summary.warnings.end(), writer.warnings().begin(),
                          writer.warnings().end());
  summary.seconds = progress.elapsed_seconds();
  return summary;
}

}  // namespace

void check_merge(const Recipe& recipe, const MergeOptions& options) {
  check_output_dir(options);
  merge::resolve_chat_template(recipe);
  merge::plan_merge(recipe, options.recipe_dir);
}

MergeSummary run_merge(const Recipe& recipe, const MergeOptions& options) {
  check_output_dir(options);
  merge::resolve_chat_template(recipe);
  const merge::MergePlan plan = merge::plan_merge(recipe, options.recipe_dir);
  if (options.format == OutputFormat::kGguf) return run_merge_gguf(recipe, options, plan);

  uint64_t total_bytes = 0;
  for (const auto& task : plan.tasks) {
    total_bytes += static_cast<uint64_t>(shape_numel(task.shape)) * dtype_size(task.dtype);
  }
  Progress progress("merge", "tensors", plan.tasks.size(), total_bytes, options.log_mode);
  for (const auto& warning : plan.warnings) progress.warn(warning);

  TempFolder temp(options.out_dir);
  SafetensorsWriter writer(temp.path(), output_specs(plan), options.out_shard_size);
  merge_tasks(
      plan, options, progress,
      [&](size_t i, uint64_t offset, const void* data, size_t n) {
        writer.write(i, offset, data, n);
      },
      [](size_t) { return false; });
  writer.finish();
  merge::write_folder_extras(temp.path(), recipe, plan, options.copy_tokenizer);
  temp.commit();
  progress.finish();

  MergeSummary summary;
  summary.n_tensors = plan.tasks.size();
  summary.bytes_written = total_bytes;
  summary.n_layers = plan.out_layers;
  summary.files = writer.file_names();
  summary.warnings = plan.warnings;
  summary.seconds = progress.elapsed_seconds();
  return summary;
}

}  // namespace shoal
