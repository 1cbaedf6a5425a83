// Element types of tensors (the safetensors set) and conversions between the float types that
// merges and inference compute with. Implemented in src/core/dtype.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace shoal {

enum class DType : uint8_t {
  kBool,
  kU8,
  kI8,
  kF8E4M3,
  kF8E5M2,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kI64,
  kU64,
  kF64,
};

// Bytes per element.
size_t dtype_size(DType t);
// The safetensors spelling: "F32", "BF16", "F8_E4M3", ...
std::string_view dtype_name(DType t);
// Parses the safetensors spelling; nullopt for an unknown name.
std::optional<DType> parse_dtype(std::string_view name);
// Parses a torch/mergekit spelling ("bfloat16", "float16", "float32", also "bf16", "fp16",
// "f32"); nullopt for anything else.
std::optional<DType> parse_torch_dtype(std::string_view name);
// "bfloat16", "float16", "float32", ... as config.json's torch_dtype writes it.
std::string_view torch_dtype_name(DType t);
// True for the types merges and inference read and write: F32, F16, BF16.
bool is_compute_float(DType t);

// Scalar conversions. Rounding to 16 bits is round-to-nearest-even, as torch does; NaN stays NaN.
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Bulk conversions between raw bytes of a compute float type (F32/F16/BF16; F64 too for reading)
// and f32. `src`/`dst` may be unaligned. n is the element count.
void to_f32(DType src_type, const void* src, float* dst, size_t n);
void from_f32(const float* src, DType dst_type, void* dst, size_t n);
// The same in double precision. from_f64 rounds once, to nearest-even, straight from double to
// the target type (no double rounding through f32), so a merge computed in f64 is correctly
// rounded.
void to_f64(DType src_type, const void* src, double* dst, size_t n);
void from_f64(const double* src, DType dst_type, void* dst, size_t n);

// A non-owning view of a tensor's bytes, row-major and contiguous. The memory belongs to whoever
// produced the view (an mmap'd file stays mapped while its SafetensorsFile lives).
struct TensorView {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
};

// Product of the dims (1 for a scalar shape []).
int64_t shape_numel(std::span<const int64_t> shape);
// "[4096, 11008]"
std::string shape_to_string(std::span<const int64_t> shape);

}  // namespace shoal
