// Internal pieces shared by the merge kernels (methods.h is the interface): chunking constants,
// reading an input's elements by OUTPUT flat index (with the top-left block of a larger 2-D
// embedding), thread-local scratch buffers, deterministic block reductions, and the entry points
// of each method family. Implemented in kernels.cpp (shared pieces), methods.cpp (dispatch,
// linear, passthrough), vector_methods.cpp (slerp, nuslerp, model_stock) and task_vector.cpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "merge/methods.h"
#include "shoal/dtype.h"

namespace shoal::merge::kernels {

// Output elements per chunk: the unit of parallel work, of reduction partials (combined in chunk
// order, so results do not depend on the thread count) and of sink calls.
inline constexpr int64_t kChunk = 65536;
// Elements converted to double at a time inside a chunk: several inputs' blocks stay in L1/L2.
inline constexpr int64_t kBlock = 4096;

// Reads elements of one input as double, addressed by flat OUTPUT index. A 2-D input wider than
// the output is read row by row from its top-left block (row stride = the input's column count);
// extra rows are simply never addressed. A default-constructed Reader reads zeros.
class Reader {
 public:
  Reader() = default;
  Reader(const TensorView& view, std::span<const int64_t> out_shape);

  // dst[0..n) = input elements at output indices [begin, begin + n).
  void read(int64_t begin, int64_t n, double* dst) const;
  // out[i] (+)= w * element[begin + i]: `accumulate` false assigns, true adds. The same values as
  // read() followed by scale_into / add_scaled, without the intermediate buffer for BF16.
  void read_scaled(int64_t begin, int64_t n, double w, bool accumulate, double* out) const;
  bool empty() const { return data_ == nullptr; }

 private:
  const std::byte* data_ = nullptr;
  DType dtype_ = DType::kF32;
  size_t esize_ = 4;
  int64_t out_cols_ = 0;  // both 0 when output and input rows coincide (contiguous read)
  int64_t in_cols_ = 0;
};

// Hot loops are cloned per ISA (GCC picks one at load time): their 64-bit integer compares and
// selects vectorise only from AVX2 on, and x86-64-v4 (AVX-512 VL/BW) narrows 64-bit lanes to 16
// bits in one instruction; the default build still targets baseline x86-64. Only exact
// operations (integer work, conversions, selects) may live in a cloned function: a clone may
// contract a * b + c into an FMA, which would make results depend on the machine.
#define SHOAL_KERNEL_CLONES [[gnu::target_clones("arch=x86-64-v4", "avx2", "default")]]

// out[i] = w * x[i] and out[i] += w * x[i], cloned per ISA like the conversions, with FP
// contraction off so that every clone rounds the product and the sum separately, exactly as the
// baseline build does: results stay bit-identical across machines.
void scale_into(const double* x, double w, int64_t n, double* out);
void add_scaled(const double* x, double w, int64_t n, double* out);

// Bulk conversions with exactly the results of shoal::to_f64 / from_f64 (tests compare them bit
// for bit), but branch-free and cloned so the loops vectorise: BF16 and F16 reads, and BF16/F16
// writes of values in the type's finite range (anything else, e.g. NaN or overflow, falls back
// to the core conversion for its block). They set the speed of linear merges.
void load_f64(DType src_type, const void* src, double* dst, size_t n);
void store_f64(const double* src, DType dst_type, void* dst, size_t n);

// Scratch slot that Reader::read_scaled uses for non-BF16 inputs; callers keep clear of it.
inline constexpr size_t kReadScaledSlot = 63;

// Thread-local scratch buffers, grown on demand and reused across calls on the same thread.
// `slot` separates buffers that are live at the same time; a pointer stays valid until the same
// thread asks for a larger buffer in the same slot. Slot 0 is write_output_range's output block.
double* scratch(size_t slot, size_t len);
std::byte* byte_scratch(size_t len);
uint64_t* key_scratch(size_t slot, size_t len);

// Deterministic reductions over one block: fixed 4-way split, then a fixed combination order.
double dot(const double* a, const double* b, int64_t n);
double abs_sum(const double* a, int64_t n);

// Tells the caller (KernelArgs::release) that the current pass is done with the inputs at output
// indices [begin, end).
inline void release_inputs(const KernelArgs& args, int64_t begin, int64_t end) {
  if (args.release) args.release(begin, end);
}

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
// Length of a row for row-wise methods: the last dimension (the whole tensor for 0-D and 1-D).
int64_t last_dim(std::span<const int64_t> shape, int64_t numel);

// Runs out-of-place elementwise work over output indices [range_begin, range_end):
// fn(begin, n, out) fills out[0..n) (n <= kBlock) with the doubles for output indices
// [begin, begin + n); they are rounded once to the output dtype and each chunk (kChunk elements
// from range_begin) goes to the sink in one call. Chunks run in parallel on the pool.
template <class BlockFn>
void write_output_range(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink,
                        int64_t range_begin, int64_t range_end, BlockFn&& fn);
// The same over the whole output tensor.
template <class BlockFn>
void for_each_output_block(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink,
                           BlockFn&& fn) {
  write_output_range(args, pool, sink, 0, shape_numel(args.out_shape), fn);
}

// A copy of one input (or zeros for an empty Reader), converted to the output dtype.
void copy_input(const KernelArgs& args, const Reader& src, ThreadPool& pool,
                const OutputSink& sink);

// Method families.
void merge_linear(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink);
void merge_passthrough(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink);
void merge_slerp(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink);
void merge_nuslerp(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink);
void merge_model_stock(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink);
void merge_task_vectors(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink);

// The task-vector family's table (spec "Task-vector family"): how each method sparsifies and
// whether it elects signs. kNone / kNone for methods outside the family.
Sparsify method_sparsify(Method m);
Consensus method_consensus(Method m);

// ---- template implementation ----

template <class BlockFn>
void write_output_range(const KernelArgs& args, ThreadPool& pool, const OutputSink& sink,
                        int64_t range_begin, int64_t range_end, BlockFn&& fn) {
  const size_t esize = dtype_size(args.out_dtype);
  const int64_t len = range_end - range_begin;
  pool.parallel_for(static_cast<size_t>(ceil_div(len, kChunk)), [&](size_t c) {
    const int64_t begin = range_begin + static_cast<int64_t>(c) * kChunk;
    const int64_t n = std::min(kChunk, range_end - begin);
    std::byte* bytes = byte_scratch(static_cast<size_t>(n) * esize);
    double* out = scratch(0, kBlock);
    for (int64_t b = 0; b < n; b += kBlock) {
      const int64_t m = std::min(kBlock, n - b);
      fn(begin + b, m, out);
      store_f64(out, args.out_dtype, bytes + b * esize, static_cast<size_t>(m));
    }
    sink(static_cast<uint64_t>(begin) * esize, bytes, static_cast<size_t>(n) * esize);
    release_inputs(args, begin, begin + n);
  });
}

}  // namespace shoal::merge::kernels
