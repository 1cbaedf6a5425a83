// Parameter-space genome: layout and bounds, the YAML text, decode -> `shoal merge` (run_merge of
// the YAML file) equal to the in-memory merge for every searchable method, the genes landing on
// the right tensors (checked against a linear merge computed here from the model files), the
// cache re-merging only what a gene touches, the engine reading the in-memory model, and errors.
#include <cmath>
#include <fstream>

#include <gtest/gtest.h>

#include "core/test_support.h"
#include "merge/memory_merge_test_support.h"
#include "shoal/error.h"
#include "shoal/genome.h"
#include "shoal/merge.h"
#include "shoal/model.h"
#include "shoal/rng.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;

class GenomeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_tiny_llama(dir_ / "base", {}, 1, 0);
    test::write_tiny_llama(dir_ / "a", {}, 1, 2);
    test::write_tiny_llama(dir_ / "b", {}, 1, 3);
  }

  PsGenome genome(const std::string& method, bool smooth, std::vector<std::string> filters,
                  int granularity = 2) const {
    PsGenomeOptions o;
    o.merge_method = method;
    o.models =
        method == "slerp" ? std::vector<std::string>{"a"} : std::vector<std::string>{"a", "b"};
    if (method != "linear") o.base_model = "base";
    o.layer_granularity = granularity;
    o.filters = std::move(filters);
    o.smooth = smooth;
    return PsGenome(o, dir_.path());
  }

  // A genome drawn uniformly inside the box.
  static std::vector<double> random_genome(const PsGenome& g, uint64_t seed) {
    const CounterRng rng(seed);
    std::vector<double> x(g.size());
    for (size_t i = 0; i < x.size(); ++i) {
      x[i] = g.lower()[i] + rng.uniform(i) * (g.upper()[i] - g.lower()[i]);
    }
    return x;
  }

  // The YAML in a file, merged by run_merge as `shoal merge FILE OUT` does.
  fs::path merge_to_disk(const std::string& yaml) {
    const fs::path file = dir_.write("recipe" + std::to_string(++n_) + ".yml", yaml);
    MergeOptions options;
    options.out_dir = dir_ / ("out" + std::to_string(n_));
    options.seed = 7;
    options.n_threads = 2;
    options.recipe_dir = file.parent_path();
    options.log_mode = LogMode::kQuiet;
    run_merge(load_recipe(file), options);
    return options.out_dir;
  }

  test::TempDir dir_;
  int n_ = 0;
};

TEST_F(GenomeTest, LayoutBoundsAndNames) {
  const PsGenome g = genome("ties", false, {"self_attn", "mlp"});
  EXPECT_EQ(g.n_layers(), 4);
  EXPECT_EQ(g.groups(), (std::vector<std::pair<int, int>>{{0, 2}, {2, 4}}));
  EXPECT_EQ(g.size(), 2u * 2 * 3 * 2);  // groups x models x filter sets x {weight, density}
  EXPECT_EQ(g.index(1, 1, 0, 1), 1u * 12 + 1 * 6 + 0 * 2 + 1);
  EXPECT_EQ(g.gene_name(g.index(1, 1, 0, 1)), "group 1 (layers 2-3) / b / self_attn / density");
  EXPECT_EQ(g.gene_name(g.index(0, 0, 2, 0)), "group 0 (layers 0-1) / a / * / weight");
  EXPECT_EQ(g.lower()[g.index(0, 0, 0, 0)], 0.0);
  EXPECT_EQ(g.lower()[g.index(0, 0, 0, 1)], 0.1);
  EXPECT_EQ(g.upper()[g.index(0, 0, 0, 1)], 1.0);

  EXPECT_EQ(genome("ties", false, {}, 3).groups(),
            (std::vector<std::pair<int, int>>{{0, 3}, {3, 4}}));
  EXPECT_EQ(genome("ties", false, {}, 0).n_groups(), 1);
  EXPECT_EQ(genome("slerp", false, {"mlp"}).size(), 2u * 1 * 2 * 1);
  const PsGenome della = genome("della", false, {});
  EXPECT_DOUBLE_EQ(della.lower()[1], 0.16);
  EXPECT_DOUBLE_EQ(della.upper()[1], 0.84);
  PsGenomeOptions neg = genome("task_arithmetic", false, {}).options();
  neg.allow_negative_weights = true;
  EXPECT_EQ(PsGenome(neg, dir_.path()).lower()[0], -1.0);
}

