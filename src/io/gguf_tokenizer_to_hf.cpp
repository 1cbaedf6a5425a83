// A GGUF vocabulary -> tokenizer.json + tokenizer_config.json that Hugging Face `tokenizers` (and
// shoal's own tokenizer) run the way llama.cpp runs the vocabulary. "gpt2": the merges as stored
// and the pre-tokenizer tokenizer.ggml.pre names. "llama": BPE with byte fallback whose merges are
// rebuilt from the piece scores the way transformers' SentencePiece converter does it: every split
// of a piece into two pieces is a merge, ordered by the merged piece's score (highest first), then
// its id, then the ids of the halves.
#include <algorithm>
#include <fstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "io/gguf_tokenizer.h"
#include "io/json_util.h"
#include "shoal/error.h"

namespace shoal::io {
namespace {

namespace fs = std::filesystem;
// tokenizer.json is built with sorted keys: nlohmann's insertion-ordered object finds keys by
// linear search, which is quadratic over a vocabulary of 150k pieces.
using ojson = nlohmann::json;

constexpr const char* kSpmSpace = "\xE2\x96\x81";  // U+2581

template <class Json>
void write_json(const fs::path& path, const Json& j) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw IoError(errno_message("cannot create " + path.string()));
  out << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  out.close();
  if (!out) throw IoError(errno_message("cannot write " + path.string()));
}

// Byte offsets where UTF-8 characters start (after the first), for splitting pieces.
std::vector<size_t> char_boundaries(const std::string& s) {
  std::vector<size_t> out;
  for (size_t i = 1; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) out.push_back(i);
  }
  return out;
}

struct GgufVocab {
  std::string model;
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<float> scores;
  std::vector<std::string> merges;
  std::string pre;
  int64_t bos = -1, eos = -1, unk = -1, pad = -1;
  bool add_bos = false, add_eos = false, add_space_prefix = false;
};

GgufVocab read_vocab(const GgufFile& f) {
  const auto fail = [&](const std::string& key, const std::string& what) {
    throw FormatError(f.path().string() + ": " + key + ": " + what);
  };
  GgufVocab v;
  const std::optional<std::string> model = f.get_string("tokenizer.ggml.model");
  if (!model) fail("tokenizer.ggml.model", "missing (the file has no tokenizer)");
  v.model = *model;
  if (v.model != "llama" && v.model != "gpt2") {
    fail("tokenizer.ggml.model",
         "unsupported " + io::quoted(v.model) + " (shoal writes llama, gpt2)");
  }
  const auto array = [&](const char* key, bool required) -> const GgufArray* {
    const GgufArray* a = f.get_array(key);
    if (a == nullptr && required) fail(key, "missing");
    return a;
  };
  const GgufArray* tokens = array("tokenizer.ggml.tokens", true);
  for (const GgufValue& t : tokens->values) {
    const auto* s = std::get_if<std::string>(&t);
    if (s == nullptr) fail("tokenizer.ggml.tokens", "expected strings");
    v.tokens.push_back(*s);
  }
  const size_t n = v.tokens.size();
  const auto integer = [](const GgufValue& x) -> int64_t {
    if (const auto* u = std::get_if<uint64_t>(&x)) return static_cast<int64_t>(*u);
    if (const auto* i = std::get_if<int64_t>(&x)) return *i;
    return 0;
  };
  v.types.assign(n, kTokenNormal);
  if (const GgufArray* types = array("tokenizer.ggml.token_type", false)) {
    if (types->values.size() != n) fail("tokenizer.ggml.token_type", "one entry per token needed");
    for (size_t i = 0; i < n; ++i) v.types[i] = static_cast<int32_t>(integer(types->values[i]));
  }
  if (const GgufArray* scores = array("tokenizer.ggml.scores", v.model == "llama")) {
    if (scores->values.size() != n) fail("tokenizer.ggml.scores", "one entry per token needed");
    for (const GgufValue& s : scores->values) {
      const auto* d = std::get_if<double>(&s);
      if (d == nullptr) fail("tokenizer.ggml.scores", "expected numbers");
      v.scores.push_back(static_cast<float>(*d));
    }
  }
  if (const GgufArray* merges = array("tokenizer.ggml.merges", v.model == "gpt2")) {
    for (const GgufValue& m : merges->values) {
      const auto* s = std::get_if<std::string>(&m);
      if (s == nullptr) fail("tokenizer.ggml.merges", "expected strings");
      v.merges.push_back(*s);
    }
  }
  v.pre = f.get_string("tokenizer.ggml.pre").value_or("default");
  const auto id = [&](const char* key) -> int64_t {
    const std::optional<int64_t> x = f.get_int(key);
    if (!x || *x < 0 || *x >= static_cast<int64_t>(n)) return -1;  // absent, or GGUF's "none"
    return *x;
  };
  v.bos = id("tokenizer.ggml.bos_token_id");
  v.eos = id("tokenizer.ggml.eos_token_id");
  v.unk = id("tokenizer.ggml.unknown_token_id");
  v.pad = id("tokenizer.ggml.padding_token_id");
  const bool spm = v.model == "llama";
  // llama.cpp's defaults when the keys are absent.
  v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token").value_or(spm);
  v.add_eos = f.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(spm);
  return v;
}

