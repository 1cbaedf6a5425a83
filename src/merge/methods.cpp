// Method names and dispatch, plus the two purely elementwise methods (linear, passthrough).
#include "merge/methods.h"

#include <array>

#include "merge/kernels.h"

namespace shoal::merge {
namespace {

struct MethodInfo {
  Method method;
  std::string_view name;  // mergekit's spelling
  bool requires_base;
  Sparsify sparsify;
  Consensus consensus;
};

// The task-vector rows follow the spec's table; the other methods have no sparsify/consensus.
constexpr std::array<MethodInfo, 13> kMethods{{
    {Method::kLinear, "linear", false, Sparsify::kNone, Consensus::kNone},
    {Method::kSlerp, "slerp", true, Sparsify::kNone, Consensus::kNone},
    {Method::kNuSlerp, "nuslerp", false, Sparsify::kNone, Consensus::kNone},
    {Method::kTaskArithmetic, "task_arithmetic", true, Sparsify::kNone, Consensus::kNone},
    {Method::kTies, "ties", true, Sparsify::kMagnitude, Consensus::kSum},
    {Method::kDareTies, "dare_ties", true, Sparsify::kRandom, Consensus::kSum},
    {Method::kDareLinear, "dare_linear", true, Sparsify::kRandom, Consensus::kNone},
    {Method::kBreadcrumbs, "breadcrumbs", true, Sparsify::kMagnitudeOutliers, Consensus::kNone},
    {Method::kBreadcrumbsTies, "breadcrumbs_ties", true, Sparsify::kMagnitudeOutliers,
     Consensus::kSum},
    {Method::kDella, "della", true, Sparsify::kDellaMagprune, Consensus::kSum},
    {Method::kDellaLinear, "della_linear", true, Sparsify::kDellaMagprune, Consensus::kNone},
    {Method::kModelStock, "model_stock", true, Sparsify::kNone, Consensus::kNone},
    {Method::kPassthrough, "passthrough", false, Sparsify::kNone, Consensus::kNone},
}};

const MethodInfo& info(Method m) {
  for (const auto& i : kMethods) {
    if (i.method == m) return i;
  }
  return kMethods[0];
}

}  // namespace

std::optional<Method> parse_method(std::string_view name) {
  for (const auto& i : kMethods) {
    if (i.name == name) return i.method;
  }
  return std::nullopt;
}

std::string_view method_name(Method m) {
  return info(m).name;
}
bool method_requires_base(Method m) {
  return info(m).requires_base;
}

namespace kernels {

Sparsify method_sparsify(Method m) {
  return info(m).sparsify;
}
Consensus method_consensus(Method m) {
  return info(m).consensus;
}

void merge_linear(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink) {
  std::vector<Reader> readers;
  std::vector<double> weights;
  double weight_sum = 0;
  for (const auto& in : args.inputs) {
    readers.emplace_back(in.view, args.out_shape);
    weights.push_back(in.params.weight);
    weight_sum += in.params.weight;
  }
  // sum_j w_j x_j / sum_j w_j, with the division folded into the weights (one multiply-add per
  // input and element; in double this differs from dividing last only far below the output's
  // precision). mergekit divides without a zero guard; so do we (the planner warns).
  if (args.params.normalize) {
    for (double& w : weights) w /= weight_sum;
  }
  for_each_output_block(args, pool, sink, [&](int64_t begin, int64_t n, double* out) {
    if (readers.empty()) {
      std::fill(out, out + n, 0.0);
      return;
    }
    for (size_t j = 0; j < readers.size(); ++j) {
      readers[j].read_scaled(begin, n, weights[j], j > 0, out);
    }
  });
}

void merge_passthrough(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink) {
  if (args.inputs.empty()) {
    copy_input(args, args.base ? Reader(*args.base, args.out_shape) : Reader(), pool, sink);
    return;
  }
  const Reader src(args.inputs[0].view, args.out_shape);
  const double scale = args.inputs[0].params.scale;
  for_each_output_block(args, pool, sink, [&](int64_t begin, int64_t n, double* out) {
    src.read(begin, n, out);
    if (scale != 1.0) {
      for (int64_t i = 0; i < n; ++i) out[i] *= scale;
    }
  });
}

}  // namespace kernels

void merge_tensor(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink) {
  using namespace kernels;
  switch (args.method) {
    case Method::kLinear:
      return merge_linear(args, pool, sink);
    case Method::kPassthrough:
      return merge_passthrough(args, pool, sink);
    case Method::kSlerp:
      return merge_slerp(args, pool, sink);
    case Method::kNuSlerp:
      return merge_nuslerp(args, pool, sink);
    case Method::kModelStock:
      return merge_model_stock(args, pool, sink);
    case Method::kTaskArithmetic:
    case Method::kTies:
    case Method::kDareTies:
    case Method::kDareLinear:
    case Method::kBreadcrumbs:
    case Method::kBreadcrumbsTies:
    case Method::kDella:
    case Method::kDellaLinear:
      return merge_task_vectors(args, pool, sink);
  }
}

}  // namespace shoal::merge
