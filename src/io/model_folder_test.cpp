// ModelFolder: which files hold the weights (index, single file, all *.safetensors), the checks
// on an index, config.json, layer-name parsing for several architectures and tied embeddings.
#include "shoal/model_folder.h"

#include <gtest/gtest.h>

#include "io/test_support.h"
#include "shoal/error.h"

namespace shoal {
namespace {

using test::hand_file;
using test::HandTensor;
using test::TempDir;
using test::write_file;

HandTensor f32(const std::string& name, std::vector<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return {name, "F32", std::move(shape), test::counting_bytes(static_cast<size_t>(4 * n))};
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A sharded Llama-like folder: two shards and an index.
void write_sharded(const TempDir& dir) {
  write_file(dir / "model-00001-of-00002.safetensors",
             hand_file({f32("model.embed_tokens.weight", {6, 2}),
                        f32("model.layers.0.mlp.up_proj.weight", {3, 2})}));
  write_file(
      dir / "model-00002-of-00002.safetensors",
      hand_file({f32("model.layers.1.mlp.up_proj.weight", {3, 2}), f32("model.norm.weight", {2}),
                 f32("lm_head.weight", {6, 2}), f32("not.in.index", {1})}));
  write_file(dir / "model.safetensors.index.json", R"({
    "metadata": {"total_size": 144},
    "weight_map": {
      "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
      "model.layers.0.mlp.up_proj.weight": "model-00001-of-00002.safetensors",
      "model.layers.1.mlp.up_proj.weight": "model-00002-of-00002.safetensors",
      "model.norm.weight": "model-00002-of-00002.safetensors",
      "lm_head.weight": "model-00002-of-00002.safetensors"}})");
}

TEST(ModelFolder, ShardedWithIndex) {
  TempDir dir;
  write_sharded(dir);
  write_file(dir / "config.json",
             R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama"})");
  write_file(dir / "tokenizer.json", "{}");
  write_file(dir / "merges.txt", "");
  const ModelFolder m = ModelFolder::open(dir.path());
  EXPECT_TRUE(m.has_config());
  EXPECT_EQ(m.config()["model_type"], "llama");
  // Shard by shard, in file order; the tensor the index does not list is ignored.
  EXPECT_EQ(m.tensor_names(),
            (std::vector<std::string>{
                "model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight",
                "model.layers.1.mlp.up_proj.weight", "model.norm.weight", "lm_head.weight"}));
  EXPECT_EQ(m.find("not.in.index"), nullptr);
  EXPECT_EQ(m.file_of("lm_head.weight"), dir / "model-00002-of-00002.safetensors");
  EXPECT_EQ(m.parameter_count(), 12 + 6 + 6 + 2 + 12);
  EXPECT_EQ(m.layers().prefix, "model.layers");
  EXPECT_EQ(m.layers().n_layers, 2);
  EXPECT_FALSE(m.ties_word_embeddings());  // lm_head present, config silent
  const TensorView v = m.view("model.norm.weight");
  EXPECT_EQ(v.nbytes, 8u);
  EXPECT_EQ(static_cast<int>(v.data[7]), 7);
  m.release("model.norm.weight");
  EXPECT_THROW(m.view("nope"), FormatError);
  EXPECT_EQ(m.tokenizer_files(),
            (std::vector<std::filesystem::path>{dir / "tokenizer.json", dir / "merges.txt"}));
}

TEST(ModelFolder, IndexNamingAMissingShard) {
  TempDir dir;
  write_sharded(dir);
  std::filesystem::remove(dir / "model-00002-of-00002.safetensors");
  const std::string msg = message_of([&] { ModelFolder::open(dir.path()); });
  EXPECT_NE(msg.find("model.safetensors.index.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'model-00002-of-00002.safetensors'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
}

TEST(ModelFolder, IndexAssigningATensorToTheWrongShard) {
  TempDir dir;
  write_sharded(dir);
  write_file(dir / "model.safetensors.index.json", R"({"weight_map": {
      "model.embed_tokens.weight": "model-00002-of-00002.safetensors"}})");
  const std::string msg = message_of([&] { ModelFolder::open(dir.path()); });
  EXPECT_NE(msg.find("'model.embed_tokens.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'model-00002-of-00002.safetensors'"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos);
}

TEST(ModelFolder, BadIndexes) {
  TempDir dir;
  write_sharded(dir);
  write_file(dir / "model.safetensors.index.json", R"({"metadata": {}})");
  EXPECT_THROW(ModelFolder::open(dir.path()), FormatError);
  write_file(dir / "model.safetensors.index.json", R"({"weight_map": {"a": 3}})");
  EXPECT_THROW(ModelFolder::open(dir.path()), FormatError);
  write_file(dir / "model.safetensors.index.json", R"({"weight_map": {"a": "../x.safetensors"}})");
  EXPECT_THROW(ModelFolder::open(dir.path()), FormatError);
  write_file(dir / "model.safetensors.index.json", R"({"weight_map": )");
  EXPECT_THROW(ModelFolder::open(dir.path()), FormatError);
}

TEST(ModelFolder, SingleFileAndInvalidConfig) {
  TempDir dir;
  write_file(dir / "model.safetensors", hand_file({f32("w", {2})}, R"({"format":"pt"})"));
  write_file(dir / "other.safetensors", hand_file({f32("ignored", {2})}));
  const ModelFolder m = ModelFolder::open(dir.path());
  EXPECT_FALSE(m.has_config());
  EXPECT_TRUE(m.config().is_object());
  EXPECT_EQ(m.tensor_names(), std::vector<std::string>{"w"});  // model.safetensors wins
  EXPECT_EQ(m.metadata().at("format"), "pt");
  EXPECT_EQ(m.layers().prefix, "");
  EXPECT_EQ(m.layers().n_layers, 0);

  write_file(dir / "config.json", "{\"a\": 1,\n \"b\": }");
  const std::string msg = message_of([&] { ModelFolder::open(dir.path()); });
  EXPECT_NE(msg.find((dir / "config.json").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  write_file(dir / "config.json", "[1]");
  EXPECT_THROW(ModelFolder::open(dir.path()), FormatError);
}

TEST(ModelFolder, AllSafetensorsFilesWhenNoIndex) {
  TempDir dir;
  write_file(dir / "b.safetensors", hand_file({f32("transformer.h.1.w", {2})}));
  write_file(dir / "a.safetensors", hand_file({f32("transformer.h.0.w", {2})}));
  const ModelFolder m = ModelFolder::open(dir.path());
  EXPECT_EQ(m.tensor_names(), (std::vector<std::string>{"transformer.h.0.w", "transformer.h.1.w"}));
  EXPECT_EQ(m.file_of("transformer.h.1.w"), dir / "b.safetensors");

  write_file(dir / "c.safetensors", hand_file({f32("transformer.h.0.w", {2})}));
  const std::string msg = message_of([&] { ModelFolder::open(dir.path()); });
  EXPECT_NE(msg.find("'transformer.h.0.w'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("a.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("c.safetensors"), std::string::npos) << msg;
}

TEST(ModelFolder, NoWeights) {
  TempDir dir;
  write_file(dir / "pytorch_model.bin", "");
  const std::string msg = message_of([&] { ModelFolder::open(dir.path()); });
  EXPECT_NE(msg.find(dir.path().string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("pytorch_model.bin"), std::string::npos) << msg;
  EXPECT_THROW(ModelFolder::open(dir / "absent"), IoError);
  EXPECT_THROW(ModelFolder::open(dir / "pytorch_model.bin"), IoError);
}

TEST(ModelFolder, OpenFile) {
  TempDir dir;
  write_file(dir / "tokenizer.json", "{}");
  write_file(dir / "x.safetensors", hand_file({f32("model.layers.4.w", {3})}));
  const ModelFolder m = ModelFolder::open_file(dir / "x.safetensors");
  EXPECT_EQ(m.tensor_names(), std::vector<std::string>{"model.layers.4.w"});
  EXPECT_EQ(m.layers().n_layers, 5);
  EXPECT_TRUE(m.tokenizer_files().empty());
  EXPECT_FALSE(m.has_config());
}

TEST(LayerNames, SplitAndJoin) {
  const auto n = split_layer_name("model.layers.3.mlp.up_proj.weight");
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(n->prefix, "model.layers");
  EXPECT_EQ(n->layer, 3);
  EXPECT_EQ(n->rest, "mlp.up_proj.weight");
  for (const char* name :
       {"model.layers.3.mlp.up_proj.weight", "transformer.h.11.attn.c_attn.bias",
        "model.language_model.layers.25.self_attn.q_norm.weight", "layers.0.attention.wq.weight",
        "gpt_neox.layers.7.attention.query_key_value.weight", "blk.12.ffn_up.weight",
        "model.layers.10", "a.b.0.c.1.d"}) {
    const auto split = split_layer_name(name);
    ASSERT_TRUE(split.has_value()) << name;
    EXPECT_EQ(join_layer_name(*split), name);
  }
  EXPECT_EQ(split_layer_name("a.b.0.c.1.d")->layer, 0);  // the first index
  EXPECT_EQ(split_layer_name("blk.12.ffn_up.weight")->prefix, "blk");
  EXPECT_FALSE(split_layer_name("model.norm.weight").has_value());
  EXPECT_FALSE(split_layer_name("0.weight").has_value());  // no prefix
  EXPECT_FALSE(split_layer_name("model.layers.x1.w").has_value());
  EXPECT_FALSE(split_layer_name("").has_value());
}

TEST(LayerNames, Embeddings) {
  for (const char* name : {"model.embed_tokens.weight", "lm_head.weight", "transformer.wte.weight",
                           "transformer.word_embeddings.weight", "gpt_neox.embed_in.weight",
                           "embed_out.weight", "tok_embeddings.weight", "token_embd.weight",
                           "output.weight", "model.language_model.embed_tokens.weight"}) {
    EXPECT_TRUE(is_embedding_name(name)) << name;
  }
  for (const char* name : {"model.norm.weight", "transformer.wpe.weight", "output_norm.weight",
                           "model.layers.0.attention.output.dense.weight",
                           "model.layers.0.self_attn.o_proj.weight", "lm_head_norm.weight"}) {
    EXPECT_FALSE(is_embedding_name(name)) << name;
  }
}

struct Arch {
  const char* label;
  std::vector<std::string> names;
  std::string prefix;
  int n_layers;
  bool tied;  // by the tensor-name rule (no config)
};

TEST(ModelFolder, LayersAndTiesForArchitectures) {
  const std::vector<Arch> archs = {
      {"llama",
       {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.mlp.down_proj.weight", "model.layers.1.self_attn.q_proj.weight",
        "model.layers.1.mlp.down_proj.weight", "model.norm.weight", "lm_head.weight"},
       "model.layers",
       2,
       false},
      {"gpt2",
       {"transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.attn.c_attn.weight",
        "transformer.h.0.mlp.c_fc.weight", "transformer.h.1.attn.c_attn.weight",
        "transformer.h.2.attn.c_attn.weight", "transformer.ln_f.weight"},
       "transformer.h",
       3,
       true},
      {"gemma3",
       {"model.language_model.embed_tokens.weight",
        "model.language_model.layers.0.self_attn.q_proj.weight",
        "model.language_model.layers.0.mlp.up_proj.weight",
        "model.language_model.layers.1.self_attn.q_proj.weight",
        "model.language_model.layers.1.mlp.up_proj.weight",
        "model.language_model.layers.2.mlp.up_proj.weight",
        "model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
        "model.vision_tower.vision_model.encoder.layers.5.mlp.fc1.weight"},
       "model.language_model.layers",
       3,
       true},
      {"phi2",
       {"model.embed_tokens.weight", "model.layers.0.self_attn.dense.weight",
        "model.layers.0.mlp.fc1.weight", "model.layers.31.mlp.fc1.weight",
        "model.final_layernorm.weight", "lm_head.weight", "lm_head.bias"},
       "model.layers",
       32,
       false},
      {"phi-1.5 original",
       {"layers.0.wte.weight", "layers.1.mixer.Wqkv.weight", "layers.1.mlp.fc1.weight",
        "layers.2.mixer.Wqkv.weight", "layers.3.linear.weight"},
       "layers",
       4,
       true},
  };
  for (const Arch& a : archs) {
    SCOPED_TRACE(a.label);
    TempDir dir;
    std::vector<HandTensor> tensors;
    for (const std::string& n : a.names) tensors.push_back(f32(n, {2}));
    write_file(dir / "model.safetensors", hand_file(tensors));
    const ModelFolder m = ModelFolder::open(dir.path());
    EXPECT_EQ(m.layers().prefix, a.prefix);
    EXPECT_EQ(m.layers().n_layers, a.n_layers);
    EXPECT_EQ(m.ties_word_embeddings(), a.tied);

    // config.json's tie_word_embeddings wins over the names, at top level or in text_config.
    write_file(dir / "config.json",
               std::string("{\"tie_word_embeddings\": ") + (a.tied ? "false" : "true") + "}");
    EXPECT_EQ(ModelFolder::open(dir.path()).ties_word_embeddings(), !a.tied);
    write_file(dir / "config.json", std::string("{\"text_config\": {\"tie_word_embeddings\": ") +
                                        (a.tied ? "false" : "true") + "}}");
    EXPECT_EQ(ModelFolder::open(dir.path()).ties_word_embeddings(), !a.tied);
  }
}

}  // namespace
}  // namespace shoal
