// SafetensorsFile::open against files built by hand: a valid file with every kind of tensor, each
// way a file can be damaged (one FormatError line naming file and tensor), and fuzz-like sweeps
// (every truncation, byte flips in the header) that may only ever end in FormatError.
#include <cstring>
#include <random>

#include <gtest/gtest.h>

#include "io/test_support.h"
#include "shoal/error.h"
#include "shoal/safetensors.h"

namespace shoal {
namespace {

using test::hand_file;
using test::HandTensor;
using test::raw_safetensors;
using test::TempDir;
using test::write_file;
using namespace std::string_literals;  // "..."s keeps embedded NUL bytes

std::string f32_bytes(std::initializer_list<float> values) {
  std::string s(values.size() * 4, '\0');
  size_t i = 0;
  for (float v : values) std::memcpy(&s[4 * i++], &v, 4);
  return s;
}

TEST(SafetensorsReader, ValidFileWithManyDtypes) {
  TempDir dir;
  const std::string f16 = "\x00\x3c\x00\x40\x00\xc0"s;  // 1.0, 2.0, -2.0 as IEEE half
  const std::string bf16 = "\x80\x3f\x40\x40"s;         // 1.0, 3.0 as bfloat16
  const std::vector<HandTensor> tensors = {
      {"w.f32", "F32", {2, 2}, f32_bytes({1.f, 2.f, 3.f, 4.f})},
      {"w.f16", "F16", {3}, f16},
      {"w.bf16", "BF16", {2}, bf16},
      {"pos", "I64", {1}, std::string("\x07\0\0\0\0\0\0\0", 8)},
      {"mask", "BOOL", {3}, std::string("\x01\x00\x01", 3)},
      {"scalar", "F32", {}, f32_bytes({5.5f})},
      {"empty", "F32", {0, 5}, ""},
      {"bytes", "U8", {2, 1}, "\xfe\xff"},
      {"f64", "F64", {1}, std::string(8, '\0')},
  };
  // Header keys are in a different order from the data (JSON objects are unordered).
  write_file(dir / "m.safetensors", hand_file(tensors, R"({"format":"pt","note":"x"})"));
  const SafetensorsFile f = SafetensorsFile::open(dir / "m.safetensors");

  ASSERT_EQ(f.tensors().size(), tensors.size());
  // tensors() follows the data offsets: the hand-built order. "empty" (0 bytes at offset 45)
  // sits before "bytes" which starts at the same offset.
  std::vector<std::string> names;
  for (const TensorInfo& t : f.tensors()) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"w.f32", "w.f16", "w.bf16", "pos", "mask", "scalar",
                                             "empty", "bytes", "f64"}));
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "x"}}));

  const TensorInfo* w = f.find("w.f32");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::kF32);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(w->begin, 0u);
  EXPECT_EQ(w->end, 16u);
  TensorView v = f.view(*w);
  ASSERT_EQ(v.nbytes, 16u);
  float got[4];
  std::memcpy(got, v.data, 16);
  EXPECT_EQ(got[0], 1.f);
  EXPECT_EQ(got[3], 4.f);

  const TensorInfo* half = f.find("w.f16");
  ASSERT_NE(half, nullptr);
  EXPECT_EQ(half->dtype, DType::kF16);
  v = f.view(*half);
  EXPECT_EQ(std::memcmp(v.data, f16.data(), 6), 0);

  const TensorInfo* scalar = f.find("scalar");
  ASSERT_NE(scalar, nullptr);
  EXPECT_TRUE(scalar->shape.empty());
  EXPECT_EQ(scalar->numel(), 1);
  EXPECT_EQ(scalar->nbytes(), 4u);

  const TensorInfo* empty = f.find("empty");
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(empty->numel(), 0);
  EXPECT_EQ(f.view(*empty).nbytes, 0u);

  EXPECT_EQ(f.find("bytes")->dtype, DType::kU8);
  EXPECT_EQ(f.find("mask")->dtype, DType::kBool);
  EXPECT_EQ(f.find("pos")->dtype, DType::kI64);
  EXPECT_EQ(f.find("w.bf16")->dtype, DType::kBF16);
  EXPECT_EQ(f.find("missing"), nullptr);

  // Releasing pages is only a hint: the bytes read back the same afterwards.
  for (const TensorInfo& t : f.tensors()) f.release(t);
  v = f.view(*w);
  std::memcpy(got, v.data, 16);
  EXPECT_EQ(got[1], 2.f);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.view(*f.find("bytes")).data), 2),
            "\xfe\xff");
  EXPECT_EQ(f.file_size(), test::read_file(dir / "m.safetensors").size());
}

