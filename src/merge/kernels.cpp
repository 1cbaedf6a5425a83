#include "merge/kernels.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

namespace shoal::merge::kernels {

Reader::Reader(const TensorView& view, std::span<const int64_t> out_shape)
    : data_(view.data), dtype_(view.dtype), esize_(dtype_size(view.dtype)) {
  if (out_shape.size() == 2 && view.shape.size() == 2 && view.shape[1] != out_shape[1]) {
    out_cols_ = out_shape[1];
    in_cols_ = view.shape[1];
  }
}

void Reader::read(int64_t begin, int64_t n, double* dst) const {
  if (data_ == nullptr) {
    std::fill(dst, dst + n, 0.0);
    return;
  }
  if (out_cols_ == 0) {
    load_f64(dtype_, data_ + static_cast<size_t>(begin) * esize_, dst, static_cast<size_t>(n));
    return;
  }
  // Row by row from the top-left block of a wider input.
  while (n > 0) {
    const int64_t row = begin / out_cols_;
    const int64_t col = begin % out_cols_;
    const int64_t m = std::min(n, out_cols_ - col);
    load_f64(dtype_, data_ + static_cast<size_t>(row * in_cols_ + col) * esize_, dst,
             static_cast<size_t>(m));
    begin += m;
    dst += m;
    n -= m;
  }
}

namespace {

// Half precision -> double for every finite half: normal halves rebias the exponent (15 ->
// 1023) and move the 10 mantissa bits to the top of the 52; subnormals are mant * 2^-24. Returns
// false if any element was infinite or NaN (exponent 31); the caller then uses to_f64.
SHOAL_KERNEL_CLONES bool load_f16_finite(const unsigned char* src, double* dst, size_t n) {
  uint32_t special = 0;
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t mant = h & 0x3ffu;
    const uint64_t sign = static_cast<uint64_t>(h & 0x8000u) << 48;
    const uint64_t normal =
        sign | (static_cast<uint64_t>(exp + 1008) << 52) | (static_cast<uint64_t>(mant) << 42);
    const uint64_t sub =
        sign | std::bit_cast<uint64_t>(static_cast<double>(static_cast<int32_t>(mant)) * 0x1p-24);
    // Branch-free select so the loop vectorises.
    const uint64_t is_sub = uint64_t{0} - static_cast<uint64_t>(exp == 0);
    dst[i] = std::bit_cast<double>((sub & is_sub) | (normal & ~is_sub));
    special |= static_cast<uint32_t>(exp == 0x1f);
  }
  return special == 0;
}

// double -> bf16 (kMant = 7, kBias = 127) or f16 (10, 15), rounded to nearest-even straight
// from the double. Normal results: add the rounding bias to the magnitude's bits and shift out
// the 52 - kMant dropped bits (a carry into the exponent is the right answer), then rebias.
// Subnormal results: |x| / (smallest subnormal) rounded to an integer by the 2^52 trick; 2^kMant
// is the smallest normal's encoding, so that also comes out right. Returns false if any element
// is beyond the largest exponent (overflow, inf, NaN); the caller then uses from_f64.
constexpr double pow2(int e) {
  double r = 1;
  for (int i = 0; i < e; ++i) r *= 2;
  return r;
}

template <int kMant, int kBias>
[[gnu::always_inline]] inline bool store_narrow_finite(const double* src, unsigned char* dst,
                                                       size_t n) {
  constexpr int kDrop = 52 - kMant;
  constexpr uint64_t kRebias = static_cast<uint64_t>(1023 - kBias) << kMant;
  constexpr uint64_t kMinNormalExp = 1023 - kBias + 1;
  constexpr uint64_t kMaxExp = 1023 + kBias;
  // 2^(kBias - 1 + kMant): the reciprocal of the smallest subnormal.
  constexpr double kSubScale = pow2(kBias - 1 + kMant);
  uint64_t beyond = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t u = std::bit_cast<uint64_t>(src[i]);
    const uint64_t mag = u & 0x7fffffffffffffffull;
    const uint64_t exp = mag >> 52;
    const uint64_t rounded =
        (mag + ((uint64_t{1} << (kDrop - 1)) - 1) + ((mag >> kDrop) & 1)) >> kDrop;
    const uint64_t normal = rounded - kRebias;
    // (The product is exact, so a clone's FMA here gives the same bits.)
    const uint64_t sub = std::bit_cast<uint64_t>(std::bit_cast<double>(mag) * kSubScale + 0x1p52);
    const uint64_t is_sub = uint64_t{0} - static_cast<uint64_t>(exp < kMinNormalExp);
    const uint64_t bits = ((u >> 48) & 0x8000u) | (((sub & is_sub) | (normal & ~is_sub)) & 0xffffu);
    const auto h = static_cast<uint16_t>(bits);
    std::memcpy(dst + 2 * i, &h, 2);
    beyond |= static_cast<uint64_t>(exp > kMaxExp);
  }
  return beyond == 0;
}