TEST_F(GenomeTest, YamlTextOfASmallGenome) {
  PsGenomeOptions o;
  o.merge_method = "task_arithmetic";
  o.models = {"a", "b"};
  o.base_model = "base";
  o.layer_granularity = 2;
  o.filters = {"mlp"};
  o.parameters = {{"normalize", 1}};
  o.dtype = "bfloat16";
  const PsGenome g(o, dir_.path());
  // [group][model][filter set] weights.
  const std::vector<double> x = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.30000000000000004};
  EXPECT_EQ(g.to_yaml(x),
            "# shoal evolve: parameter-space genome, 2 layer group(s)\n"
            "merge_method: task_arithmetic\n"
            "base_model: \"base\"\n"
            "slices:\n"
            "  - sources:\n"
            "      - model: \"base\"\n        layer_range: [0, 2]\n"
            "      - model: \"a\"\n        layer_range: [0, 2]\n        parameters:\n"
            "          weight: [{filter: \"mlp\", value: 0.1}, {value: 0.2}]\n"
            "      - model: \"b\"\n        layer_range: [0, 2]\n        parameters:\n"
            "          weight: [{filter: \"mlp\", value: 0.3}, {value: 0.4}]\n"
            "  - sources:\n"
            "      - model: \"base\"\n        layer_range: [2, 4]\n"
            "      - model: \"a\"\n        layer_range: [2, 4]\n        parameters:\n"
            "          weight: [{filter: \"mlp\", value: 0.5}, {value: 0.6}]\n"
            "      - model: \"b\"\n        layer_range: [2, 4]\n        parameters:\n"
            "          weight: [{filter: \"mlp\", value: 0.7}, {value: 0.30000000000000004}]\n"
            "parameters:\n  normalize: 1.0\n"
            "dtype: bfloat16\n");
  // The parsed recipe holds the genome's values exactly.
  const Recipe r = g.decode(x);
  ASSERT_EQ(r.slices.size(), 2u);
  EXPECT_EQ(r.slices[1].sources[2].params.at("weight").entries[1].values[0], x[7]);

  o.smooth = true;
  const std::string smooth = PsGenome(o, dir_.path()).to_yaml(x);
  EXPECT_NE(
      smooth.find("  - model: \"a\"\n    parameters:\n"
                  "      weight: [{filter: \"mlp\", value: [0.1, 0.5]}, {value: [0.2, 0.6]}]"),
      std::string::npos)
      << smooth;
}

TEST_F(GenomeTest, DecodedRecipeThroughShoalMergeEqualsTheInMemoryModel) {
  MemoryMerger merger({7, 2, dir_.path()});
  uint64_t seed = 100;
  for (const char* method :
       {"linear", "task_arithmetic", "ties", "dare_ties", "dare_linear", "della", "slerp"}) {
    for (bool smooth : {false, true}) {
      SCOPED_TRACE(std::string(method) + (smooth ? " smooth" : ""));
      const PsGenome g = genome(method, smooth, {"self_attn", "mlp"});
      const std::vector<double> x = random_genome(g, ++seed);
      const fs::path out = merge_to_disk(g.to_yaml(x));
      test::expect_same_model(out, *merger.merge(g.decode(x)));
    }
  }
}

