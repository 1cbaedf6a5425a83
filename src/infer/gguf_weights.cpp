// A GGUF file of the llama family (llama, qwen2, qwen3) presented as a Hugging Face checkpoint,
// through the io layer's GgufHfModel (config.json keys from the metadata, HF tensor names and
// layouts). Three kinds of tensor are copied into buffers this source owns, once, at open:
// - llama-architecture Q and K, whose rows llama.cpp's converter interleaves (un-permuted);
// - Q8_0 tensors (dequantised to F32);
// - F32/F16/BF16 tensors whose data is not aligned to their element size (a file with
//   general.alignment 1 or 2), so the engine may read them as float/uint16 arrays.
// Every other tensor is a zero-copy view into the mapped file.
#include <map>

#include "io/gguf_hf_model.h"
#include "shoal/gguf.h"
#include "shoal/weights.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class GgufWeights : public WeightSource {
 public:
  explicit GgufWeights(GgufFile file) : model_(std::move(file)) {
    for (const io::GgufHfTensor& t : model_.tensors()) {
      TensorView v;
      if (const auto direct = model_.direct_view(t)) {
        v = *direct;
      } else {
        owned_.push_back(model_.materialise(t));  // moving a vector keeps its buffer in place
        const std::vector<std::byte>& b = owned_.back();
        v = TensorView{t.dtype, t.shape, b.data(), b.size()};
      }
      names_.push_back(t.name);
      views_.emplace(t.name, std::move(v));
    }
  }

  const json& config() const override { return model_.config(); }
  std::optional<TensorView> tensor(std::string_view name) const override {
    const auto it = views_.find(name);
    if (it == views_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<std::string> tensor_names() const override { return names_; }
  std::string describe() const override { return model_.file().path().string(); }

 private:
  io::GgufHfModel model_;
  std::vector<std::string> names_;  // HF names, in file order
  std::map<std::string, TensorView, std::less<>> views_;
  std::vector<std::vector<std::byte>> owned_;
};

}  // namespace

std::unique_ptr<WeightSource> open_gguf_weights(const fs::path& file) {
  return std::make_unique<GgufWeights>(GgufFile::open(file));
}

}  // namespace shoal
