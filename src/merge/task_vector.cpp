// The task-vector family (task_arithmetic, ties, dare_*, breadcrumbs*, della*): spec steps 1-5.
// Passes over the inputs, each streaming chunk by chunk:
//   1. selection (magnitude / magnitude_outliers only): select_ranks finds each model's top-k or
//      outlier thresholds, exactly, as (key, index) positions;
//   2. rescale (when `rescale` and some model is sparsified): per-chunk L1 sums of delta and of
//      the masked delta, combined in chunk order, give each model's factor;
//   3. output: mask, rescale, weight, elect signs, normalise, add to the base, round once.
// Masks are recomputed where needed instead of stored: the thresholds and the counter-based RNG
// make them a pure function of (model, index).
#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <vector>

#include "merge/kernels.h"
#include "merge/select.h"

namespace shoal::merge::kernels {
namespace {

// Thresholds that every element is at or after (lower) / before (upper). Keys are |x| bit
// patterns, at most 0x7fff'ffff'ffff'ffff, and no index reaches INT64_MAX.
constexpr Threshold kNoLowerBound{0, 0, true};
constexpr Threshold kNoUpperBound{0x7fffffffffffffffull, INT64_MAX, true};

// keep[i] = 1.0 if element begin + i lies at or after `lower` and before `upper`, else 0.0.
// Keys compare as signed integers (they are below 2^63), which vectorises from AVX2 on.
SHOAL_KERNEL_CLONES void threshold_mask(const double* d, int64_t begin, int64_t n, Threshold lower,
                                        Threshold upper, double* keep) {
  const auto lo_key = static_cast<int64_t>(lower.key), hi_key = static_cast<int64_t>(upper.key);
  for (int64_t i = 0; i < n; ++i) {
    const auto key = static_cast<int64_t>(std::bit_cast<uint64_t>(d[i]) & 0x7fffffffffffffffull);
    const int64_t idx = begin + i;
    const bool lo_tie = lower.asc_ties ? idx >= lower.index : idx <= lower.index;
    const bool hi_tie = upper.asc_ties ? idx >= upper.index : idx <= upper.index;
    const bool after_lo = (key > lo_key) | ((key == lo_key) & lo_tie);
    const bool after_hi = (key > hi_key) | ((key == hi_key) & hi_tie);
    keep[i] = after_lo & !after_hi ? 1.0 : 0.0;
  }
}

// keep[i] = 1.0 iff rng.uniform(begin + i) < density, compared as integers:
// uniform = m * 2^-53 with m = bits >> 11 < 2^53, and m < density * 2^53 iff m < cut.
SHOAL_KERNEL_CLONES void random_mask(CounterRng rng, uint64_t cut, int64_t begin, int64_t n,
                                     double* keep) {
  for (int64_t i = 0; i < n; ++i) {
    keep[i] = (rng.bits(static_cast<uint64_t>(begin + i)) >> 11) < cut ? 1.0 : 0.0;
  }
}

// keep[i] = 1.0 iff rng.uniform(begin + i) < p[i] (exact conversions and a compare only).
SHOAL_KERNEL_CLONES void uniform_below(CounterRng rng, int64_t begin, int64_t n, const double* p,
                                       double* keep) {
  for (int64_t i = 0; i < n; ++i) {
    keep[i] = rng.uniform(static_cast<uint64_t>(begin + i)) < p[i] ? 1.0 : 0.0;
  }
}

uint64_t random_cut(double density) {
  if (!(density > 0)) return 0;
  if (density >= 1) return uint64_t{1} << 53;
  return static_cast<uint64_t>(std::ceil(density * 0x1p53));
}

// Selects between doubles vectorise only where the compiler may assume that comparisons raise
// no FP exceptions, hence the attribute on these two plain loops (values are unaffected: it
// allows no reassociation or contraction). They call nothing, so no inlining is lost, and they
// hold no multiply-add, so their ISA clones cannot differ by an FMA.
#define SHOAL_NO_TRAPPING_MATH [[gnu::optimize("no-trapping-math")]] SHOAL_KERNEL_CLONES

// Step 3's inner loop for one model: where wd agrees in sign with the majority (total >= 0
// counts as +; exact zeros agree with neither), mixed += wd and div += w.
SHOAL_NO_TRAPPING_MATH void add_agreeing(const double* total, const double* wd, double w, int64_t n,
                                         double* mixed, double* div) {
  for (int64_t i = 0; i < n; ++i) {
    const bool positive = total[i] >= 0;
    const bool keep = (positive & (wd[i] > 0)) | (!positive & (wd[i] < 0));
    mixed[i] += keep ? wd[i] : 0.0;
    div[i] += keep ? w : 0.0;
  }
}

// mixed /= div, with a zero divisor read as 1.
SHOAL_NO_TRAPPING_MATH void divide_by_nonzero(const double* div, int64_t n, double* mixed) {
  for (int64_t i = 0; i < n; ++i) mixed[i] /= div[i] == 0 ? 1.0 : div[i];
}

// The indices 0..n-1 sorted by keys[i], ties by index: an LSD radix sort of (key, index) on
// 11-bit digits, over only the bit range where the keys differ. Each pass is stable and the
// input is in index order, so equal keys stay in index order. Several times faster than
// std::sort for della's rows (thousands of elements), where sorting is the whole cost.
// Returns thread-local storage, valid until the next call on this thread.
const int64_t* sort_indices_by_key(const uint64_t* keys, int64_t n) {
  constexpr int kRadixBits = 11;
  constexpr size_t kRadix = size_t{1} << kRadixBits;
  thread_local std::vector<uint64_t> key_a, key_b;
  thread_local std::vector<int64_t> idx_a, idx_b, count(kRadix);
  const auto un = static_cast<size_t>(n);
  key_a.assign(keys, keys + n);
  key_b.resize(un);
  idx_a.resize(un);
  idx_b.resize(un);
  uint64_t any = 0, all = ~uint64_t{0};
  for (int64_t i = 0; i < n; ++i) {
    idx_a[i] = i;
    any |= keys[i];
    all &= keys[i];
  }
  const uint64_t differing = any ^ all;
  if (differing == 0) return idx_a.data();
  const int lo = std::countr_zero(differing), hi = 64 - std::countl_zero(differing);
  for (int shift = lo; shift < hi; shift += kRadixBits) {
    std::fill(count.begin(), count.end(), 0);
    for (int64_t i = 0; i < n; ++i) ++count[(key_a[i] >> shift) & (kRadix - 1)];
    int64_t offset = 0;
    for (auto& c : count) {
      const int64_t here = c;
      c = offset;
      offset += here;
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t pos = count[(key_a[i] >> shift) & (kRadix - 1)]++;
      key_b[pos] = key_a[i];
      idx_b[pos] = idx_a[i];
    }
    key_a.swap(key_b);
    idx_a.swap(idx_b);
  }
  return idx_a.data();
}

struct TvModel {
  Reader x;
  ModelParams params;
  Sparsify sparsify = Sparsify::kNone;  // kNone when density >= 1 (the delta is untouched)
  CounterRng rng{0};                    // args.rng.stream(model index)
  // magnitude / magnitude_outliers: kept iff !keep_none, at or after `lower` and before
  // `upper` in the thresholds' order. The defaults admit everything.
  bool keep_none = false;
  Threshold lower = kNoLowerBound, upper = kNoUpperBound;
  // random: kept iff (rng.bits(i) >> 11) < random_cut, i.e. rng.uniform(i) < density.
  uint64_t random_cut = 0;
  double factor = 1.0;  // L1 rescale
};

class TaskVectorMerge {
 public:
  TaskVectorMerge(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink)
      : args_(args), pool_(pool), sink_(sink) {
    numel_ = shape_numel(args.out_shape);
    if (args.base) base_ = Reader(*args.base, args.out_shape);
    const Sparsify sparsify = method_sparsify(args.method);
    consensus_ = method_consensus(args.method);
    for (size_t j = 0; j < args.inputs.size(); ++j) {
      TvModel m;
      m.x = Reader(args.inputs[j].view, args.out_shape);
      m.params = args.inputs[j].params;
      m.sparsify = m.params.density >= 1 ? Sparsify::kNone : sparsify;
      m.rng = args.rng.stream(j);
      m.random_cut = random_cut(m.params.density);
      models_.push_back(m);
    }
    // della ranks within rows: one segment per row, whole rows per chunk. Others: fixed blocks.
    if (sparsify == Sparsify::kDellaMagprune) {
      seg_len_ = last_dim(args.out_shape, numel_);
      chunk_len_ = std::max<int64_t>(1, kChunk / seg_len_) * seg_len_;
    }
  }

