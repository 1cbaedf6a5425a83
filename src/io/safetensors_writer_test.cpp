// SafetensorsWriter: round trips through the reader, shard planning and the index file, writes
// in any order from many threads, and the checks at finish().
#include <algorithm>
#include <cstring>
#include <random>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "io/test_support.h"
#include "shoal/error.h"
#include "shoal/safetensors.h"

namespace shoal {
namespace {

using test::read_file;
using test::TempDir;

// Deterministic distinct content for tensor i.
std::string content(size_t i, uint64_t n) {
  std::string s(n, '\0');
  for (uint64_t k = 0; k < n; ++k) s[k] = static_cast<char>((i * 31 + k * 7 + 3) & 0xff);
  return s;
}

void write_all(SafetensorsWriter& w) {
  for (size_t i = 0; i < w.tensors().size(); ++i) {
    const std::string c = content(i, w.tensors()[i].nbytes());
    w.write(i, 0, c.data(), c.size());
  }
}

// Reads every tensor back through the reader and compares with content(); returns the file each
// tensor was found in.
std::map<std::string, std::string> check_round_trip(const std::filesystem::path& dir,
                                                    const std::vector<OutputTensorSpec>& specs,
                                                    const std::vector<std::string>& files) {
  std::map<std::string, std::string> where;
  for (const std::string& name : files) {
    if (!name.ends_with(".safetensors")) continue;
    const SafetensorsFile f = SafetensorsFile::open(dir / name);
    EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
    for (const TensorInfo& t : f.tensors()) where[t.name] = name;
    // The header is padded so that the data section starts 8-byte aligned.
    const std::string raw = read_file(dir / name);
    uint64_t n = 0;
    std::memcpy(&n, raw.data(), 8);
    EXPECT_EQ(n % 8, 0u) << name;
    EXPECT_EQ(raw[8], '{');
  }
  EXPECT_EQ(where.size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto it = where.find(specs[i].name);
    if (it == where.end()) {
      ADD_FAILURE() << "missing " << specs[i].name;
      continue;
    }
    const SafetensorsFile f = SafetensorsFile::open(dir / it->second);
    const TensorInfo* t = f.find(specs[i].name);
    EXPECT_EQ(t->dtype, specs[i].dtype);
    EXPECT_EQ(t->shape, specs[i].shape);
    const TensorView v = f.view(*t);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(v.data), v.nbytes),
              content(i, specs[i].nbytes()))
        << specs[i].name;
  }
  return where;
}

std::vector<OutputTensorSpec> sample_specs() {
  return {
      {"model.embed_tokens.weight", DType::kBF16, {10, 4}},  // 80 bytes
      {"model.layers.0.w", DType::kF32, {3, 4}},             // 48
      {"model.layers.0.b", DType::kF16, {3}},                // 6
      {"scalar", DType::kF64, {}},                           // 8
      {"empty", DType::kF32, {0, 7}},                        // 0
      {"model.layers.1.w", DType::kI64, {5}},                // 40
      {"mask", DType::kBool, {3}},                           // 3
      {"lm_head.weight", DType::kF32, {10, 4}},              // 160
  };
}

TEST(SafetensorsWriter, SingleShardRoundTrip) {
  TempDir dir;
  const auto specs = sample_specs();
  SafetensorsWriter w(dir / "out", specs, 1'000'000);
  write_all(w);
  w.finish();
  EXPECT_EQ(w.file_names(), std::vector<std::string>{"model.safetensors"});
  EXPECT_FALSE(std::filesystem::exists(dir / "out" / "model.safetensors.index.json"));
  check_round_trip(dir / "out", specs, w.file_names());

  // Data offsets follow the given order, back to back.
  const SafetensorsFile f = SafetensorsFile::open(dir / "out" / "model.safetensors");
  uint64_t offset = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorInfo* t = f.find(specs[i].name);
    EXPECT_EQ(t->begin, offset) << specs[i].name;
    offset = t->end;
  }
  // "__metadata__" comes first in the header, as the reference writer puts it.
  const std::string raw = read_file(dir / "out" / "model.safetensors");
  EXPECT_EQ(raw.substr(8, 16), "{\"__metadata__\":");
}

