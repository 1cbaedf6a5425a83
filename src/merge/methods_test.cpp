// Kernel-level tests of merge_tensor: every method against a plain whole-tensor reference written
// here from the spec (double precision, std::stable_sort selections, mergekit's slices taken
// literally), on sizes around the chunk size, 2-D and 3-D shapes and F32/F16/BF16 data; plus
// hand-worked cases, thread-count determinism, embedding rectification and bounded memory. The
// kernels' internals (selection engine, conversions) are tested in kernels_test.cpp.
#include "merge/methods.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <numeric>
#include <random>
#include <string>

#include "merge/kernels.h"

#include <gtest/gtest.h>

namespace shoal::merge {
namespace {

using kernels::kChunk;

// ---------------------------------------------------------------------------------------------
// Test tensors and running the kernel

struct HostTensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
  std::vector<double> values;  // the stored values, decoded

  TensorView view() const { return {dtype, shape, bytes.data(), bytes.size()}; }
};

HostTensor make_tensor(DType dtype, std::vector<int64_t> shape, const std::vector<double>& v) {
  HostTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes.resize(v.size() * dtype_size(dtype));
  from_f64(v.data(), dtype, t.bytes.data(), v.size());
  t.values.resize(v.size());
  to_f64(dtype, t.bytes.data(), t.values.data(), v.size());
  return t;
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Runs merge_tensor, checking that the sink calls cover the output exactly once.
std::vector<double> run_merge(const KernelArgs& args, ThreadPool& pool,
                              std::vector<std::byte>* raw = nullptr) {
  const size_t n = static_cast<size_t>(numel_of(args.out_shape));
  const size_t esize = dtype_size(args.out_dtype);
  std::vector<std::byte> bytes(n * esize);
  std::vector<std::pair<uint64_t, size_t>> ranges;
  std::mutex mutex;
  bool out_of_range = false;
  merge_tensor(args, pool, [&](uint64_t offset, const void* data, size_t len) {
    std::lock_guard lock(mutex);
    if (offset + len > bytes.size()) {
      out_of_range = true;
      return;
    }
    std::memcpy(bytes.data() + offset, data, len);
    ranges.emplace_back(offset, len);
  });
  EXPECT_FALSE(out_of_range);
  std::sort(ranges.begin(), ranges.end());
  uint64_t covered = 0;
  for (const auto& [offset, len] : ranges) {
    EXPECT_EQ(offset, covered) << "sink ranges overlap or leave a gap";
    covered = offset + len;
  }
  EXPECT_EQ(covered, bytes.size());
  std::vector<double> out(n);
  to_f64(args.out_dtype, bytes.data(), out.data(), n);
  if (raw) *raw = std::move(bytes);
  return out;
}

// Mantissa bits: a correctly rounded result is within 2^-p |x| of the exact value; one ulp of
// slack covers a double-precision difference in the last bits that flips a rounding. The
// absolute 1e-12 covers results that cancel to ~0 from O(1) terms, where the kernel's and the
// reference's double roundings (~1e-16 of the terms) differ.
double tolerance(DType t, double ref) {
  switch (t) {
    case DType::kBF16:
      return std::ldexp(std::abs(ref), -7) + 1e-12;
    case DType::kF16:
      return std::ldexp(std::abs(ref), -10) + 0x1p-24 + 1e-12;
    default:
      return std::ldexp(std::abs(ref), -23) + 1e-12;
  }
}

void expect_close(const std::vector<double>& got, const std::vector<double>& ref, DType t,
                  const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(ref[i])) continue;  // not comparable (see ref_nuslerp)
    if (std::abs(got[i] - ref[i]) <= tolerance(t, ref[i])) continue;
    if (++bad <= 5) {
      ADD_FAILURE() << what << ": element " << i << " got " << got[i] << " want " << ref[i];
    }
  }
  EXPECT_EQ(bad, 0) << what;
}

// ---------------------------------------------------------------------------------------------
// The reference: whole tensors in double, written from ../shared/specs/merge-methods.md

struct RefInputs {
  Method method;
  GlobalParams gp;
  std::vector<ModelParams> mp;
  std::vector<std::vector<double>> xs;  // non-base models
  std::vector<double> base;             // empty if none
  std::vector<int64_t> shape;
  CounterRng rng{0};
};

double norm_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

// Python's seq[start:stop] for 0 <= start, stop given as mergekit writes it (negative = from
// the end, and -0 == 0).
std::vector<int64_t> py_slice(const std::vector<int64_t>& seq, int64_t start, int64_t stop) {
  const int64_t n = static_cast<int64_t>(seq.size());
  if (stop < 0) stop += n;
  std::vector<int64_t> out;
  for (int64_t i = start; i < std::min(stop, n); ++i) out.push_back(seq[i]);
  return out;
}

