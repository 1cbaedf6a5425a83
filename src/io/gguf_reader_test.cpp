// GgufFile::open against files built by hand (every metadata type, nested arrays, each supported
// tensor type, alignment padding), each way a file can be damaged (one FormatError line naming
// the file and the key or tensor), sweeps that may only ever end in FormatError (every
// truncation, random byte flips), Q8_0 against hand-computed blocks, and the real
// stories260K.gguf from llama.cpp's CI.
#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "io/gguf_test_support.h"
#include "io/test_support.h"
#include "shoal/error.h"
#include "shoal/gguf.h"

namespace shoal {
namespace {

using namespace test;  // the byte builders and the type-id constants

constexpr uint64_t kTwo60 = uint64_t{1} << 60;

// 64 Q8_0 values in two blocks: d = 0.5 (f16 0x3800) with q = j - 16, then d = 0x2e66 with
// q = 127 - 8j (127 down to -121).
std::string q8_blocks() {
  Bytes b;
  b.u16(0x3800);
  for (int j = 0; j < 32; ++j) b.i8(static_cast<int8_t>(j - 16));
  b.u16(0x2e66);
  for (int j = 0; j < 32; ++j) b.i8(static_cast<int8_t>(127 - 8 * j));
  return b;
}

// The values q8_blocks() encodes, computed by hand: 0x2e66 = 2^(11-15) * (1 + 614/1024)
// = 0.0999755859375 exactly.
std::vector<float> q8_expected() {
  std::vector<float> v;
  for (int j = 0; j < 32; ++j) v.push_back(0.5f * static_cast<float>(j - 16));
  for (int j = 0; j < 32; ++j) v.push_back(0.0999755859375f * static_cast<float>(127 - 8 * j));
  return v;
}

// A file with every metadata type and each tensor type, aligned to 64.
HandGguf full_file() {
  HandGguf g;
  g.alignment = 64;
  const std::string nested =
      array_value(kTArray, 3,
                  array_value(kTU16, 2, Bytes().u16(1).u16(65535)) +
                      array_value(kTString, 1, Bytes().str("x")) + array_value(kTBool, 0, ""));
  g.kvs = {
      kv_str("general.architecture", "test"),
      kv("v.u8", kTU8, Bytes().u8(200)),
      kv("v.i8", kTI8, Bytes().i8(-5)),
      kv("v.u16", kTU16, Bytes().u16(65535)),
      kv("v.i16", kTI16, Bytes().i16(-300)),
      kv("v.u32", kTU32, Bytes().u32(4000000000u)),
      kv("v.i32", kTI32, Bytes().i32(-2000000000)),
      kv("v.f32", kTF32, Bytes().f32(1.5f)),
      kv("v.bool", kTBool, Bytes().u8(1)),
      kv("v.false", kTBool, Bytes().u8(0)),
      kv_str("v.str", "h\xc3\xa9llo"),
      kv("v.u64", kTU64, Bytes().u64((uint64_t{1} << 63) + 5)),
      kv("v.i64", kTI64, Bytes().i64(-(int64_t{1} << 40))),
      kv("v.f64", kTF64, Bytes().f64(0.1)),
      kv_u32("general.alignment", 64),
      kv_strings("a.strings", {"a", "", "ccc"}),
      kv("a.i32", kTArray, array_value(kTI32, 3, Bytes().i32(1).i32(-2).i32(3))),
      kv("a.nested", kTArray, nested),
      kv("a.empty", kTArray, array_value(kTF64, 0, "")),
  };
  g.tensors = {
      {"w.f32", kGgmlF32, {3, 2}, test::f32_series(6, 1.f, 1.f)},
      {"w.f16", kGgmlF16, {4}, Bytes().u16(0x3c00).u16(0x4000).u16(0xc000).u16(0x3800)},
      {"w.bf16", kGgmlBF16, {2, 2}, Bytes().u16(0x3f80).u16(0x4040).u16(0xbf80).u16(0)},
      {"w.q8", kGgmlQ8_0, {32, 2}, q8_blocks()},
  };
  return g;
}

std::string view_bytes(const TensorView& v) {
  return std::string(reinterpret_cast<const char*>(v.data), v.nbytes);
}

TEST(GgufReader, ValidFileEveryMetadataTypeAndTensorType) {
  TempDir dir;
  const HandGguf g = full_file();
  write_file(dir / "m.gguf", g.build());
  const GgufFile f = GgufFile::open(dir / "m.gguf");

  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.path(), dir / "m.gguf");
  ASSERT_EQ(f.metadata().size(), g.kvs.size());
  EXPECT_EQ(f.metadata()[0].first, "general.architecture");
  EXPECT_EQ(f.metadata()[14].first, "general.alignment");
  EXPECT_EQ(f.metadata().back().first, "a.empty");

