// shoal convert: HF folder -> GGUF, GGUF -> HF folder, GGUF -> GGUF. Every direction reads its
// input through ModelFolder (a GGUF opens as the HF checkpoint it converts to), so the tensors
// always pass through HF names and layouts: GgufModelWriter turns them into llama.cpp's, and the
// safetensors writer takes them as they are.
#include "shoal/gguf_convert.h"

#include <algorithm>
#include <bit>
#include <fstream>

#include "io/gguf_arch.h"
#include "io/gguf_hf_model.h"
#include "io/gguf_model_writer.h"
#include "io/gguf_tokenizer.h"
#include "io/temp_folder.h"
#include "shoal/error.h"
#include "shoal/gguf.h"
#include "shoal/model_folder.h"
#include "shoal/safetensors.h"
#include "shoal/thread_pool.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;

// Elements per parallel piece of a tensor.
constexpr int64_t kPieceElems = int64_t{1} << 21;

bool has_gguf_magic(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::string_view(magic, 4) == "GGUF";
}

// Pieces of whole rows (so that Q8_0 blocks and permuted rows are never split), about
// kPieceElems elements each: [begin, end) element ranges.
std::vector<std::pair<int64_t, int64_t>> row_pieces(const std::vector<int64_t>& shape) {
  const int64_t numel = shape_numel(shape);
  const int64_t cols = shape.size() >= 2 ? shape.back() : 1;
  const int64_t step = std::max<int64_t>(1, kPieceElems / cols) * cols;
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t b = 0; b < numel; b += step) out.emplace_back(b, std::min(numel, b + step));
  return out;
}

using io::TempFolder;

void check_output(const fs::path& out, bool want_folder, bool force) {
  std::error_code ec;
  if (!fs::exists(out, ec)) return;
  if (fs::is_directory(out, ec) != want_folder) {
    throw ConfigError(out.string() + " exists and is " +
                      (want_folder ? "not a folder" : "a folder"));
  }
  if (!force && (!want_folder || !fs::is_empty(out, ec))) {
    throw ConfigError(out.string() + " exists (use --force to replace it)");
  }
}

std::vector<OutputTensorSpec> hf_specs(const ModelFolder& m) {
  std::vector<OutputTensorSpec> specs;
  for (const std::string& name : m.tensor_names()) {
    const TensorInfo& t = *m.find(name);
    specs.push_back({name, t.dtype, t.shape});
  }
  return specs;
}

ConvertSummary to_gguf(const ModelFolder& m, const fs::path& in, const fs::path& out,
                       io::GgufOutType type, const ConvertOptions& options) {
  ConvertSummary summary;
  summary.from = m.gguf() != nullptr ? "gguf" : "hf";
  summary.to = "gguf";
  if (!m.has_config()) throw FormatError(in.string() + ": no config.json");
  const std::vector<OutputTensorSpec> specs = hf_specs(m);
  const OutputTensorSpec* embd = nullptr;
  for (const OutputTensorSpec& s : specs) {
    if (s.name == "model.embed_tokens.weight") embd = &s;
  }
  std::vector<GgufKv> tokenizer;
  std::string name = in.stem().string();
  if (const GgufFile* g = m.gguf()) {
    tokenizer = io::gguf_tokenizer_entries(*g, std::nullopt);
    name = g->get_string("general.name").value_or(name);
  } else if (fs::exists(in / "tokenizer.json")) {
    tokenizer = io::hf_tokenizer_to_gguf(in, embd != nullptr ? embd->shape.at(0) : 0, std::nullopt);
  } else {
    summary.warnings.push_back(in.string() +
                               ": no tokenizer.json; the GGUF has no vocabulary (llama.cpp "
                               "needs one to load it)");
  }
  io::GgufModelWriter writer(out, m.config(), specs, std::move(tokenizer), type, name, in.string());
  for (const std::string& w : writer.warnings()) summary.warnings.push_back(w);

  Progress progress("convert", "tensors", specs.size(), writer.file_bytes(), options.log_mode);
  for (const std::string& w : summary.warnings) progress.warn(w);
  ThreadPool pool(options.n_threads);
  for (size_t i = 0; i < specs.size(); ++i) {
    if (writer.skipped(i)) continue;
    const TensorView v = m.view(specs[i].name);
    const size_t es = dtype_size(v.dtype);
    const auto pieces = row_pieces(v.shape);
    pool.parallel_for(pieces.size(), [&](size_t p) {
      const auto [b, e] = pieces[p];
      writer.write(i, b * es, v.data + b * es, (e - b) * es);
    });
    m.release(specs[i].name);
    progress.advance(specs[i].name, v.nbytes);
    ++summary.n_tensors;
  }
  writer.finish();
  progress.finish();
  summary.bytes_written = writer.file_bytes();
  summary.seconds = progress.elapsed_seconds();
  return summary;
}

// The dtype of a GGUF's matrices when they all share one 16-bit type, else F32.
DType matrix_dtype(const io::GgufHfModel& g) {
  std::optional<GgmlType> common;
  for (const io::GgufHfTensor& t : g.tensors()) {
    if (t.shape.size() < 2) continue;
    if (common && *common != t.info->type) return DType::kF32;
    common = t.info->type;
  }
  if (common == GgmlType::kF16) return DType::kF16;
  if (common == GgmlType::kBF16) return DType::kBF16;
  return DType::kF32;
}

