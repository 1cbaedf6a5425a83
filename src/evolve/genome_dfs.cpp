// Data-flow-space genome: option checks, model compatibility, gene layout and bounds, decoding to
// a LayerPath, descriptions and the path JSON. Exports are in genome_dfs_export.cpp.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>

#include "shoal/engine.h"
#include "shoal/error.h"
#include "shoal/genome_dfs.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFormat = "shoal-dfs-path";
constexpr int kVersion = 1;

[[noreturn]] void fail(const std::string& message) {
  throw ConfigError("evolve dfs genome: " + message);
}

// Relative paths: the current directory first, then the config's folder.
fs::path resolve(const std::string& written, const fs::path& config_dir) {
  std::error_code ec;
  const fs::path p(written);
  if (fs::exists(p, ec)) return p;
  if (!p.is_absolute() && !config_dir.empty() && fs::exists(config_dir / p, ec)) {
    return config_dir / p;
  }
  fail("model '" + written + "' not found");
}

// A folder's tokenizer.json, or a GGUF file's vocabulary.
std::optional<fs::path> tokenizer_location(const fs::path& model) {
  std::error_code ec;
  if (fs::is_directory(model, ec)) {
    if (fs::exists(model / "tokenizer.json", ec)) return model;
    return std::nullopt;
  }
  return model;
}

// What identifies a tokenizer: the loaded vocabulary, or for a tokenizer.json that shoal cannot
// load (e.g. a WordLevel model) its "model" and "added_tokens" entries as JSON.
struct TokenizerId {
  std::optional<Tokenizer> loaded;
  nlohmann::json raw;
  std::string why_not_loaded;
};

TokenizerId identify_tokenizer(const fs::path& from) {
  TokenizerId id;
  try {
    id.loaded = load_tokenizer(from);
  } catch (const FormatError& e) {
    std::error_code ec;
    if (!fs::is_directory(from, ec)) throw;
    std::ifstream in(from / "tokenizer.json", std::ios::binary);
    const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw;
    id.raw = {{"model", j.value("model", nlohmann::json())},
              {"added_tokens", j.value("added_tokens", nlohmann::json())}};
    id.why_not_loaded = e.what();
  }
  return id;
}

// Layers of one model only mix with another's when token ids mean the same thing.
void check_same_tokenizer(const TokenizerId& ta, const std::string& a_name, const TokenizerId& tb,
                          const std::string& b_name) {
  auto differ = [&](const std::string& what) {
    fail("models '" + a_name + "' and '" + b_name + "' have different tokenizers (" + what +
         "); a data-flow path needs one shared tokenizer");
  };
  if (!ta.loaded || !tb.loaded) {
    if (ta.loaded || tb.loaded) {
      differ("one cannot be read: " + (ta.loaded ? tb : ta).why_not_loaded);
    }
    if (ta.raw != tb.raw) differ("tokenizer.json's vocabularies differ");
    return;
  }
  const Tokenizer& a = *ta.loaded;
  const Tokenizer& b = *tb.loaded;
  if (a.vocab_size() != b.vocab_size()) {
    differ("vocabulary sizes " + std::to_string(a.vocab_size()) + " and " +
           std::to_string(b.vocab_size()));
  }
  for (size_t id = 0; id < a.vocab_size(); ++id) {
    const int32_t i = static_cast<int32_t>(id);
    if (a.token_piece(i) != b.token_piece(i)) differ("token " + std::to_string(id));
  }
  if (a.bos_id() != b.bos_id()) differ("BOS id");
  if (a.eos_id() != b.eos_id()) differ("EOS id");
}

std::string format_scale(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", s);
  return buf;
}

}  // namespace

DfsGenome::DfsGenome(DfsGenomeOptions options, const fs::path& config_dir)
    : options_(std::move(options)) {
  for (const auto& m : options_.models) {
    const fs::path p = resolve(m, config_dir);
    paths_.push_back(p.string());
    sources_.push_back(open_weights(p));
    tokenizer_from_.push_back(tokenizer_location(p));
  }
  init();
}

