// Planning on tiny Hugging Face folders written by the test (safetensors bytes by hand):
// parameter precedence and gradients, layer stacking, non-layer tensor sources, missing tensors,
// arity, shapes, tied embeddings, output config, and problems reported together.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "merge/plan.h"
#include "shoal/error.h"

namespace shoal::merge {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct FakeTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype = "F32";
};

size_t dtype_bytes(const std::string& dtype) {
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "F16" || dtype == "BF16") return 2;
  return 8;  // I64, F64
}

// Writes config.json (unless null) and model.safetensors with zero-filled tensors.
void write_model(const fs::path& dir, const std::vector<FakeTensor>& tensors, const json& config) {
  fs::create_directories(dir);
  if (!config.is_null()) std::ofstream(dir / "config.json") << config.dump();
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    uint64_t n = dtype_bytes(t.dtype);
    for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
    header[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text += ' ';
  std::ofstream out(dir / "model.safetensors", std::ios::binary);
  const uint64_t len = text.size();
  out.write(reinterpret_cast<const char*>(&len), 8);  // little-endian host
  out << text << std::string(offset, '\0');
}

struct LlamaSpec {
  int n_layers = 3;
  int64_t vocab = 16;
  int64_t hidden = 8;
  bool tied = false;
  std::string dtype = "F32";
  std::vector<std::string> drop;  // tensor names to leave out
};

std::vector<FakeTensor> llama_tensors(const LlamaSpec& s) {
  std::vector<FakeTensor> t;
  t.push_back({"model.embed_tokens.weight", {s.vocab, s.hidden}, s.dtype});
  for (int i = 0; i < s.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    t.push_back({p + "input_layernorm.weight", {s.hidden}, s.dtype});
    t.push_back({p + "self_attn.q_proj.weight", {s.hidden, s.hidden}, s.dtype});
    t.push_back({p + "mlp.up_proj.weight", {2 * s.hidden, s.hidden}, s.dtype});
  }
  t.push_back({"model.norm.weight", {s.hidden}, s.dtype});
  if (!s.tied) t.push_back({"lm_head.weight", {s.vocab, s.hidden}, s.dtype});
  std::erase_if(t, [&](const FakeTensor& x) {
    return std::find(s.drop.begin(), s.drop.end(), x.name) != s.drop.end();
  });
  return t;
}

json llama_config(const LlamaSpec& s) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"num_hidden_layers", s.n_layers},
          {"hidden_size", s.hidden},
          {"vocab_size", s.vocab},
          {"tie_word_embeddings", s.tied},
          {"torch_dtype", "float32"}};
}

class PlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("SHOAL_TEST_TMP");
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(tmp ? tmp : "/tmp") / "plan_test" / info->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }

  // A Llama-shaped model folder `name` under the test folder; returns its absolute path.
  std::string model(const std::string& name, const LlamaSpec& spec = {}) {
    write_model(dir_ / name, llama_tensors(spec), llama_config(spec));
    return (dir_ / name).string();
  }

  // Replaces @name@ with the absolute path of model folder `name`.
  std::string paths(std::string yaml) const {
    size_t open;
    while ((open = yaml.find('@')) != std::string::npos) {
      const size_t close = yaml.find('@', open + 1);
      const std::string name = yaml.substr(open + 1, close - open - 1);
      yaml.replace(open, close - open + 1, (dir_ / name).string());
    }
    return yaml;
  }

  MergePlan plan(const std::string& yaml) {
    return plan_merge(parse_recipe(paths(yaml), "r.yml"), dir_);
  }

  std::string plan_error(const std::string& yaml) {
    try {
      plan(yaml);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "(no error)";
  }

  static const TensorTask& task(const MergePlan& p, const std::string& name) {
    for (const auto& t : p.tasks) {
      if (t.name == name) return t;
    }
    throw std::runtime_error("no task " + name);
  }

  int index_of(const MergePlan& p, const std::string& name) const {
    for (size_t i = 0; i < p.model_paths.size(); ++i) {
      if (fs::weakly_canonical(p.model_paths[i]) == fs::weakly_canonical(dir_ / name)) {
        return static_cast<int>(i);
      }
    }
    return -1;
  }

  static bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  }

  fs::path dir_;
};

std::vector<std::string> names(const MergePlan& p) {
  std::vector<std::string> out;
  for (const auto& t : p.tasks) out.push_back(t.name);
  return out;
}

