// slerp, nuslerp and model_stock. All three share one shape of computation: for each "vector" of
// the output (the whole tensor, a row along the last axis, or a column along axis 0), derive m
// vectors D_k = X_k - origin, gather their Gram matrix, turn it into m coefficients, and write
// origin + sum_k c_k D_k. The Gram pass and the output pass stream the inputs; only the
// per-vector coefficients are kept (one set for a flat tensor, one per column for axis 0).
#include <cmath>
#include <functional>
#include <vector>

#include "merge/kernels.h"

namespace shoal::merge::kernels {
namespace {

// Columns of one stats task for vectors along axis 0: wide enough for contiguous reads, small
// enough that the accumulators of all pairs stay in cache.
constexpr int64_t kStrip = 256;

struct GramProblem {
  std::vector<Reader> xs;  // X_k
  Reader origin;           // empty Reader: origin 0 (slerp)
  // gram: packed upper triangle in pair order (0,0),(0,1)..(0,m-1),(1,1)..; coef: m values.
  std::function<void(const double* gram, double* coef)> coefficients;
};

class GramDriver {
 public:
  GramDriver(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink, GramProblem p)
      : args_(args), pool_(pool), sink_(sink), p_(std::move(p)), m_(p_.xs.size()) {
    numel_ = shape_numel(args.out_shape);
    for (size_t k = 0; k < m_; ++k) {
      for (size_t l = k; l < m_; ++l) pairs_.push_back({k, l});
    }
  }

  // One vector: the whole tensor.
  void run_flat() { flat_range(0, numel_); }

  // Vectors along the last axis, `ncols` long.
  void run_rows(int64_t ncols) {
    if (numel_ == 0) return;
    const int64_t nrows = numel_ / ncols;
    if (ncols > kChunk) {
      // Few, long rows: each row is streamed like a flat tensor.
      for (int64_t r = 0; r < nrows; ++r) flat_range(r * ncols, (r + 1) * ncols);
      return;
    }
    const int64_t rows_per_chunk = kChunk / ncols;
    const size_t esize = dtype_size(args_.out_dtype);
    pool_.parallel_for(static_cast<size_t>(ceil_div(nrows, rows_per_chunk)), [&](size_t c) {
      const int64_t r0 = static_cast<int64_t>(c) * rows_per_chunk;
      const int64_t r1 = std::min(nrows, r0 + rows_per_chunk);
      std::byte* bytes = byte_scratch(static_cast<size_t>((r1 - r0) * ncols) * esize);
      std::vector<double*> d(m_);
      std::vector<double> gram(pairs_.size()), coef(m_);
      double* out = scratch(0, ncols);
      for (int64_t r = r0; r < r1; ++r) {
        const double* o = load(r * ncols, ncols, d.data());
        std::fill(gram.begin(), gram.end(), 0.0);
        gram_add(d.data(), ncols, gram.data());
        p_.coefficients(gram.data(), coef.data());
        apply(d.data(), o, ncols, coef.data(), out);
        store_f64(out, args_.out_dtype, bytes + static_cast<size_t>((r - r0) * ncols) * esize,
                  static_cast<size_t>(ncols));
      }
      sink_(static_cast<uint64_t>(r0 * ncols) * esize, bytes,
            static_cast<size_t>((r1 - r0) * ncols) * esize);
      release_inputs(args_, r0 * ncols, r1 * ncols);
    });
  }

  // Vectors along axis 0: column j of the [nrows, numel / nrows] view. Keeps m coefficients
  // per column (numel / nrows of them).
  void run_columns(int64_t nrows) {
    if (numel_ == 0) return;
    const int64_t ncols = numel_ / nrows;
    std::vector<double> coefs(m_ * static_cast<size_t>(ncols));  // [k][col]
    const size_t np = pairs_.size();
    pool_.parallel_for(static_cast<size_t>(ceil_div(ncols, kStrip)), [&](size_t s) {
      const int64_t c0 = static_cast<int64_t>(s) * kStrip;
      const int64_t w = std::min(kStrip, ncols - c0);
      std::vector<double> acc(np * static_cast<size_t>(w), 0.0);  // [pair][col]
      std::vector<double*> d(m_);
      for (int64_t r = 0; r < nrows; ++r) {
        load(r * ncols + c0, w, d.data());
        for (size_t p = 0; p < np; ++p) {
          const double* a = d[pairs_[p].first];
          const double* b = d[pairs_[p].second];
          double* acc_p = acc.data() + p * w;
          for (int64_t i = 0; i < w; ++i) acc_p[i] += a[i] * b[i];
        }
      }
      std::vector<double> gram(np), coef(m_);
      for (int64_t i = 0; i < w; ++i) {
        for (size_t p = 0; p < np; ++p) gram[p] = acc[p * w + i];
        p_.coefficients(gram.data(), coef.data());
        for (size_t k = 0; k < m_; ++k) coefs[k * ncols + c0 + i] = coef[k];
      }
    });
    write_output_range(args_, pool_, sink_, 0, numel_, [&](int64_t begin, int64_t n, double* out) {
      std::vector<double*> d(m_);
      const double* o = load(begin, n, d.data());
      // A block may span several rows: walk it one row piece at a time.
      for (int64_t i = 0; i < n;) {
        const int64_t col = (begin + i) % ncols;
        const int64_t len = std::min(n - i, ncols - col);
        for (int64_t e = i; e < i + len; ++e) out[e] = o ? o[e] : 0.0;
        for (size_t k = 0; k < m_; ++k) {
          const double* c = coefs.data() + k * ncols + col;
          const double* dk = d[k] + i;
          double* out_i = out + i;
          for (int64_t e = 0; e < len; ++e) out_i[e] += c[e] * dk[e];
        }
        i += len;
      }
    });
  }

