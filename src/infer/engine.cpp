#include "shoal/engine.h"

#include "shoal/gguf.h"

namespace shoal {

Tokenizer load_tokenizer(const std::filesystem::path& model_path) {
  if (std::filesystem::is_directory(model_path)) return Tokenizer::from_folder(model_path);
  return Tokenizer::from_gguf(GgufFile::open(model_path));
}

LoadedModel load_model(const std::filesystem::path& path, const ModelOptions& options) {
  Model model = Model::load(open_weights(path), options);
  return LoadedModel{std::move(model), load_tokenizer(path)};
}

}  // namespace shoal
