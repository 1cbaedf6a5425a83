// Writing GGUF v3 files whose metadata and tensor list are known up front: the header is encoded
// once, the file is created at its final size under a temporary name, and tensor bytes then land
// with pwrite in any order, from any thread (distinct tensors never share bytes). finish() renames
// the complete file into place, so a reader never sees a half-written model.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <set>

#include "io/file_write.h"
#include "io/json_util.h"
#include "shoal/error.h"
#include "shoal/gguf.h"

namespace shoal {

namespace {

using io::pwrite_all;

namespace fs = std::filesystem;

constexpr uint32_t kVersion = 3;
constexpr uint64_t kDefaultAlignment = 32;
constexpr int kMaxDims = 4;

uint64_t align_up(uint64_t x, uint64_t a) {
  return (x + a - 1) / a * a;
}

template <class T>
void put(std::string& out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));  // GGUF is little-endian, as every host shoal builds on
  out.append(buf, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

// Encodes metadata values, checking each against its declared type. `where` names the key (and
// the element inside arrays) for the one-line ConfigError.
class ValueEncoder {
 public:
  explicit ValueEncoder(std::string& out) : out_(out) {}

  void encode(GgufValueType type, const GgufValue& v, const std::string& where, int depth) {
    using T = GgufValueType;
    switch (type) {
      case T::kU8:
        return put<uint8_t>(out_, static_cast<uint8_t>(integer(v, where, 0, UINT8_MAX)));
      case T::kI8:
        return put<int8_t>(out_, static_cast<int8_t>(integer(v, where, INT8_MIN, INT8_MAX)));
      case T::kU16:
        return put<uint16_t>(out_, static_cast<uint16_t>(integer(v, where, 0, UINT16_MAX)));
      case T::kI16:
        return put<int16_t>(out_, static_cast<int16_t>(integer(v, where, INT16_MIN, INT16_MAX)));
      case T::kU32:
        return put<uint32_t>(out_, static_cast<uint32_t>(integer(v, where, 0, UINT32_MAX)));
      case T::kI32:
        return put<int32_t>(out_, static_cast<int32_t>(integer(v, where, INT32_MIN, INT32_MAX)));
      case T::kU64:
        if (const auto* u = std::get_if<uint64_t>(&v)) return put<uint64_t>(out_, *u);
        return put<uint64_t>(out_, static_cast<uint64_t>(integer(v, where, 0, INT64_MAX)));
      case T::kI64:
        return put<int64_t>(out_, integer(v, where, INT64_MIN, INT64_MAX));
      case T::kF32:
        return put<float>(out_, static_cast<float>(number(v, where)));
      case T::kF64:
        return put<double>(out_, number(v, where));
      case T::kBool:
        if (const auto* b = std::get_if<bool>(&v)) return put<uint8_t>(out_, *b ? 1 : 0);
        fail(where, "expected a bool");
      case T::kString:
        if (const auto* s = std::get_if<std::string>(&v)) return put_string(out_, *s);
        fail(where, "expected a string");
      case T::kArray: {
        const auto* a = std::get_if<std::shared_ptr<const GgufArray>>(&v);
        if (a == nullptr || *a == nullptr) fail(where, "expected an array");
        if (depth >= 8) fail(where, "arrays nested more than 8 deep");
        put<uint32_t>(out_, static_cast<uint32_t>((*a)->type));
        put<uint64_t>(out_, (*a)->values.size());
        for (size_t i = 0; i < (*a)->values.size(); ++i) {
          encode((*a)->type, (*a)->values[i], where + " element " + std::to_string(i), depth + 1);
        }
        return;
      }
    }
    fail(where, "unknown value type " + std::to_string(static_cast<uint32_t>(type)));
  }

 private:
  [[noreturn]] static void fail(const std::string& where, const std::string& what) {
    throw ConfigError("GGUF metadata " + where + ": " + what);
  }
  static int64_t integer(const GgufValue& v, const std::string& where, int64_t lo, int64_t hi) {
    int64_t x = 0;
    if (const auto* u = std::get_if<uint64_t>(&v)) {
      if (*u > static_cast<uint64_t>(INT64_MAX)) fail(where, std::to_string(*u) + " is too large");
      x = static_cast<int64_t>(*u);
    } else if (const auto* i = std::get_if<int64_t>(&v)) {
      x = *i;
    } else {
      fail(where, "expected an integer");
    }
    if (x < lo || x > hi) {
      fail(where, std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " +
                      std::to_string(hi) + "]");
    }
    return x;
  }
  static double number(const GgufValue& v, const std::string& where) {
    if (const auto* d = std::get_if<double>(&v)) return *d;
    fail(where, "expected a number");
  }
  std::string& out_;
};

std::shared_ptr<const GgufArray> make_array(GgufValueType type, std::vector<GgufValue> values) {
  auto a = std::make_shared<GgufArray>();
  a->type = type;
  a->values = std::move(values);
  return a;
}

}  // namespace

GgufKv GgufKv::u32(std::string key, uint32_t v) {
  return {std::move(key), GgufValueType::kU32, uint64_t{v}};
}
GgufKv GgufKv::i32(std::string key, int32_t v) {
  return {std::move(key), GgufValueType::kI32, int64_t{v}};
}
GgufKv GgufKv::u64(std::string key, uint64_t v) {
  return {std::move(key), GgufValueType::kU64, v};
}
GgufKv GgufKv::f32(std::string key, float v) {
  return {std::move(key), GgufValueType::kF32, double{v}};
}
GgufKv GgufKv::boolean(std::string key, bool v) {
  return {std::move(key), GgufValueType::kBool, v};
}
GgufKv GgufKv::str(std::string key, std::string v) {
  return {std::move(key), GgufValueType::kString, std::move(v)};
}
GgufKv GgufKv::strings(std::string key, const std::vector<std::string>& v) {
  std::vector<GgufValue> values(v.begin(), v.end());
  return {std::move(key), GgufValueType::kArray,
          make_array(GgufValueType::kString, std::move(values))};
}
GgufKv GgufKv::f32s(std::string key, const std::vector<float>& v) {
  std::vector<GgufValue> values;
  values.reserve(v.size());
  for (float x : v) values.emplace_back(double{x});
  return {std::move(key), GgufValueType::kArray,
          make_array(GgufValueType::kF32, std::move(values))};
}
GgufKv GgufKv::i32s(std::string key, const std::vector<int32_t>& v) {
  std::vector<GgufValue> values;
  values.reserve(v.size());
  for (int32_t x : v) values.emplace_back(int64_t{x});
  return {std::move(key), GgufValueType::kArray,
          make_array(GgufValueType::kI32, std::move(values))};
}

std::optional<uint64_t> ggml_nbytes(GgmlType type, const std::vector<int64_t>& shape) {
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d <= 0 || __builtin_mul_overflow(numel, d, &numel)) return std::nullopt;
  }
  switch (type) {
    case GgmlType::kF32:
      return static_cast<uint64_t>(numel) * 4;
    case GgmlType::kF16:
    case GgmlType::kBF16:
      return static_cast<uint64_t>(numel) * 2;
    case GgmlType::kQ8_0:
      if (shape.empty() || shape.back() % kQ8BlockSize != 0) return std::nullopt;
      return static_cast<uint64_t>(numel / kQ8BlockSize) * kQ8BlockBytes;
  }
  return std::nullopt;
}