 private:
  // D_k for output indices [begin, begin + n) into d[k]; returns the origin block, or nullptr
  // without an origin. Uses scratch slots 1..m+1.
  const double* load(int64_t begin, int64_t n, double** d) const {
    double* o = nullptr;
    if (!p_.origin.empty()) {
      o = scratch(1 + m_, n);
      p_.origin.read(begin, n, o);
    }
    for (size_t k = 0; k < m_; ++k) {
      d[k] = scratch(1 + k, n);
      p_.xs[k].read(begin, n, d[k]);
      if (o) {
        double* dk = d[k];
        for (int64_t i = 0; i < n; ++i) dk[i] -= o[i];
      }
    }
    return o;
  }

  void gram_add(double* const* d, int64_t n, double* acc) const {
    for (size_t p = 0; p < pairs_.size(); ++p)
      acc[p] += dot(d[pairs_[p].first], d[pairs_[p].second], n);
  }

  void apply(double* const* d, const double* o, int64_t n, const double* coef, double* out) const {
    for (int64_t i = 0; i < n; ++i) out[i] = o ? o[i] : 0.0;
    for (size_t k = 0; k < m_; ++k) {
      const double c = coef[k];
      const double* dk = d[k];
      for (int64_t i = 0; i < n; ++i) out[i] += c * dk[i];
    }
  }

  // One vector over output indices [begin, end): a Gram pass with per-chunk partials combined
  // in chunk order, then the output pass.
  void flat_range(int64_t begin, int64_t end) {
    const size_t np = pairs_.size();
    const int64_t n_chunks = ceil_div(end - begin, kChunk);
    std::vector<double> partial(static_cast<size_t>(n_chunks) * np, 0.0);
    pool_.parallel_for(static_cast<size_t>(n_chunks), [&](size_t c) {
      const int64_t c_begin = begin + static_cast<int64_t>(c) * kChunk;
      const int64_t c_end = std::min(end, c_begin + kChunk);
      std::vector<double*> d(m_);
      for (int64_t b = c_begin; b < c_end; b += kBlock) {
        const int64_t n = std::min(kBlock, c_end - b);
        load(b, n, d.data());
        gram_add(d.data(), n, partial.data() + c * np);
      }
      release_inputs(args_, c_begin, c_end);
    });
    std::vector<double> gram(np, 0.0), coef(m_);
    for (int64_t c = 0; c < n_chunks; ++c) {
      for (size_t p = 0; p < np; ++p) gram[p] += partial[c * np + p];
    }
    p_.coefficients(gram.data(), coef.data());
    write_output_range(args_, pool_, sink_, begin, end, [&](int64_t b, int64_t n, double* out) {
      std::vector<double*> d(m_);
      const double* o = load(b, n, d.data());
      apply(d.data(), o, n, coef.data(), out);
    });
  }

