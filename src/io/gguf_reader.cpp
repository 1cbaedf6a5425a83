// Opening a GGUF file: every count, length, type id and offset read from the file is checked
// against the bytes that are really there before anything is allocated or read, so a damaged or
// hostile file ends in one FormatError line naming the file and the key or tensor, never in a
// crash, an out-of-bounds read or a huge allocation.
#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>

#include "io/json_util.h"
#include "io/mapped_file.h"
#include "shoal/error.h"
#include "shoal/gguf.h"

namespace shoal {

namespace {

namespace fs = std::filesystem;

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr uint32_t kDefaultAlignment = 32;
constexpr int kMaxDims = 4;  // ggml's GGML_MAX_DIMS
// Arrays of arrays are legal; real files nest at most twice. The cap keeps a hostile file from
// recursing the parser off its stack.
constexpr int kMaxArrayDepth = 8;
// A metadata value costs up to 40 bytes in memory for 1 byte in the file (a u8 array element),
// so the file size alone does not bound memory. Real vocabularies hold a few hundred thousand
// tokens, with a handful of arrays of that length.
constexpr uint64_t kMaxMetadataValues = uint64_t{1} << 24;

// ggml's names for its type ids, for messages about the types shoal does not read.
std::string ggml_type_name(uint32_t id) {
  static constexpr const char* kNames[] = {
      "F32",     "F16",    "Q4_0",    "Q4_1",  nullptr,  nullptr, "Q5_0",  "Q5_1",
      "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
      "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
      "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16"};
  if (id < std::size(kNames) && kNames[id] != nullptr) return kNames[id];
  return "unknown";
}

// Smallest encoding of one value of each type, to refuse counts the file cannot hold before
// reserving anything. 0 for an unknown type id.
uint64_t min_value_bytes(uint32_t type) {
  switch (static_cast<GgufValueType>(type)) {
    case GgufValueType::kU8:
    case GgufValueType::kI8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kU16:
    case GgufValueType::kI16:
      return 2;
    case GgufValueType::kU32:
    case GgufValueType::kI32:
    case GgufValueType::kF32:
      return 4;
    case GgufValueType::kU64:
    case GgufValueType::kI64:
    case GgufValueType::kF64:
    case GgufValueType::kString:  // the u64 length
      return 8;
    case GgufValueType::kArray:  // u32 element type + u64 count
      return 12;
  }
  return 0;
}

// Bytes per element and per block of each ggml type shoal reads; nullopt for the others.
struct TypeLayout {
  DType view_dtype;     // what raw_view reports
  int64_t block_elems;  // elements per block (1 for plain floats)
  uint64_t block_bytes;
};
std::optional<TypeLayout> type_layout(uint32_t id) {
  switch (static_cast<GgmlType>(id)) {
    case GgmlType::kF32:
      return TypeLayout{DType::kF32, 1, 4};
    case GgmlType::kF16:
      return TypeLayout{DType::kF16, 1, 2};
    case GgmlType::kBF16:
      return TypeLayout{DType::kBF16, 1, 2};
    case GgmlType::kQ8_0:
      return TypeLayout{DType::kU8, kQ8BlockSize, kQ8BlockBytes};
  }
  return std::nullopt;
}

// A cursor over the mapped bytes that reports every failure as "<file>: <context>: <what>".
// The context is the key or tensor being read ("key 'general.name'", "tensor 'output.weight'"),
// plus the element index inside (nested) arrays.
class Parser {
 public:
  Parser(const fs::path& path, const std::byte* data, uint64_t size)
      : path_(path), data_(data), size_(size) {}

  [[noreturn]] void fail(const std::string& what) const {
    std::string msg = path_.string() + ": ";
    if (!context_.empty()) {
      msg += context_;
      // Nested array elements as "element 3/0".
      for (size_t i = 0; i < element_path_.size(); ++i) {
        msg += (i == 0 ? " element " : "/") + std::to_string(element_path_[i]);
      }
      msg += ": ";
    }
    throw FormatError(msg + what);
  }

  void set_context(std::string context) {
    context_ = std::move(context);
    element_path_.clear();
  }
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  // Fails unless n more bytes are there; `what` names them ("string length", "dims").
  void need(uint64_t n, const char* what) const {
    if (n > remaining()) {
      fail(std::string(what) + " needs " + std::to_string(n) + " bytes at offset " +
           std::to_string(pos_) + " but the file has only " + std::to_string(remaining()) +
           " left");
    }
  }

