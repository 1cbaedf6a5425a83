// tokenizer.json -> tokenizer.ggml.* metadata, as llama.cpp's converter builds it
// (convert_hf_to_gguf.py: _set_vocab_gpt2 for byte-level BPE, the Llama HF vocabulary for
// SentencePiece-style BPE with byte fallback), written from the two formats' documentation.
// Where llama.cpp's own converter reads tokenizer.model for the piece scores, shoal derives them
// from tokenizer.json's merges: a piece first formed by merge rank r scores -r, so llama.cpp's
// highest-score-first merging applies the merges in HF's rank order.
#include <fstream>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "io/gguf_tokenizer.h"
#include "io/json_util.h"
#include "shoal/error.h"

namespace shoal::io {

const char* const kLlama3SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kSpmSpace = "\xE2\x96\x81";  // U+2581
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

json read_json_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(errno_message("cannot open " + path.string()));
  std::stringstream buf;
  buf << in.rdbuf();
  try {
    return json::parse(buf.str());
  } catch (const json::exception& e) {
    throw FormatError(path.string() + ": invalid JSON: " + io::json_error_text(e));
  }
}

class Reader {
 public:
  explicit Reader(fs::path file) : file_(std::move(file)) {}
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw FormatError(file_.string() + ": " + key + ": " + what);
  }
  std::string str(const json& v, const std::string& key) const {
    if (!v.is_string()) fail(key, "expected a string, found " + io::bounded_dump(v));
    return v.get<std::string>();
  }
  std::string type_of(const json& v, const std::string& key) const {
    if (!v.is_object() || !v.contains("type")) fail(key, "expected an object with a type");
    return str(v.at("type"), key + ".type");
  }
  int32_t id(const json& v, const std::string& key) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxTokenId) {
      fail(key, "expected a token id, found " + io::bounded_dump(v));
    }
    return static_cast<int32_t>(v.get<int64_t>());
  }
  bool flag(const json& obj, const char* name, bool fallback) const {
    if (!obj.is_object() || !obj.contains(name) || obj.at(name).is_null()) return fallback;
    return obj.at(name).is_boolean() ? obj.at(name).get<bool>() : fallback;
  }

 private:
  fs::path file_;
};

// The steps of a normalizer / pre-tokenizer, Sequences flattened.
void flatten(const json& v, const char* list_key, std::vector<json>& out) {
  if (v.is_null()) return;
  if (v.is_object() && v.value("type", "") == "Sequence" && v.contains(list_key)) {
    for (const json& s : v.at(list_key)) flatten(s, list_key, out);
    return;
  }
  out.push_back(v);
}

struct Vocab {
  std::vector<std::string> pieces;  // id -> piece; "" for ids nothing names
  std::unordered_map<std::string, int32_t> ids;
  std::vector<int32_t> types;
  std::vector<std::pair<std::string, std::string>> merges;  // rank order
};

// "left right": pieces that hold a space themselves (SentencePiece's "▁ ") make the separator
// ambiguous; it is the space at which both halves and their concatenation are pieces.
std::optional<std::pair<std::string, std::string>> split_merge(const std::string& s,
                                                               const Vocab& v) {
  for (size_t sp = s.find(' '); sp != std::string::npos; sp = s.find(' ', sp + 1)) {
    std::string l = s.substr(0, sp), r = s.substr(sp + 1);
    if (v.ids.contains(l) && v.ids.contains(r) && v.ids.contains(l + r)) return std::pair{l, r};
  }
  return std::nullopt;
}

// gpt-2 / llama-bpe / qwen2: the llama.cpp pre-tokenizer that splits text as tokenizer.json does.
std::string gpt2_pre_name(const Reader& r, const json& tj) {
  std::vector<json> steps;
  flatten(tj.value("pre_tokenizer", json()), "pretokenizers", steps);
  const auto is_byte_level = [&](const json& s, bool regex) {
    return s.is_object() && s.value("type", "") == "ByteLevel" &&
           !r.flag(s, "add_prefix_space", true) && r.flag(s, "use_regex", true) == regex;
  };
  if (steps.size() == 1 && is_byte_level(steps[0], true)) return "gpt-2";
  if (steps.size() == 2 && is_byte_level(steps[1], false) &&
      steps[0].value("type", "") == "Split" && steps[0].value("behavior", "") == "Isolated" &&
      !r.flag(steps[0], "invert", false) && steps[0].contains("pattern") &&
      steps[0]["pattern"].contains("Regex")) {
    const std::string pattern = r.str(steps[0]["pattern"]["Regex"], "pre_tokenizer.pattern");
    if (pattern == kLlama3SplitPattern) return "llama-bpe";
    if (pattern == kQwen2SplitPattern) return "qwen2";
  }
  r.fail("pre_tokenizer",
         "has no llama.cpp equivalent that shoal knows (supported: ByteLevel with GPT-2's "
         "regex, or Split with the Llama-3 or Qwen2 regex before ByteLevel)");
}