TEST_F(PlanTest, LinearModelsFormFollowsBaseOrder) {
  model("a");
  model("b");
  const MergePlan p = plan(
      "merge_method: linear\n"
      "models:\n"
      "  - model: @a@\n"
      "    parameters: {weight: 0.25}\n"
      "  - model: @b@\n"
      "    parameters: {weight: 0.75}\n");
  const auto expected = llama_tensors({});
  ASSERT_EQ(p.tasks.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(p.tasks[i].name, expected[i].name);
  const int a = index_of(p, "a"), b = index_of(p, "b");
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  EXPECT_EQ(p.models.size(), 2u);
  EXPECT_EQ(p.base_model, -1);
  const TensorTask& q = task(p, "model.layers.1.self_attn.q_proj.weight");
  EXPECT_EQ(q.method, Method::kLinear);
  EXPECT_FALSE(q.base);
  ASSERT_EQ(q.inputs.size(), 2u);
  EXPECT_EQ(q.inputs[0].model, a);
  EXPECT_EQ(q.inputs[0].tensor, "model.layers.1.self_attn.q_proj.weight");
  EXPECT_EQ(q.inputs[0].params.weight, 0.25);
  EXPECT_EQ(q.inputs[1].model, b);
  EXPECT_EQ(q.inputs[1].params.weight, 0.75);
  EXPECT_TRUE(q.params.normalize);  // linear's default
  EXPECT_EQ(q.shape, (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(q.dtype, DType::kF32);
  EXPECT_FALSE(q.copy_only);
  EXPECT_EQ(p.out_layers, 3);
  EXPECT_EQ(p.out_config["num_hidden_layers"], 3);
  EXPECT_EQ(p.out_config["torch_dtype"], "float32");
  EXPECT_EQ(p.tokenizer_model, a);
  EXPECT_TRUE(p.warnings.empty());
}

TEST_F(PlanTest, RelativePathsTryTheRecipeFolder) {
  model("rel_model");
  const Recipe r = parse_recipe(
      "merge_method: linear\nmodels: [{model: rel_model, parameters: {weight: 1}}]\n", "r.yml");
  const MergePlan p = plan_merge(r, dir_);
  ASSERT_EQ(p.model_paths.size(), 1u);
  EXPECT_EQ(fs::weakly_canonical(p.model_paths[0]), fs::weakly_canonical(dir_ / "rel_model"));
  const std::string e = [&] {
    try {
      plan_merge(parse_recipe("merge_method: linear\nmodels:\n  - model: nowhere\n", "r.yml"),
                 dir_);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  EXPECT_TRUE(has(e, "r.yml:3: model 'nowhere' not found")) << e;
}

TEST_F(PlanTest, ParameterPrecedenceSourceSliceTopDefault) {
  model("base");
  model("x");
  model("y");
  const MergePlan p = plan(
      "merge_method: della\n"
      "base_model: @base@\n"
      "slices:\n"
      "  - sources:\n"
      "      - model: @base@\n"
      "        layer_range: [0, 3]\n"
      "      - model: @x@\n"
      "        layer_range: [0, 3]\n"
      "        parameters: {density: 0.5, weight: 2}\n"
      "      - model: @y@\n"
      "        layer_range: [0, 3]\n"
      "    parameters: {density: 0.6, epsilon: 0.1, rescale: false}\n"
      "parameters: {density: 0.7, epsilon: 0.2, weight: 1, lambda: 1.5}\n");
  const int x = index_of(p, "x"), y = index_of(p, "y"), base = index_of(p, "base");
  const TensorTask& t = task(p, "model.layers.0.mlp.up_proj.weight");
  ASSERT_TRUE(t.base);
  EXPECT_EQ(t.base->model, base);
  EXPECT_EQ(p.base_model, base);
  ASSERT_EQ(t.inputs.size(), 2u);
  EXPECT_EQ(t.inputs[0].model, x);
  EXPECT_EQ(t.inputs[0].params.density, 0.5);  // source
  EXPECT_EQ(t.inputs[0].params.weight, 2.0);   // source
  EXPECT_EQ(t.inputs[0].params.epsilon, 0.1);  // slice
  EXPECT_EQ(t.inputs[1].model, y);
  EXPECT_EQ(t.inputs[1].params.density, 0.6);  // slice beats top level
  EXPECT_EQ(t.inputs[1].params.weight, 1.0);   // top level
  EXPECT_EQ(t.inputs[1].params.gamma, 0.01);   // untouched default
  EXPECT_EQ(t.params.lambda, 1.5);             // top level
  EXPECT_FALSE(t.params.rescale);              // slice beats della's default (true)
  EXPECT_TRUE(t.params.normalize);             // della's default
}

TEST_F(PlanTest, FilterThatMissesFallsThroughToNextLevel) {
  model("a");
  model("b");
  const MergePlan p = plan(
      "merge_method: linear\n"
      "models:\n"
      "  - model: @a@\n"
      "    parameters: {weight: [{filter: mlp, value: 3}]}\n"
      "  - model: @b@\n"
      "parameters: {weight: 1}\n");
  EXPECT_EQ(task(p, "model.layers.0.mlp.up_proj.weight").inputs[0].params.weight, 3.0);
  EXPECT_EQ(task(p, "model.layers.0.self_attn.q_proj.weight").inputs[0].params.weight, 1.0);
  EXPECT_EQ(task(p, "model.layers.0.self_attn.q_proj.weight").inputs[1].params.weight, 1.0);
}

TEST_F(PlanTest, MethodDefaults) {
  model("base");
  model("x");
  const auto global = [&](const std::string& method) {
    const MergePlan p = plan("merge_method: " + method +
                             "\nbase_model: @base@\nmodels:\n  - model: @x@\n"
                             "    parameters: {weight: 1, density: 0.5}\n");
    return p.tasks.front().params;
  };
  EXPECT_FALSE(global("task_arithmetic").normalize);
  EXPECT_FALSE(global("task_arithmetic").rescale);
  EXPECT_TRUE(global("ties").normalize);
  EXPECT_FALSE(global("ties").rescale);
  EXPECT_FALSE(global("dare_ties").normalize);
  EXPECT_TRUE(global("dare_ties").rescale);
  EXPECT_FALSE(global("dare_linear").normalize);
  EXPECT_TRUE(global("dare_linear").rescale);
  EXPECT_FALSE(global("breadcrumbs").normalize);
  EXPECT_FALSE(global("breadcrumbs_ties").rescale);
  EXPECT_TRUE(global("della").normalize);
  EXPECT_TRUE(global("della").rescale);
  EXPECT_FALSE(global("della_linear").normalize);
  EXPECT_TRUE(global("della_linear").rescale);
  EXPECT_EQ(global("ties").lambda, 1.0);
  const MergePlan p = plan(
      "merge_method: ties\nbase_model: @base@\nmodels:\n  - model: @x@\n"
      "    parameters: {weight: 1}\n");
  EXPECT_EQ(p.tasks.front().inputs[0].params.density, 1.0);
  EXPECT_EQ(p.tasks.front().inputs[0].params.epsilon, 0.15);
}

TEST_F(PlanTest, GradientPositionPerLayerAcrossSlices) {
  model("a", {.n_layers = 5});
  model("b", {.n_layers = 5});
  const MergePlan p = plan(
      "merge_method: linear\n"
      "slices:\n"
      "  - sources:\n"
      "      - {model: @a@, layer_range: [0, 3]}\n"
      "      - {model: @b@, layer_range: [0, 3]}\n"
      "  - sources:\n"
      "      - {model: @a@, layer_range: [3, 5]}\n"
      "      - {model: @b@, layer_range: [3, 5]}\n"
      "  - sources:\n"
      "      - {model: @a@, layer_range: [2, 3]}\n"
      "      - {model: @b@, layer_range: [2, 3]}\n"
      "parameters: {weight: [0, 1]}\n");
  // Slice 0 (3 layers): t = 0, 0.5, 1; slice 1 (2 layers): t = 0, 1; slice 2 (1 layer): t = 1.
  const double expected[] = {0, 0.5, 1, 0, 1, 1};
  for (int k = 0; k < 6; ++k) {
    const std::string name = "model.layers." + std::to_string(k) + ".mlp.up_proj.weight";
    EXPECT_DOUBLE_EQ(task(p, name).inputs[0].params.weight, expected[k]) << name;
  }
  EXPECT_EQ(task(p, "model.layers.5.mlp.up_proj.weight").inputs[1].tensor,
            "model.layers.2.mlp.up_proj.weight");
  // Non-layer tensors use t = 0 (mergekit's quirk), wherever they sit.
  EXPECT_EQ(task(p, "model.embed_tokens.weight").inputs[0].params.weight, 0.0);
  EXPECT_EQ(task(p, "model.norm.weight").inputs[0].params.weight, 0.0);
  EXPECT_EQ(task(p, "lm_head.weight").inputs[0].params.weight, 0.0);
  EXPECT_EQ(p.out_layers, 6);
}

TEST_F(PlanTest, ModelsFormGradientSpansAllLayers) {
  model("base", {.n_layers = 5});
  model("x", {.n_layers = 5});
  const MergePlan p = plan(
      "merge_method: ties\nbase_model: @base@\nmodels:\n"
      "  - model: @x@\n"
      "    parameters: {weight: 1, density: [1.0, 0.7, 0.3]}\n");
  // t = j / 4; s = 2t: layer 1 -> s = 0.5 -> 0.85; layer 3 -> s = 1.5 -> 0.5.
  const double expected[] = {1.0, 0.85, 0.7, 0.5, 0.3};
  for (int j = 0; j < 5; ++j) {
    const std::string name = "model.layers." + std::to_string(j) + ".self_attn.q_proj.weight";
    EXPECT_NEAR(task(p, name).inputs[0].params.density, expected[j], 1e-12) << name;
  }
  EXPECT_EQ(task(p, "lm_head.weight").inputs[0].params.density, 1.0);
}

TEST_F(PlanTest, PassthroughStacksLayers) {
  model("a", {.n_layers = 3});
  model("b", {.n_layers = 4});
  const MergePlan p = plan(
      "merge_method: passthrough\n"
      "slices:\n"
      "  - sources: [{model: @a@, layer_range: [0, 2]}]\n"
      "  - sources:\n"
      "      - model: @b@\n"
      "        layer_range: [1, 4]\n"
      "        parameters: {scale: [{filter: q_proj, value: 0.5}, {value: 1.0}]}\n");
  const int a = index_of(p, "a"), b = index_of(p, "b");
  std::vector<std::string> expected = {"model.embed_tokens.weight"};
  for (int k = 0; k < 5; ++k) {
    const std::string pre = "model.layers." + std::to_string(k) + ".";
    for (const char* rest :
         {"input_layernorm.weight", "self_attn.q_proj.weight", "mlp.up_proj.weight"}) {
      expected.push_back(pre + rest);
    }
  }
  expected.push_back("model.norm.weight");
  expected.push_back("lm_head.weight");
  EXPECT_EQ(names(p), expected);
  EXPECT_EQ(p.out_layers, 5);
  EXPECT_EQ(p.out_config["num_hidden_layers"], 5);
  // Output layer 3 is b's layer 2; pre tensors from a, post tensors from b.
  const TensorTask& q3 = task(p, "model.layers.3.self_attn.q_proj.weight");
  ASSERT_EQ(q3.inputs.size(), 1u);
  EXPECT_EQ(q3.inputs[0].model, b);
  EXPECT_EQ(q3.inputs[0].tensor, "model.layers.2.self_attn.q_proj.weight");
  EXPECT_EQ(q3.inputs[0].params.scale, 0.5);
  EXPECT_EQ(task(p, "model.layers.3.mlp.up_proj.weight").inputs[0].params.scale, 1.0);
  EXPECT_EQ(task(p, "model.layers.1.mlp.up_proj.weight").inputs[0].model, a);
  EXPECT_EQ(task(p, "model.layers.1.mlp.up_proj.weight").inputs[0].tensor,
            "model.layers.1.mlp.up_proj.weight");
  EXPECT_EQ(task(p, "model.embed_tokens.weight").inputs[0].model, a);
  EXPECT_EQ(task(p, "model.norm.weight").inputs[0].model, b);
  EXPECT_EQ(task(p, "lm_head.weight").inputs[0].model, b);
  EXPECT_FALSE(task(p, "lm_head.weight").base);
  // The config is a's (the first model's), with the new layer count.
  EXPECT_EQ(p.tokenizer_model, a);
}

TEST_F(PlanTest, LayerRangeAndLayerCountProblems) {
  model("a", {.n_layers = 3});
  model("b", {.n_layers = 4});
  EXPECT_EQ(plan_error("merge_method: passthrough\nslices:\n"
                       "  - sources: [{model: @a@, layer_range: [1, 4]}]\n"),
            "r.yml:3: slices[0]: layer_range [1, 4] does not fit model '" + (dir_ / "a").string() +
                "', which has 3 layers (need 0 <= begin < end <= 3)");
  const std::string e = plan_error(
      "merge_method: linear\nslices:\n"
      "  - sources:\n"
      "      - {model: @a@, layer_range: [0, 2]}\n"
      "      - {model: @b@, layer_range: [0, 3]}\n");
  EXPECT_TRUE(has(e, "r.yml:3: slices[0]: sources cover different numbers of layers")) << e;
  const std::string m = plan_error(
      "merge_method: linear\nmodels:\n  - model: @a@\n  - model: @b@\nparameters: {weight: 1}\n");
  EXPECT_TRUE(has(m, "models have different layer counts")) << m;
}

// A missing tensor is an error for every method, as in mergekit: merging it from fewer models
// would silently change the recipe's meaning for that tensor.
TEST_F(PlanTest, MissingTensorIsAnErrorForEveryMethod) {
  model("base");
  model("x", {.drop = {"model.layers.1.mlp.up_proj.weight"}});
  model("y");
  EXPECT_EQ(plan_error("merge_method: task_arithmetic\nbase_model: @base@\nmodels:\n"
                       "  - model: @x@\n  - model: @y@\nparameters: {weight: 0.5}\n"),
            "r.yml:4: model '" + (dir_ / "x").string() +
                "' has no tensor model.layers.1.mlp.up_proj.weight; task_arithmetic needs every "
                "tensor in every model it merges");

  const std::string e = plan_error(
      "merge_method: linear\nmodels:\n  - model: @base@\n  - model: @x@\n"
      "parameters: {weight: 0.5}\n");
  EXPECT_EQ(e, "r.yml:4: model '" + (dir_ / "x").string() +
                   "' has no tensor model.layers.1.mlp.up_proj.weight; linear needs every tensor "
                   "in every model it merges");
}

TEST_F(PlanTest, ArityAndBaseRequirements) {
  model("a");
  model("b");
  model("c");
  EXPECT_TRUE(
      has(plan_error("merge_method: slerp\nbase_model: @a@\nmodels:\n"
                     "  - model: @a@\n  - model: @b@\n  - model: @c@\nparameters: {t: 0.5}\n"),
          "slerp merges exactly 2 models, one of them the base_model (models has 3)"));
  EXPECT_TRUE(has(plan_error("merge_method: slerp\nmodels:\n  - model: @a@\n  - model: @b@\n"
                             "parameters: {t: 0.5}\n"),
                  "r.yml: slerp needs a base_model"));
  EXPECT_TRUE(has(plan_error("merge_method: ties\nmodels:\n  - model: @a@\n"
                             "parameters: {weight: 1}\n"),
                  "r.yml: ties needs a base_model"));
  EXPECT_TRUE(has(plan_error("merge_method: nuslerp\nmodels:\n  - model: @a@\n"
                             "parameters: {weight: 1}\n"),
                  "nuslerp merges exactly 2 models besides the optional base_model"));
  EXPECT_TRUE(
      has(plan_error("merge_method: model_stock\nbase_model: @a@\nmodels:\n  - model: @b@\n"),
          "model_stock needs the base_model and at least 2 other models"));
  EXPECT_TRUE(
      has(plan_error("merge_method: passthrough\nmodels:\n  - model: @a@\n  - model: @b@\n"),
          "passthrough takes exactly one model"));
  EXPECT_TRUE(has(
      plan_error(
          "merge_method: passthrough\nslices:\n"
          "  - sources: [{model: @a@, layer_range: [0, 1]}, {model: @b@, layer_range: [0, 1]}]\n"),
      "r.yml:3: passthrough takes exactly one source per slice (slices[0] has 2)"));
  EXPECT_TRUE(has(plan_error("merge_method: ties\nbase_model: @c@\nslices:\n"
                             "  - sources: [{model: @a@, layer_range: [0, 1]}]\n"
                             "parameters: {weight: 1}\n"),
                  "r.yml:4: slices[0]: base_model '" + (dir_ / "c").string() +
                      "' is not one of the slice's sources"));
  EXPECT_TRUE(has(plan_error("merge_method: linear\nmodels:\n  - model: @a@\n  - model: @a@\n"
                             "parameters: {weight: 1}\n"),
                  "r.yml:4: models[1]: model '" + (dir_ / "a").string() + "' is listed twice"));
}

TEST_F(PlanTest, SlerpAndNuslerpRoles) {
  model("a");
  model("b");
  model("c");
  const MergePlan s = plan(
      "merge_method: slerp\nbase_model: @b@\nslices:\n"
      "  - sources:\n      - {model: @a@, layer_range: [0, 3]}\n      - {model: @b@, layer_range: "
      "[0, 3]}\n"
      "parameters:\n  t: [{filter: self_attn, value: [0, 1]}, {value: 0.3}]\n");
  const TensorTask& q = task(s, "model.layers.1.self_attn.q_proj.weight");
  ASSERT_TRUE(q.base);
  EXPECT_EQ(q.base->model, index_of(s, "b"));
  ASSERT_EQ(q.inputs.size(), 1u);
  EXPECT_EQ(q.inputs[0].model, index_of(s, "a"));
  EXPECT_DOUBLE_EQ(q.params.t, 0.5);
  EXPECT_DOUBLE_EQ(task(s, "model.layers.1.mlp.up_proj.weight").params.t, 0.3);

  // slerp without t anywhere.
  EXPECT_TRUE(has(plan_error("merge_method: slerp\nbase_model: @a@\nmodels:\n  - model: @b@\n"),
                  "slerp needs parameter 't'"));

  const MergePlan n = plan(
      "merge_method: nuslerp\nbase_model: @c@\nmodels:\n"
      "  - model: @a@\n    parameters: {weight: 1}\n  - model: @b@\n    parameters: {weight: 3}\n"
      "parameters: {nuslerp_flatten: false, nuslerp_row_wise: true}\n");
  const TensorTask& u = task(n, "model.norm.weight");
  ASSERT_TRUE(u.base);
  EXPECT_EQ(u.base->model, index_of(n, "c"));
  ASSERT_EQ(u.inputs.size(), 2u);
  EXPECT_EQ(u.inputs[1].params.weight, 3.0);
  EXPECT_FALSE(u.params.nuslerp_flatten);
  EXPECT_TRUE(u.params.nuslerp_row_wise);

  const MergePlan n2 = plan(
      "merge_method: nuslerp\nmodels:\n  - model: @a@\n  - model: @b@\n"
      "parameters: {weight: 1}\n");
  EXPECT_FALSE(n2.tasks.front().base);
  EXPECT_TRUE(n2.tasks.front().params.nuslerp_flatten);
}

TEST_F(PlanTest, ModelStockAndLinearBase) {
  model("a");
  model("b");
  model("c");
  const MergePlan m = plan(
      "merge_method: model_stock\nbase_model: @c@\nmodels:\n"
      "  - model: @a@\n  - model: @b@\nparameters: {filter_wise: true}\n");
  EXPECT_EQ(m.tasks.front().base->model, index_of(m, "c"));
  EXPECT_EQ(m.tasks.front().inputs.size(), 2u);
  EXPECT_TRUE(m.tasks.front().params.filter_wise);
  EXPECT_EQ(m.models.size(), 3u);

  // linear: a listed base is an ordinary input; an unlisted one takes no part.
  const MergePlan l = plan(
      "merge_method: linear\nbase_model: @a@\nmodels:\n"
      "  - model: @b@\n  - model: @a@\nparameters: {weight: 1}\n");
  EXPECT_FALSE(l.tasks.front().base);
  ASSERT_EQ(l.tasks.front().inputs.size(), 2u);
  EXPECT_EQ(l.tasks.front().inputs[1].model, index_of(l, "a"));
  EXPECT_EQ(l.tokenizer_model, index_of(l, "a"));  // the base's
  const MergePlan l2 = plan(
      "merge_method: linear\nbase_model: @c@\nmodels:\n"
      "  - model: @b@\nparameters: {weight: 1}\n");
  EXPECT_EQ(l2.tasks.front().inputs.size(), 1u);
  ASSERT_EQ(l2.warnings.size(), 1u);
  EXPECT_TRUE(has(l2.warnings[0], "linear does not use a base")) << l2.warnings[0];
}

TEST_F(PlanTest, UnusedAndMisplacedParametersAreErrors) {
  model("base");
  model("x");
  EXPECT_EQ(plan_error("merge_method: ties\nbase_model: @base@\nmodels:\n"
                       "  - model: @x@\n"
                       "    parameters:\n"
                       "      weight: 1\n"
                       "      gamma: 0.1\n"),
            "r.yml:7: parameter 'gamma' is not used by ties (ties accepts: weight, density, "
            "normalize, rescale, lambda, int8_mask)");
  EXPECT_EQ(plan_error("merge_method: linear\nmodels:\n"
                       "  - model: @x@\n"
                       "    parameters: {weight: 1, normalize: false}\n"),
            "r.yml:4: parameter 'normalize' applies to the whole merge in linear; set it in the "
            "top-level or slice parameters, not per model");
  EXPECT_EQ(plan_error("merge_method: passthrough\nmodels: [{model: @x@}]\nparameters: {t: 0.5}\n"),
            "r.yml:3: parameter 't' is not used by passthrough (passthrough accepts: scale)");
}

TEST_F(PlanTest, ValueRanges) {
  model("base");
  model("x");
  const std::string head = "base_model: @base@\nmodels:\n  - model: @x@\n    parameters:\n";
  EXPECT_TRUE(has(
      plan_error("merge_method: ties\n" + head + "      weight: 1\n      density: [0.5, 1.2]\n"),
      "r.yml:7: density 1.2 is outside [0, 1]"));
  EXPECT_TRUE(
      has(plan_error("merge_method: breadcrumbs\n" + head + "      weight: 1\n      gamma: -0.1\n"),
          "r.yml:7: gamma -0.1 is outside [0, 1]"));
  EXPECT_TRUE(has(plan_error("merge_method: slerp\nbase_model: @base@\nmodels: [{model: @x@}]\n"
                             "parameters: {t: 1.5}\n"),
                  "r.yml:4: t 1.5 is outside [0, 1]"));
  EXPECT_TRUE(has(plan_error("merge_method: ties\n" + head +
                             "      weight: 1\n"
                             "parameters: {normalize: 2}\n"),
                  "r.yml:7: normalize must be true or false (got 2)"));
  // della: density 0.9 +- 0.15 leaves (0, 1); density 1 means no sparsification and passes.
  const std::string della = plan_error("merge_method: della\n" + head +
                                       "      weight: 1\n"
                                       "      density: 0.9\n");
  EXPECT_TRUE(has(della, "r.yml:7: model '" + (dir_ / "x").string() +
                             "': della needs density - epsilon and density + epsilon strictly "
                             "inside (0, 1); density 0.9 with epsilon 0.15"))
      << della;
  EXPECT_NO_THROW(plan("merge_method: della\n" + head + "      weight: 1\n      density: 1\n"));
  EXPECT_NO_THROW(plan("merge_method: della\n" + head + "      weight: 1\n      density: 0.5\n"));
  // ties: int(0.1 * 8) = 0 for the 8-element norms; int(0.1 * 64) = 6 for q_proj.
  const std::string ties = plan_error("merge_method: ties\n" + head +
                                      "      weight: 1\n"
                                      "      density: 0.1\n");
  EXPECT_EQ(ties,
            "r.yml:7: model '" + (dir_ / "x").string() +
                "': density 0.1 keeps no element of tensor model.layers.0.input_layernorm.weight "
                "(8 elements); ties needs int(density * elements) >= 1");
}

TEST_F(PlanTest, MissingWeight) {
  model("a");
  model("b");
  EXPECT_EQ(plan_error("merge_method: linear\nmodels:\n"
                       "  - model: @a@\n    parameters: {weight: 1}\n"
                       "  - model: @b@\n    parameters: {weight: [{filter: mlp, value: 1}]}\n"),
            "r.yml:5: model '" + (dir_ / "b").string() +
                "' has no weight for tensor model.embed_tokens.weight; linear needs one for every "
                "merged model (set 'weight' in its parameters or at the top level)");
}

TEST_F(PlanTest, ManyProblemsReportedTogether) {
  model("base");
  model("x", {.drop = {"model.norm.weight"}});
  const std::string e = plan_error(
      "merge_method: linear\n"
      "models:\n"
      "  - model: @base@\n"
      "    parameters: {weight: 1, densty: 0.5}\n"
      "  - model: @x@\n"
      "    parameters: {weight: 1}\n"
      "tokenizer_source: union\n"
      "parameters: {normalize: 3}\n");
  std::vector<std::string> lines;
  for (size_t start = 0; start <= e.size();) {
    const size_t nl = e.find('\n', start);
    lines.push_back(e.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  ASSERT_EQ(lines.size(), 4u) << e;
  EXPECT_TRUE(has(e, "r.yml:4: parameter 'densty' is not used by linear")) << e;
  EXPECT_TRUE(has(e, "r.yml:8: normalize must be true or false (got 3)")) << e;
  EXPECT_TRUE(
      has(e, "r.yml: tokenizer_source: union is not supported yet; use 'base' or a model path"))
      << e;
  EXPECT_TRUE(
      has(e, "r.yml:5: model '" + (dir_ / "x").string() + "' has no tensor model.norm.weight"))
      << e;
}

TEST_F(PlanTest, EmbeddingShapesForLinear) {
  model("a", {.vocab = 18});
  model("b", {.vocab = 16});
  const MergePlan p = plan(
      "merge_method: linear\nmodels:\n  - model: @a@\n  - model: @b@\n"
      "parameters: {weight: 1}\n");
  EXPECT_EQ(task(p, "model.embed_tokens.weight").shape, (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(task(p, "lm_head.weight").shape, (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(p.out_config["vocab_size"], 16);  // a (the reference) had 18
  ASSERT_EQ(p.warnings.size(), 2u);
  EXPECT_TRUE(has(p.warnings[0], "model.embed_tokens.weight keeps 16 rows")) << p.warnings[0];
  EXPECT_TRUE(has(p.warnings[0], (dir_ / "a").string() + "' (18)")) << p.warnings[0];

  // The reference already has the smaller vocabulary: config unchanged, still a warning.
  const MergePlan q = plan(
      "merge_method: linear\nmodels:\n  - model: @b@\n  - model: @a@\n"
      "parameters: {weight: 1}\n");
  EXPECT_EQ(q.out_config["vocab_size"], 16);
  EXPECT_EQ(q.warnings.size(), 2u);

  // Other tensors must agree.
  model("wide", {.hidden = 4});
  const std::string e = plan_error(
      "merge_method: linear\nmodels:\n  - model: @b@\n  - model: @wide@\n"
      "parameters: {weight: 1}\n");
  EXPECT_TRUE(has(e, "r.yml: tensor model.layers.0.input_layernorm.weight: shapes differ ('" +
                         (dir_ / "b").string() + "' [8], '" + (dir_ / "wide").string() +
                         "' [4]); linear needs equal shapes"))
      << e;
}

TEST_F(PlanTest, EmbeddingShapesForTaskVectors) {
  model("base", {.vocab = 16});
  model("big", {.vocab = 18});
  model("small", {.vocab = 14});
  const MergePlan p = plan(
      "merge_method: task_arithmetic\nbase_model: @base@\nmodels:\n"
      "  - model: @big@\n  - model: @small@\nparameters: {weight: 1}\n");
  const TensorTask& e = task(p, "model.embed_tokens.weight");
  EXPECT_EQ(e.shape, (std::vector<int64_t>{16, 8}));
  ASSERT_EQ(e.inputs.size(), 1u);  // big is read top-left; small is left out
  EXPECT_EQ(e.inputs[0].model, index_of(p, "big"));
  EXPECT_EQ(p.out_config["vocab_size"], 16);
  int left_out = 0, truncated = 0;
  for (const auto& w : p.warnings) {
    left_out += has(w, "small' has shape [14, 8] F32, the base has shape [16, 8] F32");
    truncated += has(w, "keeps 16 rows");
  }
  EXPECT_EQ(left_out, 2);  // embed_tokens and lm_head
  EXPECT_EQ(truncated, 2);

  // A non-embedding mismatch is skipped with a warning too.
  model("wide", {.hidden = 4});
  const MergePlan q = plan(
      "merge_method: ties\nbase_model: @base@\nmodels:\n"
      "  - model: @wide@\nparameters: {weight: 1}\n");
  EXPECT_TRUE(task(q, "model.norm.weight").inputs.empty());
  EXPECT_EQ(task(q, "model.norm.weight").shape, (std::vector<int64_t>{8}));
}

TEST_F(PlanTest, TiedEmbeddings) {
  model("untied");
  model("tied", {.tied = true});
  // The output follows the base: it has lm_head, and the tied model gives its embedding.
  const MergePlan p = plan(
      "merge_method: task_arithmetic\nbase_model: @untied@\nmodels:\n"
      "  - model: @tied@\nparameters: {weight: 1}\n");
  const TensorTask& head = task(p, "lm_head.weight");
  ASSERT_EQ(head.inputs.size(), 1u);
  EXPECT_EQ(head.inputs[0].model, index_of(p, "tied"));
  EXPECT_EQ(head.inputs[0].tensor, "model.embed_tokens.weight");
  EXPECT_EQ(head.base->tensor, "lm_head.weight");
  EXPECT_TRUE(p.warnings.empty());
  EXPECT_EQ(p.out_config["tie_word_embeddings"], false);

  // A tied base: no lm_head in the output, the untied model's lm_head is not used.
  const MergePlan q = plan(
      "merge_method: linear\nbase_model: @tied@\nmodels:\n"
      "  - model: @tied@\n  - model: @untied@\nparameters: {weight: 1}\n");
  for (const auto& t : q.tasks) EXPECT_NE(t.name, "lm_head.weight");
  EXPECT_EQ(q.tasks.size(), llama_tensors({.tied = true}).size());
  EXPECT_EQ(q.out_config["tie_word_embeddings"], true);
}

TEST_F(PlanTest, OutputDtypeAndConfig) {
  model("a", {.dtype = "BF16"});
  model("b", {.dtype = "F16"});
  const std::string head =
      "merge_method: linear\nmodels:\n  - model: @a@\n  - model: @b@\n"
      "parameters: {weight: 1}\n";
  const MergePlan p = plan(head);
  EXPECT_EQ(p.tasks.front().dtype, DType::kBF16);  // the first model's
  EXPECT_EQ(p.out_dtype, DType::kBF16);
  EXPECT_EQ(p.out_config["torch_dtype"], "bfloat16");
  EXPECT_EQ(p.out_config["hidden_size"], 8);
  const MergePlan q = plan(head + "dtype: float32\n");
  EXPECT_EQ(q.tasks.front().dtype, DType::kF32);
  EXPECT_EQ(q.out_config["torch_dtype"], "float32");
  const MergePlan r = plan(head + "dtype: float32\nout_dtype: float16\n");
  EXPECT_EQ(r.tasks.front().dtype, DType::kF16);
  EXPECT_EQ(r.out_dtype, DType::kF16);
}

TEST_F(PlanTest, IntegerTensorsAreCopied) {
  auto tensors = llama_tensors({});
  tensors.insert(tensors.begin() + 1, FakeTensor{"model.layers.0.attn.position_ids", {4}, "I64"});
  write_model(dir_ / "a", tensors, llama_config({}));
  model("b");
  const MergePlan p = plan(
      "merge_method: linear\nmodels:\n  - model: @a@\n  - model: @b@\n"
      "parameters: {weight: 1}\ndtype: bfloat16\n");
  const TensorTask& t = task(p, "model.layers.0.attn.position_ids");
  EXPECT_TRUE(t.copy_only);
  EXPECT_EQ(t.dtype, DType::kI64);
  ASSERT_EQ(t.inputs.size(), 1u);
  EXPECT_EQ(t.inputs[0].model, index_of(p, "a"));
}

TEST_F(PlanTest, GptStyleLayerKeyAndNoConfig) {
  write_model(dir_ / "g",
              {{"transformer.wte.weight", {16, 8}},
               {"transformer.h.0.attn.c_attn.weight", {8, 24}},
               {"transformer.h.1.attn.c_attn.weight", {8, 24}},
               {"transformer.ln_f.weight", {8}}},
              {{"model_type", "gpt2"}, {"n_layer", 2}, {"vocab_size", 16}});
  const MergePlan p = plan(
      "merge_method: passthrough\nslices:\n"
      "  - sources: [{model: @g@, layer_range: [0, 2]}]\n"
      "  - sources: [{model: @g@, layer_range: [1, 2]}]\n");
  EXPECT_EQ(p.out_config["n_layer"], 3);
  EXPECT_FALSE(p.out_config.contains("num_hidden_layers"));
  EXPECT_EQ(names(p), (std::vector<std::string>{
                          "transformer.wte.weight", "transformer.h.0.attn.c_attn.weight",
                          "transformer.h.1.attn.c_attn.weight",
                          "transformer.h.2.attn.c_attn.weight", "transformer.ln_f.weight"}));
  EXPECT_EQ(task(p, "transformer.h.2.attn.c_attn.weight").inputs[0].tensor,
            "transformer.h.1.attn.c_attn.weight");

  write_model(dir_ / "n", llama_tensors({}), nullptr);
  const MergePlan q =
      plan("merge_method: linear\nmodels: [{model: @n@, parameters: {weight: 1}}]\n");
  EXPECT_EQ(q.out_config["num_hidden_layers"], 3);
  EXPECT_EQ(q.out_config["torch_dtype"], "float32");
}

TEST_F(PlanTest, TokenizerSource) {
  model("a");
  model("b");
  model("tok");
  const MergePlan p = plan(
      "merge_method: linear\nmodels:\n  - model: @a@\n  - model: @b@\n"
      "parameters: {weight: 1}\ntokenizer_source: @b@\n");
  EXPECT_EQ(p.tokenizer_model, index_of(p, "b"));
  const MergePlan q = plan(
      "merge_method: linear\nmodels:\n  - model: @a@\n"
      "parameters: {weight: 1}\ntokenizer_source: @tok@\n");
  EXPECT_EQ(q.models.size(), 2u);
  EXPECT_EQ(q.tokenizer_model, index_of(q, "tok"));
  for (const auto& t : q.tasks) EXPECT_EQ(t.inputs[0].model, index_of(q, "a"));
  EXPECT_TRUE(has(plan_error("merge_method: linear\nmodels:\n  - model: @a@\n"
                             "parameters: {weight: 1}\ntokenizer_source: @nothing@\n"),
                  "tokenizer_source '" + (dir_ / "nothing").string() +
                      "' is neither 'base' nor a model folder that exists"));
}

TEST_F(PlanTest, ModelsThatDoNotOpenAreReportedWithOtherProblems) {
  model("a");
  fs::create_directories(dir_ / "empty");
  std::ofstream(dir_ / "empty" / "config.json") << "{not json";
  const std::string e = plan_error(
      "merge_method: ties\n"
      "base_model: @a@\n"
      "models:\n"
      "  - model: @missing@\n"
      "    parameters: {weight: 1, gama: 0.1}\n"
      "  - model: @empty@\n"
      "    parameters: {weight: 1}\n");
  EXPECT_TRUE(has(e, "r.yml:5: parameter 'gama' is not used by ties")) << e;
  EXPECT_TRUE(has(e, "r.yml:4: model '" + (dir_ / "missing").string() + "' not found (looked for " +
                         (dir_ / "missing").string() + ";"))
      << e;
  EXPECT_TRUE(has(e, "r.yml:6: model '" + (dir_ / "empty").string() + "': ")) << e;
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 2) << e;
}

TEST_F(PlanTest, MissingModelDoesNotHideOtherModelsProblems) {
  model("base");
  model("x");
  const std::string e = plan_error(
      "merge_method: della\n"
      "base_model: @base@\n"
      "models:\n"
      "  - model: @gone@\n"
      "    parameters: {weight: 0.5, density: 0.5, epsilon: 0.6}\n"
      "  - model: @x@\n"
      "    parameters: {weight: 0.5, density: 0.95, epsilon: 0.1}\n");
  EXPECT_TRUE(has(e, "r.yml:4: model '" + (dir_ / "gone").string() + "' not found")) << e;
  EXPECT_TRUE(has(e, "r.yml:5: model '" + (dir_ / "gone").string() +
                         "': della needs density - epsilon and density + epsilon strictly inside "
                         "(0, 1); density 0.5 with epsilon 0.6"))
      << e;
  EXPECT_TRUE(has(e, "r.yml:7: model '" + (dir_ / "x").string() +
                         "': della needs density - epsilon and density + epsilon strictly inside "
                         "(0, 1); density 0.95 with epsilon 0.1"))
      << e;
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 2) << e;
}

TEST_F(PlanTest, SliceBaseModelOverridesTopLevel) {
  model("a", {.n_layers = 2});
  model("b", {.n_layers = 2});
  const MergePlan p = plan(
      "merge_method: task_arithmetic\n"
      "base_model: @a@\n"
      "slices:\n"
      "  - sources:\n"
      "      - {model: @a@, layer_range: [0, 1]}\n"
      "      - {model: @b@, layer_range: [0, 1]}\n"
      "  - sources:\n"
      "      - {model: @a@, layer_range: [1, 2]}\n"
      "      - {model: @b@, layer_range: [1, 2]}\n"
      "    base_model: @b@\n"
      "parameters: {weight: 1}\n");
  const int a = index_of(p, "a"), b = index_of(p, "b");
  EXPECT_EQ(p.base_model, a);
  EXPECT_EQ(task(p, "model.layers.0.mlp.up_proj.weight").base->model, a);
  EXPECT_EQ(task(p, "model.layers.0.mlp.up_proj.weight").inputs[0].model, b);
  EXPECT_EQ(task(p, "model.layers.1.mlp.up_proj.weight").base->model, b);
  EXPECT_EQ(task(p, "model.layers.1.mlp.up_proj.weight").inputs[0].model, a);
  // Post tensors are merged across the last slice, whose base is b.
  EXPECT_EQ(task(p, "lm_head.weight").base->model, b);
  EXPECT_EQ(task(p, "model.embed_tokens.weight").base->model, a);
}

TEST_F(PlanTest, TaskArithmeticDensityWarns) {
  model("base");
  model("x");
  const MergePlan p = plan(
      "merge_method: task_arithmetic\nbase_model: @base@\nmodels:\n"
      "  - model: @x@\n    parameters: {weight: 1, density: 0.5}\n");
  ASSERT_EQ(p.warnings.size(), 1u);
  EXPECT_TRUE(has(p.warnings[0], "'density' has no effect with task_arithmetic"));
}

}  // namespace
}  // namespace shoal::merge