  void run() {
    select_thresholds();
    if (args_.params.rescale) compute_rescale_factors();
    write_output();
  }

 private:
  // Reads the base into slot 1 and delta_j = x_j - base into slot 2 + j for the models in
  // `which` (all when empty). Returns the base block.
  const double* load(int64_t begin, int64_t n, const std::vector<char>* which,
                     double** delta) const {
    double* base = scratch(1, n);
    base_.read(begin, n, base);
    for (size_t j = 0; j < models_.size(); ++j) {
      if (which && !(*which)[j]) continue;
      double* d = delta[j] = scratch(2 + j, n);
      models_[j].x.read(begin, n, d);
      for (int64_t i = 0; i < n; ++i) d[i] -= base[i];
    }
    return base;
  }

  void select_thresholds() {
    std::vector<RankQuery> queries;
    std::vector<std::pair<size_t, bool>> owner;  // (model, is upper)
    const int64_t n = numel_;
    for (size_t j = 0; j < models_.size(); ++j) {
      TvModel& m = models_[j];
      if (m.sparsify == Sparsify::kMagnitude) {
        const auto k = static_cast<int64_t>(m.params.density * static_cast<double>(n));
        if (k >= n) {
          m.sparsify = Sparsify::kNone;
        } else if (k <= 0) {
          m.keep_none = true;  // mergekit refuses k == 0; the planner reports it
        } else {
          // The top k by |delta|, ties to the lower index, are the last k of the order
          // "key ascending, ties by index descending".
          queries.push_back({j, n - k, false});
          owner.push_back({j, false});
        }
      } else if (m.sparsify == Sparsify::kMagnitudeOutliers) {
        const auto target = static_cast<int64_t>(m.params.density * static_cast<double>(n));
        int64_t n_top = static_cast<int64_t>(m.params.gamma * static_cast<double>(n));
        int64_t n_bot = n - target - n_top;
        if (n_bot < 0) {
          n_top += n_bot;
          n_bot = 0;
        }
        // Kept: ascending positions [n_bot, n - n_top). mergekit's quirk: it slices
        // idx[n_bot:-n_top], which is empty when n_top == 0.
        if (n_top <= 0 || n_bot >= n - n_top) {
          m.keep_none = true;
          continue;
        }
        if (n_bot > 0) {
          queries.push_back({j, n_bot, true});
          owner.push_back({j, false});
        }
        queries.push_back({j, n - n_top, true});
        owner.push_back({j, true});
      }
    }
    if (queries.empty()) return;
    const KeyFn keys = [this](int64_t begin, int64_t n, const std::vector<char>& need,
                              uint64_t* const* out) {
      std::vector<double*> delta(models_.size());
      load(begin, n, &need, delta.data());
      for (size_t j = 0; j < models_.size(); ++j) {
        if (!need[j]) continue;
        for (int64_t i = 0; i < n; ++i) out[j][i] = magnitude_key(delta[j][i]);
      }
    };
    const auto found = select_ranks(queries, models_.size(), numel_, keys, pool_, args_.release);
    for (size_t q = 0; q < queries.size(); ++q) {
      TvModel& m = models_[owner[q].first];
      (owner[q].second ? m.upper : m.lower) = found[q];
    }
  }