std::vector<double> ref_sparsify(Sparsify kind, const std::vector<double>& delta,
                                 const ModelParams& p, bool rescale, const CounterRng& rng,
                                 const std::vector<int64_t>& shape) {
  const int64_t n = static_cast<int64_t>(delta.size());
  if (kind == Sparsify::kNone || p.density >= 1) return delta;
  std::vector<double> mask(delta.size(), 0.0);
  std::vector<int64_t> idx(delta.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto mag = [&](int64_t i) { return std::abs(delta[i]); };
  switch (kind) {
    case Sparsify::kMagnitude: {
      const auto k = static_cast<int64_t>(p.density * static_cast<double>(n));
      std::stable_sort(idx.begin(), idx.end(),
                       [&](int64_t a, int64_t b) { return mag(a) > mag(b); });
      for (int64_t r = 0; r < k; ++r) mask[idx[r]] = 1;
      break;
    }
    case Sparsify::kMagnitudeOutliers: {
      const auto target = static_cast<int64_t>(p.density * static_cast<double>(n));
      int64_t n_top = static_cast<int64_t>(p.gamma * static_cast<double>(n));
      int64_t n_bot = n - target - n_top;
      if (n_bot < 0) {
        n_top += n_bot;
        n_bot = 0;
      }
      std::stable_sort(idx.begin(), idx.end(),
                       [&](int64_t a, int64_t b) { return mag(a) < mag(b); });
      for (int64_t i : py_slice(idx, n_bot, -n_top)) mask[i] = 1;
      break;
    }
    case Sparsify::kRandom:
      for (int64_t i = 0; i < n; ++i) mask[i] = rng.uniform(i) < p.density ? 1 : 0;
      break;
    case Sparsify::kDellaMagprune: {
      if (p.density <= 0) return std::vector<double>(delta.size(), 0.0);
      const int64_t cols = shape.size() <= 1 ? n : shape.back();
      for (int64_t r0 = 0; r0 < n; r0 += cols) {
        std::vector<int64_t> row(cols);
        std::iota(row.begin(), row.end(), r0);
        std::stable_sort(row.begin(), row.end(),
                         [&](int64_t a, int64_t b) { return mag(a) < mag(b); });
        for (int64_t pos = 0; pos < cols; ++pos) {
          const double rank = static_cast<double>(pos + 1);
          const double prob = cols == 1
                                  ? p.density
                                  : p.density - p.epsilon +
                                        2 * p.epsilon * (rank - 1) / static_cast<double>(cols - 1);
          mask[row[pos]] = rng.uniform(row[pos]) < prob ? 1 : 0;
        }
      }
      break;
    }
    case Sparsify::kNone:
      break;
  }
  std::vector<double> masked(delta.size());
  double before = 0, after = 0;
  for (int64_t i = 0; i < n; ++i) {
    masked[i] = delta[i] * mask[i];
    before += std::abs(delta[i]);
    after += std::abs(masked[i]);
  }
  if (rescale && before >= 1e-7 && after >= 1e-7) {
    for (double& m : masked) m *= before / after;
  }
  return masked;
}

std::vector<double> ref_task_vector(const RefInputs& in) {
  const size_t n = in.base.size();
  if (in.xs.empty()) return in.base;
  const Sparsify kind = kernels::method_sparsify(in.method);
  std::vector<std::vector<double>> wd;
  for (size_t j = 0; j < in.xs.size(); ++j) {
    std::vector<double> delta(n);
    for (size_t i = 0; i < n; ++i) delta[i] = in.xs[j][i] - in.base[i];
    auto s = ref_sparsify(kind, delta, in.mp[j], in.gp.rescale, in.rng.stream(j), in.shape);
    for (double& v : s) v *= in.mp[j].weight;
    wd.push_back(std::move(s));
  }
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) {
    double mixed = 0, div = 0;
    if (kernels::method_consensus(in.method) == Consensus::kSum) {
      double total = 0;
      for (const auto& w : wd) total += w[i];
      const double majority = total >= 0 ? 1 : -1;
      for (size_t j = 0; j < wd.size(); ++j) {
        const double sign = wd[j][i] > 0 ? 1 : (wd[j][i] < 0 ? -1 : 0);
        if (sign == majority) {
          mixed += wd[j][i];
          div += in.mp[j].weight;
        }
      }
      if (div == 0) div = 1;
    } else {
      for (size_t j = 0; j < wd.size(); ++j) {
        mixed += wd[j][i];
        div += in.mp[j].weight;
      }
      if (std::abs(div) < 1e-8) div = 1;
    }
    if (in.gp.normalize) mixed /= div;
    mixed *= in.gp.lambda;
    out[i] = in.base[i] + mixed;
  }
  return out;
}

std::vector<double> ref_linear(const RefInputs& in) {
  std::vector<double> out(in.xs[0].size(), 0.0);
  double wsum = 0;
  for (size_t j = 0; j < in.xs.size(); ++j) {
    wsum += in.mp[j].weight;
    for (size_t i = 0; i < out.size(); ++i) out[i] += in.mp[j].weight * in.xs[j][i];
  }
  if (in.gp.normalize) {
    for (double& v : out) v /= wsum;
  }
  return out;
}

// mergekit's slerp, step by step: normalise copies, dot, lerp the originals when colinear.
std::vector<double> ref_slerp(double t, const std::vector<double>& v0,
                              const std::vector<double>& v1) {
  auto normalized = [](std::vector<double> v) {
    const double nv = norm_of(v);
    if (nv > 1e-8) {
      for (double& x : v) x /= nv;
    }
    return v;
  };
  const auto u0 = normalized(v0), u1 = normalized(v1);
  double dot = 0;
  for (size_t i = 0; i < v0.size(); ++i) dot += u0[i] * u1[i];
  std::vector<double> out(v0.size());
  if (std::abs(dot) > 0.9995) {
    for (size_t i = 0; i < v0.size(); ++i) out[i] = (1 - t) * v0[i] + t * v1[i];
    return out;
  }
  const double theta0 = std::acos(dot), sin0 = std::sin(theta0);
  const double s0 = std::sin(theta0 - theta0 * t) / sin0, s1 = std::sin(theta0 * t) / sin0;
  for (size_t i = 0; i < v0.size(); ++i) out[i] = s0 * v0[i] + s1 * v1[i];
  return out;
}

