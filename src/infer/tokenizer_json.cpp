// Tokenizer::from_folder: a Hugging Face tokenizer.json (model, added tokens, normalizer,
// pre-tokenizer, post-processor, decoder) plus tokenizer_config.json (BOS/EOS tokens, the
// add_bos_token / add_eos_token switches, the chat template), special_tokens_map.json,
// generation_config.json (extra stop ids) and chat_template.jinja. Anything shoal cannot run
// exactly is a FormatError naming the file and key and listing what is supported, never a
// silently different tokenization.
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "infer/tokenizer_impl.h"
#include "io/json_util.h"
#include "shoal/error.h"

namespace shoal {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using infer::DecoderStep;
using infer::NormalizerStep;
using infer::PreTokenizerStep;

constexpr int64_t kMaxTokenId = (int64_t{1} << 21) - 1;  // 8x the largest real vocabulary

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(errno_message("cannot open " + path.string()));
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw IoError(errno_message("cannot read " + path.string()));
  return buf.str();
}

json read_json(const fs::path& path) {
  const std::string text = read_text(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw FormatError(path.string() + ": invalid JSON: " + io::json_error_text(e));
  }
}

// Reads one JSON file's keys, naming the file and the key path in every error.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw FormatError(file_ + ": " + key + ": " + what);
  }
  const json& member(const json& obj, const char* name, const std::string& key) const {
    if (!obj.is_object() || !obj.contains(name)) fail(key, std::string("missing '") + name + "'");
    return obj.at(name);
  }
  std::string str(const json& v, const std::string& key) const {
    if (!v.is_string()) fail(key, "expected a string, found " + io::bounded_dump(v));
    return v.get<std::string>();
  }
  std::string str_at(const json& obj, const char* name, const std::string& key) const {
    return str(member(obj, name, key), key + "." + name);
  }
  bool flag(const json& obj, const char* name, bool fallback, const std::string& key) const {
    if (!obj.is_object() || !obj.contains(name) || obj.at(name).is_null()) return fallback;
    const json& v = obj.at(name);
    if (!v.is_boolean())
      fail(key + "." + name, "expected true or false, found " + io::bounded_dump(v));
    return v.get<bool>();
  }
  int64_t integer(const json& v, const std::string& key, int64_t lo, int64_t hi) const {
    if (!v.is_number_integer()) fail(key, "expected an integer, found " + io::bounded_dump(v));
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) {
      fail(key, std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " +
                    std::to_string(hi) + "]");
    }
    return x;
  }
  // A literal from {"String": "..."}; a {"Regex": ...} pattern is accepted only when allowed.
  struct Pattern {
    std::string text;
    bool regex = false;
  };
  Pattern pattern(const json& v, const std::string& key, bool allow_regex) const {
    if (v.is_object() && v.contains("String")) return {str(v.at("String"), key + ".String"), false};
    if (v.is_object() && v.contains("Regex")) {
      if (!allow_regex) fail(key, "Regex patterns are not supported here (only String)");
      return {str(v.at("Regex"), key + ".Regex"), true};
    }
    fail(key, "expected {\"String\": ...} or {\"Regex\": ...}, found " + io::bounded_dump(v));
  }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

// ---- model ------------------------------------------------------------------------------------