  // Step 1 for one model on one segment [begin, begin + n) (a whole row for della): multiplies
  // d by its 0/1 mask in place, as mergekit does (so -0.0 and NaN behave alike).
  void apply_mask(const TvModel& m, int64_t begin, int64_t n, double* d) const {
    if (m.sparsify == Sparsify::kNone) return;
    double* keep = scratch(4 + models_.size(), n);
    if (m.keep_none) {
      std::fill(keep, keep + n, 0.0);
    } else if (m.sparsify == Sparsify::kRandom) {
      random_mask(m.rng, m.random_cut, begin, n, keep);
    } else if (m.sparsify == Sparsify::kDellaMagprune) {
      della_mask(m, begin, n, d, keep);
    } else {
      threshold_mask(d, begin, n, m.lower, m.upper, keep);
    }
    for (int64_t i = 0; i < n; ++i) d[i] *= keep[i];
  }

  // One row: rank |delta| ascending 1..n (ties by lower index first) and keep with probability
  // density - epsilon + 2 epsilon (rank - 1) / (n - 1).
  void della_mask(const TvModel& m, int64_t begin, int64_t n, const double* d, double* keep) const {
    const double density = m.params.density, epsilon = m.params.epsilon;
    if (density <= 0) {
      std::fill(keep, keep + n, 0.0);
      return;
    }
    // order[r] = index of the element of rank r + 1 (key ascending, then index ascending).
    uint64_t* keys = key_scratch(0, static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) keys[i] = magnitude_key(d[i]);
    const int64_t* order = sort_indices_by_key(keys, n);
    // p by element, in index order so that the RNG loop runs sequentially and vectorises.
    double* p = scratch(5 + models_.size(), n);
    if (n == 1) {
      p[0] = density;
    } else {
      for (int64_t r = 0; r < n; ++r) p[order[r]] = static_cast<double>(r);
      const double span = static_cast<double>(n - 1);
      for (int64_t i = 0; i < n; ++i) p[i] = density - epsilon + 2 * epsilon * p[i] / span;
    }
    uniform_below(m.rng, begin, n, p, keep);
  }