// The vectors a row-wise method works on, as lists of flat indices.
std::vector<std::vector<int64_t>> vectors_of(const std::vector<int64_t>& shape, int mode) {
  // mode 0: whole tensor; 1: along the last axis; 2: along axis 0.
  const int64_t n = numel_of(shape);
  std::vector<std::vector<int64_t>> out;
  if (mode == 0 || shape.size() <= 1) {
    out.emplace_back(n);
    std::iota(out[0].begin(), out[0].end(), 0);
  } else if (mode == 1) {
    const int64_t cols = shape.back();
    for (int64_t r = 0; r < n / cols; ++r) {
      out.emplace_back(cols);
      std::iota(out.back().begin(), out.back().end(), r * cols);
    }
  } else {
    const int64_t rows = shape[0], cols = n / rows;
    for (int64_t c = 0; c < cols; ++c) {
      out.emplace_back();
      for (int64_t r = 0; r < rows; ++r) out.back().push_back(r * cols + c);
    }
  }
  return out;
}

std::vector<double> ref_nuslerp(const RefInputs& in) {
  const double w1 = in.mp[0].weight, w2 = in.mp[1].weight;
  const double t = std::abs(w1 + w2) < 1e-6 ? 0.5 : w2 / (w1 + w2);
  const int mode = in.gp.nuslerp_flatten ? 0 : (in.gp.nuslerp_row_wise ? 2 : 1);
  const size_t n = in.xs[0].size();
  std::vector<double> out(n);
  for (const auto& vec : vectors_of(in.shape, mode)) {
    std::vector<double> a, b;
    for (int64_t i : vec) {
      const double o = in.base.empty() ? 0.0 : in.base[i];
      a.push_back(in.xs[0][i] - o);
      b.push_back(in.xs[1][i] - o);
    }
    const double na = std::max(norm_of(a), 1e-7), nb = std::max(norm_of(b), 1e-7);
    double cos = 0;
    for (size_t k = 0; k < a.size(); ++k) cos += (a[k] / na) * (b[k] / nb);
    const double theta = std::acos(std::clamp(cos, -1.0, 1.0));
    const double s = std::sin(theta);
    // Nearly antiparallel vectors: sin(theta) -> 0 while sin((1 - t) theta) does not, so the
    // result is decided by rounding in the cosine (quantised 2-element columns hit this). Such
    // vectors are left out of the comparison (NaN reference).
    const bool ill_conditioned = cos < 0 && std::abs(s) < 1e-6;
    for (size_t k = 0; k < a.size(); ++k) {
      const double o = in.base.empty() ? 0.0 : in.base[vec[k]];
      if (ill_conditioned) {
        out[vec[k]] = std::nan("");
        continue;
      }
      const double r = std::abs(s) < 1e-8
                           ? (1 - t) * a[k] + t * b[k]
                           : (std::sin((1 - t) * theta) * a[k] + std::sin(t * theta) * b[k]) / s;
      out[vec[k]] = o + r;
    }
  }
  return out;
}

std::vector<double> ref_model_stock(const RefInputs& in) {
  const size_t n_models = in.xs.size();
  std::vector<double> out(in.base.size());
  for (const auto& vec : vectors_of(in.shape, in.gp.filter_wise ? 1 : 0)) {
    std::vector<std::vector<double>> off(n_models);
    for (size_t j = 0; j < n_models; ++j) {
      for (int64_t i : vec) off[j].push_back(in.xs[j][i] - in.base[i]);
    }
    double cos_sum = 0;
    int pairs = 0;
    for (size_t a = 0; a < n_models; ++a) {
      for (size_t b = a + 1; b < n_models; ++b) {
        double dot = 0;
        for (size_t k = 0; k < vec.size(); ++k) dot += off[a][k] * off[b][k];
        cos_sum += std::clamp(dot / std::max(norm_of(off[a]) * norm_of(off[b]), 1e-6), -1.0, 1.0);
        ++pairs;
      }
    }
    const double cos = cos_sum / pairs, nm = static_cast<double>(n_models);
    const double t = nm * cos / (1 + (nm - 1) * cos);
    for (int64_t i : vec) {
      double mean = 0;
      for (size_t j = 0; j < n_models; ++j) mean += in.xs[j][i];
      mean /= nm;
      out[i] = t * mean + (1 - t) * in.base[i];
    }
  }
  return out;
}

std::vector<double> reference(const RefInputs& in) {
  switch (in.method) {
    case Method::kLinear:
      return ref_linear(in);
    case Method::kPassthrough: {
      auto out = in.xs[0];
      for (double& v : out) v *= in.mp[0].scale;
      return out;
    }
    case Method::kSlerp:
      return ref_slerp(in.gp.t, in.base, in.xs[0]);
    case Method::kNuSlerp:
      return ref_nuslerp(in);
    case Method::kModelStock:
      return ref_model_stock(in);
    default:
      return ref_task_vector(in);
  }
}