  template <class T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    // GGUF is little-endian, as is every host shoal builds on.
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    const auto n = read<uint64_t>(what);
    if (n > remaining()) {
      fail(std::string(what) + " of " + std::to_string(n) + " bytes at offset " +
           std::to_string(pos_) + " exceeds the " + std::to_string(remaining()) +
           " bytes left in the file");
    }
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

  // Reads one metadata value of `type` (already known to be valid).
  GgufValue read_value(uint32_t type, int depth) {
    switch (static_cast<GgufValueType>(type)) {
      case GgufValueType::kU8:
        return uint64_t{read<uint8_t>("u8 value")};
      case GgufValueType::kI8:
        return int64_t{read<int8_t>("i8 value")};
      case GgufValueType::kU16:
        return uint64_t{read<uint16_t>("u16 value")};
      case GgufValueType::kI16:
        return int64_t{read<int16_t>("i16 value")};
      case GgufValueType::kU32:
        return uint64_t{read<uint32_t>("u32 value")};
      case GgufValueType::kI32:
        return int64_t{read<int32_t>("i32 value")};
      case GgufValueType::kU64:
        return read<uint64_t>("u64 value");
      case GgufValueType::kI64:
        return read<int64_t>("i64 value");
      case GgufValueType::kF32:
        return double{read<float>("f32 value")};
      case GgufValueType::kF64:
        return read<double>("f64 value");
      case GgufValueType::kBool: {
        const auto b = read<uint8_t>("bool value");
        if (b > 1) fail("bool value " + std::to_string(b) + ", expected 0 or 1");
        return b == 1;
      }
      case GgufValueType::kString:
        return read_string("string length");
      case GgufValueType::kArray:
        return read_array(depth + 1);
    }
    fail("value type " + std::to_string(type) + " reached the reader unchecked");  // not reached
  }

  uint32_t read_value_type(const char* what) {
    const auto type = read<uint32_t>(what);
    if (min_value_bytes(type) == 0) {
      fail("unknown " + std::string(what) + " " + std::to_string(type) +
           " (expected 0..12: u8, i8, u16, i16, u32, i32, f32, bool, string, array, u64, i64, "
           "f64)");
    }
    return type;
  }

 private:
  std::shared_ptr<const GgufArray> read_array(int depth) {
    if (depth > kMaxArrayDepth) {
      fail("arrays nested more than " + std::to_string(kMaxArrayDepth) + " deep");
    }
    auto array = std::make_shared<GgufArray>();
    const uint32_t type = read_value_type("array element type");
    array->type = static_cast<GgufValueType>(type);
    const auto count = read<uint64_t>("array count");
    // Refuse before reserving: the file must hold at least `count` of the smallest encoding.
    if (count > remaining() / min_value_bytes(type)) {
      fail("array count " + std::to_string(count) + " exceeds what the " +
           std::to_string(remaining()) + " bytes left in the file can hold");
    }
    values_read_ += count;
    if (values_read_ > kMaxMetadataValues) {
      fail("metadata arrays hold more than " + std::to_string(kMaxMetadataValues) +
           " values in all");
    }
    array->values.reserve(count);
    element_path_.push_back(0);
    for (uint64_t i = 0; i < count; ++i) {
      element_path_.back() = i;
      array->values.push_back(read_value(type, depth));
    }
    element_path_.pop_back();
    return array;
  }