void load_model(const Reader& r, const json& model, Tokenizer::Impl& im) {
  const std::string type = model.contains("type") ? r.str(model.at("type"), "model.type") : "BPE";
  if (type != "BPE") {
    r.fail("model.type", "unsupported '" + type + "' (shoal supports BPE)");
  }
  for (const char* name : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(name) && !model.at(name).is_null() &&
        !r.str(model.at(name), std::string("model.") + name).empty()) {
      r.fail(std::string("model.") + name, "non-empty values are not supported");
    }
  }
  const json& vocab = r.member(model, "vocab", "model");
  if (!vocab.is_object()) r.fail("model.vocab", "expected an object of piece -> id");
  im.vocab.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const auto id = static_cast<int32_t>(
        r.integer(it.value(), "model.vocab[" + io::quoted(it.key()) + "]", 0, kMaxTokenId));
    im.vocab[it.key()] = id;
    if (static_cast<size_t>(id) >= im.pieces.size()) im.pieces.resize(id + 1);
    im.pieces[id] = it.key();
  }

  infer::BpeOptions opt;
  opt.byte_fallback = r.flag(model, "byte_fallback", false, "model");
  opt.ignore_merges = r.flag(model, "ignore_merges", false, "model");
  opt.fuse_unk = r.flag(model, "fuse_unk", false, "model");
  if (model.contains("unk_token") && !model.at("unk_token").is_null()) {
    const std::string unk = r.str(model.at("unk_token"), "model.unk_token");
    auto it = im.vocab.find(unk);
    if (it == im.vocab.end()) r.fail("model.unk_token", io::quoted(unk) + " is not in model.vocab");
    opt.unk_id = it->second;
  }
  auto bpe = std::make_unique<infer::BpeModel>(&im.vocab, opt);
  const json& merges = r.member(model, "merges", "model");
  if (!merges.is_array()) r.fail("model.merges", "expected an array");
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string key = "model.merges[" + std::to_string(i) + "]";
    const json& m = merges[i];
    if (m.is_string()) {
      // "left right". Pieces that hold a space themselves (Llama-2 has "  " and "▁ ") make the
      // separator ambiguous: "   " is " " + " ". The separator is the space at which both
      // halves and their concatenation are pieces; usually the only space.
      const std::string s = m.get<std::string>();
      bool added = false;
      for (size_t sp = s.find(' '); sp != std::string::npos && !added; sp = s.find(' ', sp + 1)) {
        added =
            bpe->add_merge(std::string_view(s).substr(0, sp), std::string_view(s).substr(sp + 1));
      }
      if (!added) {
        r.fail(key, io::quoted(s) +
                        ": expected \"left right\" with both pieces and their "
                        "concatenation in model.vocab");
      }
    } else if (m.is_array() && m.size() == 2) {  // ["left", "right"]
      const std::string left = r.str(m[0], key + "[0]");
      const std::string right = r.str(m[1], key + "[1]");
      if (!bpe->add_merge(left, right)) {
        r.fail(key, io::quoted(left) + " + " + io::quoted(right) +
                        ": a piece or their concatenation is not in model.vocab");
      }
    } else {
      r.fail(key, "expected \"left right\" or [left, right], found " + io::bounded_dump(m));
    }
  }
  im.model = std::move(bpe);
}

void load_added_tokens(const Reader& r, const json& list, Tokenizer::Impl& im) {
  if (list.is_null()) return;
  if (!list.is_array()) r.fail("added_tokens", "expected an array");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string key = "added_tokens[" + std::to_string(i) + "]";
    const json& t = list[i];
    infer::AddedToken a;
    a.id = static_cast<int32_t>(r.integer(r.member(t, "id", key), key + ".id", 0, kMaxTokenId));
    a.content = r.str_at(t, "content", key);
    if (a.content.empty()) r.fail(key + ".content", "is empty");
    a.special = r.flag(t, "special", false, key);
    // HF's default: special tokens are matched in the raw text, others after normalization.
    a.normalized = r.flag(t, "normalized", !a.special, key);
    a.lstrip = r.flag(t, "lstrip", false, key);
    a.rstrip = r.flag(t, "rstrip", false, key);
    a.single_word = r.flag(t, "single_word", false, key);
    im.added.push_back(std::move(a));
  }
}

// ---- normalizer, pre-tokenizer, decoder -------------------------------------------------------

