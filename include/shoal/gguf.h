// GGUF files (llama.cpp's format, v2 and v3): a validated, mmap'd reader. Layout: magic "GGUF",
// u32 version, u64 tensor count, u64 metadata count, metadata key/values, tensor infos (name,
// n_dims, dims (innermost first), ggml type, offset), padding to `general.alignment` (default
// 32), tensor data. Every count, length and offset is checked against the bytes that remain.
// The writer produces v3 files of the same layout. Implemented in src/io/gguf_reader.cpp,
// src/io/gguf_writer.cpp (GgufWriter, GgufKv) and src/io/gguf_quant.cpp (Q8_0).
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
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
  // The value's type as stored (u8 and u32 both read as uint64_t); nullopt when absent.
  std::optional<GgufValueType> value_type(std::string_view key) const;

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
  std::vector<GgufValueType> metadata_types_;  // parallel to metadata_
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

// Q8_0: blocks of 32 values, each an f16 scale d followed by 32 int8 q; value = d * q.
inline constexpr int64_t kQ8BlockSize = 32;
inline constexpr size_t kQ8BlockBytes = 34;
void dequantize_q8_0(const void* blocks, float* dst, int64_t n);
// llama.cpp's reference quantizer (quantize_row_q8_0_ref), bit for bit: per block of 32,
// d = amax / 127 in f32, stored as f16 (round to nearest even); q = roundf(x * (1 / d)) with the
// unrounded d, halves rounded away from zero; an all-zero block has d = 0 and q = 0.
// n must be a multiple of 32; writes n / 32 * 34 bytes.
void quantize_q8_0(const float* src, void* blocks, int64_t n);

// ---- Writing ------------------------------------------------------------------------------------

// One metadata entry to write. `value` holds the type's C++ form as the reader returns it
// (uint64_t for u8..u64, int64_t for i8..i64, double for f32/f64, bool, std::string, or an array
// whose GgufArray::type names the element type); the writer checks that it fits `type`.
struct GgufKv {
  std::string key;
  GgufValueType type = GgufValueType::kU32;
  GgufValue value;

  static GgufKv u32(std::string key, uint32_t v);
  static GgufKv i32(std::string key, int32_t v);
  static GgufKv u64(std::string key, uint64_t v);
  static GgufKv f32(std::string key, float v);
  static GgufKv boolean(std::string key, bool v);
  static GgufKv str(std::string key, std::string v);
  static GgufKv strings(std::string key, const std::vector<std::string>& v);
  static GgufKv f32s(std::string key, const std::vector<float>& v);
  static GgufKv i32s(std::string key, const std::vector<int32_t>& v);
};

// Bytes of a tensor of `type` and row-major `shape`; nullopt when the innermost dim is not a
// multiple of the type's block size.
std::optional<uint64_t> ggml_nbytes(GgmlType type, const std::vector<int64_t>& shape);
// "F32", "F16", "BF16", "Q8_0".
const char* ggml_type_name(GgmlType type);

struct GgufTensorSpec {
  std::string name;
  GgmlType type = GgmlType::kF32;
  std::vector<int64_t> shape;  // row-major (outermost first), 1 to 4 dims
};

// Writes a GGUF v3 file whose metadata and tensor list are known up front. The constructor
// writes the header into `<dir>/.<name>.shoal-tmp-<pid>` sized to its final length; tensor bytes
// may then arrive in any order from any thread (pwrite); finish() checks every byte came,
// closes the file and renames it to `path` (replacing a file there). Tensor data starts at
// multiples of general.alignment (a u32 power of two when given; 32 when not). A writer that is
// destroyed unfinished removes its temporary file.
class GgufWriter {
 public:
  // Throws ConfigError for a bad spec (duplicate key or tensor name, a value that does not fit
  // its type, a shape the type cannot hold) and IoError when the file cannot be created.
  GgufWriter(std::filesystem::path path, std::vector<GgufKv> metadata,
             std::vector<GgufTensorSpec> tensors);
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  const std::vector<GgufTensorSpec>& tensors() const { return tensors_; }
  uint64_t tensor_nbytes(size_t i) const { return nbytes_[i]; }
  // Writes n bytes at byte_offset of tensor i's data. Thread-safe; failures are reported by
  // finish().
  void write(size_t i, uint64_t byte_offset, const void* data, size_t n);
  // Throws IoError when a write failed or a tensor is incomplete (the temporary file is removed).
  void finish();
  const std::filesystem::path& temp_path() const { return temp_; }

 private:
  std::filesystem::path path_, temp_;
  std::vector<GgufTensorSpec> tensors_;
  std::vector<uint64_t> nbytes_, offsets_;  // absolute file offsets of each tensor's data
  std::unique_ptr<std::atomic<uint64_t>[]> written_;
  std::mutex error_mu_;
  std::string error_;
  int fd_ = -1;
  bool finished_ = false;
};

}  // namespace shoal
