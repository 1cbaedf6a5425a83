// A MemoryModel as the inference engine's WeightSource: views into the shared tensor buffers.
#include "shoal/genome.h"

namespace shoal {
namespace {

class MemoryModelWeights final : public WeightSource {
 public:
  MemoryModelWeights(std::shared_ptr<const MemoryModel> model, std::string label)
      : model_(std::move(model)), label_(std::move(label)) {}

  const nlohmann::json& config() const override { return model_->config; }
  std::optional<TensorView> tensor(std::string_view hf_name) const override {
    const auto it = model_->tensors.find(hf_name);
    if (it == model_->tensors.end() || !is_compute_float(it->second.dtype)) return std::nullopt;
    return it->second.view();
  }
  std::vector<std::string> tensor_names() const override { return model_->tensor_names; }
  std::string describe() const override { return label_; }
  std::filesystem::path tokenizer_dir() const override { return model_->tokenizer_dir; }

 private:
  std::shared_ptr<const MemoryModel> model_;
  std::string label_;
};

}  // namespace

std::unique_ptr<WeightSource> memory_model_weights(std::shared_ptr<const MemoryModel> model,
                                                   std::string label) {
  return std::make_unique<MemoryModelWeights>(std::move(model), std::move(label));
}

}  // namespace shoal