void load_normalizer(const Reader& r, const json& n, const std::string& key,
                     std::vector<NormalizerStep>& out) {
  if (n.is_null()) return;
  const std::string type = r.str_at(n, "type", key);
  if (type == "Sequence") {
    const json& list = r.member(n, "normalizers", key);
    for (size_t i = 0; i < list.size(); ++i) {
      load_normalizer(r, list[i], key + ".normalizers[" + std::to_string(i) + "]", out);
    }
  } else if (type == "Prepend") {
    out.push_back({NormalizerStep::Kind::kPrepend, r.str_at(n, "prepend", key), {}});
  } else if (type == "Replace") {
    const auto p = r.pattern(r.member(n, "pattern", key), key + ".pattern", false);
    out.push_back({NormalizerStep::Kind::kReplace, r.str_at(n, "content", key), p.text});
  } else if (type == "NFC") {
    out.push_back({NormalizerStep::Kind::kNfc, {}, {}});
  } else {
    r.fail(key + ".type", "unsupported normalizer '" + type +
                              "' (shoal supports Sequence, Prepend, Replace, NFC)");
  }
}

PreTokenizerStep::Prepend prepend_scheme(const Reader& r, const json& obj, const std::string& key) {
  if (obj.contains("prepend_scheme")) {
    const std::string s = r.str(obj.at("prepend_scheme"), key + ".prepend_scheme");
    if (s == "always") return PreTokenizerStep::Prepend::kAlways;
    if (s == "first") return PreTokenizerStep::Prepend::kFirst;
    if (s == "never") return PreTokenizerStep::Prepend::kNever;
    r.fail(key + ".prepend_scheme", "expected always, first or never, found " + io::quoted(s));
  }
  // Files written before prepend_scheme existed say add_prefix_space.
  return r.flag(obj, "add_prefix_space", true, key) ? PreTokenizerStep::Prepend::kAlways
                                                    : PreTokenizerStep::Prepend::kNever;
}

void load_pre_tokenizer(const Reader& r, const json& p, const std::string& key,
                        std::vector<PreTokenizerStep>& out) {
  if (p.is_null()) return;
  const std::string type = r.str_at(p, "type", key);
  PreTokenizerStep step;
  if (type == "Sequence") {
    const json& list = r.member(p, "pretokenizers", key);
    for (size_t i = 0; i < list.size(); ++i) {
      load_pre_tokenizer(r, list[i], key + ".pretokenizers[" + std::to_string(i) + "]", out);
    }
    return;
  } else if (type == "ByteLevel") {
    step.kind = PreTokenizerStep::Kind::kByteLevel;
    step.add_prefix_space = r.flag(p, "add_prefix_space", true, key);
    step.use_regex = r.flag(p, "use_regex", true, key);
  } else if (type == "Split") {
    step.kind = PreTokenizerStep::Kind::kSplit;
    const auto pat = r.pattern(r.member(p, "pattern", key), key + ".pattern", true);
    if (pat.regex) {
      step.regex = std::make_shared<infer::Regex>(pat.text, r.file() + ": " + key + ".pattern");
    } else {
      step.literal = pat.text;
    }
    if (r.flag(p, "invert", false, key)) r.fail(key + ".invert", "true is not supported");
    const std::string b = r.str_at(p, "behavior", key);
    using B = PreTokenizerStep::Behavior;
    if (b == "Isolated")
      step.behavior = B::kIsolated;
    else if (b == "Removed")
      step.behavior = B::kRemoved;
    else if (b == "MergedWithPrevious")
      step.behavior = B::kMergedWithPrevious;
    else if (b == "MergedWithNext")
      step.behavior = B::kMergedWithNext;
    else if (b == "Contiguous")
      step.behavior = B::kContiguous;
    else
      r.fail(key + ".behavior", "unknown behavior " + io::quoted(b));
  } else if (type == "Metaspace") {
    step.kind = PreTokenizerStep::Kind::kMetaspace;
    if (p.contains("replacement")) step.replacement = r.str_at(p, "replacement", key);
    step.prepend = prepend_scheme(r, p, key);
    step.split = r.flag(p, "split", true, key);
  } else if (type == "Digits") {
    step.kind = PreTokenizerStep::Kind::kDigits;
    step.individual_digits = r.flag(p, "individual_digits", false, key);
  } else {
    r.fail(key + ".type", "unsupported pre-tokenizer '" + type +
                              "' (shoal supports Sequence, ByteLevel, Split, Metaspace, Digits)");
  }
  out.push_back(std::move(step));
}