  EXPECT_EQ(f.get_string("general.architecture"), "test");
  EXPECT_EQ(f.get_int("v.u8"), 200);
  EXPECT_EQ(f.get_int("v.i8"), -5);
  EXPECT_EQ(f.get_int("v.u16"), 65535);
  EXPECT_EQ(f.get_int("v.i16"), -300);
  EXPECT_EQ(f.get_int("v.u32"), 4000000000);
  EXPECT_EQ(f.get_int("v.i32"), -2000000000);
  EXPECT_EQ(f.get_float("v.f32"), 1.5);
  EXPECT_EQ(f.get_bool("v.bool"), true);
  EXPECT_EQ(f.get_bool("v.false"), false);
  EXPECT_EQ(f.get_string("v.str"), "h\xc3\xa9llo");
  EXPECT_EQ(std::get<uint64_t>(*f.find("v.u64")), (uint64_t{1} << 63) + 5);
  EXPECT_EQ(f.get_int("v.i64"), -(int64_t{1} << 40));
  EXPECT_EQ(f.get_float("v.f64"), 0.1);
  EXPECT_EQ(f.get_float("v.u32"), 4e9);  // integers read as floats
  EXPECT_EQ(f.get_float("v.i8"), -5.0);
  EXPECT_EQ(f.get_int("general.alignment"), 64);

  const GgufArray* strings = f.get_array("a.strings");
  ASSERT_NE(strings, nullptr);
  EXPECT_EQ(strings->type, GgufValueType::kString);
  ASSERT_EQ(strings->values.size(), 3u);
  EXPECT_EQ(std::get<std::string>(strings->values[0]), "a");
  EXPECT_EQ(std::get<std::string>(strings->values[1]), "");
  EXPECT_EQ(std::get<std::string>(strings->values[2]), "ccc");
  const GgufArray* ints = f.get_array("a.i32");
  ASSERT_NE(ints, nullptr);
  EXPECT_EQ(ints->type, GgufValueType::kI32);
  EXPECT_EQ(std::get<int64_t>(ints->values[1]), -2);
  const GgufArray* nested = f.get_array("a.nested");
  ASSERT_NE(nested, nullptr);
  EXPECT_EQ(nested->type, GgufValueType::kArray);
  ASSERT_EQ(nested->values.size(), 3u);
  const auto& inner0 = *std::get<std::shared_ptr<const GgufArray>>(nested->values[0]);
  EXPECT_EQ(inner0.type, GgufValueType::kU16);
  ASSERT_EQ(inner0.values.size(), 2u);
  EXPECT_EQ(std::get<uint64_t>(inner0.values[1]), 65535u);
  const auto& inner1 = *std::get<std::shared_ptr<const GgufArray>>(nested->values[1]);
  EXPECT_EQ(std::get<std::string>(inner1.values.at(0)), "x");
  const auto& inner2 = *std::get<std::shared_ptr<const GgufArray>>(nested->values[2]);
  EXPECT_EQ(inner2.type, GgufValueType::kBool);
  EXPECT_TRUE(inner2.values.empty());
  ASSERT_NE(f.get_array("a.empty"), nullptr);
  EXPECT_TRUE(f.get_array("a.empty")->values.empty());

  EXPECT_EQ(f.find("absent"), nullptr);
  EXPECT_EQ(f.get_int("absent"), std::nullopt);
  EXPECT_EQ(f.get_string("absent"), std::nullopt);
  EXPECT_EQ(f.get_array("absent"), nullptr);

