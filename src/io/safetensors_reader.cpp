// Opening a safetensors file: every length, offset, dtype and shape read from the file is checked
// against the bytes that are really there before anything uses it, so an untrusted or damaged
// file ends in one FormatError line, never in a crash or an out-of-bounds read.
#include <algorithm>
#include <cstring>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "io/json_util.h"
#include "io/mapped_file.h"
#include "shoal/error.h"
#include "shoal/safetensors.h"

namespace shoal {

namespace {

using nlohmann::json;

// The format's own limit on the JSON header; anything larger is a damaged length field.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

class Checker {
 public:
  explicit Checker(const std::filesystem::path& path) : path_(path) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError(path_.string() + ": " + what);
  }
  [[noreturn]] void fail(std::string_view tensor, const std::string& what) const {
    fail("tensor " + io::quoted(tensor) + ": " + what);
  }

 private:
  const std::filesystem::path& path_;
};

// A JSON value as a non-negative integer; nullopt for negatives, fractions, strings, ...
std::optional<uint64_t> as_u64(const json& j) {
  if (!j.is_number_unsigned()) return std::nullopt;  // non-negative integers parse as unsigned
  return j.get<uint64_t>();
}

// "[begin, end)" (built piecewise: GCC 12 warns falsely on "[" + std::string).
std::string range_string(uint64_t begin, uint64_t end) {
  std::string s = "[";
  s += std::to_string(begin);
  s += ", ";
  s += std::to_string(end);
  s += ")";
  return s;
}

std::vector<int64_t> parse_shape(const Checker& c, std::string_view name, const json& j) {
  if (!j.is_array()) {
    c.fail(name, "shape is a JSON " + std::string(j.type_name()) + ", expected a list of integers");
  }
  std::vector<int64_t> shape;
  shape.reserve(j.size());
  for (const json& d : j) {
    const auto v = as_u64(d);
    if (!v || *v > static_cast<uint64_t>(INT64_MAX)) {
      c.fail(name, "shape " + io::bounded_dump(j) + " must hold non-negative integers");
    }
    shape.push_back(static_cast<int64_t>(*v));
  }
  return shape;
}

// numel * dtype size, checked so that neither it nor any partial product (shape_numel multiplies
// left to right in int64) overflows.
uint64_t checked_nbytes(const Checker& c, std::string_view name, const std::vector<int64_t>& shape,
                        DType dtype) {
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(numel, d, &numel)) {
      c.fail(name, "shape " + shape_to_string(shape) + " has too many elements");
    }
  }
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(numel), dtype_size(dtype), &nbytes)) {
    c.fail(name, "shape " + shape_to_string(shape) + " x " + std::string(dtype_name(dtype)) +
                     " has too many bytes");
  }
  return nbytes;
}

TensorInfo parse_tensor(const Checker& c, const std::string& name, const json& entry,
                        uint64_t data_size) {
  if (!entry.is_object()) {
    c.fail(name, "entry is a JSON " + std::string(entry.type_name()) +
                     ", expected an object with dtype, shape and data_offsets");
  }
  for (const auto& item : entry.items()) {
    const std::string& key = item.key();
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      c.fail(name, "unknown key " + io::quoted(key) + " (expected dtype, shape and data_offsets)");
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) c.fail(name, std::string("missing key '") + key + "'");
  }

  TensorInfo t;
  t.name = name;
  const json& dtype = entry["dtype"];
  if (!dtype.is_string()) {
    c.fail(name, "dtype is a JSON " + std::string(dtype.type_name()) + ", expected a string");
  }
  const auto parsed = parse_dtype(dtype.get_ref<const std::string&>());
  if (!parsed) {
    c.fail(name, "unknown dtype " + io::quoted(dtype.get_ref<const std::string&>()) +
                     " (expected BOOL, U8, I8, F8_E4M3, F8_E5M2, I16, U16, F16, BF16, I32, U32, "
                     "F32, I64, U64 or F64)");
  }
  t.dtype = *parsed;
  t.shape = parse_shape(c, name, entry["shape"]);

  const json& offsets = entry["data_offsets"];
  std::optional<uint64_t> begin, end;
  if (offsets.is_array() && offsets.size() == 2) {
    begin = as_u64(offsets[0]);
    end = as_u64(offsets[1]);
  }
  if (!begin || !end || *begin > *end) {
    c.fail(name, "data_offsets " + io::bounded_dump(offsets) +
                     " must be two non-negative integers [begin, end] with begin <= end");
  }
  t.begin = *begin;
  t.end = *end;

  const uint64_t need = checked_nbytes(c, name, t.shape, t.dtype);
  const std::string range = range_string(t.begin, t.end);
  if (t.end - t.begin != need) {
    c.fail(name, "data_offsets " + range + " hold " + std::to_string(t.end - t.begin) +
                     " bytes but shape " + shape_to_string(t.shape) + " x " +
                     std::string(dtype_name(t.dtype)) + " needs " + std::to_string(need));
  }
  if (t.end > data_size) {
    c.fail(name, "data_offsets " + range + " end past the data section, which holds " +
                     std::to_string(data_size) + " bytes");
  }
  return t;
}