  // Runs fn(c_begin, c_end) for every chunk, in parallel.
  template <class Fn>
  void for_each_chunk(Fn&& fn) {
    pool_.parallel_for(static_cast<size_t>(ceil_div(numel_, chunk_len_)), [&](size_t c) {
      const int64_t c_begin = static_cast<int64_t>(c) * chunk_len_;
      const int64_t c_end = std::min(numel_, c_begin + chunk_len_);
      fn(c, c_begin, c_end);
      release_inputs(args_, c_begin, c_end);
    });
  }

  void compute_rescale_factors() {
    std::vector<char> sparsified(models_.size(), 0);
    bool any = false;
    for (size_t j = 0; j < models_.size(); ++j) {
      sparsified[j] = models_[j].sparsify != Sparsify::kNone;
      any = any || sparsified[j];
    }
    if (!any) return;
    const size_t n_models = models_.size();
    const int64_t n_chunks = ceil_div(numel_, chunk_len_);
    // [chunk][model][before, after]
    std::vector<double> sums(static_cast<size_t>(n_chunks) * n_models * 2, 0.0);
    for_each_chunk([&](size_t c, int64_t c_begin, int64_t c_end) {
      std::vector<double*> delta(n_models);
      for (int64_t b = c_begin; b < c_end; b += seg_len_) {
        const int64_t n = std::min(seg_len_, c_end - b);
        load(b, n, &sparsified, delta.data());
        for (size_t j = 0; j < n_models; ++j) {
          if (!sparsified[j]) continue;
          double* s = sums.data() + (c * n_models + j) * 2;
          s[0] += abs_sum(delta[j], n);
          apply_mask(models_[j], b, n, delta[j]);
          s[1] += abs_sum(delta[j], n);
        }
      }
    });
    for (size_t j = 0; j < n_models; ++j) {
      if (!sparsified[j]) continue;
      double before = 0, after = 0;
      for (int64_t c = 0; c < n_chunks; ++c) {
        before += sums[(c * n_models + j) * 2];
        after += sums[(c * n_models + j) * 2 + 1];
      }
      // L1 rescale, skipped when either norm is below 1e-7 (mergekit's eps).
      if (before >= 1e-7 && after >= 1e-7) models_[j].factor = before / after;
    }
  }