DfsGenome::DfsGenome(DfsGenomeOptions options,
                     std::vector<std::shared_ptr<const WeightSource>> sources)
    : options_(std::move(options)), sources_(std::move(sources)) {
  if (sources_.size() != options_.models.size()) {
    fail(std::to_string(sources_.size()) + " sources for " +
         std::to_string(options_.models.size()) + " models");
  }
  paths_ = options_.models;
  for (const auto& s : sources_) {
    if (!s) fail("a model source is null");
    const fs::path dir = s->tokenizer_dir();
    tokenizer_from_.push_back(dir.empty() ? std::nullopt : tokenizer_location(dir));
  }
  init();
}

void DfsGenome::init() {
  const DfsGenomeOptions& o = options_;
  if (o.models.empty()) fail("no models");
  std::set<std::string> seen;
  for (const auto& m : o.models) {
    if (!seen.insert(m).second) fail("model '" + m + "' is listed twice");
  }
  if (o.head_model.empty()) {
    head_ = 0;
  } else {
    const auto it = std::find(o.models.begin(), o.models.end(), o.head_model);
    if (it == o.models.end()) fail("head_model '" + o.head_model + "' is not one of the models");
    head_ = static_cast<int>(it - o.models.begin());
  }
  if (o.repeats < 1) fail("repeats must be at least 1, got " + std::to_string(o.repeats));
  if (!(std::isfinite(o.scale_lower) && std::isfinite(o.scale_upper) && o.scale_lower > 0 &&
        o.scale_lower < o.scale_upper)) {
    fail("the scale box needs 0 < scale_lower < scale_upper, got [" + format_scale(o.scale_lower) +
         ", " + format_scale(o.scale_upper) + "]");
  }
  if (o.max_path_length < 0) fail("max_path_length must be >= 0 (0: no limit)");

  for (size_t i = 0; i < sources_.size(); ++i) {
    const ModelConfig c = parse_model_config(sources_[i]->config(), sources_[i]->describe());
    first_global_.push_back(total_layers_);
    model_layers_.push_back(static_cast<int>(c.n_layers));
    total_layers_ += static_cast<int>(c.n_layers);
  }
  // The head model run as it is: validates every source's tensors and that all share the
  // architecture and sizes (Model::load_path's checks), once, before any candidate.
  LayerPath identity;
  identity.head_source = head_;
  for (int l = 0; l < model_layers_[static_cast<size_t>(head_)]; ++l) {
    identity.steps.push_back({head_, l, 1.0});
  }
  ModelOptions check_options;
  check_options.n_threads = 1;
  (void)Model::load_path(sources_, identity, check_options);

  std::optional<TokenizerId> first_tok;
  size_t first_tok_model = 0;
  for (size_t i = 0; i < sources_.size(); ++i) {
    if (!tokenizer_from_[i]) continue;
    TokenizerId t = identify_tokenizer(*tokenizer_from_[i]);
    if (first_tok) {
      check_same_tokenizer(*first_tok, o.models[first_tok_model], t, o.models[i]);
    } else {
      first_tok = std::move(t);
      first_tok_model = i;
    }
  }

  // Labels for descriptions: folder names, unless two models share one.
  std::set<std::string> names;
  for (const auto& m : o.models) names.insert(fs::path(m).filename().string());
  for (size_t i = 0; i < o.models.size(); ++i) {
    const std::string name = fs::path(o.models[i]).filename().string();
    labels_.push_back(names.size() == o.models.size() && !name.empty() ? name
                                                                       : "m" + std::to_string(i));
  }

  const size_t t_slots = static_cast<size_t>(n_slots());
  lower_.assign(t_slots, -1.0);
  upper_.assign(t_slots, 1.0);
  if (o.search_scales) {
    const size_t n_w = static_cast<size_t>(total_layers_ + 1) * static_cast<size_t>(total_layers_);
    lower_.insert(lower_.end(), n_w, o.scale_lower);
    upper_.insert(upper_.end(), n_w, o.scale_upper);
  }
}

DfsSlot DfsGenome::slot(int t) const {
  if (t < 0 || t >= n_slots()) fail("slot " + std::to_string(t) + " is outside [0, T)");
  DfsSlot s;
  s.repeat = t / total_layers_;
  s.global = t % total_layers_;
  s.model =
      static_cast<int>(std::upper_bound(first_global_.begin(), first_global_.end(), s.global) -
                       first_global_.begin()) -
      1;
  s.layer = s.global - first_global_[static_cast<size_t>(s.model)];
  return s;
}