TEST(SafetensorsReader, PaddedHeaderAndNoTensors) {
  TempDir dir;
  write_file(dir / "pad.safetensors", raw_safetensors(R"({"a":{"dtype":"U8","shape":[2],)"
                                                      R"("data_offsets":[0,2]}}      )",
                                                      "xy"));
  EXPECT_EQ(SafetensorsFile::open(dir / "pad.safetensors").tensors().size(), 1u);
  write_file(dir / "none.safetensors", raw_safetensors("{}", ""));
  const SafetensorsFile f = SafetensorsFile::open(dir / "none.safetensors");
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_TRUE(f.metadata().empty());
}

TEST(SafetensorsReader, MoveKeepsViewsValid) {
  TempDir dir;
  write_file(dir / "m.safetensors", hand_file({{"a", "U8", {3}, "abc"}}));
  SafetensorsFile a = SafetensorsFile::open(dir / "m.safetensors");
  const TensorView before = a.view(*a.find("a"));
  SafetensorsFile b = std::move(a);
  const TensorView after = b.view(*b.find("a"));
  EXPECT_EQ(before.data, after.data);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(after.data), 3), "abc");
}

TEST(SafetensorsReader, MissingFileIsIoError) {
  TempDir dir;
  EXPECT_THROW(SafetensorsFile::open(dir / "absent.safetensors"), IoError);
  EXPECT_THROW(SafetensorsFile::open(dir.path()), IoError);  // a directory
}

struct Corruption {
  const char* label;
  std::string bytes;
  const char* tensor;  // name the message must contain, or nullptr
  const char* phrase;  // another piece the message must contain
};

std::string entry(const std::string& name, const std::string& body) {
  return "\"" + name + "\":{" + body + "}";
}

