// Data-flow-space genome: the slot layout and W indexing worked out by hand, decoding hand-made
// vectors (threshold, scales W[previous][layer], embeddings as the first source, truncation),
// the JSON round trip, errors (options, sizes, mismatched models and tokenizers), and the
// exports: the passthrough recipe merged by run_merge and the folded model folder, each against
// the in-memory path model. The path's numerics against PyTorch are in tests/test_dfs_path.py.
#include <cmath>
#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include "core/test_support.h"
#include "merge/memory_merge_test_support.h"
#include "shoal/error.h"
#include "shoal/genome_dfs.h"
#include "shoal/merge.h"
#include "shoal/model.h"
#include "shoal/model_folder.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;

constexpr int32_t kIds[] = {3, 17, 5, 30, 9, 1, 22};

std::vector<float> logits_of(const Model& m) {
  ScoreRequest r{kIds, {}};
  return m.logits({&r, 1})[0].data;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::abs(double(a[i]) - b[i]));
    den = std::max(den, std::abs(double(b[i])));
  }
  return num / den;
}

template <typename Fn>
void expect_error(Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

class DfsGenomeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // a: 3 layers, b: 2 layers (a path may mix models of different depths). F32 so that the
    // folded model's only difference is the RMSNorm epsilon term.
    test::TinyLlama a{.layers = 3, .dtype = DType::kF32};
    test::TinyLlama b{.layers = 2, .dtype = DType::kF32};
    test::write_tiny_llama(dir_ / "a", a, 1, 2);
    test::write_tiny_llama(dir_ / "b", b, 1, 3);
  }

  DfsGenome genome(bool scales = true, int repeats = 2, std::string head = "") const {
    DfsGenomeOptions o;
    o.models = {"a", "b"};
    o.repeats = repeats;
    o.search_scales = scales;
    o.head_model = std::move(head);
    return DfsGenome(o, dir_.path());
  }

  test::TempDir dir_;
};

// M = 5 global layers: a0 a1 a2 b0 b1; T = 10 slots; W is 6 x 5 after the indicators.
TEST_F(DfsGenomeTest, LayoutBoundsAndNames) {
  const DfsGenome g = genome();
  EXPECT_EQ(g.total_layers(), 5);
  EXPECT_EQ(g.n_slots(), 10);
  EXPECT_EQ(g.size(), 10u + 6 * 5);
  EXPECT_EQ(g.model_layers(), (std::vector<int>{3, 2}));
  const DfsSlot s = g.slot(8);
  EXPECT_EQ(s.repeat, 1);
  EXPECT_EQ(s.model, 1);
  EXPECT_EQ(s.layer, 0);
  EXPECT_EQ(s.global, 3);
  EXPECT_EQ(g.global_layer(1, 1), 4);
  EXPECT_EQ(g.scale_index(-1, 0), 10u);
  EXPECT_EQ(g.scale_index(3, 1), 10u + 4 * 5 + 1);
  EXPECT_EQ(g.lower()[0], -1.0);
  EXPECT_EQ(g.upper()[9], 1.0);
  EXPECT_EQ(g.lower()[10], 0.5);
  EXPECT_EQ(g.upper()[39], 1.5);
  EXPECT_EQ(g.gene_name(8), "slot 8 (repeat 1, b layer 0)");
  EXPECT_EQ(g.gene_name(10), "W[embed -> a layer 0]");
  EXPECT_EQ(g.gene_name(31), "W[b layer 0 -> a layer 1]");  // from global 3
  EXPECT_EQ(g.gene_name(g.scale_index(2, 4)), "W[a layer 2 -> b layer 1]");
  EXPECT_EQ(genome(false).size(), 10u);
  expect_error([&] { genome(false).scale_index(0, 1); }, "not searched");
}