// ---------------------------------------------------------------------------------------------
// Random cases

struct Variant {
  std::string name;
  Method method;
  GlobalParams gp;
  std::vector<ModelParams> mp;
  bool with_base;
};

ModelParams mp(double weight, double density = 1.0, double gamma = 0.01, double epsilon = 0.15) {
  ModelParams p;
  p.weight = weight;
  p.density = density;
  p.gamma = gamma;
  p.epsilon = epsilon;
  return p;
}

GlobalParams gp(bool normalize, bool rescale = false, double lambda = 1.0) {
  GlobalParams g;
  g.normalize = normalize;
  g.rescale = rescale;
  g.lambda = lambda;
  return g;
}

std::vector<Variant> all_variants() {
  std::vector<Variant> v;
  v.push_back({"linear", Method::kLinear, gp(true), {mp(0.5), mp(0.3), mp(0.7)}, false});
  v.push_back({"linear_unnormalized", Method::kLinear, gp(false), {mp(0.5), mp(-0.25)}, false});
  {
    ModelParams p = mp(1.0);
    p.scale = 0.5;
    v.push_back({"passthrough", Method::kPassthrough, gp(false), {p}, false});
  }
  {
    GlobalParams g;
    g.t = 0.3;
    v.push_back({"slerp", Method::kSlerp, g, {mp(1.0)}, true});
  }
  for (int mode = 0; mode < 3; ++mode) {
    for (bool base : {true, false}) {
      GlobalParams g;
      g.nuslerp_flatten = mode == 0;
      g.nuslerp_row_wise = mode == 2;
      v.push_back({"nuslerp_mode" + std::to_string(mode) + (base ? "_base" : ""),
                   Method::kNuSlerp,
                   g,
                   {mp(0.4), mp(0.9)},
                   base});
    }
  }
  for (bool filter_wise : {false, true}) {
    GlobalParams g;
    g.filter_wise = filter_wise;
    v.push_back({filter_wise ? "model_stock_filter_wise" : "model_stock",
                 Method::kModelStock,
                 g,
                 {mp(1), mp(1), mp(1)},
                 true});
  }
  v.push_back(
      {"task_arithmetic", Method::kTaskArithmetic, gp(false), {mp(0.5), mp(-0.3), mp(1.0)}, true});
  v.push_back({"task_arithmetic_normalized",
               Method::kTaskArithmetic,
               gp(true, false, 0.8),
               {mp(0.5), mp(0.3)},
               true});
  v.push_back({"ties", Method::kTies, gp(true), {mp(0.5, 0.5), mp(0.3, 0.3), mp(0.7, 0.7)}, true});
  v.push_back({"ties_rescale_density1",
               Method::kTies,
               gp(false, true),
               {mp(1.0, 0.2), mp(0.6, 1.0)},
               true});
  v.push_back(
      {"dare_ties", Method::kDareTies, gp(false, true), {mp(0.5, 0.5), mp(0.7, 0.7)}, true});
  v.push_back({"dare_ties_norescale",
               Method::kDareTies,
               gp(true, false),
               {mp(0.5, 0.4), mp(0.7, 0.8)},
               true});
  v.push_back(
      {"dare_linear", Method::kDareLinear, gp(false, true), {mp(0.6, 0.4), mp(0.4, 0.6)}, true});
  v.push_back({"breadcrumbs",
               Method::kBreadcrumbs,
               gp(false),
               {mp(0.6, 0.6, 0.05), mp(0.5, 0.8, 0.01)},
               true});
  v.push_back({"breadcrumbs_ties_rescale",
               Method::kBreadcrumbsTies,
               gp(true, true),
               {mp(1.0, 0.5, 0.1), mp(0.5, 0.3, 0.02)},
               true});
  v.push_back({"della",
               Method::kDella,
               gp(true, true, 1.1),
               {mp(1.0, 0.5, 0.01, 0.1), mp(0.5, 0.4, 0.01, 0.2)},
               true});
  v.push_back({"della_linear",
               Method::kDellaLinear,
               gp(false, true),
               {mp(0.7, 0.6, 0.01, 0.2), mp(0.4, 0.3, 0.01, 0.1)},
               true});
  return v;
}

struct Data {
  std::vector<HostTensor> xs;
  std::optional<HostTensor> base;
};

// base ~ N(0, 1), models = base + N(0, 0.05): deltas of realistic relative size. Every tensor
// is stored in `dtype` (the base in `base_dtype`).
Data make_data(size_t n_models, bool with_base, DType dtype, DType base_dtype,
               const std::vector<int64_t>& shape, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal;
  const size_t n = static_cast<size_t>(numel_of(shape));
  std::vector<double> base(n);
  for (double& b : base) b = normal(gen);
  Data d;
  for (size_t j = 0; j < n_models; ++j) {
    std::vector<double> x(n);
    for (size_t i = 0; i < n; ++i) x[i] = base[i] + 0.05 * normal(gen);
    d.xs.push_back(make_tensor(dtype, shape, x));
  }
  if (with_base) d.base = make_tensor(base_dtype, shape, base);
  return d;
}