void load_decoder(const Reader& r, const json& d, const std::string& key,
                  std::vector<DecoderStep>& out) {
  if (d.is_null()) return;
  const std::string type = r.str_at(d, "type", key);
  DecoderStep step;
  if (type == "Sequence") {
    const json& list = r.member(d, "decoders", key);
    for (size_t i = 0; i < list.size(); ++i) {
      load_decoder(r, list[i], key + ".decoders[" + std::to_string(i) + "]", out);
    }
    return;
  } else if (type == "ByteLevel") {
    step.kind = DecoderStep::Kind::kByteLevel;
  } else if (type == "Replace") {
    step.kind = DecoderStep::Kind::kReplace;
    step.from = r.pattern(r.member(d, "pattern", key), key + ".pattern", false).text;
    step.to = r.str_at(d, "content", key);
  } else if (type == "ByteFallback") {
    step.kind = DecoderStep::Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = DecoderStep::Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = DecoderStep::Kind::kStrip;
    const std::string c = r.str_at(d, "content", key);
    if (c.size() != 1) r.fail(key + ".content", "expected one ASCII character");
    step.strip_char = static_cast<unsigned char>(c[0]);
    step.strip_start =
        static_cast<int>(r.integer(r.member(d, "start", key), key + ".start", 0, 1 << 20));
    step.strip_stop =
        static_cast<int>(r.integer(r.member(d, "stop", key), key + ".stop", 0, 1 << 20));
  } else if (type == "Metaspace") {
    step.kind = DecoderStep::Kind::kMetaspace;
    if (d.contains("replacement")) step.replacement = r.str_at(d, "replacement", key);
    step.metaspace_strip_first = prepend_scheme(r, d, key) != PreTokenizerStep::Prepend::kNever;
  } else {
    r.fail(key + ".type", "unsupported decoder '" + type +
                              "' (shoal supports Sequence, ByteLevel, Replace, ByteFallback, "
                              "Fuse, Strip, Metaspace)");
  }
  out.push_back(std::move(step));
}

// ---- post-processor ---------------------------------------------------------------------------

int32_t lookup_token(const Tokenizer::Impl& im, std::string_view content) {
  for (const infer::AddedToken& t : im.added) {
    if (t.content == content) return t.id;
  }
  auto it = im.vocab.find(content);
  return it == im.vocab.end() ? -1 : it->second;
}