  ASSERT_EQ(f.tensors().size(), 4u);
  const std::vector<std::vector<int64_t>> shapes = {{2, 3}, {4}, {2, 2}, {2, 32}};
  const std::vector<GgmlType> types = {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16,
                                       GgmlType::kQ8_0};
  const std::vector<DType> view_types = {DType::kF32, DType::kF16, DType::kBF16, DType::kU8};
  for (size_t i = 0; i < 4; ++i) {
    const GgufTensorInfo& t = f.tensors()[i];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.name, g.tensors[i].name);
    EXPECT_EQ(t.type, types[i]);
    EXPECT_EQ(t.shape, shapes[i]);  // ggml dims reversed
    EXPECT_EQ(t.offset, 64u * i);   // padded to the file's alignment of 64
    EXPECT_EQ(t.nbytes, g.tensors[i].data.size());
    EXPECT_EQ(f.find_tensor(t.name), &t);
    const TensorView v = f.raw_view(t);
    EXPECT_EQ(v.dtype, view_types[i]);
    EXPECT_EQ(static_cast<size_t>(v.numel()) * dtype_size(v.dtype), v.nbytes);
    EXPECT_EQ(view_bytes(v), g.tensors[i].data);
  }
  EXPECT_EQ(f.raw_view(f.tensors()[3]).shape, (std::vector<int64_t>{2, 34}));  // bytes per row
  EXPECT_EQ(f.find_tensor("absent"), nullptr);

  std::vector<float> deq(64);
  const TensorView q = f.raw_view(*f.find_tensor("w.q8"));
  dequantize_q8_0(q.data, deq.data(), 64);
  EXPECT_EQ(deq, q8_expected());
}

TEST(GgufReader, VersionTwoDefaultAlignmentAndNoTensors) {
  TempDir dir;
  HandGguf g;
  g.version = 2;
  g.kvs = {kv_str("general.name", "v2")};
  g.tensors = {{"a", kGgmlF32, {3}, test::f32_series(3, 0.f, 1.f)},
               {"b", kGgmlF32, {5}, test::f32_series(5, 10.f, 1.f)}};
  write_file(dir / "v2.gguf", g.build());
  const GgufFile f = GgufFile::open(dir / "v2.gguf");
  EXPECT_EQ(f.version(), 2u);
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[1].offset, 32u);  // the default alignment
  EXPECT_EQ(view_bytes(f.raw_view(f.tensors()[1])), g.tensors[1].data);

  // Metadata only: the data section may be absent altogether.
  write_file(dir / "empty.gguf",
             Bytes().raw("GGUF").u32(3).u64(0).u64(1).raw(kv_str("general.name", "no tensors")));
  const GgufFile e = GgufFile::open(dir / "empty.gguf");
  EXPECT_TRUE(e.tensors().empty());
  EXPECT_EQ(e.get_string("general.name"), "no tensors");
}

TEST(GgufReader, TypedGettersNameTheKeyOnTypeMismatch) {
  TempDir dir;
  write_file(dir / "m.gguf", full_file().build());
  const GgufFile f = GgufFile::open(dir / "m.gguf");
  auto expect_error = [&](auto&& call, const std::string& needle) {
    try {
      call();
      ADD_FAILURE() << "no error for " << needle;
    } catch (const FormatError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find((dir / "m.gguf").string()), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  };
  expect_error([&] { (void)f.get_string("v.u8"); },
               "key 'v.u8' is an unsigned integer, expected a string");
  expect_error([&] { (void)f.get_int("v.str"); }, "key 'v.str' is a string, expected an integer");
  expect_error([&] { (void)f.get_int("v.f32"); }, "key 'v.f32' is a float");
  expect_error([&] { (void)f.get_int("v.u64"); },
               "key 'v.u64' value 9223372036854775813 is too large");
  expect_error([&] { (void)f.get_float("a.i32"); }, "key 'a.i32' is an array");
  expect_error([&] { (void)f.get_bool("v.u8"); }, "key 'v.u8'");
  expect_error([&] { (void)f.get_array("v.bool"); }, "key 'v.bool' is a bool, expected an array");
}

// Writes `bytes`, opens it, and expects one FormatError line naming the file and each needle.
void expect_format_error(const TempDir& dir, const std::string& bytes,
                         const std::vector<std::string>& needles) {
  const auto path = dir / "bad.gguf";
  write_file(path, bytes);
  try {
    (void)GgufFile::open(path);
    ADD_FAILURE() << "no error; expected: " << needles.at(0);
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind(path.string() + ": ", 0), 0u) << msg;
    for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << msg;
  }
}