KernelArgs make_args(const Variant& v, const Data& d, const std::vector<int64_t>& shape,
                     DType out_dtype, uint64_t seed) {
  KernelArgs args;
  args.method = v.method;
  args.params = v.gp;
  args.out_shape = shape;
  args.out_dtype = out_dtype;
  args.rng = CounterRng(seed).stream(hash_name("model.layers.0.mlp.up_proj.weight"));
  for (size_t j = 0; j < d.xs.size(); ++j) args.inputs.push_back({d.xs[j].view(), v.mp[j]});
  if (d.base) args.base = d.base->view();
  return args;
}

RefInputs make_ref(const Variant& v, const Data& d, const KernelArgs& args) {
  RefInputs r{v.method, v.gp, v.mp, {}, {}, args.out_shape, args.rng};
  for (const auto& x : d.xs) r.xs.push_back(x.values);
  if (d.base) r.base = d.base->values;
  return r;
}

// magnitude needs k = int(density * n) >= 1 (mergekit refuses k == 0; so does the planner).
bool valid_for(const Variant& v, int64_t n) {
  if (kernels::method_sparsify(v.method) != Sparsify::kMagnitude) return true;
  for (const auto& p : v.mp) {
    if (p.density < 1 && static_cast<int64_t>(p.density * static_cast<double>(n)) == 0)
      return false;
  }
  return true;
}

struct DTypeCombo {
  DType in, base, out;
};

TEST(MergeKernels, EveryMethodMatchesReference) {
  ThreadPool pool(3);
  const std::vector<std::vector<int64_t>> shapes = {
      {1},        {kChunk - 1},    {kChunk}, {kChunk + 1}, {3 * kChunk + 7},
      {37, 1771}, {2, kChunk + 9}, {5, 3, 7}};
  const std::vector<DTypeCombo> combos = {{DType::kF32, DType::kF32, DType::kF32},
                                          {DType::kF16, DType::kF16, DType::kF16},
                                          {DType::kBF16, DType::kBF16, DType::kBF16},
                                          {DType::kBF16, DType::kF16, DType::kF32}};
  uint64_t seed = 1;
  for (const auto& v : all_variants()) {
    for (const auto& shape : shapes) {
      if (!valid_for(v, numel_of(shape))) continue;
      for (const auto& c : combos) {
        ++seed;
        const std::string what = v.name + " " + shape_to_string(shape) + " " +
                                 std::string(dtype_name(c.in)) + "->" +
                                 std::string(dtype_name(c.out));
        SCOPED_TRACE(what);
        const Data d = make_data(v.mp.size(), v.with_base, c.in, c.base, shape, seed);
        const KernelArgs args = make_args(v, d, shape, c.out, seed);
        expect_close(run_merge(args, pool), reference(make_ref(v, d, args)), c.out, what);
      }
    }
  }
}

TEST(MergeKernels, OutputIsIdenticalForAnyThreadCount) {
  ThreadPool pool1(1), pool2(2), pool3(3);
  const std::vector<int64_t> shape = {3, kChunk + 100};
  for (const auto& v : all_variants()) {
    SCOPED_TRACE(v.name);
    const Data d = make_data(v.mp.size(), v.with_base, DType::kBF16, DType::kBF16, shape, 77);
    const KernelArgs args = make_args(v, d, shape, DType::kF32, 77);
    std::vector<std::byte> b1, b2, b3;
    run_merge(args, pool1, &b1);
    run_merge(args, pool2, &b2);
    run_merge(args, pool3, &b3);
    EXPECT_TRUE(b1 == b2);
    EXPECT_TRUE(b1 == b3);
  }
}

// ---------------------------------------------------------------------------------------------
// Hand-worked cases

KernelArgs small_args(Method m, const std::vector<HostTensor>& xs, const HostTensor* base,
                      const std::vector<ModelParams>& params, GlobalParams g) {
  KernelArgs args;
  args.method = m;
  args.params = g;
  args.out_shape = xs.empty() ? base->shape : xs[0].shape;
  args.out_dtype = DType::kF32;
  for (size_t j = 0; j < xs.size(); ++j) args.inputs.push_back({xs[j].view(), params[j]});
  if (base) args.base = base->view();
  return args;
}

TEST(MergeKernels, TiesSignElectionByHand) {
  // base = 10 everywhere, weights 1, density 1 (no sparsification). Deltas:
  //   m1: [ 1, -2,  3, 0]
  //   m2: [ 2,  1, -1, 0]
  //   m3: [-4,  1, -1, 5]
  // column sums: -1 -> majority -, keep m3 (-4), div 1 -> -4
  //               0 -> majority + (>= 0), keep m2, m3 (1 + 1), div 2 -> 1
  //               1 -> majority +, keep m1 (3), div 1 -> 3
  //               5 -> majority +, keep m3 (5); the zeros never count, div 1 -> 5
  // normalize: base + [-4, 1, 3, 5] = [6, 11, 13, 15]; without: base + [-4, 2, 3, 5].
  ThreadPool pool(2);
  const HostTensor base = make_tensor(DType::kF32, {4}, {10, 10, 10, 10});
  const std::vector<HostTensor> xs = {make_tensor(DType::kF32, {4}, {11, 8, 13, 10}),
                                      make_tensor(DType::kF32, {4}, {12, 11, 9, 10}),
                                      make_tensor(DType::kF32, {4}, {6, 11, 9, 15})};
  const std::vector<ModelParams> params = {mp(1), mp(1), mp(1)};
  EXPECT_EQ(run_merge(small_args(Method::kTies, xs, &base, params, gp(true)), pool),
            (std::vector<double>{6, 11, 13, 15}));
  EXPECT_EQ(run_merge(small_args(Method::kTies, xs, &base, params, gp(false)), pool),
            (std::vector<double>{6, 12, 13, 15}));
  // task_arithmetic, no consensus: sums [-1, 0, 1, 5] / 3 with normalize.
  const auto ta = run_merge(small_args(Method::kTaskArithmetic, xs, &base, params, gp(true)), pool);
  EXPECT_FLOAT_EQ(ta[0], 10 - 1.0 / 3);
  EXPECT_FLOAT_EQ(ta[1], 10);
  EXPECT_FLOAT_EQ(ta[3], 10 + 5.0 / 3);
}