// Whether a SentencePiece-style tokenizer puts U+2581 before the text (llama.cpp's
// add_space_prefix); fails unless spaces become U+2581 as llama.cpp's "llama" vocabulary does.
bool spm_space_prefix(const Reader& r, const json& tj) {
  std::vector<json> norm, pre;
  flatten(tj.value("normalizer", json()), "normalizers", norm);
  flatten(tj.value("pre_tokenizer", json()), "pretokenizers", pre);
  if (pre.empty() && !norm.empty()) {
    bool prepend = false, replace = false;
    for (const json& n : norm) {
      const std::string type = n.value("type", "");
      if (type == "Prepend" && n.value("prepend", "") == kSpmSpace) {
        prepend = true;
      } else if (type == "Replace" && n.contains("pattern") &&
                 n["pattern"].value("String", "") == " " && n.value("content", "") == kSpmSpace) {
        replace = true;
      } else {
        r.fail("normalizer", "step " + io::bounded_dump(n) + " has no llama.cpp equivalent");
      }
    }
    if (replace) return prepend;
  } else if (norm.empty() && pre.size() == 1 && pre[0].value("type", "") == "Metaspace" &&
             pre[0].value("replacement", kSpmSpace) == std::string(kSpmSpace)) {
    const json& m = pre[0];
    if (m.contains("prepend_scheme") && m["prepend_scheme"].is_string()) {
      return m["prepend_scheme"].get<std::string>() != "never";
    }
    return r.flag(m, "add_prefix_space", true);
  }
  r.fail("normalizer",
         "a byte-fallback BPE tokenizer needs spaces written U+2581 (Prepend/Replace normalizers "
         "or a Metaspace pre-tokenizer) to run as llama.cpp's \"llama\" vocabulary");
}

// bos_token / eos_token / ...: a string or {"content": ...}; nullopt when absent or null.
std::optional<std::string> config_token(const json& cfg, const char* name) {
  if (!cfg.is_object() || !cfg.contains(name) || cfg.at(name).is_null()) return std::nullopt;
  const json& v = cfg.at(name);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return std::nullopt;
}