std::vector<Corruption> corruptions() {
  const std::string a = entry("a.weight", R"("dtype":"F32","shape":[2],"data_offsets":[0,8])");
  const std::string b = entry("b.weight", R"("dtype":"F16","shape":[2],"data_offsets":[8,12])");
  const std::string data12(12, '\x11');
  const auto file = [&](const std::string& entries, const std::string& data) {
    return raw_safetensors("{" + entries + "}", data);
  };
  std::string huge_len(8, '\0');
  huge_len[4] = 1;  // 2^32
  return {
      {"empty file", "", nullptr, "too short"},
      {"truncated length", std::string("\x04\0\0", 3), nullptr, "too short"},
      {"header past end", raw_safetensors("{}", "").substr(0, 8) + "{", nullptr, "exceeds"},
      {"header absurdly long", huge_len + "{}", nullptr, "limit"},
      {"invalid json", raw_safetensors("{\"a\": [1, 2", ""), nullptr, "not valid JSON"},
      {"json not object", raw_safetensors("[1]", ""), nullptr, "expected an object"},
      {"entry not object", file(R"("a.weight":[1,2])", ""), "a.weight", "expected an object"},
      {"unknown dtype",
       file(entry("a.weight", R"("dtype":"F24","shape":[2],"data_offsets":[0,8])"), data12),
       "a.weight", "F24"},
      {"dtype not string",
       file(entry("a.weight", R"("dtype":4,"shape":[2],"data_offsets":[0,8])"), data12), "a.weight",
       "dtype"},
      {"bytes mismatch",
       file(entry("model.norm.weight", R"("dtype":"F16","shape":[4],"data_offsets":[0,12])"),
            data12),
       "model.norm.weight", "data_offsets [0, 12) hold 12 bytes but shape [4] x F16 needs 8"},
      {"offsets past end", file(a + "," + b, data12.substr(0, 10)), "b.weight", "past"},
      {"offsets reversed",
       file(entry("a.weight", R"("dtype":"F32","shape":[0],"data_offsets":[8,0])"), ""), "a.weight",
       "begin <= end"},
      {"offsets one number",
       file(entry("a.weight", R"("dtype":"F32","shape":[2],"data_offsets":[8])"), data12),
       "a.weight", "data_offsets"},
      {"offset negative",
       file(entry("a.weight", R"("dtype":"U8","shape":[2],"data_offsets":[-2,0])"), ""), "a.weight",
       "non-negative"},
      {"offset fractional",
       file(entry("a.weight", R"("dtype":"U8","shape":[2],"data_offsets":[0,2.0])"), "xx"),
       "a.weight", "non-negative"},
      {"overlap",
       file(a + "," + entry("b.weight", R"("dtype":"F16","shape":[2],"data_offsets":[4,8])"),
            std::string(8, 'x')),
       "b.weight", "overlap"},
      {"gap",
       file(a + "," + entry("b.weight", R"("dtype":"F16","shape":[2],"data_offsets":[10,14])"),
            std::string(14, 'x')),
       "b.weight", "gap"},
      {"gap at start",
       file(entry("a.weight", R"("dtype":"U8","shape":[2],"data_offsets":[2,4])"), "xxxx"),
       "a.weight", "gap"},
      {"trailing bytes", file(a + "," + b, data12 + "zz"), nullptr, "trailing bytes"},
      {"data but no tensors", raw_safetensors("{}", "abc"), nullptr, "trailing bytes"},
      {"unknown key",
       file(entry("a.weight", R"("dtype":"F32","shape":[2],"data_offsets":[0,8],"offset":0)"),
            std::string(8, 'x')),
       "a.weight", "unknown key 'offset'"},
      {"missing key", file(entry("a.weight", R"("dtype":"F32","shape":[2])"), ""), "a.weight",
       "data_offsets"},
      {"negative dim",
       file(entry("a.weight", R"("dtype":"F32","shape":[-2],"data_offsets":[0,8])"),
            std::string(8, 'x')),
       "a.weight", "non-negative"},
      {"shape not list",
       file(entry("a.weight", R"("dtype":"F32","shape":2,"data_offsets":[0,8])"),
            std::string(8, 'x')),
       "a.weight", "shape"},
      {"shape overflows",
       file(entry("a.weight", R"("dtype":"F32","shape":[4294967296,4294967296,0],)"
                              R"("data_offsets":[0,0])"),
            ""),
       "a.weight", "too many"},
      {"bytes overflow",
       file(entry("a.weight", R"("dtype":"F64","shape":[4611686018427387904],)"
                              R"("data_offsets":[0,0])"),
            ""),
       "a.weight", "too many"},
      {"dim beyond int64",
       file(entry("a.weight", R"("dtype":"U8","shape":[18446744073709551615],)"
                              R"("data_offsets":[0,0])"),
            ""),
       "a.weight", "non-negative"},
      {"metadata not object", file(R"("__metadata__":["x"],)" + a, std::string(8, 'x')), nullptr,
       "__metadata__"},
      {"metadata value not string",
       file(R"("__metadata__":{"k":{"x":1}},)" + a, std::string(8, 'x')), nullptr, "'k'"},
  };
}

void expect_one_line_format_error(const std::filesystem::path& path, const Corruption& c) {
  try {
    SafetensorsFile::open(path);
    ADD_FAILURE() << c.label << ": no error";
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path.string()), std::string::npos) << c.label << ": " << msg;
    if (c.tensor != nullptr) {
      EXPECT_NE(msg.find(std::string("tensor '") + c.tensor + "'"), std::string::npos)
          << c.label << ": " << msg;
    }
    EXPECT_NE(msg.find(c.phrase), std::string::npos) << c.label << ": " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << c.label << ": " << msg;
  }
}

