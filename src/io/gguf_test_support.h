// GGUF files built by hand, byte by byte from the published layout (ggml docs/gguf.md), for the
// tests of the GGUF reader and of the GGUF weight source. Nothing here calls the reader.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/test_support.h"

namespace shoal::test {

// Little-endian encoders appending to a byte string.
class Bytes {
 public:
  template <class T>
  Bytes& put(T v) {
    char buf[sizeof(T)];
    std::memcpy(buf, &v, sizeof(T));  // the test hosts are little-endian, as GGUF is
    s_.append(buf, sizeof(T));
    return *this;
  }
  Bytes& u8(uint8_t v) { return put(v); }
  Bytes& i8(int8_t v) { return put(v); }
  Bytes& u16(uint16_t v) { return put(v); }
  Bytes& i16(int16_t v) { return put(v); }
  Bytes& u32(uint32_t v) { return put(v); }
  Bytes& i32(int32_t v) { return put(v); }
  Bytes& u64(uint64_t v) { return put(v); }
  Bytes& i64(int64_t v) { return put(v); }
  Bytes& f32(float v) { return put(v); }
  Bytes& f64(double v) { return put(v); }
  // GGUF string: u64 byte count, then the bytes (no terminator).
  Bytes& str(const std::string& v) {
    u64(v.size());
    s_ += v;
    return *this;
  }
  Bytes& raw(const std::string& v) {
    s_ += v;
    return *this;
  }
  const std::string& bytes() const { return s_; }
  operator std::string() const { return s_; }

 private:
  std::string s_;
};

// GGUF metadata value type ids and ggml tensor type ids, spelled out independently of the
// reader's header.
enum : uint32_t {
  kTU8 = 0,
  kTI8 = 1,
  kTU16 = 2,
  kTI16 = 3,
  kTU32 = 4,
  kTI32 = 5,
  kTF32 = 6,
  kTBool = 7,
  kTString = 8,
  kTArray = 9,
  kTU64 = 10,
  kTI64 = 11,
  kTF64 = 12,
};
enum : uint32_t { kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ4_0 = 2, kGgmlQ8_0 = 8, kGgmlBF16 = 30 };

// One metadata entry: key, value type, value bytes.
inline std::string kv(const std::string& key, uint32_t type, const std::string& value) {
  return Bytes().str(key).u32(type).raw(value);
}
inline std::string kv_u32(const std::string& key, uint32_t v) {
  return kv(key, kTU32, Bytes().u32(v));
}
inline std::string kv_f32(const std::string& key, float v) {
  return kv(key, kTF32, Bytes().f32(v));
}
inline std::string kv_str(const std::string& key, const std::string& v) {
  return kv(key, kTString, Bytes().str(v));
}
// An array value (without the key): element type, count, element bytes.
inline std::string array_value(uint32_t elem_type, uint64_t count, const std::string& elems) {
  return Bytes().u32(elem_type).u64(count).raw(elems);
}
inline std::string kv_strings(const std::string& key, const std::vector<std::string>& v) {
  Bytes elems;
  for (const std::string& s : v) elems.str(s);
  return kv(key, kTArray, array_value(kTString, v.size(), elems));
}

struct HandGgufTensor {
  std::string name;
  uint32_t type = kGgmlF32;
  std::vector<uint64_t> dims;  // ggml order: innermost (row length) first
  std::string data;
  std::optional<uint64_t> offset;  // default: the next multiple of the alignment
};

struct HandGguf {
  uint32_t version = 3;
  std::vector<std::string> kvs;  // complete entries (see kv())
  std::vector<HandGgufTensor> tensors;
  // Used for padding only: a file states a non-default alignment with a general.alignment entry.
  uint64_t alignment = 32;

  std::string build() const {
    Bytes out;
    out.raw("GGUF").u32(version).u64(tensors.size()).u64(kvs.size());
    for (const std::string& e : kvs) out.raw(e);
    std::vector<uint64_t> offsets;
    uint64_t next = 0;
    for (const HandGgufTensor& t : tensors) {
      const uint64_t off = t.offset ? *t.offset : (next + alignment - 1) / alignment * alignment;
      offsets.push_back(off);
      next = off + t.data.size();
      out.str(t.name).u32(static_cast<uint32_t>(t.dims.size()));
      for (uint64_t d : t.dims) out.u64(d);
      out.u32(t.type).u64(off);
    }
    std::string file = out;
    file.resize((file.size() + alignment - 1) / alignment * alignment, '\0');
    const size_t data_start = file.size();
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].data.empty()) continue;  // e.g. a hostile offset far past the end
      const size_t at = data_start + offsets[i];
      if (file.size() < at + tensors[i].data.size()) file.resize(at + tensors[i].data.size());
      file.replace(at, tensors[i].data.size(), tensors[i].data);
    }
    return file;
  }
};

// `n` little-endian f32 values start, start + step, ...
inline std::string f32_series(size_t n, float start, float step) {
  Bytes b;
  for (size_t i = 0; i < n; ++i) b.f32(start + step * static_cast<float>(i));
  return b;
}

}  // namespace shoal::test
