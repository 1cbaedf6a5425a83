// Hugging Face model folders: config.json, safetensors weights (one file, or shards listed in
// model.safetensors.index.json), tokenizer files. Layers are found from tensor names of the form
// `<prefix>.<N>.<rest>`, so Llama, Mistral, Qwen2/3, Gemma, Phi and GPT-2 style checkpoints work
// without a per-architecture table. A GGUF file of the llama family opens as a ModelFolder too,
// seen as the Hugging Face checkpoint it converts to (see src/io/gguf_hf_model.h).
// Implemented in src/io/model_folder.cpp.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "shoal/safetensors.h"

namespace shoal {

class GgufFile;

// A tensor name split around its layer index: "model.layers.3.mlp.up_proj.weight" ->
// {"model.layers", 3, "mlp.up_proj.weight"}. The first dot-separated all-digit component is the
// layer index.
struct LayerName {
  std::string prefix;
  int layer = -1;
  std::string rest;
};
std::optional<LayerName> split_layer_name(std::string_view tensor_name);
std::string join_layer_name(const LayerName& n);

// True for token-embedding and output-projection tensors (embed_tokens, lm_head, wte,
// word_embeddings, embed_in, embed_out, tok_embeddings, and GGUF-style token_embd / output),
// whose rows are vocabulary entries and may differ in count between models.
bool is_embedding_name(std::string_view tensor_name);

struct LayerLayout {
  std::string prefix;  // "model.layers"; empty when the model has no numbered layers
  int n_layers = 0;    // highest index + 1
};

class ModelFolder {
 public:
  // Opens and validates the folder: config.json (if present) must be valid JSON; every shard
  // named by the index must exist and contain exactly the tensors the index assigns it; a tensor
  // name may appear only once. Throws FormatError / IoError naming the file and tensor.
  static ModelFolder open(const std::filesystem::path& dir);
  // A model made of one safetensors file and nothing else (no config.json, no tokenizer files);
  // dir() is the file's folder. For looking at a lone file (`shoal inspect x.safetensors`).
  static ModelFolder open_file(const std::filesystem::path& safetensors_file);
  // A GGUF file (llama, qwen2, qwen3) as an HF checkpoint: HF tensor names, config.json keys
  // from its metadata, Q8_0 tensors read as F32 and llama Q/K rows in HF's order. dir() is the
  // file; tokenizer_files() is empty (the vocabulary is in gguf()). open() also takes a GGUF
  // file. Tensors that need converting are materialised on their first view() and kept until
  // release(name), which ends the validity of their views (release with a byte range keeps
  // them). Throws FormatError naming the file and the key or tensor.
  static ModelFolder open_gguf(const std::filesystem::path& gguf_file);

  ModelFolder(ModelFolder&&) noexcept;
  ModelFolder& operator=(ModelFolder&&) noexcept;
  ~ModelFolder();

  const std::filesystem::path& dir() const { return dir_; }
  // Parsed config.json, or an empty object when the folder has none.
  const nlohmann::json& config() const { return config_; }
  bool has_config() const { return has_config_; }

  // All tensor names, shard by shard in file order.
  const std::vector<std::string>& tensor_names() const { return names_; }
  // nullptr if absent.
  const TensorInfo* find(std::string_view name) const;
  // The file holding a tensor (for error messages). Tensor must exist.
  const std::filesystem::path& file_of(std::string_view name) const;
  // Throws FormatError naming the folder and tensor if absent.
  TensorView view(std::string_view name) const;
  void release(std::string_view name) const;
  // Drops bytes [byte_offset, byte_offset + n) of a tensor's data from the resident set.
  void release(std::string_view name, uint64_t byte_offset, uint64_t n) const;

  // The layer prefix with the most tensors and its layer count.
  LayerLayout layers() const { return layout_; }
  // config.json's tie_word_embeddings (or its text_config's) when present; otherwise true when
  // the folder has an input embedding but no lm_head / embed_out / output tensor.
  bool ties_word_embeddings() const;
  // Files a tokenizer needs (tokenizer.json, tokenizer_config.json, special_tokens_map.json,
  // tokenizer.model, vocab.json, merges.txt, added_tokens.json, generation_config.json,
  // chat_template.jinja), those that exist.
  std::vector<std::filesystem::path> tokenizer_files() const;
  // Sum of all tensors' element counts.
  int64_t parameter_count() const;
  // The weights files' "__metadata__" entries merged (the first file in name order wins a clash).
  std::map<std::string, std::string> metadata() const;
  // The GGUF file behind a folder made by open_gguf(); nullptr for safetensors folders.
  const GgufFile* gguf() const;

 private:
  struct GgufSource;
  ModelFolder() = default;
  // Opens `files` in order and adds all their tensors; a name may appear in only one file.
  void add_files(const std::vector<std::filesystem::path>& files);

  std::filesystem::path dir_;
  nlohmann::json config_ = nlohmann::json::object();
  bool has_config_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, std::pair<size_t, const TensorInfo*>> tensors_;  // name -> file
  std::vector<std::string> names_;
  LayerLayout layout_;
  bool single_file_ = false;          // made by open_file() or open_gguf()
  std::unique_ptr<GgufSource> gguf_;  // set by open_gguf()
};

}  // namespace shoal