// A small valid file to damage: one key, one F32 tensor.
HandGguf small_file() {
  HandGguf g;
  g.kvs = {kv_str("general.architecture", "llama")};
  g.tensors = {{"w", kGgmlF32, {4}, test::f32_series(4, 1.f, 1.f)}};
  return g;
}

TEST(GgufReader, HeaderErrors) {
  TempDir dir;
  std::string bytes = small_file().build();
  bytes[3] = 'X';
  expect_format_error(dir, bytes, {"magic 'GGUX'", "not a GGUF file"});
  for (uint32_t version : {0u, 1u, 4u}) {
    HandGguf g = small_file();
    g.version = version;
    expect_format_error(
        dir, g.build(),
        {"GGUF version " + std::to_string(version) + " is not supported", "versions 2 and 3"});
  }
  HandGguf be = small_file();
  be.version = 0x03000000;
  expect_format_error(dir, be.build(), {"big-endian"});
  expect_format_error(dir, Bytes().raw("GGUF").u32(3).u64(0).u64(uint64_t{1} << 62),
                      {"metadata count 4611686018427387904 exceeds"});
  expect_format_error(dir, Bytes().raw("GGUF").u32(3).u64(uint64_t{1} << 62).u64(0),
                      {"tensor count 4611686018427387904 exceeds"});
  // Counts a little past the entries that are there.
  expect_format_error(
      dir,
      Bytes().raw("GGUF").u32(3).u64(0).u64(2).raw(kv_str("general.name", std::string(40, 'n'))),
      {"metadata entry 1", "key length needs 8 bytes"});
  // Tensor count 2 with one tensor info: the second is read from the zero padding.
  std::string b = small_file().build();
  b[8] = 2;
  expect_format_error(dir, b, {"tensor ''", "n_dims 0"});
}

TEST(GgufReader, TruncatedAtEveryLength) {
  TempDir dir;
  const std::string full = full_file().build();
  for (size_t n = 0; n < full.size(); ++n) {
    SCOPED_TRACE(n);
    expect_format_error(dir, full.substr(0, n), {});
  }
}

TEST(GgufReader, MetadataErrorsNameTheKey) {
  TempDir dir;
  auto with_kv = [](const std::string& entry) {
    HandGguf g = small_file();
    g.kvs.push_back(entry);
    return g.build();
  };
  // Lengths and counts past the end, refused before anything is reserved.
  expect_format_error(dir, with_kv(Bytes().u64(uint64_t{1} << 40).raw("abc")),
                      {"metadata entry 1", "key length of 1099511627776 bytes", "exceeds"});
  expect_format_error(dir, with_kv(kv("k.s", kTString, Bytes().u64(100000).raw("ab"))),
                      {"key 'k.s'", "string length of 100000 bytes", "exceeds"});
  expect_format_error(dir, with_kv(kv("k.a", kTArray, Bytes().u32(kTU8).u64(kTwo60))),
                      {"key 'k.a'", "array count 1152921504606846976 exceeds"});
  expect_format_error(dir, with_kv(kv("k.a", kTArray, Bytes().u32(kTString).u64(kTwo60))),
                      {"key 'k.a'", "array count 1152921504606846976"});
  expect_format_error(
      dir,
      with_kv(kv("k.n", kTArray,
                 Bytes().u32(kTArray).u64(2).raw(array_value(kTU8, 0, "")).u32(kTU8).u64(kTwo60))),
      {"key 'k.n' element 1", "array count 1152921504606846976"});
  expect_format_error(
      dir, with_kv(kv("k.e", kTArray, array_value(kTString, 3, Bytes().str("a").u64(99999)))),
      {"key 'k.e' element 1", "string length of 99999 bytes"});
  // Types.
  expect_format_error(dir, with_kv(kv("k.x", 13, Bytes().u32(0))),
                      {"key 'k.x'", "unknown value type 13"});
  expect_format_error(dir, with_kv(kv("k.y", kTArray, Bytes().u32(99).u64(0))),
                      {"key 'k.y'", "unknown array element type 99"});
  expect_format_error(dir, with_kv(kv("k.b", kTBool, Bytes().u8(2))),
                      {"key 'k.b'", "bool value 2"});
  // Nesting deeper than any real file.
  std::string deep = array_value(kTU8, 0, "");
  for (int i = 0; i < 9; ++i) deep = array_value(kTArray, 1, deep);
  expect_format_error(dir, with_kv(kv("k.deep", kTArray, deep)), {"key 'k.deep'", "nested"});
  // Duplicates and alignment.
  expect_format_error(dir, with_kv(kv_str("general.architecture", "again")),
                      {"key 'general.architecture'", "duplicate key"});
  expect_format_error(dir, with_kv(kv_u32("general.alignment", 48)),
                      {"key 'general.alignment'", "alignment 48 is not a power of two"});
  expect_format_error(dir, with_kv(kv_u32("general.alignment", 0)),
                      {"key 'general.alignment'", "alignment 0"});
  expect_format_error(dir, with_kv(kv("general.alignment", kTU64, Bytes().u64(32))),
                      {"key 'general.alignment'", "expected 4 (u32)"});
}