TEST(SafetensorsReader, EachCorruptionIsOneLineFormatError) {
  TempDir dir;
  int i = 0;
  for (const Corruption& c : corruptions()) {
    const auto path = dir / ("case" + std::to_string(i++) + ".safetensors");
    write_file(path, c.bytes);
    expect_one_line_format_error(path, c);
  }
}

TEST(SafetensorsReader, ControlCharactersInNamesStayOnOneLine) {
  TempDir dir;
  const auto path = dir / "evil.safetensors";
  write_file(
      path,
      raw_safetensors(
          "{" + entry("a\\nb\\u001b[31m", R"("dtype":"X","shape":[],"data_offsets":[0,0])") + "}",
          ""));
  try {
    SafetensorsFile::open(path);
    FAIL();
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\x1b'), std::string::npos) << msg;
    EXPECT_NE(msg.find("a\\x0ab\\x1b[31m"), std::string::npos) << msg;
  }
}

// Every prefix of a valid file: only FormatError, never a crash (run under ASan/UBSan in CI).
TEST(SafetensorsReader, EveryTruncationIsFormatError) {
  TempDir dir;
  const std::string good = hand_file({{"w.f32", "F32", {2, 2}, f32_bytes({1, 2, 3, 4})},
                                      {"scalar", "F16", {}, "\x00\x3c"s},
                                      {"empty", "BF16", {0}, ""},
                                      {"ids", "I64", {2}, std::string(16, '\x01')}},
                                     R"({"format":"pt"})");
  const auto path = dir / "t.safetensors";
  for (size_t n = 0; n < good.size(); ++n) {
    write_file(path, good.substr(0, n));
    EXPECT_THROW(SafetensorsFile::open(path), FormatError) << "length " << n;
  }
  write_file(path, good);
  EXPECT_NO_THROW(SafetensorsFile::open(path));
}

// Byte flips in the length field and the header: either a valid file or FormatError.
TEST(SafetensorsReader, HeaderByteFlipsNeverCrash) {
  TempDir dir;
  const std::string good = hand_file({{"model.layers.0.w", "F32", {2, 2}, f32_bytes({1, 2, 3, 4})},
                                      {"model.layers.1.w", "BF16", {3}, std::string(6, '\x3f')},
                                      {"s", "U8", {}, "z"}},
                                     R"({"format":"pt"})");
  uint64_t header_end = 8;
  for (int i = 0; i < 8; ++i)
    header_end += static_cast<uint64_t>(static_cast<uint8_t>(good[i])) << (8 * i);
  const auto path = dir / "f.safetensors";
  int accepted = 0;
  const auto try_open = [&](const std::string& bytes, const std::string& what) {
    write_file(path, bytes);
    try {
      const SafetensorsFile f = SafetensorsFile::open(path);
      // Whatever was accepted must be internally consistent and readable end to end.
      uint64_t sum = 0;
      for (const TensorInfo& t : f.tensors()) {
        const TensorView v = f.view(t);
        for (size_t k = 0; k < v.nbytes; ++k) sum += static_cast<uint8_t>(v.data[k]);
        EXPECT_EQ(static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype), t.nbytes()) << what;
      }
      (void)sum;
      ++accepted;
    } catch (const FormatError&) {
    }
  };
  const uint8_t flips[] = {0x00, 0x01, 0x20, 0x22, 0x2c, 0x30, 0x39,
                           0x5b, 0x5d, 0x7b, 0x7d, 0x80, 0xff};
  for (uint64_t pos = 0; pos < header_end; ++pos) {
    for (uint8_t value : flips) {
      std::string bytes = good;
      bytes[pos] = static_cast<char>(value);
      try_open(bytes, "byte " + std::to_string(pos) + " = " + std::to_string(value));
    }
  }
  std::mt19937 rng(12345);
  for (int round = 0; round < 3000; ++round) {
    std::string bytes = good;
    const int n = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < n; ++k) bytes[rng() % header_end] = static_cast<char>(rng() & 0xff);
    try_open(bytes, "round " + std::to_string(round));
  }
  EXPECT_GT(accepted, 0);  // e.g. flips inside the metadata value leave a valid file
}

}  // namespace
}  // namespace shoal
