// Hugging Face model folders: which safetensors files hold the weights (index, single file, or
// every *.safetensors file), config.json, tokenizer files, and the layer layout read from tensor
// names.
#include "shoal/model_folder.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "io/gguf_hf_model.h"
#include "io/json_util.h"
#include "shoal/error.h"

namespace shoal {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kIndexName = "model.safetensors.index.json";
// tensors_ entries of a GGUF-backed folder name this instead of a safetensors file.
constexpr size_t kGgufFile = static_cast<size_t>(-1);

// A regular file named *.gguf (whose header the GGUF reader then checks) or starting "GGUF".
bool is_gguf_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  if (path.extension() == ".gguf") return true;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::string_view(magic, 4) == "GGUF";
}

// Reads and parses a JSON file; FormatError with nlohmann's line/column on bad JSON.
json read_json(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(errno_message("cannot open " + path.string()));
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw IoError(errno_message("cannot read " + path.string()));
  try {
    return json::parse(buf.str());
  } catch (const json::exception& e) {
    throw FormatError(path.string() + ": invalid JSON: " + io::json_error_text(e));
  }
}

// "7" -> 7; nullopt for anything but a plain decimal (no sign, no leading zero) that fits an int,
// so that join_layer_name(split_layer_name(x)) == x.
std::optional<int> parse_layer_index(std::string_view s) {
  if (s.empty() || s.size() > 9 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  int v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return std::nullopt;
    v = v * 10 + (ch - '0');
  }
  return v;
}

std::vector<std::string_view> split_dots(std::string_view name) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = name.find('.', start);
    parts.push_back(name.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) return parts;
    start = dot + 1;
  }
}

bool has_component(std::string_view name, std::initializer_list<std::string_view> wanted) {
  for (std::string_view part : split_dots(name)) {
    if (std::find(wanted.begin(), wanted.end(), part) != wanted.end()) return true;
  }
  return false;
}

// GGUF-style names put the embedding at the top level: token_embd.weight, output.weight.
std::string_view first_component(std::string_view name) {
  return name.substr(0, name.find('.'));
}

bool is_input_embedding(std::string_view name) {
  return has_component(name,
                       {"embed_tokens", "wte", "word_embeddings", "tok_embeddings", "embed_in"}) ||
         first_component(name) == "token_embd";
}

bool is_output_embedding(std::string_view name) {
  return has_component(name, {"lm_head", "embed_out"}) || first_component(name) == "output";
}

LayerLayout find_layout(const std::vector<std::string>& names) {
  struct Count {
    size_t tensors = 0;
    int max_layer = -1;
  };
  std::map<std::string, Count> by_prefix;  // ordered: ties go to the first prefix by name
  for (const std::string& name : names) {
    const auto split = split_layer_name(name);
    if (!split) continue;
    Count& c = by_prefix[split->prefix];
    ++c.tensors;
    c.max_layer = std::max(c.max_layer, split->layer);
  }
  LayerLayout layout;
  size_t best = 0;
  for (const auto& [prefix, count] : by_prefix) {
    if (count.tensors > best) {
      best = count.tensors;
      layout = LayerLayout{prefix, count.max_layer + 1};
    }
  }
  return layout;
}

// A shard name from an index must stay inside the folder.
bool is_safe_relative(const std::string& name) {
  const fs::path p(name);
  if (name.empty() || p.is_absolute()) return false;
  for (const auto& part : p) {
    if (part == "..") return false;
  }
  return true;
}

}  // namespace

