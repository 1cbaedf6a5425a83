// Merge method kernels: the math of ../shared/specs/merge-methods.md for one tensor, computed in
// double precision and rounded once to the output dtype. Kernels stream: inputs are read in
// fixed chunks straight from their (mmap'd) views and output bytes are handed to a sink chunk by
// chunk, so memory stays bounded whatever the tensor size. Whole-tensor statistics (top-k
// thresholds, norms, L1 sums) are gathered by extra passes over the inputs. Chunk boundaries
// and reduction order are fixed, so results are identical for any thread count.
// Implemented in src/merge/methods.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "shoal/dtype.h"
#include "shoal/rng.h"
#include "shoal/thread_pool.h"

namespace shoal::merge {

enum class Method {
  kLinear,
  kSlerp,
  kNuSlerp,
  kTaskArithmetic,
  kTies,
  kDareTies,
  kDareLinear,
  kBreadcrumbs,
  kBreadcrumbsTies,
  kDella,
  kDellaLinear,
  kModelStock,
  kPassthrough,
};

// "ties" -> Method::kTies; nullopt for an unknown name.
std::optional<Method> parse_method(std::string_view name);
std::string_view method_name(Method m);
// True for the methods that need a base model (task-vector family, model_stock, slerp).
bool method_requires_base(Method m);

enum class Sparsify { kNone, kMagnitude, kMagnitudeOutliers, kRandom, kDellaMagprune };
enum class Consensus { kNone, kSum };

// Method-wide parameters, already resolved for this tensor (gradients and filters applied).
struct GlobalParams {
  // Task-vector family. Defaults per method come from method_defaults().
  bool normalize = false;
  bool rescale = false;
  double lambda = 1.0;
  // slerp
  double t = 0.0;
  // nuslerp
  bool nuslerp_flatten = true;
  bool nuslerp_row_wise = false;
  // model_stock
  bool filter_wise = false;
};

// Per-model parameters, resolved for this tensor.
struct ModelParams {
  double weight = 1.0;
  double density = 1.0;
  double gamma = 0.01;    // breadcrumbs
  double epsilon = 0.15;  // della
  double scale = 1.0;     // passthrough
};

struct KernelInput {
  TensorView view;  // any of F32/F16/BF16/F64, possibly larger than the output (embeddings)
  ModelParams params;
};

// One output tensor. Non-2-D inputs have exactly the output shape. A 2-D input may have more
// rows and/or columns than the output (vocabulary-sized embeddings): the kernel reads its
// top-left [out_rows, out_cols] block. The planner has already done every check; kernels assume
// valid arguments and do not throw for input reasons.
struct KernelArgs {
  Method method = Method::kLinear;
  std::vector<KernelInput> inputs;  // the non-base models, in recipe order
  std::optional<TensorView> base;   // base_model's tensor, when the method uses one
  GlobalParams params;
  std::vector<int64_t> out_shape;
  DType out_dtype = DType::kF32;
  // This tensor's random stream: CounterRng(seed).stream(hash_name(output tensor name)). The
  // mask of input j (index in `inputs`) at flat output index i keeps the element iff
  // rng.stream(j).uniform(i) < keep probability. Tests re-implement this formula independently.
  CounterRng rng{0};
  // Optional. Called when a pass over the inputs is done with the elements at output indices
  // [begin, end) (once per chunk, from pool threads). The executor uses it to drop those pages
  // of the mmap'd source files from the resident set, so RSS is bounded by the chunks in flight,
  // not by the largest tensor; a later pass over the same elements faults them back in from the
  // page cache.
  std::function<void(int64_t begin, int64_t end)> release;
};

// Receives output bytes: `n` bytes belonging at `byte_offset` of the output tensor. Called from
// pool threads, each call for a distinct range.
using OutputSink = std::function<void(uint64_t byte_offset, const void* data, size_t n)>;

// Merges one tensor. Peak extra memory is O(chunk size x number of inputs x threads), not
// O(tensor size).
void merge_tensor(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink);

}  // namespace shoal::merge
