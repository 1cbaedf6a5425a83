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

LoadedModel load_path_model(const std::vector<std::filesystem::path>& paths, const LayerPath& path,
                            const ModelOptions& options) {
  std::vector<std::shared_ptr<const WeightSource>> sources;
  for (const auto& p : paths) sources.push_back(open_weights(p));
  Model model = Model::load_path(std::move(sources), path, options);
  // load_path has checked head_source against the sources.
  return LoadedModel{std::move(model),
                     load_tokenizer(paths[static_cast<size_t>(path.head_source)])};
}

}  // namespace shoal