void load_post_processor(const Reader& r, const json& p, const std::string& key,
                         Tokenizer::Impl& im) {
  if (p.is_null()) return;
  const std::string type = r.str_at(p, "type", key);
  if (type == "Sequence") {
    const json& list = r.member(p, "processors", key);
    for (size_t i = 0; i < list.size(); ++i) {
      load_post_processor(r, list[i], key + ".processors[" + std::to_string(i) + "]", im);
    }
  } else if (type == "ByteLevel") {
    // Only adjusts offsets; adds no tokens.
  } else if (type == "TemplateProcessing") {
    // `single` is the template for one sequence: special tokens around {"Sequence": {"id": "A"}}.
    const json& single = r.member(p, "single", key);
    const json& specials = r.member(p, "special_tokens", key);
    bool seen_a = false;
    for (size_t i = 0; i < single.size(); ++i) {
      const std::string k = key + ".single[" + std::to_string(i) + "]";
      const json& item = single[i];
      if (item.contains("Sequence")) {
        seen_a = true;
        continue;
      }
      const std::string name =
          r.str_at(r.member(item, "SpecialToken", k), "id", k + ".SpecialToken");
      const json& entry = r.member(specials, name.c_str(), key + ".special_tokens");
      const json& ids = r.member(entry, "ids", key + ".special_tokens." + name);
      for (const json& id : ids) {
        const auto v = static_cast<int32_t>(
            r.integer(id, key + ".special_tokens." + name + ".ids", 0, kMaxTokenId));
        (seen_a ? im.suffix_ids : im.prefix_ids).push_back(v);
      }
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    // {"cls": ["<s>", 0], "sep": ["</s>", 2]}: cls before the sequence, sep after it.
    for (const char* name : {"cls", "sep"}) {
      const json& v = r.member(p, name, key);
      if (!v.is_array() || v.size() != 2) r.fail(key + "." + name, "expected [token, id]");
      const auto id =
          static_cast<int32_t>(r.integer(v[1], key + "." + name + "[1]", 0, kMaxTokenId));
      (std::string(name) == "cls" ? im.prefix_ids : im.suffix_ids).push_back(id);
    }
  } else {
    r.fail(key + ".type", "unsupported post-processor '" + type +
                              "' (shoal supports Sequence, ByteLevel, TemplateProcessing, "
                              "RobertaProcessing, BertProcessing)");
  }
}

// ---- tokenizer_config.json and friends --------------------------------------------------------

// bos_token / eos_token: a string, {"content": ...} (an AddedToken), or null.
std::optional<std::string> config_token(const Reader& r, const json& cfg, const char* name) {
  if (!cfg.is_object() || !cfg.contains(name) || cfg.at(name).is_null()) return std::nullopt;
  const json& v = cfg.at(name);
  if (v.is_string()) return v.get<std::string>();
  return r.str_at(v, "content", name);
}

void load_config(const fs::path& dir, Tokenizer::Impl& im) {
  const fs::path cfg_path = dir / "tokenizer_config.json";
  const fs::path map_path = dir / "special_tokens_map.json";
  const json cfg = fs::exists(cfg_path) ? read_json(cfg_path) : json::object();
  const json map = fs::exists(map_path) ? read_json(map_path) : json::object();
  const Reader rc(cfg_path.string()), rm(map_path.string());

  for (const char* name : {"bos_token", "eos_token"}) {
    const bool in_cfg = cfg.is_object() && cfg.contains(name);
    const Reader& r = in_cfg ? rc : rm;
    const auto content = config_token(r, in_cfg ? cfg : map, name);
    if (!content) continue;
    const int32_t id = lookup_token(im, *content);
    if (id < 0) r.fail(name, io::quoted(*content) + " is not a token of tokenizer.json");
    (std::string(name) == "bos_token" ? im.bos : im.eos) = id;
  }

  // transformers rebuilds the post-processor from these switches when they are present.
  if (cfg.is_object() && cfg.contains("add_bos_token") && !cfg.at("add_bos_token").is_null()) {
    const bool add = rc.flag(cfg, "add_bos_token", false, "tokenizer_config");
    if (im.bos >= 0 && !im.prefix_ids.empty() && im.prefix_ids.front() == im.bos) {
      im.prefix_ids.erase(im.prefix_ids.begin());
    }
    if (add && im.bos >= 0) im.prefix_ids.insert(im.prefix_ids.begin(), im.bos);
  }
  if (cfg.is_object() && cfg.contains("add_eos_token") && !cfg.at("add_eos_token").is_null()) {
    const bool add = rc.flag(cfg, "add_eos_token", false, "tokenizer_config");
    if (im.eos >= 0 && !im.suffix_ids.empty() && im.suffix_ids.back() == im.eos) {
      im.suffix_ids.pop_back();
    }
    if (add && im.eos >= 0) im.suffix_ids.push_back(im.eos);
  }

  // The chat template: a string, or a list of {name, template} (the "default" one is used).
  if (cfg.is_object() && cfg.contains("chat_template") && !cfg.at("chat_template").is_null()) {
    const json& t = cfg.at("chat_template");
    if (t.is_string()) {
      im.chat_template = t.get<std::string>();
    } else if (t.is_array()) {
      for (size_t i = 0; i < t.size(); ++i) {
        const std::string k = "chat_template[" + std::to_string(i) + "]";
        if (rc.str_at(t[i], "name", k) == "default" || i == 0) {
          im.chat_template = rc.str_at(t[i], "template", k);
        }
      }
    } else {
      rc.fail("chat_template", "expected a string or a list of {name, template}");
    }
    im.chat_source = cfg_path.string();
  } else if (fs::exists(dir / "chat_template.jinja")) {
    im.chat_template = read_text(dir / "chat_template.jinja");
    im.chat_source = (dir / "chat_template.jinja").string();
  } else {
    im.chat_source = cfg_path.string();
  }
  if (config_token(rc, cfg, "bos_token")) im.bos_text = *config_token(rc, cfg, "bos_token");
  if (config_token(rc, cfg, "eos_token")) im.eos_text = *config_token(rc, cfg, "eos_token");

  // generation_config.json's eos_token_id (one id or a list) also ends a generation.
  const fs::path gen_path = dir / "generation_config.json";
  if (fs::exists(gen_path)) {
    const json gen = read_json(gen_path);
    const Reader rg(gen_path.string());
    if (gen.is_object() && gen.contains("eos_token_id") && !gen.at("eos_token_id").is_null()) {
      const json& v = gen.at("eos_token_id");
      const json list = v.is_array() ? v : json::array({v});
      for (const json& id : list) {
        im.stops.push_back(static_cast<int32_t>(rg.integer(id, "eos_token_id", 0, kMaxTokenId)));
      }
    }
  }
}

}  // namespace