int DfsGenome::global_layer(int model, int layer) const {
  if (model < 0 || model >= n_models() || layer < 0 ||
      layer >= model_layers_[static_cast<size_t>(model)]) {
    fail("no layer " + std::to_string(layer) + " in model " + std::to_string(model));
  }
  return first_global_[static_cast<size_t>(model)] + layer;
}

size_t DfsGenome::scale_index(int from, int to) const {
  if (!options_.search_scales) fail("scales are not searched (search_scales is off)");
  if (from < -1 || from >= total_layers_ || to < 0 || to >= total_layers_) {
    fail("W[" + std::to_string(from) + "][" + std::to_string(to) + "] is outside the matrix");
  }
  const size_t m = static_cast<size_t>(total_layers_);
  return static_cast<size_t>(n_slots()) + static_cast<size_t>(from + 1) * m +
         static_cast<size_t>(to);
}

std::vector<double> DfsGenome::initial() const {
  std::vector<double> x(size(), 1.0);
  for (int t = 0; t < n_slots(); ++t) {
    const DfsSlot s = slot(t);
    x[static_cast<size_t>(t)] = s.repeat == 0 && s.model == head_ ? 0.5 : -0.5;
  }
  for (size_t i = static_cast<size_t>(n_slots()); i < x.size(); ++i) {
    x[i] = std::clamp(1.0, lower_[i], upper_[i]);
  }
  return x;
}

std::string DfsGenome::gene_name(size_t i) const {
  if (i >= size()) fail("gene " + std::to_string(i) + " is outside the genome");
  auto layer_text = [&](int global) {
    const DfsSlot s = slot(global);  // global < M: repeat 0
    return labels_[static_cast<size_t>(s.model)] + " layer " + std::to_string(s.layer);
  };
  if (i < static_cast<size_t>(n_slots())) {
    const DfsSlot s = slot(static_cast<int>(i));
    return "slot " + std::to_string(i) + " (repeat " + std::to_string(s.repeat) + ", " +
           layer_text(s.global) + ")";
  }
  const size_t w = i - static_cast<size_t>(n_slots());
  const int from = static_cast<int>(w / static_cast<size_t>(total_layers_)) - 1;
  const int to = static_cast<int>(w % static_cast<size_t>(total_layers_));
  return "W[" + (from < 0 ? std::string("embed") : layer_text(from)) + " -> " + layer_text(to) +
         "]";
}

LayerPath DfsGenome::decode(const std::vector<double>& genes) const {
  if (genes.size() != size()) {
    fail("the genome has " + std::to_string(genes.size()) + " values; this layout (" +
         std::to_string(n_models()) + " models, " + std::to_string(total_layers_) +
         " layers, repeats " + std::to_string(options_.repeats) +
         (options_.search_scales ? ", scales searched" : "") + ") needs " + std::to_string(size()));
  }
  for (size_t i = 0; i < genes.size(); ++i) {
    if (!std::isfinite(genes[i])) fail("gene " + std::to_string(i) + " is not finite");
  }
  const size_t limit = options_.max_path_length == 0
                           ? static_cast<size_t>(n_slots())
                           : static_cast<size_t>(options_.max_path_length);
  LayerPath path;
  path.head_source = head_;
  int previous = -1;  // the embeddings
  for (int t = 0; t < n_slots() && path.steps.size() < limit; ++t) {
    if (!(genes[static_cast<size_t>(t)] > 0)) continue;
    const DfsSlot s = slot(t);
    const double scale = options_.search_scales ? genes[scale_index(previous, s.global)] : 1.0;
    path.steps.push_back({s.model, s.layer, scale});
    previous = s.global;
  }
  return path;
}

std::string DfsGenome::describe(const LayerPath& path) const {
  std::string out =
      std::to_string(path.steps.size()) + (path.steps.size() == 1 ? " step:" : " steps:");
  for (const LayerStep& s : path.steps) {
    out += " " + labels_.at(static_cast<size_t>(s.source)) + "[" + std::to_string(s.layer) + "]";
    if (s.input_scale != 1.0) out += "x" + format_scale(s.input_scale);
  }
  return out;
}