const char* ggml_type_name(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
      return "F32";
    case GgmlType::kF16:
      return "F16";
    case GgmlType::kBF16:
      return "BF16";
    case GgmlType::kQ8_0:
      return "Q8_0";
  }
  return "unknown";
}

GgufWriter::GgufWriter(fs::path path, std::vector<GgufKv> metadata,
                       std::vector<GgufTensorSpec> tensors)
    : path_(std::move(path)), tensors_(std::move(tensors)) {
  // Header: magic, version, counts, metadata, tensor infos.
  std::string header = "GGUF";
  put<uint32_t>(header, kVersion);
  put<uint64_t>(header, tensors_.size());
  put<uint64_t>(header, metadata.size());
  uint64_t alignment = kDefaultAlignment;
  std::set<std::string_view> keys;
  ValueEncoder encoder(header);
  for (const GgufKv& kv : metadata) {
    if (!keys.insert(kv.key).second) {
      throw ConfigError("GGUF metadata key " + io::quoted(kv.key) + " is given twice");
    }
    put_string(header, kv.key);
    put<uint32_t>(header, static_cast<uint32_t>(kv.type));
    encoder.encode(kv.type, kv.value, "key " + io::quoted(kv.key), 0);
    if (kv.key == "general.alignment") {
      const auto* a = std::get_if<uint64_t>(&kv.value);
      if (kv.type != GgufValueType::kU32 || a == nullptr || *a == 0 || (*a & (*a - 1)) != 0) {
        throw ConfigError("GGUF metadata key 'general.alignment' must be a u32 power of two");
      }
      alignment = *a;
    }
  }
  std::set<std::string_view> names;
  uint64_t data_bytes = 0;
  std::vector<uint64_t> relative;
  for (const GgufTensorSpec& t : tensors_) {
    const std::string what = "GGUF tensor " + io::quoted(t.name);
    if (!names.insert(t.name).second) throw ConfigError(what + " is listed twice");
    if (t.shape.empty() || t.shape.size() > kMaxDims) {
      throw ConfigError(what + " has " + std::to_string(t.shape.size()) + " dims, expected 1 to 4");
    }
    const std::optional<uint64_t> nbytes = ggml_nbytes(t.type, t.shape);
    if (!nbytes) {
      throw ConfigError(what + " of shape " + shape_to_string(t.shape) + " cannot be stored as " +
                        ggml_type_name(t.type) + " (rows must be multiples of the block size)");
    }
    put_string(header, t.name);
    put<uint32_t>(header, static_cast<uint32_t>(t.shape.size()));
    for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) put<uint64_t>(header, *d);
    put<uint32_t>(header, static_cast<uint32_t>(t.type));
    put<uint64_t>(header, data_bytes);
    relative.push_back(data_bytes);
    nbytes_.push_back(*nbytes);
    data_bytes = align_up(data_bytes + *nbytes, alignment);
  }
  const uint64_t data_start = align_up(header.size(), alignment);
  for (uint64_t r : relative) offsets_.push_back(data_start + r);
  written_ = std::make_unique<std::atomic<uint64_t>[]>(tensors_.size());

  const fs::path dir = path_.has_parent_path() ? path_.parent_path() : fs::path(".");
  temp_ = dir / ("." + path_.filename().string() + ".shoal-tmp-" + std::to_string(::getpid()));
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw IoError(errno_message("cannot create " + temp_.string()));
  // Sized up front (sparse, so padding reads as zeros), so writes may arrive in any order.
  if (!pwrite_all(fd_, header.data(), header.size(), 0) ||
      ::ftruncate(fd_, static_cast<off_t>(data_start + data_bytes)) != 0) {
    const std::string message = errno_message("cannot write " + temp_.string());
    ::close(fd_);
    fd_ = -1;
    ::unlink(temp_.c_str());
    throw IoError(message);
  }
}