// Independent check of where genes land: a linear merge (normalized) computed here in double
// from the input files, compared within one bf16 ulp of the output.
TEST_F(GenomeTest, GenesLandOnTheirLayersAndFilters) {
  MemoryMerger merger({7, 1, dir_.path()});
  const PsGenome g = genome("linear", false, {"mlp"});
  std::vector<double> x(g.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.05 + 0.9 * double(i) / double(x.size());
  const auto model = merger.merge(g.decode(x));
  const ModelFolder a = ModelFolder::open(dir_ / "a"), b = ModelFolder::open(dir_ / "b");
  for (int layer : {0, 1, 2, 3}) {
    for (const std::string rest : {"mlp.up_proj.weight", "self_attn.o_proj.weight"}) {
      const std::string name = "model.layers." + std::to_string(layer) + "." + rest;
      const int group = layer / 2, set = rest.starts_with("mlp") ? 0 : 1;
      const double wa = x[g.index(group, 0, set, 0)], wb = x[g.index(group, 1, set, 0)];
      const TensorView va = a.view(name), vb = b.view(name);
      const TensorView out = model->tensors.at(name).view();
      const size_t n = static_cast<size_t>(va.numel());
      std::vector<float> fa(n), fb(n), fo(n);
      to_f32(va.dtype, va.data, fa.data(), n);
      to_f32(vb.dtype, vb.data, fb.data(), n);
      to_f32(out.dtype, out.data, fo.data(), n);
      for (size_t i = 0; i < n; ++i) {
        const double expected = (wa * fa[i] + wb * fb[i]) / (wa + wb);
        ASSERT_NEAR(fo[i], expected, std::abs(expected) * 0x1p-8 + 1e-30) << name << " " << i;
      }
    }
  }
}

TEST_F(GenomeTest, ChangingOneGeneReMergesOnlyItsTensors) {
  MemoryMerger merger({7, 2, dir_.path()});
  const PsGenome g = genome("ties", false, {"self_attn", "mlp"});
  std::vector<double> x = random_genome(g, 5);
  merger.merge(g.decode(x));
  EXPECT_EQ(merger.last_stats().n_merged, 39u);
  x[g.index(1, 1, 1, 0)] = 0.123;  // group 1 (layers 2-3), model b, mlp, weight
  const auto model = merger.merge(g.decode(x));
  EXPECT_EQ(merger.last_stats().n_merged, 6u);  // 2 layers x {gate, up, down}_proj
  test::expect_same_model(merge_to_disk(g.to_yaml(x)), *model);
  x[g.index(0, 0, 2, 1)] = 0.5;  // group 0, model a, other tensors, density
  merger.merge(g.decode(x));
  // Layers 0-1: 2 norms each, plus embed_tokens (first slice's parameters, not a filter match).
  EXPECT_EQ(merger.last_stats().n_merged, 5u);
}

TEST_F(GenomeTest, TheEngineReadsTheInMemoryModelLikeTheFolder) {
  MemoryMerger merger({7, 2, dir_.path()});
  const PsGenome g = genome("dare_ties", true, {});
  const std::vector<double> x = random_genome(g, 9);
  const auto merged = merger.merge(g.decode(x));
  const fs::path out = merge_to_disk(g.to_yaml(x));
  const Model from_memory = Model::load(memory_model_weights(merged));
  const Model from_disk = Model::load(open_folder_weights(out));
  const std::vector<int32_t> ids = {1, 5, 9, 30, 2};
  const ScoreRequest request{ids, {}};
  const auto lm = from_memory.logits({&request, 1});
  const auto ld = from_disk.logits({&request, 1});
  ASSERT_EQ(lm[0].data.size(), ld[0].data.size());
  EXPECT_EQ(lm[0].data, ld[0].data);
  EXPECT_EQ(from_memory.weights().tokenizer_dir(), fs::path(dir_ / "base"));
}

TEST_F(GenomeTest, BadOptionsAndGenomesAreClearErrors) {
  const PsGenome g = genome("ties", false, {});
  EXPECT_THROW(g.to_yaml(std::vector<double>(g.size() + 1, 0.5)), ConfigError);
  try {
    g.to_yaml({0.5});
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("1 values given; this genome has 8"), std::string::npos)
        << e.what();
  }
  std::vector<double> nan(g.size(), 0.5);
  nan[3] = NAN;
  EXPECT_THROW(g.to_yaml(nan), ConfigError);

  auto bad = [&](const std::function<void(PsGenomeOptions&)>& change) {
    PsGenomeOptions o = g.options();
    change(o);
    EXPECT_THROW(PsGenome(o, dir_.path()), ConfigError);
  };
  bad([](auto& o) { o.merge_method = "model_stock"; });
  bad([](auto& o) { o.base_model.reset(); });
  bad([](auto& o) { o.models = {"a", "base"}; });
  bad([](auto& o) { o.models = {"a", "a"}; });
  bad([](auto& o) { o.models = {"a", "missing"}; });
  bad([](auto& o) { o.merge_method = "slerp"; });   // two models
  bad([](auto& o) { o.merge_method = "linear"; });  // with a base
  bad([](auto& o) { o.filters = {"mlp", "mlp"}; });
  bad([](auto& o) { o.parameters = {{"weight", 1}}; });
  bad([](auto& o) { o.layer_granularity = -1; });
  test::TinyLlama shallow;
  shallow.layers = 3;
  test::write_tiny_llama(dir_ / "shallow", shallow, 1, 4);
  bad([](auto& o) { o.models = {"a", "shallow"}; });
}

}  // namespace
}  // namespace shoal