TEST_F(DfsGenomeTest, DecodeHandMadeVector) {
  const DfsGenome g = genome();
  std::vector<double> x(g.size(), -0.3);
  for (int t : {0, 1, 3, 6, 8, 9}) x[static_cast<size_t>(t)] = 0.7;
  x[2] = 0.0;  // exactly 0 is off (the slot is on iff its gene is > 0)
  for (size_t i = 10; i < x.size(); ++i) x[i] = 0.6 + static_cast<double>(i) / 100;
  const LayerPath p = g.decode(x);
  // (model, layer, W gene): a0 <- W[embed][a0] = gene 10; a1 <- W[a0][a1] = 10 + 1*5 + 1;
  // b0 (global 3) <- W[a1][b0] = 10 + 2*5 + 3; a1 (slot 6) <- W[b0][a1] = 10 + 4*5 + 1;
  // b0 (slot 8) <- W[a1][b0] = 23; b1 <- W[b0][b1] = 10 + 4*5 + 4.
  const std::vector<std::tuple<int, int, int>> want = {{0, 0, 10}, {0, 1, 16}, {1, 0, 23},
                                                       {0, 1, 31}, {1, 0, 23}, {1, 1, 34}};
  ASSERT_EQ(p.steps.size(), want.size());
  EXPECT_EQ(p.head_source, 0);
  for (size_t k = 0; k < want.size(); ++k) {
    const auto [m, l, gene] = want[k];
    EXPECT_EQ(p.steps[k].source, m) << k;
    EXPECT_EQ(p.steps[k].layer, l) << k;
    EXPECT_EQ(p.steps[k].input_scale, 0.6 + gene / 100.0) << k;
  }
  EXPECT_EQ(g.describe(p), "6 steps: a[0]x0.7 a[1]x0.76 b[0]x0.83 a[1]x0.91 b[0]x0.83 b[1]x0.94");

  // Without searched scales every scale is 1; max_path_length keeps the first steps.
  DfsGenomeOptions o;
  o.models = {"a", "b"};
  o.search_scales = false;
  o.max_path_length = 4;
  const DfsGenome short_g(o, dir_.path());
  std::vector<double> y(x.begin(), x.begin() + 10);
  y[5] = 1e-300;  // any positive value is on
  const LayerPath q = short_g.decode(y);
  ASSERT_EQ(q.steps.size(), 4u);  // slots 0, 1, 3, 5: a0 a1 b0, then a0 of repeat 1
  EXPECT_EQ(q.steps[3].source, 0);
  EXPECT_EQ(q.steps[3].layer, 0);
  for (const LayerStep& s : q.steps) EXPECT_EQ(s.input_scale, 1.0);
  EXPECT_EQ(short_g.describe(q), "4 steps: a[0] a[1] b[0] a[0]");

  // An all-off genome is the empty path.
  EXPECT_TRUE(g.decode(std::vector<double>(g.size(), -1.0)).steps.empty());
}

TEST_F(DfsGenomeTest, InitialIsTheHeadModel) {
  for (const std::string head : {"a", "b"}) {
    const DfsGenome g = genome(true, 3, head);
    const LayerPath p = g.decode(g.initial());
    const int h = head == "a" ? 0 : 1;
    EXPECT_EQ(p.head_source, h);
    ASSERT_EQ(p.steps.size(), static_cast<size_t>(g.model_layers()[h]));
    for (size_t k = 0; k < p.steps.size(); ++k) {
      EXPECT_EQ(p.steps[k].source, h);
      EXPECT_EQ(p.steps[k].layer, static_cast<int64_t>(k));
      EXPECT_EQ(p.steps[k].input_scale, 1.0);
    }
    // ... and computes exactly what the head model computes on its own.
    const Model alone = Model::load(open_weights(dir_ / head));
    EXPECT_EQ(logits_of(g.load(p)), logits_of(alone));
  }
}

TEST_F(DfsGenomeTest, Errors) {
  const DfsGenome g = genome();
  expect_error([&] { g.decode(std::vector<double>(39, 0.0)); }, "needs 40");
  std::vector<double> x(g.size(), 0.0);
  x[12] = std::nan("");
  expect_error([&] { g.decode(x); }, "gene 12 is not finite");

  auto with = [&](auto edit) {
    DfsGenomeOptions o;
    o.models = {"a", "b"};
    edit(o);
    return DfsGenome(o, dir_.path());
  };
  expect_error([&] { with([](auto& o) { o.models.clear(); }); }, "no models");
  expect_error([&] { with([](auto& o) { o.models = {"a", "a"}; }); }, "listed twice");
  expect_error([&] { with([](auto& o) { o.models = {"a", "zz"}; }); }, "'zz' not found");
  expect_error([&] { with([](auto& o) { o.head_model = "c"; }); }, "head_model 'c'");
  expect_error([&] { with([](auto& o) { o.repeats = 0; }); }, "repeats");
  expect_error([&] { with([](auto& o) { o.scale_lower = 0; }); }, "scale_lower");
  expect_error([&] { with([](auto& o) { o.max_path_length = -1; }); }, "max_path_length");

  test::write_tiny_llama(dir_ / "wide", {.layers = 2, .hidden = 32}, 1, 0);
  expect_error([&] { with([](auto& o) { o.models = {"a", "wide"}; }); }, "hidden_size 32");
  test::write_tiny_llama(dir_ / "vocab", {.layers = 2, .vocab = 40}, 1, 0);
  expect_error([&] { with([](auto& o) { o.models = {"a", "vocab"}; }); }, "vocab_size 40");

  // Tokenizers: equal ones pass, different ones are named.
  auto tokenizer = [&](const std::string& model, const std::string& tag) {
    nlohmann::json vocab = {{"<unk>", 0}};
    for (int i = 1; i < 32; ++i) vocab[tag + std::to_string(i)] = i;
    const nlohmann::json tok = {{"model", {{"type", "WordLevel"}, {"vocab", vocab}}},
                                {"added_tokens", nlohmann::json::array()}};
    std::ofstream(dir_ / model / "tokenizer.json") << tok.dump();
  };
  tokenizer("a", "x");
  tokenizer("b", "x");
  EXPECT_NO_THROW(genome());
  tokenizer("b", "y");
  expect_error([&] { genome(); }, "different tokenizers");
}