GgufWriter::~GgufWriter() {
  if (finished_) return;
  if (fd_ >= 0) ::close(fd_);
  ::unlink(temp_.c_str());
}

void GgufWriter::write(size_t i, uint64_t byte_offset, const void* data, size_t n) {
  SHOAL_ASSERT(!finished_ && i < tensors_.size());
  SHOAL_ASSERT(byte_offset <= nbytes_[i] && n <= nbytes_[i] - byte_offset);
  if (!pwrite_all(fd_, data, n, offsets_[i] + byte_offset)) {
    const std::string message = errno_message("cannot write " + temp_.string());
    const std::lock_guard lock(error_mu_);
    if (error_.empty()) error_ = message;
    return;
  }
  written_[i].fetch_add(n, std::memory_order_relaxed);
}

void GgufWriter::finish() {
  if (finished_) return;
  std::string error;
  {
    const std::lock_guard lock(error_mu_);
    error = error_;
  }
  for (size_t i = 0; i < tensors_.size() && error.empty(); ++i) {
    const uint64_t got = written_[i].load();
    if (got != nbytes_[i]) {
      error = temp_.string() + ": tensor " + io::quoted(tensors_[i].name) + ": " +
              std::to_string(got) + " bytes were written, expected " + std::to_string(nbytes_[i]);
    }
  }
  const int fd = fd_;
  fd_ = -1;
  // close() is where some file systems (NFS) report a failed write-back.
  if (::close(fd) != 0 && error.empty()) error = errno_message("cannot close " + temp_.string());
  if (error.empty() && ::rename(temp_.c_str(), path_.c_str()) != 0) {
    error = errno_message("cannot rename " + temp_.string() + " to " + path_.string());
  }
  if (!error.empty()) throw IoError(error);  // the destructor removes the temporary file
  finished_ = true;
}

}  // namespace shoal