  const fs::path& path_;
  const std::byte* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t values_read_ = 0;
  std::string context_;
  std::vector<uint64_t> element_path_;
};

std::string key_context(std::string_view key) {
  return "key " + io::quoted(key);
}
std::string tensor_context(std::string_view name) {
  return "tensor " + io::quoted(name);
}

// "[3, 2]": ggml dims as the file stores them (innermost first).
std::string dims_string(const std::vector<uint64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

const char* value_kind(const GgufValue& v) {
  switch (v.index()) {
    case 0:
      return "an unsigned integer";
    case 1:
      return "a signed integer";
    case 2:
      return "a float";
    case 3:
      return "a bool";
    case 4:
      return "a string";
    default:
      return "an array";
  }
}

}  // namespace

GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

GgufFile GgufFile::open(const fs::path& path) {
  GgufFile f;
  f.path_ = path;
  f.file_ = std::make_unique<MappedFile>(path);
  Parser p(f.path_, f.file_->data(), f.file_->size());

  // Header.
  p.set_context("header");
  p.need(4, "magic");
  if (std::memcmp(f.file_->data(), kMagic, 4) != 0) {
    std::string got(reinterpret_cast<const char*>(f.file_->data()), 4);
    p.fail("magic " + io::quoted(got) + ", expected 'GGUF' (not a GGUF file)");
  }
  p.read<uint32_t>("magic");
  f.version_ = p.read<uint32_t>("version");
  if (f.version_ != 2 && f.version_ != 3) {
    std::string why = "GGUF version " + std::to_string(f.version_) +
                      " is not supported (shoal reads versions 2 and 3)";
    if ((f.version_ & 0xffff) == 0 && f.version_ != 0) why += "; the file looks big-endian";
    p.fail(why);
  }
  const auto n_tensors = p.read<uint64_t>("tensor count");
  const auto n_kv = p.read<uint64_t>("metadata count");
  // Smallest metadata entry: empty key (8) + type (4) + a u8 (1). Smallest tensor info: empty
  // name (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
  if (n_kv > p.remaining() / 13) {
    p.fail("metadata count " + std::to_string(n_kv) + " exceeds what the " +
           std::to_string(p.remaining()) + " bytes left in the file can hold");
  }
  if (n_tensors > (p.remaining() - 13 * n_kv) / 32) {
    p.fail("tensor count " + std::to_string(n_tensors) + " exceeds what the " +
           std::to_string(p.remaining()) + " bytes left in the file can hold");
  }

  // Metadata.
  uint32_t alignment = kDefaultAlignment;
  // The counts are bounded by the file size, but an entry in memory outweighs its smallest
  // encoding: reserve only what a real file needs and let larger ones grow.
  f.metadata_.reserve(std::min<uint64_t>(n_kv, 4096));
  for (uint64_t i = 0; i < n_kv; ++i) {
    p.set_context("metadata entry " + std::to_string(i));
    std::string key = p.read_string("key length");
    p.set_context(key_context(key));
    if (f.metadata_index_.contains(key)) p.fail("duplicate key");
    const uint32_t type = p.read_value_type("value type");
    GgufValue value = p.read_value(type, 0);
    if (key == "general.alignment") {
      if (static_cast<GgufValueType>(type) != GgufValueType::kU32) {
        p.fail("value type " + std::to_string(type) + ", expected 4 (u32)");
      }
      const uint64_t a = std::get<uint64_t>(value);
      if (a == 0 || (a & (a - 1)) != 0) {
        p.fail("alignment " + std::to_string(a) + " is not a power of two");
      }
      alignment = static_cast<uint32_t>(a);
    }
    f.metadata_index_.emplace(key, f.metadata_.size());
    f.metadata_.emplace_back(std::move(key), std::move(value));
    f.metadata_types_.push_back(static_cast<GgufValueType>(type));
  }

  // Tensor infos.
  f.tensors_.reserve(std::min<uint64_t>(n_tensors, 4096));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    p.set_context("tensor info " + std::to_string(i));
    GgufTensorInfo t;
    t.name = p.read_string("name length");
    p.set_context(tensor_context(t.name));
    if (f.tensor_index_.contains(t.name)) p.fail("duplicate tensor name");
    const auto n_dims = p.read<uint32_t>("n_dims");
    if (n_dims < 1 || n_dims > kMaxDims) {
      p.fail("n_dims " + std::to_string(n_dims) + ", expected 1 to " + std::to_string(kMaxDims));
    }
    std::vector<uint64_t> dims(n_dims);
    for (uint64_t& d : dims) d = p.read<uint64_t>("dims");
    const auto type_id = p.read<uint32_t>("ggml type");
    t.offset = p.read<uint64_t>("data offset");

    int64_t numel = 1;
    for (uint64_t d : dims) {
      if (d == 0 || d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        p.fail("dims " + dims_string(dims) + " must be between 1 and 2^63 - 1");
      }
      if (__builtin_mul_overflow(numel, static_cast<int64_t>(d), &numel)) {
        p.fail("dims " + dims_string(dims) + " have too many elements");
      }
    }
    const auto layout = type_layout(type_id);
    if (!layout) {
      p.fail("ggml type " + std::to_string(type_id) + " (" + ggml_type_name(type_id) +
             ") is not supported (shoal reads F32, F16, BF16 and Q8_0)");
    }
    t.type = static_cast<GgmlType>(type_id);
    if (dims[0] % layout->block_elems != 0) {
      p.fail("row length " + std::to_string(dims[0]) + " is not a multiple of the " +
             ggml_type_name(type_id) + " block size " + std::to_string(layout->block_elems));
    }
    // numel / block_elems * block_bytes cannot overflow unless the product does.
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel) / layout->block_elems,
                               layout->block_bytes, &t.nbytes)) {
      p.fail("dims " + dims_string(dims) + " have too many bytes");
    }
    if (t.offset % alignment != 0) {
      p.fail("data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
             std::to_string(alignment));
    }
    t.shape.assign(dims.rbegin(), dims.rend());
    f.tensor_index_.emplace(t.name, f.tensors_.size());
    f.tensors_.push_back(std::move(t));
  }

  // Tensor data: from the aligned position after the infos to the end of the file.
  const uint64_t infos_end = p.pos();
  f.data_start_ = (infos_end + alignment - 1) / alignment * alignment;
  const uint64_t file_size = f.file_->size();
  const uint64_t data_size = f.data_start_ <= file_size ? file_size - f.data_start_ : 0;
  for (const GgufTensorInfo& t : f.tensors_) {
    if (f.data_start_ > file_size || t.offset > data_size || t.nbytes > data_size - t.offset) {
      p.set_context(tensor_context(t.name));
      p.fail("data [" + std::to_string(t.offset) + ", +" + std::to_string(t.nbytes) +
             ") runs past the end of the data section, which holds " + std::to_string(data_size) +
             " bytes from offset " + std::to_string(f.data_start_));
    }
  }
  std::vector<size_t> order(f.tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Stable, so that of two tensors at one offset the later one in the file is named.
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return f.tensors_[a].offset < f.tensors_[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const GgufTensorInfo& prev = f.tensors_[order[i - 1]];
    const GgufTensorInfo& t = f.tensors_[order[i]];
    if (t.offset < prev.offset + prev.nbytes) {
      p.set_context(tensor_context(t.name));
      p.fail("data at offset " + std::to_string(t.offset) + " overlaps tensor " +
             io::quoted(prev.name) + " at [" + std::to_string(prev.offset) + ", " +
             std::to_string(prev.offset + prev.nbytes) + ")");
    }
  }
  return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  const auto it = metadata_index_.find(std::string(key));
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

namespace {

[[noreturn]] void wrong_type(const fs::path& path, std::string_view key, const GgufValue& v,
                             const char* expected) {
  throw FormatError(path.string() + ": " + key_context(key) + " is " + value_kind(v) +
                    ", expected " + expected);
}

}  // namespace

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* s = std::get_if<std::string>(v)) return *s;
  wrong_type(path_, key, *v, "a string");
}

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* i = std::get_if<int64_t>(v)) return *i;
  if (const auto* u = std::get_if<uint64_t>(v)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw FormatError(path_.string() + ": " + key_context(key) + " value " + std::to_string(*u) +
                        " is too large");
    }
    return static_cast<int64_t>(*u);
  }
  wrong_type(path_, key, *v, "an integer");
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* d = std::get_if<double>(v)) return *d;
  if (const auto* i = std::get_if<int64_t>(v)) return static_cast<double>(*i);
  if (const auto* u = std::get_if<uint64_t>(v)) return static_cast<double>(*u);
  wrong_type(path_, key, *v, "a number");
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* b = std::get_if<bool>(v)) return *b;
  wrong_type(path_, key, *v, "a bool");
}

