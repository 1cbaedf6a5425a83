// Recipe parsing: every key and value form, located errors, and parameter resolution checked
// against values computed by hand from the documented rules.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "shoal/error.h"
#include "shoal/recipe.h"

namespace shoal {
namespace {

// The ConfigError message of parsing `yaml`, or "" when it parses.
std::string parse_error(const std::string& yaml) {
  try {
    parse_recipe(yaml, "r.yml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Recipe, ModelsFormWithEveryTopLevelKey) {
  const std::string yaml =
      "merge_method: ties\n"
      "base_model: ./base\n"
      "models:\n"
      "  - model: ./math\n"
      "    parameters: {weight: 0.6, density: [1.0, 0.7, 0.3]}\n"
      "  - model: ./lang\n"
      "    parameters:\n"
      "      density: 0.5\n"
      "      weight: [{filter: mlp, value: 0.6}, {value: 0.3}]\n"
      "parameters: {normalize: true, int8_mask: false, lambda: 2}\n"
      "dtype: bfloat16\n"
      "out_dtype: float16\n"
      "tokenizer_source: ./lang\n"
      "chat_template: chatml\n";
  const Recipe r = parse_recipe(yaml, "dir/r.yml");
  EXPECT_EQ(r.file, std::filesystem::path("dir/r.yml"));
  EXPECT_EQ(r.text, yaml);
  EXPECT_EQ(r.merge_method, "ties");
  EXPECT_EQ(r.base_model, "./base");
  EXPECT_TRUE(r.uses_models);
  ASSERT_EQ(r.slices.size(), 2u);
  ASSERT_EQ(r.slices[0].sources.size(), 1u);
  EXPECT_EQ(r.slices[0].sources[0].model, "./math");
  EXPECT_FALSE(r.slices[0].sources[0].layer_range);
  EXPECT_EQ(r.slices[0].sources[0].line, 4);
  EXPECT_EQ(r.slices[1].sources[0].model, "./lang");

  const ParamMap& p0 = r.slices[0].sources[0].params;
  ASSERT_TRUE(p0.contains("density"));
  EXPECT_EQ(p0.at("density").line, 5);
  ASSERT_EQ(p0.at("density").entries.size(), 1u);
  EXPECT_EQ(p0.at("density").entries[0].values, (std::vector<double>{1.0, 0.7, 0.3}));
  EXPECT_FALSE(p0.at("density").entries[0].filter);

  const ParamValue& w1 = r.slices[1].sources[0].params.at("weight");
  EXPECT_EQ(w1.line, 9);
  ASSERT_EQ(w1.entries.size(), 2u);
  EXPECT_EQ(w1.entries[0].filter, "mlp");
  EXPECT_EQ(w1.entries[0].values, std::vector<double>{0.6});
  EXPECT_FALSE(w1.entries[1].filter);

  EXPECT_EQ(r.params.at("normalize").entries[0].values, std::vector<double>{1.0});
  EXPECT_EQ(r.params.at("int8_mask").entries[0].values, std::vector<double>{0.0});
  EXPECT_EQ(r.params.at("lambda").entries[0].values, std::vector<double>{2.0});
  EXPECT_EQ(r.dtype, DType::kBF16);
  EXPECT_EQ(r.out_dtype, DType::kF16);
  EXPECT_EQ(r.tokenizer_source, "./lang");
  EXPECT_EQ(r.chat_template, "chatml");
}

TEST(Recipe, Defaults) {
  const Recipe r = parse_recipe("merge_method: linear\nmodels:\n  - model: a\n", "r.yml");
  EXPECT_FALSE(r.base_model);
  EXPECT_FALSE(r.dtype);
  EXPECT_FALSE(r.out_dtype);
  EXPECT_EQ(r.tokenizer_source, "base");
  EXPECT_FALSE(r.chat_template);
  EXPECT_TRUE(r.params.empty());
}

TEST(Recipe, SlicesForm) {
  const std::string yaml =
      "merge_method: slerp\n"
      "base_model: a\n"
      "slices:\n"
      "  - sources:\n"
      "      - model: a\n"
      "        layer_range: [0, 24]\n"
      "      - model: b\n"
      "        layer_range: [8, 32]\n"
      "        parameters: {t: 0.3}\n"
      "    parameters:\n"
      "      t: [0, 0.5, 1]\n"
      "  - sources: [{model: c, layer_range: [1, 2]}]\n"
      "    base_model: c\n";
  const Recipe r = parse_recipe(yaml, "r.yml");
  EXPECT_FALSE(r.uses_models);
  ASSERT_EQ(r.slices.size(), 2u);
  EXPECT_EQ(r.slices[0].line, 4);
  ASSERT_EQ(r.slices[0].sources.size(), 2u);
  EXPECT_EQ(r.slices[0].sources[0].layer_range, std::make_pair(0, 24));
  EXPECT_EQ(r.slices[0].sources[1].layer_range, std::make_pair(8, 32));
  EXPECT_EQ(r.slices[0].sources[1].line, 7);
  EXPECT_EQ(r.slices[0].sources[1].params.at("t").entries[0].values, std::vector<double>{0.3});
  EXPECT_EQ(r.slices[0].params.at("t").line, 11);
  EXPECT_EQ(r.slices[0].params.at("t").entries[0].values, (std::vector<double>{0, 0.5, 1}));
  EXPECT_FALSE(r.slices[0].base_model);
  EXPECT_EQ(r.slices[1].base_model, "c");
  EXPECT_EQ(r.slices[1].sources[0].layer_range, std::make_pair(1, 2));
}

TEST(Recipe, BooleansAreZeroOrOne) {
  const Recipe r = parse_recipe(
      "merge_method: ties\nmodels: [{model: a}]\n"
      "parameters: {normalize: true, rescale: false, int8_mask: yes, filter_wise: 'off'}\n",
      "r.yml");
  EXPECT_EQ(r.params.at("normalize").entries[0].values[0], 1.0);
  EXPECT_EQ(r.params.at("rescale").entries[0].values[0], 0.0);
  EXPECT_EQ(r.params.at("int8_mask").entries[0].values[0], 1.0);
  EXPECT_EQ(r.params.at("filter_wise").entries[0].values[0], 0.0);
}

TEST(Recipe, FilterWithNullAndGradientValue) {
  const Recipe r = parse_recipe(
      "merge_method: linear\nmodels: [{model: a}]\nparameters:\n"
      "  weight:\n"
      "    - filter: self_attn\n"
      "      value: [0, 1]\n"
      "    - filter: null\n"
      "      value: 0.5\n",
      "r.yml");
  const ParamValue& w = r.params.at("weight");
  ASSERT_EQ(w.entries.size(), 2u);
  EXPECT_EQ(w.entries[0].filter, "self_attn");
  EXPECT_EQ(w.entries[0].values, (std::vector<double>{0, 1}));
  EXPECT_FALSE(w.entries[1].filter);
}

TEST(Recipe, UnknownKeysNameKeyPlaceAndLine) {
  EXPECT_EQ(parse_error("merge_method: ties\nmodels: [{model: a}]\nbase: x\n"),
            "r.yml:3: unknown key 'base' in the top level (expected: merge_method, base_model, "
            "models, slices, parameters, dtype, out_dtype, tokenizer_source, chat_template)");
  EXPECT_EQ(parse_error("merge_method: ties\n"
                        "models:\n"
                        "  - model: a\n"
                        "  - model: b\n"
                        "    densty: 0.5\n"),
            "r.yml:5: unknown key 'densty' in models[1] (expected: model, parameters)");
  EXPECT_EQ(parse_error("merge_method: ties\n"
                        "slices:\n"
                        "  - sources: [{model: a, layer_range: [0, 2]}]\n"
                        "    weight: 1\n"),
            "r.yml:4: unknown key 'weight' in slices[0] (expected: sources, base_model, "
            "parameters)");
  EXPECT_EQ(parse_error("merge_method: ties\n"
                        "slices:\n"
                        "  - sources:\n"
                        "      - model: a\n"
                        "      - model: b\n"
                        "        layers: [0, 2]\n"),
            "r.yml:6: unknown key 'layers' in slices[0].sources[1] (expected: model, "
            "layer_range, parameters)");
  EXPECT_EQ(parse_error("merge_method: ties\n"
                        "models:\n"
                        "  - model: a\n"
                        "    parameters:\n"
                        "      weight:\n"
                        "        - {filter: mlp, value: 1, default: 2}\n"),
            "r.yml:6: unknown key 'default' in models[0].parameters.weight[0] (expected: "
            "filter, value)");
}

TEST(Recipe, DuplicateKey) {
  EXPECT_EQ(parse_error("merge_method: ties\nmodels: [{model: a}]\nmerge_method: linear\n"),
            "r.yml:3: key 'merge_method' appears twice in the top level");
}

TEST(Recipe, WrongTypes) {
  const std::string head = "merge_method: linear\n";
  EXPECT_EQ(parse_error(head + "models:\n  - model: a\n    parameters: {weight: heavy}\n"),
            "r.yml:4: models[0].parameters.weight must be a number, a boolean or a list of "
            "numbers (got 'heavy')");
  EXPECT_EQ(parse_error(head + "models:\n  - model: a\n    parameters:\n      weight: [1, x]\n"),
            "r.yml:5: models[0].parameters.weight: 'x' is not a number");
  EXPECT_EQ(parse_error(head + "models:\n  - model: a\n    parameters:\n      weight: []\n"),
            "r.yml:5: models[0].parameters.weight is an empty list (expected numbers)");
  EXPECT_EQ(parse_error(head + "models:\n  - model: a\n    parameters:\n"
                               "      weight: [{filter: mlp, value: 1}, 0.5]\n"),
            "r.yml:5: models[0].parameters.weight[1] must be a {filter, value} mapping like the "
            "entries before it");
  EXPECT_EQ(parse_error(head + "models:\n  - model: a\n    parameters:\n"
                               "      weight: [{filter: mlp}]\n"),
            "r.yml:5: models[0].parameters.weight[0] has no 'value'");
  EXPECT_EQ(parse_error(head + "models:\n  - model: a\n    parameters:\n"
                               "      weight:\n        - {filter: mlp, value: {a: 1}}\n"),
            "r.yml:6: models[0].parameters.weight[0].value must be a number, a boolean or a "
            "list of numbers (got 'a mapping')");
  EXPECT_EQ(parse_error(head + "models:\n  - model: a\n    parameters: [1, 2]\n"),
            "r.yml:4: models[0].parameters must be a mapping of parameter names to values");
  EXPECT_EQ(parse_error(head + "models: {model: a}\n"),
            "r.yml:2: 'models' must be a non-empty list");
  EXPECT_EQ(parse_error(head + "models: []\n"), "r.yml:2: 'models' must be a non-empty list");
  EXPECT_EQ(parse_error(head + "models:\n  - a\n"),
            "r.yml:3: models[0] must be a mapping with 'model'");
  EXPECT_EQ(parse_error(head + "models:\n  - parameters: {weight: 1}\n"),
            "r.yml:3: models[0] has no 'model'");
  EXPECT_EQ(parse_error(head + "models: [{model: a}]\ndtype: int8\n"),
            "r.yml:3: dtype 'int8' is not one of bfloat16, float16, float32");
  EXPECT_EQ(parse_error(head + "models: [{model: a}]\nout_dtype: [float32]\n"),
            "r.yml:3: out_dtype must be a string");
  EXPECT_EQ(
      parse_error(head + "slices:\n  - sources:\n      - model: a\n        layer_range: [0]\n"),
      "r.yml:5: slices[0].sources[0].layer_range must be two integers [begin, end)");
  EXPECT_EQ(parse_error(head +
                        "slices:\n  - sources:\n      - model: a\n        layer_range: [0, 1.5]\n"),
            "r.yml:5: slices[0].sources[0].layer_range must be two integers [begin, end)");
  EXPECT_EQ(parse_error(head + "slices:\n  - sources: []\n"),
            "r.yml:3: slices[0].sources must be a non-empty list");
  EXPECT_EQ(parse_error(head + "slices:\n  - base_model: a\n"),
            "r.yml:3: slices[0] has no 'sources'");
}

TEST(Recipe, ModelsAndSlicesExactlyOne) {
  EXPECT_EQ(parse_error("merge_method: linear\nmodels: [{model: a}]\n"
                        "slices: [{sources: [{model: a}]}]\n"),
            "r.yml:3: a recipe has either 'models' or 'slices', not both");
  EXPECT_EQ(parse_error("merge_method: linear\nparameters: {weight: 1}\n"),
            "r.yml:1: a recipe needs 'models' or 'slices'");
}

TEST(Recipe, MergeMethod) {
  EXPECT_EQ(parse_error("models: [{model: a}]\n"),
            "r.yml:1: missing 'merge_method' (e.g. merge_method: ties)");
  const std::string e = parse_error("models: [{model: a}]\nmerge_method: tie\n");
  EXPECT_EQ(e.rfind("r.yml:2: unknown merge_method 'tie' (expected one of: linear, slerp", 0), 0u)
      << e;
  EXPECT_NE(e.find("passthrough"), std::string::npos) << e;
}

TEST(Recipe, LoraIsRejectedClearly) {
  const std::string e1 =
      parse_error("merge_method: linear\nmodels:\n  - model: base+adapters/lora1\n");
  EXPECT_EQ(e1.rfind("r.yml:3: models[0].model 'base+adapters/lora1' names a LoRA adapter", 0), 0u)
      << e1;
  EXPECT_NE(e1.find("not supported"), std::string::npos);
  const std::string e2 = parse_error(
      "merge_method: linear\nmodels:\n  - model:\n      model: {path: a}\n      lora: {path: b}\n");
  EXPECT_EQ(e2.rfind("r.yml:4: models[0].model is written as a mapping", 0), 0u) << e2;
  EXPECT_NE(e2.find("LoRA adapters are not supported"), std::string::npos);
  const std::string e3 = parse_error("merge_method: ties\nbase_model: a+b\nmodels: [{model: c}]\n");
  EXPECT_EQ(e3.rfind("r.yml:2: base_model 'a+b' names a LoRA adapter", 0), 0u) << e3;
}

TEST(Recipe, InvalidYamlHasALine) {
  const std::string e = parse_error("merge_method: linear\nmodels: [{model: a}\n");
  EXPECT_EQ(e.rfind("r.yml:", 0), 0u) << e;
  EXPECT_NE(e.find("invalid YAML"), std::string::npos) << e;
  EXPECT_EQ(parse_error(""),
            "r.yml:1: a recipe must be a YAML mapping (merge_method, models, ...)");
  EXPECT_EQ(parse_error("- a\n- b\n"),
            "r.yml:1: a recipe must be a YAML mapping (merge_method, models, ...)");
}

TEST(Recipe, LoadRecipeReadsFileVerbatim) {
  const char* tmp = std::getenv("SHOAL_TEST_TMP");
  const std::filesystem::path dir = std::filesystem::path(tmp ? tmp : "/tmp") / "recipe_test_load";
  std::filesystem::create_directories(dir);
  const std::string text = "# a comment\nmerge_method: linear\nmodels:\n  - model: x  # kept\n";
  std::ofstream(dir / "r.yml") << text;
  const Recipe r = load_recipe(dir / "r.yml");
  EXPECT_EQ(r.text, text);
  EXPECT_EQ(r.file, dir / "r.yml");
  EXPECT_EQ(r.slices[0].sources[0].line, 4);
  EXPECT_THROW(load_recipe(dir / "missing.yml"), IoError);
  try {
    std::ofstream(dir / "bad.yml") << "merge_method: linear\nmodels: [{model: x, wieght: 1}]\n";
    load_recipe(dir / "bad.yml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(
        std::string(e.what()).rfind((dir / "bad.yml").string() + ":2: unknown key 'wieght'", 0), 0u)
        << e.what();
  }
}

// --- resolve_param ------------------------------------------------------------------------------

ParamValue gradient(std::vector<double> points) {
  return ParamValue{{{std::nullopt, points}}, 1};
}

TEST(ResolveParam, ScalarIgnoresT) {
  const ParamValue v = gradient({0.25});
  EXPECT_EQ(resolve_param(v, "x", 0.0), 0.25);
  EXPECT_EQ(resolve_param(v, "x", 0.7), 0.25);
}

TEST(ResolveParam, GradientInterpolatesLinearly) {
  // [1.0, 0.7, 0.3]: s = 2t; t = 0.25 -> s = 0.5 -> (1.0 + 0.7) / 2 = 0.85;
  // t = 0.75 -> s = 1.5 -> (0.7 + 0.3) / 2 = 0.5.
  const ParamValue v = gradient({1.0, 0.7, 0.3});
  EXPECT_DOUBLE_EQ(*resolve_param(v, "x", 0.0), 1.0);
  EXPECT_DOUBLE_EQ(*resolve_param(v, "x", 0.25), 0.85);
  EXPECT_DOUBLE_EQ(*resolve_param(v, "x", 0.5), 0.7);
  EXPECT_DOUBLE_EQ(*resolve_param(v, "x", 0.75), 0.5);
  EXPECT_DOUBLE_EQ(*resolve_param(v, "x", 1.0), 0.3);
  // [0, 1, 0, 1]: s = 3t; t = 1/3 -> point 1 exactly; t = 0.5 -> s = 1.5 -> 0.5;
  // t = 0.9 -> s = 2.7 -> 0 * 0.3 + 1 * 0.7 = 0.7.
  const ParamValue w = gradient({0, 1, 0, 1});
  EXPECT_DOUBLE_EQ(*resolve_param(w, "x", 1.0 / 3.0), 1.0);
  EXPECT_DOUBLE_EQ(*resolve_param(w, "x", 0.5), 0.5);
  EXPECT_NEAR(*resolve_param(w, "x", 0.9), 0.7, 1e-12);
  // Out of [0, 1] clamps to the ends.
  EXPECT_DOUBLE_EQ(*resolve_param(w, "x", 1.5), 1.0);
  EXPECT_DOUBLE_EQ(*resolve_param(w, "x", -1.0), 0.0);
}

TEST(ResolveParam, FiltersTakeTheFirstMatch) {
  const ParamValue v{{{std::string("mlp"), {0.6}},
                      {std::string("self_attn"), {0.0, 1.0}},
                      {std::string("*"), {0.1}}},
                     3};
  EXPECT_EQ(resolve_param(v, "model.layers.0.mlp.up_proj.weight", 0.5), 0.6);
  EXPECT_DOUBLE_EQ(*resolve_param(v, "model.layers.0.self_attn.q_proj.weight", 0.3), 0.3);
  EXPECT_EQ(resolve_param(v, "model.norm.weight", 0.5), 0.1);
  const ParamValue no_default{{{std::string("mlp"), {0.6}}}, 3};
  EXPECT_FALSE(resolve_param(no_default, "model.norm.weight", 0.5));
  const ParamValue from_yaml =
      parse_recipe(
          "merge_method: linear\nmodels: [{model: a}]\n"
          "parameters: {weight: [{filter: o_proj, value: 0.5}, {value: [1, 3]}]}\n",
          "r.yml")
          .params.at("weight");
  EXPECT_EQ(resolve_param(from_yaml, "model.layers.3.self_attn.o_proj.weight", 1.0), 0.5);
  EXPECT_DOUBLE_EQ(*resolve_param(from_yaml, "model.layers.3.mlp.up_proj.weight", 0.25), 1.5);
}

}  // namespace
}  // namespace shoal
