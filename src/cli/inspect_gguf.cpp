#include "cli/inspect_gguf.h"

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <variant>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "cli/text_format.h"
#include "shoal/gguf.h"

namespace shoal::cli {
namespace {

// Arrays longer than this are shown by their first kArrayHead values (a vocabulary has 150K).
constexpr size_t kArrayFull = 64;
constexpr size_t kArrayHead = 16;
// Values in the text table are cut to this many characters.
constexpr size_t kTextWidth = 72;

const char* value_type_name(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8:
      return "u8";
    case GgufValueType::kI8:
      return "i8";
    case GgufValueType::kU16:
      return "u16";
    case GgufValueType::kI16:
      return "i16";
    case GgufValueType::kU32:
      return "u32";
    case GgufValueType::kI32:
      return "i32";
    case GgufValueType::kF32:
      return "f32";
    case GgufValueType::kBool:
      return "bool";
    case GgufValueType::kString:
      return "string";
    case GgufValueType::kArray:
      return "array";
    case GgufValueType::kU64:
      return "u64";
    case GgufValueType::kI64:
      return "i64";
    case GgufValueType::kF64:
      return "f64";
  }
  return "?";
}

nlohmann::ordered_json scalar_json(const GgufValue& v) {
  return std::visit(
      [](const auto& x) -> nlohmann::ordered_json {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::shared_ptr<const GgufArray>>) {
          return nullptr;  // an array inside an array (GGUF allows it; model files do not use it)
        } else {
          return x;
        }
      },
      v);
}

std::string scalar_text(const GgufValue& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return fmt::format("\"{}\"", printable(x));
        } else if constexpr (std::is_same_v<T, bool>) {
          return x ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::shared_ptr<const GgufArray>>) {
          return fmt::format("{}[{}]", value_type_name(x->type), x->values.size());
        } else {
          return fmt::format("{}", x);
        }
      },
      v);
}

std::string cut(std::string s) {
  if (s.size() > kTextWidth) s = fmt::format("{}...", s.substr(0, kTextWidth - 3));
  return s;
}

// (type column, value column) of one metadata entry.
std::pair<std::string, std::string> entry_text(GgufValueType type, const GgufValue& v) {
  const auto* array = std::get_if<std::shared_ptr<const GgufArray>>(&v);
  if (array == nullptr) return {value_type_name(type), cut(scalar_text(v))};
  const GgufArray& a = **array;
  std::string shown = "[";
  for (size_t i = 0; i < a.values.size() && shown.size() < kTextWidth; ++i) {
    if (i > 0) shown += ", ";
    shown += scalar_text(a.values[i]);
  }
  shown += "]";
  return {fmt::format("{}[{}]", value_type_name(a.type), a.values.size()), cut(shown)};
}

nlohmann::ordered_json entry_json(GgufValueType type, const GgufValue& v) {
  nlohmann::ordered_json j;
  const auto* array = std::get_if<std::shared_ptr<const GgufArray>>(&v);
  if (array == nullptr) {
    j["type"] = value_type_name(type);
    j["value"] = scalar_json(v);
    return j;
  }
  const GgufArray& a = **array;
  j["type"] = "array";
  j["element_type"] = value_type_name(a.type);
  j["length"] = a.values.size();
  const size_t shown = a.values.size() <= kArrayFull ? a.values.size() : kArrayHead;
  nlohmann::ordered_json values = nlohmann::ordered_json::array();
  for (size_t i = 0; i < shown; ++i) values.push_back(scalar_json(a.values[i]));
  j["values"] = std::move(values);
  j["truncated"] = shown < a.values.size();
  return j;
}

int64_t element_count(const GgufTensorInfo& t) {
  int64_t n = 1;
  for (const int64_t d : t.shape) n *= d;
  return n;
}

void print_json(const GgufFile& f, const std::filesystem::path& path) {
  nlohmann::ordered_json out;
  out["path"] = path.string();
  out["format"] = "gguf";
  out["version"] = f.version();
  const auto arch = f.get_string("general.architecture");
  out["architecture"] = arch ? nlohmann::ordered_json(*arch) : nlohmann::ordered_json();
  int64_t params = 0;
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const GgufTensorInfo& t : f.tensors()) {
    params += element_count(t);
    tensors.push_back({{"name", t.name},
                       {"type", ggml_type_name(t.type)},
                       {"shape", t.shape},
                       {"offset", t.offset},
                       {"bytes", t.nbytes}});
  }
  out["parameters"] = params;
  nlohmann::ordered_json metadata = nlohmann::ordered_json::object();
  for (const auto& [key, value] : f.metadata()) {
    metadata[key] = entry_json(*f.value_type(key), value);
  }
  out["metadata"] = std::move(metadata);
  out["tensors"] = std::move(tensors);
  // Strings in a GGUF file need not be valid UTF-8: replace rather than fail.
  fmt::print("{}\n", out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
}

void print_text(const GgufFile& f, const std::filesystem::path& path) {
  const auto arch = f.get_string("general.architecture");
  fmt::print("path:          {}\n", path.string());
  fmt::print("format:        GGUF v{}\n", f.version());
  fmt::print("architecture:  {}\n", arch ? printable(*arch) : "? (no general.architecture)");
  int64_t params = 0;
  std::map<std::string, uint64_t> bytes_by_type;
  size_t name_width = 4;
  for (const GgufTensorInfo& t : f.tensors()) {
    params += element_count(t);
    bytes_by_type[ggml_type_name(t.type)] += t.nbytes;
    name_width = std::max(name_width, printable(t.name).size());
  }
  fmt::print("parameters:    {} ({})\n", params,
             short_count(static_cast<double>(params), kCountUnits, 1000.0));
  fmt::print("bytes by type:\n");
  for (const auto& [type, bytes] : bytes_by_type) {
    fmt::print("  {:<8} {} ({})\n", type, bytes,
               short_count(static_cast<double>(bytes), kByteUnits, 1000.0));
  }
  size_t key_width = 3;
  for (const auto& entry : f.metadata())
    key_width = std::max(key_width, printable(entry.first).size());
  fmt::print("metadata ({}):\n", f.metadata().size());
  for (const auto& [key, value] : f.metadata()) {
    const auto [type, text] = entry_text(*f.value_type(key), value);
    fmt::print("  {:<{}}  {:<14} {}\n", printable(key), key_width, type, text);
  }
  fmt::print("tensors ({}):\n", f.tensors().size());
  fmt::print("  {:<{}}  {:<6} {:<16} {}\n", "name", name_width, "type", "shape", "offset");
  for (const GgufTensorInfo& t : f.tensors()) {
    fmt::print("  {:<{}}  {:<6} {:<16} {}\n", printable(t.name), name_width, ggml_type_name(t.type),
               shape_to_string(t.shape), t.offset);
  }
}

}  // namespace

bool is_gguf_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  if (path.extension() == ".gguf") return true;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string_view(magic, 4) == "GGUF";
}

void inspect_gguf(const std::filesystem::path& path, bool json) {
  const GgufFile f = GgufFile::open(path);
  if (json) {
    print_json(f, path);
  } else {
    print_text(f, path);
  }
}

}  // namespace shoal::cli