std::optional<LayerName> split_layer_name(std::string_view tensor_name) {
  size_t start = 0;
  while (start < tensor_name.size()) {
    const size_t dot = tensor_name.find('.', start);
    const size_t end = dot == std::string_view::npos ? tensor_name.size() : dot;
    // The index is never the first component: "0.weight" has no layer prefix.
    if (start > 0) {
      if (const auto layer = parse_layer_index(tensor_name.substr(start, end - start))) {
        LayerName out;
        out.prefix = std::string(tensor_name.substr(0, start - 1));
        out.layer = *layer;
        if (end < tensor_name.size()) out.rest = std::string(tensor_name.substr(end + 1));
        return out;
      }
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return std::nullopt;
}

std::string join_layer_name(const LayerName& n) {
  std::string s = n.prefix + "." + std::to_string(n.layer);
  if (!n.rest.empty()) s += "." + n.rest;
  return s;
}

bool is_embedding_name(std::string_view tensor_name) {
  return is_input_embedding(tensor_name) || is_output_embedding(tensor_name);
}

struct ModelFolder::GgufSource {
  explicit GgufSource(GgufFile file) : model(std::move(file)) {}
  io::GgufHfModel model;
  std::vector<TensorInfo> infos;  // parallel to model.tensors()
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<std::byte>> materialised;
};

ModelFolder ModelFolder::open(const fs::path& dir) {
  std::error_code ec;
  if (is_gguf_file(dir)) return open_gguf(dir);
  if (!fs::is_directory(dir, ec)) {
    if (fs::exists(dir, ec))
      throw IoError("cannot open model folder " + dir.string() + ": not a directory");
    throw IoError("cannot open model folder " + dir.string() + ": no such directory");
  }
  ModelFolder m;
  m.dir_ = dir;

  const fs::path config_path = dir / "config.json";
  if (fs::exists(config_path, ec)) {
    m.config_ = read_json(config_path);
    if (!m.config_.is_object()) {
      throw FormatError(config_path.string() + ": is a JSON " + m.config_.type_name() +
                        ", expected an object");
    }
    m.has_config_ = true;
  }

  const fs::path index_path = dir / kIndexName;
  if (fs::exists(index_path, ec)) {
    const json index = read_json(index_path);
    const auto bad_index = [&](const std::string& what) {
      return FormatError(index_path.string() + ": " + what);
    };
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      throw bad_index("expected an object with a \"weight_map\" object of tensor name to file");
    }
    const json& weight_map = index["weight_map"];
    // Open each shard once, in name order (so tensor_names() goes shard by shard).
    std::map<std::string, std::vector<std::string>> by_shard;
    for (const auto& item : weight_map.items()) {
      if (!item.value().is_string()) {
        throw bad_index("weight_map entry " + io::quoted(item.key()) + " is a JSON " +
                        item.value().type_name() + ", expected a file name");
      }
      const std::string& shard = item.value().get_ref<const std::string&>();
      if (!is_safe_relative(shard)) {
        throw bad_index("weight_map entry " + io::quoted(item.key()) + " names " +
                        io::quoted(shard) + ", expected a file inside the folder");
      }
      by_shard[shard].push_back(item.key());
    }
    for (const auto& [shard, names] : by_shard) {
      const fs::path shard_path = dir / shard;
      if (!fs::exists(shard_path, ec)) {
        throw bad_index("shard " + io::quoted(shard) + " (holding tensor " +
                        io::quoted(names.front()) + ") does not exist");
      }
      auto file = std::make_unique<SafetensorsFile>(SafetensorsFile::open(shard_path));
      const std::set<std::string_view> listed(names.begin(), names.end());
      for (const std::string& name : names) {
        if (file->find(name) == nullptr) {
          throw bad_index("tensor " + io::quoted(name) + " is assigned to shard " +
                          io::quoted(shard) + ", which does not contain it");
        }
      }
      // Shard order, as the file lays them out; tensors the index does not list are ignored.
      const size_t file_index = m.files_.size();
      for (const TensorInfo& t : file->tensors()) {
        if (!listed.contains(t.name)) continue;
        m.tensors_.emplace(t.name, std::make_pair(file_index, &t));
        m.names_.push_back(t.name);
      }
      m.files_.push_back(std::move(file));
    }
  } else {
    std::vector<fs::path> files;
    if (fs::exists(dir / "model.safetensors", ec)) {
      files.push_back(dir / "model.safetensors");
    } else {
      for (const auto& entry : fs::directory_iterator(dir, ec)) {
        if (entry.path().extension() == ".safetensors" && entry.is_regular_file(ec)) {
          files.push_back(entry.path());
        }
      }
      if (ec) throw IoError("cannot list " + dir.string() + ": " + ec.message());
      std::sort(files.begin(), files.end());
    }
    if (files.empty()) {
      throw FormatError(dir.string() +
                        ": no model.safetensors, model.safetensors.index.json or *.safetensors "
                        "file (pytorch_model.bin is not read: convert the model to safetensors)");
    }
    m.add_files(files);
  }
  m.layout_ = find_layout(m.names_);
  return m;
}

ModelFolder ModelFolder::open_file(const fs::path& safetensors_file) {
  ModelFolder m;
  m.dir_ = safetensors_file.parent_path();
  m.single_file_ = true;
  m.add_files({safetensors_file});
  m.layout_ = find_layout(m.names_);
  return m;
}

ModelFolder ModelFolder::open_gguf(const fs::path& gguf_file) {
  ModelFolder m;
  m.dir_ = gguf_file;
  m.single_file_ = true;
  m.gguf_ = std::make_unique<GgufSource>(GgufFile::open(gguf_file));
  m.config_ = m.gguf_->model.config();
  io::shorten_f32_config_values(m.config_);
  m.has_config_ = true;
  const auto& tensors = m.gguf_->model.tensors();
  m.gguf_->infos.reserve(tensors.size());
  for (const io::GgufHfTensor& t : tensors) {
    TensorInfo info;
    info.name = t.name;
    info.dtype = t.dtype;
    info.shape = t.shape;
    info.end = t.nbytes();
    m.gguf_->infos.push_back(std::move(info));
  }
  for (const TensorInfo& info : m.gguf_->infos) {
    m.tensors_.emplace(info.name, std::make_pair(kGgufFile, &info));
    m.names_.push_back(info.name);
  }
  m.layout_ = find_layout(m.names_);
  return m;
}

const GgufFile* ModelFolder::gguf() const {
  return gguf_ ? &gguf_->model.file() : nullptr;
}

void ModelFolder::add_files(const std::vector<fs::path>& files) {
  for (const fs::path& path : files) {
    auto file = std::make_unique<SafetensorsFile>(SafetensorsFile::open(path));
    const size_t file_index = files_.size();
    for (const TensorInfo& t : file->tensors()) {
      const auto [it, inserted] = tensors_.emplace(t.name, std::make_pair(file_index, &t));
      if (!inserted) {
        throw FormatError(dir_.string() + ": tensor " + io::quoted(t.name) + " is in both " +
                          files_[it->second.first]->path().filename().string() + " and " +
                          path.filename().string());
      }
      names_.push_back(t.name);
    }
    files_.push_back(std::move(file));
  }
}

ModelFolder::ModelFolder(ModelFolder&&) noexcept = default;
ModelFolder& ModelFolder::operator=(ModelFolder&&) noexcept = default;
ModelFolder::~ModelFolder() = default;

const TensorInfo* ModelFolder::find(std::string_view name) const {
  const auto it = tensors_.find(std::string(name));
  return it == tensors_.end() ? nullptr : it->second.second;
}

const fs::path& ModelFolder::file_of(std::string_view name) const {
  const auto it = tensors_.find(std::string(name));
  if (it == tensors_.end()) {
    throw FormatError(dir_.string() + ": no tensor " + io::quoted(name));
  }
  if (it->second.first == kGgufFile) return dir_;
  return files_[it->second.first]->path();
}

TensorView ModelFolder::view(std::string_view name) const {
  const auto it = tensors_.find(std::string(name));
  if (it == tensors_.end()) {
    throw FormatError(dir_.string() + ": no tensor " + io::quoted(name));
  }
  if (it->second.first != kGgufFile) return files_[it->second.first]->view(*it->second.second);
  const io::GgufHfTensor& t = *gguf_->model.find(name);
  if (const auto direct = gguf_->model.direct_view(t)) return *direct;
  const std::lock_guard lock(gguf_->mutex);
  auto m = gguf_->materialised.find(t.name);
  if (m == gguf_->materialised.end()) {
    m = gguf_->materialised.emplace(t.name, gguf_->model.materialise(t)).first;
  }
  return TensorView{t.dtype, t.shape, m->second.data(), m->second.size()};
}

void ModelFolder::release(std::string_view name) const {
  const auto it = tensors_.find(std::string(name));
  if (it == tensors_.end()) return;
  if (it->second.first != kGgufFile) {
    files_[it->second.first]->release(*it->second.second);
    return;
  }
  const std::lock_guard lock(gguf_->mutex);
  gguf_->materialised.erase(std::string(name));
}

void ModelFolder::release(std::string_view name, uint64_t byte_offset, uint64_t n) const {
  const auto it = tensors_.find(std::string(name));
  if (it != tensors_.end() && it->second.first != kGgufFile) {
    files_[it->second.first]->release(*it->second.second, byte_offset, n);
  }
}

bool ModelFolder::ties_word_embeddings() const {
  // Multimodal configs (Gemma 3, ...) keep the language model's settings in text_config.
  for (const json* c :
       {&config_, config_.contains("text_config") ? &config_["text_config"] : nullptr}) {
    if (c != nullptr && c->is_object() && c->contains("tie_word_embeddings") &&
        (*c)["tie_word_embeddings"].is_boolean()) {
      return (*c)["tie_word_embeddings"].get<bool>();
    }
  }
  bool input = false;
  bool output = false;
  for (const std::string& name : names_) {
    input = input || is_input_embedding(name);
    output = output || is_output_embedding(name);
  }
  return input && !output;
}

std::vector<fs::path> ModelFolder::tokenizer_files() const {
  std::vector<fs::path> out;
  if (single_file_) return out;
  std::error_code ec;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
                           "generation_config.json", "chat_template.jinja"}) {
    if (fs::is_regular_file(dir_ / name, ec)) out.push_back(dir_ / name);
  }
  return out;
}

int64_t ModelFolder::parameter_count() const {
  int64_t n = 0;
  for (const auto& [name, where] : tensors_) n += where.second->numel();
  return n;
}

std::map<std::string, std::string> ModelFolder::metadata() const {
  std::map<std::string, std::string> out;
  for (const auto& file : files_) out.insert(file->metadata().begin(), file->metadata().end());
  return out;
}

}  // namespace shoal