Tokenizer Tokenizer::from_folder(const fs::path& dir) {
  const fs::path path = dir / "tokenizer.json";
  if (!fs::exists(path)) {
    throw FormatError(dir.string() +
                      ": no tokenizer.json (shoal reads Hugging Face fast-tokenizer files)");
  }
  const json tj = read_json(path);
  const Reader r(path.string());
  if (!tj.is_object()) r.fail("(top level)", "expected an object");

  auto im = std::make_shared<Impl>();
  im->source = path.string();
  load_model(r, r.member(tj, "model", "(top level)"), *im);
  load_added_tokens(r, tj.value("added_tokens", json()), *im);
  load_normalizer(r, tj.value("normalizer", json()), "normalizer", im->normalizer);
  load_pre_tokenizer(r, tj.value("pre_tokenizer", json()), "pre_tokenizer", im->pre_tokenizer);
  load_post_processor(r, tj.value("post_processor", json()), "post_processor", *im);
  load_decoder(r, tj.value("decoder", json()), "decoder", im->decoder);
  if (im->pre_tokenizer.empty() && infer::spm_words_are_independent(im->vocab)) {
    im->pre_tokenizer.push_back({PreTokenizerStep::Kind::kSpmWords});
  }
  load_config(dir, *im);
  im->finish();
  const auto known = [&](int32_t id) {
    return static_cast<size_t>(id) < im->pieces.size() && !im->pieces[id].empty();
  };
  for (const auto* ids : {&im->prefix_ids, &im->suffix_ids}) {
    for (int32_t id : *ids) {
      if (!known(id))
        r.fail("post_processor", "token id " + std::to_string(id) + " is not a token");
    }
  }
  for (int32_t id : im->stops) {
    if (!known(id)) {
      throw FormatError((dir / "generation_config.json").string() + ": eos_token_id: " +
                        std::to_string(id) + " is not a token of tokenizer.json");
    }
  }
  return Tokenizer(std::move(im));
}

}  // namespace shoal