// transformers' SentencePiece converter, from scores: see the file comment.
std::vector<std::pair<std::string, std::string>> merges_from_scores(const GgufVocab& v) {
  const auto mergeable = [&](size_t id) {
    return v.types[id] == kTokenNormal || v.types[id] == kTokenUserDefined;
  };
  std::unordered_map<std::string, int32_t> ids;
  for (size_t id = 0; id < v.tokens.size(); ++id) {
    if (mergeable(id)) ids.try_emplace(v.tokens[id], static_cast<int32_t>(id));
  }
  struct Merge {
    float score;
    int32_t merged, left, right;
    size_t split;
  };
  std::vector<Merge> merges;
  for (size_t id = 0; id < v.tokens.size(); ++id) {
    if (!mergeable(id)) continue;
    const std::string& piece = v.tokens[id];
    for (size_t at : char_boundaries(piece)) {
      const auto l = ids.find(piece.substr(0, at));
      const auto r = ids.find(piece.substr(at));
      if (l != ids.end() && r != ids.end()) {
        merges.push_back({v.scores[id], static_cast<int32_t>(id), l->second, r->second, at});
      }
    }
  }
  std::sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.merged != b.merged) return a.merged < b.merged;
    return std::pair(a.left, a.right) < std::pair(b.left, b.right);
  });
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (const Merge& m : merges) {
    out.emplace_back(v.tokens[m.merged].substr(0, m.split), v.tokens[m.merged].substr(m.split));
  }
  return out;
}

ojson pre_tokenizer_for(const GgufFile& f, const std::string& pre) {
  const auto byte_level = [](bool use_regex) {
    return ojson{{"type", "ByteLevel"},
                 {"add_prefix_space", false},
                 {"trim_offsets", false},
                 {"use_regex", use_regex}};
  };
  if (pre == "default" || pre == "gpt-2" || pre == "gpt2") return byte_level(true);
  const char* pattern = nullptr;
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") pattern = kLlama3SplitPattern;
  if (pre == "qwen2" || pre == "deepseek-r1-qwen") pattern = kQwen2SplitPattern;
  if (pattern == nullptr) {
    throw FormatError(f.path().string() + ": tokenizer.ggml.pre: unsupported " + io::quoted(pre) +
                      " (shoal converts default, gpt-2, llama-bpe, qwen2)");
  }
  ojson split = {{"type", "Split"},
                 {"pattern", {{"Regex", pattern}}},
                 {"behavior", "Isolated"},
                 {"invert", false}};
  return ojson{{"type", "Sequence"}, {"pretokenizers", ojson::array({split, byte_level(false)})}};
}

ojson template_processor(const GgufVocab& v) {
  ojson single = ojson::array(), specials = ojson::object();
  const auto special = [&](int64_t id) {
    const std::string& piece = v.tokens[id];
    single.push_back({{"SpecialToken", {{"id", piece}, {"type_id", 0}}}});
    specials[piece] = {{"id", piece}, {"ids", {id}}, {"tokens", {piece}}};
  };
  if (v.add_bos && v.bos >= 0) special(v.bos);
  single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  if (v.add_eos && v.eos >= 0) special(v.eos);
  return ojson{{"type", "TemplateProcessing"},
               {"single", single},
               {"pair", nullptr},
               {"special_tokens", specials}};
}

}  // namespace