TEST(MergeKernels, TiesTopKByHand) {
  // One model, base 0, delta = [0.5, -3, 2, -0.25, 1]; density 0.4 -> k = int(0.4 * 5) = 2:
  // keep -3 and 2.
  ThreadPool pool(1);
  const HostTensor base = make_tensor(DType::kF32, {5}, {0, 0, 0, 0, 0});
  const std::vector<HostTensor> xs = {make_tensor(DType::kF32, {5}, {0.5, -3, 2, -0.25, 1})};
  EXPECT_EQ(run_merge(small_args(Method::kTies, xs, &base, {mp(1, 0.4)}, gp(true)), pool),
            (std::vector<double>{0, -3, 2, 0, 0}));
}

TEST(MergeKernels, SlerpColinearLerpsOriginals) {
  // v1 is almost 2 v0: |dot| > 0.9995, so out = 0.7 v0 + 0.3 v1.
  ThreadPool pool(1);
  const HostTensor v0 = make_tensor(DType::kF32, {4}, {1, 2, 3, 4});
  const std::vector<HostTensor> v1 = {make_tensor(DType::kF32, {4}, {2, 4, 6, 8.001})};
  GlobalParams g;
  g.t = 0.3;
  const auto out = run_merge(small_args(Method::kSlerp, v1, &v0, {mp(1)}, g), pool);
  const double want[4] = {1.3, 2.6, 3.9, 0.7 * 4 + 0.3 * static_cast<double>(8.001f)};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[i], want[i], 1e-6);
}

TEST(MergeKernels, SlerpOrthogonalUsesSinFormula) {
  // v0 = 3 e1, v1 = 4 e2: theta = pi/2; t = 1/3 gives sin(pi/3) v0 + sin(pi/6) v1
  // = [3 sqrt(3)/2, 2, 0, 0].
  ThreadPool pool(1);
  const HostTensor v0 = make_tensor(DType::kF32, {4}, {3, 0, 0, 0});
  const std::vector<HostTensor> v1 = {make_tensor(DType::kF32, {4}, {0, 4, 0, 0})};
  GlobalParams g;
  g.t = 1.0 / 3;
  const auto out = run_merge(small_args(Method::kSlerp, v1, &v0, {mp(1)}, g), pool);
  EXPECT_NEAR(out[0], 3 * std::sqrt(3.0) / 2, 1e-6);
  EXPECT_NEAR(out[1], 2, 1e-6);
  EXPECT_EQ(out[2], 0);
  EXPECT_EQ(out[3], 0);
  // t = 0 gives the base exactly.
  g.t = 0;
  EXPECT_EQ(run_merge(small_args(Method::kSlerp, v1, &v0, {mp(1)}, g), pool),
            (std::vector<double>{3, 0, 0, 0}));
}

TEST(MergeKernels, BreadcrumbsByHandAndQuirk) {
  ThreadPool pool(2);
  // delta = 0.1 .. 1.0 shuffled; density 0.5, gamma 0.1: n_top = 1, n_bot = 10 - 5 - 1 = 4, so
  // ascending ranks 4..8 survive: 0.5, 0.6, 0.7, 0.8, 0.9 (1.0 is the outlier).
  const std::vector<double> delta = {0.7, 0.1, 1.0, 0.4, 0.9, 0.2, 0.6, 0.3, 0.8, 0.5};
  const HostTensor base = make_tensor(DType::kF64, {10}, std::vector<double>(10, 0.0));
  const std::vector<HostTensor> xs = {make_tensor(DType::kF64, {10}, delta)};
  auto out =
      run_merge(small_args(Method::kBreadcrumbs, xs, &base, {mp(1, 0.5, 0.1)}, gp(false)), pool);
  std::vector<double> want = {0.7, 0, 0, 0, 0.9, 0, 0.6, 0, 0.8, 0.5};
  for (int i = 0; i < 10; ++i) EXPECT_NEAR(out[i], want[i], 1e-7) << i;
  // gamma = 0: mergekit slices idx[n_bot:-0], which is empty: the delta is dropped entirely.
  out = run_merge(small_args(Method::kBreadcrumbs, xs, &base, {mp(1, 0.5, 0.0)}, gp(false)), pool);
  EXPECT_EQ(out, std::vector<double>(10, 0.0));
  // gamma 0.01 on 10 elements: int(0.1) = 0, the same.
  out = run_merge(small_args(Method::kBreadcrumbs, xs, &base, {mp(1, 0.5, 0.01)}, gp(false)), pool);
  EXPECT_EQ(out, std::vector<double>(10, 0.0));
}