// Whether every value of an F32 view converts to `dtype` and back unchanged.
bool exact_in(const TensorView& v, DType dtype) {
  const size_t n = static_cast<size_t>(v.numel());
  std::vector<float> src(n), back(n);
  std::vector<std::byte> narrow(n * dtype_size(dtype));
  to_f32(v.dtype, v.data, src.data(), n);
  from_f32(src.data(), dtype, narrow.data(), n);
  to_f32(dtype, narrow.data(), back.data(), n);
  return std::equal(src.begin(), src.end(), back.begin(), [](float a, float b) {
    return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
  });
}

ConvertSummary to_hf(const ModelFolder& m, const fs::path& in, const fs::path& out,
                     std::optional<DType> forced, const ConvertOptions& options) {
  ConvertSummary summary;
  summary.from = "gguf";
  summary.to = "hf";
  // The file's own types and vocabulary (the folder view presents it in HF form).
  const io::GgufHfModel g(GgufFile::open(in));
  // Without a type, each tensor keeps its type (Q8_0 becomes F32), except that F32 vectors
  // (llama.cpp stores norms as F32 whatever the model's type) take the matrices' 16-bit type when
  // that loses nothing: an F16 model converted to GGUF and back is the same F16 model.
  const DType model_dtype = forced.value_or(matrix_dtype(g));
  std::vector<OutputTensorSpec> specs = hf_specs(m);
  for (OutputTensorSpec& s : specs) {
    if (forced) {
      s.dtype = *forced;
    } else if (s.dtype == DType::kF32 && s.shape.size() == 1 && model_dtype != DType::kF32 &&
               exact_in(m.view(s.name), model_dtype)) {
      s.dtype = model_dtype;
    }
  }

  TempFolder temp(out);
  SafetensorsWriter writer(temp.path(), specs, 5'000'000'000);
  uint64_t total = 0;
  for (const OutputTensorSpec& s : specs) total += s.nbytes();
  Progress progress("convert", "tensors", specs.size(), total, options.log_mode);
  ThreadPool pool(options.n_threads);
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorView v = m.view(specs[i].name);
    const size_t in_es = dtype_size(v.dtype), out_es = dtype_size(specs[i].dtype);
    const auto pieces = row_pieces(v.shape);
    pool.parallel_for(pieces.size(), [&](size_t p) {
      const auto [b, e] = pieces[p];
      const size_t n = static_cast<size_t>(e - b);
      if (v.dtype == specs[i].dtype) {
        writer.write(i, b * out_es, v.data + b * in_es, n * out_es);
        return;
      }
      std::vector<float> f32(n);
      std::vector<std::byte> bytes(n * out_es);
      to_f32(v.dtype, v.data + b * in_es, f32.data(), n);
      from_f32(f32.data(), specs[i].dtype, bytes.data(), n);
      writer.write(i, b * out_es, bytes.data(), bytes.size());
    });
    m.release(specs[i].name);
    progress.advance(specs[i].name, specs[i].nbytes());
    ++summary.n_tensors;
  }
  writer.finish();

  nlohmann::json config = m.config();
  config["torch_dtype"] = std::string(torch_dtype_name(model_dtype));
  std::ofstream cfg(temp.path() / "config.json", std::ios::binary);
  cfg << config.dump(2) << "\n";
  cfg.close();
  if (!cfg) throw IoError(errno_message("cannot write " + (temp.path() / "config.json").string()));
  if (g.file().find("tokenizer.ggml.model") != nullptr) {
    io::write_hf_tokenizer(g.file(), temp.path(), std::nullopt);
  } else {
    summary.warnings.push_back(in.string() + ": no tokenizer.ggml.model; no tokenizer written");
    progress.warn(summary.warnings.back());
  }
  temp.commit();
  progress.finish();
  summary.bytes_written = total;
  summary.seconds = progress.elapsed_seconds();
  return summary;
}

}  // namespace

ConvertSummary convert_model(const fs::path& in, const fs::path& out,
                             const ConvertOptions& options) {
  std::optional<io::GgufOutType> type = io::GgufOutType::kKeep;
  if (!options.type.empty()) {
    type = io::parse_gguf_out_type(options.type);
    if (!type) {
      throw ConfigError("--type: '" + options.type + "' is not one of f32, f16, bf16, q8_0");
    }
  }
  std::error_code ec;
  if (fs::is_directory(in, ec)) {
    check_output(out, /*want_folder=*/false, options.force);
    const ModelFolder m = ModelFolder::open(in);
    return to_gguf(m, in, out, *type, options);
  }
  if (!fs::exists(in, ec)) throw IoError(in.string() + ": no such file or folder");
  if (in.extension() != ".gguf" && !has_gguf_magic(in)) {
    throw ConfigError(in.string() + ": expected a Hugging Face model folder or a GGUF file");
  }
  const ModelFolder m = ModelFolder::open_gguf(in);
  if (out.extension() == ".gguf") {
    check_output(out, /*want_folder=*/false, options.force);
    if (options.type.empty()) {
      // Keep the file's types; a quantised file stays quantised.
      for (const GgufTensorInfo& t : m.gguf()->tensors()) {
        if (t.type == GgmlType::kQ8_0) type = io::GgufOutType::kQ8_0;
      }
    }
    return to_gguf(m, in, out, *type, options);
  }
  check_output(out, /*want_folder=*/true, options.force);
  std::optional<DType> forced;
  if (type == io::GgufOutType::kQ8_0) {
    throw ConfigError("--type q8_0: safetensors holds no Q8_0; use f32, f16 or bf16 for " +
                      out.string());
  }
  if (type == io::GgufOutType::kF32) forced = DType::kF32;
  if (type == io::GgufOutType::kF16) forced = DType::kF16;
  if (type == io::GgufOutType::kBF16) forced = DType::kBF16;
  return to_hf(m, in, out, forced, options);
}

}  // namespace shoal
