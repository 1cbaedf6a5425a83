#include "shoal/weights.h"

#include "shoal/error.h"
#include "shoal/model_folder.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;

class FolderWeights : public WeightSource {
 public:
  explicit FolderWeights(ModelFolder folder) : folder_(std::move(folder)) {
    if (!folder_.has_config()) {
      throw FormatError(folder_.dir().string() +
                        ": no config.json (the engine needs the "
                        "architecture and sizes it holds)");
    }
  }
  const nlohmann::json& config() const override { return folder_.config(); }
  std::optional<TensorView> tensor(std::string_view hf_name) const override {
    if (!folder_.find(hf_name)) return std::nullopt;
    return folder_.view(hf_name);
  }
  std::vector<std::string> tensor_names() const override { return folder_.tensor_names(); }
  std::string describe() const override { return folder_.dir().string(); }
  fs::path tokenizer_dir() const override { return folder_.dir(); }

 private:
  ModelFolder folder_;
};

}  // namespace

std::unique_ptr<WeightSource> open_folder_weights(const fs::path& dir) {
  return std::make_unique<FolderWeights>(ModelFolder::open(dir));
}

std::unique_ptr<WeightSource> open_weights(const fs::path& path) {
  if (fs::is_directory(path)) return open_folder_weights(path);
  if (path.extension() == ".gguf") return open_gguf_weights(path);
  if (!fs::exists(path)) throw IoError(path.string() + ": no such file or folder");
  throw ConfigError(path.string() + ": expected a Hugging Face model folder or a .gguf file");
}

MemoryWeights::MemoryWeights(nlohmann::json config, std::string label)
    : config_(std::move(config)), label_(std::move(label)) {}

void MemoryWeights::put(const std::string& name, DType dtype, std::vector<int64_t> shape,
                        std::vector<std::byte> bytes) {
  const uint64_t need = static_cast<uint64_t>(shape_numel(shape)) * dtype_size(dtype);
  if (bytes.size() != need) {
    throw ConfigError("tensor " + name + ": " + std::to_string(bytes.size()) +
                      " bytes given for shape " + shape_to_string(shape) + " x " +
                      std::string(dtype_name(dtype)) + " (" + std::to_string(need) + " needed)");
  }
  tensors_[name] = Owned{dtype, std::move(shape), std::move(bytes)};
}

std::optional<TensorView> MemoryWeights::tensor(std::string_view hf_name) const {
  const auto it = tensors_.find(hf_name);
  if (it == tensors_.end()) return std::nullopt;
  const Owned& t = it->second;
  return TensorView{t.dtype, t.shape, t.bytes.data(), t.bytes.size()};
}

std::vector<std::string> MemoryWeights::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, t] : tensors_) names.push_back(name);
  return names;
}

}  // namespace shoal