SHOAL_KERNEL_CLONES bool store_bf16_finite(const double* src, unsigned char* dst, size_t n) {
  return store_narrow_finite<7, 127>(src, dst, n);
}
SHOAL_KERNEL_CLONES bool store_f16_finite(const double* src, unsigned char* dst, size_t n) {
  return store_narrow_finite<10, 15>(src, dst, n);
}

}  // namespace

// bf16 -> double: the bf16 bits are the top half of an f32; widening is exact.
SHOAL_KERNEL_CLONES void load_bf16(const unsigned char* src, double* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = static_cast<double>(std::bit_cast<float>(static_cast<uint32_t>(h) << 16));
  }
}

[[gnu::optimize("fp-contract=off")]] SHOAL_KERNEL_CLONES void scale_into(const double* x, double w,
                                                                         int64_t n, double* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = w * x[i];
}

[[gnu::optimize("fp-contract=off")]] SHOAL_KERNEL_CLONES void add_scaled(const double* x, double w,
                                                                         int64_t n, double* out) {
  for (int64_t i = 0; i < n; ++i) out[i] += w * x[i];
}

void load_f64(DType src_type, const void* src, double* dst, size_t n) {
  if (src_type == DType::kBF16) return load_bf16(static_cast<const unsigned char*>(src), dst, n);
  if (src_type == DType::kF16 && load_f16_finite(static_cast<const unsigned char*>(src), dst, n)) {
    return;
  }
  to_f64(src_type, src, dst, n);
}

void store_f64(const double* src, DType dst_type, void* dst, size_t n) {
  auto* bytes = static_cast<unsigned char*>(dst);
  if (dst_type == DType::kBF16 && store_bf16_finite(src, bytes, n)) return;
  if (dst_type == DType::kF16 && store_f16_finite(src, bytes, n)) return;
  from_f64(src, dst_type, dst, n);
}

// bf16 straight into w * x (assign or accumulate), contraction off as in add_scaled.
[[gnu::optimize("fp-contract=off")]] SHOAL_KERNEL_CLONES void bf16_scaled(const unsigned char* src,
                                                                          double w, bool accumulate,
                                                                          size_t n, double* out) {
  if (accumulate) {
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      out[i] += w * static_cast<double>(std::bit_cast<float>(static_cast<uint32_t>(h) << 16));
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      out[i] = w * static_cast<double>(std::bit_cast<float>(static_cast<uint32_t>(h) << 16));
    }
  }
}

void Reader::read_scaled(int64_t begin, int64_t n, double w, bool accumulate, double* out) const {
  if (dtype_ != DType::kBF16 || data_ == nullptr) {
    double* x = scratch(kReadScaledSlot, static_cast<size_t>(n));
    read(begin, n, x);
    if (accumulate) {
      add_scaled(x, w, n, out);
    } else {
      scale_into(x, w, n, out);
    }
    return;
  }
  while (n > 0) {
    // One contiguous piece: the rest of the block, or of the output row for a wider input.
    int64_t offset = begin, m = n;
    if (out_cols_ != 0) {
      const int64_t row = begin / out_cols_, col = begin % out_cols_;
      offset = row * in_cols_ + col;
      m = std::min(n, out_cols_ - col);
    }
    bf16_scaled(reinterpret_cast<const unsigned char*>(data_) + static_cast<size_t>(offset) * 2, w,
                accumulate, static_cast<size_t>(m), out);
    begin += m;
    out += m;
    n -= m;
  }
}

namespace {
thread_local std::vector<std::vector<double>> t_scratch;
thread_local std::vector<std::vector<uint64_t>> t_keys;
thread_local std::vector<std::byte> t_bytes;

template <class T>
T* grow(std::vector<std::vector<T>>& slots, size_t slot, size_t len) {
  if (slots.size() <= slot) slots.resize(slot + 1);
  if (slots[slot].size() < len) slots[slot].resize(len);
  return slots[slot].data();
}
}  // namespace

double* scratch(size_t slot, size_t len) {
  return grow(t_scratch, slot, len);
}
uint64_t* key_scratch(size_t slot, size_t len) {
  return grow(t_keys, slot, len);
}
std::byte* byte_scratch(size_t len) {
  if (t_bytes.size() < len) t_bytes.resize(len);
  return t_bytes.data();
}

// Four independent accumulators let the compiler vectorise without reassociating (no
// -ffast-math); the split is fixed, so the result is too.
double dot(const double* a, const double* b, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

double abs_sum(const double* a, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += std::abs(a[i]);
    s1 += std::abs(a[i + 1]);
    s2 += std::abs(a[i + 2]);
    s3 += std::abs(a[i + 3]);
  }
  for (; i < n; ++i) s0 += std::abs(a[i]);
  return (s0 + s1) + (s2 + s3);
}

int64_t last_dim(std::span<const int64_t> shape, int64_t numel) {
  if (shape.size() <= 1) return std::max<int64_t>(numel, 1);
  return std::max<int64_t>(shape.back(), 1);
}

void copy_input(const KernelArgs& args, const Reader& src, ThreadPool& pool,
                const OutputSink& sink) {
  for_each_output_block(args, pool, sink,
                        [&](int64_t begin, int64_t n, double* out) { src.read(begin, n, out); });
}

}  // namespace shoal::merge::kernels