TEST(MergeKernels, ModelStockByHand) {
  // base = 1; offsets e1, e2, e1 + e2. Pairwise cosines 0, 1/sqrt2, 1/sqrt2: mean c = sqrt2/3.
  // N = 3: t = 3c / (1 + 2c) = sqrt2 / (1 + 2 sqrt2 / 3). mean offset = (2/3, 2/3, 0, 0), so
  // out = base + t * mean offset.
  ThreadPool pool(1);
  const HostTensor base = make_tensor(DType::kF32, {4}, {1, 1, 1, 1});
  const std::vector<HostTensor> xs = {make_tensor(DType::kF32, {4}, {2, 1, 1, 1}),
                                      make_tensor(DType::kF32, {4}, {1, 2, 1, 1}),
                                      make_tensor(DType::kF32, {4}, {2, 2, 1, 1})};
  const auto out = run_merge(
      small_args(Method::kModelStock, xs, &base, {mp(1), mp(1), mp(1)}, GlobalParams{}), pool);
  const double t = std::sqrt(2.0) / (1 + 2 * std::sqrt(2.0) / 3);
  EXPECT_NEAR(out[0], 1 + t * 2 / 3, 1e-6);
  EXPECT_NEAR(out[1], 1 + t * 2 / 3, 1e-6);
  EXPECT_EQ(out[2], 1);
  EXPECT_EQ(out[3], 1);
}

TEST(MergeKernels, DareKeepsBinomialFraction) {
  // base 0, x = 1, one model, no rescale: each output is 1 (kept) or 0.
  ThreadPool pool(2);
  const int64_t n = 3 * kChunk + 7;
  const double density = 0.3;
  const HostTensor base = make_tensor(DType::kBF16, {n}, std::vector<double>(n, 0.0));
  const std::vector<HostTensor> xs = {make_tensor(DType::kBF16, {n}, std::vector<double>(n, 1.0))};
  KernelArgs args = small_args(Method::kDareLinear, xs, &base, {mp(1, density)}, gp(false, false));
  args.rng = CounterRng(42).stream(hash_name("w"));
  const auto out = run_merge(args, pool);
  const auto kept = std::count(out.begin(), out.end(), 1.0);
  EXPECT_EQ(kept + std::count(out.begin(), out.end(), 0.0), n);
  const double mean = density * n, sigma = std::sqrt(n * density * (1 - density));
  EXPECT_LT(std::abs(kept - mean), 5 * sigma);
  // The mask is the documented formula, element by element.
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(out[i], args.rng.stream(0).uniform(i) < density ? 1.0 : 0.0) << i;
  }
}

// Many exact ties (bf16 deltas from a small set) around the k-th value: exactly k survive, and
// ties go to the lower index. 600K elements with 60% of |delta| == 0.5 push the selection past
// the collect limit, through the exact-count path.
TEST(MergeKernels, MagnitudeWithManyTiesKeepsExactlyK) {
  ThreadPool pool(3);
  for (int64_t n : {int64_t{10007}, int64_t{600000}}) {
    std::mt19937_64 gen(n);
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<double> x(n);
    for (auto& v : x) {
      const double r = u(gen);
      const double mag = r < 0.6 ? 0.5 : (r < 0.8 ? 0.25 : 1.0);
      v = u(gen) < 0.5 ? -mag : mag;
    }
    const HostTensor base = make_tensor(DType::kBF16, {n}, std::vector<double>(n, 0.0));
    const std::vector<HostTensor> xs = {make_tensor(DType::kBF16, {n}, x)};
    for (double density : {0.1, 0.3, 0.5, 0.9}) {
      SCOPED_TRACE(std::to_string(n) + " density " + std::to_string(density));
      const auto out =
          run_merge(small_args(Method::kTies, xs, &base, {mp(1, density)}, gp(true)), pool);
      const auto k = static_cast<int64_t>(density * static_cast<double>(n));
      EXPECT_EQ(n - std::count(out.begin(), out.end(), 0.0), k);
      RefInputs r{Method::kTies, gp(true), {mp(1, density)}, {xs[0].values},
                  base.values,   {n},      CounterRng(0)};
      expect_close(out, reference(r), DType::kF32, "ties");
    }
  }
}

TEST(MergeKernels, EmbeddingRectificationReadsTopLeftBlock) {
  ThreadPool pool(2);
  const std::vector<int64_t> out_shape = {50, 40};
  std::mt19937_64 gen(5);
  std::normal_distribution<double> normal;
  // Base [50, 40]; model 1 [53, 45] (wider and taller); model 2 [50, 40]; model 3 [60, 40].
  const std::vector<std::vector<int64_t>> shapes = {{53, 45}, {50, 40}, {60, 40}};
  std::vector<double> base_v(2000);
  for (auto& b : base_v) b = normal(gen);
  const HostTensor base = make_tensor(DType::kF32, out_shape, base_v);
  std::vector<HostTensor> xs;
  std::vector<std::vector<double>> cut;  // the top-left [50, 40] blocks
  for (const auto& s : shapes) {
    std::vector<double> v(s[0] * s[1]);
    for (auto& x : v) x = normal(gen);
    xs.push_back(make_tensor(DType::kF32, s, v));
    cut.emplace_back();
    for (int64_t r = 0; r < 50; ++r) {
      for (int64_t c = 0; c < 40; ++c) cut.back().push_back(xs.back().values[r * s[1] + c]);
    }
  }
  const std::vector<ModelParams> params = {mp(0.5, 0.5), mp(0.3, 0.5), mp(0.2, 0.5)};
  for (Method m : {Method::kLinear, Method::kTies, Method::kModelStock, Method::kNuSlerp}) {
    SCOPED_TRACE(std::string(method_name(m)));
    GlobalParams g = gp(true);
    g.nuslerp_flatten = false;
    g.nuslerp_row_wise = true;
    std::vector<HostTensor> in = xs;
    std::vector<ModelParams> p = params;
    std::vector<std::vector<double>> ref_xs = cut;
    if (m == Method::kNuSlerp) {
      in.pop_back();
      p.pop_back();
      ref_xs.pop_back();
    }
    KernelArgs args = small_args(m, in, &base, p, g);
    args.out_shape = out_shape;
    RefInputs r{m, g, p, ref_xs, base.values, out_shape, CounterRng(0)};
    if (m == Method::kLinear) r.base.clear();
    if (m == Method::kLinear) args.base.reset();
    expect_close(run_merge(args, pool), reference(r), DType::kF32, "rectified");
  }
}

