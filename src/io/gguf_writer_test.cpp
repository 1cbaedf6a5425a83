// GgufWriter against files built byte by byte from the published layout (gguf_test_support.h):
// every metadata type (nested arrays included), each tensor type, general.alignment, tensors
// written out of order from many threads, the temporary name and the rename, and the errors.
// Q8_0 quantisation against blocks computed by hand from llama.cpp's reference rounding. The
// llama-family name and Q/K row maps against hand-written tables.
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "io/gguf_arch.h"
#include "io/gguf_test_support.h"
#include "io/test_support.h"
#include "shoal/error.h"
#include "shoal/gguf.h"

namespace shoal {
namespace {

using namespace test;
namespace fs = std::filesystem;

std::shared_ptr<const GgufArray> array(GgufValueType type, std::vector<GgufValue> values) {
  auto a = std::make_shared<GgufArray>();
  a->type = type;
  a->values = std::move(values);
  return a;
}

// The same file twice: as GgufKv / GgufTensorSpec for the writer and byte by byte.
struct Pair {
  std::vector<GgufKv> kvs;
  std::vector<GgufTensorSpec> specs;
  std::vector<std::string> data;
  HandGguf hand;
};

Pair every_type(uint32_t alignment) {
  Pair p;
  using T = GgufValueType;
  p.kvs = {
      GgufKv::str("general.architecture", "test"),
      {"v.u8", T::kU8, uint64_t{200}},
      {"v.i8", T::kI8, int64_t{-5}},
      {"v.u16", T::kU16, uint64_t{65535}},
      {"v.i16", T::kI16, int64_t{-300}},
      GgufKv::u32("v.u32", 4000000000u),
      GgufKv::i32("v.i32", -2000000000),
      GgufKv::f32("v.f32", 1.5f),
      GgufKv::boolean("v.bool", true),
      GgufKv::str("v.str", "h\xc3\xa9llo"),
      GgufKv::u64("v.u64", (uint64_t{1} << 63) + 5),
      {"v.i64", T::kI64, -(int64_t{1} << 40)},
      {"v.f64", T::kF64, 0.1},
      GgufKv::u32("general.alignment", alignment),
      GgufKv::strings("a.strings", {"a", "", "ccc"}),
      GgufKv::i32s("a.i32", {1, -2, 3}),
      GgufKv::f32s("a.f32", {0.5f, -2.0f}),
      {"a.nested", T::kArray,
       array(T::kArray, {array(T::kU16, {uint64_t{1}, uint64_t{65535}}),
                         array(T::kString, {std::string("x")}), array(T::kBool, {})})},
  };
  const std::string nested =
      array_value(kTArray, 3,
                  array_value(kTU16, 2, Bytes().u16(1).u16(65535)) +
                      array_value(kTString, 1, Bytes().str("x")) + array_value(kTBool, 0, ""));
  p.hand.alignment = alignment;
  p.hand.kvs = {
      kv_str("general.architecture", "test"),
      kv("v.u8", kTU8, Bytes().u8(200)),
      kv("v.i8", kTI8, Bytes().i8(-5)),
      kv("v.u16", kTU16, Bytes().u16(65535)),
      kv("v.i16", kTI16, Bytes().i16(-300)),
      kv("v.u32", kTU32, Bytes().u32(4000000000u)),
      kv("v.i32", kTI32, Bytes().i32(-2000000000)),
      kv("v.f32", kTF32, Bytes().f32(1.5f)),
      kv("v.bool", kTBool, Bytes().u8(1)),
      kv_str("v.str", "h\xc3\xa9llo"),
      kv("v.u64", kTU64, Bytes().u64((uint64_t{1} << 63) + 5)),
      kv("v.i64", kTI64, Bytes().i64(-(int64_t{1} << 40))),
      kv("v.f64", kTF64, Bytes().f64(0.1)),
      kv_u32("general.alignment", alignment),
      kv_strings("a.strings", {"a", "", "ccc"}),
      kv("a.i32", kTArray, array_value(kTI32, 3, Bytes().i32(1).i32(-2).i32(3))),
      kv("a.f32", kTArray, array_value(kTF32, 2, Bytes().f32(0.5f).f32(-2.0f))),
      kv("a.nested", kTArray, nested),
  };
  Bytes q8;
  for (int b = 0; b < 2; ++b) {
    q8.u16(0x3800);
    for (int j = 0; j < 32; ++j) q8.i8(static_cast<int8_t>(j - 16 + b));
  }
  p.specs = {{"w.f32", GgmlType::kF32, {2, 3}},
             {"w.f16", GgmlType::kF16, {4}},
             {"w.bf16", GgmlType::kBF16, {2, 1, 1, 2}},
             {"w.q8", GgmlType::kQ8_0, {2, 32}}};
  p.data = {f32_series(6, 1.f, 1.f), Bytes().u16(0x3c00).u16(0x4000).u16(0xc000).u16(0x3800),
            Bytes().u16(0x3f80).u16(0x4040).u16(0xbf80).u16(0), q8};
  p.hand.tensors = {{"w.f32", kGgmlF32, {3, 2}, p.data[0]},
                    {"w.f16", kGgmlF16, {4}, p.data[1]},
                    {"w.bf16", kGgmlBF16, {2, 1, 1, 2}, p.data[2]},
                    {"w.q8", kGgmlQ8_0, {32, 2}, p.data[3]}};
  return p;
}

TEST(GgufWriter, MatchesTheHandBuiltFileForEveryTypeAndAlignment) {
  TempDir dir;
  for (uint32_t alignment : {1u, 8u, 32u, 64u}) {
    SCOPED_TRACE(alignment);
    const Pair p = every_type(alignment);
    const fs::path path = dir / ("out" + std::to_string(alignment) + ".gguf");
    {
      GgufWriter w(path, p.kvs, p.specs);
      EXPECT_TRUE(fs::exists(w.temp_path()));
      EXPECT_FALSE(fs::exists(path));
      // Out of order, in two pieces each, from several threads.
      std::vector<std::thread> threads;
      for (size_t i = p.specs.size(); i-- > 0;) {
        threads.emplace_back([&, i] {
          const std::string& d = p.data[i];
          const size_t half = d.size() / 2;
          w.write(i, half, d.data() + half, d.size() - half);
          w.write(i, 0, d.data(), half);
        });
      }
      for (auto& t : threads) t.join();
      EXPECT_EQ(w.tensor_nbytes(3), 68u);
      w.finish();
      EXPECT_FALSE(fs::exists(w.temp_path()));
    }
    std::string want = p.hand.build();
    want.resize((want.size() + alignment - 1) / alignment * alignment, '\0');  // tail padding
    EXPECT_EQ(read_file(path), want);
    const GgufFile f = GgufFile::open(path);  // and the reader agrees
    EXPECT_EQ(f.value_type("v.i16"), GgufValueType::kI16);
    EXPECT_EQ(f.value_type("a.nested"), GgufValueType::kArray);
    EXPECT_EQ(f.value_type("absent"), std::nullopt);
    EXPECT_EQ(f.find_tensor("w.bf16")->shape, (std::vector<int64_t>{2, 1, 1, 2}));
  }
}

TEST(GgufWriter, UnfinishedOrIncompleteWritesLeaveNothing) {
  TempDir dir;
  const Pair p = every_type(32);
  const fs::path path = dir / "out.gguf";
  fs::path temp;
  {
    GgufWriter w(path, p.kvs, p.specs);
    temp = w.temp_path();
    EXPECT_EQ(temp.parent_path(), path.parent_path());
    EXPECT_TRUE(temp.filename().string().starts_with(".out.gguf.shoal-tmp-"));
  }
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_FALSE(fs::exists(path));

  GgufWriter w(path, p.kvs, p.specs);
  for (size_t i = 0; i < 3; ++i) w.write(i, 0, p.data[i].data(), p.data[i].size());
  w.write(3, 0, p.data[3].data(), 10);
  try {
    w.finish();
    ADD_FAILURE() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'w.q8': 10 bytes were written, expected 68"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(path));
}

void expect_config_error(std::vector<GgufKv> kvs, std::vector<GgufTensorSpec> specs,
                         const std::string& needle) {
  TempDir dir;
  try {
    GgufWriter w(dir / "x.gguf", std::move(kvs), std::move(specs));
    ADD_FAILURE() << "no error; expected " << needle;
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(GgufWriter, BadSpecsAreOneLineConfigErrors) {
  using T = GgufValueType;
  expect_config_error({GgufKv::u32("a", 1), GgufKv::u32("a", 2)}, {}, "key 'a' is given twice");
  expect_config_error({{"k", T::kU8, uint64_t{256}}}, {}, "key 'k': 256 is out of range [0, 255]");
  expect_config_error({{"k", T::kI8, int64_t{-129}}}, {}, "key 'k': -129 is out of range");
  expect_config_error({{"k", T::kString, uint64_t{1}}}, {}, "key 'k': expected a string");
  expect_config_error({{"k", T::kArray, array(T::kU8, {uint64_t{1}, std::string("x")})}}, {},
                      "key 'k' element 1: expected an integer");
  expect_config_error({GgufKv::u32("general.alignment", 24)}, {}, "power of two");
  expect_config_error({{"general.alignment", T::kU64, uint64_t{32}}}, {}, "u32 power of two");
  expect_config_error({}, {{"t", GgmlType::kF32, {2}}, {"t", GgmlType::kF32, {2}}},
                      "tensor 't' is listed twice");
  expect_config_error({}, {{"q", GgmlType::kQ8_0, {2, 48}}},
                      "tensor 'q' of shape [2, 48] cannot be stored as Q8_0");
  expect_config_error({}, {{"t", GgmlType::kF32, {1, 1, 1, 1, 1}}}, "has 5 dims, expected 1 to 4");
  expect_config_error({}, {{"t", GgmlType::kF32, {}}}, "has 0 dims");
}

// Hand-computed Q8_0 blocks (llama.cpp's quantize_row_q8_0_ref): d = amax / 127, q = roundf(x/d).
TEST(GgufQuant, Q8_0MatchesTheReferenceRounding) {
  std::vector<float> x(96);
  // Block 0: amax 127 -> d = 1 (f16 0x3c00), id = 1: halves round away from zero.
  const float halves[] = {0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -2.5f, 126.5f, -127.0f, 127.0f, 0.49f};
  for (int j = 0; j < 32; ++j) x[j] = j < 10 ? halves[j] : static_cast<float>(j) - 16.0f;
  // Block 1: all zero -> d = 0, q = 0.
  // Block 2: amax 1 -> d = 1/127 (f32 0x3c010204, f16 0x2008 after rounding to nearest even),
  // id = 1/d rounds to 127 in f32, so 0.5 -> 63.5 -> 64 (halves away from zero).
  for (int j = 0; j < 32; ++j) x[64 + j] = j == 0 ? 1.0f : j == 1 ? -1.0f : j == 2 ? 0.5f : 0.0f;
  std::vector<unsigned char> out(3 * 34);
  quantize_q8_0(x.data(), out.data(), 96);

  const auto scale = [&](int b) {
    return static_cast<uint16_t>(out[b * 34] | out[b * 34 + 1] << 8);
  };
  const auto q = [&](int b, int j) { return static_cast<int8_t>(out[b * 34 + 2 + j]); };
  EXPECT_EQ(scale(0), 0x3c00);
  const int want0[] = {1, -1, 2, -2, 3, -3, 127, -127, 127, 0};
  for (int j = 0; j < 10; ++j) EXPECT_EQ(q(0, j), want0[j]) << j;
  for (int j = 10; j < 32; ++j) EXPECT_EQ(q(0, j), j - 16) << j;
  EXPECT_EQ(scale(1), 0);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(q(1, j), 0);
  EXPECT_EQ(scale(2), 0x2008);
  EXPECT_EQ(q(2, 0), 127);
  EXPECT_EQ(q(2, 1), -127);
  EXPECT_EQ(q(2, 2), 64);
  for (int j = 3; j < 32; ++j) EXPECT_EQ(q(2, j), 0);
}

TEST(GgufArch, NamesMapBothWays) {
  const std::pair<const char*, const char*> pairs[] = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
      {"blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"},
      {"blk.11.attn_q.weight", "model.layers.11.self_attn.q_proj.weight"},
      {"blk.11.attn_q.bias", "model.layers.11.self_attn.q_proj.bias"},
      {"blk.3.attn_k_norm.weight", "model.layers.3.self_attn.k_norm.weight"},
      {"blk.3.attn_output.weight", "model.layers.3.self_attn.o_proj.weight"},
      {"blk.3.ffn_norm.weight", "model.layers.3.post_attention_layernorm.weight"},
      {"blk.3.ffn_down.weight", "model.layers.3.mlp.down_proj.weight"},
  };
  for (const auto& [gguf, hf] : pairs) {
    EXPECT_EQ(io::gguf_to_hf_name(gguf), hf);
    EXPECT_EQ(io::hf_to_gguf_name(hf), gguf);
  }
  EXPECT_EQ(io::hf_to_gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"), std::nullopt);
  EXPECT_EQ(io::hf_to_gguf_name("model.layers.01.mlp.up_proj.weight"), std::nullopt);
  EXPECT_EQ(io::hf_to_gguf_name("lm_head.scale"), std::nullopt);
  EXPECT_EQ(io::gguf_to_hf_name("blk.0.ffn_gate_exps.weight"), "blk.0.ffn_gate_exps.weight");
  EXPECT_EQ(io::qk_kind("model.layers.2.self_attn.k_proj.bias"), io::QkKind::kK);
  EXPECT_EQ(io::qk_kind("model.layers.2.self_attn.q_norm.weight"), io::QkKind::kNone);
}

TEST(GgufArch, QkRowsInterleaveEachHeadsHalves) {
  // Two heads of 6 rows: HF rows (0 1 2 | 3 4 5) of a head become (0 3 1 4 2 5).
  const int64_t want[] = {0, 2, 4, 1, 3, 5, 6, 8, 10, 7, 9, 11};
  for (int64_t r = 0; r < 12; ++r) EXPECT_EQ(io::gguf_qk_row(r, 12, 2), want[r]) << r;
  std::vector<std::byte> hf(12 * 3), gg(12 * 3), back(12 * 3);
  for (size_t i = 0; i < hf.size(); ++i) hf[i] = static_cast<std::byte>(i);
  io::permute_qk_rows(hf.data(), gg.data(), 12, 3, 2, true);
  EXPECT_EQ(gg[3 * 2], hf[3 * 1]);  // GGUF row 2 is HF row 1
  io::permute_qk_rows(gg.data(), back.data(), 12, 3, 2, false);
  EXPECT_EQ(back, hf);
}

}  // namespace
}  // namespace shoal