void write_hf_tokenizer(const GgufFile& file, const fs::path& dir,
                        const std::optional<std::string>& chat_template) {
  const GgufVocab v = read_vocab(file);
  const bool spm = v.model == "llama";

  ojson vocab = ojson::object();
  ojson added = ojson::array();
  for (size_t id = 0; id < v.tokens.size(); ++id) {
    const int32_t t = v.types[id];
    if (t == kTokenUnused) continue;  // llama.cpp's padding up to the embedding's rows
    // Byte-level vocabularies keep control and user-defined tokens out of the BPE model, as the
    // Hugging Face files do; SentencePiece ones keep every piece in it.
    if ((spm || (t != kTokenControl && t != kTokenUserDefined)) && !vocab.contains(v.tokens[id])) {
      vocab[v.tokens[id]] = id;  // the first of duplicate pieces wins, as in shoal's tokenizer
    }
    if (t == kTokenControl || t == kTokenUserDefined || (spm && t == kTokenUnknown)) {
      const bool special = t != kTokenUserDefined;
      added.push_back({{"id", id},
                       {"content", v.tokens[id]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", !special && spm},
                       {"special", special}});
    }
  }

  ojson model = {{"type", "BPE"}, {"dropout", nullptr}};
  ojson tj = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}};
  tj["added_tokens"] = added;
  ojson merges = ojson::array();
  if (spm) {
    for (const auto& [l, r] : merges_from_scores(v)) merges.push_back({l, r});
    model["unk_token"] = v.unk >= 0 ? ojson(v.tokens[v.unk]) : ojson(nullptr);
    model["continuing_subword_prefix"] = nullptr;
    model["end_of_word_suffix"] = nullptr;
    model["fuse_unk"] = true;
    model["byte_fallback"] = true;
    model["ignore_merges"] = false;
    ojson norm = ojson::array();
    if (v.add_space_prefix) norm.push_back({{"type", "Prepend"}, {"prepend", kSpmSpace}});
    norm.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpmSpace}});
    tj["normalizer"] = {{"type", "Sequence"}, {"normalizers", norm}};
    tj["pre_tokenizer"] = nullptr;
    tj["post_processor"] = template_processor(v);
    ojson dec = ojson::array();
    dec.push_back({{"type", "Replace"}, {"pattern", {{"String", kSpmSpace}}}, {"content", " "}});
    dec.push_back({{"type", "ByteFallback"}});
    dec.push_back({{"type", "Fuse"}});
    if (v.add_space_prefix) {
      dec.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    }
    tj["decoder"] = {{"type", "Sequence"}, {"decoders", dec}};
  } else {
    for (size_t i = 0; i < v.merges.size(); ++i) {
      const std::string& m = v.merges[i];
      const size_t space = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
      if (space == std::string::npos) {
        throw FormatError(file.path().string() + ": tokenizer.ggml.merges[" + std::to_string(i) +
                          "]: expected \"left right\", found " + io::quoted(m));
      }
      merges.push_back({m.substr(0, space), m.substr(space + 1)});
    }
    model["unk_token"] = nullptr;
    model["continuing_subword_prefix"] = "";
    model["end_of_word_suffix"] = "";
    model["fuse_unk"] = false;
    model["byte_fallback"] = false;
    model["ignore_merges"] = v.pre == "llama-bpe" || v.pre == "llama3" || v.pre == "llama-v3";
    tj["normalizer"] = v.pre == "qwen2" ? ojson{{"type", "NFC"}} : ojson(nullptr);
    tj["pre_tokenizer"] = pre_tokenizer_for(file, v.pre);
    tj["post_processor"] = template_processor(v);
    tj["decoder"] = {{"type", "ByteLevel"},
                     {"add_prefix_space", false},
                     {"trim_offsets", false},
                     {"use_regex", false}};
  }
  model["vocab"] = vocab;
  model["merges"] = merges;
  tj["model"] = model;
  write_json(dir / "tokenizer.json", tj);

  nlohmann::ordered_json cfg = nlohmann::ordered_json::object();
  const auto token = [&](const char* name, int64_t id) {
    cfg[name] = id >= 0 ? nlohmann::ordered_json(v.tokens[id]) : nlohmann::ordered_json(nullptr);
  };
  token("bos_token", v.bos);
  token("eos_token", v.eos);
  token("unk_token", v.unk);
  token("pad_token", v.pad);
  cfg["add_bos_token"] = v.add_bos;
  cfg["add_eos_token"] = v.add_eos;
  cfg["clean_up_tokenization_spaces"] = false;
  cfg["tokenizer_class"] = "PreTrainedTokenizerFast";
  const std::optional<std::string> tmpl =
      chat_template ? chat_template : file.get_string("tokenizer.chat_template");
  if (tmpl) cfg["chat_template"] = *tmpl;
  write_json(dir / "tokenizer_config.json", cfg);
}

}  // namespace shoal::io