TEST(GgufReader, TensorErrorsNameTheTensor) {
  TempDir dir;
  auto with_tensor = [](HandGgufTensor t) {
    HandGguf g = small_file();
    g.tensors.push_back(std::move(t));
    return g.build();
  };
  const std::string four = test::f32_series(4, 0.f, 1.f);
  expect_format_error(
      dir, with_tensor({"q4", kGgmlQ4_0, {32}, std::string(18, '\0')}),
      {"tensor 'q4'", "ggml type 2 (Q4_0) is not supported", "F32, F16, BF16 and Q8_0"});
  expect_format_error(dir, with_tensor({"odd", 12345, {4}, four}),
                      {"tensor 'odd'", "ggml type 12345 (unknown)"});
  expect_format_error(dir, with_tensor({"d0", kGgmlF32, {}, four}),
                      {"tensor 'd0'", "n_dims 0, expected 1 to 4"});
  expect_format_error(dir, with_tensor({"d5", kGgmlF32, {1, 1, 1, 1, 4}, four}),
                      {"tensor 'd5'", "n_dims 5"});
  expect_format_error(dir, with_tensor({"z", kGgmlF32, {4, 0}, four}),
                      {"tensor 'z'", "dims [4, 0] must be between 1 and"});
  expect_format_error(dir, with_tensor({"neg", kGgmlF32, {4, ~uint64_t{0}}, four}),
                      {"tensor 'neg'", "must be between 1 and"});
  expect_format_error(dir,
                      with_tensor({"big", kGgmlF32, {uint64_t{1} << 32, uint64_t{1} << 32}, four}),
                      {"tensor 'big'", "too many elements"});
  expect_format_error(dir, with_tensor({"huge", kGgmlF32, {uint64_t{1} << 62}, four}),
                      {"tensor 'huge'", "too many bytes"});
  expect_format_error(dir, with_tensor({"q8", kGgmlQ8_0, {48, 1}, std::string(68, '\0')}),
                      {"tensor 'q8'", "row length 48", "block size 32"});
  expect_format_error(dir, with_tensor({"w", kGgmlF32, {4}, four}),
                      {"tensor 'w'", "duplicate tensor name"});
  expect_format_error(dir, with_tensor({"mis", kGgmlF32, {4}, four, 40}),
                      {"tensor 'mis'", "data offset 40 is not a multiple of the alignment 32"});
  expect_format_error(dir, with_tensor({"far", kGgmlF32, {4}, "", uint64_t{1} << 40}),
                      {"tensor 'far'", "runs past the end"});
  expect_format_error(dir, with_tensor({"wrap", kGgmlF32, {16}, "", ~uint64_t{31}}),
                      {"tensor 'wrap'", "runs past the end"});
  expect_format_error(dir, with_tensor({"long", kGgmlF32, {9}, four, 32}),
                      {"tensor 'long'", "runs past the end"});
  expect_format_error(dir, with_tensor({"over", kGgmlF32, {4}, four, 0}),
                      {"tensor 'over'", "overlaps tensor 'w'"});
  // The alignment a file states applies to its offsets too.
  HandGguf g = small_file();
  g.kvs.push_back(kv_u32("general.alignment", 64));
  g.alignment = 64;
  g.tensors.push_back({"at32", kGgmlF32, {4}, four, 32});
  expect_format_error(dir, g.build(), {"tensor 'at32'", "not a multiple of the alignment 64"});
  // A tensor name that runs off the end.
  HandGguf name = small_file();
  std::string bytes = name.build();
  const size_t at = bytes.find("\x01\0\0\0\0\0\0\0w", 0, 9);
  ASSERT_NE(at, std::string::npos);
  bytes[at] = 0x7f;
  expect_format_error(dir, bytes, {"tensor info 0", "name length of 127 bytes"});
}

