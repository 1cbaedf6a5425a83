// GGUF files (llama.cpp's format, v2 and v3): a validated, mmap'd reader. Layout: magic "GGUF",
// u32 version, u64 tensor count, u64 metadata count, metadata key/values, tensor infos (name,
// n_dims, dims (innermost first), ggml type, offset), padding to `general.alignment` (default
// 32), tensor data. Every count, length and offset is checked against the bytes that remain.
// Implemented in src/io/gguf_reader.cpp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "shoal/dtype.h"

namespace shoal {

class MappedFile;

// ggml tensor types shoal reads. Values are ggml's type ids.
enum class GgmlType : uint32_t { kF32 = 0, kF16 = 1, kQ8_0 = 8, kBF16 = 30 };

// Metadata value types, with GGUF's ids.
enum class GgufValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

struct GgufArray;
// A metadata value: integers widen to int64/uint64, floats to double.
using GgufValue =
    std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<const GgufArray>>;
struct GgufArray {
  GgufValueType type;  // element type
  std::vector<GgufValue> values;
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::kF32;
  std::vector<int64_t> shape;  // row-major (outermost first): ggml's dims reversed
  uint64_t offset = 0;         // relative to the data section
  uint64_t nbytes = 0;
};

class GgufFile {
 public:
  // Throws FormatError (one line naming the file, and the key or tensor) or IoError.
  static GgufFile open(const std::filesystem::path& path);
  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;
  ~GgufFile();

  const std::filesystem::path& path() const { return path_; }
  uint32_t version() const { return version_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;
  // Typed access; nullopt when absent; FormatError naming the key when present with another type.
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;   // any integer type
  std::optional<double> get_float(std::string_view key) const;  // any float or integer type
  std::optional<bool> get_bool(std::string_view key) const;
  const GgufArray* get_array(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  // The tensor's raw bytes (F32/F16/BF16 as a TensorView with the matching dtype; Q8_0 blocks
  // as U8 bytes, the innermost dim counting bytes: [rows, cols / 32 * 34]). Valid while this
  // object lives.
  TensorView raw_view(const GgufTensorInfo& t) const;

 private:
  GgufFile() = default;
  std::filesystem::path path_;
  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t data_start_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::unordered_map<std::string, size_t> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

// Q8_0: blocks of 32 values, each an f16 scale d followed by 32 int8 q; value = d * q.
inline constexpr int64_t kQ8BlockSize = 32;
inline constexpr size_t kQ8BlockBytes = 34;
void dequantize_q8_0(const void* blocks, float* dst, int64_t n);

}  // namespace shoal
