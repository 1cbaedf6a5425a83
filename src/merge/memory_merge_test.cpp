// MemoryMerger against run_merge: the same recipe merged to disk and into memory gives the same
// bytes for every tensor, for every method family (random masks included) and for layer
// stacking; the cache re-merges exactly the tensors whose parameters changed.
#include "shoal/merge_memory.h"

#include <gtest/gtest.h>

#include "core/test_support.h"
#include "merge/memory_merge_test_support.h"
#include "shoal/error.h"
#include "shoal/merge.h"
#include "shoal/recipe.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;

class MemoryMergeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_tiny_llama(dir_ / "base", {}, 1, 0);
    test::write_tiny_llama(dir_ / "a", {}, 1, 2);
    test::write_tiny_llama(dir_ / "b", {}, 1, 3);
  }

  Recipe recipe(const std::string& yaml) const {
    return parse_recipe(yaml, dir_ / ("recipe" + std::to_string(++n_recipes_) + ".yml"));
  }

  // run_merge to a fresh folder, then the same recipe in memory through `merger`.
  void check(const std::string& yaml, MemoryMerger& merger) {
    const Recipe r = recipe(yaml);
    MergeOptions options;
    options.out_dir = dir_ / ("out" + std::to_string(n_recipes_));
    options.seed = 7;
    options.n_threads = 2;
    options.recipe_dir = dir_.path();
    options.log_mode = LogMode::kQuiet;
    run_merge(r, options);
    const auto model = merger.merge(r);
    SCOPED_TRACE(yaml);
    test::expect_same_model(options.out_dir, *model);
    EXPECT_FALSE(model->tokenizer_dir.empty());
  }

  MemoryMerger fresh() const { return MemoryMerger({7, 2, dir_.path()}); }

  test::TempDir dir_;
  mutable int n_recipes_ = 0;
};

TEST_F(MemoryMergeTest, EveryMethodFamilyEqualsTheFilesByteForByte) {
  const char* recipes[] = {
      // Gradients, filters, normalize: the parameter machinery.
      "merge_method: ties\nbase_model: base\nmodels:\n"
      "  - model: a\n    parameters: {weight: [0.2, 0.9], density: [{filter: mlp, value: 0.3},"
      " {value: 0.8}]}\n"
      "  - model: b\n    parameters: {weight: 0.5, density: 0.6}\ndtype: bfloat16\n",
      // Random masks: the seed must reach the kernels the same way.
      "merge_method: dare_ties\nbase_model: base\nmodels:\n"
      "  - {model: a, parameters: {weight: 0.7, density: 0.4}}\n"
      "  - {model: b, parameters: {weight: 0.3, density: 0.5}}\n",
      "merge_method: della\nbase_model: base\nmodels:\n"
      "  - {model: a, parameters: {weight: 0.7, density: 0.4}}\n"
      "  - {model: b, parameters: {weight: 0.3, density: 0.5, epsilon: 0.1}}\n",
      "merge_method: slerp\nbase_model: base\nmodels:\n  - model: a\n"
      "parameters: {t: [0.1, 0.8, 0.3]}\n",
      "merge_method: linear\nmodels:\n  - {model: a, parameters: {weight: 2}}\n"
      "  - {model: b, parameters: {weight: 1}}\ndtype: float32\n",
      // Layer stacking with slices.
      "merge_method: passthrough\nslices:\n  - sources: [{model: a, layer_range: [0, 3]}]\n"
      "  - sources: [{model: b, layer_range: [1, 4]}]\n",
  };
  MemoryMerger merger = fresh();  // one merger: the cache must never leak across recipes
  for (const char* yaml : recipes) check(yaml, merger);
}

TEST_F(MemoryMergeTest, OnlyTensorsWhoseParametersChangedAreMergedAgain) {
  const std::string head = "merge_method: ties\nbase_model: base\nslices:\n";
  auto slices = [&](double mlp_weight_group1) {
    std::string y = head;
    for (int g = 0; g < 2; ++g) {
      const std::string range = g == 0 ? "[0, 2]" : "[2, 4]";
      const double w = g == 1 ? mlp_weight_group1 : 0.4;
      y += "  - sources:\n";
      y += "      - {model: base, layer_range: " + range + "}\n";
      y += "      - model: a\n        layer_range: " + range + "\n";
      y += "        parameters: {weight: [{filter: mlp, value: " + std::to_string(w) +
           "}, {value: 0.5}], density: 0.5}\n";
      y += "      - {model: b, layer_range: " + range +
           ", parameters: {weight: 0.3, density: 0.7}}\n";
    }
    return y;
  };
  MemoryMerger merger = fresh();
  check(slices(0.25), merger);
  const MemoryMergeStats first = merger.last_stats();
  // 4 layers x 9 tensors + embed_tokens, norm, lm_head.
  EXPECT_EQ(first.n_tensors, 39u);
  EXPECT_EQ(first.n_merged, 39u);
  EXPECT_EQ(first.n_reused, 0u);

  // Group 1 (layers 2, 3) mlp weight changes: 2 layers x 3 mlp tensors; norm and lm_head come
  // from the last slice but do not match "mlp", so they keep their parameters.
  check(slices(0.75), merger);
  EXPECT_EQ(merger.last_stats().n_merged, 6u);
  EXPECT_EQ(merger.last_stats().n_reused, 33u);

  // The same recipe again: nothing to do.
  const auto again = merger.merge(recipe(slices(0.75)));
  EXPECT_EQ(merger.last_stats().n_merged, 0u);
  EXPECT_EQ(again->tensors.size(), 39u);

  // A different seed changes every task's key.
  MemoryMerger other({8, 2, dir_.path()});
  other.merge(recipe(slices(0.75)));
  EXPECT_EQ(other.last_stats().n_merged, 39u);
}

TEST_F(MemoryMergeTest, SnapshotsStayValidAfterLaterMerges) {
  MemoryMerger merger = fresh();
  const std::string linear = "merge_method: linear\nmodels:\n  - {model: a, parameters: {weight: ";
  const auto one = merger.merge(recipe(linear + "1}}\n  - {model: b, parameters: {weight: 1}}\n"));
  const std::vector<std::byte> before = *one->tensors.at("lm_head.weight").bytes;
  merger.merge(recipe(linear + "3}}\n  - {model: b, parameters: {weight: 1}}\n"));
  merger.clear_cache();
  EXPECT_EQ(*one->tensors.at("lm_head.weight").bytes, before);
}

TEST_F(MemoryMergeTest, InvalidRecipesFailLikeRunMerge) {
  MemoryMerger merger = fresh();
  EXPECT_THROW(merger.merge(recipe("merge_method: ties\nbase_model: base\nmodels:\n"
                                   "  - {model: missing, parameters: {weight: 1}}\n")),
               ConfigError);
  EXPECT_THROW(merger.merge(recipe("merge_method: ties\nbase_model: base\nmodels:\n"
                                   "  - {model: a, parameters: {weight: 1, density: 2}}\n")),
               ConfigError);
}

}  // namespace
}  // namespace shoal