// Peak RSS growth while merging a 20M-element tensor stays far below numel * 8 bytes (what one
// double copy of the tensor would cost). Linux only: resets the peak with /proc/self/clear_refs.
int64_t status_kb(const std::string& field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return -1;
}

TEST(MergeKernels, LargeTensorMergesInBoundedMemory) {
  const int64_t n = 20'000'000;
  // Inputs: bf16 bit patterns of normal numbers in [0.5, 2) with either sign, from an LCG.
  auto make = [&](uint64_t seed) {
    HostTensor t;
    t.dtype = DType::kBF16;
    t.shape = {4000, n / 4000};
    t.bytes.resize(static_cast<size_t>(n) * 2);
    uint64_t state = seed;
    for (int64_t i = 0; i < n; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      const uint16_t bits = static_cast<uint16_t>(0x3f00 + ((state >> 33) & 0xff)) |
                            static_cast<uint16_t>((state >> 60) & 1) << 15;
      std::memcpy(t.bytes.data() + 2 * i, &bits, 2);
    }
    return t;
  };
  const HostTensor base = make(1), x1 = make(2), x2 = make(3);
  KernelArgs args;
  args.method = Method::kTies;
  args.params = gp(true, true);
  args.out_shape = base.shape;
  args.out_dtype = DType::kBF16;
  args.base = base.view();
  args.inputs = {{x1.view(), mp(0.5, 0.3)}, {x2.view(), mp(0.7, 0.6)}};
  ThreadPool pool(2);
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  const int64_t rss_before = status_kb("VmRSS");
  if (rss_before < 0 || status_kb("VmHWM") > rss_before + 1024) {
    GTEST_SKIP() << "cannot reset the peak RSS here";
  }
  std::atomic<uint64_t> bytes_seen{0};
  merge_tensor(args, pool, [&](uint64_t, const void*, size_t len) { bytes_seen += len; });
  EXPECT_EQ(bytes_seen.load(), static_cast<uint64_t>(n) * 2);
  const int64_t growth_kb = status_kb("VmHWM") - rss_before;
  EXPECT_LT(growth_kb * 1024, n * 8 / 4) << "peak RSS grew by " << growth_kb << " kB";
  std::printf("peak RSS growth: %lld kB\n", static_cast<long long>(growth_kb));
}

TEST(MergeKernels, NoInputsGivesBase) {
  ThreadPool pool(1);
  const HostTensor base = make_tensor(DType::kBF16, {3}, {1, -2, 3});
  KernelArgs args = small_args(Method::kTies, {}, &base, {}, gp(true));
  args.out_dtype = DType::kBF16;
  EXPECT_EQ(run_merge(args, pool), (std::vector<double>{1, -2, 3}));
}

TEST(MergeKernels, MethodNames) {
  const std::vector<std::pair<std::string, Method>> names = {
      {"linear", Method::kLinear},
      {"slerp", Method::kSlerp},
      {"nuslerp", Method::kNuSlerp},
      {"task_arithmetic", Method::kTaskArithmetic},
      {"ties", Method::kTies},
      {"dare_ties", Method::kDareTies},
      {"dare_linear", Method::kDareLinear},
      {"breadcrumbs", Method::kBreadcrumbs},
      {"breadcrumbs_ties", Method::kBreadcrumbsTies},
      {"della", Method::kDella},
      {"della_linear", Method::kDellaLinear},
      {"model_stock", Method::kModelStock},
      {"passthrough", Method::kPassthrough}};
  for (const auto& [name, m] : names) {
    EXPECT_EQ(parse_method(name), m);
    EXPECT_EQ(method_name(m), name);
  }
  EXPECT_FALSE(parse_method("Ties"));
  EXPECT_FALSE(parse_method("sce"));
  EXPECT_TRUE(method_requires_base(Method::kTies));
  EXPECT_TRUE(method_requires_base(Method::kSlerp));
  EXPECT_TRUE(method_requires_base(Method::kModelStock));
  EXPECT_FALSE(method_requires_base(Method::kLinear));
  EXPECT_FALSE(method_requires_base(Method::kNuSlerp));
  EXPECT_FALSE(method_requires_base(Method::kPassthrough));
}

}  // namespace
}  // namespace shoal::merge