TEST_F(DfsGenomeTest, JsonRoundTripAndCorruptFiles) {
  const DfsGenome g = genome();
  std::vector<double> x = g.initial();
  x[8] = 0.2;                       // b0 in repeat 1
  x[g.scale_index(2, 3)] = 0.8125;  // a2 -> b0
  const nlohmann::json j = g.to_json(x);
  EXPECT_EQ(j["format"], "shoal-dfs-path");
  EXPECT_EQ(j["genome"].get<std::vector<double>>(), x);
  EXPECT_EQ(j["description"], "4 steps: a[0] a[1] a[2] b[0]x0.8125");
  const DfsPathFile f = dfs_path_from_json(nlohmann::json::parse(j.dump()));
  EXPECT_EQ(f.models, g.model_paths());
  const LayerPath p = g.decode(x);
  ASSERT_EQ(f.path.steps.size(), p.steps.size());
  for (size_t k = 0; k < p.steps.size(); ++k) {
    EXPECT_EQ(f.path.steps[k].source, p.steps[k].source);
    EXPECT_EQ(f.path.steps[k].layer, p.steps[k].layer);
    EXPECT_EQ(f.path.steps[k].input_scale, p.steps[k].input_scale);
  }

  auto corrupt = [&](auto edit, const std::string& needle) {
    nlohmann::json k = j;
    edit(k);
    try {
      dfs_path_from_json(k);
      ADD_FAILURE() << "accepted; expected " << needle;
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  corrupt([](auto& k) { k["format"] = "x"; }, "\"format\"");
  corrupt([](auto& k) { k["version"] = 2; }, "\"version\"");
  corrupt([](auto& k) { k["extra"] = 1; }, "unknown key 'extra'");
  corrupt([](auto& k) { k["steps"][1]["model"] = 2; }, "steps[1].model");
  corrupt([](auto& k) { k["steps"][0]["layer"] = -1; }, "steps[0].layer");
  corrupt([](auto& k) { k["steps"][0].erase("scale"); }, "needs");
  corrupt([](auto& k) { k["head_model"] = "a"; }, "head_model");
}

TEST_F(DfsGenomeTest, PassthroughRecipeMergesToThePathModel) {
  const DfsGenome g = genome(false);
  std::vector<double> x(g.size(), -1.0);
  for (int t : {0, 1, 3, 4, 6, 7}) x[static_cast<size_t>(t)] = 1.0;  // a0 a1 b0 b1 | a1 a2
  const LayerPath p = g.decode(x);
  const DfsPathFile f{g.model_paths(), p};
  const auto yaml = dfs_passthrough_yaml(f);
  ASSERT_TRUE(yaml.has_value());
  const std::string a = nlohmann::json(g.model_paths()[0]).dump();
  const std::string b = nlohmann::json(g.model_paths()[1]).dump();
  EXPECT_NE(yaml->find("merge_method: passthrough\nslices:\n  - sources:\n      - model: " + a +
                       "\n        layer_range: [0, 2]\n  - sources:\n      - model: " + b +
                       "\n        layer_range: [0, 2]\n  - sources:\n      - model: " + a +
                       "\n        layer_range: [1, 3]\n"),
            std::string::npos)
      << *yaml;

  const fs::path file = dir_.write("path.yml", *yaml);
  MergeOptions options;
  options.out_dir = dir_ / "merged";
  options.n_threads = 1;
  options.log_mode = LogMode::kQuiet;
  run_merge(load_recipe(file), options);
  // The merged folder holds byte copies of the layers: the same logits bit for bit.
  EXPECT_EQ(logits_of(Model::load(open_weights(options.out_dir))), logits_of(g.load(p)));

  std::string why;
  LayerPath scaled = p;
  scaled.steps[2].input_scale = 0.9;
  EXPECT_FALSE(dfs_passthrough_yaml({g.model_paths(), scaled}, &why));
  EXPECT_NE(why.find("input scale"), std::string::npos) << why;
  LayerPath ends_in_b = p;
  ends_in_b.steps.pop_back();
  ends_in_b.steps.pop_back();
  EXPECT_FALSE(dfs_passthrough_yaml({g.model_paths(), ends_in_b}, &why));
  EXPECT_NE(why.find("head model"), std::string::npos) << why;
  EXPECT_FALSE(dfs_passthrough_yaml({g.model_paths(), LayerPath{}}, &why));
}

TEST_F(DfsGenomeTest, FoldedModelFolder) {
  // The fold is exact but for the norms' epsilon (eps / C^2 in the path, eps in the folded
  // model); with eps 1e-12 against mean squares of about 1e-3 that term is below f32 rounding.
  for (const char* m : {"a", "b"}) {
    nlohmann::json c = nlohmann::json::parse(std::ifstream(dir_ / m / "config.json"));
    c["rms_norm_eps"] = 1e-12;
    std::ofstream(dir_ / m / "config.json") << c.dump();
  }
  const DfsGenome g = genome();
  LayerPath p;  // scales chosen so that every C_k is exact in binary
  p.steps = {{0, 0, 1.25}, {1, 1, 0.75}, {0, 0, 1.0}, {1, 0, 0.5}, {0, 2, 1.5}};
  const Model path_model = g.load(p);

  // All scales 1: a byte-for-byte copy, the same logits.
  LayerPath unit = p;
  for (auto& s : unit.steps) s.input_scale = 1.0;
  write_dfs_model(g.sources(), unit, dir_ / "unit");
  EXPECT_EQ(logits_of(Model::load(open_weights(dir_ / "unit"))), logits_of(g.load(unit)));

  write_dfs_model(g.sources(), p, dir_ / "folded");
  const ModelFolder folded = ModelFolder::open(dir_ / "folded");
  EXPECT_EQ(folded.config()["num_hidden_layers"], 5);
  const ModelFolder b = ModelFolder::open(dir_ / "b");
  // Step 3 (b layer 0) has C = 1.25 * 0.75 * 1.0 * 0.5 = 0.46875: o_proj and down_proj divided
  // by it, q_proj copied.
  auto f32 = [](const TensorView& t, size_t i) {
    float v;
    std::memcpy(&v, t.data + i * sizeof(float), sizeof v);
    return v;
  };
  const TensorView o_src = b.view("model.layers.0.self_attn.o_proj.weight");
  const TensorView o_out = folded.view("model.layers.3.self_attn.o_proj.weight");
  const TensorView down_out = folded.view("model.layers.3.mlp.down_proj.weight");
  const TensorView down_src = b.view("model.layers.0.mlp.down_proj.weight");
  for (size_t i = 0; i < 16; ++i) {
    EXPECT_EQ(f32(o_out, i), static_cast<float>(double(f32(o_src, i)) / 0.46875));
    EXPECT_EQ(f32(down_out, i), static_cast<float>(double(f32(down_src, i)) / 0.46875));
  }
  const TensorView q_src = b.view("model.layers.0.self_attn.q_proj.weight");
  const TensorView q_out = folded.view("model.layers.3.self_attn.q_proj.weight");
  EXPECT_EQ(std::memcmp(q_src.data, q_out.data, q_src.nbytes), 0);
  // The same function up to f32 rounding (the path scales activations, the fold weights).
  const double err =
      max_rel_diff(logits_of(Model::load(open_weights(dir_ / "folded"))), logits_of(path_model));
  EXPECT_LT(err, 1e-5);

  expect_error([&] { write_dfs_model(g.sources(), p, dir_ / "folded"); }, "exists");
  LayerPath zero = p;
  zero.steps[1].input_scale = 0.0;
  expect_error([&] { write_dfs_model(g.sources(), zero, dir_ / "zero"); }, "positive");
  EXPECT_FALSE(fs::exists(dir_ / "zero"));
}

}  // namespace
}  // namespace shoal