// Whether the post-processor's single-sequence template starts (ends) with `id`.
bool template_adds(const json& post, int32_t id, bool at_start) {
  std::vector<json> steps;
  flatten(post, "processors", steps);
  for (const json& p : steps) {
    if (p.value("type", "") != "TemplateProcessing" || !p.contains("single")) continue;
    const json& single = p["single"];
    if (!single.is_array() || single.empty()) continue;
    const json& item = at_start ? single.front() : single.back();
    if (!item.contains("SpecialToken")) continue;
    const std::string name = item["SpecialToken"].value("id", "");
    const json& ids = p.value("special_tokens", json::object()).value(name, json::object());
    if (ids.contains("ids") && ids["ids"].is_array() && ids["ids"].size() == 1 &&
        ids["ids"][0] == id) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::vector<GgufKv> hf_tokenizer_to_gguf(const fs::path& dir, int64_t vocab_rows,
                                         const std::optional<std::string>& chat_template) {
  const fs::path tj_path = dir / "tokenizer.json";
  if (!fs::exists(tj_path)) {
    throw FormatError(dir.string() +
                      ": no tokenizer.json (GGUF needs the tokenizer; shoal reads "
                      "Hugging Face fast-tokenizer files)");
  }
  const json tj = read_json_file(tj_path);
  const Reader r(tj_path);
  if (!tj.is_object() || !tj.contains("model")) r.fail("model", "missing");
  const json& model = tj.at("model");
  const std::string type = model.contains("type") ? r.str(model.at("type"), "model.type") : "BPE";
  if (type != "BPE") {
    r.fail("model.type", "is " + io::quoted(type) + "; GGUF vocabularies are BPE (llama, gpt2)");
  }
  const bool spm = r.flag(model, "byte_fallback", false);

  Vocab v;
  const auto set_piece = [&](int32_t id, const std::string& piece) {
    if (static_cast<size_t>(id) >= v.pieces.size()) v.pieces.resize(id + 1);
    v.pieces[id] = piece;
    v.ids.try_emplace(piece, id);
  };
  if (!model.contains("vocab") || !model["vocab"].is_object()) r.fail("model.vocab", "missing");
  for (const auto& [piece, id] : model["vocab"].items()) {
    set_piece(r.id(id, "model.vocab[" + io::quoted(piece) + "]"), piece);
  }
  std::unordered_map<int32_t, bool> added;  // id -> special
  if (tj.contains("added_tokens") && tj["added_tokens"].is_array()) {
    for (size_t i = 0; i < tj["added_tokens"].size(); ++i) {
      const json& t = tj["added_tokens"][i];
      const std::string key = "added_tokens[" + std::to_string(i) + "]";
      const int32_t id = r.id(t.value("id", json()), key + ".id");
      set_piece(id, r.str(t.value("content", json()), key + ".content"));
      added[id] = r.flag(t, "special", false);
    }
  }
  if (static_cast<int64_t>(v.pieces.size()) > vocab_rows) {
    throw ConfigError(tj_path.string() + ": " + std::to_string(v.pieces.size()) +
                      " tokens, but the model's embedding has only " + std::to_string(vocab_rows) +
                      " rows");
  }

  if (!model.contains("merges") || !model["merges"].is_array()) r.fail("model.merges", "missing");
  const json& merges = model["merges"];
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    const std::string key = "model.merges[" + std::to_string(i) + "]";
    std::optional<std::pair<std::string, std::string>> pair;
    if (m.is_string()) {
      pair = split_merge(m.get<std::string>(), v);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      pair = std::pair{m[0].get<std::string>(), m[1].get<std::string>()};
    }
    if (!pair) r.fail(key, "expected \"left right\" or [left, right] of pieces in model.vocab");
    v.merges.push_back(std::move(*pair));
  }

  // Token types, and llama.cpp's padding up to the embedding's rows.
  const std::string unk = model.contains("unk_token") && model["unk_token"].is_string()
                              ? model["unk_token"].get<std::string>()
                              : std::string();
  const size_t n = static_cast<size_t>(vocab_rows);
  v.types.assign(n, kTokenNormal);
  std::vector<std::string> tokens(n);
  for (size_t id = 0; id < n; ++id) {
    const std::string piece = id < v.pieces.size() ? v.pieces[id] : std::string();
    tokens[id] = piece;
    int32_t& t = v.types[id];
    if (piece.empty()) {
      tokens[id] = "[PAD" + std::to_string(id) + "]";
      t = kTokenUnused;
    } else if (const auto it = added.find(static_cast<int32_t>(id)); it != added.end()) {
      t = (spm && piece == unk) ? kTokenUnknown : it->second ? kTokenControl : kTokenUserDefined;
    } else if (spm && piece == unk) {
      t = kTokenUnknown;
    } else if (spm && piece.size() == 6 && piece.starts_with("<0x") && piece.back() == '>') {
      t = kTokenByte;
    }
  }

  std::vector<GgufKv> kv;
  kv.push_back(GgufKv::str("tokenizer.ggml.model", spm ? "llama" : "gpt2"));
  if (!spm) kv.push_back(GgufKv::str("tokenizer.ggml.pre", gpt2_pre_name(r, tj)));
  kv.push_back(GgufKv::strings("tokenizer.ggml.tokens", tokens));
  if (spm) {
    std::vector<float> scores(n, 0.0f);
    std::vector<bool> scored(n, false);
    for (size_t rank = 0; rank < v.merges.size(); ++rank) {
      const auto it = v.ids.find(v.merges[rank].first + v.merges[rank].second);
      if (it == v.ids.end() || static_cast<size_t>(it->second) >= n || scored[it->second]) continue;
      scores[it->second] = -static_cast<float>(rank);
      scored[it->second] = true;
    }
    // Pieces no merge forms come after every merge, in id order.
    for (size_t id = 0; id < n; ++id) {
      if (!scored[id] && v.types[id] == kTokenNormal) {
        scores[id] = -static_cast<float>(v.merges.size() + id);
      }
    }
    kv.push_back(GgufKv::f32s("tokenizer.ggml.scores", scores));
  }
  kv.push_back(GgufKv::i32s("tokenizer.ggml.token_type", v.types));
  if (!spm) {
    std::vector<std::string> lines;
    lines.reserve(v.merges.size());
    for (const auto& [l, rt] : v.merges) lines.push_back(l + " " + rt);
    kv.push_back(GgufKv::strings("tokenizer.ggml.merges", lines));
  }

  // Special ids and switches from tokenizer_config.json (special_tokens_map.json as fallback).
  const fs::path cfg_path = dir / "tokenizer_config.json";
  const fs::path map_path = dir / "special_tokens_map.json";
  const json cfg = fs::exists(cfg_path) ? read_json_file(cfg_path) : json::object();
  const json map = fs::exists(map_path) ? read_json_file(map_path) : json::object();
  const auto special_id = [&](const char* name) -> std::optional<int32_t> {
    std::optional<std::string> content = config_token(cfg, name);
    if (!content && !(cfg.is_object() && cfg.contains(name))) content = config_token(map, name);
    if (!content) return std::nullopt;
    const auto it = v.ids.find(*content);
    if (it == v.ids.end()) {
      throw FormatError(cfg_path.string() + ": " + name + ": " + io::quoted(*content) +
                        " is not a token of tokenizer.json");
    }
    return it->second;
  };
  const std::optional<int32_t> bos = special_id("bos_token"), eos = special_id("eos_token");
  std::optional<int32_t> unk_id = special_id("unk_token");
  if (!unk_id && !unk.empty() && v.ids.contains(unk)) unk_id = v.ids.at(unk);
  const std::optional<int32_t> pad = special_id("pad_token");
  if (bos) kv.push_back(GgufKv::u32("tokenizer.ggml.bos_token_id", *bos));
  if (eos) kv.push_back(GgufKv::u32("tokenizer.ggml.eos_token_id", *eos));
  if (unk_id) kv.push_back(GgufKv::u32("tokenizer.ggml.unknown_token_id", *unk_id));
  if (pad) kv.push_back(GgufKv::u32("tokenizer.ggml.padding_token_id", *pad));
  // transformers rebuilds the post-processor from add_bos_token / add_eos_token when present.
  const json post = tj.value("post_processor", json());
  const auto add = [&](const char* name, std::optional<int32_t> id, bool at_start) {
    if (cfg.is_object() && cfg.contains(name) && cfg.at(name).is_boolean()) {
      return cfg.at(name).get<bool>() && id.has_value();
    }
    return id.has_value() && template_adds(post, *id, at_start);
  };
  kv.push_back(GgufKv::boolean("tokenizer.ggml.add_bos_token", add("add_bos_token", bos, true)));
  kv.push_back(GgufKv::boolean("tokenizer.ggml.add_eos_token", add("add_eos_token", eos, false)));
  if (spm) {
    kv.push_back(GgufKv::boolean("tokenizer.ggml.add_space_prefix", spm_space_prefix(r, tj)));
  }

  std::optional<std::string> tmpl = chat_template;
  if (!tmpl && cfg.is_object() && cfg.contains("chat_template")) {
    const json& t = cfg.at("chat_template");
    if (t.is_string()) {
      tmpl = t.get<std::string>();
    } else if (t.is_array()) {
      for (const json& item : t) {
        if (item.is_object() && item.value("name", "") == "default" && item.contains("template")) {
          tmpl = item["template"].get<std::string>();
        }
      }
    }
  }
  if (!tmpl && fs::exists(dir / "chat_template.jinja")) {
    std::ifstream in(dir / "chat_template.jinja", std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    tmpl = buf.str();
  }
  if (tmpl) kv.push_back(GgufKv::str("tokenizer.chat_template", *tmpl));
  return kv;
}

std::vector<GgufKv> gguf_tokenizer_entries(const GgufFile& file,
                                           const std::optional<std::string>& chat_template) {
  std::vector<GgufKv> kv;
  for (const auto& [key, value] : file.metadata()) {
    if (!key.starts_with("tokenizer.")) continue;
    if (key == "tokenizer.chat_template" && chat_template) continue;
    kv.push_back(GgufKv{key, *file.value_type(key), value});
  }
  if (chat_template) kv.push_back(GgufKv::str("tokenizer.chat_template", *chat_template));
  return kv;
}

}  // namespace shoal::io