const GgufArray* GgufFile::get_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return nullptr;
  if (const auto* a = std::get_if<std::shared_ptr<const GgufArray>>(v)) return a->get();
  wrong_type(path_, key, *v, "an array");
}

std::optional<GgufValueType> GgufFile::value_type(std::string_view key) const {
  const auto it = metadata_index_.find(std::string(key));
  if (it == metadata_index_.end()) return std::nullopt;
  return metadata_types_[it->second];
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

TensorView GgufFile::raw_view(const GgufTensorInfo& t) const {
  const auto layout = type_layout(static_cast<uint32_t>(t.type));
  SHOAL_ASSERT(layout.has_value());
  TensorView v;
  v.dtype = layout->view_dtype;
  v.shape = t.shape;
  if (layout->block_elems != 1) {
    // Quantised rows as bytes: the innermost dim counts bytes, so numel() == nbytes.
    v.shape.back() =
        v.shape.back() / layout->block_elems * static_cast<int64_t>(layout->block_bytes);
  }
  v.data = file_->data() + data_start_ + t.offset;
  v.nbytes = t.nbytes;
  return v;
}

void dequantize_q8_0(const void* blocks, float* dst, int64_t n) {
  SHOAL_ASSERT(n % kQ8BlockSize == 0);
  const auto* b = static_cast<const unsigned char*>(blocks);
  for (int64_t block = 0; block < n / kQ8BlockSize; ++block, b += kQ8BlockBytes) {
    uint16_t d_bits;
    std::memcpy(&d_bits, b, 2);
    const float d = f16_to_f32(d_bits);
    const auto* q = reinterpret_cast<const int8_t*>(b + 2);
    for (int64_t j = 0; j < kQ8BlockSize; ++j) dst[j] = d * static_cast<float>(q[j]);
    dst += kQ8BlockSize;
  }
}

}  // namespace shoal
