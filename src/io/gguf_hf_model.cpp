#include "io/gguf_hf_model.h"

#include <cstring>

#include "io/json_util.h"
#include "shoal/error.h"

namespace shoal::io {

GgufHfModel::GgufHfModel(GgufFile file) : file_(std::move(file)) {
  const auto fail = [&](const std::string& what) {
    throw FormatError(file_.path().string() + ": " + what);
  };
  const std::optional<std::string> name = file_.get_string("general.architecture");
  if (!name) fail("key 'general.architecture' is missing");
  arch_ = find_gguf_arch(*name);
  if (arch_ == nullptr) {
    fail("key 'general.architecture' is " + io::quoted(*name) +
         "; shoal reads llama, qwen2 and qwen3");
  }
  config_ = gguf_to_hf_config(file_, *arch_);
  const int64_t n_head = config_.at("num_attention_heads").get<int64_t>();
  const int64_t n_head_kv = config_.at("num_key_value_heads").get<int64_t>();

  tensors_.reserve(file_.tensors().size());
  for (const GgufTensorInfo& info : file_.tensors()) {
    GgufHfTensor t;
    t.name = gguf_to_hf_name(info.name);
    t.info = &info;
    t.dtype = info.type == GgmlType::kF16    ? DType::kF16
              : info.type == GgmlType::kBF16 ? DType::kBF16
                                             : DType::kF32;
    t.shape = info.shape;
    if (index_.contains(t.name)) {
      fail("tensor " + io::quoted(info.name) + " maps to " + io::quoted(t.name) +
           ", which another tensor already has");
    }
    const QkKind qk = qk_kind(t.name);
    if (arch_->interleaved_qk && qk != QkKind::kNone) {
      const int64_t heads = qk == QkKind::kQ ? n_head : n_head_kv;
      const int64_t rows = t.shape[0];
      if (rows % (2 * heads) != 0) {
        fail("tensor " + io::quoted(info.name) + " has " + std::to_string(rows) +
             " rows, which do not split into " + std::to_string(heads) + " heads of even size");
      }
      t.qk_heads = heads;
    }
    index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }
}

const GgufHfTensor* GgufHfModel::find(std::string_view hf_name) const {
  const auto it = index_.find(std::string(hf_name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::optional<TensorView> GgufHfModel::direct_view(const GgufHfTensor& t) const {
  if (t.info->type == GgmlType::kQ8_0 || t.qk_heads > 0) return std::nullopt;
  TensorView v = file_.raw_view(*t.info);
  // A file with general.alignment 1 or 2 may leave data unaligned for its element type.
  if (reinterpret_cast<uintptr_t>(v.data) % dtype_size(v.dtype) != 0) return std::nullopt;
  return v;
}

std::vector<std::byte> GgufHfModel::materialise(const GgufHfTensor& t) const {
  const TensorView raw = file_.raw_view(*t.info);
  std::vector<std::byte> bytes(t.nbytes());
  if (t.info->type == GgmlType::kQ8_0) {
    dequantize_q8_0(raw.data, reinterpret_cast<float*>(bytes.data()), shape_numel(t.shape));
  } else {
    std::memcpy(bytes.data(), raw.data, bytes.size());
  }
  if (t.qk_heads > 0) {
    const int64_t rows = t.shape[0];
    std::vector<std::byte> hf(bytes.size());
    permute_qk_rows(bytes.data(), hf.data(), rows, bytes.size() / static_cast<size_t>(rows),
                    t.qk_heads, /*to_gguf=*/false);
    return hf;
  }
  return bytes;
}

}  // namespace shoal::io