// Expected shard plans worked out by hand from the sizes in sample_specs():
// 80, 48, 6, 8, 0, 40, 3, 160 bytes.
TEST(SafetensorsWriter, ShardPlans) {
  struct Case {
    uint64_t shard_size;
    std::vector<std::vector<std::string>> shards;
  };
  const std::vector<Case> cases = {
      // 80 | 48 6 8 0 (=62; +40 would make 102) | 40 3 | 160
      {100,
       {{"model.embed_tokens.weight"},
        {"model.layers.0.w", "model.layers.0.b", "scalar", "empty"},
        {"model.layers.1.w", "mask"},
        {"lm_head.weight"}}},
      // 80 48 6 8 0 (=142) | 40 3 (=43) | 160 alone: larger than the shard size
      {150,
       {{"model.embed_tokens.weight", "model.layers.0.w", "model.layers.0.b", "scalar", "empty"},
        {"model.layers.1.w", "mask"},
        {"lm_head.weight"}}},
      // 80 48 6 8 0 40 3 (=185) | 160
      {200,
       {{"model.embed_tokens.weight", "model.layers.0.w", "model.layers.0.b", "scalar", "empty",
         "model.layers.1.w", "mask"},
        {"lm_head.weight"}}},
      // Every tensor is larger than the shard size: one each (the empty one joins "scalar").
      {1,
       {{"model.embed_tokens.weight"},
        {"model.layers.0.w"},
        {"model.layers.0.b"},
        {"scalar", "empty"},
        {"model.layers.1.w"},
        {"mask"},
        {"lm_head.weight"}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("shard_size " + std::to_string(c.shard_size));
    TempDir dir;
    const auto specs = sample_specs();
    SafetensorsWriter w(dir.path(), specs, c.shard_size);
    write_all(w);
    w.finish();
    const size_t n = c.shards.size();
    std::vector<std::string> expected_files;
    for (size_t s = 0; s < n; ++s) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, n);
      expected_files.push_back(name);
    }
    expected_files.push_back("model.safetensors.index.json");
    ASSERT_EQ(w.file_names(), expected_files);
    const auto where = check_round_trip(dir.path(), specs, w.file_names());
    for (size_t s = 0; s < n; ++s) {
      for (const std::string& t : c.shards[s]) EXPECT_EQ(where.at(t), expected_files[s]) << t;
      // Exactly those tensors, in that order.
      const SafetensorsFile f = SafetensorsFile::open(dir / expected_files[s]);
      std::vector<std::string> names;
      for (const TensorInfo& t : f.tensors()) names.push_back(t.name);
      EXPECT_EQ(names, c.shards[s]);
    }

    const auto index = nlohmann::json::parse(read_file(dir / "model.safetensors.index.json"));
    EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), 80u + 48 + 6 + 8 + 0 + 40 + 3 + 160);
    ASSERT_EQ(index["weight_map"].size(), specs.size());
    for (const auto& [tensor, file] : where) EXPECT_EQ(index["weight_map"][tensor], file);
  }
}

TEST(SafetensorsWriter, ZeroTensorsGiveOneValidFile) {
  TempDir dir;
  SafetensorsWriter w(dir.path(), {}, 100);
  w.finish();
  EXPECT_EQ(w.file_names(), std::vector<std::string>{"model.safetensors"});
  const SafetensorsFile f = SafetensorsFile::open(dir / "model.safetensors");
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(f.metadata().at("format"), "pt");
}

TEST(SafetensorsWriter, OutOfOrderChunkedWritesFromManyThreads) {
  TempDir dir;
  std::vector<OutputTensorSpec> specs;
  for (int i = 0; i < 40; ++i) {
    specs.push_back({"model.layers." + std::to_string(i) + ".w",
                     i % 2 ? DType::kBF16 : DType::kF32,
                     {static_cast<int64_t>(100 + 37 * i)}});
  }
  SafetensorsWriter w(dir.path(), specs, 20'000);
  // Every tensor cut into 64-byte chunks; all chunks shuffled and shared out to 8 threads.
  struct Chunk {
    size_t tensor;
    uint64_t offset;
    size_t n;
  };
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < specs.size(); ++i) {
    for (uint64_t off = 0; off < specs[i].nbytes(); off += 64) {
      chunks.push_back(
          {i, off, static_cast<size_t>(std::min<uint64_t>(64, specs[i].nbytes() - off))});
    }
  }
  std::shuffle(chunks.begin(), chunks.end(), std::mt19937(7));
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (size_t k = t; k < chunks.size(); k += 8) {
        const Chunk& c = chunks[k];
        const std::string all = content(c.tensor, specs[c.tensor].nbytes());
        w.write(c.tensor, c.offset, all.data() + c.offset, c.n);
      }
    });
  }
  for (auto& th : threads) th.join();
  w.finish();
  EXPECT_GT(w.file_names().size(), 2u);
  check_round_trip(dir.path(), specs, w.file_names());
}

TEST(SafetensorsWriter, FinishReportsAnIncompleteTensor) {
  TempDir dir;
  const auto specs = sample_specs();
  SafetensorsWriter w(dir.path(), specs, 1'000'000);
  for (size_t i = 0; i + 1 < specs.size(); ++i) {
    const std::string c = content(i, specs[i].nbytes());
    w.write(i, 0, c.data(), c.size());
  }
  const std::string half = content(7, 80);
  w.write(7, 0, half.data(), half.size());
  try {
    w.finish();
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("lm_head.weight"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsWriter, RejectsBadSpecs) {
  TempDir dir;
  EXPECT_THROW(
      SafetensorsWriter(dir.path(), {{"a", DType::kF32, {1}}, {"a", DType::kF32, {2}}}, 10),
      ConfigError);
  EXPECT_THROW(SafetensorsWriter(dir.path(), {{"__metadata__", DType::kF32, {1}}}, 10),
               ConfigError);
  EXPECT_THROW(SafetensorsWriter(dir.path(), {{"a", DType::kF32, {-1}}}, 10), ConfigError);
}

TEST(SafetensorsWriter, DestructorWithoutFinishDoesNotThrow) {
  TempDir dir;
  {
    SafetensorsWriter w(dir.path(), sample_specs(), 100);
    const std::string c = content(0, 80);
    w.write(0, 0, c.data(), c.size());
  }
  EXPECT_TRUE(std::filesystem::exists(dir / "model-00001-of-00004.safetensors"));
}

TEST(SafetensorsWriter, UnwritableFolderIsIoError) {
  TempDir dir;
  test::write_file(dir / "file", "x");
  EXPECT_THROW(SafetensorsWriter(dir / "file" / "sub", sample_specs(), 100), IoError);
}

}  // namespace
}  // namespace shoal
