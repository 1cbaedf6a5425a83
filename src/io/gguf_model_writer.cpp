#include "io/gguf_model_writer.h"

#include <algorithm>

#include "io/json_util.h"
#include "shoal/error.h"

namespace shoal::io {
namespace {

// Elements converted per step: bounds the per-thread buffers; a multiple of the Q8_0 block.
constexpr int64_t kPiece = int64_t{1} << 16;

std::optional<GgmlType> same_type(DType d) {
  switch (d) {
    case DType::kF32:
      return GgmlType::kF32;
    case DType::kF16:
      return GgmlType::kF16;
    case DType::kBF16:
      return GgmlType::kBF16;
    default:
      return std::nullopt;
  }
}

// llama.cpp's converter: 1-D tensors, norms and anything but a .weight stay F32.
GgmlType stored_type_for(GgufOutType type, DType src, const std::string& gguf_name,
                         const std::vector<int64_t>& shape) {
  if (shape.size() <= 1 || gguf_name.ends_with("_norm.weight") || !gguf_name.ends_with(".weight")) {
    return GgmlType::kF32;
  }
  switch (type) {
    case GgufOutType::kKeep:
      return *same_type(src);
    case GgufOutType::kF32:
      return GgmlType::kF32;
    case GgufOutType::kF16:
      return GgmlType::kF16;
    case GgufOutType::kBF16:
      return GgmlType::kBF16;
    case GgufOutType::kQ8_0:
      return shape.back() % kQ8BlockSize == 0 ? GgmlType::kQ8_0 : GgmlType::kF16;
  }
  return GgmlType::kF32;
}

// llama.cpp's general.file_type (llama_ftype): ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7,
// MOSTLY_BF16 32.
uint32_t file_type_for(GgufOutType type, DType embedding) {
  switch (type) {
    case GgufOutType::kF32:
      return 0;
    case GgufOutType::kF16:
      return 1;
    case GgufOutType::kQ8_0:
      return 7;
    case GgufOutType::kBF16:
      return 32;
    case GgufOutType::kKeep:
      break;
  }
  return embedding == DType::kF16 ? 1 : embedding == DType::kBF16 ? 32 : 0;
}

bool config_flag(const nlohmann::json& c, const char* key, bool fallback) {
  return c.contains(key) && c.at(key).is_boolean() ? c.at(key).get<bool>() : fallback;
}

}  // namespace

std::optional<GgufOutType> parse_gguf_out_type(std::string_view name) {
  if (name == "f32") return GgufOutType::kF32;
  if (name == "f16") return GgufOutType::kF16;
  if (name == "bf16") return GgufOutType::kBF16;
  if (name == "q8_0") return GgufOutType::kQ8_0;
  return std::nullopt;
}

GgufModelWriter::GgufModelWriter(const std::filesystem::path& path, const nlohmann::json& hf_config,
                                 const std::vector<OutputTensorSpec>& hf_tensors,
                                 std::vector<GgufKv> tokenizer, GgufOutType type,
                                 const std::string& name, const std::string& where) {
  const GgufArch& arch = gguf_arch_for_config(hf_config, where);
  const auto spec_of = [&](const char* n) -> const OutputTensorSpec* {
    for (const OutputTensorSpec& t : hf_tensors) {
      if (t.name == n) return &t;
    }
    return nullptr;
  };
  const OutputTensorSpec* embd = spec_of("model.embed_tokens.weight");
  if (embd == nullptr || embd->shape.size() != 2) {
    throw ConfigError(where + ": no 2-D tensor 'model.embed_tokens.weight'");
  }
  const bool tied = config_flag(hf_config, "tie_word_embeddings", false);
  const auto heads = [&](const char* key, int64_t fallback) {
    return hf_config.contains(key) && hf_config[key].is_number_integer()
               ? hf_config[key].get<int64_t>()
               : fallback;
  };
  const int64_t n_head = heads("num_attention_heads", 1);
  const int64_t n_head_kv = heads("num_key_value_heads", n_head);

  std::vector<GgufTensorSpec> specs;
  plan_.resize(hf_tensors.size());
  for (size_t i = 0; i < hf_tensors.size(); ++i) {
    const OutputTensorSpec& t = hf_tensors[i];
    Planned& p = plan_[i];
    if (t.name.ends_with("rotary_emb.inv_freq") || (tied && t.name == "lm_head.weight")) continue;
    const std::optional<std::string> gguf_name = hf_to_gguf_name(t.name);
    if (!gguf_name) {
      throw ConfigError(where + ": tensor " + io::quoted(t.name) +
                        " has no llama.cpp name for the " + std::string(arch.gguf_name) +
                        " architecture");
    }
    if (!same_type(t.dtype)) {
      throw ConfigError(where + ": tensor " + io::quoted(t.name) + " is " +
                        std::string(dtype_name(t.dtype)) + "; GGUF models hold F32, F16 or BF16");
    }
    p.out = static_cast<int64_t>(specs.size());
    p.src = t.dtype;
    p.type = stored_type_for(type, t.dtype, *gguf_name, t.shape);
    p.cols = t.shape.size() >= 2 ? t.shape.back() : 1;
    p.rows = shape_numel(t.shape) / std::max<int64_t>(p.cols, 1);
    const QkKind qk = qk_kind(t.name);
    if (arch.interleaved_qk && qk != QkKind::kNone) {
      p.qk_heads = qk == QkKind::kQ ? n_head : n_head_kv;
      if (p.rows % (2 * p.qk_heads) != 0) {
        throw ConfigError(where + ": tensor " + io::quoted(t.name) + " has " +
                          std::to_string(p.rows) + " rows, which do not split into " +
                          std::to_string(p.qk_heads) + " heads of even size");
      }
    }
    specs.push_back({*gguf_name, p.type, t.shape});
  }

  std::vector<GgufKv> metadata = hf_to_gguf_metadata(
      hf_config, arch, embd->shape[0], file_type_for(type, embd->dtype), name, where, warnings_);
  for (GgufKv& kv : tokenizer) metadata.push_back(std::move(kv));
  writer_ = std::make_unique<GgufWriter>(path, std::move(metadata), std::move(specs));
  for (size_t i = 0; i < writer_->tensors().size(); ++i) file_bytes_ += writer_->tensor_nbytes(i);
}

GgufModelWriter::~GgufModelWriter() = default;

void GgufModelWriter::write_segment(const Planned& p, int64_t dst_elem, const std::byte* src,
                                    int64_t count) {
  const size_t in_size = dtype_size(p.src);
  if (same_type(p.src) == p.type) {
    writer_->write(p.out, static_cast<uint64_t>(dst_elem) * in_size, src,
                   static_cast<size_t>(count) * in_size);
    return;
  }
  thread_local std::vector<float> f32;
  thread_local std::vector<std::byte> out;
  for (int64_t done = 0; done < count; done += kPiece) {
    const int64_t m = std::min(kPiece, count - done);
    f32.resize(m);
    to_f32(p.src, src + done * in_size, f32.data(), m);
    const int64_t at = dst_elem + done;
    if (p.type == GgmlType::kQ8_0) {
      SHOAL_ASSERT(at % kQ8BlockSize == 0 && m % kQ8BlockSize == 0);
      out.resize(m / kQ8BlockSize * kQ8BlockBytes);
      quantize_q8_0(f32.data(), out.data(), m);
      writer_->write(p.out, at / kQ8BlockSize * kQ8BlockBytes, out.data(), out.size());
    } else {
      const DType dst = p.type == GgmlType::kF16    ? DType::kF16
                        : p.type == GgmlType::kBF16 ? DType::kBF16
                                                    : DType::kF32;
      out.resize(m * dtype_size(dst));
      from_f32(f32.data(), dst, out.data(), m);
      writer_->write(p.out, static_cast<uint64_t>(at) * dtype_size(dst), out.data(), out.size());
    }
  }
}

void GgufModelWriter::write(size_t i, uint64_t byte_offset, const void* data, size_t n) {
  const Planned& p = plan_.at(i);
  if (p.out < 0) return;
  const size_t es = dtype_size(p.src);
  SHOAL_ASSERT(byte_offset % es == 0 && n % es == 0);
  int64_t elem = static_cast<int64_t>(byte_offset / es);
  int64_t count = static_cast<int64_t>(n / es);
  const auto* src = static_cast<const std::byte*>(data);
  if (p.qk_heads == 0) {
    write_segment(p, elem, src, count);
    return;
  }
  // Row by row to the row's place in llama.cpp's order.
  while (count > 0) {
    const int64_t row = elem / p.cols, col = elem % p.cols;
    const int64_t len = std::min(count, p.cols - col);
    write_segment(p, gguf_qk_row(row, p.rows, p.qk_heads) * p.cols + col, src, len);
    elem += len;
    count -= len;
    src += len * es;
  }
}

void GgufModelWriter::finish() {
  writer_->finish();
}

}  // namespace shoal::io