  const KernelArgs& args_;
  ThreadPool& pool_;
  const OutputSink& sink_;
  GramProblem p_;
  size_t m_;
  int64_t numel_ = 0;
  std::vector<std::pair<size_t, size_t>> pairs_;
};

Reader base_reader(const KernelArgs& args) {
  return args.base ? Reader(*args.base, args.out_shape) : Reader();
}

// (1 - t, t), the lerp coefficients both slerps fall back to.
void lerp_coefficients(double t, double* coef) {
  coef[0] = 1.0 - t;
  coef[1] = t;
}

}  // namespace

// spec: v0 = base, v1 = the other model; t = 0 gives the base.
void merge_slerp(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink) {
  if (args.inputs.empty() || !args.base) {
    // One tensor only: mergekit returns it unchanged.
    copy_input(
        args, args.inputs.empty() ? base_reader(args) : Reader(args.inputs[0].view, args.out_shape),
        pool, sink);
    return;
  }
  const double t = args.params.t;
  GramProblem p;
  p.xs = {base_reader(args), Reader(args.inputs[0].view, args.out_shape)};
  p.coefficients = [t](const double* g, double* coef) {
    // Pairs: g[0] = v0.v0, g[1] = v0.v1, g[2] = v1.v1. Each vector is normalised only if its
    // norm exceeds 1e-8.
    const double n0 = std::sqrt(g[0]), n1 = std::sqrt(g[2]);
    const double dot = g[1] / ((n0 > 1e-8 ? n0 : 1.0) * (n1 > 1e-8 ? n1 : 1.0));
    if (std::abs(dot) > 0.9995) return lerp_coefficients(t, coef);
    const double theta = std::acos(dot);
    const double sin_theta = std::sin(theta);
    coef[0] = std::sin(theta - theta * t) / sin_theta;
    coef[1] = std::sin(theta * t) / sin_theta;
  };
  GramDriver(args, pool, sink, std::move(p)).run_flat();
}

void merge_nuslerp(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink) {
  if (args.inputs.size() < 2) {
    copy_input(
        args, args.inputs.empty() ? base_reader(args) : Reader(args.inputs[0].view, args.out_shape),
        pool, sink);
    return;
  }
  const double w1 = args.inputs[0].params.weight, w2 = args.inputs[1].params.weight;
  const double t = std::abs(w1 + w2) < 1e-6 ? 0.5 : w2 / (w1 + w2);
  GramProblem p;
  p.xs = {Reader(args.inputs[0].view, args.out_shape), Reader(args.inputs[1].view, args.out_shape)};
  p.origin = base_reader(args);  // with a base: base + nuslerp(t, x1 - base, x2 - base)
  p.coefficients = [t](const double* g, double* coef) {
    const double n0 = std::max(std::sqrt(g[0]), 1e-7), n1 = std::max(std::sqrt(g[2]), 1e-7);
    const double theta = std::acos(std::clamp(g[1] / (n0 * n1), -1.0, 1.0));
    const double sin_theta = std::sin(theta);
    if (std::abs(sin_theta) < 1e-8) return lerp_coefficients(t, coef);
    coef[0] = std::sin((1 - t) * theta) / sin_theta;
    coef[1] = std::sin(t * theta) / sin_theta;
  };
  GramDriver driver(args, pool, sink, std::move(p));
  const auto& shape = args.out_shape;
  if (args.params.nuslerp_flatten || shape.size() <= 1) {
    driver.run_flat();
  } else if (args.params.nuslerp_row_wise) {
    // mergekit transposes axis 0 to the end: one vector per column of [shape[0], rest].
    driver.run_columns(std::max<int64_t>(shape[0], 1));
  } else {
    driver.run_rows(last_dim(shape, shape_numel(shape)));
  }
}

void merge_model_stock(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink) {
  const size_t n_models = args.inputs.size();
  if (n_models < 2) {
    // Needs two models besides the base (the planner checks); keep the base otherwise.
    copy_input(args, base_reader(args), pool, sink);
    return;
  }
  GramProblem p;
  for (const auto& in : args.inputs) p.xs.emplace_back(in.view, args.out_shape);
  p.origin = base_reader(args);
  p.coefficients = [n_models](const double* g, double* coef) {
    // Diagonal entries of the packed Gram matrix, then the mean pairwise cosine.
    std::vector<double> norm(n_models);
    for (size_t k = 0, p = 0; k < n_models; p += n_models - k, ++k) norm[k] = std::sqrt(g[p]);
    double cos_sum = 0;
    size_t n_pairs = 0;
    for (size_t k = 0, p = 0; k < n_models; ++k) {
      ++p;  // skip (k, k)
      for (size_t l = k + 1; l < n_models; ++l, ++p) {
        cos_sum += std::clamp(g[p] / std::max(norm[k] * norm[l], 1e-6), -1.0, 1.0);
        ++n_pairs;
      }
    }
    const double cos = cos_sum / static_cast<double>(n_pairs);
    const double n = static_cast<double>(n_models);
    const double t = n * cos / (1 + (n - 1) * cos);
    // t * mean(x) + (1 - t) * base == base + (t / N) * sum_k (x_k - base).
    for (size_t k = 0; k < n_models; ++k) coef[k] = t / n;
  };
  GramDriver driver(args, pool, sink, std::move(p));
  if (args.params.filter_wise) {
    driver.run_rows(last_dim(args.out_shape, shape_numel(args.out_shape)));
  } else {
    driver.run_flat();
  }
}

}  // namespace shoal::merge::kernels