TEST(GgufReader, RandomByteFlipsOnlyEverFailCleanly) {
  TempDir dir;
  const std::string full = full_file().build();
  const size_t header_bytes = full.find("\0\0\x80\x3f", 0, 4);  // about where the data starts
  std::mt19937 rng(1234);
  std::uniform_int_distribution<size_t> pos(0, std::min(header_bytes, full.size()) - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  int opened = 0;
  for (int i = 0; i < 1500; ++i) {
    std::string bytes = full;
    for (int k = 0; k < 1 + i % 3; ++k) bytes[pos(rng)] = static_cast<char>(byte(rng));
    write_file(dir / "flip.gguf", bytes);
    try {
      (void)GgufFile::open(dir / "flip.gguf");
      ++opened;
    } catch (const FormatError& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    }
  }
  EXPECT_GT(opened, 0);  // flips inside values leave a valid file
  EXPECT_LT(opened, 1500);
}

TEST(GgufReader, DequantizeQ8_0MatchesHandComputedBlocks) {
  const std::string blocks = q8_blocks();
  std::vector<float> out(64, -1.f);
  dequantize_q8_0(blocks.data(), out.data(), 64);
  EXPECT_EQ(out, q8_expected());
  EXPECT_EQ(out[0], -8.f);                        // 0.5 * -16
  EXPECT_EQ(out[32], 0.0999755859375f * 127.f);   // first q of block 2
  EXPECT_EQ(out[63], 0.0999755859375f * -121.f);  // last q of block 2
}

TEST(GgufReader, Stories260KFromLlamaCppCi) {
  const auto path = test::shared_data_dir() / "stories260k" / "stories260K.gguf";
  ASSERT_TRUE(std::filesystem::exists(path))
      << path << " is missing: set SHOAL_SHARED_DATA to the folder holding stories260k/";
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 5);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 64);
  EXPECT_EQ(f.get_int("llama.feed_forward_length"), 172);
  EXPECT_EQ(f.get_int("llama.attention.head_count"), 8);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(f.get_int("llama.context_length"), 2048);
  EXPECT_EQ(f.get_float("llama.attention.layer_norm_rms_epsilon"), static_cast<double>(1e-5f));
  EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(f.get_int("tokenizer.ggml.padding_token_id"), 4294967295);  // u32 -1
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");
  const GgufArray* tokens = f.get_array("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->type, GgufValueType::kString);
  ASSERT_EQ(tokens->values.size(), 512u);
  EXPECT_EQ(std::get<std::string>(tokens->values[1]), "<s>");
  EXPECT_EQ(std::get<std::string>(tokens->values[3]), "<0x00>");
  EXPECT_EQ(f.get_array("tokenizer.ggml.scores")->type, GgufValueType::kF32);
  EXPECT_EQ(f.get_array("tokenizer.ggml.token_type")->values.size(), 512u);

  std::vector<std::string> want = {"token_embd.weight", "output_norm.weight", "output.weight"};
  for (int l = 0; l < 5; ++l) {
    for (const char* part : {"attn_q", "attn_k", "attn_v", "attn_output", "attn_norm", "ffn_gate",
                             "ffn_down", "ffn_up", "ffn_norm"}) {
      want.push_back("blk." + std::to_string(l) + "." + part + ".weight");
    }
  }
  std::vector<std::string> names;
  for (const GgufTensorInfo& t : f.tensors()) {
    names.push_back(t.name);
    EXPECT_EQ(t.type, GgmlType::kF32) << t.name;
  }
  EXPECT_EQ(names, want);
  EXPECT_EQ(f.find_tensor("token_embd.weight")->shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(f.find_tensor("output_norm.weight")->shape, (std::vector<int64_t>{64}));
  EXPECT_EQ(f.find_tensor("blk.0.attn_k.weight")->shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(f.find_tensor("blk.4.ffn_down.weight")->shape, (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(f.find_tensor("blk.4.ffn_up.weight")->shape, (std::vector<int64_t>{172, 64}));
  EXPECT_EQ(f.find_tensor("blk.4.ffn_norm.weight")->offset, 1170944u);
}

}  // namespace
}  // namespace shoal