std::map<std::string, std::string> parse_metadata(const Checker& c, const json& j) {
  if (!j.is_object()) {
    c.fail("__metadata__ is a JSON " + std::string(j.type_name()) +
           ", expected an object of string to string");
  }
  std::map<std::string, std::string> out;
  for (const auto& item : j.items()) {
    if (!item.value().is_string()) {
      c.fail("__metadata__ value of " + io::quoted(item.key()) + " is a JSON " +
             std::string(item.value().type_name()) + ", expected a string");
    }
    out.emplace(item.key(), item.value().get<std::string>());
  }
  return out;
}

// The format requires the tensors to tile the data section exactly: sorted by offset, each one
// starts where the previous one ended, and the last one ends at the end of the file.
void check_coverage(const Checker& c, const std::vector<TensorInfo>& sorted, uint64_t data_size) {
  uint64_t covered = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : sorted) {
    if (t.begin < covered) {
      c.fail(t.name, "data_offsets " + range_string(t.begin, t.end) + " overlap tensor " +
                         io::quoted(prev->name) + " at " + range_string(prev->begin, prev->end));
    }
    if (t.begin > covered) {
      c.fail("data section has a gap at bytes " + range_string(covered, t.begin) +
             " before tensor " + io::quoted(t.name) +
             " (tensors must cover the data section without gaps)");
    }
    covered = t.end;
    prev = &t;
  }
  if (covered != data_size) {
    c.fail("data section has " + std::to_string(data_size - covered) + " trailing bytes at " +
           range_string(covered, data_size) +
           " after the last tensor (tensors must cover the data section exactly)");
  }
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile f;
  f.path_ = path;
  f.file_ = std::make_unique<MappedFile>(path);
  const Checker c(f.path_);
  const uint64_t size = f.file_->size();
  const std::byte* bytes = f.file_->data();

  if (size < 8) {
    c.fail("file is " + std::to_string(size) +
           " bytes, too short for the 8-byte header length of a safetensors file");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);  // little-endian
  if (n > kMaxHeaderBytes) {
    c.fail("header length " + std::to_string(n) + " is over the limit of " +
           std::to_string(kMaxHeaderBytes) + " bytes (not a safetensors file?)");
  }
  if (n > size - 8) {
    c.fail("header length " + std::to_string(n) + " exceeds the " + std::to_string(size - 8) +
           " bytes that follow it");
  }
  f.data_start_ = 8 + n;
  const uint64_t data_size = size - f.data_start_;

  const char* text = reinterpret_cast<const char*>(bytes + 8);
  json header;
  try {
    header = json::parse(text, text + n);
  } catch (const json::exception& e) {
    c.fail("header is not valid JSON: " + io::json_error_text(e));
  }
  if (!header.is_object()) {
    c.fail("header is a JSON " + std::string(header.type_name()) + ", expected an object");
  }

  for (const auto& item : header.items()) {
    if (item.key() == "__metadata__") {
      f.metadata_ = parse_metadata(c, item.value());
    } else {
      f.tensors_.push_back(parse_tensor(c, item.key(), item.value(), data_size));
    }
  }
  // Names break ties between empty tensors at the same offset, so the order is deterministic.
  std::sort(f.tensors_.begin(), f.tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.name < b.name;
  });
  check_coverage(c, f.tensors_, data_size);

  f.index_.reserve(f.tensors_.size());
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
  return f;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

uint64_t SafetensorsFile::file_size() const {
  return file_->size();
}

TensorView SafetensorsFile::view(const TensorInfo& t) const {
  SHOAL_ASSERT(t.begin <= t.end && data_start_ + t.end <= file_->size());
  TensorView v;
  v.dtype = t.dtype;
  v.shape = t.shape;
  v.data = file_->data() + data_start_ + t.begin;
  v.nbytes = static_cast<size_t>(t.nbytes());
  return v;
}

void SafetensorsFile::release(const TensorInfo& t) const {
  file_->release(data_start_ + t.begin, t.nbytes());
}

void SafetensorsFile::release(const TensorInfo& t, uint64_t byte_offset, uint64_t n) const {
  if (byte_offset >= t.nbytes()) return;
  n = std::min(n, t.nbytes() - byte_offset);
  file_->release(data_start_ + t.begin + byte_offset, n);
}

}  // namespace shoal
