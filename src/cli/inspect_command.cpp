// shoal inspect PATH [--json]: what a model folder, a single safetensors file or a GGUF file
// holds. Opening through the library validates every file; this file only formats what
// ModelFolder reports (inspect_gguf.cpp: what GgufFile reports).
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/inspect_gguf.h"
#include "cli/text_format.h"
#include "shoal/model_folder.h"

namespace shoal::cli {
namespace {

struct InspectFlags {
  std::string path;
  bool json = false;
};

std::string json_string_or(const nlohmann::json& j, const char* key, const char* fallback) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : fallback;
}

std::string architecture_of(const nlohmann::json& config) {
  if (config.contains("architectures") && config["architectures"].is_array() &&
      !config["architectures"].empty() && config["architectures"][0].is_string()) {
    return config["architectures"][0].get<std::string>();
  }
  return "";
}

std::string file_name_in(const ModelFolder& m, const std::string& tensor) {
  const std::filesystem::path& file = m.file_of(tensor);
  const std::filesystem::path rel = file.lexically_relative(m.dir());
  return rel.empty() ? file.filename().string() : rel.string();
}

nlohmann::ordered_json to_json(const ModelFolder& m, const std::string& path) {
  nlohmann::ordered_json out;
  const std::string arch = architecture_of(m.config());
  const std::string model_type = json_string_or(m.config(), "model_type", "");
  out["path"] = path;
  out["architecture"] = arch.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(arch);
  out["model_type"] =
      model_type.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(model_type);
  out["layers"] = {{"prefix", m.layers().prefix}, {"count", m.layers().n_layers}};
  out["tie_word_embeddings"] = m.ties_word_embeddings();
  out["parameters"] = m.parameter_count();
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const std::string& name : m.tensor_names()) {
    const TensorInfo& t = *m.find(name);
    tensors.push_back({{"name", name},
                       {"dtype", dtype_name(t.dtype)},
                       {"shape", t.shape},
                       {"file", file_name_in(m, name)}});
  }
  out["tensors"] = std::move(tensors);
  out["metadata"] = m.metadata();
  return out;
}

void print_human(const ModelFolder& m, const std::string& path) {
  const std::string arch = architecture_of(m.config());
  const std::string model_type = json_string_or(m.config(), "model_type", "?");
  fmt::print("path:                {}\n", path);
  if (m.has_config()) {
    fmt::print("architecture:        {} (model_type {})\n", arch.empty() ? "?" : arch, model_type);
  } else {
    fmt::print("architecture:        ? (no config.json)\n");
  }
  const LayerLayout layers = m.layers();
  if (layers.prefix.empty()) {
    fmt::print("layers:              none found\n");
  } else {
    fmt::print("layers:              {} x {}\n", printable(layers.prefix), layers.n_layers);
  }
  fmt::print("tie_word_embeddings: {}\n", m.ties_word_embeddings());
  const int64_t params = m.parameter_count();
  fmt::print("parameters:          {} ({})\n", params,
             short_count(static_cast<double>(params), kCountUnits, 1000.0));

  std::map<DType, uint64_t> bytes_by_dtype;
  size_t name_width = 4;
  for (const std::string& name : m.tensor_names()) {
    const TensorInfo& t = *m.find(name);
    bytes_by_dtype[t.dtype] += t.nbytes();
    name_width = std::max(name_width, printable(name).size());
  }
  fmt::print("bytes by dtype:\n");
  for (const auto& [dtype, bytes] : bytes_by_dtype) {
    fmt::print("  {:<8} {} ({})\n", dtype_name(dtype), bytes,
               short_count(static_cast<double>(bytes), kByteUnits, 1000.0));
  }
  fmt::print("tensors ({}):\n", m.tensor_names().size());
  fmt::print("  {:<{}}  {:<8} {}\n", "name", name_width, "dtype", "shape");
  for (const std::string& name : m.tensor_names()) {
    const TensorInfo& t = *m.find(name);
    fmt::print("  {:<{}}  {:<8} {}\n", printable(name), name_width, dtype_name(t.dtype),
               shape_to_string(t.shape));
  }
}

void run(const InspectFlags& flags) {
  const std::filesystem::path path(flags.path);
  if (is_gguf_file(path)) {
    inspect_gguf(path, flags.json);
    return;
  }
  std::error_code ec;
  const ModelFolder m = std::filesystem::is_directory(path, ec) ? ModelFolder::open(path)
                        : path.extension() == ".safetensors" || std::filesystem::exists(path, ec)
                            ? ModelFolder::open_file(path)
                            : ModelFolder::open(path);
  if (flags.json) {
    fmt::print("{}\n", to_json(m, flags.path).dump(2));
  } else {
    print_human(m, flags.path);
  }
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto flags = std::make_shared<InspectFlags>();
  CLI::App* cmd = app.add_subcommand(
      "inspect",
      "Show what a model folder, a .safetensors or a .gguf file holds (validates every file)");
  cmd->add_option("path", flags->path, "Model folder, .safetensors or .gguf file")->required();
  cmd->add_flag("--json", flags->json, "Print one JSON object instead of text");
  cmd->callback([flags] { run(*flags); });
}

}  // namespace shoal::cli