Model DfsGenome::load(const LayerPath& path, const ModelOptions& options) const {
  return Model::load_path(sources_, path, options);
}

Tokenizer DfsGenome::tokenizer() const {
  const auto& from = tokenizer_from_[static_cast<size_t>(head_)];
  if (!from)
    fail("the head model '" + options_.models[static_cast<size_t>(head_)] + "' has no tokenizer");
  return load_tokenizer(*from);
}

nlohmann::json DfsGenome::to_json(const std::vector<double>& genes) const {
  const LayerPath path = decode(genes);
  nlohmann::json j = dfs_path_to_json({paths_, path});
  j["description"] = describe(path);
  j["genome"] = genes;
  return j;
}

nlohmann::json dfs_path_to_json(const DfsPathFile& file) {
  nlohmann::json steps = nlohmann::json::array();
  for (const LayerStep& s : file.path.steps) {
    steps.push_back({{"model", s.source}, {"layer", s.layer}, {"scale", s.input_scale}});
  }
  return {{"format", kFormat},
          {"version", kVersion},
          {"models", file.models},
          {"head_model", file.path.head_source},
          {"steps", std::move(steps)}};
}

DfsPathFile dfs_path_from_json(const nlohmann::json& j) {
  auto bad = [](const std::string& what) -> FormatError {
    return FormatError("dfs path JSON: " + what);
  };
  if (!j.is_object()) throw bad("not a JSON object");
  static const std::set<std::string> kKeys = {"format", "version",     "models", "head_model",
                                              "steps",  "description", "genome"};
  for (const auto& [key, value] : j.items()) {
    if (!kKeys.count(key)) throw bad("unknown key '" + key + "'");
  }
  if (j.value("format", "") != kFormat)
    throw bad("\"format\" must be \"" + std::string(kFormat) + "\"");
  if (!j.contains("version") || j["version"] != kVersion) throw bad("\"version\" must be 1");
  DfsPathFile f;
  if (!j.contains("models") || !j["models"].is_array() || j["models"].empty()) {
    throw bad("\"models\" must be a non-empty array of strings");
  }
  for (const auto& m : j["models"]) {
    if (!m.is_string()) throw bad("\"models\" must be a non-empty array of strings");
    f.models.push_back(m.get<std::string>());
  }
  const int n = static_cast<int>(f.models.size());
  auto index = [&](const nlohmann::json& v, const std::string& key) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= n) {
      throw bad("\"" + key + "\" must be a model index in [0, " + std::to_string(n) + ")");
    }
    return v.get<int>();
  };
  if (!j.contains("head_model")) throw bad("missing \"head_model\"");
  f.path.head_source = index(j["head_model"], "head_model");
  if (!j.contains("steps") || !j["steps"].is_array()) throw bad("\"steps\" must be an array");
  for (size_t k = 0; k < j["steps"].size(); ++k) {
    const nlohmann::json& s = j["steps"][k];
    const std::string where = "steps[" + std::to_string(k) + "]";
    if (!s.is_object()) throw bad(where + " is not an object");
    for (const auto& [key, value] : s.items()) {
      if (key != "model" && key != "layer" && key != "scale") {
        throw bad(where + ": unknown key '" + key + "'");
      }
    }
    if (!s.contains("model") || !s.contains("layer") || !s.contains("scale")) {
      throw bad(where + " needs \"model\", \"layer\" and \"scale\"");
    }
    LayerStep step;
    step.source = index(s["model"], where + ".model");
    if (!s["layer"].is_number_integer() || s["layer"].get<int64_t>() < 0) {
      throw bad(where + ".layer must be an integer >= 0");
    }
    step.layer = s["layer"].get<int64_t>();
    if (!s["scale"].is_number() || !std::isfinite(s["scale"].get<double>())) {
      throw bad(where + ".scale must be a finite number");
    }
    step.input_scale = s["scale"].get<double>();
    f.path.steps.push_back(step);
  }
  return f;
}

}  // namespace shoal