  void write_output() {
    const size_t n_models = models_.size();
    const size_t esize = dtype_size(args_.out_dtype);
    double weight_sum = 0;
    for (const auto& m : models_) weight_sum += m.params.weight;
    const double linear_div = std::abs(weight_sum) < 1e-8 ? 1.0 : weight_sum;
    const bool normalize = args_.params.normalize;
    const double lambda = args_.params.lambda;
    for_each_chunk([&](size_t, int64_t c_begin, int64_t c_end) {
      std::byte* bytes = byte_scratch(static_cast<size_t>(c_end - c_begin) * esize);
      std::vector<double*> delta(n_models);
      for (int64_t b = c_begin; b < c_end; b += seg_len_) {
        const int64_t n = std::min(seg_len_, c_end - b);
        const double* base = load(b, n, nullptr, delta.data());
        // Steps 1-2: wd_j = w_j * (masked delta_j * factor_j).
        for (size_t j = 0; j < n_models; ++j) {
          const TvModel& m = models_[j];
          double* d = delta[j];
          apply_mask(m, b, n, d);
          const double factor = m.factor, w = m.params.weight;
          for (int64_t i = 0; i < n; ++i) d[i] = d[i] * factor * w;
        }
        double* mixed = scratch(0, n);
        std::fill(mixed, mixed + n, 0.0);
        if (consensus_ == Consensus::kSum) {
          // Step 3: majority sign of sum_j wd_j (>= 0 counts as +); keep the agreeing wd_j
          // (exact zeros agree with neither); divide by the kept weights (0 -> 1).
          double* total = scratch(2 + n_models, n);
          double* div = scratch(3 + n_models, n);
          std::fill(total, total + n, 0.0);
          std::fill(div, div + n, 0.0);
          for (size_t j = 0; j < n_models; ++j) {
            const double* d = delta[j];
            for (int64_t i = 0; i < n; ++i) total[i] += d[i];
          }
          for (size_t j = 0; j < n_models; ++j) {
            add_agreeing(total, delta[j], models_[j].params.weight, n, mixed, div);
          }
          if (normalize) divide_by_nonzero(div, n, mixed);
        } else {
          // Step 4: plain sum; divisor sum_j w_j (|.| < 1e-8 -> 1).
          for (size_t j = 0; j < n_models; ++j) {
            const double* d = delta[j];
            for (int64_t i = 0; i < n; ++i) mixed[i] += d[i];
          }
          if (normalize) {
            for (int64_t i = 0; i < n; ++i) mixed[i] /= linear_div;
          }
        }
        // Step 5.
        for (int64_t i = 0; i < n; ++i) mixed[i] = base[i] + mixed[i] * lambda;
        store_f64(mixed, args_.out_dtype, bytes + static_cast<size_t>(b - c_begin) * esize,
                  static_cast<size_t>(n));
      }
      sink_(static_cast<uint64_t>(c_begin) * esize, bytes,
            static_cast<size_t>(c_end - c_begin) * esize);
    });
  }

  const KernelArgs& args_;
  ThreadPool& pool_;
  const OutputSink& sink_;
  int64_t numel_ = 0;
  Reader base_;
  std::vector<TvModel> models_;
  Consensus consensus_ = Consensus::kNone;
  int64_t seg_len_ = kBlock;
  int64_t chunk_len_ = kChunk;
};

}  // namespace

void merge_task_vectors(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink) {
  if (args.inputs.empty()) {
    copy_input(args, args.base ? Reader(*args.base, args.out_shape) : Reader(), pool, sink);
    return;
  }
  TaskVectorMerge(args, pool, sink).run();
}

}  // namespace shoal::merge::kernels
